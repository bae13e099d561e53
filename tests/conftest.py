"""Shared fixtures: both anyio backends, our echo server, the `websockets` server, scripted
raw TCP servers, an in-memory transport, and TLS material from trustme."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

# test_examples imports the examples as modules.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import anyws
from anyws.testing import Accept, Handler, echo, serve

# The backstop behind pytest-timeout: hooks, registered by being in this module.
from .hang_guard import pytest_enter_pdb, pytest_runtest_protocol  # noqa: F401

# ANYWS_TEST_UVLOOP=1 (nox's tests_uvloop session): the asyncio tests on uvloop's event
# loop, which differs where a transport's details show, and no trio tests.
BACKENDS: list[Any] = (
    [("asyncio", {"use_uvloop": True})]
    if os.environ.get("ANYWS_TEST_UVLOOP")
    else ["asyncio", "trio"]
)


@pytest.fixture(
    params=BACKENDS, ids=lambda backend: backend if isinstance(backend, str) else "uvloop"
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


# -- our own server ---------------------------------------------------------------------


@pytest.fixture
async def echo_uri() -> AsyncIterator[str]:
    async with serve() as server:
        yield server.uri


# -- the websockets server (an independent implementation), in a thread ------------------


@asynccontextmanager
async def websockets_server(
    handler: Callable[[Any], None] | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    unix_path: str | None = None,
    receive_buffer: int | None = None,
    **options: Any,
) -> AsyncIterator[str]:
    """Run `websockets.sync.server` in a thread; yield its URI. Backend-independent.

    `receive_buffer` sets SO_RCVBUF on the server's sockets: a small one makes the
    client's socket take only part of a big write.
    """
    from websockets.sync.server import serve, unix_serve

    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    # Each connection is handled in a thread of its own, which closes the socket after
    # the handler returns: the exit waits for those threads, so that no socket of this
    # server outlives the block (the chaos suite checks that no socket outlives a test)
    # and whatever a handler records is there when the block ends. A thread is noted in
    # process_request, before the 101 goes out: one the client saw open is always joined.
    connection_threads: list[threading.Thread] = []
    handlers: list[Any] = []
    process_request = options.pop("process_request", None)

    def note_thread(connection: Any, request: Any) -> Any:
        connection_threads.append(threading.current_thread())
        return None if process_request is None else process_request(connection, request)

    def handle(ws: Any) -> None:
        handlers.append(ws)
        (handler or echo)(ws)

    def join_handlers() -> None:
        for ws in handlers:
            ws.close()  # at once if the client closed already
        for connection_thread in connection_threads:
            connection_thread.join(timeout=10)

    if unix_path is not None:
        server = unix_serve(handle, unix_path, process_request=note_thread, **options)
    elif receive_buffer is not None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before listen
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = serve(handle, sock=sock, ssl=ssl_context, process_request=note_thread, **options)
    else:
        server = serve(
            handle, "127.0.0.1", 0, ssl=ssl_context, process_request=note_thread, **options
        )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        if unix_path is not None:
            yield "ws://localhost/"
        else:
            port = server.socket.getsockname()[1]
            yield f"{'wss' if ssl_context else 'ws'}://127.0.0.1:{port}/"
    finally:
        await anyio.to_thread.run_sync(server.shutdown)
        await anyio.to_thread.run_sync(thread.join)
        await anyio.to_thread.run_sync(join_handlers)


@pytest.fixture
async def websockets_uri() -> AsyncIterator[str]:
    async with websockets_server() as uri:
        yield uri


# -- scripted raw servers ---------------------------------------------------------------

RawHandler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[int]:
    """Serve `handler` on 127.0.0.1 with plain TCP streams; yield the port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:

        async def run(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await handler(stream)

        tg.start_soon(listener.serve, run)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def read_request(stream: anyio.abc.ByteStream) -> bytes:
    """Read an HTTP request head."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


def request_key(request: bytes) -> str:
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return value.strip().decode()
    raise AssertionError("no key")


# -- in-memory transport ----------------------------------------------------------------


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of an in-memory byte pipe; `max_chunks` bounds what may wait unread."""

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._buffer = b""
        self.bytes_received = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._buffer:
            self._buffer = await self._receive.receive()
        chunk, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
        self.bytes_received += len(chunk)
        return chunk

    async def send(self, item: bytes) -> None:
        try:
            await self._send.send(bytes(item))
        except anyio.BrokenResourceError:
            raise anyio.BrokenResourceError from None

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def memory_pair(max_chunks: float = float("inf")) -> tuple[MemoryByteStream, MemoryByteStream]:
    a_send, b_receive = anyio.create_memory_object_stream[bytes](max_chunks)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](max_chunks)
    return MemoryByteStream(a_send, a_receive), MemoryByteStream(b_send, b_receive)


# -- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def unused_tcp_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def assert_keepalive_timeout(exc: anyws.ConnectionClosedError, *, closed: bool) -> None:
    """Check what a connection the heartbeat failed reports: no pong within ping_timeout,
    our close frame 1011; `closed`: whether the transport is already released."""
    assert isinstance(exc.__cause__, TimeoutError)
    assert exc.sent is not None
    assert exc.sent.code == 1011
    assert exc.sent.reason == "keepalive ping timeout"
    assert closed


@asynccontextmanager
async def memory_websocket(
    handler: Handler | None = echo,
    *,
    max_chunks: float = float("inf"),
    compression: bool = True,
    **options: Any,
) -> AsyncIterator[anyws.ClientConnection]:
    """Connect `anyws` to `handler` (anyws.testing's server) over an in-memory transport."""

    client_stream, server_stream = memory_pair(max_chunks)
    async with serve(handler, handshake=Accept(compression=compression)) as server:
        server.attach(server_stream)
        try:
            async with anyws.connect("ws://memory/", stream=client_stream, **options) as ws:
                yield ws
        finally:
            # Handlers still running when the server exits are cancelled: first let them
            # do what the client's leaving allows (a handler's last step is observable).
            await anyio.wait_all_tasks_blocked()
