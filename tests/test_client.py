"""Integration tests over real loopback sockets: our server, the `websockets` server, raw
scripted servers, TLS (trustme), Unix sockets, an HTTP CONNECT proxy and redirects."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import struct
import sys
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import websockets.exceptions

import anyws
from anyws import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHeader,
    InvalidMessage,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    SecurityError,
    process_exception,
)
from anyws._handshake import accept_key
from anyws._options import Options
from anyws._protocol import PartialMessage
from anyws.testing import ClientGone, RawResponse, ServerConnection, frame, serve

from .conftest import raw_server, read_request, request_key, websockets_server

pytestmark = pytest.mark.anyio


async def serve_either(
    stack: contextlib.AsyncExitStack,
    server: str,
    ours: Callable[[ServerConnection], Awaitable[None]] | None = None,
    theirs: Callable[[Any], None] | None = None,
) -> str:
    """Start, for the rest of `stack`, our test server running `ours` or (`server` is
    "websockets") the `websockets` server running `theirs`, each an echo by default;
    return its URI.
    """
    if server == "ours":
        handler: dict[str, Any] = {} if ours is None else {"handler": ours}
        return (await stack.enter_async_context(serve(**handler))).uri
    return await stack.enter_async_context(websockets_server(theirs))


async def connect_and_leave(uri: str, **options: Any) -> None:
    """Open a connection and leave at once: for tests where opening must fail."""
    async with anyws.connect(uri, **options):
        pass


@pytest.fixture(params=["ours", "websockets"])
async def server_uri(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "ours":
        async with serve() as server:
            yield f"ws://127.0.0.1:{server.port}/"
    else:
        async with websockets_server() as uri:
            yield uri


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_echo_against_real_servers(server_uri: str, compression: str | None) -> None:
    async with anyws.connect(server_uri, compression=compression) as ws:
        assert (ws.response.headers.get("Sec-WebSocket-Extensions") is not None) == (
            compression is not None
        )
        messages: list[str | bytes] = ["hello", "ünïcödé", b"\x00\xff" * 1000, "x" * 300_000, b""]
        for message in messages:
            await ws.send(message)
            assert await ws.recv() == message
        await ws.send(["frag", "mented"])
        assert await ws.recv() == "fragmented"
        assert await (await ws.ping()) >= 0
        assert ws.local_address[0] == "127.0.0.1"
        assert ws.remote_address[1] == int(server_uri.rsplit(":", 1)[1].strip("/"))
    assert ws.close_code == 1000
    assert ws.closed


async def test_recv_decode(server_uri: str) -> None:
    async with anyws.connect(server_uri) as ws:
        messages: list[str | bytes] = ["ünï", b"\xc3\xbcn\xc3\xaf"]
        for message in messages:
            await ws.send(message)
            assert await ws.recv(decode=False) == b"\xc3\xbcn\xc3\xaf"
            await ws.send(message)
            assert await ws.recv(decode=True) == "ünï"
        # The overloads give mypy the type `decode` implies.
        await ws.send("typed")
        raw: bytes = await ws.recv(decode=False)
        await ws.send(raw)
        text: str = await ws.recv(decode=True)
        assert text == "typed"
        await ws.send(b"\xff not UTF-8")
        with pytest.raises(UnicodeDecodeError):
            await ws.recv(decode=True)
        # The message that didn't decode is still the next one.
        assert await ws.recv() == b"\xff not UTF-8"


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_send_text_overrides_the_frame_type(server_uri: str, compression: str | None) -> None:
    # As in `websockets` 14+: UTF-8 bytes (e.g. a JSON library's output) sent as text, and
    # text as binary. The echo gives back what the server received: str for a text frame.
    async with anyws.connect(server_uri, compression=compression) as ws:
        await ws.send(b'{"caf\xc3\xa9": 1}', text=True)
        assert await ws.recv() == '{"café": 1}'
        await ws.send("héllo", text=False)
        assert await ws.recv() == "héllo".encode()
        await ws.send([b"\xe2\x82", b"\xac"], text=True)  # "€" split between two frames
        assert await ws.recv() == "€"

        async def streamed() -> AsyncIterator[bytes]:
            yield b"caf\xc3"
            yield b"\xa9 " + "é ".encode() * 999

        await ws.send(streamed(), text=True)
        assert await ws.recv() == "café " + "é " * 999
        with pytest.raises(UnicodeDecodeError):
            await ws.send(b"\xff not UTF-8", text=True)
        await ws.send("nothing was sent, the connection is fine")
        assert await ws.recv() == "nothing was sent, the connection is fine"


async def test_a_streamed_text_send_that_goes_bad_closes_with_1011(server_uri: str) -> None:
    async def streamed() -> AsyncIterator[bytes]:
        yield b"fine so far "
        yield b"\xff"

    async with anyws.connect(server_uri) as ws:
        with pytest.raises(UnicodeDecodeError):
            await ws.send(streamed(), text=True)
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.recv()
    assert caught.value.sent is not None
    assert caught.value.sent.code == 1011
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


@pytest.mark.parametrize("server", ["ours", "websockets"])
async def test_messages_in_one_byte_frames_take_little_memory(server: str) -> None:
    # Three messages of 4,000 one-byte fragments (three bytes each on the wire), queued
    # whole: kept one object per fragment they would take some 40 bytes per byte.
    messages = [bytes([65 + index]) * 4000 for index in range(3)]

    async def ours(connection: ServerConnection) -> None:
        for message in messages:
            raw = frame(0x2, message[:1], fin=False)
            raw += frame(0x0, message[:1], fin=False) * (len(message) - 2)
            await connection.send_raw(raw + frame(0x0, message[:1]))
        await connection.close()

    def theirs(ws: Any) -> None:
        for message in messages:
            ws.send([message[:1]] * len(message))  # a list: one frame per item
        ws.close()

    async with contextlib.AsyncExitStack() as stack:
        uri = await serve_either(stack, server, ours, theirs)
        async with anyws.connect(uri, max_queue=None, compression=None) as ws:
            await ws.wait_closed()  # everything arrived and is queued
            # The queue itself: what the connection holds.
            queued = [message for message in ws._messages if isinstance(message, PartialMessage)]
            assert len(queued) == 3
            held = sum(sys.getsizeof(piece) for message in queued for piece in message.fragments)
            assert held <= 1.1 * 12_000 + 3 * 4096
            assert [message async for message in ws] == messages


@pytest.mark.parametrize(
    ("server", "compression"),
    [("ours", None), ("websockets", None), ("websockets", "deflate")],
)
async def test_max_size_pair_bounds_each_frame(server: str, compression: str | None) -> None:
    # `max_size=(message, fragment)`, as in `websockets`: a long message in short frames
    # arrives whole; a frame over the fragment limit fails the connection with 1009. With
    # compression, the limit holds after inflating too (the last frame is 64 KiB of zeros,
    # a few hundred bytes on the wire).
    parts = [bytes([65 + index % 26]) * 1000 for index in range(40)]
    too_big = b"\x00" * 2**16 if compression else b"y" * 1001

    async def ours(connection: ServerConnection) -> None:
        await connection.send_fragments(parts)
        await connection.send(too_big)
        with contextlib.suppress(ClientGone):
            await connection.recv()  # answers our close

    def theirs(ws: Any) -> None:
        ws.send(parts)  # a list: one frame per item (each compressed and flushed)
        ws.send(too_big)
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            ws.recv()

    async with contextlib.AsyncExitStack() as stack:
        uri = await serve_either(stack, server, ours, theirs)
        async with anyws.connect(uri, max_size=(None, 1000), compression=compression) as ws:
            assert await ws.recv() == b"".join(parts)
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
    cause = caught.value.__cause__
    assert isinstance(cause, PayloadTooBig)
    assert (cause.size, cause.max_size, cause.fragment) == (1001, 1000, True)
    assert caught.value.sent == anyws.Close(1009, "message too big")
    assert caught.value.rcvd == anyws.Close(1009, "message too big")


async def test_recv_refuses_a_bool_for_its_timeout(server_uri: str) -> None:
    # `websockets`' async recv(decode) takes decode first: recv(False) would otherwise be a
    # timeout of 0 seconds here, and recv(True) one of a second.
    async with anyws.connect(server_uri) as ws:
        for flag in (False, True):
            with pytest.raises(TypeError, match=rf"recv\(decode={flag}\)"):
                await ws.recv(flag)
        await ws.send("nothing was taken")
        assert await ws.recv() == "nothing was taken"


async def test_close_with_a_close_code_name(server_uri: str) -> None:
    # `websockets`' names for close codes; anyws reports plain ints, which equal them.
    async with anyws.connect(server_uri) as ws:
        await ws.close(anyws.CloseCode.GOING_AWAY, "moving")
        with pytest.raises(ConnectionClosedOK) as caught:
            await ws.recv()
    assert caught.value.sent == caught.value.rcvd == anyws.Close(1001, "moving")
    assert type(caught.value.sent.code) is int
    assert ws.close_code == anyws.CloseCode.GOING_AWAY


async def test_many_messages_both_ways(server_uri: str) -> None:
    async with anyws.connect(server_uri) as ws:
        async with anyio.create_task_group() as tg:

            async def sender() -> None:
                for index in range(300):
                    await ws.send(f"message {index}")

            tg.start_soon(sender)
            received = [await ws.recv() for _ in range(300)]
        assert received == [f"message {index}" for index in range(300)]


async def test_server_closes_normally() -> None:
    def handler(ws: Any) -> None:
        ws.send("bye")
        ws.close(1001, "restarting")

    async with websockets_server(handler) as uri, anyws.connect(uri) as ws:
        assert [message async for message in ws] == ["bye"]
        assert ws.close_code == 1001
        assert ws.close_reason == "restarting"


async def test_server_closes_with_error() -> None:
    def handler(ws: Any) -> None:
        ws.close(1011, "crash")

    async with websockets_server(handler) as uri, anyws.connect(uri) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1011


async def test_handshake_details_seen_by_the_server() -> None:
    seen: dict[str, Any] = {}

    def handler(ws: Any) -> None:
        seen["headers"] = ws.request.headers
        seen["path"] = ws.request.path
        seen["subprotocol"] = ws.subprotocol

    async with (
        websockets_server(handler, subprotocols=["b", "c"]) as uri,
        anyws.connect(
            uri + "chat?room=1",
            additional_headers={"X-Token": "t"},
            origin="http://origin.example",
            subprotocols=["a", "b"],
            user_agent_header="agent/1",
        ) as ws,
    ):
        assert ws.subprotocol == "b"
        assert ws.request.headers["X-Token"] == "t"
        await ws.wait_closed()
    assert seen["path"] == "/chat?room=1"
    assert seen["headers"]["X-Token"] == "t"
    assert seen["headers"]["Origin"] == "http://origin.example"
    assert seen["headers"]["User-Agent"] == "agent/1"
    assert seen["subprotocol"] == "b"


async def test_host_name_with_happy_eyeballs(echo_uri: str) -> None:
    # "localhost" may resolve to ::1 first, where nothing listens: the race falls through.
    port = echo_uri.rsplit(":", 1)[1].strip("/")
    async with anyws.connect(f"ws://localhost:{port}/") as ws:
        await ws.send("by name")
        assert await ws.recv() == "by name"
        assert ws.request.headers["Host"] == f"localhost:{port}"


async def test_default_user_agent(echo_uri: str) -> None:
    async with anyws.connect(echo_uri) as ws:
        agent = ws.request.headers["User-Agent"]
    assert agent.startswith("Python/")
    assert f"anyws/{anyws.__version__}" in agent


# -- TLS --------------------------------------------------------------------------------


async def test_wss_with_verified_certificate(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    async with (
        websockets_server(ssl_context=server_ssl_context) as uri,
        anyws.connect(uri, ssl=client_ssl_context) as ws,
    ):
        assert uri.startswith("wss://")
        await ws.send("secure")
        assert await ws.recv() == "secure"
    assert ws.close_code == 1000


async def test_wss_server_hostname(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    async with websockets_server(ssl_context=server_ssl_context) as uri:
        async with anyws.connect(uri, ssl=client_ssl_context, server_hostname="localhost") as ws:
            await ws.send("named")
            assert await ws.recv() == "named"
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect_and_leave(uri, ssl=client_ssl_context, server_hostname="other.example")


async def test_wss_by_host_name(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    # A name (not an address literal) goes through the happy-eyeballs race, then TLS.
    async with websockets_server(ssl_context=server_ssl_context) as uri:
        named = uri.replace("127.0.0.1", "localhost")
        async with anyws.connect(named, ssl=client_ssl_context) as ws:
            await ws.send("by name")
            assert await ws.recv() == "by name"


async def test_wss_default_context_rejects_untrusted(server_ssl_context: ssl.SSLContext) -> None:
    async with websockets_server(ssl_context=server_ssl_context) as uri:
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect_and_leave(uri)


# -- Unix sockets -----------------------------------------------------------------------


async def test_unix_connect() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        async with websockets_server(unix_path=path), anyws.unix_connect(path) as ws:
            await ws.send("over unix")
            assert await ws.recv() == "over unix"
            assert ws.remote_address == path
        other = os.path.join(directory, "other.sock")
        async with (
            websockets_server(unix_path=other),
            anyws.unix_connect(Path(other), "ws://h/p") as ws,
        ):
            assert ws.request.path == "/p"


async def test_unix_connect_with_untrusted_tls(server_ssl_context: ssl.SSLContext) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        async with websockets_server(unix_path=path, ssl=server_ssl_context):
            with pytest.raises(ssl.SSLCertVerificationError):
                async with anyws.unix_connect(path, "wss://localhost/"):
                    pass  # opening fails: the body never runs


async def test_unix_connect_with_tls(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        async with (
            websockets_server(unix_path=path, ssl=server_ssl_context),
            anyws.unix_connect(path, "wss://localhost/", ssl=client_ssl_context) as ws,
        ):
            await ws.send("tls over unix")
            assert await ws.recv() == "tls over unix"


# -- a socket of your own (sock=) -------------------------------------------------------


@pytest.mark.parametrize("server", ["ours", "websockets"])
async def test_over_a_socket_of_your_own(server: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        uri = await serve_either(stack, server)
        port = urllib.parse.urlsplit(uri).port
        assert port is not None
        sock = socket.create_connection(("127.0.0.1", port))
        # The URI gives the Host header and the resource; the socket, the way there.
        context = anyws.connect("ws://example.test/chat", sock=sock)
        async with context as ws:
            await ws.send("over my socket")
            assert await ws.recv() == "over my socket"
            assert ws.request.headers["Host"] == "example.test"
            assert ws.request.path == "/chat"
            assert ws.remote_address[1] == port
        assert ws.close_code == 1000
        # The socket was used: entering again doesn't connect to example.test instead.
        with pytest.raises(RuntimeError, match="with a new one"):
            async with context:
                pass  # opening fails: the body never runs


async def test_tls_over_a_socket_of_your_own(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    async with websockets_server(ssl_context=server_ssl_context) as uri:
        port = urllib.parse.urlsplit(uri).port
        assert port is not None
        sock = socket.create_connection(("127.0.0.1", port))
        async with anyws.connect("wss://localhost/", sock=sock, ssl=client_ssl_context) as ws:
            await ws.send("secure, over my socket")
            assert await ws.recv() == "secure, over my socket"
        sock = socket.create_connection(("127.0.0.1", port))
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect_and_leave("wss://other.example/", sock=sock, ssl=client_ssl_context)
        assert sock.fileno() == -1


async def test_a_unix_socket_of_your_own() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        async with websockets_server(unix_path=path):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            async with anyws.connect("ws://localhost/", sock=sock) as ws:
                await ws.send("over my unix socket")
                assert await ws.recv() == "over my unix socket"


@pytest.mark.parametrize("given", ["sock", "stream"])
async def test_no_redirect_away_from_a_connection_you_gave(given: str, echo_uri: str) -> None:
    # A redirect would need another connection than the one given: InvalidStatus tells it.
    reply = http("302 Found", f"Location: {echo_uri}", "Content-Length: 0")
    async with serve_reply(reply) as port:
        way: dict[str, Any] = {}
        if given == "sock":
            way["sock"] = socket.create_connection(("127.0.0.1", port))
        else:
            way["stream"] = await anyio.connect_tcp("127.0.0.1", port)
        with pytest.raises(InvalidStatus) as info:
            await connect_and_leave(f"ws://127.0.0.1:{port}/", **way)
    assert info.value.response.status_code == 302
    assert info.value.response.headers["Location"] == echo_uri


def test_a_socket_of_your_own_is_checked_at_the_call() -> None:
    with socket.socket() as unconnected, pytest.raises(ValueError, match="must be connected"):
        anyws.connect("ws://example.com/", sock=unconnected)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram,
        pytest.raises(TypeError, match="stream socket"),
    ):
        anyws.connect("ws://example.com/", sock=datagram)
    with pytest.raises(TypeError, match="stream socket"):
        anyws.connect("ws://example.com/", sock="127.0.0.1:80")  # type: ignore[arg-type]
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as sock:
        others: list[tuple[dict[str, Any], str]] = [
            ({"unix_socket": "/tmp/x.sock"}, "sock= or unix_socket="),
            ({"proxy": "http://127.0.0.1:3128"}, "sock= or proxy="),
            ({"stream": object()}, "not stream= and sock="),
        ]
        for other, message in others:
            with pytest.raises(ValueError, match=message):
                anyws.connect("ws://example.com/", sock=sock, **other)
        assert sock.fileno() != -1  # not taken: nothing was opened


# -- bulk transfers ---------------------------------------------------------------------

# Big messages between small ones: on asyncio, big compressed reads switch the transport
# to bulk reads and small ones back; uncompressed, the rest of a big frame is read into
# its message (tests/test_asyncio_stream.py has both step by step).
BULK_AND_SMALL = [2**20, 10, 300_000, 1, 2**18 + 3, 0, 2**21, 5]


@pytest.mark.parametrize("compression", ["deflate", None])
@pytest.mark.parametrize("transport", ["tcp", "tls", "unix"])
async def test_bulk_transfers_between_small_messages(
    transport: str,
    compression: str | None,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    messages = [os.urandom(size) for size in BULK_AND_SMALL]
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        async with contextlib.AsyncExitStack() as stack:
            if transport == "unix":
                await stack.enter_async_context(websockets_server(unix_path=path, max_size=None))
                ws = await stack.enter_async_context(
                    anyws.unix_connect(path, max_size=None, compression=compression)
                )
            else:
                context = server_ssl_context if transport == "tls" else None
                uri = await stack.enter_async_context(
                    websockets_server(ssl_context=context, max_size=None)
                )
                client_context = client_ssl_context if transport == "tls" else None
                ws = await stack.enter_async_context(
                    anyws.connect(uri, max_size=None, ssl=client_context, compression=compression)
                )
            for message in messages:  # one at a time: each echo read in reads of its own
                await ws.send(message)
                assert await ws.recv() == message
            for message in messages:  # all at once: big and small reads mixed
                await ws.send(message)
            assert [await ws.recv() for _ in messages] == messages


# -- bad input: each a named exception, promptly -----------------------------------------


@pytest.mark.parametrize(
    "uri",
    ["http://example.com/", "ws://", "ws://example.com:70000/", "ws://example.com/#x", "ws://:1/"],
)
async def test_invalid_uri_at_the_call(uri: str) -> None:
    with pytest.raises(InvalidURI):
        anyws.connect(uri)


async def test_connection_refused(unused_tcp_port: int) -> None:
    # The same class on both backends (anyio alone says "All connection attempts failed").
    with pytest.raises(ConnectionRefusedError):
        await connect_and_leave(f"ws://127.0.0.1:{unused_tcp_port}/")


async def test_connection_refused_by_name(unused_tcp_port: int) -> None:
    # "localhost" may resolve to several addresses, each refused: still one
    # ConnectionRefusedError, every attempt's error reachable when there were several.
    with pytest.raises(ConnectionRefusedError) as info:
        await connect_and_leave(f"ws://localhost:{unused_tcp_port}/")
    if info.value.__cause__ is not None:
        assert all(isinstance(e, OSError) for e in info.value.__cause__.exceptions)  # type: ignore[attr-defined]


async def test_server_that_never_answers_times_out() -> None:
    async with serve(handshake=RawResponse(b"")) as server:  # no answer at all
        with pytest.raises(TimeoutError, match=r"open_timeout=0\.1"):
            await connect_and_leave(server.uri, open_timeout=0.1)


def http(status: str, *headers: str, body: bytes = b"") -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode() + body


@asynccontextmanager
async def serve_reply(reply: bytes, *, then: bytes = b"", close: bool = True) -> AsyncIterator[int]:
    """A server answering the handshake with the bytes `reply` (`{accept}` filled in) and
    `then`; yields its port."""

    def answer(request: anyws.Request) -> RawResponse:
        accept = accept_key(request.headers["Sec-WebSocket-Key"]).encode()
        return RawResponse(reply.replace(b"{accept}", accept) + then, close=close)

    async with serve(None, handshake=answer) as server:
        yield server.port


SWITCHING = http(
    "101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Accept: {accept}",
)


async def test_rejection_403_with_body() -> None:
    reply = http("403 Forbidden", "Content-Length: 9", "X-Reason: token", body=b"go away\r\n")
    async with serve_reply(reply) as port:
        with pytest.raises(InvalidStatus) as info:
            await connect_and_leave(f"ws://127.0.0.1:{port}/")
    response = info.value.response
    assert (response.status_code, response.reason_phrase) == (403, "Forbidden")
    assert response.headers["x-reason"] == "token"
    assert response.body == b"go away\r\n"
    assert process_exception(info.value) is info.value


async def test_plain_http_page() -> None:
    reply = http("200 OK", "Content-Type: text/html", "Connection: close", body=b"<h1>hi</h1>")
    async with serve_reply(reply) as port:
        with pytest.raises(InvalidStatus) as info:
            await connect_and_leave(f"ws://127.0.0.1:{port}/")
    assert info.value.response.status_code == 200
    assert info.value.response.body == b"<h1>hi</h1>"


async def test_503_is_worth_retrying() -> None:
    async with serve_reply(http("503 Busy", "Content-Length: 0")) as port:
        with pytest.raises(InvalidStatus) as info:
            await connect_and_leave(f"ws://127.0.0.1:{port}/")
    assert process_exception(info.value) is None


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (SWITCHING.replace(b"{accept}", b"wrong"), InvalidHeader, "Sec-WebSocket-Accept"),
        (SWITCHING.replace(b"Upgrade: websocket\r\n", b""), InvalidUpgrade, "missing Upgrade"),
        (SWITCHING[:-2] + b"Sec-WebSocket-Protocol: chat\r\n\r\n", NegotiationError, "subprotocol"),
        (SWITCHING[:-2] + b"Sec-WebSocket-Extensions: x-zip\r\n\r\n", NegotiationError, "x-zip"),
        (b"HTTP/1.1 101 OK\r\nX: " + b"y" * 100_000 + b"\r\n\r\n", SecurityError, "exceeds"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", InvalidMessage, "invalid HTTP"),
        (b"", InvalidMessage, "connection closed"),
    ],
)
async def test_bad_handshake_responses(reply: bytes, error: type[Exception], message: str) -> None:
    async with serve_reply(reply) as port:
        with pytest.raises(error, match=message):
            await connect_and_leave(f"ws://127.0.0.1:{port}/")


async def test_eof_during_handshake_is_worth_retrying() -> None:
    async with serve_reply(b"") as port:
        with pytest.raises(InvalidMessage) as info:
            await connect_and_leave(f"ws://127.0.0.1:{port}/")
    assert process_exception(info.value) is None


async def test_reset_during_handshake_is_an_oserror() -> None:
    async def reset(stream: anyio.abc.SocketStream) -> None:
        await read_request(stream)
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(
            __import__("socket").SOL_SOCKET, __import__("socket").SO_LINGER, struct.pack("ii", 1, 0)
        )
        await stream.aclose()

    async with raw_server(reset) as port:
        with pytest.raises(OSError):  # noqa: PT011
            await connect_and_leave(f"ws://127.0.0.1:{port}/")


@pytest.mark.parametrize(
    ("bad_frame", "code"),
    [
        (frame(0x3, b""), 1002),  # reserved opcode
        (frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8
        (frame(0x8, struct.pack("!H", 1004)), 1002),  # reserved close code
    ],
)
async def test_garbage_from_the_server_fails_the_connection(bad_frame: bytes, code: int) -> None:
    got = bytearray()

    async def handler(stream: anyio.abc.SocketStream) -> None:
        request = await read_request(stream)
        accept = accept_key(request_key(request)).encode()
        # The handshake response, a good message and the bad frame in one write.
        await stream.send(SWITCHING.replace(b"{accept}", accept) + frame(0x1, b"ok") + bad_frame)
        try:
            while True:
                got.extend(await stream.receive())
        except anyio.EndOfStream:
            pass

    async with raw_server(handler) as port:
        async with anyws.connect(
            f"ws://127.0.0.1:{port}/", compression=None, close_timeout=0.2
        ) as ws:
            assert await ws.recv() == "ok"
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert isinstance(info.value.__cause__, ProtocolError)
            assert info.value.sent is not None
            assert info.value.sent.code == code
        await anyio.wait_all_tasks_blocked()
    # The client's close frame: masked, code first.
    assert got[0] == 0x88
    mask = got[2:6]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(got[6:8])) == struct.pack("!H", code)


async def test_tcp_drop_without_close() -> None:
    async with (
        serve_reply(SWITCHING, then=frame(0x1, b"last")) as port,
        anyws.connect(f"ws://127.0.0.1:{port}/", compression=None) as ws,
    ):
        assert await ws.recv() == "last"
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.rcvd is None
        assert ws.close_code == 1006


async def test_dead_peer_heartbeat_closes_with_1011() -> None:
    async with (
        serve_reply(SWITCHING, close=False) as port,
        anyws.connect(
            f"ws://127.0.0.1:{port}/", ping_interval=0.05, ping_timeout=0.05, close_timeout=1
        ) as ws,
    ):
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
    assert info.value.sent is not None
    assert info.value.sent.code == 1011
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_handshake_trailing_data_is_the_first_message() -> None:
    async with (
        serve_reply(SWITCHING, then=frame(0x1, b"early") + frame(0x8, b"\x03\xe8")) as port,
        anyws.connect(f"ws://127.0.0.1:{port}/", close_timeout=0.2) as ws,
    ):
        assert [message async for message in ws] == ["early"]


# -- redirects --------------------------------------------------------------------------


async def test_redirects_are_followed(echo_uri: str) -> None:
    async with (
        serve_reply(http("302 Found", f"Location: {echo_uri}", "Content-Length: 0")) as port,
        anyws.connect(f"ws://127.0.0.1:{port}/") as ws,
    ):
        await ws.send("redirected")
        assert await ws.recv() == "redirected"


async def test_too_many_redirects() -> None:
    async def loop(stream: anyio.abc.SocketStream) -> None:
        await read_request(stream)
        await stream.send(http("301 Moved", "Location: /again", "Content-Length: 0"))

    async with raw_server(loop) as port:
        with pytest.raises(SecurityError, match="more than 10 redirects"):
            await connect_and_leave(f"ws://127.0.0.1:{port}/")


async def test_redirect_to_invalid_uri() -> None:
    async with serve_reply(http("302 Found", "Location: ftp://x/", "Content-Length: 0")) as port:
        with pytest.raises(InvalidStatus) as info:
            await connect_and_leave(f"ws://127.0.0.1:{port}/")
    assert info.value.response.status_code == 302


async def test_redirect_from_wss_to_ws_is_refused(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    def redirect(connection: Any, request: Any) -> Any:
        response = connection.respond(302, "")
        response.headers["Location"] = "ws://127.0.0.1:1/"
        return response

    async with websockets_server(ssl_context=server_ssl_context, process_request=redirect) as uri:
        with pytest.raises(SecurityError, match="wss:// to ws://"):
            await connect_and_leave(uri, ssl=client_ssl_context)


# -- proxies ----------------------------------------------------------------------------


async def connect_proxy(
    stream: anyio.abc.ByteStream, seen: list[bytes], status: bytes = b"200", interim: bool = False
) -> None:
    request = await read_request(stream)
    seen.append(request)
    if interim:
        await stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    if status != b"200":
        await stream.send(b"HTTP/1.1 " + status + b" No\r\nContent-Length: 0\r\n\r\n")
        return
    target = request.split(b" ")[1].decode()
    host, _, port = target.rpartition(":")
    async with await anyio.connect_tcp(host, int(port)) as upstream:
        await stream.send(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async with anyio.create_task_group() as tg:

            async def pump(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
                # Either side ending ends the tunnel.
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    async for chunk in source:
                        await sink.send(chunk)
                tg.cancel_scope.cancel()

            tg.start_soon(pump, stream, upstream)
            tg.start_soon(pump, upstream, stream)


async def test_http_proxy(echo_uri: str) -> None:
    seen: list[bytes] = []
    async with raw_server(lambda stream: connect_proxy(stream, seen)) as proxy_port:
        proxy = f"http://user:secret@127.0.0.1:{proxy_port}"
        async with anyws.connect(echo_uri, proxy=proxy) as ws:
            await ws.send("tunnelled")
            assert await ws.recv() == "tunnelled"
    assert seen[0].startswith(
        f"CONNECT 127.0.0.1:{echo_uri.split(':')[2].strip('/')} HTTP/1.1".encode()
    )
    assert b"Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=" in seen[0]


async def test_https_proxy_with_interim_response(
    echo_uri: str, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    from anyio.streams.tls import TLSStream

    seen: list[bytes] = []

    async def tls_proxy(stream: anyio.abc.SocketStream) -> None:
        wrapped = await TLSStream.wrap(stream, server_side=True, ssl_context=server_ssl_context)
        await connect_proxy(wrapped, seen, interim=True)

    async with raw_server(tls_proxy) as proxy_port:
        proxy = f"https://localhost:{proxy_port}"
        async with anyws.connect(echo_uri, proxy=proxy, proxy_ssl=client_ssl_context) as ws:
            await ws.send("through TLS")
            assert await ws.recv() == "through TLS"
    assert len(seen) == 1


async def test_https_proxy_server_hostname(
    echo_uri: str, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    # As `websockets`' proxy_server_hostname: the name TLS checks the proxy's certificate
    # against, when the proxy URL's host isn't it.
    from anyio.streams.tls import TLSStream

    seen: list[bytes] = []

    async def tls_proxy(stream: anyio.abc.SocketStream) -> None:
        with contextlib.suppress(ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream):
            wrapped = await TLSStream.wrap(stream, server_side=True, ssl_context=server_ssl_context)
            await connect_proxy(wrapped, seen)

    async with raw_server(tls_proxy) as proxy_port:
        proxy = f"https://127.0.0.1:{proxy_port}"
        options: dict[str, Any] = {"proxy": proxy, "proxy_ssl": client_ssl_context}
        async with anyws.connect(echo_uri, proxy_server_hostname="localhost", **options) as ws:
            await ws.send("named proxy")
            assert await ws.recv() == "named proxy"
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect_and_leave(echo_uri, proxy_server_hostname="other.example", **options)
    assert len(seen) == 1


@pytest.mark.parametrize("name", ["proxy_ssl", "proxy_server_hostname"])
async def test_proxy_tls_options_need_an_https_proxy(name: str, echo_uri: str) -> None:
    value: Any = ssl.create_default_context() if name == "proxy_ssl" else "localhost"
    with pytest.raises(ValueError, match=f"{name}= only applies to an https:// proxy"):
        anyws.connect(echo_uri, proxy="http://127.0.0.1:3128", **{name: value})
    anyws.connect(echo_uri, proxy=None, **{name: value})  # no proxy: nothing to apply to


async def test_proxy_from_environment(echo_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    async with raw_server(lambda stream: connect_proxy(stream, seen)) as proxy_port:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        async with anyws.connect(echo_uri) as ws:
            await ws.send("via env")
            assert await ws.recv() == "via env"
        assert len(seen) == 1
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        async with anyws.connect(echo_uri) as ws:
            await ws.send("direct")
            assert await ws.recv() == "direct"
        async with anyws.connect(echo_uri, proxy=None) as ws:
            pass
        assert len(seen) == 1


async def test_proxy_refusal(echo_uri: str) -> None:
    seen: list[bytes] = []
    async with raw_server(lambda stream: connect_proxy(stream, seen, b"407")) as proxy_port:
        with pytest.raises(InvalidProxyStatus, match="HTTP 407") as info:
            await connect_and_leave(echo_uri, proxy=f"http://127.0.0.1:{proxy_port}")
    assert isinstance(info.value, ProxyError)  # as in `websockets`
    assert info.value.response.status_code == 407


async def test_proxy_errors(unused_tcp_port: int, echo_uri: str) -> None:
    with pytest.raises(ProxyError, match="failed to connect to the proxy"):
        await connect_and_leave(echo_uri, proxy=f"http://127.0.0.1:{unused_tcp_port}")

    async def garbage(stream: anyio.abc.SocketStream) -> None:
        await read_request(stream)
        await stream.send(b"garbage\r\n\r\n")

    async with raw_server(garbage) as port:
        with pytest.raises(InvalidProxyMessage, match="invalid response"):
            await connect_and_leave(echo_uri, proxy=f"http://127.0.0.1:{port}")

    async def hang_up(stream: anyio.abc.SocketStream) -> None:
        await read_request(stream)

    async with raw_server(hang_up) as port:
        with pytest.raises(InvalidProxyMessage, match="closed the connection"):
            await connect_and_leave(echo_uri, proxy=f"http://127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("ftp://127.0.0.1:21", "unsupported scheme 'ftp'"),
        ("http://127.0.0.1:port", "[Pp]ort"),
        ("http://", "no host"),
    ],
)
async def test_invalid_proxy_at_the_call(proxy: str, message: str) -> None:
    with pytest.raises(InvalidProxy, match=message) as caught:
        anyws.connect("ws://example.com/", proxy=proxy)
    assert isinstance(caught.value, ProxyError)
    assert caught.value.proxy == proxy
    assert str(caught.value) == f"invalid proxy URL {proxy!r}: {caught.value.reason}"


# -- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"compression": "gzip"}, ValueError, "compression"),
        ({"open_timeout": -1}, ValueError, "open_timeout"),
        ({"close_timeout": "10"}, ValueError, "close_timeout"),
        ({"ping_interval": 0}, ValueError, "ping_interval"),
        ({"ping_timeout": True}, ValueError, "ping_timeout"),
        ({"max_size": 0}, ValueError, "max_size"),
        ({"max_size": (0, None)}, ValueError, "message"),
        ({"max_size": (None, 1.5)}, ValueError, "fragment"),
        ({"max_size": (1, 2, 3)}, ValueError, "max_size"),
        ({"compression_threshold": -1}, ValueError, "compression_threshold"),
        ({"compression_threshold": 1.5}, ValueError, "compression_threshold"),
        ({"max_queue": -1}, ValueError, "max_queue"),
        ({"max_queue": (4, 8)}, ValueError, "max_queue"),
        ({"max_queue": (4, 1, 1)}, ValueError, "max_queue"),
        ({"read_limit": None}, ValueError, "read_limit"),
        ({"write_limit": 1.5}, ValueError, "write_limit"),
        ({"subprotocols": "chat"}, TypeError, "subprotocols"),
        ({"subprotocols": [""]}, TypeError, "subprotocols"),
        ({"extensions": ["permessage-deflate"]}, TypeError, "extensions"),
        ({"user_agent_header": 1}, TypeError, "user_agent_header"),
        ({"origin": 1}, TypeError, "origin"),
        ({"ssl": "yes"}, TypeError, "ssl"),
        ({"proxy_ssl": True}, TypeError, "proxy_ssl"),
        ({"ssl": True}, ValueError, "ssl"),
        ({"server_hostname": "x"}, ValueError, "server_hostname"),
        ({"proxy": 8080}, TypeError, "proxy"),
        ({"logger": 1}, TypeError, "logger"),
        ({"max_sizes": 1}, TypeError, "max_sizes"),
    ],
)
async def test_invalid_options_fail_at_the_call(
    options: dict[str, Any], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        anyws.connect("ws://example.com/", **options)


class Shouting(anyws.ClientConnection):
    """A connection with a method of its own, as `websockets`' create_connection= makes."""

    async def shout(self, text: str) -> None:
        await self.send(text.upper())


