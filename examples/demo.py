"""The quickstart demo: start a local echo server and talk to it, on asyncio and on trio.

    python examples/demo.py

No network needed: the server is embedded and listens on 127.0.0.1.
"""

from __future__ import annotations

import anyio
from echo_server import serve

import anyws


async def talk(backend: str) -> None:
    async with serve() as port, anyws.open_websocket(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send(f"hello from {backend}")
        print(f"[{backend}] echo: {await ws.receive_text()}")
        await ws.send_json({"backend": backend, "compressed": True})
        print(f"[{backend}] json: {await ws.receive_json()}")
        latency = await (await ws.ping())
        print(f"[{backend}] ping: {latency * 1000:.2f} ms")
        print(f"[{backend}] negotiated: {ws.response.headers.get('Sec-WebSocket-Extensions')}")
    print(f"[{backend}] closed with code {ws.close_code}")


def main() -> None:
    for backend in ("asyncio", "trio"):
        anyio.run(talk, backend, backend=backend)


if __name__ == "__main__":
    main()
