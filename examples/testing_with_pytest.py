"""Testing your own client code with `anyws.testing` and pytest, on trio and asyncio:

    python -m pytest examples/testing_with_pytest.py

The code under test is `latest_price()`; the tests run it against a scripted server, a
server that refuses, and a network that splits, delays, drops and resets.
"""

from __future__ import annotations

import random

import pytest

import anyws
from anyws.testing import Reject, ServerConnection, fault_proxy, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test runs on both backends (anyio's pytest plugin)."""
    return str(request.param)


async def latest_price(uri: str) -> float:
    """The code under test: subscribe, return the first price."""
    async with anyws.connect(uri, open_timeout=1) as ws:
        await ws.send_json({"subscribe": "price"})
        update = await ws.receive_json()
        return float(update["price"])


async def price_feed(connection: ServerConnection) -> None:
    """The server's side of the conversation, as the test scripts it."""
    assert await connection.recv() == '{"subscribe":"price"}'
    await connection.send('{"price": 42.5}')


async def test_latest_price() -> None:
    async with serve(price_feed) as server:
        assert await latest_price(server.uri) == 42.5
    # What the server saw: our client closed properly.
    assert server.connections[0].close_code == 1000


async def test_a_refused_subscription_is_reported() -> None:
    async with serve(handshake=Reject(401, body=b"token expired")) as server:
        with pytest.raises(anyws.InvalidStatus) as refused:
            await latest_price(server.uri)
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b"token expired"


async def test_a_slow_network_that_splits_every_read() -> None:
    async with serve(price_feed) as server, fault_proxy(server) as proxy:
        proxy.to_client.chunk_size = 1  # one byte at a time
        proxy.to_server.split = random.Random(1)  # seeded: the same splits every run
        proxy.to_server.delay = 0.01  # for each piece
        assert await latest_price(proxy.uri) == 42.5


async def test_a_server_that_never_answers() -> None:
    async with serve() as server, fault_proxy(server) as proxy:
        proxy.blackhole = True
        with pytest.raises(TimeoutError):
            await latest_price(proxy.uri)


async def test_the_connection_reset_mid_message() -> None:
    async def reset_inside_the_price(connection: ServerConnection) -> None:
        await connection.recv()
        proxy.to_client.reset_after(3)  # the frame's header and one byte, then RST
        await connection.send('{"price": 42.5}')

    async with serve(reset_inside_the_price) as server, fault_proxy(server) as proxy:
        with pytest.raises(anyws.ConnectionClosedError):
            await latest_price(proxy.uri)
