"""The client on uvloop, asyncio's most used event loop replacement, over real loopback
sockets: its transports aren't `asyncio.Transport` instances, and it holds the buffer a
`BufferedProtocol` gives it until `buffer_updated` has returned. These tests are about
that event loop only; nox's `tests_uvloop` session runs all the asyncio tests on it too.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from typing import Any

import pytest

import anyws
from anyws.testing import ServerConnection, serve

from .conftest import websockets_server

pytest.importorskip("uvloop", reason="uvloop doesn't run on Windows")

pytestmark = pytest.mark.anyio

BIG = os.urandom(2**20)  # incompressible: each message arrives in many reads


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "asyncio", {"use_uvloop": True}


@pytest.fixture(autouse=True)
async def _on_uvloop() -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")


async def test_echo_ping_and_close_with_the_websockets_server() -> None:
    async with websockets_server() as uri, anyws.connect(uri) as ws:
        await ws.send("text")
        assert await ws.recv() == "text"
        await ws.send_json({"a": [1, 2]})
        assert await ws.receive_json() == {"a": [1, 2]}
        assert await (await ws.ping()) >= 0  # the latency
    assert ws.close_code == 1000


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_big_messages_arrive_whole_and_in_order(compression: str | None) -> None:
    """Read straight into each message as it arrives (uncompressed), or inflated."""
    async with (
        websockets_server(max_size=None) as uri,
        anyws.connect(uri, max_size=None, compression=compression) as ws,
    ):
        for index in range(3):
            await ws.send(BIG[index:])
        for index in range(3):
            assert await ws.recv() == BIG[index:]
        await ws.send("after")
        assert await ws.recv() == "after"


async def test_a_big_message_streamed_and_one_cut_off_by_the_server() -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send(BIG)
        await connection.send(BIG)
        await connection.recv()  # the client's go-ahead
        # Most of a frame's header and payload, then the server vanishes.
        await connection.send_raw(b"\x82\x7f" + len(BIG).to_bytes(8, "big") + BIG[:100_000])
        await connection.abort()

    async with (
        serve(handler) as server,
        anyws.connect(server.uri, max_size=None, compression=None) as ws,
    ):
        streamed = [fragment async for fragment in ws.recv_streaming()]
        assert b"".join(streamed) == BIG  # type: ignore[arg-type]
        assert await ws.recv() == BIG
        await ws.send("go")
        with pytest.raises(anyws.ConnectionClosedError) as caught:
            await ws.recv()
        assert caught.value.rcvd is None


async def test_tls(server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext) -> None:
    async with (
        websockets_server(ssl_context=server_ssl_context, max_size=None) as uri,
        anyws.connect(uri, ssl=client_ssl_context, max_size=None, compression=None) as ws,
    ):
        await ws.send(BIG)
        assert await ws.recv() == BIG
    assert ws.close_code == 1000


async def test_unix_connect() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "socket")
        async with websockets_server(unix_path=path), anyws.unix_connect(path) as ws:
            await ws.send(b"over a unix socket")
            assert await ws.recv() == b"over a unix socket"
        assert ws.close_code == 1000
