"""The blocking API, for plain scripts: the same client, run by an event loop in a
background thread (anyio's blocking portal).

    from anyws.sync import connect

    with connect("ws://127.0.0.1:8765/") as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))

Every method blocks until the operation completes and raises what its async counterpart
raises. A connection belongs to the `with` block that opened it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

import anyio
import anyio.abc
import sniffio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from . import _connection, _reconnect
from ._client import open_websocket
from ._connection import FragmentT
from ._connection import MessageStream as AsyncMessageStream
from ._exceptions import ConnectionClosedOK
from ._options import ConnectOptions
from ._protocol import State
from ._types import Data, Request, Response

if TYPE_CHECKING:
    import uuid

    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

_Result = TypeVar("_Result")

__all__ = [
    "ClientConnection",
    "MessageStream",
    "PongFuture",
    "Reconnecting",
    "connect",
    "open_websocket_sync",
    "reconnecting",
    "unix_connect",
]


class _LoopCalls:
    """Runs coroutines in the background event loop and waits for their outcome, for the
    calls made for every message (`send`, `recv`, ...): through the backend's own handoff
    (`asyncio.run_coroutine_threadsafe`, `trio.from_thread.run`), which costs half as
    much as the portal's (a task in its task group per call) on asyncio, a third less on
    trio. Once the loop is gone (`stop()`), a call raises the connection's
    `ConnectionClosed`, as in `websockets.sync`, instead of the portal's `RuntimeError`.
    """

    def __init__(self, portal: BlockingPortal) -> None:
        self.portal = portal
        self.stopped = False
        self._loop_thread, self._loop, self._trio_token = portal.call(_loop_handles)

    def stop(self) -> None:
        """The loop is about to end: later calls raise."""
        self.stopped = True

    def __call__(
        self,
        connection: _connection.ClientConnection,
        function: Callable[..., Awaitable[_Result]],
        *args: Any,
    ) -> _Result:
        """`await function(*args)` in the loop; `connection`'s close exception once the
        loop is gone.
        """
        if self.stopped:
            raise connection._protocol.close_exc()
        if threading.get_ident() == self._loop_thread:
            # Waiting there for the loop would wait forever.
            raise RuntimeError("anyws.sync's blocking calls can't be made from its event loop")
        if self._loop is not None:
            coroutine = cast(Coroutine[Any, Any, _Result], function(*args))
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
        import trio

        return trio.from_thread.run(function, *args, trio_token=self._trio_token)


async def _loop_handles() -> tuple[int, asyncio.AbstractEventLoop | None, Any]:
    """In the loop (one portal call, not three): its thread, and its asyncio loop or trio
    token.
    """
    if sniffio.current_async_library() == "asyncio":
        return threading.get_ident(), asyncio.get_running_loop(), None
    import trio

    return threading.get_ident(), None, trio.lowlevel.current_trio_token()


class ClientConnection:
    """A blocking view of an open `anyws.ClientConnection`."""

    def __init__(self, calls: _LoopCalls, connection: _connection.ClientConnection) -> None:
        self._calls = calls
        self._portal = calls.portal
        self._connection = connection

    def _call(self, function: Callable[..., Awaitable[_Result]], *args: Any) -> _Result:
        return self._calls(self._connection, function, *args)

    # -- properties ---------------------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """As `anyws.ClientConnection.id`."""
        return self._connection.id

    @property
    def state(self) -> State:
        """`State.OPEN`, `State.CLOSING` or `State.CLOSED`."""
        return self._connection.state

    @property
    def closed(self) -> bool:
        """True once the connection is closed."""
        return self._connection.closed

    @property
    def close_code(self) -> int | None:
        """As `anyws.ClientConnection.close_code`."""
        return self._connection.close_code

    @property
    def close_reason(self) -> str | None:
        """As `anyws.ClientConnection.close_reason`."""
        return self._connection.close_reason

    @property
    def latency(self) -> float:
        """The round-trip time of the latest ping, in seconds."""
        return self._connection.latency

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, or None."""
        return self._connection.subprotocol

    @property
    def request(self) -> Request:
        """The opening handshake request."""
        return self._connection.request

    @property
    def response(self) -> Response:
        """The server's 101 response."""
        return self._connection.response

    @property
    def local_address(self) -> Any:
        """The local address of the socket."""
        return self._connection.local_address

    @property
    def remote_address(self) -> Any:
        """The server's address."""
        return self._connection.remote_address

    # -- receiving ------------------------------------------------------------------------

    @overload
    def recv(self, timeout: float | None = None, decode: None = None) -> Data: ...
    @overload
    def recv(self, timeout: float | None, decode: Literal[True]) -> str: ...
    @overload
    def recv(self, *, decode: Literal[True]) -> str: ...
    @overload
    def recv(self, timeout: float | None, decode: Literal[False]) -> bytes: ...
    @overload
    def recv(self, *, decode: Literal[False]) -> bytes: ...
    @overload
    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data: ...

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data:
        """Receive the next message; `decode` and what raises as in
        `anyws.ClientConnection.recv`. The arguments are in `websockets.sync`'s order:
        `recv(5, False)` waits 5 seconds and returns a text message as bytes.
        """
        return self._call(partial(self._connection.recv, timeout, decode=decode))

    def receive_text(self, timeout: float | None = None) -> str:
        """Receive a text message; raises as `anyws.ClientConnection.receive_text`."""
        return self._call(self._connection.receive_text, timeout)

    def receive_bytes(self, timeout: float | None = None) -> bytes:
        """Receive a binary message; raises as `anyws.ClientConnection.receive_bytes`."""
        return self._call(self._connection.receive_bytes, timeout)

    def receive_json(
        self, timeout: float | None = None, mode: Literal["text", "binary"] = "text"
    ) -> Any:
        """Receive a JSON message; raises as `anyws.ClientConnection.receive_json`."""
        return self._call(self._connection.receive_json, timeout, mode)

    @overload
    def recv_streaming(self, *, decode: None = None) -> MessageStream[Data]: ...
    @overload
    def recv_streaming(self, *, decode: Literal[True]) -> MessageStream[str]: ...
    @overload
    def recv_streaming(self, *, decode: Literal[False]) -> MessageStream[bytes]: ...
    @overload
    def recv_streaming(self, *, decode: bool | None) -> MessageStream[Data]: ...

    def recv_streaming(self, *, decode: bool | None = None) -> MessageStream[Any]:
        """Receive the next message in fragments, as they arrive: `for fragment in
        ws.recv_streaming(): ...`; as `anyws.ClientConnection.recv_streaming` (breaking out
        discards the rest when the next receiving call starts, or at once with `close()`).
        """
        stream = self._connection.recv_streaming(decode=decode)
        return MessageStream(partial(self._calls, self._connection), stream)

    def __iter__(self) -> Iterator[Data]:
        """Iterate over messages; ends on a normal close, raises on an abnormal one."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # -- sending --------------------------------------------------------------------------

    def send(
        self,
        message: Data | bytearray | memoryview | Iterable[Data],
        *,
        compress: bool | None = None,
        text: bool | None = None,
    ) -> None:
        """Send a message, or its fragments (a list or tuple queued whole, any other iterable
        streamed); `compress`, `text` and what raises as in `anyws.ClientConnection.send`.

        A streamed iterable is iterated in a worker thread while this call blocks, one
        fragment at a time, so a generator reading a file never holds the whole message.
        """
        to_send: Any = message
        if not isinstance(message, (str, bytes, bytearray, memoryview, list, tuple)):
            to_send = _IteratedInAThread(iter(message))
        self._call(partial(self._connection.send, to_send, compress=compress, text=text))

    def send_text(self, data: str, *, compress: bool | None = None) -> None:
        """Send a text message."""
        self._call(partial(self._connection.send_text, data, compress=compress))

    def send_bytes(
        self, data: bytes | bytearray | memoryview, *, compress: bool | None = None
    ) -> None:
        """Send a binary message."""
        self._call(partial(self._connection.send_bytes, data, compress=compress))

    def send_json(
        self,
        data: Any,
        mode: Literal["text", "binary"] = "text",
        *,
        compress: bool | None = None,
    ) -> None:
        """Send `data` as JSON."""
        self._call(partial(self._connection.send_json, data, mode, compress=compress))

    def ping(self, data: Data | None = None, *, ack_on_close: bool = False) -> PongFuture:
        """Send a ping; return a `PongFuture` of the round-trip time.

        `ws.ping().result(timeout=5)` waits for the pong and returns the latency;
        `ws.ping().wait(timeout=5)` says whether it came, as with `websockets.sync`.
        Raises as `anyws.ClientConnection.ping`; the future raises `ConnectionClosed` if
        the connection closes first (`ack_on_close=True`: `wait()` then returns True too).
        """
        waiter = self._call(self._connection.ping, data)
        pong = PongFuture(ack_on_close=ack_on_close)
        pong.follow(self._portal.start_task_soon(waiter.wait))
        return pong

    def pong(self, data: Data = b"") -> None:
        """Send an unsolicited pong."""
        self._call(self._connection.pong, data)

    def close(self, code: int = 1000, reason: str | None = "") -> None:
        """Close the connection; as `anyws.ClientConnection.close` (closed already: nothing
        to do, also once the `with` block is over).
        """
        if not self._calls.stopped:
            self._call(self._connection.close, code, reason)


class PongFuture(Future[float]):
    """What `ClientConnection.ping()` returns: a `concurrent.futures.Future` of the
    round-trip time in seconds, which also answers as the `threading.Event` that
    `websockets.sync` returns (`wait(timeout)`, `is_set()`), so code written for either
    works.
    """

    def __init__(self, *, ack_on_close: bool = False) -> None:
        super().__init__()
        self._ack_on_close = ack_on_close

    def follow(self, source: Future[float]) -> None:
        """Settle as `source` does; cancelling this cancels it."""

        def settle(done: Future[float]) -> None:
            if self.done():
                return  # cancelled here first
            if done.cancelled():
                self.cancel()
            elif done.exception() is not None:
                self.set_exception(done.exception())
            else:
                self.set_result(done.result())

        source.add_done_callback(settle)
        self.add_done_callback(lambda this: source.cancel() if this.cancelled() else None)

    def is_set(self) -> bool:
        """True once the pong came (with `ack_on_close`, also once the connection closed)."""
        if not self.done():
            return False
        return self._ack_on_close or (not self.cancelled() and self.exception() is None)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (None: until settled) for the pong; return
        `is_set()`. Unlike `websockets`' event, a pong that can't come any more (the
        connection closed) doesn't keep it waiting until the timeout.
        """
        concurrent.futures.wait([self], timeout)
        return self.is_set()


