"""`anyws.compat.httpx_ws`: httpx-ws's documented examples, unchanged but for the import,
against the `websockets` server (async on both backends, the sync session from threads)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import queue
import re
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpcore
import httpx
import pytest
import wsproto.events
from websockets.datastructures import Headers

import anyws
import anyws.sync
from anyws._handshake import accept_key
from anyws.compat import httpx_ws
from anyws.compat.httpx_ws import (
    DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    DEFAULT_QUEUE_SIZE,
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketInvalidTypeReceived,
    WebSocketNetworkError,
    WebSocketUpgradeError,
    aconnect_ws,
    connect_ws,
)
from anyws.testing import RawResponse, ServerConnection, serve

from .conftest import raw_server, read_request, request_key, websockets_server

seen_headers: list[Headers] = []


def scripted(server_ws: Any) -> None:
    """Echo, with a few commands: "close" closes with a reason, "types" sends one of each,
    "headers" answers with the request's X-Token and the query."""
    seen_headers.append(server_ws.request.headers)
    for message in server_ws:
        if message == "close":
            server_ws.close(4001, "bye now")
            return
        if message == "types":
            server_ws.send("text")
            server_ws.send(b"bytes")
        elif message == "headers":
            request = server_ws.request
            server_ws.send(f"{request.headers.get('X-Token')} {request.path}")
        else:
            server_ws.send(message)


def refuse(connection: Any, request: Any) -> Any:
    return connection.respond(403, "forbidden here\n")


@asynccontextmanager
async def http_uri(**options: Any) -> AsyncIterator[str]:
    async with websockets_server(scripted, **options) as uri:
        yield uri.replace("ws://", "http://")


def test_the_constants_are_httpx_ws_defaults() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE_BYTES == 65_536
    assert DEFAULT_QUEUE_SIZE == 512
    assert DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS == 20.0
    assert DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS == 20.0


@pytest.mark.anyio
async def test_documented_async_examples() -> None:
    async with http_uri() as url:
        async with aconnect_ws(url) as ws:
            await ws.send_text("Hello!")
            message = await ws.receive_text()
            assert message == "Hello!"
            await ws.send_bytes(b"Hello!")
            assert await ws.receive_bytes() == b"Hello!"
            data = {"message": "Hello!"}
            await ws.send_json(data)
            assert await ws.receive_json() == data
            await ws.send_json(data, mode="binary")
            assert await ws.receive_json(mode="binary") == data
            pong_callback = await ws.ping()
            await pong_callback.wait()
            assert pong_callback.is_set()
            try:
                await ws.receive_text(timeout=0.05)
            except TimeoutError:
                pass
            else:  # pragma: no cover (nothing was sent)
                pytest.fail("no text was expected")
            assert ws.subprotocol is None
            assert ws.response is not None
            assert ws.response.status_code == 101
            assert isinstance(ws.connection, anyws.ClientConnection)
        assert ws.connection.close_code == 1000


@pytest.mark.anyio
async def test_raw_events() -> None:
    async with http_uri() as url, aconnect_ws(url) as ws:
        await ws.send(wsproto.events.TextMessage(data="raw"))
        event = await ws.receive()
        assert isinstance(event, wsproto.events.TextMessage)
        assert event.data == "raw"
        # A message sent in parts as events goes out as one fragmented message.
        await ws.send(wsproto.events.BytesMessage(data=b"frag", message_finished=False))
        await ws.send(wsproto.events.BytesMessage(data=b"mented"))
        event = await ws.receive()
        assert isinstance(event, wsproto.events.BytesMessage)
        assert event.data == b"fragmented"
        await ws.send(wsproto.events.Ping(payload=b"p"))
        await ws.send(wsproto.events.Pong(payload=b"unsolicited"))
        await ws.send_text("types")
        with pytest.raises(WebSocketInvalidTypeReceived) as caught:
            await ws.receive_bytes()  # the text comes first
        assert isinstance(caught.value.event, wsproto.events.TextMessage)
        assert isinstance(caught.value, anyws.InvalidMessageType)
        with pytest.raises(WebSocketInvalidTypeReceived):
            await ws.receive_text()  # then the bytes
        with pytest.raises(TypeError, match="can't send"):
            await ws.send(wsproto.events.AcceptConnection())
        with pytest.raises(ValueError, match="mode"):
            await ws.send_json({}, mode="xml")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="mode"):
            await ws.receive_json(mode="xml")  # type: ignore[arg-type]
        await ws.send(wsproto.events.CloseConnection(code=1000, reason="done"))
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive()
        assert closed.value.code == 1000


