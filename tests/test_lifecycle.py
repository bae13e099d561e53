"""The lifecycle rules, over real loopback sockets on both backends: nothing received is
lost when the server bursts and closes, memory held to `read_limit + max_queue * max_size`
however well the data compresses, a peer that stopped reading released within
`close_timeout`, oversized messages reported as every other failure.
"""

from __future__ import annotations

import gc
import socket
import threading
import time
import tracemalloc
import weakref
from contextlib import nullcontext
from typing import Any

import anyio
import anyio.abc
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

import anyws
from anyws import Close, ConnectionClosed, ConnectionClosedError, PayloadTooBig
from anyws.testing import ServerConnection, close_frame, frame, serve

from .conftest import websockets_server

pytestmark = pytest.mark.anyio


def burst_then_close(count: int, message: Any, sent: threading.Event) -> Any:
    """A `websockets` handler: `count` messages (each `message(i)`), then close 1000."""

    def handler(ws: Any) -> None:
        for index in range(count):
            ws.send(message(index))
        sent.set()
        ws.close(1000, "done")

    return handler


@pytest.mark.parametrize("max_queue", [1, 4, 32, None])
async def test_burst_then_close_delivers_everything(max_queue: int | None) -> None:
    sent = threading.Event()
    handler = burst_then_close(500, lambda i: f"message {i}", sent)
    async with websockets_server(handler) as uri, anyws.connect(uri, max_queue=max_queue) as ws:
        # Start reading only once the server has sent everything and its close frame
        # is on its way: the reader has long met the full queue.
        await anyio.to_thread.run_sync(sent.wait)
        received = [message async for message in ws]  # ends quietly on 1000
        assert ws.close_code == 1000
        assert ws.close_reason == "done"
    assert received == [f"message {i}" for i in range(500)]


async def test_compressed_burst_then_close_delivers_everything() -> None:
    sent = threading.Event()
    # 64 KiB messages that deflate well: many arrive in one read.
    handler = burst_then_close(300, lambda i: f"{i:08d}".encode() * 8192, sent)
    async with (
        websockets_server(handler) as uri,
        anyws.connect(uri, max_queue=4, max_size=2**17) as ws,
    ):
        await anyio.to_thread.run_sync(sent.wait)
        received = [message async for message in ws]
    assert len(received) == 300
    assert all(message == f"{i:08d}".encode() * 8192 for i, message in enumerate(received))


async def test_burst_then_close_from_our_server() -> None:

    async def handler(connection: ServerConnection) -> None:
        for index in range(200):
            await connection.send(f"message {index}")
        await connection.close(1001, "going")

    async with (
        serve(handler) as server,
        anyws.connect(f"ws://127.0.0.1:{server.port}/", max_queue=2) as ws,
    ):
        received = [message async for message in ws]
        assert ws.close_code == 1001
    assert received == [f"message {i}" for i in range(200)]


async def test_a_compressed_flood_holds_memory_to_the_queue() -> None:
    max_queue, max_size, read_limit = 16, 2**16, 2**16
    count = 2000
    sent = threading.Event()
    # 64 KiB of zeros deflate to ~70 bytes: one 64 KiB read holds ~900 such messages.
    handler = burst_then_close(count, lambda i: bytes(2**16), sent)
    async with websockets_server(handler) as uri:
        tracemalloc.start()
        try:
            async with anyws.connect(
                uri, max_queue=max_queue, max_size=max_size, read_limit=read_limit
            ) as ws:
                await anyio.to_thread.run_sync(sent.wait)  # the reader is far ahead of us
                tracemalloc.reset_peak()
                received = 0
                async for message in ws:
                    assert len(message) == 2**16
                    received += 1
                _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert received == count
    bound = read_limit + max_queue * max_size
    # A margin for what isn't messages (parser state, frames, the zlib window, tracing).
    assert peak < bound + 2**20, f"peak {peak} bytes, bound {bound}"


async def stop_reading_after_handshake(connection: ServerConnection) -> None:
    """A server that accepts the upgrade and then never reads again."""
    connection.stop_reading()
    await anyio.sleep_forever()