class MessageStream(Generic[FragmentT]):
    """An iterator over the fragments of one message; `ClientConnection.recv_streaming`."""

    def __init__(self, call: Callable[..., Any], stream: AsyncMessageStream[FragmentT]) -> None:
        self._call = call  # runs a coroutine function in the connection's loop
        self._stream = stream

    def __iter__(self) -> MessageStream[FragmentT]:
        return self

    def __next__(self) -> FragmentT:
        end, fragment = self._call(_next_fragment, self._stream)
        if end:
            raise StopIteration
        return cast(FragmentT, fragment)

    def close(self) -> None:
        """Discard the rest of the message now."""
        self._call(self._stream.aclose)


async def _next_fragment(stream: AsyncMessageStream[Any]) -> tuple[bool, Any]:
    # StopAsyncIteration can't cross the portal as an exception: it is returned.
    try:
        return False, await stream.__anext__()
    except StopAsyncIteration:
        return True, None


class _IteratedInAThread:
    """An async iterator over a blocking iterator, each `next` run in a worker thread
    (the caller's thread is blocked in the portal meanwhile).
    """

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator

    def __aiter__(self) -> _IteratedInAThread:
        return self

    async def __anext__(self) -> Any:
        fragment = await anyio.to_thread.run_sync(next, self._iterator, _END)
        if fragment is _END:
            raise StopAsyncIteration
        return fragment