@pytest.mark.anyio
async def test_server_close_with_a_reason() -> None:
    async with http_uri() as url, aconnect_ws(url) as ws:
        await ws.send_text("close")
        with pytest.raises(WebSocketDisconnect) as caught:
            await ws.receive_text()
        assert caught.value.code == 4001
        assert caught.value.reason == "bye now"
        assert isinstance(caught.value, anyws.ConnectionClosed)
        assert isinstance(caught.value, HTTPXWSException)
        with pytest.raises(WebSocketDisconnect):
            await ws.send_text("late")
        with pytest.raises(WebSocketDisconnect):
            await ws.ping()


@pytest.mark.anyio
async def test_upgrade_refused() -> None:
    async with websockets_server(scripted, process_request=refuse) as uri:
        with pytest.raises(WebSocketUpgradeError) as caught:
            async with aconnect_ws(uri.replace("ws://", "http://")):
                pytest.fail("the server refused")  # pragma: no cover
    assert caught.value.response is not None
    assert caught.value.response.status_code == 403
    assert caught.value.response.body == b"forbidden here\n"
    assert isinstance(caught.value, anyws.InvalidStatus)


@pytest.mark.anyio
async def test_not_a_websocket_upgrade() -> None:
    not_upgrading = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    )
    async with serve(handshake=RawResponse(not_upgrading)) as server:
        with pytest.raises(WebSocketUpgradeError) as caught:
            async with aconnect_ws(f"http://127.0.0.1:{server.port}/"):
                pytest.fail("not a WebSocket")  # pragma: no cover
    assert isinstance(caught.value, anyws.InvalidHandshake)
    assert not isinstance(caught.value, anyws.InvalidStatus)


async def accept(stream: Any) -> None:
    """Answer the opening handshake of a raw server's client."""
    request = await read_request(stream)
    await stream.send(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(request_key(request)).encode() + b"\r\n\r\n"
    )


@pytest.mark.anyio
async def test_network_error() -> None:
    async def vanish(connection: ServerConnection) -> None:
        await connection.drop()

    async with serve(vanish) as server, aconnect_ws(server.uri) as ws:
        # The server vanishes after the handshake, without a close frame.
        with pytest.raises(WebSocketNetworkError) as caught:
            await ws.receive()
        assert isinstance(caught.value, anyws.ConnectionClosedError)
        assert caught.value.code == 1006
        with pytest.raises(WebSocketNetworkError):
            await ws.send_text("late")


@pytest.mark.anyio
async def test_a_pong_that_never_comes_raises_once_closed() -> None:
    async def close_without_pong(connection: ServerConnection) -> None:
        connection.answer_pings = False
        await connection.wait_ping()
        await connection.close(1000)

    async with serve(close_without_pong) as server, aconnect_ws(server.uri) as ws:
        pong = await ws.ping(b"wait for me")
        with pytest.raises(WebSocketDisconnect):
            await ws.receive()
        with pytest.raises(WebSocketDisconnect):
            await pong.wait()


@pytest.mark.anyio
async def test_headers_params_options_and_subprotocols() -> None:
    def choose(server_ws: Any) -> None:
        scripted(server_ws)

    async with (
        websockets_server(choose, subprotocols=["chat"]) as uri,
        aconnect_ws(
            uri.replace("ws://", "http://") + "path?a=1",
            headers={"X-Token": "secret"},
            params={"b": "2"},
            subprotocols=["chat"],
            max_message_size_bytes=30,
            queue_size=4,
            keepalive_ping_interval_seconds=None,
        ) as ws,
    ):
        assert ws.subprotocol == "chat"
        await ws.send_text("headers")
        assert await ws.receive_text() == "secret /path?a=1&b=2"
        await ws.send_text("x" * 31)
        with pytest.raises(WebSocketDisconnect) as caught:
            await ws.receive_text()  # over max_message_size_bytes: closed with 1009
        assert caught.value.code == 1009


