"""Every example runs against the local echo server; the async ones on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncio_client
import json_subscription
import ping_latency
import pytest
import reconnecting
import streaming
import sync_client
import trio_client
import unix_socket
from echo_server import serve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.anyio
async def test_asyncio_client(echo_uri: str) -> None:
    assert await asyncio_client.main(echo_uri) == "Hello, Server!"


@pytest.mark.anyio
async def test_reconnecting() -> None:
    async with serve(reconnecting.restarting_feed) as port:
        updates = await reconnecting.main(f"ws://127.0.0.1:{port}/")
    assert updates == ["price: 42"] * 3


@pytest.mark.anyio
async def test_streaming(echo_uri: str, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(300_000))
    sent, echoed, fragments = await streaming.main(echo_uri, path)
    assert sent == echoed
    assert fragments >= 1


@pytest.mark.anyio
async def test_json_subscription(echo_uri: str) -> None:
    received = await json_subscription.main(echo_uri)
    assert [item["type"] for item in received] == [
        "subscribe",
        "update",
        "update",
        "update",
        "close",
    ]


@pytest.mark.anyio
async def test_ping_latency(echo_uri: str) -> None:
    latency = await ping_latency.main(echo_uri)
    assert latency is not None
    assert latency >= 0
    assert await ping_latency.main("http://not-a-websocket/") is None


@pytest.mark.anyio
async def test_ping_latency_network_error(unused_tcp_port: int) -> None:
    assert await ping_latency.main(f"ws://127.0.0.1:{unused_tcp_port}/") is None


@pytest.mark.anyio
async def test_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        async with serve(path=path):
            assert await unix_socket.main(path) == "Hello via Unix socket!"


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_trio_client(echo_uri: str, anyio_backend: str) -> None:
    assert await trio_client.main(echo_uri) == ["structured", "concurrency"]


def test_sync_client() -> None:
    sync_client.run_demo()


@pytest.mark.parametrize(
    "script",
    [
        "demo.py",
        "asyncio_client.py",
        "trio_client.py",
        "json_subscription.py",
        "ping_latency.py",
        "unix_socket.py",
        "reconnecting.py",
        "streaming.py",
    ],
)
def test_scripts_run_standalone(script: str) -> None:
    """`python examples/X.py` starts its embedded server and succeeds (as README says)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout


def test_the_pytest_example_passes() -> None:
    """`python -m pytest examples/testing_with_pytest.py` (docs/testing.md) passes."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "testing_with_pytest.py"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 passed" in result.stdout
