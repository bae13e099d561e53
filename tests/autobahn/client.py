"""The anyws client for the Autobahn|Testsuite fuzzing server, using only the public API.

    python tests/autobahn/client.py ws://127.0.0.1:9001 anyws-trio trio

Runs every case the server offers (echoing each message back) under one agent name, then
asks the server to write its report.
"""

from __future__ import annotations

import sys

import anyio

import anyws

# The suite sends messages of up to 16 MiB (9.x) and expects them echoed.
MAX_SIZE = 2**25


async def run_case(base: str, number: int, agent: str) -> None:
    uri = f"{base}/runCase?case={number}&agent={agent}"
    try:
        async with anyws.connect(
            uri, max_size=MAX_SIZE, ping_interval=None, open_timeout=30, close_timeout=5
        ) as ws:
            async for message in ws:
                await ws.send(message)
    except (anyws.WebSocketError, OSError):
        pass  # the server judges the behaviour; a failed case must not stop the run


async def main(base: str, agent: str) -> None:
    async with anyws.connect(f"{base}/getCaseCount") as ws:
        count = int(await ws.recv())
    for number in range(1, count + 1):
        await run_case(base, number, agent)
        if number % 50 == 0 or number == count:
            print(f"[{agent}] {number}/{count} cases", flush=True)
    async with anyws.connect(f"{base}/updateReports?agent={agent}") as ws:
        await ws.wait_closed()


if __name__ == "__main__":
    base_uri, agent_name, backend = sys.argv[1:4]
    anyio.run(main, base_uri, agent_name, backend=backend)