@pytest.mark.anyio
async def test_arguments_httpx_wouldnt_take_are_refused() -> None:
    with pytest.raises(TypeError, match=r"httpx\.AsyncClient"):
        async with aconnect_ws("http://127.0.0.1:1/", object()):  # type: ignore[arg-type]
            pass  # pragma: no cover
    with pytest.raises(TypeError, match="unexpected argument"):
        async with aconnect_ws("http://127.0.0.1:1/", data=b"no body on an upgrade"):
            pass  # pragma: no cover


@pytest.mark.anyio
async def test_without_httpx_only_headers_and_params(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if not installed
    with pytest.raises(TypeError, match=r"cookies need\(s\) httpx"):
        async with aconnect_ws("http://127.0.0.1:1/", cookies={"a": "b"}):
            pass  # pragma: no cover


# -- through an httpx client ----------------------------------------------------------------


def echo_request(server_ws: Any) -> None:
    """Answer each message with what the upgrade request carried."""
    request = server_ws.request
    for message in server_ws:
        if message == "request":
            server_ws.send(
                json.dumps(
                    {
                        "path": request.path,
                        "token": request.headers.get("X-Token"),
                        "cookie": request.headers.get("Cookie"),
                        "authorization": request.headers.get("Authorization"),
                        "user_agent": request.headers.get("User-Agent"),
                        "extensions": request.headers.get("Sec-WebSocket-Extensions"),
                    }
                )
            )
        else:
            server_ws.send(message)


@pytest.mark.anyio
async def test_through_an_async_client() -> None:
    hooked: list[str] = []

    async def on_request(request: httpx.Request) -> None:
        hooked.append(str(request.url))

    async with websockets_server(echo_request) as uri:
        base = uri.replace("ws://", "http://")
        async with (
            httpx.AsyncClient(
                base_url=base,
                headers={"X-Token": "from the client", "User-Agent": "my-agent"},
                cookies={"session": "abc"},
                auth=("user", "pass"),
                event_hooks={"request": [on_request]},
            ) as client,
            aconnect_ws("/chat", client, params={"room": "1"}) as ws,
        ):
            assert isinstance(ws.response, httpx.Response)
            assert ws.response.status_code == 101
            await ws.send_text("request")
            seen = await ws.receive_json()
            await ws.send_bytes(b"\x00" * 60_000)  # compressed, through httpx's stream
            assert await ws.receive_bytes() == b"\x00" * 60_000
            assert ws.connection.remote_address is not None
    assert seen["path"] == "/chat?room=1"
    assert seen["token"] == "from the client"
    assert seen["cookie"] == "session=abc"
    assert seen["authorization"] == "Basic dXNlcjpwYXNz"
    assert seen["user_agent"] == "my-agent"
    assert seen["extensions"].startswith("permessage-deflate")
    assert hooked == [f"{base}chat?room=1"]


@pytest.mark.anyio
async def test_the_main_api_takes_a_client_too() -> None:
    async with (
        websockets_server(echo_request) as uri,
        httpx.AsyncClient(headers={"X-Token": "main"}) as client,
    ):
        context = anyws.connect(uri, client=client)
        async with context as ws:
            await ws.send("request")
            seen = json.loads(await ws.recv())
            assert ws.response.status_code == 101  # anyws's Response, as always
            assert isinstance(context.http_response, httpx.Response)
        assert ws.close_code == 1000
        assert seen["token"] == "main"
        with pytest.raises(ValueError, match="not stream= and client="):
            anyws.connect(uri, client=client, stream=object())  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_without_a_client_httpx_arguments_use_a_temporary_one() -> None:
    async with (
        websockets_server(echo_request) as uri,
        aconnect_ws(uri, cookies={"flavour": "oat"}, timeout=5.0, follow_redirects=False) as ws,
    ):
        await ws.send_text("request")
        assert (await ws.receive_json())["cookie"] == "flavour=oat"
        assert isinstance(ws.response, httpx.Response)


@pytest.mark.anyio
async def test_upgrade_refused_through_a_client() -> None:
    async with (
        websockets_server(scripted, process_request=refuse) as uri,
        httpx.AsyncClient() as client,
    ):
        with pytest.raises(WebSocketUpgradeError) as caught:
            async with aconnect_ws(uri, client):
                pytest.fail("refused")  # pragma: no cover
    assert caught.value.response is not None
    assert caught.value.response.status_code == 403
    assert caught.value.response.body == b"forbidden here\n"


@pytest.mark.anyio
async def test_a_large_refusal_body_is_cut_through_a_client() -> None:
    def big_refusal(connection: Any, request: Any) -> Any:
        return connection.respond(500, "x" * (anyws.Response.MAX_BODY + 10))

    async with (
        websockets_server(scripted, process_request=big_refusal) as uri,
        httpx.AsyncClient() as client,
    ):
        with pytest.raises(WebSocketUpgradeError) as caught:
            async with aconnect_ws(uri, client):
                pytest.fail("refused")  # pragma: no cover
    assert caught.value.response is not None
    assert caught.value.response.body_truncated
    assert len(caught.value.response.body) == anyws.Response.MAX_BODY


@pytest.mark.anyio
async def test_network_error_through_a_client() -> None:
    async def vanish(connection: ServerConnection) -> None:
        await connection.drop()

    async with (
        serve(vanish) as server,
        httpx.AsyncClient() as client,
        aconnect_ws(f"http://127.0.0.1:{server.port}/", client) as ws,
    ):
        with pytest.raises(WebSocketNetworkError):
            await ws.receive()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_through_a_client(backend: str) -> None:
    with (
        sync_http_uri() as url,
        httpx.Client(headers={"X-Token": "sync"}) as client,
        connect_ws(url, client, backend=backend) as ws,  # type: ignore[arg-type]
    ):
        assert isinstance(ws.response, httpx.Response)
        ws.send_text("headers")
        assert ws.receive_text(timeout=5) == "sync /"
        ws.send_bytes(b"x" * 60_000)
        assert ws.receive_bytes(timeout=5) == b"x" * 60_000
        assert ws.ping().wait(timeout=5)


def test_sync_refused_and_failing_through_a_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve_twice() -> None:
            for answer in ("refuse", "vanish"):
                connection, _ = listener.accept()
                with connection:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        request += connection.recv(4096)
                    if answer == "refuse":
                        connection.sendall(
                            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope"
                        )
                    else:
                        connection.sendall(
                            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                            + accept_key(request_key(request)).encode()
                            + b"\r\n\r\n"
                        )

        server = threading.Thread(target=serve_twice)
        server.start()
        with httpx.Client() as client:
            with (
                pytest.raises(WebSocketUpgradeError) as caught,
                connect_ws(f"http://127.0.0.1:{port}/", client),
            ):
                pytest.fail("refused")  # pragma: no cover
            assert caught.value.response is not None
            assert caught.value.response.body == b"nope"
            with (
                connect_ws(f"http://127.0.0.1:{port}/", client) as ws,
                pytest.raises(WebSocketNetworkError),
            ):
                ws.receive(timeout=5)
        server.join(timeout=10)


@pytest.mark.anyio
async def test_the_blocks_own_exception_leaves_unchanged() -> None:
    async with http_uri() as url:
        with pytest.raises(anyws.InvalidStatus):
            async with aconnect_ws(url):
                raise anyws.InvalidStatus(anyws.Response(500, "x", anyws.Headers(), b""))


def test_invalid_type_exception_for_other_events() -> None:
    error = WebSocketInvalidTypeReceived(wsproto.events.Ping())
    assert error.expected == "a message"
    assert isinstance(error.event, wsproto.events.Ping)


# -- the sync session ---------------------------------------------------------------------


@contextmanager
def sync_http_uri() -> Iterator[str]:
    from websockets.sync.server import serve

    with serve(scripted, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.socket.getsockname()[1]}/"
        finally:
            server.shutdown()
            thread.join()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_documented_sync_examples(backend: str) -> None:
    with sync_http_uri() as url, connect_ws(url, backend=backend) as ws:  # type: ignore[arg-type]
        ws.send_text("Hello!")
        assert ws.receive_text() == "Hello!"
        ws.send_bytes(b"Hello!")
        assert ws.receive_bytes() == b"Hello!"
        ws.send_json({"message": "Hello!"})
        assert ws.receive_json() == {"message": "Hello!"}
        ws.send(wsproto.events.TextMessage(data="event"))
        event = ws.receive()
        assert isinstance(event, wsproto.events.TextMessage)
        pong_callback = ws.ping()
        assert pong_callback.wait(timeout=5)
        assert pong_callback.is_set()
        with pytest.raises(queue.Empty) as empty:
            ws.receive_text(timeout=0.05)
        assert isinstance(empty.value, TimeoutError)
        assert ws.response is not None
        assert ws.subprotocol is None


def test_sync_pong_wait_times_out() -> None:
    # A server that completes the handshake and then never reads: no pong, ever.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve_once() -> None:
            connection, _ = listener.accept()
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(4096)
                connection.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + accept_key(request_key(request)).encode()
                    + b"\r\n\r\n"
                )
                # Read the client's frames (small, masked) until its close frame; then
                # close TCP, so that the client's close ends at once.
                buffer = b""
                while True:
                    while len(buffer) < 2 or len(buffer) < 6 + (buffer[1] & 0x7F):
                        chunk = connection.recv(4096)
                        if not chunk:
                            return
                        buffer += chunk
                    opcode, size = buffer[0] & 0x0F, 6 + (buffer[1] & 0x7F)
                    buffer = buffer[size:]
                    if opcode == 0x8:
                        return

        server = threading.Thread(target=serve_once)
        server.start()
        with connect_ws(f"ws://127.0.0.1:{port}/") as ws:
            pong = ws.ping()
            assert pong.wait(timeout=0.05) is False
            assert not pong.is_set()
            ws.close(1000)
        server.join(timeout=20)


