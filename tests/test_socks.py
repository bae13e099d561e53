"""SOCKS proxies (the `socks` extra, python-socks) against a real SOCKS server on 127.0.0.1:
pproxy, run in a process of its own, with and without credentials."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator

import anyio
import anyio.abc
import pytest

import anyws
import anyws.sync
from anyws import ProxyError
from anyws.testing import serve

from .conftest import raw_server, websockets_server

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "s3cret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def socks_proxy() -> Iterator[tuple[int, int]]:
    """Two pproxy servers: (a SOCKS5 port requiring credentials, a SOCKS4/5 port without).

    `--auth 0` makes pproxy check the credentials on every connection (by default it
    remembers an address that authenticated once). pproxy runs without uvloop (a test
    dependency): with it, pproxy installs uvloop's policy and then fails to get a loop.
    """
    ports = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['uvloop'] = None; from pproxy.server import main; main()",
            "--auth",
            "0",
            "-l",
            f"socks5://127.0.0.1:{ports[0]}/#{USER}:{PASSWORD}",
            "-l",
            f"socks5+socks4://127.0.0.1:{ports[1]}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for _ in ports:  # one "Serving on ..." line per listener, once it listens
            assert "Serving on" in process.stdout.readline()
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("scheme", ["socks5h", "socks5", "socks4a", "socks4"])
async def test_through_a_socks_proxy(
    socks_proxy: tuple[int, int], echo_uri: str, scheme: str
) -> None:
    _, open_port = socks_proxy
    async with anyws.connect(echo_uri, proxy=f"{scheme}://127.0.0.1:{open_port}") as ws:
        await ws.send(f"via {scheme}")
        assert await ws.recv() == f"via {scheme}"


async def test_with_credentials(socks_proxy: tuple[int, int], echo_uri: str) -> None:
    auth_port, _ = socks_proxy
    proxy = f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{auth_port}"
    async with anyws.connect(echo_uri, proxy=proxy) as ws:
        await ws.send("authenticated")
        assert await ws.recv() == "authenticated"


@pytest.mark.parametrize("credentials", [f"{USER}:wrong@", ""])
async def test_wrong_or_missing_credentials_are_a_proxy_error(
    socks_proxy: tuple[int, int], echo_uri: str, credentials: str
) -> None:
    auth_port, _ = socks_proxy
    proxy = f"socks5h://{credentials}127.0.0.1:{auth_port}"
    with pytest.raises(ProxyError, match="SOCKS proxy"):
        async with anyws.connect(echo_uri, proxy=proxy, open_timeout=10):
            pytest.fail("the proxy should refuse")


async def test_wss_through_a_socks_proxy(
    socks_proxy: tuple[int, int],
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    _, open_port = socks_proxy
    async with (
        websockets_server(ssl_context=server_ssl_context) as uri,
        anyws.connect(uri, ssl=client_ssl_context, proxy=f"socks5h://127.0.0.1:{open_port}") as ws,
    ):
        await ws.send("tls inside socks")
        assert await ws.recv() == "tls inside socks"


async def test_socks_proxy_from_all_proxy(
    socks_proxy: tuple[int, int], echo_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, open_port = socks_proxy
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", f"socks5h://127.0.0.1:{open_port}")
    async with anyws.connect(echo_uri) as ws:
        assert ws.remote_address[1] == open_port  # the socket's peer is the proxy
        await ws.send("from the environment")
        assert await ws.recv() == "from the environment"


async def test_unreachable_socks_proxy(unused_tcp_port: int, echo_uri: str) -> None:
    with pytest.raises(ProxyError, match="failed to connect to the proxy"):
        async with anyws.connect(echo_uri, proxy=f"socks5://127.0.0.1:{unused_tcp_port}"):
            pytest.fail("nothing listens there")


async def test_without_the_extra(echo_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)  # as if not installed
    with pytest.raises(ProxyError, match=r"pip install 'anyws\[socks\]'"):
        async with anyws.connect(echo_uri, proxy="socks5h://127.0.0.1:1080"):
            pytest.fail("no SOCKS support without the extra")


async def test_a_socks_failure_reply_is_a_proxy_error(echo_uri: str) -> None:
    """A scripted SOCKS5 server that answers the CONNECT with "connection refused" (RFC 1928
    §6, reply 0x05), as a proxy does when the server behind it is down."""

    async def refusing(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()  # the greeting: version 5, its methods
        await stream.send(b"\x05\x00")  # no authentication required
        await stream.receive()  # the CONNECT request
        await stream.send(b"\x05\x05\x00\x01" + bytes(6))

    async with raw_server(refusing) as port:
        with pytest.raises(ProxyError, match="refused the connection"):
            async with anyws.connect(echo_uri, proxy=f"socks5h://127.0.0.1:{port}"):
                pytest.fail("the proxy refused")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_through_a_socks_proxy(socks_proxy: tuple[int, int], backend: str) -> None:
    """The blocking API takes the same options; the proxy binds from `local_host` too."""
    auth_port, _ = socks_proxy

    async def serve_until(stop: threading.Event, uri: list[str], ready: threading.Event) -> None:
        async with serve() as server:
            uri.append(f"ws://127.0.0.1:{server.port}/")
            ready.set()
            await anyio.to_thread.run_sync(stop.wait)

    stop, ready = threading.Event(), threading.Event()
    uri: list[str] = []
    server = threading.Thread(target=anyio.run, args=(serve_until, stop, uri, ready))
    server.start()
    try:
        ready.wait(10)
        proxy = f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{auth_port}"
        with anyws.sync.connect(uri[0], proxy=proxy, local_host="127.0.0.1", backend=backend) as ws:  # type: ignore[arg-type]
            ws.send("sync via SOCKS")
            assert ws.recv(timeout=10) == "sync via SOCKS"
    finally:
        stop.set()
        server.join()