async def test_create_connection_makes_the_connection_with_a_subclass(server_uri: str) -> None:
    async with anyws.connect(server_uri, create_connection=Shouting) as ws:
        assert isinstance(ws, Shouting)
        await ws.shout("hello")
        assert await ws.recv() == "HELLO"
    with pytest.raises(TypeError, match="create_connection must be a subclass"):
        anyws.connect(server_uri, create_connection=object)  # type: ignore[arg-type]


async def test_limit_pairs_and_logger_name(echo_uri: str) -> None:
    async with anyws.connect(
        echo_uri,
        max_queue=(8, None),
        write_limit=(1024, 256),
        logger="my.logger",
        max_size=None,
        ping_interval=None,
        open_timeout=None,
        close_timeout=None,
    ) as ws:
        assert ws.logger is logging.getLogger("my.logger")
        await ws.send("x")
        assert await ws.recv() == "x"
    logger = logging.getLogger("given")
    async with anyws.connect(echo_uri, max_queue=(None, None), logger=logger) as ws:
        assert ws.logger is logger


async def test_debug_logging(echo_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="anyws.client"):
        async with anyws.connect(echo_uri):
            pass
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == f"connected to {echo_uri}"
    assert messages[-1].startswith("connection closed: sent 1000 (OK); then received 1000 (OK)")


