"""anyws under asyncio, written the way `websockets` users write it.

python examples/asyncio_client.py [ws://host:port/]   # default: an embedded echo server
"""

from __future__ import annotations

import asyncio
import sys

from echo_server import serve

import anyws


async def main(uri: str) -> str:
    async with anyws.connect(uri) as websocket:
        await websocket.send("Hello, Server!")
        response = await websocket.recv()
        print(f"Server response: {response!r}")
        return str(response)


async def run_demo() -> None:
    async with serve() as port:
        await main(f"ws://127.0.0.1:{port}/")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]) if len(sys.argv) > 1 else run_demo())
