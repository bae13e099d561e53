"""The WebSocket connection after the handshake, sans-IO (RFC 6455 §5-§7, RFC 7692 §6).

Theory of operation
===================

`ClientProtocol` wraps wsproto's `Connection`. The driver feeds it the bytes it reads
(`receive_data`), asks it for the messages they complete (`parse`), tells it when the
transport ended (`receive_eof`), and writes what `data_to_send` returns. Every protocol
decision is made here; the driver moves bytes, wakes tasks and keeps deadlines.

Backpressure lives in `parse(room)`: wsproto parses lazily, so the protocol pulls events
only until `room` messages are complete. What is not parsed stays in wsproto's buffer, at
most one read of the driver's; inflation (RFC 7692) happens while parsing, so one read of
compressed data can't fill memory past the queue. `wants_data` says whether the buffer was
used up: only then does the driver read again.

The fast path (with the C accelerator): what the driver reads goes to an inbox first.
`parse_frames` takes the whole, uncompressed, unfragmented messages at its start in one C
call, without wsproto's per-frame objects; such a message that hasn't all arrived is
streamed from the inbox as it comes, as the events wsproto would give for it. Every other
frame (control frames, fragments, compressed or oversized messages, invalid UTF-8, any
header wsproto would reject) is handed to wsproto whole (a fragment with the continuation
frames behind it that are all here), so wsproto decides everything but the common case;
after bad input the rest of the stream is all wsproto's. The same bytes give the same
results either way: tests/test_incoming.py compares both step by step.

The lifecycle of the connection is one state machine, `Phase`, changed only by `_enter`,
which checks every transition against `TRANSITIONS`:

    OPEN ───────── close() / fail() ──────────► CLOSE_SENT ──── server's Close ───┐
     │  │                                           ▲                             ▼
     │  └─ server's Close (answered at once) ───────┼────────────────────► CLOSE_EXCHANGED
     │                                              │                             │
     └─ bad input ──► FAILING ── earlier messages taken, close(), or timeout ──┘  │
                                                                                  ▼
           any phase ────────────── transport ended (EOF, reset, abort) ───────► CLOSED

Rules, in the order they were decided:

1. Nothing received is lost. A message is complete only when it is parsed, and messages
   are parsed in order, so every message the server sent before its close frame reaches
   the queue before that frame is even seen. Only after *our* close frame was sent may a
   message find the queue full and be dropped (`dropped` counts them): the application
   asked to close, and the server's close frame must still be reached.
2. Bad input (a protocol error: 1002, 1007; a message over `max_size`: 1009) fails the
   connection (RFC 6455 §7.1.7), but our close frame is deferred (FAILING) until the
   application has taken the messages that arrived before the bad frame, so that it can
   still answer them: they were valid, and nothing may follow a close frame (§5.5.1).
   `commit_failure` ends the deferral; the driver bounds it with `close_timeout`.
3. After a protocol error the byte stream can't be trusted: nothing more is parsed. After
   an oversized message the framing is intact: the rest of the message is discarded unread
   (unread compressed data isn't inflated) and parsing goes on to find the server's close
   frame, whose code `close_rcvd` then reports.
4. The server's close frame is answered at once by echoing its code (§5.5.1); in FAILING
   the answer is the failure's own close frame, when it is committed, and the state is
   CLOSING from then on: nothing but that close frame may follow the server's.
5. `fail()` (a dead peer, an internal error) sends its close frame at once and stops
   parsing: nothing more is delivered.
6. The close code of the connection is that of the server's close frame; 1006 only when
   none was received (§7.1.5). The exception the application sees says what both sides
   sent, with the failure anyws detected as its `__cause__`.
7. A pong acknowledges the ping it answers and every earlier one still waiting (§5.5.3).
   The outstanding pings are one map, payload → the driver's waiter, held here.
8. Our close frame follows the data frames already queued (§5.5.1); pings and pongs may
   overtake queued data frames.
9. A message in several frames (or one frame that arrives in parts) takes its place in the
   queue when it starts, as a `PartialMessage` that its later fragments fill, so that it
   can be streamed; its own frames need no room, only the next message does. A message
   the connection ends in the middle of is abandoned, never delivered as if whole.
10. A message sent in fragments as they come (`send_fragment`) can't be interleaved with
   another (§5.4); if it can't be finished, the connection closes with 1011.
11. Every ping is answered, except while the driver says the server doesn't take what is
   written (`pongs_deferred`): then only the latest one is, once it does (§5.5.3), so that
   a server that sends pings and reads nothing can't make pongs pile up.
"""

from __future__ import annotations

import codecs
import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ._deflate import NegotiatedDeflate
from ._exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    PayloadTooBig,
    ProtocolError,
)
from ._frames import (
    INVALID_FRAME,
    OPCODE_BINARY,
    OPCODE_CONTINUATION,
    OPCODE_TEXT,
    MessageBuffer,
    client_frame,
    frame_extent,
    parse_frames,
)
from ._types import Close, Data

if TYPE_CHECKING:
    from . import _speedups

# Close codes after which a closed connection counts as normal (as in `websockets`): 1005 is
# what an empty close frame is reported as (RFC 6455 §7.1.5).
OK_CLOSE_CODES = frozenset({1000, 1001, 1005})

# Codes an endpoint may put in a close frame (RFC 6455 §7.4.1, §7.4.2 and the IANA registry):
# 1004-1006 and 1015 are reserved and never sent.
SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
MAX_CLOSE_REASON = 123  # bytes: a control frame payload is at most 125 (RFC 6455 §5.5)
MESSAGE_TOO_BIG_REASON = "message too big"
_UTF8_DECODER = codecs.getincrementaldecoder("utf-8")  # as wsproto decodes text (§5.6)

W = TypeVar("W")
"""What the driver keeps per outstanding ping (its waiter)."""

_SMALL_FRAGMENT = 1024
"""A fragment shorter than this (bytes, or characters of text) is small: the object that
holds it costs tens of bytes, more than a few of its bytes."""
_SMALL_RUN = 64
"""How many small fragments a `PartialMessage` keeps unjoined (see `PartialMessage.add`)."""