@pytest.mark.parametrize("leave", ["normally", "cancelled"])
async def test_a_peer_that_stopped_reading_is_released_within_close_timeout(leave: str) -> None:
    close_timeout = 0.5
    outcome: list[BaseException] = []
    async with serve(stop_reading_after_handshake) as server:
        async with anyio.create_task_group() as senders:
            with anyio.CancelScope() as block:
                async with anyws.connect(
                    server.uri, close_timeout=close_timeout, compression=None
                ) as ws:
                    blocked = anyio.Event()

                    async def flood() -> None:
                        try:
                            while True:
                                if ws._buffered() > 2**16:
                                    blocked.set()  # every buffer on the way is full: send waits
                                await ws.send(bytes(2**16))
                        except ConnectionClosed as exc:
                            outcome.append(exc)

                    senders.start_soon(flood)
                    await blocked.wait()
                    sock = ws._stream.extra(anyio.abc.SocketAttribute.raw_socket)
                    left_at = time.monotonic()
                    if leave == "cancelled":
                        # Our close frame can't be written either: the exit gives up after
                        # close_timeout all the same.
                        block.cancel()
                        await anyio.lowlevel.checkpoint()
            exit_time = time.monotonic() - left_at
        # The sender blocked on the full buffer was woken by the close.
        assert len(outcome) == 1
        assert ws.closed
        assert ws.close_code == 1006
        assert exit_time < close_timeout + 0.5
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.recv()
        if leave == "cancelled":
            assert isinstance(caught.value.__cause__, ConnectionAbortedError)
        else:
            assert "closing handshake" in str(caught.value.__cause__)
        # The socket is released, not left to flush what the peer will never read.
        await anyio.lowlevel.checkpoint()  # asyncio closes it in a callback
        assert sock.fileno() == -1
        with pytest.raises(anyio.ClosedResourceError):
            await ws._stream.send(b"x")


