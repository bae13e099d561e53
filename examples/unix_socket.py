"""A WebSocket over a Unix domain socket (the `websockets` seed's fourth example).

python examples/unix_socket.py [/path/to/socket]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

from echo_server import serve

import anyws


async def main(path: str) -> str:
    async with anyws.unix_connect(path) as websocket:
        await websocket.send("Hello via Unix socket!")
        response = await websocket.recv()
        print(f"Response: {response!r}")
        return str(response)


async def run_demo() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "websocket.sock")
        async with serve(path=path):
            await main(path)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]) if len(sys.argv) > 1 else run_demo())