async def test_connect_is_not_awaitable() -> None:
    with pytest.raises(TypeError, match="async with"):
        await anyws.connect("ws://example.com/")


async def test_context_cannot_be_entered_twice(echo_uri: str) -> None:
    context = anyws.connect(echo_uri)
    async with context:
        with pytest.raises(RuntimeError, match="already in use"):
            await context.__aenter__()


async def test_process_exception() -> None:
    assert process_exception(ConnectionRefusedError()) is None
    assert process_exception(TimeoutError()) is None
    error = InvalidURI("x", "bad")
    assert process_exception(error) is error


async def test_send_after_close_is_connection_closed_ok(echo_uri: str) -> None:
    async with anyws.connect(echo_uri) as ws:
        await ws.close()
        with pytest.raises(ConnectionClosedOK):
            await ws.send("late")


async def test_per_message_compression_on_the_wire() -> None:
    """A raw server reads the frames: RSV1 says which messages were compressed."""
    seen: list[tuple[bool, bytes]] = []
    done = anyio.Event()

    async def reader(stream: anyio.abc.SocketStream) -> None:
        request = await read_request(stream)
        accept = accept_key(request_key(request)).encode()
        await stream.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        buffer = b""

        async def take(size: int) -> bytes:
            nonlocal buffer
            while len(buffer) < size:
                buffer += await stream.receive()
            chunk, buffer = buffer[:size], buffer[size:]
            return chunk

        for _ in range(3):
            first, second = await take(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await take(2))
            mask = await take(4)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(await take(length)))
            seen.append((bool(first & 0x40), payload))
        done.set()
        await anyio.sleep_forever()

    async with (
        raw_server(reader) as port,
        anyws.connect(
            f"ws://127.0.0.1:{port}/", compression_threshold=100, close_timeout=0.1
        ) as ws,
    ):
        await ws.send("x" * 1000)  # over the threshold: compressed
        await ws.send("tiny")  # under it: as is
        await ws.send(b"\x1f\x8b already gzipped" * 10, compress=False)
        await done.wait()
    assert [compressed for compressed, _ in seen] == [True, False, False]
    assert len(seen[0][1]) < 100
    assert seen[1][1] == b"tiny"
    assert seen[2][1] == b"\x1f\x8b already gzipped" * 10