def test_sync_close_from_another_thread_wakes_a_blocked_receive() -> None:
    with sync_http_uri() as url, connect_ws(url) as ws:
        errors: list[BaseException] = []

        def receive() -> None:
            try:
                ws.receive_text()
            except BaseException as exc:
                errors.append(exc)

        receiver = threading.Thread(target=receive)
        receiver.start()
        ws.close(1000, "from another thread")
        receiver.join(timeout=10)
        assert not receiver.is_alive()
        assert isinstance(errors[0], WebSocketDisconnect)
        assert errors[0].code == 1000
        with pytest.raises(WebSocketDisconnect):
            ws.send_json([1])


def test_sync_upgrade_error() -> None:
    async def run_refusing(ready: threading.Event, stop: threading.Event, port: list[int]) -> None:
        async with websockets_server(scripted, process_request=refuse) as uri:
            port.append(int(uri.rsplit(":", 1)[1].strip("/")))
            ready.set()
            await anyio.to_thread.run_sync(stop.wait)

    ready, stop, port = threading.Event(), threading.Event(), list[int]()
    thread = threading.Thread(target=anyio.run, args=(run_refusing, ready, stop, port))
    thread.start()
    try:
        ready.wait(10)
        with (
            pytest.raises(WebSocketUpgradeError) as caught,
            connect_ws(f"http://127.0.0.1:{port[0]}/"),
        ):
            pytest.fail("refused")  # pragma: no cover
        assert caught.value.response is not None
        assert caught.value.response.status_code == 403
    finally:
        stop.set()
        thread.join()