def _smallest(*limits: int | None) -> int | None:
    """The smallest of the limits that are set (None: no limit)."""
    return min((limit for limit in limits if limit is not None), default=None)


class FragmentLimit(Extension):
    """Watches the header of each frame that wsproto parses, for `max_fragment_size`: a data
    frame whose payload is longer is noted (`too_big`), and `ClientProtocol` fails the
    connection with 1009 at its first data. Claims no RSV bit and changes nothing; the
    handshake never offers it (it is added to wsproto's `Connection` after the handshake).
    """

    name = "anyws-fragment-limit"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.too_big: int | None = None  # the payload length of a frame too big

    def enabled(self) -> bool:
        """Always watching."""
        return True

    def offer(self) -> bool:
        """Nothing to offer: wsproto's `Extension` asks every extension for one."""
        return False  # pragma: no cover (only the handshake asks, and it never sees this)

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        """Note a data frame longer than the limit (control frames are at most 125 bytes)."""
        if payload_length > self.max_size and not opcode.iscontrol():
            self.too_big = payload_length
        return RsvBits(False, False, False)


class PartialMessage:
    """A message whose frames are still arriving (RFC 6455 §5.4), as `parse` returns it
    when its first frame doesn't finish it.

    It takes a place in the queue as soon as it starts, so that it can be streamed; the
    protocol adds its later fragments and sets `complete` on the last one. `fragments`
    holds what arrived and wasn't taken yet: `str` pieces for text (wsproto decodes UTF-8
    incrementally, so a piece never ends inside a sequence), `bytes` for binary. A binary
    message whose `size` is known (one frame) is kept in a `MessageBuffer` instead, until
    it is streamed.

    Small fragments are joined as they come: a server may send a message in frames of one
    byte (three on the wire), and kept one object each, a message of `max_size` bytes would
    take some forty times `max_size`. Joined, a message holds at most `_SMALL_RUN` + 1
    small pieces, so its memory stays within a few percent of its size (plus a few KiB),
    as the bound `read_limit + max_queue * max_size` needs.
    """

    __slots__ = ("_small", "_unjoined", "abandoned", "buffer", "complete", "fragments", "text")

    def __init__(self, text: bool, size: int | None = None) -> None:
        self.text = text
        """True for a text message, False for a binary one."""
        self.fragments: deque[str | bytes] = deque()
        self._unjoined = 0  # pieces at the end of `fragments` added since the last join
        self._small = 0  # how many of them are small
        self.buffer = None if size is None or MessageBuffer is None else MessageBuffer(size)
        self.complete = False
        """True once the last fragment arrived."""
        self.abandoned = False
        """True once nobody will get this message: the protocol gave up on it (the input
        was bad or the connection ended before its last frame), or the application
        discarded it (then its later fragments are parsed but not kept)."""

    def add(self, fragment: str | bytes) -> None:
        """Keep the next fragment."""
        if self.buffer is not None:
            self.buffer.append(fragment)  # type: ignore[arg-type]
            return
        fragments = self.fragments
        fragments.append(fragment)
        self._unjoined += 1
        if len(fragment) >= _SMALL_FRAGMENT:
            return
        self._small += 1
        if self._small >= _SMALL_RUN:
            # Everything added since the last join becomes one piece, big fragments between
            # the small ones included: each byte is copied once more, a small joined piece
            # a few times (it is the first of the next run). A stream may have taken some
            # of them from the front meanwhile.
            count = min(self._unjoined, len(fragments))
            pieces = [fragments.pop() for _ in range(count)]
            pieces.reverse()
            joined = "".join(pieces) if self.text else b"".join(pieces)  # type: ignore[arg-type]
            fragments.append(joined)
            self._unjoined = 1
            self._small = 1 if len(joined) < _SMALL_FRAGMENT else 0

    def stream(self) -> None:
        """Keep fragments as they come from now on: a receiver takes them one by one."""
        buffer, self.buffer = self.buffer, None
        if buffer is not None:  # a buffered message starts with its first data
            self.fragments.append(buffer.read())

    def abandon(self) -> None:
        """Stop keeping fragments: nobody will read the rest of this message."""
        self.abandoned = True
        self.fragments.clear()
        self.buffer = None

    def join(self) -> Data:
        """The fragments not taken yet, as one `str` or `bytes`."""
        if self.buffer is not None:
            return self.buffer.value()
        if self.text:
            return "".join(self.fragments)  # type: ignore[arg-type]
        return b"".join(self.fragments)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PongReceived(Generic[W]):
    """A pong arrived; it acknowledges these pings' waiters, oldest first."""

    waiters: list[W]


class State(enum.Enum):
    """Where the connection stands, as the application sees it."""

    OPEN = "open"
    """Messages may be sent."""
    CLOSING = "closing"
    """A close frame was sent or received (or the connection failed); no more sending."""
    CLOSED = "closed"
    """The transport ended."""


class Phase(enum.Enum):
    """The lifecycle of the connection (see the module's theory of operation)."""

    OPEN = "open"
    FAILING = "failing"
    CLOSE_SENT = "close sent"
    CLOSE_EXCHANGED = "close exchanged"
    CLOSED = "closed"

    # Members are singletons compared by identity: hashing them so is exact, and C-fast
    # (`Enum.__hash__` is Python code, and `_enter` hashes phases on every transition).
    __hash__ = object.__hash__


TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.OPEN: frozenset({Phase.FAILING, Phase.CLOSE_SENT, Phase.CLOSE_EXCHANGED, Phase.CLOSED}),
    Phase.FAILING: frozenset({Phase.CLOSE_SENT, Phase.CLOSE_EXCHANGED, Phase.CLOSED}),
    Phase.CLOSE_SENT: frozenset({Phase.CLOSE_EXCHANGED, Phase.CLOSED}),
    Phase.CLOSE_EXCHANGED: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}
"""Every phase each phase may move to; anything else is a bug in anyws."""

