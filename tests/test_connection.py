"""Driver tests: `ClientConnection` over an in-memory transport with a scripted server task
(cancellation, backpressure, close races, heartbeat). Every test runs on both backends."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

import anyws
from anyws import (
    ClientConnection,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidMessageType,
    PayloadTooBig,
    ProtocolError,
    State,
)
from anyws.testing import ServerConnection, close_frame, frame

from .conftest import assert_keepalive_timeout, memory_pair, memory_websocket

pytestmark = pytest.mark.anyio


class Script:
    """A server handler driven by the test through events, recording what it saw."""

    def __init__(self) -> None:
        self.received: list[str | bytes] = []
        self.go = anyio.Event()
        self.done = anyio.Event()
        self.connection: ServerConnection | None = None

    async def record_until_close(self, connection: ServerConnection) -> None:
        async for message in connection:
            self.received.append(message)
        self.done.set()


async def test_echo_round_trip() -> None:
    async with memory_websocket() as ws:
        await ws.send("text")
        assert await ws.recv() == "text"
        await ws.send(b"bin")
        assert await ws.recv() == b"bin"
        await ws.send(["frag", "ments"])
        assert await ws.recv() == "fragments"

        async def chunks() -> AsyncIterator[bytes | bytearray]:
            yield b"a"
            yield bytearray(b"b")

        await ws.send(chunks())
        assert await ws.recv() == b"ab"
        assert ws.state is State.OPEN
        assert not ws.closed
        assert ws.close_code is None
        assert ws.close_reason is None
    assert ws.closed
    assert ws.state is State.CLOSED
    assert ws.close_code == 1000
    assert ws.close_reason == ""


async def test_recv_cancelled_loses_nothing() -> None:
    release = anyio.Event()

    async def handler(connection: ServerConnection) -> None:
        await release.wait()
        await connection.send("first")
        await connection.send("second")
        await connection.recv()

    async with memory_websocket(handler) as ws:
        with anyio.move_on_after(0):
            await ws.recv()
        with pytest.raises(TimeoutError, match=r"^no message within timeout=0s$") as timed_out:
            await ws.recv(timeout=0)
        assert timed_out.value.__suppress_context__  # no cancellation in its traceback
        # A receiver is cancelled as the message arrives: whichever runs first, the
        # message is either returned to it or left for the next call.
        got: list[object] = []
        with anyio.CancelScope() as scope:

            async def receive() -> None:
                got.append(await ws.recv())

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                release.set()
                scope.cancel()
        remaining = [await ws.recv() for _ in range(2 - len(got))]
        assert got + remaining == ["first", "second"]


async def test_concurrent_recv_is_an_error() -> None:
    async with memory_websocket() as ws, anyio.create_task_group() as tg:
        tg.start_soon(ws.recv)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(ConcurrencyError, match="already receiving"):
            await ws.recv()
        await ws.send("x")  # the first receiver gets it and finishes


async def test_send_cancelled_during_async_iterable_closes_with_1011() -> None:
    # The first fragment went out as it came: the message can't be taken back, nor
    # finished, so the connection closes with 1011 (nothing makes it look complete).
    script = Script()
    never = anyio.Event()

    async def stalled() -> AsyncIterator[str]:
        yield "part one"
        await never.wait()
        yield "never"  # pragma: no cover

    async with memory_websocket(script.record_until_close) as ws:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ws.send, stalled())
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.send("after")
        assert caught.value.sent is not None
        assert caught.value.sent.code == 1011
    await script.done.wait()
    assert script.received == []  # the server got no whole message


async def test_send_cancelled_while_waiting_for_room_sends_nothing() -> None:
    script = Script()

    async def slow_reader(connection: ServerConnection) -> None:
        connection.stop_reading()
        await script.go.wait()
        connection.resume_reading()
        await script.record_until_close(connection)

    # No buffering in the transport and a 1-byte write limit: the second send must wait.
    async with memory_websocket(slow_reader, max_chunks=0, write_limit=1) as ws:
        await ws.send("one")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await ws.send("two")
        with anyio.move_on_after(0.01):
            await ws.send("three")
        script.go.set()
        await ws.send("four")
        assert ws.state is State.OPEN
    await script.done.wait()
    assert script.received == ["one", "four"]


async def test_sender_waiting_for_room_sees_the_connection_die() -> None:
    async def stuck(connection: ServerConnection) -> None:
        connection.stop_reading()
        await anyio.sleep_forever()

    async with memory_websocket(stuck, max_chunks=0, write_limit=1, close_timeout=0) as ws:
        await ws.send("fills the transport")
        async with anyio.create_task_group() as tg:

            async def blocked_send() -> None:
                with pytest.raises(ConnectionClosedError):
                    await ws.send("waits for room")

            tg.start_soon(blocked_send)
            await anyio.wait_all_tasks_blocked()
            await ws._stream.aclose()  # the transport breaks under the writer


async def test_send_rejects_bad_types() -> None:
    async with memory_websocket() as ws:
        with pytest.raises(TypeError, match="send_json"):
            await ws.send({"a": 1})
        with pytest.raises(TypeError, match="not int"):
            await ws.send(1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="all fragments"):
            await ws.send(["a", b"b"])
        with pytest.raises(TypeError, match="send_text"):
            await ws.send_text(b"x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="send_bytes"):
            await ws.send_bytes("x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="mode"):
            await ws.send_json({}, mode="xml")  # type: ignore[arg-type]
        await ws.send("still fine")
        assert await ws.recv() == "still fine"


async def test_typed_helpers() -> None:
    async with memory_websocket() as ws:
        await ws.send_text("t")
        assert await ws.receive_text() == "t"
        await ws.send_bytes(b"b")
        assert await ws.receive_bytes(timeout=5) == b"b"
        await ws.send_json({"k": ["v", 1, None], "é": True})
        assert await ws.recv() == '{"k":["v",1,null],"é":true}'
        await ws.send_json([1, 2], mode="binary")
        assert await ws.receive_json(mode="binary") == [1, 2]
        await ws.send_json({"x": 1})
        assert await ws.receive_json() == {"x": 1}
        await ws.send_bytes(b"binary")
        with pytest.raises(InvalidMessageType, match="expected a text message") as info:
            await ws.receive_text()
        assert info.value.message == b"binary"  # the message isn't lost
        await ws.send_text("text")
        with pytest.raises(InvalidMessageType, match="expected a binary message"):
            await ws.receive_bytes()
        await ws.send_text("{}")
        with pytest.raises(InvalidMessageType):
            await ws.receive_json(mode="binary")
        with pytest.raises(ValueError, match="mode"):
            await ws.receive_json(mode="xml")  # type: ignore[arg-type]


async def test_async_iteration_ends_on_normal_close() -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send("a")
        await connection.send("b")
        await connection.close(1001, "going away")

    async with memory_websocket(handler) as ws:
        assert [message async for message in ws] == ["a", "b"]
        assert ws.close_code == 1001
        assert ws.close_reason == "going away"
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        with pytest.raises(ConnectionClosedOK):
            await ws.send("late")


async def test_async_iteration_raises_on_abnormal_close() -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send("a")
        await connection.close(1011, "server error")

    async with memory_websocket(handler) as ws:
        received: list[object] = []

        async def iterate() -> None:
            async for message in ws:
                received.append(message)

        with pytest.raises(ConnectionClosedError) as info:
            await iterate()
        assert received == ["a"]
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1011
        assert info.value.rcvd.reason == "server error"
        assert info.value.sent is not None
        assert info.value.rcvd_then_sent is True


async def test_backpressure_bounds_what_the_server_can_push() -> None:
    sent = 0
    total = 500

    async def flood(connection: ServerConnection) -> None:
        nonlocal sent
        for index in range(total):
            await connection.send(f"message {index}")
            sent += 1
        await connection.recv()

    async with memory_websocket(flood, max_chunks=1, max_queue=4, compression=False) as ws:
        await anyio.wait_all_tasks_blocked()
        # The client stopped reading: 4 queued + what one read parsed + the transport's slot.
        assert sent <= 4 + 3
        received = [await ws.recv() for _ in range(total)]
        assert received == [f"message {index}" for index in range(total)]


async def test_unbounded_queue() -> None:
    async def push(connection: ServerConnection) -> None:
        for index in range(100):
            await connection.send(str(index))
        await connection.recv()

    async with memory_websocket(push, max_chunks=1, max_queue=None, compression=False) as ws:
        await anyio.wait_all_tasks_blocked()
        assert len(ws._messages) == 100
        assert await ws.recv() == "0"


async def test_close_with_a_full_queue_still_completes() -> None:
    async def flood(connection: ServerConnection) -> None:
        for index in range(50):
            await connection.send(str(index))
        await connection.recv()  # answers our close

    async with memory_websocket(flood, max_queue=2, compression=False, close_timeout=30) as ws:
        await anyio.wait_all_tasks_blocked()
        await ws.close()
        assert ws.close_code == 1000
        assert await ws.recv() == "0"  # what was queued can still be read


@pytest.mark.parametrize("compression", [False, True])
async def test_max_size_fails_the_connection_with_1009(compression: bool) -> None:
    script = Script()

    async def handler(connection: ServerConnection) -> None:
        await connection.send("small")
        await connection.send("é" * 2000)  # 4000 bytes of UTF-8
        await connection.send("never delivered")
        await script.record_until_close(connection)

    async with memory_websocket(handler, max_size=1000, compression=compression) as ws:
        assert await ws.recv() == "small"
        with pytest.raises(ConnectionClosedError) as first:
            await ws.recv()
        cause = first.value.__cause__
        assert isinstance(cause, PayloadTooBig)
        assert cause.max_size == 1000
        assert cause.size > 1000
        assert first.value.sent == anyws.Close(1009, "message too big")
        # The server echoed our close frame: the stream was parsed up to it.
        assert first.value.rcvd == anyws.Close(1009, "message too big")
        assert ws.close_code == 1009
        with pytest.raises(ConnectionClosedError) as later:
            await ws.recv()
        assert later.value.__cause__ is cause
    await script.done.wait()
    assert script.connection is None


async def test_max_size_applies_after_decompression() -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send(b"\x00" * 100_000)  # compresses to ~100 bytes
        await connection.recv()

    async with memory_websocket(handler, max_size=50_000) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert isinstance(info.value.__cause__, PayloadTooBig)
        assert info.value.__cause__.size <= 50_001  # inflating stopped at the limit


async def test_close_timeout_when_server_never_answers() -> None:
    async def silent(connection: ServerConnection) -> None:
        connection.stop_reading()
        await anyio.sleep_forever()

    async with memory_websocket(silent, close_timeout=0.05) as ws:
        await ws.close()
        assert ws.closed
        assert ws.close_code == 1006
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert isinstance(info.value.__cause__, TimeoutError)
        assert info.value.sent is not None
        assert info.value.sent.code == 1000
        await ws.close()  # idempotent
        await ws.wait_closed()


async def test_close_invalid_code() -> None:
    async with memory_websocket() as ws:
        with pytest.raises(ProtocolError, match="invalid close code"):
            await ws.close(1005)
        assert ws.state is State.OPEN


async def test_exit_before_the_tasks_ran() -> None:
    # With no time to close, the block ends before the connection's tasks got to start:
    # they must not start afterwards (they are shielded and would never end).
    async with memory_websocket(close_timeout=0, ping_interval=None) as ws:
        pass
    assert ws.closed


async def test_concurrent_closes() -> None:
    async with memory_websocket() as ws, anyio.create_task_group() as tg:
        tg.start_soon(ws.close)
        tg.start_soon(ws.close, 1001)
        tg.start_soon(ws.wait_closed)
    assert ws.close_code in (1000, 1001)  # whichever close ran first (trio shuffles)


async def test_block_error_closes_with_1011_and_propagates_unchanged() -> None:
    seen: list[int | None] = []

    async def handler(connection: ServerConnection) -> None:
        await connection.wait_closed()
        seen.append(connection.close_code)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with memory_websocket(handler) as ws:
            raise Boom
    assert seen == [1011]
    assert ws.closed


async def test_outer_cancellation_exits_promptly() -> None:
    seen: list[int] = []
    client_stream, server_stream = memory_pair()

    async def never_closes() -> None:
        # Reads our close but never answers it and never closes TCP.
        ws = WSConnection(ConnectionType.SERVER)
        async with server_stream:
            while True:
                try:
                    ws.receive_data(await server_stream.receive())
                except anyio.EndOfStream:
                    return
                for event in ws.events():
                    if isinstance(event, Request):
                        await server_stream.send(ws.send(AcceptConnection()))
                    elif isinstance(event, CloseConnection):
                        seen.append(event.code)

    context = anyws.connect("ws://memory/", stream=client_stream, close_timeout=30)
    async with anyio.create_task_group() as server:
        server.start_soon(never_closes)
        start = anyio.current_time()
        with anyio.CancelScope() as scope:
            async with context as ws:
                scope.cancel()
                await anyio.sleep_forever()
        assert anyio.current_time() - start < 10
        assert ws.closed
        await anyio.wait_all_tasks_blocked()
        assert seen == [1001]
        server.cancel_scope.cancel()


async def test_connection_drop_without_close() -> None:
    async def drop(connection: ServerConnection) -> None:
        await connection.send("bye")
        await connection.drop()

    async with memory_websocket(drop) as ws:
        assert await ws.recv() == "bye"
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.rcvd is None
        assert info.value.code == 1006
        await ws.wait_closed()
        assert ws.close_code == 1006
        with pytest.raises(ConnectionClosedError):
            await ws.send("x")


async def test_write_failure_is_reported() -> None:
    async def abort(connection: ServerConnection) -> None:
        await connection.abort()

    async with memory_websocket(abort) as ws:
        await ws.wait_closed()
        with pytest.raises(ConnectionClosedError):
            await ws.send("x")
        with pytest.raises(ConnectionClosedError):
            await ws.ping()


async def test_ping_and_latency() -> None:
    async with memory_websocket(ping_interval=None) as ws:
        assert ws.latency == 0
        waiter = await ws.ping()
        latency = await waiter
        assert latency >= 0
        assert ws.latency == latency
        assert waiter.done()
        assert await (await ws.ping("text payload")) >= 0
        assert await (await ws.ping(b"bytes")).wait() >= 0
        with pytest.raises(TypeError):
            await ws.ping(1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="125"):
            await ws.ping(b"x" * 126)
        await ws.pong(b"unsolicited")
        await ws.pong("text")


async def test_duplicate_ping_payload() -> None:
    async def deaf(connection: ServerConnection) -> None:
        connection.stop_reading()
        await anyio.sleep_forever()

    async with memory_websocket(deaf, close_timeout=0) as ws:
        waiter = await ws.ping(b"same")
        with pytest.raises(ConcurrencyError):
            await ws.ping(b"same")
        await ws.close()
        with pytest.raises(ConnectionClosedError):
            await waiter


async def test_heartbeat_fails_dead_peer_with_1011() -> None:
    server: list[ServerConnection] = []

    async def dead(connection: ServerConnection) -> None:
        # Reads frames but never answers pings: an unresponsive peer.
        connection.answer_pings = False
        server.append(connection)
        await connection.wait_closed()

    async with memory_websocket(dead, ping_interval=0.01, ping_timeout=0.01, close_timeout=5) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert_keepalive_timeout(info.value, closed=ws.closed)
    # The client's close frame reached the server (which answered it).
    assert server[0].close_code == 1011


async def test_heartbeat_ends_when_the_connection_drops_during_a_ping() -> None:
    async def drop_on_ping(connection: ServerConnection) -> None:
        connection.answer_pings = False
        await connection.wait_ping()  # the keepalive ping
        await connection.abort()

    async with memory_websocket(drop_on_ping, ping_interval=0.01, ping_timeout=30) as ws:
        await ws.wait_closed()
        assert ws.close_code == 1006


async def test_properties_of_an_in_memory_connection() -> None:
    async with memory_websocket(subprotocols=["chat"]) as ws:
        assert isinstance(ws, ClientConnection)
        assert ws.subprotocol == "chat"
        assert ws.request.path == "/"
        assert ws.response.status_code == 101
        assert ws.local_address is None
        assert ws.logger.name == "anyws.client"


async def test_no_exception_group_from_library_errors() -> None:
    async def bad(connection: ServerConnection) -> None:
        await connection.send_raw(frame(0x3))  # reserved opcode
        await connection.recv()

    with pytest.raises(ConnectionClosedError) as info:
        async with memory_websocket(bad) as ws:
            await ws.recv()
    assert isinstance(info.value.__cause__, ProtocolError)
    assert info.value.__cause__.code == 1002


async def test_each_connection_has_its_own_id() -> None:
    async with memory_websocket() as first, memory_websocket() as second:
        assert first.id == first.id  # made once, then kept
        assert first.id != second.id
        assert first.id.version == 4  # random, as in `websockets`


async def test_messages_before_bad_input_can_be_answered() -> None:
    """Autobahn 3.2, 4.1.3, 5.15: a valid message, then a bad frame, in one write: the
    application gets the message and its answer goes out before the close frame."""
    seen: list[object] = []

    async def handler(connection: ServerConnection) -> None:
        # The question, then a reserved opcode, in one write.
        await connection.send_raw(frame(0x1, b"question") + frame(0x3))
        seen.extend([message async for message in connection])
        seen.append(connection.close_code)

    async with memory_websocket(handler, compression=False, close_timeout=5) as ws:
        question = await ws.receive_text()
        await ws.send(f"answer to {question}")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert isinstance(info.value.__cause__, ProtocolError)
    assert seen[:2] == ["answer to question", 1002]


async def test_bad_input_fails_after_close_timeout_if_nobody_reads() -> None:
    server: list[ServerConnection] = []

    async def handler(connection: ServerConnection) -> None:
        server.append(connection)
        await connection.send_raw(frame(0x1, b"unread") + frame(0x3))
        await connection.wait_closed()

    async with memory_websocket(handler, compression=False, close_timeout=0.05) as ws:
        await ws.wait_closed()
        assert server[0].close_code == 1002
        assert await ws.recv() == "unread"  # still delivered


async def test_messages_received_before_close_are_delivered() -> None:
    async def handler(connection: ServerConnection) -> None:
        for index in range(5):
            await connection.send(str(index))
        await connection.close()

    async with memory_websocket(handler, max_queue=None) as ws:
        await ws.wait_closed()
        assert [message async for message in ws] == ["0", "1", "2", "3", "4"]


def run_on_virtual_time(main: Any) -> Any:
    """Run `main` under trio with a MockClock that jumps whenever every task is blocked."""
    import trio
    import trio.testing

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_virtual_time_heartbeat_keeps_a_live_connection_open() -> None:
    """On trio's MockClock, a healthy peer answers every keepalive ping."""

    async def main() -> tuple[float, State]:
        async with memory_websocket(ping_interval=20, ping_timeout=20) as ws:
            await anyio.sleep(200)  # virtual: ten keepalive rounds
            return ws.latency, ws.state

    latency, state = run_on_virtual_time(main)
    assert state is State.OPEN
    assert not math.isnan(latency)


