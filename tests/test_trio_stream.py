"""The trio socket stream, over real loopback sockets, and where the connection uses it.
These tests are about the trio backend only (on asyncio, `AsyncioStream` is the stream)."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
import trio.testing
from anyio.abc import SocketAttribute

import anyws
from anyws._trio_stream import TrioSocketStream
from anyws.testing import serve

from .conftest import has_ipv6_loopback, websockets_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[TrioSocketStream, anyio.abc.SocketStream]]:
    """Our stream on a client socket, and the server's end of the connection."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(SocketAttribute.local_port)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        client = TrioSocketStream(sock)
        inner = listener.listeners[0]
        assert isinstance(inner, anyio.abc.SocketListener)
        server = await inner.accept()
        async with client, server:
            yield client, server


@pytest.fixture(params=["receive", "receive_into"])
def receive(request: pytest.FixtureRequest) -> Callable[..., Awaitable[bytes]]:
    """Read with `receive`, or with `receive_into` (into a buffer of `max_bytes`)."""

    async def receive_into(client: TrioSocketStream, max_bytes: int = 65536) -> bytes:
        buffer = bytearray(max_bytes)
        return bytes(buffer[: await client.receive_into(buffer)])

    if request.param == "receive":
        return TrioSocketStream.receive
    return receive_into


async def test_receive_returns_what_arrived_and_end_of_stream_at_eof(
    receive: Callable[..., Awaitable[bytes]],
) -> None:
    async with connected() as (client, server):
        await server.send(b"hello")
        assert await receive(client) == b"hello"
        await server.send(b"0123456789")
        assert await receive(client, 4) == b"0123"  # at most max_bytes
        assert await receive(client) == b"456789"
        await server.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await receive(client)


async def test_a_receive_that_waits_reads_once_data_arrives(
    receive: Callable[..., Awaitable[bytes]],
) -> None:
    async with connected() as (client, server), anyio.create_task_group() as tg:
        received: list[bytes] = []

        async def wait_and_receive() -> None:
            received.append(await receive(client))

        tg.start_soon(wait_and_receive)
        await trio.testing.wait_all_tasks_blocked()
        assert received == []
        await server.send(b"late")
    assert received == [b"late"]


async def test_a_receive_cancelled_while_waiting_reads_nothing(
    receive: Callable[..., Awaitable[bytes]],
) -> None:
    async with connected() as (client, server):
        with anyio.move_on_after(0):
            await receive(client)
        await server.send(b"kept")
        assert await receive(client) == b"kept"


async def test_a_receive_or_send_during_or_after_aclose_raises_closed_resource_error(
    receive: Callable[..., Awaitable[bytes]],
) -> None:
    async with connected() as (client, _server):
        client._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "receive": lambda: receive(client),
            "send": lambda: client.send(b"x" * 2**23),  # more than the socket takes: waits
        }
        raised: list[str] = []

        async def wait_in(name: str) -> None:
            try:
                await calls[name]()
            except anyio.ClosedResourceError:
                raised.append(name)

        async with anyio.create_task_group() as tg:
            for name in calls:
                tg.start_soon(wait_in, name)
            await trio.testing.wait_all_tasks_blocked()  # both wait on the socket
            await client.aclose()
        assert sorted(raised) == ["receive", "send"]
        for call in [*calls.values(), client.send_eof]:
            with pytest.raises(anyio.ClosedResourceError):
                await call()


async def test_a_reset_connection_is_broken_resource_error_caused_by_the_os_error(
    receive: Callable[..., Awaitable[bytes]],
) -> None:
    async with connected() as (client, server):
        raw = server.extra(SocketAttribute.raw_socket)
        # SO_LINGER with a zero timeout: closing sends RST instead of FIN.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await server.aclose()
        with pytest.raises(anyio.BrokenResourceError) as caught:
            await receive(client)
        assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_try_send_writes_what_the_socket_takes_and_never_raises() -> None:
    async with connected() as (client, server):
        assert client.try_send(b"now") == 3
        assert await server.receive() == b"now"
        # The server doesn't read: the socket buffers fill, and a write takes only part,
        # then nothing; `send` would wait.
        chunk = b"x" * 2**20
        sent = [client.try_send(chunk) for _ in range(64)]
        assert sent[0] > 0
        assert sent[-1] == 0
        assert any(0 < n < len(chunk) for n in sent)
        await client.aclose()
        assert client.try_send(b"closed") == 0  # EBADF, left to `send` to report


async def test_try_send_on_a_broken_connection_writes_nothing() -> None:
    async with connected() as (client, server):
        raw = server.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await server.aclose()
        with pytest.raises(anyio.BrokenResourceError):
            await client.receive()  # the RST has arrived
        assert client.try_send(b"lost") == 0
        with pytest.raises(anyio.BrokenResourceError):
            await client.send(b"lost")


async def test_send_send_eof_and_extra_attributes_are_the_sockets() -> None:
    async with connected() as (client, server):
        await client.send(b"all of it")
        await client.send_eof()
        received = b""
        while len(received) < len(b"all of it"):
            received += await server.receive()
        assert received == b"all of it"
        with pytest.raises(anyio.EndOfStream):
            await server.receive()
        assert client.extra(SocketAttribute.remote_address) == server.extra(
            SocketAttribute.local_address
        )
        assert client.extra(SocketAttribute.raw_socket) is client._socket


