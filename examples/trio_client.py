"""anyws under trio: a nursery-style client with a cancel scope as the timeout.

python examples/trio_client.py [ws://host:port/]   # default: an embedded echo server
"""

from __future__ import annotations

import sys

import trio
from echo_server import serve

import anyws


async def main(uri: str) -> list[str]:
    replies = []
    async with anyws.open_websocket(uri) as ws:
        with trio.fail_after(5):  # a cancel scope bounds the whole exchange
            for word in ("structured", "concurrency"):
                await ws.send(word)
                replies.append(await ws.receive_text())
    return replies


async def run_demo() -> None:
    async with serve() as port:
        print(await main(f"ws://127.0.0.1:{port}/"))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(trio.run(main, sys.argv[1]))
    else:
        trio.run(run_demo)
