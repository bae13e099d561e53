"""The blocking API (`anyws.sync`), as `httpx-ws` and `websockets.sync` users know it.

python examples/sync_client.py [ws://host:port/]
"""

from __future__ import annotations

import sys
import threading

import anyio
from echo_server import serve

from anyws.sync import connect


def main(uri: str) -> str:
    with connect(uri) as ws:
        ws.send_text("Hello!")
        message = ws.receive_text(timeout=5)
        print(message)
        print(f"latency: {ws.ping().result(timeout=5):.6f}s")
        return message


def run_demo() -> None:
    ready = threading.Event()
    stop = threading.Event()
    uri: list[str] = []

    async def server() -> None:
        async with serve() as port:
            uri.append(f"ws://127.0.0.1:{port}/")
            ready.set()
            await anyio.to_thread.run_sync(stop.wait)

    thread = threading.Thread(target=anyio.run, args=(server,))
    thread.start()
    ready.wait()
    try:
        main(uri[0])
    finally:
        stop.set()
        thread.join()


if __name__ == "__main__":
    main(sys.argv[1]) if len(sys.argv) > 1 else run_demo()
