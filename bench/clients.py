"""One benchmark run: one client library, one workload, in this process.

    python bench/clients.py CLIENT WORKLOAD URI N

Prints one JSON line: operations, client CPU seconds and wall seconds spent in the
workload (connection setup excluded except for W4), and the peak RSS of the process.
Workloads (per operation):
    w1  32-byte binary message, request/response
    w2  32-byte binary messages, pipelined (a sender and a receiver)
    w3  1 MiB binary message, request/response
    w4  connect, then close; timed after a first connection, whose CPU time is reported
        apart with the library's import ("import", "first"): both are paid once per process
        (libraries import their backends at different times: `websockets` when imported,
        anyio on the first call that needs one), and 200 operations would spread them
    w5  16 KiB JSON document, request/response, permessage-deflate
    cK  K connections open at once, each doing 32-byte round trips concurrently; N round
        trips in all (N // K per connection)
    idle  N open connections: RSS and traced heap (tracemalloc) per connection (bytes)

With ANYWS_BENCH_PROFILE=PATH set, the workload runs under cProfile and its statistics
are written to PATH (the CPU times printed are then inflated by the profiler).
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

SMALL = b"x" * 32
LARGE = bytes(range(256)) * 4096  # 1 MiB
DOCUMENT = {
    "items": [
        {
            "id": index,
            "name": f"item-{index:05d}",
            "tags": ["alpha", "beta", "gamma"],
            "value": index * 1.25,
            "active": index % 2 == 0,
        }
        for index in range(170)
    ]
}
DOCUMENT_TEXT = json.dumps(DOCUMENT)


Workload = Callable[..., Coroutine[Any, Any, Any]]


class Timer:
    def __init__(self) -> None:
        self.cpu = time.process_time()
        self.wall = time.perf_counter()

    def stop(self) -> tuple[float, float]:
        return time.process_time() - self.cpu, time.perf_counter() - self.wall


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


class IdleMemory:
    """Memory growth while connections are opened: RSS, and the Python heap as
    tracemalloc traces it (what the connections' objects hold, without the allocator's
    slack that RSS includes).
    """

    def __init__(self) -> None:
        tracemalloc.start()
        self.rss = rss()
        self.heap = tracemalloc.get_traced_memory()[0]

    def per_connection(self, count: int) -> dict[str, int]:
        heap = tracemalloc.get_traced_memory()[0] - self.heap
        tracemalloc.stop()
        return {"rss": (rss() - self.rss) // count, "heap": heap // count}


def per_connection_rounds(total: int, connections: int) -> int:
    return max(1, total // connections)


# -- anyws (both backends) ----------------------------------------------------------------


def all_at_once(backend: str) -> Callable[[list[Coroutine[Any, Any, None]]], Awaitable[None]]:
    """How the concurrency workload starts its K loops: the same for every client on a
    backend (asyncio's gather, trio's nursery), since the start is timed with them (anyio's
    task group costs about 5 times as much per task: 3.5 µs per round trip at K = 3,000).
    """
    if backend == "trio":
        import trio

        async def run_all(coroutines: list[Coroutine[Any, Any, None]]) -> None:
            async def run(coroutine: Coroutine[Any, Any, None]) -> None:
                await coroutine

            async with trio.open_nursery() as nursery:
                for coroutine in coroutines:
                    nursery.start_soon(run, coroutine)

        return run_all

    async def gather_all(coroutines: list[Coroutine[Any, Any, None]]) -> None:
        await asyncio.gather(*coroutines)

    return gather_all


def anyws_client(backend: str) -> dict[str, Workload]:
    import anyio

    import anyws

    run_all = all_at_once(backend)

    async def w1(uri: str, n: int) -> tuple[float, float]:
        async with anyws.connect(uri) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send(SMALL)
                await ws.recv()
            return timer.stop()

    async def w2(uri: str, n: int) -> tuple[float, float]:
        async with anyws.connect(uri) as ws:
            timer = Timer()

            async def sender() -> None:
                for _ in range(n):
                    await ws.send(SMALL)

            async with anyio.create_task_group() as tg:
                tg.start_soon(sender)
                for _ in range(n):
                    await ws.recv()
            return timer.stop()

    async def w3(uri: str, n: int) -> tuple[float, float]:
        async with anyws.connect(uri, max_size=None) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send(LARGE)
                await ws.recv()
            return timer.stop()

    async def w4(uri: str, n: int) -> tuple[float, float]:
        timer = Timer()
        for _ in range(n):
            async with anyws.connect(uri):
                pass
        return timer.stop()

    async def w5(uri: str, n: int) -> tuple[float, float]:
        async with anyws.connect(uri) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send_json(DOCUMENT)
                await ws.receive_json()
            return timer.stop()

    async def idle(uri: str, n: int) -> dict[str, int]:
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:
            # A first connection imports and caches what every connection shares.
            await stack.enter_async_context(anyws.connect(uri))
            memory = IdleMemory()
            for _ in range(n):
                await stack.enter_async_context(anyws.connect(uri))
            return memory.per_connection(n)

    async def concurrent(uri: str, n: int, connections: int) -> tuple[float, float, int]:
        from contextlib import AsyncExitStack

        rounds = per_connection_rounds(n, connections)

        async def round_trips(ws: anyws.ClientConnection) -> None:
            for _ in range(rounds):
                await ws.send(SMALL)
                await ws.recv()

        async with AsyncExitStack() as stack:
            opened = [
                await stack.enter_async_context(anyws.connect(uri)) for _ in range(connections)
            ]
            timer = Timer()
            await run_all([round_trips(ws) for ws in opened])
            return (*timer.stop(), rounds * connections)

    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5, "idle": idle, "c": concurrent}


# -- websockets (asyncio and trio) --------------------------------------------------------


def websockets_client(backend: str) -> dict[str, Workload]:
    connect: Any
    run_all = all_at_once(backend)
    if backend == "trio":
        import trio
        from websockets.trio.client import connect

        def spawn_pair(
            sender: Callable[[], Coroutine[Any, Any, None]],
            receiver: Callable[[], Coroutine[Any, Any, None]],
        ) -> Coroutine[Any, Any, None]:
            async def both() -> None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sender)
                    await receiver()

            return both()
    else:
        from websockets.asyncio.client import connect

        def spawn_pair(
            sender: Callable[[], Coroutine[Any, Any, None]],
            receiver: Callable[[], Coroutine[Any, Any, None]],
        ) -> Coroutine[Any, Any, None]:
            async def both() -> None:
                task = asyncio.ensure_future(sender())
                await receiver()
                await task

            return both()

    async def w1(uri: str, n: int) -> tuple[float, float]:
        async with connect(uri) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send(SMALL)
                await ws.recv()
            return timer.stop()

    async def w2(uri: str, n: int) -> tuple[float, float]:
        async with connect(uri) as ws:
            timer = Timer()

            async def sender() -> None:
                for _ in range(n):
                    await ws.send(SMALL)

            async def receiver() -> None:
                for _ in range(n):
                    await ws.recv()

            await spawn_pair(sender, receiver)
            return timer.stop()

    async def w3(uri: str, n: int) -> tuple[float, float]:
        async with connect(uri, max_size=None) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send(LARGE)
                await ws.recv()
            return timer.stop()

    async def w4(uri: str, n: int) -> tuple[float, float]:
        timer = Timer()
        for _ in range(n):
            async with connect(uri):
                pass
        return timer.stop()

    async def w5(uri: str, n: int) -> tuple[float, float]:
        async with connect(uri) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send(json.dumps(DOCUMENT))
                json.loads(await ws.recv())
            return timer.stop()

    async def idle(uri: str, n: int) -> dict[str, int]:
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:
            # A first connection imports and caches what every connection shares.
            await stack.enter_async_context(connect(uri))
            memory = IdleMemory()
            for _ in range(n):
                await stack.enter_async_context(connect(uri))
            return memory.per_connection(n)

    async def concurrent(uri: str, n: int, connections: int) -> tuple[float, float, int]:
        from contextlib import AsyncExitStack

        rounds = per_connection_rounds(n, connections)

        async def round_trips(ws: Any) -> None:
            for _ in range(rounds):
                await ws.send(SMALL)
                await ws.recv()

        async with AsyncExitStack() as stack:
            opened = [await stack.enter_async_context(connect(uri)) for _ in range(connections)]
            timer = Timer()
            await run_all([round_trips(ws) for ws in opened])
            return (*timer.stop(), rounds * connections)

    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5, "idle": idle, "c": concurrent}


# -- aiohttp ------------------------------------------------------------------------------


def aiohttp_client(backend: str) -> dict[str, Workload]:
    import aiohttp

    async def w1(uri: str, n: int) -> tuple[float, float]:
        async with aiohttp.ClientSession() as session, session.ws_connect(uri) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send_bytes(SMALL)
                await ws.receive()
            return timer.stop()

    async def w2(uri: str, n: int) -> tuple[float, float]:
        async with aiohttp.ClientSession() as session, session.ws_connect(uri) as ws:
            timer = Timer()

            async def sender() -> None:
                for _ in range(n):
                    await ws.send_bytes(SMALL)

            task = asyncio.ensure_future(sender())
            for _ in range(n):
                await ws.receive()
            await task
            return timer.stop()

    async def w3(uri: str, n: int) -> tuple[float, float]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(uri, max_msg_size=0) as ws,
        ):
            timer = Timer()
            for _ in range(n):
                await ws.send_bytes(LARGE)
                await ws.receive()
            return timer.stop()

    async def w4(uri: str, n: int) -> tuple[float, float]:
        async with aiohttp.ClientSession() as session:
            timer = Timer()
            for _ in range(n):
                async with session.ws_connect(uri):
                    pass
            return timer.stop()

    async def w5(uri: str, n: int) -> tuple[float, float]:
        async with aiohttp.ClientSession() as session, session.ws_connect(uri, compress=15) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send_json(DOCUMENT)
                await ws.receive_json()
            return timer.stop()

    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5}


# -- trio-websocket -----------------------------------------------------------------------


def trio_websocket_client(backend: str) -> dict[str, Workload]:
    import trio
    from trio_websocket import open_websocket_url

    async def w1(uri: str, n: int) -> tuple[float, float]:
        async with open_websocket_url(uri) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send_message(SMALL)
                await ws.get_message()
            return timer.stop()

    async def w2(uri: str, n: int) -> tuple[float, float]:
        async with open_websocket_url(uri) as ws, trio.open_nursery() as nursery:
            timer = Timer()

            async def sender() -> None:
                for _ in range(n):
                    await ws.send_message(SMALL)

            nursery.start_soon(sender)
            for _ in range(n):
                await ws.get_message()
            return timer.stop()

    async def w3(uri: str, n: int) -> tuple[float, float]:
        async with open_websocket_url(uri, max_message_size=2**21) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send_message(LARGE)
                await ws.get_message()
            return timer.stop()

    async def w4(uri: str, n: int) -> tuple[float, float]:
        timer = Timer()
        for _ in range(n):
            async with open_websocket_url(uri):
                pass
        return timer.stop()

    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4}


# -- httpx-ws -----------------------------------------------------------------------------


def httpx_ws_client(backend: str) -> dict[str, Workload]:
    import httpx
    from httpx_ws import aconnect_ws as untyped_aconnect_ws

    aconnect_ws: Any = untyped_aconnect_ws

    def http_uri(uri: str) -> str:
        return "http" + uri[2:]

    async def w1(uri: str, n: int) -> tuple[float, float]:
        async with httpx.AsyncClient() as client, aconnect_ws(http_uri(uri), client) as ws:
            timer = Timer()
            for _ in range(n):
                await ws.send_bytes(SMALL)
                await ws.receive_bytes()
            return timer.stop()

    async def w2(uri: str, n: int) -> tuple[float, float]:
        async with httpx.AsyncClient() as client, aconnect_ws(http_uri(uri), client) as ws:
            timer = Timer()

            async def sender() -> None:
                for _ in range(n):
                    await ws.send_bytes(SMALL)

            task = asyncio.ensure_future(sender())
            for _ in range(n):
                await ws.receive_bytes()
            await task
            return timer.stop()

    async def w3(uri: str, n: int) -> tuple[float, float]:
        async with (
            httpx.AsyncClient() as client,
            aconnect_ws(http_uri(uri), client, max_message_size_bytes=2**21) as ws,
        ):
            timer = Timer()
            for _ in range(n):
                await ws.send_bytes(LARGE)
                await ws.receive_bytes()
            return timer.stop()

    async def w4(uri: str, n: int) -> tuple[float, float]:
        async with httpx.AsyncClient() as client:
            timer = Timer()
            for _ in range(n):
                async with aconnect_ws(http_uri(uri), client):
                    pass
            return timer.stop()

    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4}


# -- picows -------------------------------------------------------------------------------


def picows_client(backend: str) -> dict[str, Workload]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Collector(WSListener):
        def __init__(self) -> None:
            self.expected = 0
            self.received = 0
            self.done: asyncio.Future[None] | None = None

        def expect(self, count: int) -> asyncio.Future[None]:
            self.expected, self.received = count, 0
            self.done = asyncio.get_running_loop().create_future()
            return self.done

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.BINARY:
                frame.get_payload_as_bytes()  # what an application would do with it
                self.received += 1
                if self.received == self.expected and self.done is not None:
                    self.done.set_result(None)

    async def request_response(uri: str, n: int, message: bytes) -> tuple[float, float]:
        transport, connected = await ws_connect(Collector, uri, max_frame_size=2**21)
        listener = cast(Collector, connected)
        timer = Timer()
        for _ in range(n):
            done = listener.expect(1)
            transport.send(WSMsgType.BINARY, message)
            await done
        result = timer.stop()
        transport.send_close()
        transport.disconnect()
        return result

    async def w1(uri: str, n: int) -> tuple[float, float]:
        return await request_response(uri, n, SMALL)

    async def w2(uri: str, n: int) -> tuple[float, float]:
        transport, connected = await ws_connect(Collector, uri)
        listener = cast(Collector, connected)
        timer = Timer()
        done = listener.expect(n)
        for _ in range(n):
            transport.send(WSMsgType.BINARY, SMALL)
            await asyncio.sleep(0) if _ % 64 == 0 else None  # let the loop write and read
        await done
        result = timer.stop()
        transport.disconnect()
        return result

    async def w3(uri: str, n: int) -> tuple[float, float]:
        return await request_response(uri, n, LARGE)

    async def w4(uri: str, n: int) -> tuple[float, float]:
        timer = Timer()
        for _ in range(n):
            transport, _listener = await ws_connect(Collector, uri)
            transport.send_close()
            await transport.wait_disconnected()
        return timer.stop()

    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4}


# -- the blocking APIs: anyws.sync and websockets.sync -----------------------------------


def sync_client(library: str, loop: str | None = None) -> dict[str, Workload]:
    """A blocking client (`anyws.sync` with its event loop `loop` in a thread of its own,
    or `websockets.sync`), timed from the bench's event loop, which it blocks: nothing
    else runs there. W2's sender is a thread, as a script would have it.
    """
    import threading

    if library == "anyws":
        from anyws.sync import connect as anyws_connect

        def connect(uri: str, **options: Any) -> Any:
            return anyws_connect(uri, backend=loop, **options)  # type: ignore[arg-type]
    else:
        from websockets.sync.client import connect

    def request_response(uri: str, n: int, message: bytes, **options: Any) -> tuple[float, float]:
        with connect(uri, **options) as ws:
            timer = Timer()
            for _ in range(n):
                ws.send(message)
                ws.recv()
            return timer.stop()

    async def w1(uri: str, n: int) -> tuple[float, float]:
        return request_response(uri, n, SMALL)

    async def w2(uri: str, n: int) -> tuple[float, float]:
        with connect(uri) as ws:
            timer = Timer()

            def sender() -> None:
                for _ in range(n):
                    ws.send(SMALL)

            thread = threading.Thread(target=sender)
            thread.start()
            for _ in range(n):
                ws.recv()
            thread.join()
            return timer.stop()

    async def w3(uri: str, n: int) -> tuple[float, float]:
        return request_response(uri, n, LARGE, max_size=None)

    async def w4(uri: str, n: int) -> tuple[float, float]:
        timer = Timer()
        for _ in range(n):
            with connect(uri):
                pass
        return timer.stop()

    async def w5(uri: str, n: int) -> tuple[float, float]:
        with connect(uri) as ws:
            timer = Timer()
            for _ in range(n):
                ws.send(json.dumps(DOCUMENT))
                json.loads(ws.recv())
            return timer.stop()

    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5}


# -- the floors: no WebSocket library at all ----------------------------------------------


def floor_client(backend: str) -> dict[str, Workload]:
    """The least any pure-Python client on this event loop can do for W1-W4, with the API
    every client here offers (a coroutine that returns the next message): write a masked
    frame, wait in a future (asyncio) or on the socket (trio) until the echo's bytes are
    all there, slice the payload out. No validation of anything, no reader task, no
    protocol state: a lower bound for the clients' CPU, not a client.
    """
    from urllib.parse import urlsplit

    from anyws._frames import client_frame  # the C masking, as fast as masking gets here

    upgrade = (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )

    def echo_size(payload: bytes) -> int:
        # The server's frame: unmasked, so only a 2-, 4- or 10-byte header.
        length = len(payload)
        return length + (2 if length < 126 else 4 if length < 65536 else 10)

    def close_frame() -> bytes:
        return client_frame(0x8, (1000).to_bytes(2, "big"))

    def address(uri: str) -> tuple[str, int]:
        parts = urlsplit(uri)
        assert parts.hostname is not None
        assert parts.port is not None
        return parts.hostname, parts.port

    if backend == "trio":
        return _floor_trio(upgrade, echo_size, close_frame, address)
    return _floor_asyncio(upgrade, echo_size, close_frame, address)


class Received:
    """Bytes received and not taken yet: a list of reads, joined when taken."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)

    def take(self, size: int, skip: int = 0) -> bytes:
        """Drop `skip` bytes (a frame's header), then take `size` bytes."""
        while skip:
            first = self.chunks[0]
            dropped = min(len(first), skip)
            if dropped == len(first):
                del self.chunks[0]
            else:
                self.chunks[0] = first[dropped:]
            self.size -= dropped
            skip -= dropped
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        rest = data[size:]
        self.chunks = [rest] if rest else []
        self.size = len(rest)
        return data[:size]

    def skip_head(self) -> bool:
        """Drop the HTTP response's head if it is all here; say whether it was."""
        data = b"".join(self.chunks)
        _head, found, rest = data.partition(b"\r\n\r\n")
        if not found:
            return False
        self.chunks, self.size = [rest] if rest else [], len(rest)
        return True