@pytest.mark.anyio
async def test_closed_by_us_when_the_server_drops_without_answering() -> None:
    async def drop_after_close(stream: Any) -> None:
        await accept(stream)
        await stream.receive()  # our close frame; TCP closes without an answer

    async with raw_server(drop_after_close) as port, aconnect_ws(f"ws://127.0.0.1:{port}/") as ws:
        await ws.close(4000, "ours")
        with pytest.raises(WebSocketDisconnect) as caught:
            await ws.receive()
        assert caught.value.code == 4000
        assert caught.value.reason == "ours"


# -- the README's table of names ------------------------------------------------------------


def readme_rows() -> list[tuple[str, str]]:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("<!-- httpx-ws names: start -->")[1].split("<!-- httpx-ws names: end -->")[
        0
    ]
    rows = []
    for line in table.strip().splitlines()[2:]:
        left, right = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((left.strip("`"), right.strip("`")))
    return rows


def has_member(owner: Any, name: str) -> bool:
    """An attribute, a property, or an attribute set on instances (`self.name = ...`)."""
    if hasattr(owner, name):
        return True
    source = inspect.getsource(owner)
    return re.search(rf"self\.{name}\b\s*[:=]", source) is not None


def resolves(path: str, root: Any) -> bool:
    """`name`, `Owner.member` or `function(parameter=)` exists, starting from `root`."""
    call = re.fullmatch(r"(.+)\((\w+)=\)", path)
    if call is not None:
        path, parameter = call.groups()
    *owners, name = path.split(".")
    target = root
    for part in owners:
        target = getattr(target, part)
    if call is None:
        return has_member(target, name)
    function = getattr(target, name)
    if parameter in inspect.signature(function).parameters:
        return True
    # open_websocket's **options are Options' fields.
    return function is anyws.open_websocket and parameter in {
        field.name for field in dataclasses.fields(anyws.Options)
    }


