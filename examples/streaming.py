"""Stream a file to a WebSocket server and the echo back, never holding it whole.

The upload is an async generator read in 16 KiB chunks: each chunk is framed and written
as it is read, under `write_limit` backpressure. The echo comes back through
`recv_streaming()`, fragment by fragment, hashed as it arrives.

    python examples/streaming.py [ws://host:port/]
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from echo_server import serve

import anyws

CHUNK = 16 * 1024


async def main(uri: str, path: Path) -> tuple[str, str, int]:
    """Send the file at `path` as one message; return the SHA-256 of what was sent and of
    what came back, and how many fragments the echo arrived in."""
    sent = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        async with await anyio.open_file(path, "rb") as file:
            while chunk := await file.read(CHUNK):
                sent.update(chunk)
                yield chunk

    received = hashlib.sha256()
    fragments = 0
    # max_size bounds the whole message, also when it is streamed.
    async with anyws.connect(uri, max_size=16 * 2**20) as ws:
        await ws.send(chunks())
        async for fragment in ws.recv_streaming(decode=False):
            received.update(fragment)
            fragments += 1
    sent_hash, echoed_hash = sent.hexdigest(), received.hexdigest()
    print(f"sent {sent_hash[:16]}…, echoed {echoed_hash[:16]}… in {fragments} fragments")
    return sent_hash, echoed_hash, fragments


async def run_demo() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "data.bin"
        path.write_bytes(os.urandom(2**20))  # 1 MiB that compression leaves as it is
        async with serve() as port:
            await main(f"ws://127.0.0.1:{port}/", path)


if __name__ == "__main__":
    if len(sys.argv) > 2:
        anyio.run(main, sys.argv[1], Path(sys.argv[2]))
    else:
        anyio.run(run_demo)