def _floor_asyncio(
    upgrade: bytes,
    echo_size: Callable[[bytes], int],
    close_frame: Callable[[], bytes],
    address: Callable[[str], tuple[str, int]],
) -> dict[str, Workload]:
    from anyws._frames import client_frame

    class Floor(asyncio.Protocol):
        def __init__(self) -> None:
            self.received = Received()
            self.wanted = 0  # bytes the waiter waits for
            self.waiter: asyncio.Future[None] | None = None
            self.lost = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.received.add(data)
            if self.waiter is not None and self.received.size >= self.wanted:
                self.waiter.set_result(None)
                self.waiter = None

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.set_result(None)

        async def take(self, size: int, skip: int = 0) -> bytes:
            if self.received.size < skip + size:
                self.wanted = skip + size
                self.waiter = asyncio.get_running_loop().create_future()
                await self.waiter
            return self.received.take(size, skip)

        async def head(self) -> None:
            while not self.received.skip_head():
                self.wanted = self.received.size + 1
                self.waiter = asyncio.get_running_loop().create_future()
                await self.waiter

    async def connect(uri: str) -> tuple[asyncio.Transport, Floor]:
        host, port = address(uri)
        transport, floor = await asyncio.get_running_loop().create_connection(Floor, host, port)
        transport.write(upgrade)
        await floor.head()
        return transport, floor

    async def request_response(uri: str, n: int, message: bytes) -> tuple[float, float]:
        transport, floor = await connect(uri)
        header = echo_size(message) - len(message)
        timer = Timer()
        for _ in range(n):
            transport.write(client_frame(0x2, message))
            await floor.take(len(message), header)  # the payload, as a client returns it
        result = timer.stop()
        transport.close()
        return result

    async def w1(uri: str, n: int) -> tuple[float, float]:
        return await request_response(uri, n, SMALL)

    async def w2(uri: str, n: int) -> tuple[float, float]:
        transport, floor = await connect(uri)
        size = echo_size(SMALL)
        timer = Timer()

        async def sender() -> None:
            for index in range(n):
                transport.write(client_frame(0x2, SMALL))
                if index % 64 == 0:
                    await asyncio.sleep(0)  # let the loop write and read

        task = asyncio.ensure_future(sender())
        for _ in range(n):
            await floor.take(size)
        await task
        result = timer.stop()
        transport.close()
        return result

    async def w3(uri: str, n: int) -> tuple[float, float]:
        return await request_response(uri, n, LARGE)

    async def w4(uri: str, n: int) -> tuple[float, float]:
        timer = Timer()
        for _ in range(n):
            transport, floor = await connect(uri)
            transport.write(close_frame())
            await floor.take(4)  # the server's close frame: code 1000, no reason
            await floor.lost  # the server closes TCP first (RFC 6455 §7.1.1)
        return timer.stop()

    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4}