def test_the_readme_table_matches_the_code() -> None:
    rows = readme_rows()
    for left, right in rows:
        assert resolves(left, httpx_ws), left
        if right.startswith("anyws."):
            assert resolves(right.removeprefix("anyws."), anyws), right
    # Every public name, session method and option of the module has its row.
    listed = {left for left, _ in rows}
    for name in httpx_ws.__all__:
        assert name in listed, name
    for session in (httpx_ws.AsyncWebSocketSession, httpx_ws.WebSocketSession):
        for name, _ in inspect.getmembers(session, inspect.isfunction):
            if not name.startswith("_"):
                assert f"{session.__name__}.{name}" in listed, name
    for parameter in inspect.signature(httpx_ws.aconnect_ws).parameters:
        if parameter not in ("url", "kwargs"):
            assert f"aconnect_ws({parameter}=)" in listed, parameter


class FailingNetworkStream:
    """A network stream whose socket is gone: httpcore's errors on every read and write."""

    def read(self, max_bytes: int) -> bytes:
        raise httpcore.ReadError("connection reset")

    def write(self, data: bytes) -> None:
        raise httpcore.WriteError("broken pipe")

    def close(self) -> None:
        raise OSError("already closed")


class FailingAsyncNetworkStream:
    async def read(self, max_bytes: int) -> bytes:
        raise httpcore.ReadError("connection reset")

    async def write(self, data: bytes) -> None:
        raise httpcore.WriteError("broken pipe")

    async def aclose(self) -> None:
        raise OSError("already closed")


class Upgraded:
    def __init__(self, stream: object) -> None:
        self.extensions = {"network_stream": stream}

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


@pytest.mark.anyio
async def test_httpcore_errors_are_anyio_errors() -> None:
    # The network stream httpx hands back fails as httpcore does; the driver sees anyio's
    # BrokenResourceError (the connection is lost), and closing never raises.
    from anyws._httpx import _AsyncNetworkStream, _SyncNetworkStream

    streams: list[anyio.abc.ByteStream] = [
        _AsyncNetworkStream(Upgraded(FailingAsyncNetworkStream())),
        _SyncNetworkStream(Upgraded(FailingNetworkStream())),
    ]
    for stream in streams:
        with pytest.raises(anyio.BrokenResourceError) as read:
            await stream.receive()
        assert isinstance(read.value.__cause__, httpcore.ReadError)
        with pytest.raises(anyio.BrokenResourceError) as write:
            await stream.send(b"x")
        assert isinstance(write.value.__cause__, httpcore.WriteError)
        await stream.aclose()