_END = object()


@contextmanager
def connect(
    uri: str,
    *,
    backend: Literal["asyncio", "trio"] = "asyncio",
    sock: socket.socket | None = None,
    **options: Unpack[ConnectOptions],
) -> Iterator[ClientConnection]:
    """Open a WebSocket connection for blocking use, as the context of a `with` block.

    Args:
        uri: a `ws://` or `wss://` URI.
        backend: the event loop run in the background thread: "asyncio" or "trio".
        sock: a connected stream socket to run the WebSocket over, as
            `websockets.sync`'s `sock=` (see `anyws.open_websocket`).
        **options: the options of `anyws.open_websocket`.

    Raises:
        InvalidURI: for a malformed URI, as `anyws.open_websocket` (and its other errors:
            OSError, TimeoutError, InvalidHandshake).
    """
    context = open_websocket(uri, sock=sock, **options)
    with start_blocking_portal(backend) as portal:
        calls = _LoopCalls(portal)
        try:
            with portal.wrap_async_context_manager(context) as connection:
                yield ClientConnection(calls, connection)
        finally:
            calls.stop()


open_websocket_sync = connect


@contextmanager
def unix_connect(
    path: str | os.PathLike[str],
    uri: str = "ws://localhost/",
    **options: Unpack[ConnectOptions],
) -> Iterator[ClientConnection]:
    """Open a WebSocket connection over a Unix socket for blocking use."""
    options["unix_socket"] = path
    with connect(uri, **options) as connection:
        yield connection