def _floor_trio(
    upgrade: bytes,
    echo_size: Callable[[bytes], int],
    close_frame: Callable[[], bytes],
    address: Callable[[str], tuple[str, int]],
) -> dict[str, Workload]:
    import socket

    import trio

    from anyws._frames import client_frame

    class Floor:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock
            self.received = Received()

        async def send(self, data: bytes) -> None:
            view = memoryview(data)
            while view:
                try:
                    view = view[self.sock.send(view) :]
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self.sock)

        async def receive(self) -> bytes:
            await trio.lowlevel.wait_readable(self.sock)
            return self.sock.recv(2**16)

        async def take(self, size: int, skip: int = 0) -> bytes:
            while self.received.size < skip + size:
                self.received.add(await self.receive())
            return self.received.take(size, skip)

        async def head(self) -> None:
            while not self.received.skip_head():
                self.received.add(await self.receive())

    async def connect(uri: str) -> Floor:
        sock = socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
        sock.setblocking(False)
        try:
            sock.connect(address(uri))
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
        floor = Floor(sock)
        await floor.send(upgrade)
        await floor.head()
        return floor

    async def request_response(uri: str, n: int, message: bytes) -> tuple[float, float]:
        floor = await connect(uri)
        header = echo_size(message) - len(message)
        timer = Timer()
        for _ in range(n):
            await floor.send(client_frame(0x2, message))
            await floor.take(len(message), header)  # the payload, as a client returns it
        result = timer.stop()
        floor.sock.close()
        return result

    async def w1(uri: str, n: int) -> tuple[float, float]:
        return await request_response(uri, n, SMALL)

    async def w2(uri: str, n: int) -> tuple[float, float]:
        floor = await connect(uri)
        size = echo_size(SMALL)
        timer = Timer()

        async def sender() -> None:
            for index in range(n):
                await floor.send(client_frame(0x2, SMALL))
                if index % 64 == 0:
                    await trio.lowlevel.checkpoint()  # let the receiver read

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            for _ in range(n):
                await floor.take(size)
        result = timer.stop()
        floor.sock.close()
        return result

    async def w3(uri: str, n: int) -> tuple[float, float]:
        return await request_response(uri, n, LARGE)

    async def w4(uri: str, n: int) -> tuple[float, float]:
        timer = Timer()
        for _ in range(n):
            floor = await connect(uri)
            await floor.send(close_frame())
            await floor.take(4)  # the server's close frame: code 1000, no reason
            while await floor.receive():  # the server closes TCP first (RFC 6455 §7.1.1)
                pass
            floor.sock.close()
        return timer.stop()

    return {"w1": w1, "w2": w2, "w3": w3, "w4": w4}


