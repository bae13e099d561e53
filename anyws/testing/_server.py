"""A WebSocket server that a test scripts, in the test's own event loop (trio or asyncio).

Each accepted connection gets a reader task that parses the client's frames as they arrive
(wsproto, server side), answers pings and the client's Close, and queues the messages for
`recv()`; the handler, or the test itself through `Server.accept()`, decides what the server
sends and when it misbehaves. Everything runs in the task group of `serve()`, so nothing
outlives the `async with` block.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto import ConnectionType, WSConnection, events
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import (
    Request as WsprotoRequest,
)
from wsproto.extensions import Extension, PerMessageDeflate

from .._types import Data, Headers, Request


class ClientGone(EOFError):
    """The client closed or dropped the connection: raised by `ServerConnection.recv()` once
    every message it sent was received, and by the methods that write once the connection
    is closed. A handler may let it escape: the server expects clients to leave.
    """


class _FirstOffered:
    def __repr__(self) -> str:
        return "FIRST_OFFERED"


FIRST_OFFERED: Final = _FirstOffered()
"""`Accept(subprotocol=FIRST_OFFERED)` (the default) selects the client's first subprotocol."""


@dataclass(frozen=True)
class Accept:
    """Accept the opening handshake.

    Attributes:
        subprotocol: The subprotocol to select: `FIRST_OFFERED` (the client's first one, if
            it offered any), `None` (none), or any name (even one the client didn't offer,
            to test how it reacts).
        compression: Whether to accept permessage-deflate (RFC 7692) when offered.
        headers: Extra response headers.
    """

    subprotocol: str | _FirstOffered | None = FIRST_OFFERED
    compression: bool = True
    headers: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class Reject:
    """Refuse the opening handshake with this HTTP response; the connection is then closed.

    Attributes:
        status: The status code.
        headers: Response headers (`Content-Length` is added for the body).
        body: The response body.
    """

    status: int = 403
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""


@dataclass(frozen=True)
class RawResponse:
    """Answer the opening handshake with these bytes as they are, in place of an HTTP
    response: garbage, a truncated response, a response with a wrong accept key, or `b""`
    for no answer at all.

    Attributes:
        data: What to write.
        close: Close the connection once written (a server that hangs up); if false, it
            stays open, unread, until the client leaves or the server exits.
    """

    data: bytes
    close: bool = False


HandshakeResponse: TypeAlias = Accept | Reject | RawResponse
"""How the server answers an opening handshake."""

Handshake: TypeAlias = HandshakeResponse | Callable[[Request], HandshakeResponse]


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """Build one unmasked frame as a server sends it (RFC 6455 §5.2), for
    `ServerConnection.send_raw()`: any opcode, reserved bits or control-frame size, valid or
    not. `rsv` holds RSV1-RSV3 as bits 2-0 (`rsv=4` sets RSV1, the "compressed" bit).
    """
    if not 0 <= opcode <= 0xF or not 0 <= rsv <= 7:
        raise ValueError(f"opcode must be 0-15 and rsv 0-7, not {opcode} and {rsv}")
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([length])
    elif length < 2**16:
        head += b"\x7e" + struct.pack("!H", length)
    else:
        head += b"\x7f" + struct.pack("!Q", length)
    return head + payload


def close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    """Build a Close frame with any code, valid or not (`None`: no status code at all)."""
    payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
    return frame(0x8, payload)


_CLOSED_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError)