async def test_a_send_the_socket_cant_take_at_once_waits_and_writes_it_all() -> None:
    async with connected() as (client, server), anyio.create_task_group() as tg:
        client._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = bytes(range(256)) * 2**11  # 512 KiB: more than both buffers hold
        received = bytearray()

        async def receive() -> None:
            await trio.testing.wait_all_tasks_blocked()  # the sender is waiting
            while len(received) < len(big):
                received.extend(await server.receive())

        tg.start_soon(receive)
        await client.send(big)
    assert received == big


async def test_a_send_waiting_when_the_peer_resets_raises_broken_resource_error() -> None:
    async with connected() as (client, server), anyio.create_task_group() as tg:
        client._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        async def reset() -> None:
            await trio.testing.wait_all_tasks_blocked()  # the sender is waiting
            raw = server.extra(SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await server.aclose()

        tg.start_soon(reset)
        with pytest.raises(anyio.BrokenResourceError) as caught:
            await client.send(b"x" * 2**23)
        assert isinstance(caught.value.__cause__, OSError)
        # Reset, the socket has no peer any more: no remote address, and no half-close.
        assert client.extra(SocketAttribute.remote_address, None) is None
        assert client.extra(SocketAttribute.remote_port, None) is None
        assert client.extra(SocketAttribute.local_port) > 0
        with pytest.raises(anyio.BrokenResourceError):
            await client.send_eof()


async def test_extra_attributes_of_a_unix_socket() -> None:
    first, second = socket.socketpair()
    with first, second:
        stream = TrioSocketStream(first)
        assert stream.extra(SocketAttribute.family) == socket.AF_UNIX
        assert stream.extra(SocketAttribute.local_address) == first.getsockname()
        assert stream.extra(SocketAttribute.remote_address) == first.getpeername()
        assert stream.extra(SocketAttribute.local_port, None) is None  # no ports: not IP
        assert stream.extra(SocketAttribute.remote_port, None) is None


async def test_extra_attributes_of_ipv6_are_host_and_port() -> None:
    if not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    with socket.socket(socket.AF_INET6) as listener:
        listener.bind(("::1", 0))
        listener.listen()
        sock = socket.create_connection(listener.getsockname()[:2])
        accepted, _ = listener.accept()
        with sock, accepted:
            stream = TrioSocketStream(sock)
            port = listener.getsockname()[1]
            # (host, port) only, as anyio reports IPv6 addresses: no flow info, no scope.
            assert stream.extra(SocketAttribute.local_address) == sock.getsockname()[:2]
            assert stream.extra(SocketAttribute.remote_address) == ("::1", port)
            assert stream.extra(SocketAttribute.remote_port) == port


async def test_plain_tcp_and_unix_connections_use_it_and_tls_does_not(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    async with serve() as server, anyws.connect(server.uri) as ws:
        assert isinstance(ws._stream, TrioSocketStream)
        await ws.send("over TCP")
        assert await ws.recv() == "over TCP"
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        async with websockets_server(unix_path=path), anyws.unix_connect(path) as ws:
            assert isinstance(ws._stream, TrioSocketStream)
            await ws.send("over unix")
            assert await ws.recv() == "over unix"
    async with (
        websockets_server(ssl_context=server_ssl_context) as uri,
        anyws.connect(uri, ssl=client_ssl_context) as ws,
    ):
        assert not isinstance(ws._stream, TrioSocketStream)  # the socket holds TLS records
        await ws.send("over TLS")
        assert await ws.recv() == "over TLS"


async def test_what_the_socket_didnt_take_of_a_direct_write_goes_out_first() -> None:
    async with (
        websockets_server(receive_buffer=4096, max_size=None) as uri,
        anyws.connect(uri, compression=None, max_size=None, write_limit=2**23) as ws,
    ):
        ws._stream.extra(SocketAttribute.raw_socket).setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )
        await trio.testing.wait_all_tasks_blocked()  # the writer waits: it is idle
        big = "B" * 2**22
        await ws.send(big)  # written by this task, as far as the socket takes it
        assert ws._unsent  # the rest is the writer's, which is woken
        # Data arriving reopens the batch (`_read`); a frame queued before the writer
        # ran must go after the rest of B.
        ws._write_batch_open = False
        await ws.send("C")
        assert [await ws.recv() for _ in range(2)] == [big, "C"]


def task_names() -> list[str]:
    """The names of every task in this trio run."""
    names: list[str] = []
    root = trio.lowlevel.current_root_task()
    assert root is not None  # inside trio.run
    pending = [root]
    while pending:
        task = pending.pop()
        names.append(task.name)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return names


async def test_the_writer_task_starts_only_when_a_frame_must_wait_for_it() -> None:
    async with serve() as server, anyws.connect(server.uri) as ws:
        for message in ["one", "two"]:
            await ws.send(message)  # the socket takes it: this task wrote it
            assert await ws.recv() == message
        assert "anyws reader" in task_names()
        assert "anyws writer" not in task_names()
        await ws.send("three")
        await ws.send("four")  # the second frame before any data arrived: the writer's
        assert "anyws writer" in task_names()
        assert [await ws.recv() for _ in range(2)] == ["three", "four"]