_PUBLIC_STATE = {
    # FAILING still sends: the application may answer the messages before the bad input
    # (until the server's close frame arrives: then CLOSING, rule 4).
    Phase.OPEN: State.OPEN,
    Phase.FAILING: State.OPEN,
    Phase.CLOSE_SENT: State.CLOSING,
    Phase.CLOSE_EXCHANGED: State.CLOSING,
    Phase.CLOSED: State.CLOSED,
}


def validate_close(code: int, reason: str | None) -> str:
    """Check a close code and reason that the application wants to send; return the reason
    ("" for None).

    Raises:
        ProtocolError: the code may not be sent (RFC 6455 §7.4), or the reason is longer than
            123 bytes in UTF-8.
    """
    if code not in SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise ProtocolError(f"invalid close code: {code} (RFC 6455 §7.4)")
    if reason is None:
        return ""
    if len(reason.encode("utf-8")) > MAX_CLOSE_REASON:
        raise ProtocolError(f"close reason is longer than {MAX_CLOSE_REASON} bytes in UTF-8")
    return reason


class ClientProtocol(Generic[W]):
    """A client-side WebSocket connection, without I/O.

    Args:
        extensions: the extensions negotiated in the handshake.
        max_size: the largest message accepted, in bytes after decompression; None: no limit.
        max_fragment_size: the largest frame payload accepted, in bytes on the wire and
            after decompression; None: no limit.
        compression_threshold: with permessage-deflate, messages smaller than this many
            bytes are sent uncompressed; None compresses every message.
        trace: called with a line describing each frame received ("< ...") and sent
            ("> ..."), as `websockets` logs them at debug level; None: no tracing.
        fast_path: parse whole uncompressed messages with the C accelerator when it is
            available; False: wsproto parses every frame (the reference the tests compare
            the fast path with).
    """

    def __init__(
        self,
        extensions: Sequence[Extension] = (),
        *,
        max_size: int | None = 2**20,
        max_fragment_size: int | None = None,
        compression_threshold: int | None = None,
        trace: Callable[[str], None] | None = None,
        fast_path: bool = True,
    ) -> None:
        # wsproto shows each frame's header to the extensions: the fragment limit watches
        # there, for the frames wsproto parses.
        self._fragment_limit = (
            None if max_fragment_size is None else FragmentLimit(max_fragment_size)
        )
        watchers = [] if self._fragment_limit is None else [self._fragment_limit]
        self._ws = Connection(ConnectionType.CLIENT, [*extensions, *watchers])
        self._trace = trace
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
        self.max_fragment_size = max_fragment_size
        # A message that the fast path takes whole is one frame: both limits bound it.
        self._whole_limit = _smallest(max_size, max_fragment_size)
        self.compression_threshold = compression_threshold
        if self._deflate is not None:
            # Enforced while inflating.
            self._deflate.max_size = max_size
            self._deflate.max_fragment_size = max_fragment_size

        self.phase = Phase.OPEN
        # Derived from the phase when it changes (`_enter`): the driver asks several
        # times per message.
        self.state = State.OPEN
        """OPEN, CLOSING or CLOSED (see `State`)."""
        self.failure_pending = False
        """True while the server broke the protocol but our close frame waits (rule 2)."""
        self._partial: PartialMessage | None = None  # the message whose frames arrive
        self._size = 0
        self._discarding = False  # data frames are dropped unread (rule 3)
        self._parsing = True  # False once nothing more will be parsed
        # The fast path: whole uncompressed messages are parsed by the C accelerator from
        # the inbox; any other frame is handed to wsproto whole (see `parse`). Off without
        # the accelerator, with a foreign extension, and once the input went bad.
        self._fast = fast_path and parse_frames is not None and self._own_framing
        self._inbox: bytes = b""
        self._inbox_start = 0
        self._owed = 0  # bytes of the frame wsproto parses that haven't arrived
        self._frame_left = 0  # bytes of the streamed frame's payload still to come
        # A streamed binary frame's size, taken by the data event that starts its message.
        self._frame_size: int | None = None
        self._frame_decoder: codecs.IncrementalDecoder | None = None  # its UTF-8, for text
        self._wsproto_fed = False  # wsproto has bytes whose events weren't all taken
        self.wants_data = True
        """True when everything received was parsed: the driver may read again."""
        self.paused = False
        """True when the last `parse` stopped because the room ran out."""
        self.dropped = 0
        """Messages dropped because the queue was full after our close frame (rule 1)."""
        # A message sent in fragments: are its fragments str? Are its frames text (`text=`
        # may say otherwise), whose UTF-8 is checked if they are bytes? Does it compress?
        self._fragmenting: bool | None = None
        self._fragments_text = False
        self._fragments_utf8: codecs.IncrementalDecoder | None = None
        self._fragments_deflate: NegotiatedDeflate | None = None
        self._control_out: list[bytes] = []
        self._data_out: list[bytes] = []
        self.outbox_size = 0
        self._pings: dict[bytes, W] = {}
        self.pongs_deferred = False
        """Set by the driver while the server doesn't take what is written to it: pings
        are then answered later, by `answer_deferred_pong` (see `_on_event`)."""
        self._deferred_pong: bytes | None = None  # the payload of the latest ping deferred

        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        self.failure: BaseException | None = None
        self._failure_close: Close | None = None

    # -- the lifecycle --------------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise RuntimeError(f"anyws bug: no transition from {self.phase} to {phase}")
        self.phase = phase
        self.state = _PUBLIC_STATE[phase]
        self.failure_pending = phase is Phase.FAILING

    @property
    def reading_done(self) -> bool:
        """True once nothing more will be parsed: the server's close frame arrived, the
        stream can't be trusted, or the transport ended. The driver then only waits for
        the server to close TCP (RFC 6455 §7.1.1).
        """
        return not self._parsing

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

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes received from the server; `parse` turns them into messages.

        Bytes that arrive once nothing more is parsed are dropped (after the server's close
        frame nothing may follow, RFC 6455 §5.5.1; after a protocol error nothing is read).
        """
        if not self._parsing:
            return
        self.wants_data = False
        owed = self._owed
        if owed:
            # The rest of the frame wsproto is parsing is wsproto's.
            self._owed = max(owed - len(data), 0)
            self._ws.receive_data(bytes(data[:owed]))
            self._wsproto_fed = True
            data = data[owed:]
            if not data:
                return
        if not self._fast:
            self._ws.receive_data(bytes(data))
            self._wsproto_fed = True
        elif self._inbox_start == len(self._inbox):
            self._inbox = data if type(data) is bytes else bytes(data)
            self._inbox_start = 0
        else:
            # Only the start of a frame header waits here: the driver reads when
            # `wants_data`, that is when everything else was parsed.
            self._inbox = self._inbox[self._inbox_start :] + data
            self._inbox_start = 0

    def receive_window(self) -> _speedups.MessageBuffer | None:
        """The buffer that the next bytes received may be read straight into, or None.

        There is one while a big binary message of one frame arrives and everything
        received was parsed: its `MessageBuffer`, whose buffer interface is the rest of the
        frame's payload (so a read into it never takes a byte of the next frame). The driver
        reads into it and reports the count with `received_into` instead of calling
        `receive_data`: a read that allocates nothing, and no copy. Never for a traced
        protocol, whose trace shows every read.
        """
        partial = self._partial
        if (
            partial is not None
            and partial.buffer is not None
            and self._frame_left
            and self.wants_data
            and self._trace is None
        ):
            return partial.buffer
        return None

    def received_into(self, window: _speedups.MessageBuffer, count: int) -> None:
        """Count `count` bytes (at least one) read into `window`, which `receive_window`
        gave. `parse` comes next, as after `receive_data`.
        """
        window.advance(count)
        partial = self._partial
        if partial is None or partial.buffer is not window:
            # The message was streamed or given up while the read waited: what the read
            # brought is received as any read is.
            self.receive_data(window.read()[-count:])
            return
        self.wants_data = False
        self._frame_left -= count
        self._size += count
        if not self._frame_left:
            # That frame was the whole message; its size was checked against max_size
            # when it started (`_next_frame`).
            self._finish_message(partial)

    def receive_eof(self, cause: BaseException | None = None) -> None:
        """Tell the protocol that the transport ended (EOF, reset, or aborted).

        Without a close frame from the server, this is an abnormal closure (1006): `cause`
        (e.g. the OSError seen) becomes the failure.
        """
        if self.phase is Phase.CLOSED:
            return
        if self.close_rcvd is None and self.failure is None:
            self.failure = cause
        self._parsing = False
        self._abandon_partial()
        self._enter(Phase.CLOSED)

    def parse(self, room: int | None) -> list[Data | PartialMessage | PongReceived[W]]:
        """Parse what was received into messages (and pong acknowledgements), in order.

        A message whose first frame doesn't finish it is returned as a `PartialMessage`
        when that frame arrives; its later fragments are added to it, not returned.

        Stops once `room` messages have started (None: no limit) and none is still
        arriving: the continuation frames of a started message need no room (the message
        already counts). What isn't parsed yet stays buffered for the next call, and
        `paused` is set. After our close frame was sent, parsing goes on past `room` to
        reach the server's close frame, dropping the messages that don't fit (rule 1).
        Sets `wants_data` when everything received has been parsed.
        """
        received: list[Data | PartialMessage | PongReceived[W]] = []
        self.paused = False
        if not self._parsing:
            return received
        closing = self.phase is Phase.CLOSE_SENT
        if room is not None and room <= 0 and self._partial is None and not closing:
            self.paused = True
            return received
        if self.wants_data:
            return received  # nothing arrived since everything was parsed
        messages = 0
        while True:
            if self._wsproto_fed:
                messages = self._parse_events(room, received, messages)
                if messages < 0:
                    return received  # paused, or nothing more will be parsed
                self._wsproto_fed = False
            if self._inbox_start == len(self._inbox):
                break
            if self._frame_left:
                messages = self._on_event(self._take_payload(), room, received, messages)
                if messages < 0:
                    return received
                continue
            # While a message is arriving, its continuation frames come next (RFC 6455
            # §5.4): wsproto, which holds that message's state, takes them.
            if self._fast and self._partial is None:
                assert parse_frames is not None  # _fast needs it
                max_size = -1 if self._whole_limit is None else self._whole_limit
                limit = -1 if room is None or closing else room - messages
                batch, self._inbox_start = parse_frames(
                    self._inbox, self._inbox_start, limit, max_size
                )
                if batch:
                    messages = self._take_whole(batch, room, received, messages)
                    if room is not None and messages >= room and not closing:
                        self.paused = True  # the rest stays in the inbox (backpressure)
                        return received
            if not self._next_frame():
                break  # the next frame's header isn't all here
        self.wants_data = True
        return received

    def _take_whole(
        self,
        batch: list[str | bytes],
        room: int | None,
        received: list[Data | PartialMessage | PongReceived[W]],
        messages: int,
    ) -> int:
        """Queue the whole messages `parse_frames` took; return the count of messages."""
        if self._trace is not None:
            for message in batch:
                self._trace(f"< {_describe_data(message, first=True, fin=True)}")
        if room is not None and messages + len(batch) > room:
            # CLOSE_SENT with a full queue (rule 1).
            kept = max(room - messages, 0)
            self.dropped += len(batch) - kept
            del batch[kept:]
        received += batch
        return messages + len(batch)

    def _next_frame(self) -> bool:
        """Start the frame at the start of the inbox, which `parse_frames` didn't take;
        return False if its header isn't all here yet.

        A whole message that hasn't all arrived is streamed from the inbox as it comes
        (`_take_payload`): wsproto would copy it three times. Any other frame (and all of
        the inbox once the fast path is off) goes to wsproto, which then holds at most this
        one frame, with the continuation frames right behind it (`_fragments_end`); the
        bytes of it that haven't arrived are `_owed` to it, and `receive_data` passes them
        on.
        """
        inbox, start = self._inbox, self._inbox_start
        end = len(inbox)
        if self._fast:
            extent = frame_extent(inbox, start, rsv1=self._deflate is not None)
            if extent is None:
                return False
            first, payload_start, frame_end = extent
            if frame_end == INVALID_FRAME:
                self._fast = False  # wsproto fails the connection: the stream is its
            elif (
                frame_end > end
                and (first == 0x81 or first == 0x82)
                and self._partial is None
                and (self._whole_limit is None or frame_end - payload_start <= self._whole_limit)
            ):
                self._inbox_start = payload_start
                self._frame_left = frame_end - payload_start
                self._frame_decoder = _UTF8_DECODER() if first == 0x81 else None
                self._frame_size = None if first == 0x81 else self._frame_left
                return True
            elif frame_end <= end:
                end = self._fragments_end(first, frame_end)
            else:
                self._owed = frame_end - end
        self._ws.receive_data(bytes(inbox[start:end]))
        self._wsproto_fed = True
        if end == len(inbox):
            self._inbox, self._inbox_start = b"", 0
        else:
            self._inbox_start = end
        return True

    def _fragments_end(self, first: int, end: int) -> int:
        """Where the frames that go to wsproto together end, the first of them ending at
        `end` with its first byte `first`.

        A data frame that doesn't end its message is followed by the message's continuation
        frames (RFC 6455 §5.4): the ones all in the inbox go with it, up to and including
        the last, so that wsproto parses them in one pass rather than one pass each. They
        need no room in the queue (their message already counts), and wsproto judges each as
        it would one at a time. Any other frame stops the run.
        """
        inbox = self._inbox
        rsv1 = self._deflate is not None
        while not first & 0x80 and first & 0x0F <= OPCODE_BINARY:
            extent = frame_extent(inbox, end, rsv1=rsv1)
            if extent is None:
                break
            first, _, frame_end = extent
            if first & 0x0F != OPCODE_CONTINUATION or not end < frame_end <= len(inbox):
                break
            end = frame_end
        return end

    def _take_payload(self) -> Event:
        """The part of the streamed frame's payload in the inbox, as the event wsproto
        would give for it (or the close event of its failure: invalid UTF-8 is 1007).
        """
        inbox, start = self._inbox, self._inbox_start
        end = min(start + self._frame_left, len(inbox))
        payload = inbox[start:end]
        self._inbox_start = end
        self._frame_left -= end - start
        finished = not self._frame_left
        decoder = self._frame_decoder
        if decoder is None:
            return BytesMessage(data=payload, frame_finished=finished, message_finished=finished)
        try:
            text = decoder.decode(payload, finished)
        except UnicodeDecodeError as exc:
            return CloseConnection(code=CloseReason.INVALID_FRAME_PAYLOAD_DATA, reason=str(exc))
        return TextMessage(data=text, frame_finished=finished, message_finished=finished)

    def _parse_events(
        self,
        room: int | None,
        received: list[Data | PartialMessage | PongReceived[W]],
        messages: int,
    ) -> int:
        """Take wsproto's events into `received`; return the count of messages, or -1 if
        parsing stops here (`paused`, or nothing more will be parsed).
        """
        for event in self._ws.events():
            messages = self._on_event(event, room, received, messages)
            if messages < 0:
                return -1
        return messages

    def _on_event(
        self,
        event: Event,
        room: int | None,
        received: list[Data | PartialMessage | PongReceived[W]],
        messages: int,
    ) -> int:
        """Take one frame's event into `received`; return the count of messages, or -1 if
        parsing stops here (`paused`, or nothing more will be parsed).
        """
        if self._trace is not None:
            self._trace(f"< {_describe(event)}")
        if isinstance(event, (TextMessage, BytesMessage)):
            message = self._on_data(event)
            if message is not None:
                if room is None or messages < room:
                    received.append(message)
                    messages += 1
                else:
                    # CLOSE_SENT with a full queue (rule 1).
                    self.dropped += 1
                    if type(message) is PartialMessage:
                        message.abandon()
        elif isinstance(event, Ping):
            if self.phase is Phase.OPEN:
                if self.pongs_deferred:
                    # A server that sends pings and reads nothing would have a pong queued
                    # for each, without bound. Only the latest needs one (RFC 6455 §5.5.3).
                    self._deferred_pong = bytes(event.payload)
                else:
                    # RFC 6455 §5.5.2: answer with a pong carrying the same payload.
                    self._send_control(event.response())
        elif isinstance(event, Pong):
            acknowledged = self._acknowledge(bytes(event.payload))
            if acknowledged:
                received.append(PongReceived(acknowledged))
        elif isinstance(event, CloseConnection):  # pragma: no branch (no other events)
            self._on_close(event)
        if not self._parsing:
            return -1
        if (
            room is not None
            and messages >= room
            and self._partial is None
            and self.phase is not Phase.CLOSE_SENT
        ):
            self.paused = True  # the rest stays buffered (backpressure)
            return -1
        return messages

    def _on_data(self, event: TextMessage | BytesMessage) -> Data | PartialMessage | None:
        """Take a frame's data (or the part of it that arrived); return a message that is
        complete in this one event, or the `PartialMessage` it starts.
        """
        size, self._frame_size = self._frame_size, None
        if self._discarding:
            return None
        # wsproto makes bytes (its type says bytes | bytearray).
        chunk: str | bytes = event.data  # type: ignore[assignment]
        deflate = self._deflate
        if self._fragment_limit is not None and self._fragment_limit.too_big is not None:
            self._fail_too_big(self._fragment_limit.too_big, self._fragment_limit.max_size, True)
            return None
        if self.max_size is not None:
            if isinstance(chunk, str):
                self._size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8"))
            else:
                self._size += len(chunk)
            inflated = 0 if deflate is None else deflate.inflated_size
            if self._size > self.max_size or inflated > self.max_size:
                self._fail_too_big(max(self._size, inflated), self.max_size, False)
                return None
        if deflate is not None and deflate.too_big:
            # What passed its limit while inflating is then the frame (the message's was
            # checked above).
            assert self.max_fragment_size is not None
            self._fail_too_big(deflate.frame_inflated_size, self.max_fragment_size, True)
            return None
        partial = self._partial
        started = None
        if partial is None:
            if event.message_finished:
                self._size = 0
                return chunk
            partial = started = self._partial = PartialMessage(isinstance(chunk, str), size)
        if chunk and not partial.abandoned:
            partial.add(chunk)
        if event.message_finished:
            self._finish_message(partial)
        return started

    def _fail_too_big(self, size: int, limit: int, fragment: bool) -> None:
        # RFC 6455 §7.4.1: 1009, a message too big to process. The stream is intact: the
        # rest is discarded, and the server's close frame still read (rule 3).
        self._fail_on_input(
            Close(1009, MESSAGE_TOO_BIG_REASON),
            PayloadTooBig(size, limit, fragment=fragment),
            stream_intact=True,
        )

    def _finish_message(self, partial: PartialMessage) -> None:
        # Its last fragment arrived: the next data frame starts a new message (§5.4).
        partial.complete = True
        self._partial = None
        self._size = 0

    def _abandon_partial(self) -> None:
        # The message being received will never be complete.
        if self._partial is not None:
            self._partial.abandon()
            self._partial = None

    def _on_close(self, event: CloseConnection) -> None:
        state = self._ws.state
        if state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            # wsproto reports a frame it can't parse as a CloseConnection without changing
            # state: the server broke the protocol (bad opcode, bad UTF-8 → 1007, ...).
            reason = event.reason or "protocol error"
            cause = ProtocolError(f"server violated the protocol: {reason}", event.code)
            self._fail_on_input(Close(event.code, reason), cause, stream_intact=False)
            return
        self.close_rcvd = Close(int(event.code), event.reason or "")
        self._abandon_partial()
        self._parsing = False
        if self.phase is Phase.FAILING:
            # Rule 4: the failure's close frame answers, once committed. Nothing else may
            # follow the server's close frame (RFC 6455 §5.5.1): no more sending.
            self.state = State.CLOSING
            return
        if state is ConnectionState.REMOTE_CLOSING:
            # RFC 6455 §5.5.1: answer a close with a close, echoing the status code.
            self.close_rcvd_then_sent = True
            self.close_sent = Close(int(event.code), event.reason or "")
            self._queue_data(self._ws.send(event.response()))
            if self._trace is not None:
                self._trace(f"> {_describe(event.response())}")
        # Otherwise (CLOSED) our close went first: the handshake is now complete.
        self._enter(Phase.CLOSE_EXCHANGED)

    def _fail_on_input(self, close: Close, cause: BaseException, *, stream_intact: bool) -> None:
        """Bad input: record it, defer our close frame (rule 2), and stop parsing or
        discard the rest of the data (rule 3).
        """
        self._abandon_partial()
        self._size = 0
        self._fast = False  # what follows bad input is wsproto's to judge
        if stream_intact:
            self._discarding = True
            if self._deflate is not None:
                self._deflate.discard()
        else:
            self._parsing = False
        if self.failure is not None:
            return  # already failing (or closing after a failure): the first cause stays
        self.failure = cause
        if self.phase is Phase.OPEN:
            self._failure_close = close
            self._enter(Phase.FAILING)

    def _acknowledge(self, payload: bytes) -> list[W]:
        if payload not in self._pings:
            return []  # an unsolicited pong is allowed and ignored (RFC 6455 §5.5.3)
        waiting = list(self._pings)
        return [self._pings.pop(earlier) for earlier in waiting[: waiting.index(payload) + 1]]

    def abandon_pings(self) -> list[W]:
        """Forget every outstanding ping (the connection closed); return their waiters."""
        waiters = list(self._pings.values())
        self._pings.clear()
        return waiters

    # -- sending --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise self.close_exc()

    def _check_not_fragmenting(self) -> None:
        if self._fragmenting is not None:
            # RFC 6455 §5.4: the frames of two data messages can't interleave.
            raise ConcurrencyError("a message is being sent in fragments; finish it first")

    def send_message(
        self,
        message: Data | bytearray | memoryview,
        *,
        compress: bool | None = None,
        text: bool | None = None,
    ) -> None:
        """Queue one message: `str` as text, bytes-like as binary, unless `text` says
        otherwise: True sends bytes as text, False sends a str's UTF-8 as binary.

        `compress` (with permessage-deflate negotiated): True compresses the message, False
        sends it uncompressed (RFC 7692 §6: RSV1 clear; the compression context is left as
        it was), None decides by `compression_threshold`. Without deflate it is ignored.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: the message is neither str nor bytes-like.
            UnicodeDecodeError: `text` is True and the bytes aren't UTF-8 (nothing is
                queued).
        """
        self._check_open()
        self._check_not_fragmenting()
        self._queue_message([_payload(message)], compress, text)

    def send_fragments(
        self,
        fragments: Sequence[Data | bytearray | memoryview],
        *,
        compress: bool | None = None,
        text: bool | None = None,
    ) -> None:
        """Queue one message made of several frames, one per fragment (RFC 6455 §5.4).

        Nothing is queued unless every fragment is valid, so a message is never half-sent.
        An empty sequence sends nothing. `compress` and `text` as in `send_message`.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: fragments mix str and bytes, or one is neither.
            UnicodeDecodeError: `text` is True and the fragments, joined, aren't UTF-8.
        """
        self._check_open()
        self._check_not_fragmenting()
        payloads = [_payload(fragment) for fragment in fragments]
        if not payloads:
            return
        is_text = isinstance(payloads[0], str)
        if any(isinstance(payload, str) is not is_text for payload in payloads):
            raise TypeError("all fragments of a message must be str, or all bytes-like")
        self._queue_message(payloads, compress, text)

    def _queue_message(
        self, payloads: Sequence[str | bytes], compress: bool | None, text: bool | None
    ) -> None:
        # One message: the first frame carries the opcode, the others are continuations,
        # the last has FIN (RFC 6455 §5.4); deflate runs across the whole message.
        is_text = isinstance(payloads[0], str)
        if text is not None and bool(text) is not is_text:
            is_text = not is_text
            payloads = self._retyped(payloads, is_text)
        last = len(payloads) - 1
        if self._trace is not None:
            for index, payload in enumerate(payloads):
                frame = _describe_data(payload, first=index == 0, fin=index == last, text=is_text)
                self._trace(f"> {frame}")
        datas = [p.encode("utf-8") if isinstance(p, str) else p for p in payloads]
        deflate = self._deflate
        if deflate is not None and compress is None and self.compression_threshold is not None:
            compress = sum(len(data) for data in datas) >= self.compression_threshold
        if not self._own_framing:
            if deflate is not None:
                deflate.skip_message = compress is False  # read by wsproto's hook
            for index, payload in enumerate(payloads):
                self._queue_data(self._ws.send(_message(payload, finished=index == last)))
            return
        if compress is False:
            deflate = None
        opcode = OPCODE_TEXT if is_text else OPCODE_BINARY
        for index, data in enumerate(datas):
            rsv1 = False
            if deflate is not None:
                rsv1, data = deflate.compress(data, first=index == 0, fin=index == last)
            frame_opcode = opcode if index == 0 else OPCODE_CONTINUATION
            self._queue_data(client_frame(frame_opcode, data, fin=index == last, rsv1=rsv1))

    def _retyped(self, payloads: Sequence[str | bytes], text: bool) -> Sequence[str | bytes]:
        """The payloads of a message whose frames' type `text=` overrides: bytes sent as
        text are checked to be UTF-8 (RFC 6455 §8.1: a text message is UTF-8 text; the
        server would fail the connection, so the mistake is reported here instead).

        Our framing sends the bytes as they are; wsproto's picks the frame's type from the
        payload's, so it gets text as str and binary as bytes.

        Raises:
            UnicodeDecodeError: bytes to send as text aren't UTF-8, fragments joined.
        """
        if text and self._own_framing and all(payload.isascii() for payload in payloads):
            return payloads  # ASCII is UTF-8: checked without decoding (JSON often is)
        utf8 = _UTF8_DECODER() if text else None
        last = len(payloads) - 1
        return [
            self._framed_as(payload, text, utf8, final=index == last)
            for index, payload in enumerate(payloads)
        ]

    def _framed_as(
        self,
        payload: str | bytes,
        text: bool,
        utf8: codecs.IncrementalDecoder | None,
        *,
        final: bool,
    ) -> str | bytes:
        """A fragment as the framing takes it for a frame of type `text`: bytes sent as text
        go through `utf8` first (the message's decoder: a character may straddle fragments),
        which raises `UnicodeDecodeError` if they aren't UTF-8. Our framing sends bytes as
        they are and encodes a str; wsproto's picks the frame's type from the payload's.
        """
        if utf8 is not None:
            decoded = utf8.decode(payload, final)  # type: ignore[arg-type]
            return payload if self._own_framing else decoded
        if isinstance(payload, str) and not text and not self._own_framing:
            return payload.encode("utf-8")
        return payload

    def send_fragment(
        self,
        fragment: Data | bytearray | memoryview,
        *,
        compress: bool | None = None,
        text: bool | None = None,
    ) -> None:
        """Queue the next frame of a message sent in fragments as they come (RFC 6455
        §5.4), for a sender that doesn't have them all yet; `finish_fragments` ends it.

        The first fragment starts the message and sets its type (`text` as in
        `send_message`), and `compress` (as in `send_message`, except that None compresses:
        the size isn't known yet); later calls leave both unset. No other data message may
        be sent until it ends; control frames may.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: the fragment is neither str nor bytes-like, or isn't of the type of
                the message's first fragment.
            UnicodeDecodeError: the message is bytes sent as text and isn't UTF-8 so far
                (nothing of this fragment is queued).
        """
        self._check_open()
        payload = _payload(fragment)
        is_str = isinstance(payload, str)
        first = self._fragmenting is None
        utf8: codecs.IncrementalDecoder | None
        if first:
            is_text = is_str if text is None else bool(text)
            utf8 = _UTF8_DECODER() if is_text and not is_str else None
        elif is_str is not self._fragmenting:
            raise TypeError("all fragments of a message must be str, or all bytes-like")
        else:
            is_text, utf8 = self._fragments_text, self._fragments_utf8
        payload = self._framed_as(payload, is_text, utf8, final=False)
        if first:
            self._fragmenting = is_str
            self._fragments_text = is_text
            self._fragments_utf8 = utf8
            self._fragments_deflate = None if compress is False else self._deflate
        self._queue_fragment(payload, first=first, fin=False, text=is_text)

    def finish_fragments(self) -> None:
        """Queue the last frame (empty, with FIN) of the message `send_fragment` started.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            RuntimeError: no message is being sent in fragments.
            UnicodeDecodeError: the message is bytes sent as text and ends inside a UTF-8
                sequence; nothing is queued, and the message is still unfinished.
        """
        self._check_open()
        if self._fragmenting is None:
            raise RuntimeError("no message is being sent in fragments")
        if self._fragments_utf8 is not None:
            self._fragments_utf8.decode(b"", final=True)  # ends on a whole character
        text = self._fragments_text
        self._queue_fragment("" if text else b"", first=False, fin=True, text=text)
        self._fragmenting = None
        self._fragments_utf8 = None

    def abort_fragments(self, cause: BaseException) -> None:
        """The message `send_fragment` started can't be finished (its source raised, or
        the send was cancelled): close with 1011 (RFC 6455 §7.4.1) rather than let the
        server take what was sent for the whole message. `cause` says why, as the
        `__cause__` of what later calls raise. Received messages are still delivered.
        """
        if self._fragmenting is None:
            return
        self._fragmenting = None
        if self.state is State.OPEN:
            if self.failure is None:
                self.failure = cause
            self.send_close(1011, "fragmented message interrupted")

    def _queue_fragment(self, payload: str | bytes, *, first: bool, fin: bool, text: bool) -> None:
        if self._trace is not None:
            self._trace(f"> {_describe_data(payload, first=first, fin=fin, text=text)}")
        if not self._own_framing:
            if first and self._deflate is not None:
                self._deflate.skip_message = self._fragments_deflate is None  # for the hook
            self._queue_data(self._ws.send(_message(payload, finished=fin)))
            return
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        rsv1 = False
        if self._fragments_deflate is not None:
            rsv1, data = self._fragments_deflate.compress(data, first=first, fin=fin)
        opcode = (OPCODE_TEXT if text else OPCODE_BINARY) if first else OPCODE_CONTINUATION
        self._queue_data(client_frame(opcode, data, fin=fin, rsv1=rsv1))

    def send_ping(self, payload: bytes, waiter: W) -> None:
        """Queue a ping; its pong will be reported by a `PongReceived` carrying `waiter`.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ConcurrencyError: a ping with the same payload is still waiting for its pong.
            ValueError: the payload is longer than 125 bytes (RFC 6455 §5.5).
        """
        self._check_open()
        _check_control_payload(payload)
        if payload in self._pings:
            raise ConcurrencyError("already waiting for a pong with the same payload")
        self._pings[payload] = waiter
        self._send_control(Ping(payload=payload))

    @property
    def pong_owed(self) -> bool:
        """True while a ping received when `pongs_deferred` was set waits for its pong."""
        return self._deferred_pong is not None

    def answer_deferred_pong(self) -> None:
        """Queue the pong owed to the latest ping that `pongs_deferred` held back, if any:
        the driver calls it once the server takes what is written again. None is sent once
        the closing handshake has started, as for any ping.
        """
        payload, self._deferred_pong = self._deferred_pong, None
        if payload is not None and self.phase is Phase.OPEN:
            self._send_control(Pong(payload=payload))

    def ping_pending(self, payload: bytes) -> bool:
        """True while a ping with this payload waits for its pong."""
        return payload in self._pings

    def send_pong(self, payload: bytes) -> None:
        """Queue an unsolicited pong (RFC 6455 §5.5.3: a unidirectional heartbeat).

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ValueError: the payload is longer than 125 bytes (RFC 6455 §5.5).
        """
        self._check_open()
        _check_control_payload(payload)
        self._send_control(Pong(payload=payload))

    def send_close(self, code: int = 1000, reason: str | None = "") -> None:
        """Start the closing handshake (RFC 6455 §7.1.2); no-op if it has already started.
        In FAILING, the failure's close frame goes out instead: its code says more.

        Raises:
            ProtocolError: the code or reason may not be sent (see `validate_close`).
        """
        reason = validate_close(code, reason)
        if self.phase is Phase.FAILING:
            self.commit_failure()
        elif self.phase is Phase.OPEN:
            self._queue_close(Close(int(code), reason))  # a plain int, given a CloseCode
            self._enter(Phase.CLOSE_SENT)

    def fail(self, code: int, reason: str, cause: BaseException) -> None:
        """Fail the connection now (RFC 6455 §7.1.7): send a close frame if still possible,
        stop parsing, and record `cause` as the reason every later call raises (rule 5).
        """
        self._parsing = False
        self._abandon_partial()
        if self.failure is None:
            self.failure = cause
        if self.phase is Phase.OPEN:
            self._queue_close(Close(code, reason))
            self._enter(Phase.CLOSE_SENT)
        elif self.phase is Phase.FAILING:
            self.commit_failure()

    def commit_failure(self) -> None:
        """Queue the deferred close frame of a failure detected in received data (rule 2)."""
        if self.phase is not Phase.FAILING:
            return
        close, self._failure_close = self._failure_close, None
        assert close is not None  # set on entering FAILING
        self._queue_close(close)
        if self.close_rcvd is None:
            self._enter(Phase.CLOSE_SENT)
        else:
            self.close_rcvd_then_sent = True
            self._enter(Phase.CLOSE_EXCHANGED)

    def _queue_close(self, close: Close) -> None:
        # Our close follows the data frames already queued (rule 8).
        self.close_sent = close
        self.close_rcvd_then_sent = False
        event = CloseConnection(code=close.code, reason=close.reason)
        self._queue_data(self._ws.send(event))
        if self._trace is not None:
            self._trace(f"> {_describe(event)}")

    def _send_control(self, event: Ping | Pong) -> None:
        self._queue_control(self._ws.send(event))
        if self._trace is not None:
            self._trace(f"> {_describe(event)}")

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


_TRACE_PREVIEW = 40  # characters (or bytes) of a payload shown in a trace line


def _describe_data(
    payload: str | bytes | bytearray, *, first: bool, fin: bool, text: bool | None = None
) -> str:
    """A data frame, for tracing: its type (CONT for a continuation; `text` says whether it
    is text, else the payload's type does), the start of its payload, its size, and whether
    more of the message follows.
    """
    is_text = isinstance(payload, str) if text is None else text
    kind = ("TEXT" if is_text else "BINARY") if first else "CONT"
    size = len(payload.encode("utf-8")) if isinstance(payload, str) else len(payload)
    more = "…" if len(payload) > _TRACE_PREVIEW else ""
    shown = (
        payload[:_TRACE_PREVIEW] if isinstance(payload, str) else bytes(payload[:_TRACE_PREVIEW])
    )
    return f"{kind} {shown!r}{more} [{size} bytes{'' if fin else ', more'}]"


def _describe(event: Event) -> str:
    """A frame wsproto parsed (or that we send), for tracing. wsproto gives a frame's data
    as it arrives, so a received "frame" may be the part of one that one read held.
    """
    if isinstance(event, (TextMessage, BytesMessage)):
        return _describe_data(event.data, first=True, fin=event.message_finished)
    if isinstance(event, (Ping, Pong)):
        return f"{type(event).__name__.upper()} {bytes(event.payload)!r}"
    if isinstance(event, CloseConnection):
        return f"CLOSE {event.code} {event.reason or ''}".rstrip()
    return type(event).__name__  # pragma: no cover (none other comes after the handshake)


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