async def close_stream(stream: anyio.abc.ByteStream, *, reset: bool = False) -> None:
    """Close `stream`, even in a cancelled scope; `reset`: with RST instead of FIN where
    the stream is a TCP socket.
    """
    if reset:
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is not None and sock.family != socket.AF_UNIX:
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN. A socket
            # closed already raises OSError, or ValueError on uvloop (its stand-in socket).
            with contextlib.suppress(OSError, ValueError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with anyio.CancelScope(shield=True):
        await stream.aclose()


class ServerConnection:
    """One accepted WebSocket connection, as the server's handler (or the test) drives it.

    The connection reads in the background: it answers pings (unless `answer_pings` is
    false) and the client's Close, and queues the messages for `recv()`. `stop_reading()`
    pauses that reading, as a peer that stopped reading would: what the client sends then
    waits in the kernel's buffers, and pings and Close frames go unanswered.

    Cancel-safe: a cancelled `recv()` or `wait_ping()` takes nothing; writes are serialized,
    so a cancelled send never interleaves with another frame.

    Attributes:
        request: The client's opening handshake (path and every header).
        answer_pings: Whether a Ping is answered with a Pong (the default).
        close_code: The code of the client's Close frame; 1005 if it carried none, 1006 if
            the connection ended without one; `None` while open.
        close_reason: The reason of the client's Close frame.
        pings_received: Payloads of the pings the client sent, in order.
        pongs_received: Payloads of the pongs the client sent, in order.
        protocol_error: Why the server failed the connection, if the client sent a frame
            that breaks RFC 6455 (the server then sent a Close frame with the matching code
            and closed TCP).
    """

    def __init__(self, stream: anyio.abc.ByteStream, ws: WSConnection, request: Request) -> None:
        self.request = request
        self.answer_pings = True
        self.close_code: int | None = None
        self.close_reason = ""
        self.pings_received: list[bytes] = []
        self.pongs_received: list[bytes] = []
        self.protocol_error: str | None = None
        self._stream = stream
        self._ws = ws
        self._messages: deque[Data] = deque()
        self._fragments: list[Any] = []
        self._arrived = anyio.Event()
        self._closed = anyio.Event()
        self._reading = anyio.Event()
        self._reading.set()
        self._write_lock = anyio.Lock()
        self._pong_waiters: dict[bytes, Pong] = {}
        self._eof_sent = False
        self._ping_arrived = anyio.Event()
        self._pings_waited = 0

    def __repr__(self) -> str:
        state = "open" if self.close_code is None else f"closed {self.close_code}"
        return f"<ServerConnection {self.request.path} {state}>"

    @property
    def closed(self) -> bool:
        """Whether the TCP connection is closed."""
        return self._closed.is_set()

    # -- receiving ----------------------------------------------------------------------

    async def recv(self) -> Data:
        """Return the next message the client sent: `str` for text, `bytes` for binary.

        Raises:
            ClientGone: The connection is closed and every message was received.
        """
        while not self._messages:
            if self._closed.is_set():
                raise ClientGone(f"the client left (close code {self.close_code})")
            await self._arrived.wait()
            self._arrived = anyio.Event()
        return self._messages.popleft()

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        with contextlib.suppress(ClientGone):
            while True:
                yield await self.recv()

    async def wait_ping(self) -> bytes:
        """Return the payload of the client's next Ping that `wait_ping()` hasn't returned
        yet (a keepalive ping, say), waiting for it if needed.

        Raises:
            ClientGone: The connection closed before another Ping arrived.
        """
        while len(self.pings_received) <= self._pings_waited:
            if self._closed.is_set():
                raise ClientGone(f"the client left (close code {self.close_code})")
            await self._ping_arrived.wait()
            self._ping_arrived = anyio.Event()
        self._pings_waited += 1
        return self.pings_received[self._pings_waited - 1]

    def stop_reading(self) -> None:
        """Stop reading from the socket until `resume_reading()` (bytes already read but not
        yet parsed wait too).
        """
        if self._reading.is_set():
            self._reading = anyio.Event()

    def resume_reading(self) -> None:
        """Read again after `stop_reading()`."""
        self._reading.set()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        await self._closed.wait()

    async def _read(self) -> None:
        while not self._closed.is_set():
            await self._reading.wait()
            data: bytes | None = None
            with contextlib.suppress(anyio.EndOfStream, *_CLOSED_STREAM_ERRORS):
                data = await self._stream.receive()
            # Not reading means not noticing the client left either, until reading resumes.
            await self._reading.wait()
            if data is None:
                await self._close_transport()
                return
            self._ws.receive_data(data)
            for event in self._ws.events():
                await self._handle(event)

    async def _handle(self, event: Any) -> None:
        if isinstance(event, Message):
            self._fragments.append(event.data)
            if event.message_finished:
                fragments, self._fragments = self._fragments, []
                text = isinstance(event, TextMessage)
                self._messages.append("".join(fragments) if text else b"".join(fragments))
                self._arrived.set()
        elif isinstance(event, Ping):
            self.pings_received.append(bytes(event.payload))
            self._ping_arrived.set()
            if self.answer_pings and self._ws.state is ConnectionState.OPEN:
                await self._reply(event.response())
        elif isinstance(event, events.Pong):
            self.pongs_received.append(bytes(event.payload))
            waiter = self._pong_waiters.pop(bytes(event.payload), None)
            if waiter is not None:
                waiter._settle(arrived=True)
        elif isinstance(event, CloseConnection) and self._ws.state is ConnectionState.OPEN:
            # wsproto reports a frame it can't parse this way, without changing state: the
            # client broke the protocol (RFC 6455 §7.1.7: fail the connection).
            self.protocol_error = event.reason
            await self._reply(CloseConnection(event.code, event.reason))
            await self._close_transport()
        else:  # the client's Close: wsproto yields no other event once the connection is open
            self.close_code, self.close_reason = event.code, event.reason or ""
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                await self._reply(event.response())
            # RFC 6455 §7.1.1: once both Close frames are exchanged, the server closes TCP.
            await self._close_transport()

    async def _close_transport(self, *, reset: bool = False) -> None:
        if self.close_code is None:
            self.close_code = 1006
        await close_stream(self._stream, reset=reset)
        for pong in self._pong_waiters.values():
            pong._settle(arrived=False)
        self._pong_waiters.clear()
        self._closed.set()
        self._arrived.set()
        self._ping_arrived.set()

    # -- sending ------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._closed.is_set():
            raise ClientGone(f"the connection is closed (close code {self.close_code})")
        if self._eof_sent:
            raise ClientGone("the server dropped the connection")

    async def _send_event(self, event: Any) -> None:
        self._check_writable()  # before wsproto records the event as sent
        await self._write(self._ws.send(event))

    async def _write(self, data: bytes) -> None:
        async with self._write_lock:
            self._check_writable()  # under the lock: drop() may have sent EOF meanwhile
            try:
                await self._stream.send(data)
            except _CLOSED_STREAM_ERRORS:
                await self._close_transport()
                raise ClientGone("the client dropped the connection") from None

    async def _reply(self, event: Any) -> None:
        # The reader's own writes (a Pong, a Close) may find the client gone: the reader
        # then ends as if it had read EOF.
        with contextlib.suppress(ClientGone):
            await self._send_event(event)

    def _data_event(self, data: Data, *, finished: bool = True) -> Message[Any]:
        if isinstance(data, str):
            return TextMessage(data, message_finished=finished)
        if isinstance(data, bytes | bytearray | memoryview):
            return BytesMessage(bytes(data), message_finished=finished)
        raise TypeError(f"a message is str or bytes, not {type(data).__name__}")

    async def send(self, message: Data) -> None:
        """Send one message in one frame (compressed if permessage-deflate was agreed).

        Raises:
            ClientGone: The connection is closed.
            TypeError: `message` is neither `str` nor bytes-like.
        """
        await self._send_event(self._data_event(message))

    async def send_fragments(self, fragments: Sequence[Data]) -> None:
        """Send one message split into these frames (RFC 6455 §5.4), all of one type.

        Raises:
            ClientGone: The connection is closed.
            ValueError: `fragments` is empty or mixes `str` and `bytes`.
        """
        if not fragments or len({isinstance(f, str) for f in fragments}) > 1:
            raise ValueError("fragments must be a non-empty sequence of all str or all bytes")
        last = len(fragments) - 1
        for index, fragment in enumerate(fragments):
            await self._send_event(self._data_event(fragment, finished=index == last))

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are: hand-made frames (see `frame()`), garbage, half a frame.

        Raises:
            ClientGone: The connection is closed.
        """
        await self._write(bytes(data))

    async def ping(self, payload: bytes = b"") -> Pong:
        """Send a Ping; return the `Pong` to wait for (pongs are also recorded in
        `pongs_received`).

        Raises:
            ClientGone: The connection is closed.
        """
        pong = self._pong_waiters.setdefault(bytes(payload), Pong())
        await self._send_event(Ping(payload))
        return pong

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait for it to end: send a Close frame, wait for
        the client's, then close TCP (RFC 6455 §7.1.1). While reading is stopped, TCP is
        closed right after the Close frame. After `drop()`, only waits for TCP to close.

        Raises:
            ClientGone: The client dropped the connection before the Close frame was sent.
        """
        if self._closed.is_set():
            return
        if self._ws.state is ConnectionState.OPEN and not self._eof_sent:
            await self._send_event(CloseConnection(code, reason))
        if not self._reading.is_set():
            await self._close_transport()
        await self._closed.wait()

    async def drop(self) -> None:
        """End the connection without a Close frame (the client sees 1006): send FIN, then
        read and discard until the client closes its end, so that TCP closes gracefully
        (closing a socket with unread data would send RST, losing what was in flight;
        `abort()` does that on purpose). Returns once FIN is sent.
        """
        if self._closed.is_set() or self._eof_sent:
            return
        async with self._write_lock:
            self._eof_sent = True
            # trio's shutdown() raises a bare OSError once the client reset the socket.
            with contextlib.suppress(*_CLOSED_STREAM_ERRORS, OSError):
                await self._stream.send_eof()
        self.resume_reading()

    async def abort(self) -> None:
        """Reset the TCP connection (RST instead of FIN; a plain close on Unix sockets)."""
        if not self._closed.is_set():
            await self._close_transport(reset=True)


class Pong:
    """The answer to a ping the server sent (`ServerConnection.ping()`)."""

    def __init__(self) -> None:
        self.arrived = False
        self._settled = anyio.Event()

    def _settle(self, *, arrived: bool) -> None:
        self.arrived = arrived
        self._settled.set()

    async def wait(self) -> None:
        """Wait for the client's Pong.

        Raises:
            ClientGone: The connection closed before the Pong arrived.
        """
        await self._settled.wait()
        if not self.arrived:
            raise ClientGone("the connection closed before the pong arrived")


Handler: TypeAlias = Callable[[ServerConnection], Awaitable[None]]


async def echo(connection: ServerConnection) -> None:
    """A handler that sends every message back until the client leaves."""
    async for message in connection:
        await connection.send(message)


def _request_of(event: WsprotoRequest) -> Request:
    """The handshake as anyws's `Request`: wsproto keeps Host, Sec-WebSocket-Protocol and
    Sec-WebSocket-Extensions apart from the other headers; they are put back.
    """
    headers = [("Host", event.host)]
    headers += [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.extra_headers]
    if event.subprotocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(event.subprotocols)))
    if event.extensions:
        offers = [e if isinstance(e, str) else e.name for e in event.extensions]
        headers.append(("Sec-WebSocket-Extensions", ", ".join(offers)))
    return Request(event.target, Headers(headers))


