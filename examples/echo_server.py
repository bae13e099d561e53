"""The local WebSocket peer of the demos and of the test suite: `anyws.testing`'s server
with its echo handler. It runs under trio and asyncio alike and listens on 127.0.0.1 only.

    python examples/echo_server.py 8765       # echo server until Ctrl+C

`serve(handler)` runs any handler (see `anyws.testing.ServerConnection`) and yields the port.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from anyws.testing import Accept, Handler, ServerConnection, echo
from anyws.testing import serve as serve_test

__all__ = ["Handler", "ServerConnection", "echo", "serve"]


@asynccontextmanager
async def serve(
    handler: Handler = echo, *, port: int = 0, compression: bool = True, path: str | None = None
) -> AsyncIterator[int]:
    """Serve `handler` on 127.0.0.1 (or on the Unix socket `path`); yield the port (0 for
    a Unix socket). Every connection is closed on exit."""
    handshake = Accept(compression=compression)
    async with serve_test(handler, handshake=handshake, port=port, unix_path=path) as server:
        yield server.port


async def main(port: int) -> None:
    """Run the echo server until interrupted."""
    async with serve(port=port) as bound:
        print(f"echo server on ws://127.0.0.1:{bound}/", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