async def test_mixed_compression_against_a_real_decompressor() -> None:
    async with (
        websockets_server(compression="deflate") as uri,
        anyws.connect(uri, compression_threshold=64) as ws,
    ):
        for index, compress in enumerate([None, False, True, None, False, None]):
            message = f"message {index} " * (1 + index * 20)
            await ws.send(message, compress=compress)
            assert await ws.recv() == message
        await ws.send_json({"k": "v" * 100}, compress=False)
        assert await ws.receive_json() == {"k": "v" * 100}


async def test_extra_headers_is_a_deprecated_alias(echo_uri: str) -> None:
    with pytest.warns(DeprecationWarning, match="additional_headers") as warned:
        context = anyws.connect(echo_uri, extra_headers={"X-Old": "1"})
    assert warned[0].filename == __file__  # blamed on the caller
    async with context as ws:
        assert ws.request.headers["X-Old"] == "1"
    with (
        pytest.raises(TypeError, match="not both"),
        pytest.warns(DeprecationWarning, match="extra"),
    ):
        anyws.connect(echo_uri, extra_headers={}, additional_headers={})


def test_default_options_are_checked_once() -> None:
    # The options are immutable: connections opened without any share one checked set.
    defaults = Options.from_kwargs({})
    assert Options.from_kwargs({}) is defaults
    assert defaults == Options()
    assert Options.from_kwargs({"max_queue": 4}).max_queue == 4