class Server:
    """A running test server (see `serve()`).

    Attributes:
        connections: Every accepted connection, in order.
        requests: Every opening handshake received, accepted or not, in order.
    """

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        handler: Handler | None,
        handshake: Handshake,
        address: tuple[str, int] | str,
    ) -> None:
        self.connections: list[ServerConnection] = []
        self.requests: list[Request] = []
        self._task_group = task_group
        self._handler = handler
        self._handshake = handshake
        self._address = address
        self._errors: list[Exception] = []
        self._accepted: tuple[
            MemoryObjectSendStream[ServerConnection], MemoryObjectReceiveStream[ServerConnection]
        ] = anyio.create_memory_object_stream[ServerConnection](float("inf"))
        self._running = True

    def __repr__(self) -> str:
        return f"<Server {self.uri} connections={len(self.connections)}>"

    @property
    def uri(self) -> str:
        """The URI to connect to: `ws://127.0.0.1:<port>/` (`ws://localhost/` for a Unix
        socket, with `unix_path`).
        """
        if isinstance(self._address, str):
            return "ws://localhost/"
        host, port = self._address
        return f"ws://{host}:{port}/"

    @property
    def port(self) -> int:
        """The TCP port the server listens on (0 for a Unix socket)."""
        return 0 if isinstance(self._address, str) else self._address[1]

    @property
    def unix_path(self) -> str | None:
        """The path of the Unix socket the server listens on, if it does."""
        return self._address if isinstance(self._address, str) else None

    async def accept(self) -> ServerConnection:
        """Return the next accepted connection that `accept()` hasn't returned yet, waiting
        for it if needed (the way for a test to drive a connection itself: `serve(None)`).

        Raises:
            RuntimeError: The server has stopped.
        """
        if not self._running:
            raise RuntimeError("the test server has stopped")
        return await self._accepted[1].receive()

    def attach(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one more connection over a byte stream the caller already has (one end of
        an in-memory pipe, say), as if it had been accepted.

        Raises:
            RuntimeError: The server has stopped.
        """
        if not self._running:
            raise RuntimeError("the test server has stopped")
        self._task_group.start_soon(self._serve_connection, stream)

    async def _serve_connection(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            connection = await self._handshake_on(stream)
            if connection is None:
                return
            self.connections.append(connection)
            self._accepted[0].send_nowait(connection)
            async with anyio.create_task_group() as tg:
                tg.start_soon(connection._read)
                if self._handler is not None:
                    try:
                        await self._handler(connection)
                        await connection.close()
                    except ClientGone:
                        pass
                    except Exception as exc:  # reported when the server exits
                        self._errors.append(exc)
                        await connection.drop()
                await connection.wait_closed()

    async def _handshake_on(self, stream: anyio.abc.ByteStream) -> ServerConnection | None:
        ws = WSConnection(ConnectionType.SERVER)
        received = b""
        event: Any = None
        while not isinstance(event, WsprotoRequest):
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, *_CLOSED_STREAM_ERRORS):
                return None
            received += data
            ws.receive_data(data)
            event = next(ws.events(), None)
        request = _request_of(event)
        self.requests.append(request)
        answer = self._handshake(request) if callable(self._handshake) else self._handshake
        if isinstance(answer, RawResponse):
            await stream.send(answer.data)
            with contextlib.suppress(anyio.EndOfStream, *_CLOSED_STREAM_ERRORS):
                while not answer.close:  # until the client leaves or the server stops
                    await stream.receive()
            return None
        if isinstance(answer, Reject):
            headers = [(k.encode(), v.encode()) for k, v in answer.headers]
            headers.append((b"Content-Length", str(len(answer.body)).encode()))
            response = RejectConnection(answer.status, headers, has_body=True)
            await stream.send(ws.send(response) + ws.send(RejectData(answer.body)))
            return None
        subprotocol = answer.subprotocol
        if isinstance(subprotocol, _FirstOffered):
            subprotocol = event.subprotocols[0] if event.subprotocols else None
        extensions: list[Extension] = [PerMessageDeflate()] if answer.compression else []
        extra = [(k.encode(), v.encode()) for k, v in answer.headers]
        await stream.send(ws.send(AcceptConnection(subprotocol, extensions, extra)))
        connection = ServerConnection(stream, ws, request)
        # Frames the client sent right behind its request, in the same read: wsproto's
        # server side drops them when it accepts, so they are fed again.
        ws.receive_data(received[received.index(b"\r\n\r\n") + 4 :])
        for early in ws.events():
            await connection._handle(early)
        return connection


@asynccontextmanager
async def serve(
    handler: Handler | None = echo,
    *,
    handshake: Handshake = Accept(),
    port: int = 0,
    unix_path: str | None = None,
) -> AsyncIterator[Server]:
    """Run a WebSocket test server on 127.0.0.1 (or on the Unix socket `unix_path`) for the
    duration of the block, in the current event loop (trio or asyncio).

    Args:
        handler: Runs for each accepted connection; when it returns, the server closes the
            connection with 1000. `None`: no handler; the test drives each connection it
            gets from `Server.accept()`, and connections stay open until closed.
        handshake: How to answer each opening handshake: `Accept(...)`, `Reject(...)`,
            `RawResponse(...)`, or a function of the `Request` returning one of them.
        port: The TCP port (0: any free port).
        unix_path: Listen on this Unix socket instead of TCP.

    Yields:
        The `Server`: its `uri`, its `connections`, and `accept()`.

    Raises:
        Exception: The first exception a handler raised (other than `ClientGone` and the
            stream errors of a client that left), when the block exits without its own.
    """
    listener: anyio.abc.Listener[Any]
    address: tuple[str, int] | str
    if unix_path is None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        address = ("127.0.0.1", listener.extra(anyio.abc.SocketAttribute.local_port))
    else:
        listener = await anyio.create_unix_listener(unix_path)
        address = unix_path
    async with listener, background_tasks() as tg:
        server = Server(tg, handler, handshake, address)
        tg.start_soon(listener.serve, server._serve_connection)
        try:
            yield server
        finally:
            server._running = False
            server._accepted[0].close()
            server._accepted[1].close()
    if server._errors:
        raise server._errors[0]


@asynccontextmanager
async def background_tasks() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group for the background tasks of a context manager: they are cancelled when
    its block ends, and an exception from the block comes out as itself, not wrapped in
    an ExceptionGroup the user didn't cause.
    """
    error: BaseException | None = None
    async with anyio.create_task_group() as tg:
        try:
            yield tg
        except BaseException as exc:  # re-raised below, once the tasks are gone
            error = exc
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