def test_virtual_time_heartbeat_without_ping_timeout() -> None:
    pings: list[bytes] = []

    async def deaf(connection: ServerConnection) -> None:
        connection.answer_pings = False
        while True:
            pings.append(await connection.wait_ping())

    async def main() -> State:
        async with memory_websocket(
            deaf, ping_interval=20, ping_timeout=None, close_timeout=1
        ) as ws:
            await anyio.sleep(90)  # pongs never come, and that is allowed
            state: State = ws.state
            return state

    assert run_on_virtual_time(main) is State.OPEN
    assert len(pings) == 4  # at 20, 40, 60 and 80 seconds


def test_virtual_time_heartbeat_stops_once_closing() -> None:
    async def closes_but_keeps_tcp(connection: ServerConnection) -> None:
        await connection.send_raw(close_frame(1000))
        connection.stop_reading()  # the client's close frame is never answered
        await connection.wait_closed()

    async def main() -> tuple[State, int | None]:
        async with memory_websocket(closes_but_keeps_tcp, ping_interval=20, close_timeout=60) as ws:
            await anyio.sleep(50)  # the heartbeat wakes at 20 and 40 while closing
            state = ws.state
            await ws.wait_closed()
            return state, ws.close_code

    assert run_on_virtual_time(main) == (State.CLOSING, 1000)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_closed_connection_raises_connection_closed(anyio_backend: str) -> None:
    async with memory_websocket() as ws:
        pass
    with pytest.raises(ConnectionClosed):
        await ws.send("x")
    with pytest.raises(ConnectionClosedOK):
        await ws.recv()
