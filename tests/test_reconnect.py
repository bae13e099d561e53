"""`anyws.reconnecting`: real servers restarted mid-conversation, refused handshakes and
closes that stop the loop, the backoff on trio's virtual clock, and the blocking API."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

import anyws
import anyws.sync
from anyws import ConnectionClosed, ConnectionClosedError, InvalidStatus
from anyws.testing import Reject, ServerConnection, serve

pytestmark = pytest.mark.anyio

NO_DELAY = {"delays": lambda: iter(lambda: 0.0, None)}  # retry at once, forever


async def expect_no_connection(uri: str, **options: Any) -> None:
    """Run a reconnecting loop that must fail before any connection is made."""
    async with anyws.reconnecting(uri, **options) as connections:
        async for _ws in connections:
            pytest.fail("no connection should be made")


async def read_until_closed(uri: str, seen: list[anyws.ClientConnection], **options: Any) -> None:
    """Run a reconnecting loop that reads each connection until it closes."""
    async with anyws.reconnecting(uri, **options) as connections:
        async for ws in connections:
            seen.append(ws)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            if len(seen) == 3:
                break


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_reconnects_after_the_server_restarts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="anyws.client")
    port = free_port()
    uri = f"ws://127.0.0.1:{port}/"
    restarted = anyio.Event()
    stop_first = anyio.Event()
    replies: list[str | bytes] = []
    closes: list[int | None] = []

    async def servers() -> None:
        async with serve(port=port):
            await stop_first.wait()
        # The first server is gone (its connections dropped without a close frame); the
        # client is told only once the second one listens.
        async with serve(port=port):
            restarted.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(servers)
        await anyio.wait_all_tasks_blocked()
        async with anyws.reconnecting(uri, **NO_DELAY) as connections:  # type: ignore[arg-type]
            async for ws in connections:
                await ws.send(f"round {len(replies) + 1}")
                replies.append(await ws.recv())
                if len(replies) == 2:
                    break
                stop_first.set()
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                closes.append(ws.close_code)
                await restarted.wait()
        assert ws.closed  # leaving the loop closed the second connection
        assert ws.close_code == 1000
        tg.cancel_scope.cancel()
    assert replies == ["round 1", "round 2"]
    assert closes == [1006]
    assert any("reconnecting to" in record.message for record in caplog.records)


async def test_a_refused_handshake_is_raised_as_itself() -> None:
    async with serve(handshake=Reject(403, body=b"nope")) as server:
        with pytest.raises(InvalidStatus) as info:
            await expect_no_connection(server.uri)
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"nope"
    assert len(server.requests) == 1  # no retry


@asynccontextmanager
async def closing_server(code: int) -> AsyncIterator[int]:
    """A server that accepts the upgrade and closes at once with `code`; yields its port."""

    async def close_at_once(connection: ServerConnection) -> None:
        await connection.close(code)

    async with serve(close_at_once) as server:
        yield server.port


async def test_a_policy_violation_close_stops_the_loop() -> None:
    seen: list[anyws.ClientConnection] = []
    async with closing_server(1008) as port:
        with pytest.raises(ConnectionClosedError) as info:
            await read_until_closed(f"ws://127.0.0.1:{port}/", seen)
    assert len(seen) == 1
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008


@pytest.mark.parametrize("code", [1011, 1012, 1013, 1000, 1001])
async def test_closes_worth_retrying_reconnect(code: int) -> None:
    seen: list[anyws.ClientConnection] = []
    async with closing_server(code) as port:
        await read_until_closed(f"ws://127.0.0.1:{port}/", seen, **NO_DELAY)
    assert [ws.close_code for ws in seen] == [code] * 3


async def test_an_error_in_the_loop_leaves_unchanged_and_closes_with_1011(echo_uri: str) -> None:
    seen: list[anyws.ClientConnection] = []

    async def fail_in_the_loop() -> None:
        async with anyws.reconnecting(echo_uri) as connections:
            async for ws in connections:
                seen.append(ws)
                raise KeyError("mine")

    with pytest.raises(KeyError):
        await fail_in_the_loop()
    (ws,) = seen
    assert ws.closed
    assert ws._protocol.close_sent is not None
    assert ws._protocol.close_sent.code == 1011


async def test_delays_that_run_out_raise_the_last_failure() -> None:
    missing = os.path.join(tempfile.mkdtemp(), "no-server")
    with pytest.raises(FileNotFoundError):
        await expect_no_connection(
            "ws://localhost/", unix_socket=missing, delays=lambda: [0.0, 0.0]
        )


async def test_process_exception_may_raise_its_own_error() -> None:
    missing = os.path.join(tempfile.mkdtemp(), "no-server")

    def refuse(exc: Exception) -> Exception:
        return RuntimeError(f"giving up: {exc}")

    with pytest.raises(RuntimeError, match="giving up") as info:
        await expect_no_connection("ws://localhost/", unix_socket=missing, process_exception=refuse)
    assert isinstance(info.value.__cause__, FileNotFoundError)


async def test_misuse_is_a_clear_error(echo_uri: str) -> None:
    connections = anyws.reconnecting(echo_uri)
    with pytest.raises(RuntimeError, match="inside `async with"):
        await connections.__anext__()
    async with connections:
        with pytest.raises(RuntimeError, match="already in use"):
            await connections.__aenter__()
    with pytest.raises(ValueError, match="backoff"):
        anyws.reconnecting(echo_uri, backoff=(1, 0.5, 10))
    with pytest.raises(anyws.InvalidURI):
        anyws.reconnecting("http://example.com/")
    with pytest.raises(TypeError, match="reconnecting"):
        await anyws.connect(echo_uri)
    with pytest.raises(TypeError, match="reconnecting"):
        async for _ws in anyws.connect(echo_uri):
            pass


def test_process_exception_for_closes() -> None:
    assert anyws.process_exception(ConnectionClosedError(None, None)) is None
    for code in (1006, 1011, 1012, 1013):
        closed = ConnectionClosedError(anyws.Close(code, ""), None)
        assert anyws.process_exception(closed) is None
    for code in (1008, 1003, 4000):
        closed = ConnectionClosedError(anyws.Close(code, ""), None)
        assert anyws.process_exception(closed) is closed


def test_backoff_on_virtual_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The delays between attempts follow (initial, factor, maximum), drawn up to the
    ceiling (full jitter; here the draw is pinned to its upper bound)."""
    import trio
    import trio.testing

    monkeypatch.setattr("anyws._reconnect.random.uniform", lambda low, high: high)
    missing = os.path.join(tempfile.mkdtemp(), "no-server")
    attempts: list[float] = []

    def give_up_after_six(exc: Exception) -> Exception | None:
        assert isinstance(exc, FileNotFoundError)
        attempts.append(trio.current_time())
        return exc if len(attempts) == 6 else None

    async def main() -> None:
        await expect_no_connection(
            "ws://localhost/",
            unix_socket=missing,
            backoff=(1.0, 2.0, 5.0),
            process_exception=give_up_after_six,
        )

    with pytest.raises(FileNotFoundError):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    waits = [round(later - earlier, 6) for earlier, later in itertools.pairwise(attempts)]
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_delays_are_jittered_within_the_ceiling() -> None:
    delays = anyws.backoff_delays(1.0, 2.0, 5.0)
    for ceiling in [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]:
        assert 0 <= next(delays) <= ceiling


def test_the_delays_start_over_after_a_connection_that_stayed_up() -> None:
    import trio
    import trio.testing

    uniform_bounds: list[float] = []

    def record(low: float, high: float) -> float:
        uniform_bounds.append(high)
        return 0.0

    async def main() -> None:
        async with (
            serve() as server,
            anyws.reconnecting(
                f"ws://127.0.0.1:{server.port}/", backoff=(1.0, 2.0, 8.0)
            ) as connections,
        ):
            rounds = 0
            async for ws in connections:
                rounds += 1
                if rounds == 3:
                    await anyio.sleep(10)  # virtual: longer than the longest delay
                await ws._abort()  # as if the network dropped it: 1006, worth retrying
                if rounds == 5:
                    break

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("anyws._reconnect.random.uniform", record)
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert uniform_bounds == [1.0, 2.0, 1.0, 2.0]
