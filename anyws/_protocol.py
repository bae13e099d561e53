"""The WebSocket connection after the handshake, sans-IO (RFC 6455 §5-§7, RFC 7692 §6).

`ClientProtocol` wraps wsproto's `Connection`: feed it received bytes, read back whole
messages and pong acknowledgements; ask it to send and collect the bytes to write. It holds
every protocol rule the driver relies on: message reassembly, `max_size` on the decompressed
size (close 1009), failing the connection on bad input (1002/1007 via wsproto), close-code
rules, the close handshake and ping bookkeeping. It never imports anyio.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason

from ._deflate import NegotiatedDeflate
from ._exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    PayloadTooBig,
    ProtocolError,
    WebSocketError,
)
from ._frames import OPCODE_BINARY, OPCODE_CONTINUATION, OPCODE_TEXT, client_frame
from ._types import Close, Data

# Close codes after which a closed connection counts as normal (as in `websockets`): 1005 is
# what an empty close frame is reported as (RFC 6455 §7.1.5).
OK_CLOSE_CODES = frozenset({1000, 1001, 1005})

# Codes an endpoint may put in a close frame (RFC 6455 §7.4.1, §7.4.2 and the IANA registry):
# 1004-1006 and 1015 are reserved and never sent.
SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
MAX_CLOSE_REASON = 123  # bytes: a control frame payload is at most 125 (RFC 6455 §5.5)


@dataclass(frozen=True)
class PongReceived:
    """A pong arrived; it acknowledges `payloads`: the ping it answers and every earlier one
    still waiting (a pong answers the most recent ping, RFC 6455 §5.5.3).
    """

    payloads: list[bytes]


class State(enum.Enum):
    """Where the connection stands, for the driver."""

    OPEN = "open"
    """Messages flow both ways."""
    CLOSING = "closing"
    """A close frame was sent or received (or the connection failed); no more sending."""
    CLOSED = "closed"
    """The transport ended."""


def validate_close(code: int, reason: str) -> None:
    """Check a close code and reason that the application wants to send.

    Raises:
        ProtocolError: the code may not be sent (RFC 6455 §7.4), or the reason is longer than
            123 bytes in UTF-8.
    """
    if code not in SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise ProtocolError(f"invalid close code: {code} (RFC 6455 §7.4)")
    if len(reason.encode("utf-8")) > MAX_CLOSE_REASON:
        raise ProtocolError(f"close reason is longer than {MAX_CLOSE_REASON} bytes in UTF-8")


class ClientProtocol:
    """A client-side WebSocket connection, without I/O.

    Args:
        extensions: the extensions negotiated in the handshake.
        max_size: the largest message accepted, in bytes after decompression; None: no limit.
    """

    def __init__(
        self, extensions: Sequence[Extension] = (), *, max_size: int | None = 2**20
    ) -> None:
        self._ws = Connection(ConnectionType.CLIENT, list(extensions))
        # Data frames are built by _frames (faster, byte-identical) unless an extension
        # other than our permessage-deflate could transform them: then wsproto builds them.
        self._deflate: NegotiatedDeflate | None = None
        self._own_framing = True
        for extension in extensions:
            if isinstance(extension, NegotiatedDeflate):
                self._deflate = extension
            else:
                self._own_framing = False
        self.max_size = max_size
        if self._deflate is not None:
            self._deflate.max_size = max_size  # enforced while inflating

        self._fragments: list[Data] = []
        self._size = 0
        self._control_out: list[bytes] = []
        self._data_out: list[bytes] = []
        self.outbox_size = 0
        self._pings: dict[bytes, None] = {}

        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        self.failure: BaseException | None = None
        self._pending_close: Close | None = None
        self._failure_reported = False
        self.eof_received = False

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """OPEN, CLOSING or CLOSED (see `State`)."""
        if self.eof_received:
            return State.CLOSED
        if self._ws.state is ConnectionState.OPEN:
            return State.OPEN
        return State.CLOSING

    @property
    def incoming_done(self) -> bool:
        """True once no further message can arrive."""
        return self.eof_received or self.close_rcvd is not None or self.failure is not None

    def close_exc(self) -> ConnectionClosed:
        """Return the exception that describes how the connection closed (so far).

        `ConnectionClosedOK` if both close frames carry a normal code, else
        `ConnectionClosedError` with the detected failure as its `__cause__`.
        """
        rcvd, sent = self.close_rcvd, self.close_sent
        exc: ConnectionClosed
        if (
            self.failure is None
            and rcvd is not None
            and sent is not None
            and rcvd.code in OK_CLOSE_CODES
            and sent.code in OK_CLOSE_CODES
        ):
            exc = ConnectionClosedOK(rcvd, sent, self.close_rcvd_then_sent)
        else:
            exc = ConnectionClosedError(rcvd, sent, self.close_rcvd_then_sent)
        exc.__cause__ = self.failure
        return exc

    def receive_exc(self) -> BaseException:
        """Return the exception a receiver gets when no message is left.

        The first receiver after a `PayloadTooBig` gets that exception itself (it says what
        happened to the message it was waiting for); everyone else `close_exc()`.
        """
        if isinstance(self.failure, PayloadTooBig) and not self._failure_reported:
            self._failure_reported = True
            return self.failure
        return self.close_exc()

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> list[Data | PongReceived]:
        """Feed bytes received from the server; return the messages and pongs they complete.

        Data after the connection failed or after the server's close frame is discarded
        (RFC 6455 §5.5.1: nothing follows a close frame).
        """
        received: list[Data | PongReceived] = []
        if self.incoming_done:
            return received
        self._ws.receive_data(bytes(data))
        self._process_events(received)
        return received

    def receive_eof(self, cause: BaseException | None = None) -> None:
        """Tell the protocol that the transport ended (EOF, reset, or aborted).

        Without a close frame from the server, this is an abnormal closure (1006): `cause`
        (e.g. the OSError seen) becomes the failure.
        """
        if self.eof_received:
            return
        self.eof_received = True
        self._fragments.clear()
        if self.close_rcvd is None and self.failure is None:
            self.failure = cause

    def _process_events(self, received: list[Data | PongReceived]) -> None:
        for event in self._ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._on_message_chunk(event, received)
            elif isinstance(event, Ping):
                if self._ws.state is ConnectionState.OPEN:
                    # RFC 6455 §5.5.2: answer with a pong carrying the same payload.
                    self._queue_control(self._ws.send(event.response()))
            elif isinstance(event, Pong):
                acknowledged = self._acknowledge(bytes(event.payload))
                if acknowledged:
                    received.append(PongReceived(acknowledged))
            elif isinstance(event, CloseConnection):  # pragma: no branch (no other event types)
                self._on_close(event)
            if self.incoming_done:
                return

    def _on_message_chunk(
        self,
        event: TextMessage | BytesMessage,
        received: list[Data | PongReceived],
    ) -> None:
        chunk = event.data
        if self.max_size is not None:
            if isinstance(chunk, str):
                self._size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8"))
            else:
                self._size += len(chunk)
            if self._size > self.max_size:
                size, self._size = self._size, 0
                self._fragments.clear()
                self._fail(1009, "message too big", PayloadTooBig(size, self.max_size), defer=True)
                return
        if event.message_finished and not self._fragments:
            received.append(bytes(chunk) if isinstance(chunk, bytearray) else chunk)
            self._size = 0
            return
        self._fragments.append(bytes(chunk) if isinstance(chunk, bytearray) else chunk)
        if event.message_finished:
            fragments, self._fragments = self._fragments, []
            self._size = 0
            if isinstance(fragments[0], str):
                received.append("".join(fragments))  # type: ignore[arg-type]
            else:
                received.append(b"".join(fragments))  # type: ignore[arg-type]

    def _on_close(self, event: CloseConnection) -> None:
        state = self._ws.state
        if state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            # wsproto reports a frame it can't parse as a CloseConnection without changing
            # state: the server broke the protocol (bad opcode, bad UTF-8 → 1007, ...).
            cause: WebSocketError
            if event.code == CloseReason.MESSAGE_TOO_BIG:
                # Only our inflater says this (wsproto has no size limit of its own).
                assert self._deflate is not None
                assert self.max_size is not None
                cause = PayloadTooBig(self._deflate.inflated_size, self.max_size)
            else:
                message = f"server violated the protocol: {event.reason or event.code}"
                cause = ProtocolError(message, event.code)
            self._fail(event.code, event.reason or "protocol error", cause, defer=True)
            return
        self.close_rcvd = Close(int(event.code), event.reason or "")
        self._fragments.clear()
        if state is ConnectionState.REMOTE_CLOSING:
            # RFC 6455 §5.5.1: answer a close with a close, echoing the status code.
            self.close_rcvd_then_sent = True
            self.close_sent = Close(int(event.code), event.reason or "")
            self._queue_data(self._ws.send(event.response()))
        # Otherwise (CLOSED) our close went first: the handshake is now complete.

    def _acknowledge(self, payload: bytes) -> list[bytes]:
        if payload not in self._pings:
            return []  # an unsolicited pong is allowed and ignored (RFC 6455 §5.5.3)
        waiting_pings = list(self._pings)
        acknowledged = waiting_pings[: waiting_pings.index(payload) + 1]
        for waiting in acknowledged:
            del self._pings[waiting]
        return acknowledged

    # -- sending --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise self.close_exc()

    def send_message(self, message: Data | bytearray | memoryview) -> None:
        """Queue one message: `str` as text, bytes-like as binary.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: the message is neither str nor bytes-like.
        """
        self._check_open()
        self._queue_message([_payload(message)])

    def send_fragments(self, fragments: Sequence[Data | bytearray | memoryview]) -> None:
        """Queue one message made of several frames, one per fragment (RFC 6455 §5.4).

        Nothing is queued unless every fragment is valid, so a message is never half-sent.
        An empty sequence sends nothing.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: fragments mix str and bytes, or one is neither.
        """
        self._check_open()
        payloads = [_payload(fragment) for fragment in fragments]
        if not payloads:
            return
        is_text = isinstance(payloads[0], str)
        if any(isinstance(payload, str) is not is_text for payload in payloads):
            raise TypeError("all fragments of a message must be str, or all bytes-like")
        self._queue_message(payloads)

    def _queue_message(self, payloads: Sequence[str | bytes]) -> None:
        # One message: the first frame carries the opcode, the others are continuations,
        # the last has FIN (RFC 6455 §5.4); deflate runs across the whole message.
        last = len(payloads) - 1
        if not self._own_framing:
            for index, payload in enumerate(payloads):
                self._queue_data(self._ws.send(_message(payload, finished=index == last)))
            return
        opcode = OPCODE_TEXT if isinstance(payloads[0], str) else OPCODE_BINARY
        for index, payload in enumerate(payloads):
            data = payload.encode("utf-8") if isinstance(payload, str) else payload
            rsv1 = False
            if self._deflate is not None:
                rsv1, data = self._deflate.compress(data, first=index == 0, fin=index == last)
            frame_opcode = opcode if index == 0 else OPCODE_CONTINUATION
            self._queue_data(client_frame(frame_opcode, data, fin=index == last, rsv1=rsv1))

    def send_ping(self, payload: bytes) -> None:
        """Queue a ping; its pong will be reported by a `PongReceived`.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ConcurrencyError: a ping with the same payload is still waiting for its pong.
            ValueError: the payload is longer than 125 bytes (RFC 6455 §5.5).
        """
        self._check_open()
        _check_control_payload(payload)
        if payload in self._pings:
            raise ConcurrencyError("already waiting for a pong with the same payload")
        self._pings[payload] = None
        self._queue_control(self._ws.send(Ping(payload=payload)))

    def send_pong(self, payload: bytes) -> None:
        """Queue an unsolicited pong (RFC 6455 §5.5.3: a unidirectional heartbeat).

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ValueError: the payload is longer than 125 bytes (RFC 6455 §5.5).
        """
        self._check_open()
        _check_control_payload(payload)
        self._queue_control(self._ws.send(Pong(payload=payload)))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 §7.1.2); no-op if it has already started.

        The close frame is queued after the data frames already queued: nothing may follow
        it (RFC 6455 §5.5.1), and what was sent before must arrive.

        Raises:
            ProtocolError: the code or reason may not be sent (see `validate_close`).
        """
        validate_close(code, reason)
        if self.failure_pending:
            self.commit_failure()  # the failure's code says more than the one asked for
        if self.state is State.OPEN:
            self._queue_close(Close(code, reason))

    def fail(self, code: int, reason: str, cause: BaseException) -> None:
        """Fail the connection now (RFC 6455 §7.1.7): send a close frame if still possible
        and record `cause` as the reason every later call raises.
        """
        self._fail(code, reason, cause, defer=False)

    def _fail(self, code: int, reason: str, cause: BaseException, *, defer: bool) -> None:
        if self.failure is not None:
            return
        self.failure = cause
        if self._ws.state is ConnectionState.OPEN:
            self._pending_close = Close(code, reason)
            if not defer:
                self.commit_failure()

    @property
    def failure_pending(self) -> bool:
        """True while the server broke the protocol but our close frame isn't queued yet."""
        return self._pending_close is not None

    def commit_failure(self) -> None:
        """Queue the close frame of a failure detected in received data.

        Bad input (a protocol error, a message over max_size) stops all further processing
        of received data at once, but the close frame waits until the application has taken
        the messages that arrived before the bad frame, so that it can still answer them:
        those messages were valid, and nothing follows a close frame (RFC 6455 §5.5.1).
        """
        close, self._pending_close = self._pending_close, None
        if close is not None and self._ws.state is ConnectionState.OPEN:
            self._queue_close(close)

    def _queue_close(self, close: Close) -> None:
        # Our close goes first; it follows the data frames already queued (RFC 6455 §5.5.1).
        self.close_sent = close
        self.close_rcvd_then_sent = False
        self._queue_data(self._ws.send(CloseConnection(code=close.code, reason=close.reason)))

    def _queue_control(self, frame: bytes) -> None:
        self._control_out.append(frame)
        self.outbox_size += len(frame)

    def _queue_data(self, frame: bytes) -> None:
        self._data_out.append(frame)
        self.outbox_size += len(frame)

    def data_to_send(self) -> list[bytes]:
        """Return and forget the frames to write, control frames (ping, pong) first."""
        frames = self._control_out + self._data_out if self._control_out else self._data_out
        self._control_out = []
        self._data_out = []
        self.outbox_size = 0
        return frames


def _message(payload: str | bytes, *, finished: bool) -> TextMessage | BytesMessage:
    if isinstance(payload, str):
        return TextMessage(data=payload, message_finished=finished)
    return BytesMessage(data=payload, message_finished=finished)


def _payload(message: object) -> str | bytes:
    if isinstance(message, (str, bytes)):
        return message
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"a message must be str or bytes-like, not {type(message).__name__}")


def _check_control_payload(payload: bytes) -> None:
    if len(payload) > 125:
        raise ValueError("a ping or pong payload is at most 125 bytes (RFC 6455 §5.5)")
