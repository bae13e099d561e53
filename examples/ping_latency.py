"""Ping latency and error handling (the `websockets` seed's third example).

python examples/ping_latency.py [ws://host:port/]
"""

from __future__ import annotations

import asyncio
import sys

from echo_server import serve

import anyws
from anyws import ConnectionClosedError, InvalidURI


async def main(uri: str) -> float | None:
    try:
        async with anyws.connect(uri, open_timeout=5, close_timeout=5) as websocket:
            pong_waiter = await websocket.ping()
            latency = await pong_waiter
            print(f"Connection latency: {latency:.6f}s")
            for i in range(10):
                try:
                    await websocket.send(f"Message {i}")
                    response = await websocket.recv()
                    print(f"Echo {i}: {response!r}")
                except ConnectionClosedError:
                    print("Connection closed by server")
                    break
            return latency
    except InvalidURI as e:
        print(f"Invalid WebSocket URI: {e}")
    except ConnectionClosedError as e:
        print(f"Connection failed: {e}")
    except OSError as e:
        print(f"Network error: {e}")
    return None


async def run_demo() -> None:
    async with serve() as port:
        await main(f"ws://127.0.0.1:{port}/")
    await main("http://not-a-websocket/")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]) if len(sys.argv) > 1 else run_demo())
