"""Headers, logging and a JSON subscription loop (the `websockets` seed's second example).

The embedded echo server plays the feed: it sends back the subscription, the updates and
the final "close" event that we send it.

    python examples/json_subscription.py [ws://host:port/]
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from echo_server import serve

import anyws


async def main(uri: str) -> list[dict[str, Any]]:
    headers = {"Authorization": "Bearer token123"}
    logger = logging.getLogger("websocket_client")
    received = []
    async with anyws.connect(
        uri,
        additional_headers=headers,
        compression="deflate",
        logger=logger,
        ping_interval=30,
        ping_timeout=10,
        max_size=1024 * 1024,
    ) as websocket:
        await websocket.send(json.dumps({"type": "subscribe", "channel": "updates"}))
        for n in range(3):
            await websocket.send_json({"type": "update", "n": n})
        await websocket.send_json({"type": "close"})
        async for message in websocket:
            data = json.loads(message)
            print(f"Received: {data}")
            received.append(data)
            if data.get("type") == "close":
                break
    return received


async def run_demo() -> None:
    async with serve() as port:
        await main(f"ws://127.0.0.1:{port}/")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]) if len(sys.argv) > 1 else run_demo())