class PingFlooder:
    """A server in a thread, on a blocking socket with a small receive buffer, that
    sends `count` pings (125-byte payloads) and a "done" message without reading anything;
    once `measured` is set it reads again, pings once more and records every pong, until
    the pong to that last ping; then it closes. (Our test server can't stop reading at
    the kernel's level on asyncio: anyio's asyncio streams read into memory regardless.)
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.measured = threading.Event()
        self.pongs: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        # Fixed, so the kernel doesn't grow it: what the client writes stays with it.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.uri = f"ws://127.0.0.1:{self._listener.getsockname()[1]}/"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> PingFlooder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.measured.set()
        self._thread.join(timeout=10)
        self._listener.close()

    def _serve(self) -> None:
        sock, _ = self._listener.accept()
        with sock:
            ws = WSConnection(ConnectionType.SERVER)
            while not any(isinstance(event, Request) for event in self._events(sock, ws)):
                pass
            sock.sendall(ws.send(AcceptConnection()))
            for start in range(0, self.count, 1000):
                pings = range(start, min(start + 1000, self.count))
                sock.sendall(b"".join(ws.send(Ping(b"%125d" % index)) for index in pings))
            sock.sendall(ws.send(TextMessage("done")))
            self.measured.wait(timeout=30)
            sock.sendall(ws.send(Ping(b"still there?")))
            while b"still there?" not in self.pongs:
                for event in self._events(sock, ws):
                    if isinstance(event, Pong):
                        self.pongs.append(bytes(event.payload))
            sock.sendall(ws.send(CloseConnection(1000)))
            while not any(isinstance(e, CloseConnection) for e in self._events(sock, ws)):
                pass

    @staticmethod
    def _events(sock: socket.socket, ws: WSConnection) -> list[Any]:
        data = sock.recv(2**16)
        ws.receive_data(data or None)
        return list(ws.events())


async def test_a_ping_flood_from_a_peer_that_stopped_reading_holds_few_pongs() -> None:
    # Each ping asks for a pong, and this server reads none of them: one queued per ping,
    # 50,000 pings would leave megabytes unwritten once the kernel's buffers are full.
    # Only the latest ping needs an answer (RFC 6455 §5.5.3), once the server reads again.
    with PingFlooder(50_000) as server:
        async with anyws.connect(server.uri, ping_interval=None, compression=None) as ws:
            assert await ws.recv() == "done"  # every ping before it was parsed
            assert ws._buffered() < 2**20  # what waits to be written, in user space
            server.measured.set()
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    # Pings are answered again once the server reads, the flood's latest ping (or the
    # last one, if it came while the backlog still drained) first.
    assert server.pongs[-1] == b"still there?"
    assert ws.close_code == 1000


async def test_a_heartbeat_during_the_closing_handshake_leaves_it_alone() -> None:
    close_timeout = 1.0
    async with serve(stop_reading_after_handshake) as server:
        left_at = time.monotonic()
        async with anyws.connect(server.uri, close_timeout=close_timeout, ping_interval=0.05) as ws:
            pass
        exit_time = time.monotonic() - left_at
    # The server never answers our close frame: the heartbeat fired while we waited for
    # it, but didn't ping or fail the connection; the close timed out.
    assert exit_time >= close_timeout
    with pytest.raises(ConnectionClosedError) as caught:
        await ws.recv()
    assert caught.value.sent is not None
    assert caught.value.sent.code == 1000
    assert "closing handshake" in str(caught.value.__cause__)


async def test_a_cancellation_during_the_closing_handshake_lets_it_finish() -> None:
    # The block ends normally; while the client waits for the server's close frame, the
    # scope around it is cancelled. The close goes on (shielded, bounded by close_timeout)
    # and completes when the server answers; the cancellation is delivered after it.
    accepted: list[ServerConnection] = []

    async def answer_when_told(connection: ServerConnection) -> None:
        accepted.append(connection)
        await stop_reading_after_handshake(connection)

    async with serve(answer_when_told) as server, anyio.create_task_group() as client:
        outer = anyio.CancelScope()

        async def connect_and_leave() -> None:
            with outer:
                async with anyws.connect(server.uri, close_timeout=30) as ws:
                    pass
                assert ws.close_code == 1000
                await anyio.lowlevel.checkpoint()  # where the cancellation is delivered
                pytest.fail("the cancellation wasn't delivered")  # pragma: no cover

        client.start_soon(connect_and_leave)
        await anyio.wait_all_tasks_blocked()  # our close frame waits in the server's buffer
        outer.cancel()
        await anyio.wait_all_tasks_blocked()  # the close still waits for the server
        (connection,) = accepted
        assert connection.close_code is None
        connection.resume_reading()
    assert outer.cancelled_caught
    assert connection.close_code == 1000


async def test_oversized_message_is_a_connection_closed_error() -> None:
    def handler(ws: Any) -> None:
        ws.send("small")
        ws.send("x" * 3000)
        for _ in ws:  # until our close frame; it is answered by the server
            pass

    for compression in ("deflate", None):
        async with (
            websockets_server(handler, compression=compression) as uri,
            anyws.connect(uri, max_size=1000, compression=compression) as ws,
        ):
            assert await ws.recv() == "small"
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            exc = info.value
            assert isinstance(exc.__cause__, PayloadTooBig)
            assert exc.sent == Close(1009, "message too big")
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1009  # the server's echo was read
            assert ws.close_code == 1009
            # The same exception class for every later call, and for `async for`.
            with pytest.raises(ConnectionClosedError):
                async for _ in ws:
                    pass


async def test_an_oversized_message_behind_a_full_queue_then_close() -> None:
    async def handler(connection: ServerConnection) -> None:
        # In one write: "small" fills the queue (max_queue=1); the fragmented message
        # takes the queue's place when it starts, and is dropped when it grows past
        # max_size. Parsing must go on to the close frame behind it.
        oversized = frame(0x1, b"x" * 60, fin=False) + frame(0x0, b"x" * 60)
        await connection.send_raw(frame(0x1, b"small") + oversized + close_frame(1000))
        await connection.wait_closed()

    async with (
        serve(handler) as server,
        anyws.connect(server.uri, max_queue=1, max_size=100) as ws,
    ):
        with anyio.fail_after(5):
            assert await ws.recv() == "small"
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
        assert isinstance(info.value.__cause__, PayloadTooBig)
        assert info.value.sent == Close(1009, "message too big")
        assert ws.close_code == 1000


async def test_close_accepts_reason_none(echo_uri: str) -> None:
    async with anyws.connect(echo_uri) as ws:
        await ws.close(1000, None)
        assert ws.closed
        assert ws.close_code == 1000


class LeftTheBlock(Exception):
    pass


@pytest.mark.parametrize("ending", ["client closes", "server closes", "block raises"])
async def test_a_closed_connection_is_freed_without_the_cycle_collector(ending: str) -> None:
    # Thousands of short connections must not each wait for a GC pass: once closed and let
    # go of, nothing inside (stream callbacks, timers, tasks) may still point back at it.
    async def handler(connection: ServerConnection) -> None:
        await connection.send("hello")
        if ending == "server closes":
            await connection.close(1001, "going")
        else:
            await connection.wait_closed()

    gc.collect()
    gc.disable()
    try:
        async with serve(handler) as server:
            with pytest.raises(LeftTheBlock) if ending == "block raises" else nullcontext():
                async with anyws.connect(server.uri) as ws:
                    assert await ws.recv() == "hello"
                    if ending == "server closes":
                        await ws.wait_closed()
                    elif ending == "block raises":
                        raise LeftTheBlock
            freed = weakref.ref(ws)
            del ws
            assert freed() is None
    finally:
        gc.enable()
