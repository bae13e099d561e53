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


CLIENTS: dict[str, tuple[Callable[[str], dict[str, Workload]], str]] = {
    "anyws-asyncio": (anyws_client, "asyncio"),
    "anyws-trio": (anyws_client, "trio"),
    "websockets-asyncio": (websockets_client, "asyncio"),
    "websockets-trio": (websockets_client, "trio"),
    "aiohttp": (aiohttp_client, "asyncio"),
    "trio-websocket": (trio_websocket_client, "trio"),
    "httpx-ws": (httpx_ws_client, "asyncio"),
    "picows": (picows_client, "asyncio"),
}


def main() -> None:
    client, workload, uri, count_text = sys.argv[1:5]
    factory, backend = CLIENTS[client]
    count = int(count_text)
    if backend == "trio":
        import trio  # the event loop's import isn't the library's

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
    result = trio.run(function) if backend == "trio" else asyncio.run(function())
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
