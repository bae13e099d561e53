"""The keepalive over real loopback sockets, on both backends (on asyncio the heartbeat
runs on the event loop's timers, on trio in a task): a dead peer fails the connection with
1011, pings go on without a ping timeout, and a ping timeout during the closing handshake
leaves the close alone.
"""

from __future__ import annotations

import anyio
import pytest

import anyws
from anyws import Close, ConnectionClosedError, PayloadTooBig, State
from anyws.testing import ServerConnection, close_frame, frame, serve

from .conftest import assert_keepalive_timeout

pytestmark = pytest.mark.anyio


async def deaf(connection: ServerConnection) -> None:
    # Reads frames but never answers a ping: an unresponsive peer.
    connection.answer_pings = False
    await connection.wait_closed()


@pytest.mark.parametrize("close_timeout", [None, 5.0])
async def test_a_dead_peer_fails_the_connection_with_1011(close_timeout: float | None) -> None:
    async with (
        serve(deaf) as server,
        anyws.connect(
            server.uri, ping_interval=0.01, ping_timeout=0.05, close_timeout=close_timeout
        ) as ws,
    ):
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert_keepalive_timeout(info.value, closed=ws.closed)
        connection = await server.accept()
        await connection.wait_closed()
    assert connection.close_code == 1011  # our close frame was written before we left


async def test_without_ping_timeout_pings_go_on_unanswered() -> None:
    async def count_pings(connection: ServerConnection) -> None:
        connection.answer_pings = False
        for _ in range(3):
            await connection.wait_ping()
        await connection.send("three pings")
        await connection.wait_closed()

    async with (
        serve(count_pings) as server,
        anyws.connect(server.uri, ping_interval=0.01, ping_timeout=None) as ws,
    ):
        assert await ws.recv(timeout=10) == "three pings"
        assert ws.state is State.OPEN


async def test_a_ping_timeout_while_closing_leaves_the_close_alone() -> None:
    async def pinged_then_deaf(connection: ServerConnection) -> None:
        connection.answer_pings = False
        await connection.wait_ping()
        connection.stop_reading()  # our close frame is never answered
        await connection.send("pinged")
        await connection.wait_closed()

    async with serve(pinged_then_deaf) as server:
        async with anyws.connect(
            server.uri, ping_interval=0.01, ping_timeout=0.3, close_timeout=1.5
        ) as ws:
            assert await ws.recv() == "pinged"
            # The ping is outstanding; its timeout comes while the close waits.
            await ws.close()
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
    # The close timed out as a close (1000 sent); the heartbeat didn't turn it into 1011.
    assert info.value.sent is not None
    assert info.value.sent.code == 1000
    assert "closing handshake" in str(info.value.__cause__)


@pytest.mark.parametrize("server_closes", [False, True])
async def test_the_heartbeat_during_a_deferred_close(server_closes: bool) -> None:
    async def small_then_oversized(connection: ServerConnection) -> None:
        # In one write, so that the client parses the server's close frame with the rest.
        close = close_frame(1000) if server_closes else b""
        await connection.send_raw(frame(0x1, b"small") + frame(0x1, b"x" * 200) + close)
        await connection.wait_closed()

    async with (
        serve(small_then_oversized) as server,
        anyws.connect(
            server.uri, max_size=100, ping_interval=0.01, ping_timeout=None, close_timeout=0.5
        ) as ws,
    ):
        # The oversized message fails the connection, but our close frame waits for the
        # application to take "small" (at most close_timeout), while the heartbeat beats
        # every 10 ms: the beats mustn't restart that wait, nor send a ping after the
        # server's close frame (only our close frame may follow it, RFC 6455 §5.5.1).
        connection = await server.accept()
        with anyio.fail_after(5):
            await connection.wait_closed()
        assert connection.close_code == 1009
        assert await ws.recv() == "small"
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert isinstance(info.value.__cause__, PayloadTooBig)
        assert info.value.sent == Close(1009, "message too big")
        assert ws.close_code == (1000 if server_closes else 1009)