class _Next:
    """The command to get the next connection of a reconnecting loop."""


@dataclass
class _Exit:
    """The command to leave a reconnecting loop, with the exception that ended the block."""

    error: BaseException | None


_Outcome = tuple[Literal[True], _connection.ClientConnection] | tuple[Literal[False], Exception]


class Reconnecting(Iterator[ClientConnection]):
    """What `anyws.sync.reconnecting()` yields: an iterator of connections, a fresh one each
    time round (see `anyws.reconnecting`).

    The async loop runs in one task of the background event loop, as it must (each
    connection's task group is entered and left by that task); the iterator sends it
    commands and waits for their outcome.
    """

    def __init__(self, calls: _LoopCalls, connections: _reconnect.Reconnecting) -> None:
        self._calls = calls
        self._portal = calls.portal
        self._connections = connections
        self._commands, self._received_commands = anyio.create_memory_object_stream[_Next | _Exit](
            1
        )
        self._outcomes, self._received_outcomes = anyio.create_memory_object_stream[_Outcome](1)

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        await self._connections.__aenter__()
        task_status.started()
        error: BaseException | None = None
        try:
            while True:
                command = await self._received_commands.receive()
                if isinstance(command, _Exit):
                    error = command.error
                    break
                try:
                    outcome: _Outcome = (True, await self._connections.__anext__())
                except Exception as exc:
                    outcome = (False, exc)
                await self._outcomes.send(outcome)
        finally:
            try:
                await self._connections.__aexit__(
                    None if error is None else type(error),
                    error,
                    None if error is None else error.__traceback__,
                )
            finally:
                for stream in (
                    self._commands,
                    self._received_commands,
                    self._outcomes,
                    self._received_outcomes,
                ):
                    stream.close()

    def __next__(self) -> ClientConnection:
        """Close the current connection (if any) and return a new one; raises as the
        `async for` of `anyws.reconnecting` does.
        """
        self._portal.call(self._commands.send, _Next())
        succeeded, value = self._portal.call(self._received_outcomes.receive)
        if not succeeded:
            assert isinstance(value, Exception)
            raise value
        assert isinstance(value, _connection.ClientConnection)
        return ClientConnection(self._calls, value)


@contextmanager
def reconnecting(
    uri: str,
    *,
    backend: Literal["asyncio", "trio"] = "asyncio",
    process_exception: Callable[[Exception], Exception | None] = _reconnect.process_exception,
    backoff: tuple[float, float, float] = _reconnect.DEFAULT_BACKOFF,
    delays: Callable[[], Iterable[float]] | None = None,
    **options: Unpack[ConnectOptions],
) -> Iterator[Reconnecting]:
    """Connect, and connect again after each failure worth retrying, for blocking use.

        with anyws.sync.reconnecting(uri) as connections:
            for ws in connections:
                ...

    Arguments and behaviour as `anyws.reconnecting`; `backend` as in `connect`.

    Raises:
        InvalidHandshake: from the `for` loop, what `anyws.reconnecting` raises (a failure
            its `process_exception` doesn't retry, or the last one when `delays` ran out).
    """
    connections = _reconnect.reconnecting(
        uri, process_exception=process_exception, backoff=backoff, delays=delays, **options
    )
    with start_blocking_portal(backend) as portal:
        calls = _LoopCalls(portal)
        loop = Reconnecting(calls, connections)
        future, _ = portal.start_task(loop._run)
        error: BaseException | None = None
        try:
            yield loop
        except BaseException as exc:
            error = exc
            raise
        finally:
            calls.stop()
            portal.call(loop._commands.send, _Exit(error))
            future.result()
