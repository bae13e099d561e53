"""Addressing end to end: IPv6 literals, IDNA names in Host and TLS SNI, userinfo as Basic
credentials, client certificates, and the TCP options (`local_host`, `happy_eyeballs_delay`),
against real servers on loopback."""

from __future__ import annotations

import base64
import contextlib
import gc
import os
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme

import anyws
from anyws.testing import serve

from .conftest import has_ipv6_loopback, websockets_server

pytestmark = pytest.mark.anyio


def loopback_alias_works() -> bool:
    """127.0.0.2 is on the loopback interface (Linux routes all of 127/8 there)."""
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


async def test_ipv6_literal() -> None:
    if not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    seen: dict[str, Any] = {}

    def handler(server_ws: Any) -> None:
        seen["host"] = server_ws.request.headers["Host"]
        seen["peer"] = server_ws.remote_address[0]
        for message in server_ws:
            server_ws.send(message)

    from websockets.sync.server import serve

    with serve(handler, sock=socket.create_server(("::1", 0), family=socket.AF_INET6)) as server:
        port = server.socket.getsockname()[1]
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, server.serve_forever)
            try:
                async with anyws.connect(f"ws://[::1]:{port}/") as ws:
                    await ws.send("over IPv6")
                    assert await ws.recv() == "over IPv6"
                    assert ws.remote_address[0] == "::1"
            finally:
                await anyio.to_thread.run_sync(server.shutdown)
    # RFC 3986 §3.2.2 / RFC 9110 §7.2: an IPv6 literal in Host is bracketed.
    assert seen == {"host": f"[::1]:{port}", "peer": "::1"}


@contextlib.asynccontextmanager
async def unix_server(context: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, Any]]:
    """A `websockets` server on a Unix socket: a URI's host name can be anything, and the
    test sees what the client sent for it (Host, SNI). Yields the path and what was seen."""
    seen: dict[str, Any] = {}

    def handler(server_ws: Any) -> None:
        seen["host"] = server_ws.request.headers["Host"]
        seen["authorization"] = server_ws.request.headers.get("Authorization")
        for message in server_ws:
            server_ws.send(message)

    if context is not None:

        def record_sni(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
            seen["sni"] = name

        context.sni_callback = record_sni
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        async with websockets_server(handler, unix_path=path, ssl=context):
            yield path, seen


async def test_idna_host_name_in_host_header_and_sni(tls_ca: trustme.CA) -> None:
    # The certificate names the A-label; the URI uses the U-label (RFC 5891).
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("xn--bcher-kva.example").configure_cert(server_context)
    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    async with (
        unix_server(server_context) as (path, seen),
        anyws.connect("wss://bücher.example/", unix_socket=path, ssl=client_context) as ws,
    ):
        await ws.send("idna")
        assert await ws.recv() == "idna"
    assert seen["host"] == "xn--bcher-kva.example"
    assert seen["sni"] == "xn--bcher-kva.example"


async def test_userinfo_is_sent_as_basic_credentials() -> None:
    async with (
        unix_server() as (path, seen),
        anyws.connect("ws://us%65r:p%40ss@example.com:8080/", unix_socket=path) as ws,
    ):
        assert "user" not in ws.request.path
    # Percent-decoded, then Basic (RFC 7617); never in the Host header.
    assert seen["host"] == "example.com:8080"
    assert seen["authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()


async def test_client_certificate_through_ssl(tls_ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    tls_ca.configure_trust(server_context)
    seen: dict[str, Any] = {}

    def handler(server_ws: Any) -> None:
        seen["peer_certificate"] = server_ws.socket.getpeercert()
        for message in server_ws:
            server_ws.send(message)

    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    tls_ca.issue_cert("client@example.org").configure_cert(client_context)
    async with websockets_server(handler, ssl_context=server_context) as uri:
        async with anyws.connect(uri, ssl=client_context) as ws:
            await ws.send("mutual")
            assert await ws.recv() == "mutual"
        assert ("email", "client@example.org") in seen["peer_certificate"]["subjectAltName"]
        # Without a client certificate, the server refuses the TLS handshake.
        anonymous = ssl.create_default_context()
        tls_ca.configure_trust(anonymous)
        with pytest.raises((ssl.SSLError, OSError, anyws.InvalidHandshake)):
            async with anyws.connect(uri, ssl=anonymous) as ws:
                await ws.recv()


async def test_local_host_binds_the_socket() -> None:
    if not loopback_alias_works():
        pytest.skip("127.0.0.2 isn't a local address here")
    async with (
        serve() as server,
        anyws.connect(f"ws://127.0.0.1:{server.port}/", local_host="127.0.0.2") as ws,
    ):
        assert ws.local_address[0] == "127.0.0.2"
        await ws.send("bound")
        assert await ws.recv() == "bound"


# anyio 4.16's trio backend doesn't close the socket whose bind() fails (the bind is
# outside its try); the garbage collector closes it, with a ResourceWarning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_local_host_that_is_not_local_is_an_os_error() -> None:
    async with serve() as server:
        # 192.0.2.1 (TEST-NET-1, RFC 5737) is on no interface of this machine.
        with pytest.raises(OSError, match=r"(?i)assign|address"):
            async with anyws.connect(f"ws://127.0.0.1:{server.port}/", local_host="192.0.2.1"):
                pass  # pragma: no cover (the bind fails)
    gc.collect()  # the leaked socket's warning comes here, not in a later test


@pytest.mark.parametrize("delay", [None, 0, 0.05])
async def test_happy_eyeballs_delay(delay: float | None) -> None:
    # "localhost" may resolve to ::1 first, where nothing listens: racing or one at a
    # time, the attempt falls through to 127.0.0.1.
    async with (
        serve() as server,
        anyws.connect(f"ws://localhost:{server.port}/", happy_eyeballs_delay=delay) as ws,
    ):
        await ws.send("raced")
        assert await ws.recv() == "raced"


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"local_host": 127}, TypeError, "local_host"),
        ({"happy_eyeballs_delay": -1}, ValueError, "happy_eyeballs_delay"),
        ({"happy_eyeballs_delay": "0.25"}, ValueError, "happy_eyeballs_delay"),
    ],
)
async def test_invalid_transport_options(
    options: dict[str, Any], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        anyws.connect("ws://example.com/", **options)
