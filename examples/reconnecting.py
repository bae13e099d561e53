"""A subscription that survives server restarts: `anyws.reconnecting` opens a fresh
connection after each failure worth retrying, and the loop subscribes again on each.

The embedded server plays a feed that restarts often: it answers the subscription with one
update, then closes with 1012 (service restart).

    python examples/reconnecting.py [ws://host:port/]
"""

from __future__ import annotations

import logging
import sys

import anyio
from echo_server import ServerConnection, serve

import anyws


async def main(uri: str, updates_wanted: int = 3) -> list[str]:
    updates: list[str] = []
    # Short delays for the demo; the default backoff starts around 3 s and grows to 90 s.
    async with anyws.reconnecting(uri, backoff=(0.05, 2.0, 1.0)) as connections:
        async for ws in connections:
            try:
                await ws.send_json({"subscribe": "prices"})
                while True:
                    update = await ws.receive_text()
                    print(f"Received: {update}")
                    updates.append(update)
            except anyws.ConnectionClosed as closed:
                print(f"Connection lost ({closed}); reconnecting")
            if len(updates) >= updates_wanted:
                break
    return updates


async def restarting_feed(connection: ServerConnection) -> None:
    await connection.recv()  # the subscription
    await connection.send("price: 42")
    await connection.close(1012, "restarting")


async def run_demo() -> None:
    async with serve(restarting_feed) as port:
        await main(f"ws://127.0.0.1:{port}/")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    anyio.run(main, sys.argv[1]) if len(sys.argv) > 1 else anyio.run(run_demo)
