"""The anyio driver: `ClientConnection` and its reader, writer and heartbeat tasks.

This module moves bytes between the transport and `ClientProtocol` and wakes tasks; the
protocol rules live in `_protocol`. The tasks run in the task group that `open_websocket`
owns; none of them raises into it: a failure is recorded in the protocol, and every waiting
or later call raises it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import anyio.abc
import sniffio
from anyio.abc import SocketAttribute

from ._exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidMessageType,
)
from ._protocol import ClientProtocol, PongReceived, State
from ._types import Data, Request, Response

_TRANSPORT_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_STOP_GRACE = 1.0  # seconds the tasks get to end by themselves once the connection is closed


class Event(Protocol):
    """What the driver needs of an event; asyncio's and trio's own events both are one."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> Any: ...


class _AsyncioEvent:
    """An asyncio event that allocates nothing until somebody waits.

    asyncio.Event allocates a deque (760 bytes) up front; a connection keeps several
    events, mostly never waited on, so this one makes a list of futures on demand.
    """

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            for waiter in self._waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    async def wait(self) -> None:
        if self._value:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)


def event_class() -> Callable[[], Event]:
    """The running backend's own kind of event.

    anyio.Event() looks the backend up on every creation; the driver creates events per
    message, so it picks the class once per connection. Both are cancelled by anyio's
    cancel scopes like any other await.
    """
    if sniffio.current_async_library() == "asyncio":
        return _AsyncioEvent
    import trio

    return trio.Event


@dataclass(frozen=True)
class Limits:
    """The flow-control and timing options of a connection (validated by `_client`)."""

    max_queue_high: int | None
    max_queue_low: int | None
    read_limit: int
    write_limit_high: int
    write_limit_low: int
    close_timeout: float | None
    ping_interval: float | None
    ping_timeout: float | None


class PongWaiter(Awaitable[float]):
    """What `ClientConnection.ping()` returns: await it for the round-trip time in seconds.

    Raises (when awaited):
        ConnectionClosed: the connection closed before the pong arrived.
    """

    __slots__ = ("_connection", "_event", "_latency", "sent_at")

    def __init__(self, connection: ClientConnection, sent_at: float) -> None:
        self._connection = connection
        self._event = connection._new_event()
        self._latency: float | None = None
        self.sent_at = sent_at

    def _set(self, latency: float | None) -> None:
        self._latency = latency
        self._event.set()

    def done(self) -> bool:
        """True once the pong arrived or the connection closed."""
        return self._event.is_set()

    async def wait(self) -> float:
        """Wait for the pong and return the round-trip time in seconds. Cancel-safe."""
        await self._event.wait()
        if self._latency is None:
            raise self._connection._protocol.close_exc()
        return self._latency

    def __await__(self) -> Generator[Any, None, float]:
        return self.wait().__await__()


