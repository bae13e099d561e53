"""The blocking API over a real loopback server, with either backend in the background."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import Future

import anyio
import pytest

from anyws import ConnectionClosedError, ConnectionClosedOK, InvalidMessageType, State
from anyws.sync import (
    ClientConnection,
    PongFuture,
    connect,
    open_websocket_sync,
    reconnecting,
    unix_connect,
)
from anyws.testing import ServerConnection, frame, serve


@contextlib.contextmanager
def background_server(handler: object = None, path: str | None = None) -> Iterator[str]:
    ready = threading.Event()
    stop = threading.Event()
    uri: list[str] = []

    async def run() -> None:
        kwargs = {} if handler is None else {"handler": handler}
        async with serve(unix_path=path, **kwargs) as server:  # type: ignore[arg-type]
            uri.append(server.uri)
            ready.set()
            await anyio.to_thread.run_sync(stop.wait)

    thread = threading.Thread(target=anyio.run, args=(run,))
    thread.start()
    ready.wait()
    try:
        yield uri[0]
    finally:
        stop.set()
        thread.join()


@pytest.fixture
def sync_uri() -> Iterator[str]:
    with background_server() as uri:
        yield uri


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_round_trip(sync_uri: str, backend: str) -> None:
    with connect(sync_uri, backend=backend) as ws:  # type: ignore[arg-type]
        assert ws.state is State.OPEN
        assert ws.id == ws._connection.id
        ws.send("text")
        assert ws.recv() == "text"
        ws.send([b"a", b"b"])
        assert ws.recv(timeout=5) == b"ab"
        ws.send_text("t")
        assert ws.receive_text() == "t"
        ws.send_bytes(b"b")
        assert ws.receive_bytes() == b"b"
        ws.send_json({"k": 1})
        assert ws.receive_json() == {"k": 1}
        ws.send_json([1], mode="binary")
        assert ws.receive_json(mode="binary") == [1]
        ws.send("uncompressed", compress=False)
        assert ws.recv() == "uncompressed"
        ws.send_text("t", compress=True)
        assert ws.recv() == "t"
        ws.send_bytes(b"b", compress=False)
        assert ws.recv() == b"b"
        ws.send_json([2], compress=False)
        assert ws.receive_json() == [2]
        ws.send("é")
        assert ws.recv(decode=False) == "é".encode()
        ws.send(b"\xc3\xa9")
        assert ws.recv(decode=True) == "é"
        ws.send("é")
        assert ws.recv(5, False) == "é".encode()  # websockets.sync's order
        ws.send_bytes(b"x")
        with pytest.raises(InvalidMessageType):
            ws.receive_text()
        with pytest.raises(TimeoutError, match=r"timeout=0\.01s"):
            ws.recv(timeout=0.01)
        assert ws.ping().result(timeout=5) >= 0
        assert ws.latency >= 0
        ws.pong(b"beat")
        assert ws.subprotocol is None
        assert ws.request.path == "/"
        assert ws.response.status_code == 101
        assert ws.local_address[0] == "127.0.0.1"
        assert ws.remote_address[0] == "127.0.0.1"
        assert not ws.closed
        assert ws.close_code is None
        assert ws.close_reason is None
        ws.close(1001, "bye")
        assert ws.closed
        assert ws.close_code == 1001
        assert ws.close_reason == "bye"
        with pytest.raises(ConnectionClosedOK):
            ws.send("late")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_ping_answers_as_the_event_websockets_returns(backend: str) -> None:
    # `websockets.sync`'s ping() returns a threading.Event: `wait(timeout)` and `is_set()`
    # work on what anyws returns, which is also the future of the latency.
    async def handler(connection: ServerConnection) -> None:
        connection.answer_pings = False
        await connection.send_raw(frame(0xA, await connection.wait_ping()))  # one pong
        for _ in range(2):
            await connection.wait_ping()  # the second and third go unanswered
        await connection.close()

    with background_server(handler) as uri, connect(uri, backend=backend) as ws:  # type: ignore[arg-type]
        answered = ws.ping(b"1")
        assert answered.wait(timeout=10)
        assert answered.is_set()
        assert answered.result() >= 0
        unanswered = ws.ping(b"2")
        acknowledged_on_close = ws.ping(b"3", ack_on_close=True)
        assert not unanswered.is_set()
        # No pong will come once the server closed: neither waits for one (a hang here
        # would be caught by the hang guard).
        assert not unanswered.wait()
        assert acknowledged_on_close.wait()
        with pytest.raises(ConnectionClosedOK):
            unanswered.result()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_over_a_socket_of_your_own(sync_uri: str, backend: str) -> None:
    port = urllib.parse.urlsplit(sync_uri).port
    assert port is not None
    sock = socket.create_connection(("127.0.0.1", port))
    with connect("ws://example.test/", sock=sock, backend=backend) as ws:  # type: ignore[arg-type]
        ws.send("over my socket")
        assert ws.recv() == "over my socket"
        assert ws.request.headers["Host"] == "example.test"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_calls_after_the_block_raise_connection_closed(sync_uri: str, backend: str) -> None:
    # As `websockets.sync`: the connection is closed, whatever the thread behind it.
    with connect(sync_uri, backend=backend) as ws:  # type: ignore[arg-type]
        ws.send("inside")
        assert ws.recv() == "inside"
    with pytest.raises(ConnectionClosedOK):
        ws.recv()
    with pytest.raises(ConnectionClosedOK):
        ws.send("outside")
    ws.close()  # closed already: nothing to do


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_calls_from_the_event_loop_are_refused(sync_uri: str, backend: str) -> None:
    # A blocking call made in the loop that would serve it would wait forever.
    with connect(sync_uri, backend=backend) as ws:  # type: ignore[arg-type]

        async def from_the_loop() -> None:
            with pytest.raises(RuntimeError, match="from its event loop"):
                ws.send("deadlock")

        ws._portal.call(from_the_loop)
        ws.send("from this thread")
        assert ws.recv() == "from this thread"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_threads_send_and_close_while_another_receives(sync_uri: str, backend: str) -> None:
    # As with `websockets.sync`: one thread receives, others send and close.
    with connect(sync_uri, backend=backend) as ws:  # type: ignore[arg-type]
        received: list[object] = []
        echoed = threading.Event()

        def receive() -> None:
            try:
                while True:
                    received.append(ws.recv())
                    echoed.set()
            except ConnectionClosedOK as exc:
                received.append(exc)

        receiver = threading.Thread(target=receive)
        receiver.start()
        while not ws._connection._receiving:  # until it waits in recv()
            time.sleep(0)  # polls the flag, letting the other threads run
        sender = threading.Thread(target=ws.send, args=("from another thread",))
        sender.start()
        sender.join()
        echoed.wait()
        ws.close()
        receiver.join()
    assert received[0] == "from another thread"
    assert isinstance(received[1], ConnectionClosedOK)


def test_pong_future_follows_its_source() -> None:
    # The ping task's future, cancelled (as when the portal stops first): no pong.
    source: Future[float] = Future()
    pong = PongFuture()
    pong.follow(source)
    source.cancel()
    assert pong.cancelled()
    assert not pong.is_set()
    assert not pong.wait(0)
    # Cancelled by its user: the ping task is cancelled too.
    source = Future()
    pong = PongFuture(ack_on_close=True)
    pong.follow(source)
    assert pong.cancel()
    assert source.cancelled()
    assert pong.is_set()


def test_sync_iteration_and_errors() -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send("one")
        await connection.send("two")
        await connection.close(1011, "broken")

    with background_server(handler) as uri, connect(uri) as ws:
        received: list[object] = []

        def iterate() -> None:
            received.extend(ws)

        with pytest.raises(ConnectionClosedError):
            iterate()
        assert received == ["one", "two"]


def test_sync_iteration_ends_on_normal_close() -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send("only")
        await connection.close()

    with background_server(handler) as uri, open_websocket_sync(uri) as ws:
        assert list(ws) == ["only"]


def test_sync_block_error_propagates(sync_uri: str) -> None:
    with pytest.raises(KeyError), connect(sync_uri):
        raise KeyError("mine")


def test_sync_unix_connect() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        with background_server(path=path), unix_connect(path) as ws:
            ws.send("unix")
            assert ws.recv() == "unix"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_reconnecting(backend: str) -> None:
    async def restarts_after_one_echo(connection: ServerConnection) -> None:
        message = await connection.recv()
        assert message is not None
        await connection.send(message)
        await connection.close(1012, "restarting")

    closes: list[int | None] = []
    with (
        background_server(restarts_after_one_echo) as uri,
        reconnecting(uri, backend=backend, delays=lambda: itertools.repeat(0.0)) as connections,  # type: ignore[arg-type]
    ):
        for ws in connections:
            ws.send(f"round {len(closes) + 1}")
            assert ws.recv(timeout=5) == f"round {len(closes) + 1}"
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=5)
            closes.append(ws.close_code)
            if len(closes) == 2:
                break
    assert closes == [1012, 1012]


def test_sync_reconnecting_raises_what_stops_it() -> None:
    missing = os.path.join(tempfile.mkdtemp(), "no-server")

    def loop() -> None:
        with reconnecting("ws://localhost/", unix_socket=missing, delays=list) as connections:
            for _ws in connections:
                pytest.fail("no connection should be made")

    with pytest.raises(FileNotFoundError):
        loop()


def test_sync_reconnecting_block_error_closes_with_1011(sync_uri: str) -> None:
    seen: list[ClientConnection] = []

    def loop() -> None:
        with reconnecting(sync_uri) as connections:
            for ws in connections:
                seen.append(ws)
                raise KeyError("mine")

    with pytest.raises(KeyError):
        loop()
    (ws,) = seen
    assert ws.closed
    assert ws._connection._protocol.close_sent is not None
    assert ws._connection._protocol.close_sent.code == 1011


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_streaming_both_ways(backend: str) -> None:
    async def handler(connection: ServerConnection) -> None:
        # Answers each message with it in three frames, the first alone and at once.
        async for message in connection:
            assert isinstance(message, str)
            await connection.send_fragments([message[:1], message[1:2], message[2:]])

    read_in: list[str] = []

    def lines() -> Iterator[str]:
        for line in ("one ", "two ", "three"):
            read_in.append(line)
            yield line

    # Uncompressed: wsproto's compressor would leave the first frames' data to the last.
    with (
        background_server(handler) as uri,
        connect(uri, backend=backend, compression=None) as ws,  # type: ignore[arg-type]
    ):
        ws.send(lines())
        assert read_in == ["one ", "two ", "three"]
        assert list(ws.recv_streaming()) == ["o", "n", "e two three"]
        ws.send("abc")
        fragments = ws.recv_streaming(decode=False)
        assert next(fragments) == b"a"
        fragments.close()  # the rest is discarded
        ws.send("xyz")
        typed: list[str] = list(ws.recv_streaming(decode=True))
        assert typed == ["x", "y", "z"]


def test_sync_send_text_overrides_the_frame_type(sync_uri: str) -> None:
    def fragments() -> Iterator[bytes]:
        yield b"\xe2\x82"  # "€" split between two frames
        yield b"\xac"

    with connect(sync_uri) as ws:
        ws.send(b"caf\xc3\xa9", text=True)
        assert ws.recv() == "café"
        ws.send("été", text=False)
        assert ws.recv() == "été".encode()
        ws.send(fragments(), text=True)
        assert ws.recv() == "€"
        with pytest.raises(UnicodeDecodeError):
            ws.send(b"\xff", text=True)


def test_sync_streamed_send_that_fails_closes_with_1011(sync_uri: str) -> None:
    def failing() -> Iterator[bytes]:
        yield b"half"
        raise ValueError("source failed")

    with connect(sync_uri) as ws:
        with pytest.raises(ValueError, match="source failed"):
            ws.send(failing())
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv()
        assert caught.value.sent is not None
        assert caught.value.sent.code == 1011