CLIENTS: dict[str, tuple[Callable[[str], dict[str, Workload]], str]] = {
    "anyws-asyncio": (anyws_client, "asyncio"),
    "anyws-trio": (anyws_client, "trio"),
    "websockets-asyncio": (websockets_client, "asyncio"),
    "websockets-trio": (websockets_client, "trio"),
    # The asyncio clients on uvloop's event loop.
    "anyws-uvloop": (anyws_client, "uvloop"),
    "websockets-uvloop": (websockets_client, "uvloop"),
    "aiohttp": (aiohttp_client, "asyncio"),
    "trio-websocket": (trio_websocket_client, "trio"),
    "httpx-ws": (httpx_ws_client, "asyncio"),
    "picows": (picows_client, "asyncio"),
    "floor-asyncio": (floor_client, "asyncio"),
    "floor-trio": (floor_client, "trio"),
    # The blocking APIs; the bench's own loop (asyncio) only times them.
    "anyws-sync-asyncio": (lambda _: sync_client("anyws", "asyncio"), "asyncio"),
    "anyws-sync-trio": (lambda _: sync_client("anyws", "trio"), "asyncio"),
    "websockets-sync": (lambda _: sync_client("websockets"), "asyncio"),
}


def main() -> None:
    client, workload, uri, count_text = sys.argv[1:5]
    factory, backend = CLIENTS[client]
    count = int(count_text)
    if backend == "trio":
        import trio  # the event loop's import isn't the library's
    elif backend == "uvloop":
        import uvloop

    import_started = time.process_time()
    workloads = factory(backend)
    import_cpu = time.process_time() - import_started
    function: Callable[[], Coroutine[Any, Any, Any]]
    if workload.startswith("c"):  # cK: K concurrent connections

        def function() -> Coroutine[Any, Any, Any]:
            return workloads["c"](uri, count, int(workload[1:]))
    elif workload == "w4":

        async def function() -> tuple[float, float, float]:
            first, _ = await workloads["w4"](uri, 1)
            cpu, wall = await workloads["w4"](uri, count)
            return cpu, wall, first
    else:

        def function() -> Coroutine[Any, Any, Any]:
            return workloads[workload](uri, count)

    profile_path = os.environ.get("ANYWS_BENCH_PROFILE")
    profiler = cProfile.Profile() if profile_path else None
    if profiler is not None:
        profiler.enable()
    if backend == "trio":
        result = trio.run(function)
    elif backend == "uvloop":
        result = uvloop.run(function())
    else:
        result = asyncio.run(function())
    if profiler is not None and profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if workload == "idle":
        print(json.dumps({**result, "peak_rss": peak_rss}))
    elif workload.startswith("c"):
        cpu, wall, ops = result
        print(json.dumps({"ops": ops, "cpu": cpu, "wall": wall, "peak_rss": peak_rss}))
    elif workload == "w4":
        cpu, wall, first = result
        print(
            json.dumps(
                {
                    "ops": count,
                    "cpu": cpu,
                    "wall": wall,
                    "peak_rss": peak_rss,
                    "import": import_cpu,
                    "first": first,
                }
            )
        )
    else:
        cpu, wall = result
        print(json.dumps({"ops": count, "cpu": cpu, "wall": wall, "peak_rss": peak_rss}))


if __name__ == "__main__":
    from servers import raise_fd_limit

    raise_fd_limit()
    main()
