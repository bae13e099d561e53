"""The anyio driver: `ClientConnection`, its reader and writer, and its heartbeat.

This module moves bytes between the transport and `ClientProtocol`, wakes tasks and keeps
deadlines; the protocol rules live in `_protocol`. None of the tasks raises into the task
group that `open_websocket` owns: a failure is recorded in the protocol, and every waiting
or later call raises it.

The reader and the writer run as tasks in a task group that the connection owns, each
shielded, so that a cancellation of the code around `open_websocket` doesn't cut a write
short or stop the close path, which the exit of the block bounds with `close_timeout`
instead. The reader is the only one that receives: when it ends, for whatever reason, the
connection is lost (`_connection_lost`), and the writer ends by itself. So once the block
has ended and queued our close frame, leaving the task group is the wait for the closing
handshake, which the reader's deadline bounds. The heartbeat is a deadline the reader
keeps too (`_heartbeat_due` when it comes), not a task of its own: an idle task per
connection, with its frames and cancel scopes, cost about a fifth of an idle connection's
memory on trio.

On asyncio's own stream there are no tasks: the transport is the writer and the reader.
An asyncio transport takes every write whole and at once, buffers what the socket doesn't
take and writes it when the socket is ready, so a writer task would only copy that work
(and cost a wake-up per message). Frames go to the transport as soon as they are queued;
the ones queued while a write already went out in the same turn of the event loop are
joined into one write at the end of that turn (`_end_write_batch`). Backpressure waits on
the transport's write buffer instead of the writer. Likewise, the transport calls the
reader back when data arrives (`_pump`), which parses it at once and wakes the receiver: a
reader task would cost a task switch per read and a task per connection. `_pump` takes
the same steps as the reader task, stops where the task would wait, and is called again
where the task would be woken; the event loop's timers keep the deadlines (the heartbeat's
among them). Any other stream (trio, a stream passed by the caller) has the two tasks
(see below for the writer over a trio socket).

On trio over a plain TCP or Unix socket (`TrioSocketStream`), the writer is idle most of
the time, and waking it costs a task switch per message: the task that queues a frame
while the writer is idle writes it to the socket itself (`_kick_writer`), and hands the
writer only what the socket didn't take. As on asyncio, that happens once per batch: the
frames queued after it, until the writer has run or data has arrived, go to the writer
and leave in one write. The writer task starts the first time a frame needs it; a
connection whose frames the socket always took never has one.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import math
import os
from collections import deque
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
)
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload

import anyio
import anyio.abc
import sniffio
from anyio.abc import SocketAttribute

from ._asyncio_stream import READ_SIZE, AsyncioStream
from ._exceptions import (
    ConcurrencyError,
    ConnectionClosedOK,
    InvalidMessageType,
)
from ._options import Limits
from ._protocol import ClientProtocol, PartialMessage, PongReceived, State
from ._trio_stream import TrioSocketStream
from ._types import Data, Request, Response

if TYPE_CHECKING:
    import uuid

    from ._speedups import MessageBuffer

FragmentT = TypeVar("FragmentT", bound=Data)

_TRANSPORT_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

# `send_json`'s encoding, compact and UTF-8 as is: made once, where `json.dumps` with these
# options would make an encoder per call (a third of encoding a small document). Encoding
# keeps no state in the encoder, so it is shared.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


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


class TaskSpawner(Protocol):
    """What the connection needs of a task group: anyio's and trio's nursery both are one."""

    def start_soon(
        self, func: Callable[[], Coroutine[Any, Any, None]], /, *args: Any, name: object = None
    ) -> object: ...


def open_task_group() -> contextlib.AbstractAsyncContextManager[TaskSpawner]:
    """The connection's task group: trio's own nursery on trio, anyio's elsewhere.

    Opening anyio's task group on trio and starting the connection's tasks in it costs
    about 2.5 times as much as a nursery (anyio wraps each task in a handle of its own),
    a tenth of a connection's setup; the tasks never raise, so both behave alike.
    """
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.open_nursery()
    return anyio.create_task_group()


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
        """Wait for the pong and return the round-trip time in seconds. Cancel-safe.

        Raises:
            ConnectionClosed: the connection closed before the pong arrived.
        """
        await self._event.wait()
        if self._latency is None:
            raise self._connection._protocol.close_exc()
        return self._latency

    def __await__(self) -> Generator[Any, None, float]:
        return self.wait().__await__()


class MessageStream(Generic[FragmentT]):
    """What `ClientConnection.recv_streaming()` returns: an async iterator over the
    fragments of the next message, as they arrive.

    Iterating again after a cancellation goes on with the next fragment. `aclose()`
    discards the rest of the message at once; otherwise the next receiving call does.
    """

    __slots__ = ("_connection", "_decode", "_decoder", "_done", "_message", "_yielded")

    def __init__(self, connection: ClientConnection, decode: bool | None) -> None:
        self._connection = connection
        self._decode = decode
        self._message: PartialMessage | None = None  # once its first fragment was taken
        self._decoder: codecs.IncrementalDecoder | None = None
        self._yielded = False
        self._done = False

    def __aiter__(self) -> MessageStream[FragmentT]:
        return self

    async def __anext__(self) -> FragmentT:
        if self._done:
            raise StopAsyncIteration
        connection = self._connection
        if self._message is not None and connection._streamed is not self:
            self._done = True
            raise ConcurrencyError(
                "another receiving call discarded the rest of this message before it ended"
            )
        if connection._receiving:
            raise ConcurrencyError("another task is already receiving on this connection")
        connection._receiving = True
        try:
            return await self._next_fragment()
        finally:
            connection._receiving = False

    async def _next_fragment(self) -> FragmentT:
        connection = self._connection
        message = self._message
        if message is None:
            if connection._streamed is not None:
                connection._streamed._discard()
            head = await connection._next_message(complete=False)
            if not isinstance(head, PartialMessage):
                fragment = head if self._decode is None else _convert(head, self._decode)
                connection._messages.popleft()
                connection._took_message()
                self._done = True
                return fragment  # type: ignore[return-value]
            if self._decode is True and not head.text:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
            head.stream()
            self._message = message = head
            connection._streamed = self
        try:
            return await self._fragment_of(message)
        except BaseException:
            if not self._yielded and not self._done:
                self._put_back(message)
            raise

    async def _fragment_of(self, message: PartialMessage) -> FragmentT:
        connection = self._connection
        while True:
            while message.fragments:
                fragment = self._convert(message.fragments[0], final=False)
                message.fragments.popleft()  # after the conversion: a failure keeps it
                if fragment:
                    self._yielded = True
                    return fragment
            if message.complete:
                # The end: a decoder may still hold an incomplete sequence (an error), and
                # an empty message is one empty fragment.
                fragment = self._convert(b"" if self._decoder else message.join(), final=True)
                self._end()
                if fragment or not self._yielded:
                    self._yielded = True
                    return fragment
                raise StopAsyncIteration
            if message.abandoned:
                # The connection failed before the last fragment; what follows is the
                # close, reported as `recv` reports it.
                self._end()
                await connection._next_message(complete=False)
                raise connection._protocol.close_exc()  # pragma: no cover (nothing follows)
            connection._awaiting_whole = False
            connection._message_arrived = connection._new_event()
            await connection._message_arrived.wait()

    def _convert(self, fragment: Data, *, final: bool) -> FragmentT:
        if self._decoder is not None:
            return self._decoder.decode(fragment, final)  # type: ignore[arg-type,return-value]
        if self._decode is False and isinstance(fragment, str):
            return fragment.encode("utf-8")  # type: ignore[return-value]
        return fragment  # type: ignore[return-value]

    def _put_back(self, message: PartialMessage) -> None:
        """Leave the message queued as if this stream never took it: it yielded nothing
        (it was cancelled, or its first fragment didn't decode), so nothing of it reached
        the application. The fragments it dropped were empty, or are the start of a UTF-8
        sequence that its decoder still holds: those bytes go back first.
        """
        if self._decoder is not None:
            pending = self._decoder.getstate()[0]
            if pending:
                message.fragments.appendleft(pending)
            self._decoder = None
        self._message = None
        self._connection._streamed = None

    def _end(self) -> None:
        """The iteration is over: the message was read to its end, or failed."""
        self._done = True
        self._release()

    def _release(self) -> None:
        # The message leaves the queue; the connection streams no message.
        connection = self._connection
        connection._streamed = None
        message = self._message
        messages = connection._messages
        if messages and messages[0] is message:
            messages.popleft()
            connection._took_message()

    def _discard(self) -> None:
        """Abandon the rest of the message: the protocol keeps no more of it. Iterating
        again raises `ConcurrencyError` (another receive took over), unless closed.
        """
        assert self._message is not None  # only a stream that took a message is current
        self._message.abandon()
        self._release()

    async def aclose(self) -> None:
        """Discard the rest of the message now, if the iteration didn't reach its end."""
        if self._message is not None and self._connection._streamed is self:
            self._discard()
        self._done = True
        await anyio.lowlevel.checkpoint()


def _recv_deadline(timeout: float) -> contextlib.AbstractContextManager[anyio.CancelScope]:
    """`recv`'s deadline; a bool is refused (see `recv`'s `TypeError`)."""
    if isinstance(timeout, bool):
        raise TypeError(
            f"recv()'s first argument is a timeout in seconds, not {timeout!r}: "
            f"for websockets' recv({timeout!r}), write recv(decode={timeout!r})"
        )
    return anyio.fail_after(timeout)


class ClientConnection:
    """An open WebSocket connection; `open_websocket` creates it.

    Use it inside `async with open_websocket(...) as ws:`; leaving the block closes it.
    """

    # Slots: a program holding thousands of connections pays for each one's attributes.
    __slots__ = (
        "__weakref__",  # a registry of open connections (a WeakSet) is a common need
        "_awaiting_whole",
        "_close_timer",
        "_closing_deadline",
        "_direct",
        "_drained",
        "_failure_committed",
        "_failure_deadline",
        "_failure_timer",
        "_fragmented_send",
        "_heartbeat_timer",
        "_heartbeat_waiter",
        "_id",
        "_in_flight",
        "_initial_data",
        "_limits",
        "_loop",
        "_message_arrived",
        "_messages",
        "_new_event",
        "_next_beat",
        "_now",
        "_outbox_ready",
        "_protocol",
        "_pumping",
        "_queue_space",
        "_reader_scope",
        "_receiving",
        "_socket_stream",
        "_stream",
        "_stream_closed",
        "_streamed",
        "_task_group",
        "_transport_closed",
        "_unsent",
        "_write_batch_end",
        "_write_batch_open",
        "_write_error",
        "_writer_started",
        "latency",
        "local_address",
        "logger",
        "remote_address",
        "request",
        "response",
        "subprotocol",
    )

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        protocol: ClientProtocol[PongWaiter],
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
        self._id: uuid.UUID | None = None
        # One look at the stream's attributes: each look builds them anew.
        attributes: Mapping[Any, Callable[[], Any]] = stream.extra_attributes
        local_address = attributes.get(SocketAttribute.local_address)
        remote_address = attributes.get(SocketAttribute.remote_address)
        self.local_address: Any = None if local_address is None else local_address()
        """The local address: (host, port) for TCP, a path for a Unix socket."""
        self.remote_address: Any = None if remote_address is None else remote_address()
        """The server's address: (host, port) for TCP, a path for a Unix socket."""

        self._messages: deque[Data | PartialMessage] = deque()
        self._receiving = False
        self._streamed: MessageStream[Any] | None = None  # streams the message at the queue's head
        self._awaiting_whole = True  # what the receiver waits for: a whole message, or a part
        # The asyncio transport as the writer (see the module's docstring), else None.
        self._direct = stream if isinstance(stream, AsyncioStream) else None
        self._new_event = _AsyncioEvent if self._direct is not None else event_class()
        # Each event is made when somebody waits on it; None while nobody does.
        self._message_arrived: Event | None = None
        self._queue_space: Event | None = None
        self._failure_committed: Event | None = None
        self._drained: Event | None = None
        # The event the idle writer waits on; None while it runs (or isn't started yet).
        self._outbox_ready: Event | None = None
        self._transport_closed = self._new_event()
        self._in_flight = 0
        # On trio's plain sockets, the task that queues a frame may write it (`_kick_writer`).
        self._socket_stream = stream if isinstance(stream, TrioSocketStream) else None
        self._unsent = b""  # what the socket didn't take of a direct write: the writer's
        # There, the writer starts when a frame first needs it, in the tasks' group.
        self._writer_started = False
        self._task_group: TaskSpawner | None = None
        self._initial_data = initial_data  # what followed the handshake response
        self._stream_closed = False
        self._write_error: BaseException | None = None
        self._write_batch_open = False  # a frame went out in this turn of the loop
        self._write_batch_end = False  # `_end_write_batch` is scheduled
        self._fragmented_send: Event | None = None  # set while a message is streamed out
        # The heartbeat: when it next acts (ping, or give up on the pong of `_heartbeat_waiter`).
        self._next_beat: float | None = None
        self._reader_scope: anyio.CancelScope | None = None  # see `_reader_deadline`
        self._failure_deadline: float | None = None
        # When the closing handshake started by the end of the block gives up (tasks only).
        self._closing_deadline = math.inf
        # The reader by callback on asyncio (see the module's docstring).
        self._pumping = False
        self._failure_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._heartbeat_timer: asyncio.TimerHandle | None = None  # on asyncio
        self._heartbeat_waiter: PongWaiter | None = None
        if self._direct is not None:
            self._direct.set_write_limits(limits.write_limit_high, limits.write_limit_low)
            self._loop = asyncio.get_running_loop()
        # The clock of anyio's deadlines; on asyncio also readable from the callbacks,
        # where anyio can't tell which event loop runs.
        self._now: Callable[[], float] = (
            anyio.current_time if self._direct is None else self._loop.time
        )

    # -- properties ---------------------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """A random UUID that identifies the connection, e.g. in logs, as in `websockets`."""
        if self._id is None:
            # Made on first use: most programs never ask, and a connection that opens and
            # closes shouldn't pay for it.
            import uuid

            self._id = uuid.uuid4()
        return self._id

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

    @overload
    async def recv(self, timeout: float | None = None, *, decode: None = None) -> Data: ...
    @overload
    async def recv(self, timeout: float | None = None, *, decode: Literal[True]) -> str: ...
    @overload
    async def recv(self, timeout: float | None = None, *, decode: Literal[False]) -> bytes: ...
    @overload
    async def recv(self, timeout: float | None = None, *, decode: bool | None) -> Data: ...

    async def recv(self, timeout: float | None = None, *, decode: bool | None = None) -> Data:
        """Receive the next message: `str` for text, `bytes` for binary.

        Every message the server sent before its close frame is returned, in order, before
        the close is reported.

        Cancel-safe: if the call is cancelled (or times out), no message is lost; the next
        call returns it.

        Args:
            timeout: seconds to wait; None waits forever. Sugar for `anyio.fail_after`.
            decode: as in `websockets` >= 13: None returns each message as its type says;
                False returns a text message as its UTF-8 bytes; True decodes a binary
                message as UTF-8 text.

        Raises:
            UnicodeDecodeError: `decode=True` and the binary message isn't UTF-8; the
                message stays queued (a `recv()` without `decode` returns it).
            ConnectionClosedOK: the connection closed normally and no message is left.
            ConnectionClosedError: the connection closed abnormally and no message is left;
                `__cause__` says why (`PayloadTooBig` for a message over `max_size`,
                `ProtocolError`, the heartbeat's `TimeoutError`, the transport's `OSError`).
            TimeoutError: no message within `timeout` seconds.
            ConcurrencyError: another task is already waiting in `recv`.
            TypeError: `timeout` is a bool: `websockets`' `recv(decode)` takes `decode`
                first, and `recv(False)` here would be a timeout of 0 seconds.
        """
        self._start_receiving()
        try:
            with nullcontext() if timeout is None else _recv_deadline(timeout):
                head = await self._next_message(complete=True)
                message = head.join() if type(head) is PartialMessage else head
                if decode is not None:
                    # Converted before it leaves the queue: a failed decode loses nothing.
                    message = _convert(message, decode)  # type: ignore[arg-type]
                self._messages.popleft()
                self._took_message()
                return message  # type: ignore[return-value]
        except TimeoutError:
            # Only `fail_after` raises it here; its own has no message and a `Cancelled`
            # as context, neither of which tells the user anything.
            raise TimeoutError(f"no message within timeout={timeout}s") from None
        finally:
            self._receiving = False

    def _start_receiving(self) -> None:
        if self._receiving:
            raise ConcurrencyError("another task is already receiving on this connection")
        if self._streamed is not None:
            self._streamed._discard()  # starting another receive abandons a streamed message
        self._receiving = True

    async def _next_message(self, *, complete: bool) -> Data | PartialMessage:
        """Wait for the message at the head of the queue (if `complete`, for all of it) and
        return it, leaving it queued.

        Raises:
            ConnectionClosed: the connection is closed and no message is left.
        """
        messages = self._messages
        while True:
            if messages:
                head = messages[0]
                if type(head) is not PartialMessage or head.complete:
                    return head
                if head.abandoned:  # the connection failed before its last frame
                    messages.popleft()
                    self._took_message()
                    continue
                if not complete:
                    return head
            else:
                if self._protocol.failure_pending:
                    # Every message before the bad input has been taken (and could be
                    # answered): now the close frame goes out.
                    self._commit_failure()
                # Reported once the transport is closed, as in `websockets`: then `closed`,
                # `close_code` and the exception agree.
                if self._transport_closed.is_set():
                    raise self._protocol.close_exc()
            self._awaiting_whole = complete
            self._message_arrived = self._new_event()
            await self._message_arrived.wait()

    def _took_message(self) -> None:
        if self._has_queue_room():
            if self._queue_space is not None:
                self._queue_space.set()
            elif self._direct is not None and self._protocol.paused:
                self._on_readable()

    @overload
    def recv_streaming(self, *, decode: None = None) -> MessageStream[Data]: ...
    @overload
    def recv_streaming(self, *, decode: Literal[True]) -> MessageStream[str]: ...
    @overload
    def recv_streaming(self, *, decode: Literal[False]) -> MessageStream[bytes]: ...
    @overload
    def recv_streaming(self, *, decode: bool | None) -> MessageStream[Data]: ...

    def recv_streaming(self, *, decode: bool | None = None) -> MessageStream[Any]:
        """Receive the next message in fragments, as they arrive:
        `async for fragment in ws.recv_streaming(): ...`.

        Fragments are `str` for a text message (never ending inside a UTF-8 sequence) and
        `bytes` for a binary one; an empty message gives one empty fragment. A message that
        arrived whole is one fragment. `max_size` bounds the whole message, as for `recv`.

        Abandoning the iteration before the end (`break`, an exception, cancellation)
        discards the rest of the message when the next receiving call starts (or at once
        with `aclose()`); that call gets the next message: the connection stays usable.

        Cancel-safe: cancelled before its first fragment, the iteration loses nothing (the
        message stays queued, also when its first frames gave nothing to yield yet: an
        empty frame, half a UTF-8 sequence); cancelled while waiting for a later fragment,
        it loses nothing either: iterating again goes on with the next fragment.

        Args:
            decode: as in `recv`: False gives a text message's fragments as UTF-8 bytes,
                True decodes a binary message's fragments as UTF-8 text (incrementally).

        Raises (while iterating):
            UnicodeDecodeError: `decode=True` and the binary message isn't UTF-8. Before the
                first fragment the message stays queued; later the rest is discarded.
            ConnectionClosed: the connection closed before the message started, or before
                its last fragment arrived (then with the cause, as `recv`).
            ConcurrencyError: another task is receiving, or another receiving call took
                over before this message was finished.
        """
        return MessageStream(self, decode)

    async def receive_text(self, timeout: float | None = None) -> str:
        """Receive the next message, which must be text. Cancel-safe.

        Raises:
            InvalidMessageType: the message is binary; it is the exception's `message`.
            ConnectionClosed, TimeoutError, ConcurrencyError: as `recv`.
        """
        message = await self.recv(timeout)
        if not isinstance(message, str):
            raise InvalidMessageType("text", message)
        return message

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """Receive the next message, which must be binary. Cancel-safe.

        Raises:
            InvalidMessageType: the message is text; it is the exception's `message`.
            ConnectionClosed, TimeoutError, ConcurrencyError: as `recv`.
        """
        message = await self.recv(timeout)
        if not isinstance(message, bytes):
            raise InvalidMessageType("binary", message)
        return message

    async def receive_json(
        self, timeout: float | None = None, mode: Literal["text", "binary"] = "text"
    ) -> Any:
        """Receive the next message and decode it as JSON. Cancel-safe.

        Args:
            timeout: as in `recv`.
            mode: "text" expects a text message, "binary" a binary one (UTF-8 JSON).

        Raises:
            InvalidMessageType: the message has the other type.
            json.JSONDecodeError: the message isn't JSON.
            ConnectionClosed, TimeoutError, ConcurrencyError: as `recv`.
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
        *,
        compress: bool | None = None,
        text: bool | None = None,
    ) -> None:
        """Send a message: `str` as text, bytes-like as binary; the fragments of one
        message as a list or tuple, or streamed from an iterator or async iterable.

        Returns once the message is queued for the writer; waits first while more than
        `write_limit` bytes are waiting to be written (backpressure).

        A list or tuple of fragments (all `str`, or all bytes-like) is sent as one frame
        each, queued whole. Any other iterable, and every async iterable, is streamed: each
        fragment is framed and queued as it comes, under the same backpressure, so the
        message is never held whole; an empty final frame ends it (RFC 6455 §5.4). Other
        messages wait until it ends. If the source raises, or a fragment has the wrong
        type, once the first fragment was sent, the message can't be finished: the
        connection closes with 1011 and the exception propagates.

        Args:
            message: the message, or its fragments.
            compress: on a connection that negotiated permessage-deflate, False sends this
                message uncompressed (e.g. data that is already compressed), True
                compresses it whatever its size; None follows `compression_threshold`
                (a streamed message, whose size isn't known, is compressed). Ignored without
                compression.
            text: as in `websockets`, overrides the frame type: True sends bytes-like data
                that is already UTF-8 (e.g. JSON from a library that returns bytes) as
                text, False sends a str as binary (its UTF-8). The bytes are checked to
                be UTF-8 first (RFC 6455 §8.1), which `websockets` leaves to the server.
                None (the default) goes by the type.

        Cancel-safe for a message queued whole: it is either queued or not at all, and the
        connection stays usable. A streamed send cancelled before its first fragment was
        queued sends nothing; cancelled later, it closes the connection with 1011, as a
        source that raises does.

        Raises:
            ConnectionClosed: the connection is closing or closed, also when it closes
                while the call waits for room.
            TypeError: the message (or a fragment) has an unsupported type, or fragments mix
                text and bytes.
            UnicodeDecodeError: `text=True` and the bytes aren't UTF-8: nothing is sent.
                A streamed message whose first fragments were sent can't be finished: the
                connection closes with 1011, as when its source raises.
        """
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            if self._fragmented_send is not None:
                await self._wait_fragmented_send()
            await self._wait_writable()
            self._protocol.send_message(message, compress=compress, text=text)
        elif isinstance(message, Mapping):
            raise TypeError("a dict isn't a message; use send_json() to send JSON")
        elif isinstance(message, (list, tuple)):
            if self._fragmented_send is not None:
                await self._wait_fragmented_send()
            await self._wait_writable()
            self._protocol.send_fragments(message, compress=compress, text=text)
        elif isinstance(message, AsyncIterable):
            async_fragments = aiter(message)
            await self._send_streamed(lambda: anext(async_fragments, _END), compress, text)
            return
        elif isinstance(message, Iterable):
            fragments = iter(message)

            async def next_fragment() -> Data | bytearray | memoryview | object:
                return next(fragments, _END)

            await self._send_streamed(next_fragment, compress, text)
            return
        else:
            raise TypeError(f"a message must be str or bytes-like, not {type(message).__name__}")
        self._kick_writer()

    async def _wait_fragmented_send(self) -> None:
        # RFC 6455 §5.4: the frames of a streamed message can't be interleaved with others.
        while self._fragmented_send is not None:
            await self._fragmented_send.wait()

    async def _send_streamed(
        self,
        next_fragment: Callable[[], Awaitable[object]],
        compress: bool | None,
        text: bool | None,
    ) -> None:
        """Send a message fragment by fragment, as `next_fragment` gives them (`_END`
        after the last).
        """
        await self._wait_fragmented_send()
        protocol = self._protocol
        fragment = await next_fragment()
        if fragment is _END:
            return  # an empty iterable: nothing is sent (as in `websockets`)
        done = self._fragmented_send = self._new_event()
        try:
            await self._wait_writable()
            protocol.send_fragment(fragment, compress=compress, text=text)  # type: ignore[arg-type]
            self._kick_writer()
            while (fragment := await next_fragment()) is not _END:
                await self._wait_writable()
                protocol.send_fragment(fragment)  # type: ignore[arg-type]
                self._kick_writer()
            protocol.finish_fragments()
            self._kick_writer()
        except BaseException as exc:
            # Nothing sent yet: nothing to undo. Else the message can't be finished.
            if isinstance(exc, Exception):
                protocol.abort_fragments(exc)
            else:  # cancelled (or interrupted): say so, not with the cancellation itself
                protocol.abort_fragments(
                    ConnectionAbortedError("a streamed send stopped before its message ended")
                )
            self._kick_writer()
            raise
        finally:
            self._fragmented_send = None
            done.set()

    async def send_text(self, data: str, *, compress: bool | None = None) -> None:
        """Send a text message. Cancel-safe, raises as `send`; TypeError if not a str."""
        if not isinstance(data, str):
            raise TypeError(f"send_text() takes a str, not {type(data).__name__}")
        await self.send(data, compress=compress)

    async def send_bytes(
        self, data: bytes | bytearray | memoryview, *, compress: bool | None = None
    ) -> None:
        """Send a binary message. Cancel-safe, raises as `send`; TypeError if not bytes-like."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_bytes() takes bytes-like data, not {type(data).__name__}")
        await self.send(data, compress=compress)

    async def send_json(
        self,
        data: Any,
        mode: Literal["text", "binary"] = "text",
        *,
        compress: bool | None = None,
    ) -> None:
        """Send `data` encoded as JSON, in a text message (mode "text") or as UTF-8 in a
        binary one (mode "binary"). Cancel-safe, raises as `send`; `compress` as in `send`.

        Raises:
            TypeError: `data` isn't JSON-serializable.
            ValueError: `mode` is neither "text" nor "binary".
        """
        if mode not in ("text", "binary"):
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
        text = _JSON_ENCODER.encode(data)
        await self.send(text if mode == "text" else text.encode("utf-8"), compress=compress)

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
        while data is None and self._protocol.ping_pending(payload):  # pragma: no cover (2**-32)
            payload = os.urandom(4)
        waiter = PongWaiter(self, self._now())
        self._protocol.send_ping(payload, waiter)
        self._kick_writer()
        await anyio.lowlevel.checkpoint()
        return waiter

    async def pong(self, data: Data | bytearray | memoryview = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat, RFC 6455 §5.5.3).

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ValueError: the payload is longer than 125 bytes.
        """
        self._protocol.send_pong(_control_payload(data))
        self._kick_writer()
        await anyio.lowlevel.checkpoint()

    # -- closing --------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str | None = "") -> None:
        """Close the connection: send a close frame, wait for the server's close frame and
        for the server to close TCP (RFC 6455 §7.1.1), at most `close_timeout` seconds,
        then drop the transport. Idempotent; returns once the connection is closed.

        Messages received before the server's close frame stay readable with `recv`.

        Args:
            code: the close code (1000, 1001, 1002, 1003, 1007-1014 or 3000-4999).
            reason: the close reason, at most 123 bytes in UTF-8; None sends none.

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

    async def _close_on_exit(self, code: int, *, wait: bool) -> None:
        """Close when the `async with` block ends: the full handshake if `wait`, else (the
        block was cancelled) only as long as it takes to write our close frame. Shielded
        from the cancellation that may be ending the block, and bounded by `close_timeout`
        instead. Never raises.

        With tasks, the full handshake is the reader's to finish: this starts it and gives
        the reader its deadline, and the caller's exit of the task group waits for the
        reader (shielded, like every task of the connection). Waiting here as well would
        cost a cancel scope and, on trio, a pass of the scheduler (a nursery whose tasks
        already ended still yields once on exit): about 5 % of a short connection.
        """
        close_timeout = self._limits.close_timeout
        if wait and self._task_group is not None:
            self._closing_deadline = self._now() + _timeout(close_timeout)
            self._set_next_beat(None)  # no heartbeat while closing: the deadline is the close's
            self._start_closing(code, "")
            return
        cause = (
            None
            if wait
            else ConnectionAbortedError("closed without waiting: the block was cancelled")
        )
        deadline = math.inf
        if close_timeout is not None:
            direct = self._direct
            if direct is None:
                deadline = self._now() + close_timeout
            elif self._close_timer is None and not self._transport_closed.is_set():
                # On asyncio's own stream the event loop's timer keeps the bound (and goes on
                # to bound the wait for the server's TCP close): a scope's deadline would be
                # a second timer, about 2 % of a short connection's cost.
                self._close_timer = self._loop.call_later(
                    close_timeout, self._end_reading, direct, cause or _CloseTimeout()
                )
        with anyio.CancelScope(shield=True, deadline=deadline):
            self._start_closing(code, "")
            try:
                if wait:
                    await self._transport_closed.wait()
                else:
                    await self._flush()
            finally:
                await self._abort(cause)

    def _start_closing(self, code: int, reason: str | None) -> None:
        self._protocol.send_close(code, reason)  # commits a pending failure instead, if any
        self._kick_writer()
        # The reader may now parse past a full queue to reach the server's close frame
        # (the protocol drops what doesn't fit), and a deferred failure is committed.
        for event in (self._queue_space, self._failure_committed):
            if event is not None:
                event.set()
        if self._direct is not None:
            self._cancel_failure_timer()
            self._on_readable()

    async def _flush(self) -> None:
        """Wait until everything queued is written (or the transport is gone)."""
        direct = self._direct
        if direct is not None:
            self._write_outbox(direct)
            await direct.flush()
            return
        while self._buffered() and not self._transport_closed.is_set():
            await self._drained_event().wait()

    async def _abort(self, cause: BaseException | None = None) -> None:
        """Drop the transport, whatever state the close handshake is in: unsent data is
        discarded and the socket released now. `cause` explains the abnormal closure if
        the server's close frame never came.
        """
        self._connection_lost(cause or _CloseTimeout())
        if not self._stream_closed:
            self._stream_closed = True
            # Closing a socket (TLS without close_notify, as here) doesn't wait for the peer;
            # on a scope past its deadline the socket is closed before the checkpoint raises.
            with contextlib.suppress(*_TRANSPORT_ERRORS):
                await self._stream.aclose()

    def _connection_lost(self, cause: BaseException | None) -> None:
        if self._transport_closed.is_set():
            return
        self._protocol.receive_eof(cause)
        self._transport_closed.set()
        for event in (
            self._message_arrived,
            self._queue_space,
            self._drained,
            self._failure_committed,
        ):
            if event is not None:
                event.set()
        if self._outbox_ready is not None:
            self._outbox_ready.set()
            self._outbox_ready = None
        self._cancel_failure_timer()
        for timer in (self._close_timer, self._heartbeat_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._heartbeat_timer = None
        for waiter in self._protocol.abandon_pings():
            waiter._set(None)
        if self._protocol.dropped:
            self.logger.debug(
                "dropped %d messages received after the close frame was sent",
                self._protocol.dropped,
            )
        if self.logger.isEnabledFor(logging.DEBUG):  # the exception is only made to be logged
            self.logger.debug("connection closed: %s", self._protocol.close_exc())

    def _kick_writer(self) -> None:
        """Get what the protocol queued written: on asyncio by the transport, at once or
        (if a write already went out in this turn of the event loop) at the end of the
        turn; on a trio socket whose writer is idle or not started, by this task if no
        frame went out since the writer last ran or data last arrived; else by waking (or
        starting) the writer.
        """
        direct = self._direct
        if direct is None:
            ready = self._outbox_ready
            if ready is None and self._writer_started:
                return  # the writer runs, and takes the frames before it waits again
            socket_stream = self._socket_stream
            if (
                socket_stream is not None
                and not self._write_batch_open
                and self._write_error is None
            ):
                # The writer is idle, so everything before these frames is written.
                self._write_batch_open = True
                frames = self._protocol.data_to_send()
                data = _joined(frames)
                sent = socket_stream.try_send(data)
                if sent == len(data):
                    return
                self._unsent = data[sent:]
            if ready is not None:
                self._outbox_ready = None
                ready.set()
            elif not self._transport_closed.is_set():  # else no writer could write them
                self._start_writer()
        elif not self._write_batch_open:
            self._write_batch_open = True
            self._write_outbox(direct)
        elif not self._write_batch_end:
            self._write_batch_end = True
            self._loop.call_soon(self._end_write_batch, direct)

    def _end_write_batch(self, direct: AsyncioStream) -> None:
        # Frames queued since the batch opened go out as one write; if there were any, the
        # next ones join a new batch, so a busy sender costs one write per turn. The end of
        # a batch is scheduled only once a second frame joins it: a lone frame (a request,
        # a reply) costs no extra turn of the loop.
        if self._protocol.outbox_size:
            self._write_outbox(direct)
            self._loop.call_soon(self._end_write_batch, direct)
        else:
            self._write_batch_open = self._write_batch_end = False

    def _write_outbox(self, direct: AsyncioStream) -> None:
        frames = self._protocol.data_to_send()
        if frames:
            direct.write_nowait(_joined(frames))

    # -- backpressure ---------------------------------------------------------------------

    def _buffered(self) -> int:
        direct = self._direct
        if direct is not None:
            return self._protocol.outbox_size + direct.write_buffer_size
        return self._protocol.outbox_size + self._in_flight + len(self._unsent)

    async def _wait_writable(self) -> None:
        if self._protocol.state is not State.OPEN:
            raise self._protocol.close_exc()
        if self._buffered() <= self._limits.write_limit_high:
            return
        direct = self._direct
        if direct is not None:
            # The transport pauses over the high-water mark and resumes at the low one.
            self._write_outbox(direct)
            await direct.wait_writable()
        else:
            while self._buffered() > self._limits.write_limit_high:
                await self._drained_event().wait()
                if self._protocol.state is not State.OPEN:
                    break
        if self._protocol.state is not State.OPEN:
            raise self._protocol.close_exc()

    def _drained_event(self) -> Event:
        # One event shared by every waiting sender; a fresh one once it has fired.
        if self._drained is None or self._drained.is_set():
            self._drained = self._new_event()
        return self._drained

    def _queue_room(self) -> int | None:
        high = self._limits.max_queue_high
        return None if high is None else high - len(self._messages)

    def _queue_takes_more(self) -> bool:
        """After a parse that stopped at the room it was given: whether the queue has room
        after all, because the message that used it up was dropped on delivery (a failure
        abandoned it) and no message taken will say so.
        """
        room = self._queue_room()
        return room is not None and room > 0 and self._has_queue_room()

    def _has_queue_room(self) -> bool:
        low = self._limits.max_queue_low
        return low is None or len(self._messages) <= low

    # -- tasks ----------------------------------------------------------------------------

    @property
    def _needs_tasks(self) -> bool:
        """False on asyncio's own stream: the transport's callbacks and the event loop's
        timers do the tasks' work (see the module's docstring), and no task group is needed.
        """
        return self._direct is None

    def _start_tasks(self, task_group: TaskSpawner | None, *, heartbeat: bool) -> None:
        """Start the reader and the writer, as tasks in `task_group` (the connection's own),
        or on asyncio's own stream as callbacks (then `task_group` is None); and, if
        enabled, the heartbeat, which the reader's deadline (or an asyncio timer) keeps.
        """
        if heartbeat:
            assert self._limits.ping_interval is not None  # the heartbeat needs it
            self._set_next_beat(self._now() + self._limits.ping_interval)
        direct = self._direct
        if direct is not None:
            direct.set_reader(
                self._on_stream_news,
                self._protocol.receive_window,
                self._on_window_filled,
                self._on_writable,
            )
            if self._initial_data:
                self._protocol.receive_data(self._initial_data)
                self._initial_data = b""
            self._pump(direct)
            return
        assert task_group is not None  # tasks need one
        self._task_group = task_group
        task_group.start_soon(self._read_loop, name="anyws reader")
        if self._socket_stream is None:
            self._start_writer()
        # Else the task that queues a frame writes it, and the writer starts only when
        # a frame has to wait for it (`_kick_writer`): many connections never need it.

    def _start_writer(self) -> None:
        assert self._task_group is not None  # started by `_start_tasks`
        self._writer_started = True
        self._task_group.start_soon(self._write_loop, name="anyws writer")

    async def _read_loop(self) -> None:
        """Read from the transport, feeding the protocol, until it ends; keep the
        heartbeat; end a closing handshake that outlives its deadline. Never raises.

        The reader's scope is shielded (the task group's scope also covers the body of the
        `async with`, which must stay cancellable) and its deadline is the heartbeat's next
        beat, or, once the block has ended, the closing handshake's end: reaching it
        interrupts a wait of the reader, which loses nothing (a receive cancelled before it
        returned read nothing), then beats and reads on, or gives up on the close. A
        heartbeat task would cost a task, its scopes and frames per connection.
        """
        cause: BaseException | None = ConnectionAbortedError("the connection's tasks were stopped")
        try:
            while True:
                with anyio.CancelScope(shield=True, deadline=self._reader_deadline()) as scope:
                    self._reader_scope = scope
                    cause = _CloseTimeout()  # if the deadline ends the closing handshake
                    cause = await self._read(scope)
                    break
                if (
                    self._protocol.reading_done and not self._protocol.failure_pending
                ) or self._now() >= self._closing_deadline:
                    break  # the closing handshake timed out
                if self._heartbeat_due():
                    # The peer is unresponsive: get the close frame written if the socket
                    # takes it, then drop the transport without waiting for an answer.
                    cause = None
                    with anyio.move_on_after(_timeout(self._limits.close_timeout)):
                        await self._flush()
                    break
        finally:
            # Nobody receives any more: the connection is lost, whatever ended the reader.
            self._reader_scope = None
            self._connection_lost(cause)
        # Closing the stream happens before any checkpoint could raise.
        await self._abort()

    async def _read(self, scope: anyio.CancelScope) -> BaseException | None:
        """The reader's work until the transport ends; return why it ended."""
        protocol = self._protocol
        read_limit = self._limits.read_limit
        socket_stream = self._socket_stream
        try:
            if self._initial_data:
                protocol.receive_data(self._initial_data)
                self._initial_data = b""
            # A failure's close frame may still wait for the application when nothing more
            # is parsed (the server's close frame came right after the bad input).
            while not protocol.reading_done or protocol.failure_pending:
                # While the writer is busy with a backlog, pings wait for its next write.
                protocol.pongs_deferred = (
                    self._in_flight > 0 and self._buffered() > self._limits.write_limit_high
                )
                self._deliver(protocol.parse(self._queue_room()))
                if protocol.failure_pending:
                    await self._wait_failure_committed()
                elif protocol.paused and not self._queue_takes_more():
                    await self._wait_queue_space()
                elif protocol.wants_data:
                    if (
                        socket_stream is not None
                        and (window := protocol.receive_window()) is not None
                    ):
                        # The rest of a big frame, read straight into its message.
                        count = await socket_stream.receive_into(window)
                        protocol.received_into(window, count)
                    else:
                        protocol.receive_data(await self._stream.receive(read_limit))
                    self._write_batch_open = False
            # The server closes TCP first (RFC 6455 §7.1.1); give it close_timeout (no
            # longer than our closing handshake has left), reading and dropping anything.
            # The scope's deadline ends the wait (no more heartbeat: the connection is
            # closing).
            self._set_next_beat(None)
            scope.deadline = min(
                self._closing_deadline, _timeout(self._limits.close_timeout) + self._now()
            )
            while True:
                await self._stream.receive(read_limit)
        except anyio.EndOfStream:
            return self._write_error
        except _TRANSPORT_ERRORS as exc:
            return exc
        except Exception as exc:  # pragma: no cover (a bug in anyws: fail the connection)
            self.logger.exception("unexpected error in the reader")
            protocol.fail(1011, "internal error", exc)
            return exc

    def _on_stream_news(self) -> None:
        # Called by the transport, so in a new turn of the event loop: the next frame
        # queued may be written at once (see `_kick_writer`).
        self._write_batch_open = False
        self._on_readable()

    def _on_window_filled(self, window: MessageBuffer, count: int) -> None:
        # The transport read the rest of a big frame straight into its message.
        self._protocol.received_into(window, count)
        self._on_readable()

    def _on_writable(self) -> None:
        """The asyncio transport's write buffer has drained: the pings held back meanwhile
        get their answer.
        """
        if self._protocol.pong_owed:
            self._protocol.answer_deferred_pong()
            self._kick_writer()

    def _on_readable(self) -> None:
        """The asyncio stream has news (data, EOF, a failure), or the reader may go on."""
        if not self._pumping and self._direct is not None:
            self._pump(self._direct)

    def _pump(self, direct: AsyncioStream) -> None:
        """The reader on asyncio: `_read_loop`'s steps, run from the stream's callbacks
        and wherever the reader may go on, as far as they go without waiting; timers keep
        its deadlines. Never raises.
        """
        protocol = self._protocol
        if self._transport_closed.is_set():
            return
        close_timeout = self._limits.close_timeout
        self._pumping = True
        try:
            while not protocol.reading_done:
                # While the peer doesn't take what is written, pings wait for it to drain
                # (`_on_writable`).
                protocol.pongs_deferred = direct.writing_paused
                self._deliver(protocol.parse(self._queue_room()))
                if protocol.failure_pending:
                    break
                if protocol.paused:
                    if not self._queue_takes_more():
                        return  # until `_took_message` or `_start_closing`
                    continue  # parse what is buffered before reading more
                # A read at a time, whole: it is in memory already (copied out of the
                # shared read buffer), and given out in parts, each part would be copied
                # again. `read_limit` is where the transport stops reading.
                data = direct.receive_nowait(READ_SIZE)
                if data is None:
                    return  # until the stream calls back
                protocol.receive_data(data)
            if protocol.failure_pending:
                # Rule 2's bound, armed when the failure is first seen (an infinite delay
                # never fires: close_timeout=None waits for the application).
                self._failure_timer = self._failure_timer or self._loop.call_later(
                    _timeout(close_timeout), self._commit_failure
                )
                return  # until `_commit_failure`
            # The server closes TCP first (RFC 6455 §7.1.1); give it close_timeout,
            # reading and dropping anything.
            self._close_timer = self._close_timer or self._loop.call_later(
                _timeout(close_timeout), self._end_reading, direct, _CloseTimeout()
            )
            while direct.receive_nowait(READ_SIZE) is not None:
                pass
        except anyio.EndOfStream:
            self._end_reading(direct, self._write_error)
        except _TRANSPORT_ERRORS as exc:
            self._end_reading(direct, exc)
        except Exception as exc:  # pragma: no cover (a bug in anyws: fail the connection)
            self.logger.exception("unexpected error in the reader")
            protocol.fail(1011, "internal error", exc)
            self._end_reading(direct, exc)
        finally:
            self._pumping = False

    def _end_reading(self, direct: AsyncioStream, cause: BaseException | None) -> None:
        # As `_read_loop` ends: the connection is lost, the transport released now.
        self._connection_lost(cause)
        self._stream_closed = True
        direct.abort()

    def _cancel_failure_timer(self) -> None:
        if self._failure_timer is not None:
            self._failure_timer.cancel()
            self._failure_timer = None

    def _deliver(self, received: list[Data | PartialMessage | PongReceived[PongWaiter]]) -> None:
        messages = self._messages
        for item in received:
            if type(item) is PongReceived:
                now = self._now()
                for waiter in item.waiters:
                    self.latency = now - waiter.sent_at
                    waiter._set(self.latency)
                    if waiter is self._heartbeat_waiter:
                        assert self._limits.ping_interval is not None  # a heartbeat's ping
                        self._heartbeat_waiter = None
                        self._set_next_beat(now + self._limits.ping_interval)
            else:
                messages.append(item)  # type: ignore[arg-type]
        protocol = self._protocol
        if protocol.failure_pending:
            tail = messages[-1] if messages else None
            if type(tail) is PartialMessage and tail.abandoned:
                messages.pop()  # the bad input was in it: only earlier messages count
            if not messages:
                self._commit_failure()  # nothing arrived before the bad input: fail now
        if self._message_arrived is not None and (messages or protocol.failure_pending):
            head = messages[0] if messages else None
            # A receiver waiting for a whole message isn't woken by each of its fragments.
            if type(head) is not PartialMessage or head.complete or not self._awaiting_whole:
                self._message_arrived.set()
        if protocol.outbox_size:
            self._kick_writer()

    async def _wait_queue_space(self) -> None:
        self._queue_space = self._new_event()
        await self._queue_space.wait()
        self._queue_space = None

    async def _wait_failure_committed(self) -> None:
        """Rule 2 of `_protocol`: our close frame waits until the application took the
        messages before the bad input, at most `close_timeout`.
        """
        if self._failure_deadline is None:  # kept if a heartbeat interrupts the wait
            self._failure_deadline = self._now() + _timeout(self._limits.close_timeout)
        self._failure_committed = self._new_event()
        with anyio.CancelScope(deadline=self._failure_deadline):
            await self._failure_committed.wait()
        self._failure_committed = None
        self._commit_failure()

    def _commit_failure(self) -> None:
        self._protocol.commit_failure()
        self._kick_writer()
        if self._failure_committed is not None:
            self._failure_committed.set()
        if self._direct is not None:
            self._cancel_failure_timer()
            self._on_readable()

    async def _write_loop(self) -> None:
        """Write what the protocol queued, coalescing frames into one write. Never raises.

        A failed write doesn't end the connection: what arrived before is still delivered,
        and the reader reports the loss (with this error as its cause if the stream just
        ends). Frames queued after it are dropped, as the network would.
        """
        with anyio.CancelScope(shield=True):
            await self._write_frames()

    async def _write_frames(self) -> None:
        protocol = self._protocol
        while True:
            if protocol.pong_owed:
                # The pings that came while the last write was under way get one answer.
                protocol.answer_deferred_pong()
            frames = protocol.data_to_send()
            if self._unsent:
                frames.insert(0, self._unsent)
                self._unsent = b""
            if not frames:
                self._write_batch_open = False
                if self._drained is not None:
                    self._drained.set()
                if self._transport_closed.is_set():
                    return  # nothing left to write, ever
                ready = self._outbox_ready = self._new_event()
                await ready.wait()
                continue
            if self._write_error is not None:
                continue
            data = _joined(frames)
            self._in_flight = len(data)
            try:
                await self._stream.send(data)
            except _TRANSPORT_ERRORS as exc:
                self._write_error = exc
            self._in_flight = 0
            if self._drained is not None and self._buffered() <= self._limits.write_limit_low:
                self._drained.set()

    def _set_next_beat(self, when: float | None) -> None:
        """Set when the heartbeat next acts (None: never): the deadline of the reader's
        scope, or on asyncio a timer.
        """
        self._next_beat = when
        if self._direct is not None:
            if self._heartbeat_timer is not None:
                self._heartbeat_timer.cancel()
            self._heartbeat_timer = (
                None if when is None else self._loop.call_at(when, self._on_heartbeat_timer)
            )
        elif self._reader_scope is not None:
            self._reader_scope.deadline = self._reader_deadline()

    def _reader_deadline(self) -> float:
        """The reader's: the heartbeat's next beat, or the closing handshake's end."""
        return min(_timeout(self._next_beat), self._closing_deadline)

    def _heartbeat_due(self) -> bool:
        """The heartbeat's time came: send a ping (RFC 6455 §5.5.2), or, if the pong of the
        previous one didn't come within ping_timeout, fail the connection with 1011.
        Return True if it failed the connection: the driver then writes our close frame
        within close_timeout and drops the transport.
        """
        limits, protocol = self._limits, self._protocol
        assert limits.ping_interval is not None  # only a heartbeat has beats
        unanswered, self._heartbeat_waiter = self._heartbeat_waiter, None
        if protocol.state is not State.OPEN or protocol.failure_pending:
            # Closing, or failing (its close frame goes out within close_timeout, and may
            # have to answer the server's, which no ping may follow): no more pings.
            self._set_next_beat(None)
            return False
        if unanswered is not None:  # a pong would have cleared it
            self.logger.debug("keepalive ping timeout: failing the connection")
            protocol.fail(
                1011,
                "keepalive ping timeout",
                TimeoutError(f"no pong within ping_timeout={limits.ping_timeout}s"),
            )
            self._kick_writer()
            self._set_next_beat(None)
            return True
        payload = os.urandom(4)
        while protocol.ping_pending(payload):  # pragma: no cover (2**-32)
            payload = os.urandom(4)
        now = self._now()
        waiter = PongWaiter(self, now)
        protocol.send_ping(payload, waiter)
        self._kick_writer()
        if limits.ping_timeout is None:
            self._set_next_beat(now + limits.ping_interval)
        else:
            self._heartbeat_waiter = waiter
            self._set_next_beat(now + limits.ping_timeout)
        return False

    def _on_heartbeat_timer(self) -> None:
        # The heartbeat on asyncio: as the reader task does when its deadline comes.
        direct = self._direct
        assert direct is not None  # timers only run on asyncio's own stream
        self._heartbeat_timer = None
        if self._heartbeat_due():
            # Write the close frame if the socket takes it, within close_timeout, then
            # drop the transport; the transport tells the reader when it closed.
            self._write_outbox(direct)
            direct.close_after_writing()
            self._close_timer = self._close_timer or self._loop.call_later(
                _timeout(self._limits.close_timeout), self._end_reading, direct, None
            )


_END = object()
"""What a streamed message's source gives after its last fragment."""


class _CloseTimeout(TimeoutError):
    def __init__(self) -> None:
        super().__init__("the server didn't complete the closing handshake within close_timeout")


def _timeout(seconds: float | None) -> float:
    # None (no limit, no deadline) as an infinite one.
    return math.inf if seconds is None else seconds


def _joined(frames: list[bytes]) -> bytes:
    # The frames queued since the last write, as one write; a lone frame isn't copied.
    return frames[0] if len(frames) == 1 else b"".join(frames)


def _convert(message: Data, decode: bool) -> Data:
    if decode:
        return message if isinstance(message, str) else message.decode("utf-8")
    return message.encode("utf-8") if isinstance(message, str) else message


def _control_payload(data: Data | bytearray | memoryview) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"a ping or pong payload must be str or bytes-like, not {type(data).__name__}")
