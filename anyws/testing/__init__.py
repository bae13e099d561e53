"""Test your WebSocket client against a server and a network that misbehave on cue.

- `serve()` runs a WebSocket server in the test's event loop (trio or asyncio) that the
  test scripts: echo, send a burst and close with a code, send fragmented, compressed,
  oversized or hand-made frames, stop reading, leave pings unanswered, drop or reset the
  connection, refuse the handshake with a given status, headers and body, or answer it
  with garbage.
- `fault_proxy()` sits between any client and server and injects network faults: delay,
  a bandwidth cap, bytes one at a time or split at random points, stalls, a blackhole,
  resets (mid-frame if you like) and half-closes, switchable while connections are live.

Both are async context managers: every task and socket they own ends with the block.
They need nothing beyond anyws's own dependencies.

    async with serve() as server, anyws.connect(server.uri) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
"""

from ._proxy import Direction, FaultProxy, fault_proxy
from ._server import (
    FIRST_OFFERED,
    Accept,
    ClientGone,
    Handler,
    Handshake,
    HandshakeResponse,
    Pong,
    RawResponse,
    Reject,
    Server,
    ServerConnection,
    close_frame,
    echo,
    frame,
    serve,
)

__all__ = [
    "FIRST_OFFERED",
    "Accept",
    "ClientGone",
    "Direction",
    "FaultProxy",
    "Handler",
    "Handshake",
    "HandshakeResponse",
    "Pong",
    "RawResponse",
    "Reject",
    "Server",
    "ServerConnection",
    "close_frame",
    "echo",
    "fault_proxy",
    "frame",
    "serve",
]