class ClientConnection:
    """An open WebSocket connection; `open_websocket` creates it.

    Use it inside `async with open_websocket(...) as ws:`; leaving the block closes it.
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        protocol: ClientProtocol,
        *,
        request: Request,
        response: Response,
        subprotocol: str | None,
        limits: Limits,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        initial_data: bytes = b"",
    ) -> None:
        self._stream = stream
        self._protocol = protocol
        self._limits = limits
        self.request = request
        """The opening handshake request that was sent."""
        self.response = response
        """The server's 101 response to the opening handshake."""
        self.subprotocol = subprotocol
        """The subprotocol the server chose, or None."""
        self.logger = logger
        """The logger of this connection."""
        self.latency: float = 0.0
        """The round-trip time of the latest ping, in seconds (0 until a pong arrives)."""
        self.local_address: Any = stream.extra(SocketAttribute.local_address, None)
        """The local address: (host, port) for TCP, a path for a Unix socket."""
        self.remote_address: Any = stream.extra(SocketAttribute.remote_address, None)
        """The server's address: (host, port) for TCP, a path for a Unix socket."""

        self._messages: deque[Data] = deque()
        self._message_arrived: Event | None = None  # set when a receiver waits
        self._queue_space: Event | None = None  # set when the reader is paused
        self._new_event = event_class()
        self._outbox_ready = self._new_event()
        self._drained: Event | None = None  # set when a sender waits for room
        self._transport_closed = self._new_event()
        self._pong_waiters: dict[bytes, PongWaiter] = {}
        self._receiving = False
        self._in_flight = 0
        self._initial_data = initial_data  # what followed the handshake response
        self._task_scopes: set[anyio.CancelScope] = set()
        self._stream_closed = False
        self._failure_committed: Event | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        """`State.OPEN`, `State.CLOSING` or `State.CLOSED`."""
        return self._protocol.state

    @property
    def closed(self) -> bool:
        """True once the connection is closed (the transport ended)."""
        return self._transport_closed.is_set()

    @property
    def close_code(self) -> int | None:
        """The close code received from the server: None while the connection isn't closed,
        1006 if it closed without a close frame (RFC 6455 §7.1.5).
        """
        if not self.closed:
            return None
        rcvd = self._protocol.close_rcvd
        return 1006 if rcvd is None else rcvd.code

    @property
    def close_reason(self) -> str | None:
        """The close reason received from the server: None while the connection isn't
        closed, "" if there was none.
        """
        if not self.closed:
            return None
        rcvd = self._protocol.close_rcvd
        return "" if rcvd is None else rcvd.reason

    # -- receiving ------------------------------------------------------------------------

    async def recv(self, timeout: float | None = None) -> Data:
        """Receive the next message: `str` for text, `bytes` for binary.

        Cancel-safe: if the call is cancelled (or times out), no message is lost; the next
        call returns it. Messages that arrived before the server closed are returned before
        the close is reported.

        Args:
            timeout: seconds to wait; None waits forever. Sugar for `anyio.fail_after`.

        Raises:
            ConnectionClosedOK: the connection closed normally and no message is left.
            ConnectionClosedError: the connection closed abnormally; `__cause__` says why.
            PayloadTooBig: the next message exceeded `max_size` (the connection is closed
                with 1009).
            TimeoutError: no message within `timeout` seconds.
            ConcurrencyError: another task is already waiting in `recv`.
        """
        if self._receiving:
            raise ConcurrencyError("another task is already receiving on this connection")
        self._receiving = True
        try:
            with nullcontext() if timeout is None else anyio.fail_after(timeout):
                messages = self._messages
                while not messages:
                    if self._protocol.failure_pending:
                        # Every message before the bad input has been taken (and could be
                        # answered): now the close frame goes out.
                        self._commit_failure()
                    # Reported once the transport is closed, as in `websockets`: then
                    # `closed`, `close_code` and the exception agree.
                    if self._transport_closed.is_set():
                        raise self._protocol.receive_exc()
                    self._message_arrived = self._new_event()
                    await self._message_arrived.wait()
                message = messages.popleft()
                if self._queue_space is not None and self._has_queue_room():
                    self._queue_space.set()
                return message
        finally:
            self._receiving = False

    async def receive_text(self, timeout: float | None = None) -> str:
        """Receive the next message, which must be text.

        Raises:
            InvalidMessageType: the message is binary; it is the exception's `message`.
            ConnectionClosed, PayloadTooBig, TimeoutError, ConcurrencyError: as `recv`.
        """
        message = await self.recv(timeout)
        if not isinstance(message, str):
            raise InvalidMessageType("text", message)
        return message

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """Receive the next message, which must be binary.

        Raises:
            InvalidMessageType: the message is text; it is the exception's `message`.
            ConnectionClosed, PayloadTooBig, TimeoutError, ConcurrencyError: as `recv`.
        """
        message = await self.recv(timeout)
        if not isinstance(message, bytes):
            raise InvalidMessageType("binary", message)
        return message

    async def receive_json(
        self, timeout: float | None = None, mode: Literal["text", "binary"] = "text"
    ) -> Any:
        """Receive the next message and decode it as JSON.

        Args:
            timeout: as in `recv`.
            mode: "text" expects a text message, "binary" a binary one (UTF-8 JSON).

        Raises:
            InvalidMessageType: the message has the other type.
            json.JSONDecodeError: the message isn't JSON.
            ConnectionClosed, PayloadTooBig, TimeoutError, ConcurrencyError: as `recv`.
        """
        if mode == "text":
            return json.loads(await self.receive_text(timeout))
        if mode == "binary":
            return json.loads(await self.receive_bytes(timeout))
        raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")

    def __aiter__(self) -> ClientConnection:
        return self

    async def __anext__(self) -> Data:
        """Receive the next message; the iteration ends quietly on a normal close
        (1000/1001) and raises `ConnectionClosedError` on an abnormal one.
        """
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    # -- sending --------------------------------------------------------------------------

    async def send(
        self,
        message: Data
        | bytearray
        | memoryview
        | Iterable[Data | bytearray | memoryview]
        | AsyncIterable[Data | bytearray | memoryview],
    ) -> None:
        """Send a message: `str` as text, bytes-like as binary; an iterable or async
        iterable of `str` (or of bytes-like) as one message fragmented into one frame each.

        Returns once the message is queued for the writer; waits first while more than
        `write_limit` bytes are waiting to be written (backpressure).

        Cancel-safe: the message is either queued whole or not at all, and the connection
        stays usable. The fragments of an async iterable are gathered before any is framed.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: the message (or a fragment) has an unsupported type, or fragments mix
                text and bytes.
        """
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            await self._wait_writable()
            self._protocol.send_message(message)
        elif isinstance(message, Mapping):
            raise TypeError("a dict isn't a message; use send_json() to send JSON")
        elif isinstance(message, AsyncIterable):
            fragments = [fragment async for fragment in message]
            await self._wait_writable()
            self._protocol.send_fragments(fragments)
        elif isinstance(message, Iterable):
            fragments = list(message)
            await self._wait_writable()
            self._protocol.send_fragments(fragments)
        else:
            raise TypeError(f"a message must be str or bytes-like, not {type(message).__name__}")
        self._outbox_ready.set()

    async def send_text(self, data: str) -> None:
        """Send a text message. Cancel-safe, raises as `send`; TypeError if not a str."""
        if not isinstance(data, str):
            raise TypeError(f"send_text() takes a str, not {type(data).__name__}")
        await self.send(data)

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message. Cancel-safe, raises as `send`; TypeError if not bytes-like."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_bytes() takes bytes-like data, not {type(data).__name__}")
        await self.send(data)

    async def send_json(self, data: Any, mode: Literal["text", "binary"] = "text") -> None:
        """Send `data` encoded as JSON, in a text message (mode "text") or as UTF-8 in a
        binary one (mode "binary"). Cancel-safe, raises as `send`.

        Raises:
            TypeError: `data` isn't JSON-serializable.
            ValueError: `mode` is neither "text" nor "binary".
        """
        if mode not in ("text", "binary"):
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        await self.send(text if mode == "text" else text.encode("utf-8"))

    async def ping(self, data: Data | bytearray | memoryview | None = None) -> PongWaiter:
        """Send a ping; return a `PongWaiter` that, awaited, gives the round-trip time.

        `latency = await (await ws.ping())`. A pong also acknowledges every earlier ping.

        Args:
            data: the payload (at most 125 bytes; `str` is encoded as UTF-8); random 4 bytes
                if None.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ConcurrencyError: a ping with the same payload is still waiting for its pong.
            ValueError: the payload is longer than 125 bytes.
        """
        payload = os.urandom(4) if data is None else _control_payload(data)
        while data is None and payload in self._pong_waiters:  # pragma: no cover (2**-32)
            payload = os.urandom(4)
        waiter = PongWaiter(self, anyio.current_time())
        self._protocol.send_ping(payload)
        self._pong_waiters[payload] = waiter
        self._outbox_ready.set()
        await anyio.lowlevel.checkpoint()
        return waiter

    async def pong(self, data: Data | bytearray | memoryview = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat, RFC 6455 §5.5.3).

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ValueError: the payload is longer than 125 bytes.
        """
        self._protocol.send_pong(_control_payload(data))
        self._outbox_ready.set()
        await anyio.lowlevel.checkpoint()

    # -- closing --------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection: send a close frame, wait for the server's close frame and
        for the server to close TCP (RFC 6455 §7.1.1), at most `close_timeout` seconds,
        then drop the transport. Idempotent; returns once the connection is closed.

        Raises:
            ProtocolError: the code may not be sent or the reason exceeds 123 bytes.
        """
        self._start_closing(code, reason)
        with anyio.move_on_after(_timeout(self._limits.close_timeout)):
            await self._transport_closed.wait()
        await self._abort()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed. Cancel-safe."""
        await self._transport_closed.wait()

    async def _shutdown(self, code: int, reason: str, *, wait: bool) -> None:
        """Close when the `async with` block ends: the full handshake if `wait`, else
        (the block was cancelled) only as long as it takes to write the close frame.
        """
        self._start_closing(code, reason)
        with anyio.move_on_after(_timeout(self._limits.close_timeout)):
            if wait:
                await self._transport_closed.wait()
            else:
                await self._wait_flushed()
        await self._abort(
            None
            if wait
            else ConnectionAbortedError("closed without waiting: the block was cancelled")
        )

    def _start_closing(self, code: int, reason: str) -> None:
        self._protocol.send_close(code, reason)  # commits a pending failure instead, if any
        self._outbox_ready.set()
        if self._failure_committed is not None:
            self._failure_committed.set()
        # Once closing, the reader must reach the server's close frame even if nobody reads
        # the messages in front of it; messages beyond max_queue are then dropped.
        if self._queue_space is not None:
            self._queue_space.set()

    async def _abort(self, cause: BaseException | None = None) -> None:
        """Drop the transport, whatever state the close handshake is in; `cause` explains
        the abnormal closure if the server's close frame never came.
        """
        if not self._stream_closed:
            self._stream_closed = True
            # Every caller runs shielded (a connection task, or the exit of the block), and
            # closing a socket (TLS without close_notify, as here) doesn't wait for the peer.
            with contextlib.suppress(*_TRANSPORT_ERRORS):
                await self._stream.aclose()
        self._connection_lost(cause or _CloseTimeout())

    def _connection_lost(self, cause: BaseException | None) -> None:
        if self._transport_closed.is_set():
            return
        self._protocol.receive_eof(cause)
        self._transport_closed.set()
        self._wake_everyone()
        self.logger.debug("connection closed: %s", self._protocol.close_exc())

    def _wake_everyone(self) -> None:
        for event in (self._message_arrived, self._queue_space, self._drained):
            if event is not None:
                event.set()
        self._outbox_ready.set()
        waiters, self._pong_waiters = self._pong_waiters, {}
        for waiter in waiters.values():
            waiter._set(None)

    # -- backpressure ---------------------------------------------------------------------

    def _buffered(self) -> int:
        return self._protocol.outbox_size + self._in_flight

    async def _wait_writable(self) -> None:
        if self._protocol.state is not State.OPEN:
            raise self._protocol.close_exc()
        while self._buffered() > self._limits.write_limit_high:
            await self._drained_event().wait()
            if self._protocol.state is not State.OPEN:
                raise self._protocol.close_exc()

    async def _wait_flushed(self) -> None:
        while self._buffered() and not self._transport_closed.is_set():
            await self._drained_event().wait()

    def _drained_event(self) -> Event:
        # One event shared by every waiting sender; a fresh one once it has fired.
        if self._drained is None or self._drained.is_set():
            self._drained = self._new_event()
        return self._drained

    def _has_queue_room(self) -> bool:
        low = self._limits.max_queue_low
        return low is None or len(self._messages) <= low

    # -- tasks ----------------------------------------------------------------------------

    def _start_tasks(self, task_group: anyio.abc.TaskGroup, *, heartbeat: bool) -> None:
        """Start the reader, the writer and (if enabled) the heartbeat in `task_group`.

        Each runs in a shielded scope of its own: a cancellation of the code around
        `open_websocket` must not stop them while the connection is still being closed
        (the close frame has to be written); `_stop_tasks` ends them.
        """
        tasks = [self._read_loop, self._write_loop]
        if heartbeat:
            tasks.append(self._heartbeat_loop)
        for task in tasks:
            task_group.start_soon(self._run_task, task, name=f"anyws {task.__name__}")

    async def _run_task(self, task: Callable[[], Awaitable[None]]) -> None:
        with anyio.CancelScope(shield=True) as scope:
            self._task_scopes.add(scope)
            try:
                await task()
            finally:
                self._task_scopes.discard(scope)

    def _stop_tasks(self) -> None:
        """End the tasks. Once the transport is closed, each ends by itself when next
        scheduled, even one that only starts now (cancelling costs more); a deadline makes
        sure none outstays.
        """
        deadline = anyio.current_time() + _STOP_GRACE
        for scope in self._task_scopes:
            scope.deadline = deadline

    async def _read_loop(self) -> None:
        """Read from the transport until it ends, feeding the protocol. Never raises."""
        protocol = self._protocol
        high = self._limits.max_queue_high
        read_limit = self._limits.read_limit
        data = self._initial_data
        try:
            while True:
                if data:
                    self._dispatch(protocol.receive_data(data))
                if protocol.incoming_done:
                    break
                if high is not None:
                    while len(self._messages) >= high and protocol.state is State.OPEN:
                        self._queue_space = self._new_event()
                        await self._queue_space.wait()
                        self._queue_space = None
                data = await self._stream.receive(read_limit)
            if protocol.failure_pending:
                # Bad input: the close frame waits until the messages before it are taken
                # (see ClientProtocol.commit_failure), at most close_timeout.
                self._failure_committed = self._new_event()
                with anyio.move_on_after(_timeout(self._limits.close_timeout)):
                    await self._failure_committed.wait()
                self._commit_failure()
            # The close handshake is done or the connection failed: the server closes TCP
            # first (RFC 6455 §7.1.1); give it close_timeout, reading and dropping anything.
            with anyio.move_on_after(_timeout(self._limits.close_timeout)):
                while True:
                    await self._stream.receive(read_limit)
        except anyio.EndOfStream:
            self._connection_lost(None)
        except _TRANSPORT_ERRORS as exc:
            self._connection_lost(exc)
        except Exception as exc:  # pragma: no cover (a bug in anyws: fail the connection)
            self.logger.exception("unexpected error in the reader")
            protocol.fail(1011, "internal error", exc)
            self._connection_lost(exc)
        await self._abort()

    def _commit_failure(self) -> None:
        self._protocol.commit_failure()
        self._outbox_ready.set()
        if self._failure_committed is not None:
            self._failure_committed.set()

    def _dispatch(self, received: list[Data | PongReceived]) -> None:
        protocol = self._protocol
        high = self._limits.max_queue_high
        for item in received:
            if isinstance(item, PongReceived):
                now = anyio.current_time()
                for payload in item.payloads:
                    # Every ping the protocol tracks was registered here in the same step.
                    waiter = self._pong_waiters.pop(payload)
                    self.latency = now - waiter.sent_at
                    waiter._set(self.latency)
            elif high is None or len(self._messages) < high or protocol.state is State.OPEN:
                self._messages.append(item)
            # else: closing with a full queue; the message is dropped (see _start_closing)
        if protocol.failure_pending and not self._messages:
            self._commit_failure()  # nothing arrived before the bad input: fail now
        if self._message_arrived is not None and (self._messages or protocol.incoming_done):
            self._message_arrived.set()
        if protocol.outbox_size:
            self._outbox_ready.set()
        if protocol.incoming_done:
            self._wake_everyone()

    async def _write_loop(self) -> None:
        """Write what the protocol queued, coalescing frames into one write. Never raises."""
        protocol = self._protocol
        try:
            while True:
                frames = protocol.data_to_send()
                if not frames:
                    if self._drained is not None:
                        self._drained.set()
                    if self._transport_closed.is_set():
                        return  # nothing left to write, ever
                    self._outbox_ready = self._new_event()
                    await self._outbox_ready.wait()
                    continue
                data = frames[0] if len(frames) == 1 else b"".join(frames)
                self._in_flight = len(data)
                await self._stream.send(data)
                self._in_flight = 0
                if self._drained is not None and self._buffered() <= self._limits.write_limit_low:
                    self._drained.set()
        except _TRANSPORT_ERRORS as exc:
            self._in_flight = 0
            self._connection_lost(exc)

    async def _heartbeat_loop(self) -> None:
        """Ping every `ping_interval`; fail the connection with 1011 if a pong takes longer
        than `ping_timeout`. Never raises.
        """
        interval = self._limits.ping_interval
        assert interval is not None
        while True:
            # Sleeps until the next ping, or ends as soon as the connection is closed.
            with anyio.move_on_after(interval):
                await self._transport_closed.wait()
            if self._protocol.state is not State.OPEN:
                return
            waiter = await self.ping()
            if self._limits.ping_timeout is None:
                continue
            with anyio.move_on_after(self._limits.ping_timeout):
                try:
                    await waiter
                except ConnectionClosed:
                    return
            if not waiter.done():
                self.logger.debug("keepalive ping timeout: failing the connection")
                self._protocol.fail(
                    1011,
                    "keepalive ping timeout",
                    TimeoutError(f"no pong within ping_timeout={self._limits.ping_timeout}s"),
                )
                self._wake_everyone()
                # The peer is unresponsive: write the close frame if the socket takes it,
                # then drop the transport without waiting for an answer.
                with anyio.move_on_after(_timeout(self._limits.close_timeout)):
                    await self._wait_flushed()
                await self._abort()
                return


class _CloseTimeout(TimeoutError):
    def __init__(self) -> None:
        super().__init__("the server didn't complete the closing handshake within close_timeout")


def _timeout(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds


def _control_payload(data: Data | bytearray | memoryview) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"a ping or pong payload must be str or bytes-like, not {type(data).__name__}")
