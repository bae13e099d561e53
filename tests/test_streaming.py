"""Streaming receive: `recv_streaming()` yields the fragments of a message as they arrive,
and abandoning it (break, cancellation, another receive) leaves the connection usable.

The server is scripted over an in-memory transport (frames sent one at a time, gated by
the test), and the `websockets` server over loopback for an independent sender.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import anyws
from anyws import (
    ClientConnection,
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
    PayloadTooBig,
)
from anyws.testing import Accept, ServerConnection, frame, serve

from .conftest import memory_websocket, websockets_server

pytestmark = pytest.mark.anyio


TEXT, BINARY, CONTINUATION = 0x1, 0x2, 0x0


class Script:
    """A server that sends the frames it is given when the test says so, and answers the
    client's close."""

    def __init__(self, *, read: bool = True) -> None:
        self.send, self._receive = anyio.create_memory_object_stream[bytes | None](100)
        self._read = read

    async def __call__(self, connection: ServerConnection) -> None:
        if not self._read:
            connection.stop_reading()
        with self.send, self._receive:
            async for data in self._receive:
                if data is None:
                    await connection.close()
                    break
                await connection.send_raw(data)
            else:  # the test closed `send`: the server vanishes
                await connection.abort()

    def frames(self, *frames: bytes) -> None:
        self.send.send_nowait(b"".join(frames))

    def close(self) -> None:
        self.send.send_nowait(None)


async def test_fragments_are_yielded_as_they_arrive() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(TEXT, b"hel", fin=False))
        stream = ws.recv_streaming()
        # The first fragment comes before the rest of the message was even sent.
        assert await stream.__anext__() == "hel"
        script.frames(frame(CONTINUATION, b"lo ", fin=False), frame(CONTINUATION, b"world"))
        assert [fragment async for fragment in stream] == ["lo ", "world"]
        script.frames(frame(BINARY, b"\x00", fin=False), frame(CONTINUATION, b"\xff"))
        assert [fragment async for fragment in ws.recv_streaming()] == [b"\x00", b"\xff"]


@asynccontextmanager
async def scripted_websocket(script: Script, transport: str) -> AsyncIterator[ClientConnection]:
    """Connect to `script` over the in-memory transport or over loopback."""
    if transport == "memory":
        async with memory_websocket(script, compression=False) as ws:
            yield ws
    else:
        async with (
            serve(script, handshake=Accept(compression=False)) as server,
            anyws.connect(server.uri) as ws,
        ):
            yield ws


@pytest.mark.parametrize("transport", ["memory", "loopback"])
async def test_one_binary_frame_cut_across_reads(transport: str) -> None:
    """A binary frame that arrives in several reads is received whole, also after a
    failed decode, or streamed from the part that has arrived, and lost with the
    connection if the server vanishes before its end. Over loopback, the reads after the
    first go straight into the message, also when the receiver starts streaming it while
    the reader waits (trio).
    """
    script = Script()
    payload = b"\xff" + bytes(range(256)) * 300
    data = frame(BINARY, payload)
    async with scripted_websocket(script, transport) as ws:
        script.frames(data[:1000])
        script.frames(data[1000:])
        with pytest.raises(UnicodeDecodeError):
            await ws.recv(decode=True)
        assert await ws.recv() == payload
        script.frames(data[:1000])
        stream = ws.recv_streaming(decode=False)
        first = await stream.__anext__()
        # All of the payload that arrived (over loopback, a read may cut it anywhere).
        assert first == payload[: len(first)]
        script.frames(data[1000:])
        assert first + b"".join([fragment async for fragment in stream]) == payload
        script.frames(data[:1000])
        await script.send.aclose()  # the server vanishes in the middle of the frame
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.recv()
        assert caught.value.rcvd is None


async def test_a_whole_message_is_one_fragment_and_an_empty_one_gives_one_empty() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(TEXT, b"whole"), frame(BINARY, b""), frame(TEXT, b"", fin=False))
        script.frames(frame(CONTINUATION, b""))
        assert [fragment async for fragment in ws.recv_streaming()] == ["whole"]
        assert [fragment async for fragment in ws.recv_streaming()] == [b""]
        assert [fragment async for fragment in ws.recv_streaming()] == [""]


async def test_text_fragments_never_split_a_utf8_sequence() -> None:
    script = Script()
    encoded = "héllo wörld €".encode()
    async with memory_websocket(script, compression=False) as ws:
        # Every frame boundary falls inside a multi-byte character.
        script.frames(
            frame(TEXT, encoded[:2], fin=False),
            frame(CONTINUATION, encoded[2:9], fin=False),
            frame(CONTINUATION, encoded[9:-1], fin=False),
            frame(CONTINUATION, encoded[-1:]),
        )
        fragments = [fragment async for fragment in ws.recv_streaming(decode=True)]
        assert "".join(fragments) == "héllo wörld €"
        for fragment in fragments:
            assert isinstance(fragment, str)
            fragment.encode("utf-8")  # each a whole string: no lone surrogate, no half


async def test_decode_on_streams() -> None:
    script = Script()
    encoded = "ünï €".encode()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(TEXT, "ün".encode(), fin=False), frame(CONTINUATION, "ï".encode()))
        as_bytes = [fragment async for fragment in ws.recv_streaming(decode=False)]
        assert as_bytes == ["ün".encode(), "ï".encode()]
        # A binary message decoded incrementally: a character split across frames is
        # given whole, in the fragment where it ends.
        script.frames(frame(BINARY, encoded[:2], fin=False), frame(CONTINUATION, encoded[2:]))
        as_text = [fragment async for fragment in ws.recv_streaming(decode=True)]
        assert as_text == ["ü", "nï €"]
        # Typed by the overloads.
        script.frames(frame(BINARY, b"abc"))
        typed: list[str] = [fragment async for fragment in ws.recv_streaming(decode=True)]
        assert typed == ["abc"]


async def test_a_decode_error_before_the_first_fragment_keeps_the_message() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(BINARY, b"\xff whole"))
        with pytest.raises(UnicodeDecodeError):
            await ws.recv_streaming(decode=True).__anext__()
        assert await ws.recv() == b"\xff whole"
        # Mid-message, the rest is discarded: the next receive gets the next message.
        script.frames(
            frame(BINARY, b"ok", fin=False),
            frame(CONTINUATION, b"\xff", fin=False),
            frame(CONTINUATION, b"rest"),
            frame(TEXT, b"next"),
        )
        stream = ws.recv_streaming(decode=True)
        assert await stream.__anext__() == "ok"
        with pytest.raises(UnicodeDecodeError):
            await stream.__anext__()
        assert await ws.recv() == "next"
        # A sequence left open at the end of the message is an error too.
        script.frames(frame(BINARY, b"\xc3", fin=False), frame(CONTINUATION, b""))
        with pytest.raises(UnicodeDecodeError):
            [fragment async for fragment in ws.recv_streaming(decode=True)]


async def test_breaking_out_discards_the_rest_and_the_connection_stays_usable() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(TEXT, b"first", fin=False))
        async for fragment in ws.recv_streaming():
            assert fragment == "first"
            break
        # The rest of the abandoned message arrives after the break; then the next one.
        script.frames(frame(CONTINUATION, b"dropped", fin=False), frame(CONTINUATION, b"too"))
        script.frames(frame(TEXT, b"next"))
        assert await ws.recv() == "next"
        # aclose() discards at once, whatever is still to come.
        script.frames(frame(BINARY, b"a", fin=False))
        stream = ws.recv_streaming()
        assert await stream.__anext__() == b"a"
        await stream.aclose()
        assert ws._messages == type(ws._messages)()  # nothing of it is kept
        script.frames(frame(CONTINUATION, b"b" * 1000), frame(BINARY, b"after"))
        assert [fragment async for fragment in ws.recv_streaming()] == [b"after"]
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()  # a closed stream stays ended


async def test_another_receive_takes_over_an_unfinished_stream() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(TEXT, b"one", fin=False))
        stream = ws.recv_streaming()
        assert await stream.__anext__() == "one"
        script.frames(frame(CONTINUATION, b"two"), frame(TEXT, b"next"))
        other = ws.recv_streaming()
        assert await other.__anext__() == "next"
        with pytest.raises(ConcurrencyError, match="discarded the rest"):
            await stream.__anext__()


async def test_a_concurrent_receive_is_refused_while_a_stream_waits() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(TEXT, b"one", fin=False))
        stream = ws.recv_streaming()
        assert await stream.__anext__() == "one"
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.__anext__)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(ConcurrencyError):
                await ws.recv()
            with pytest.raises(ConcurrencyError):
                await ws.recv_streaming().__anext__()
            script.frames(frame(CONTINUATION, b"two"))
        assert [fragment async for fragment in stream] == []


async def test_cancellation_loses_nothing() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        # Cancelled before the first fragment: the message stays queued.
        with anyio.move_on_after(0):
            await ws.recv_streaming().__anext__()
        script.frames(frame(TEXT, b"a", fin=False))
        stream = ws.recv_streaming()
        assert await stream.__anext__() == "a"
        # Cancelled while waiting for a later fragment: iterating again goes on.
        with anyio.move_on_after(0):
            await stream.__anext__()
        script.frames(frame(CONTINUATION, b"b", fin=False))
        assert await stream.__anext__() == "b"
        with anyio.CancelScope() as scope:
            scope.cancel()
            await stream.__anext__()
        script.frames(frame(CONTINUATION, b"c"))
        assert [fragment async for fragment in stream] == ["c"]
        # recv() waiting for a message that arrives in parts is cancel-safe too.
        script.frames(frame(TEXT, b"x", fin=False))
        with anyio.move_on_after(0):
            await ws.recv()
        script.frames(frame(CONTINUATION, b"y"))
        assert await ws.recv() == "xy"


@pytest.mark.parametrize(
    ("frames", "decode", "message"),
    [
        pytest.param(
            [frame(TEXT, b"", fin=False), frame(CONTINUATION, b"ab")],
            None,
            "ab",
            id="empty-first-frame",
        ),
        pytest.param(
            [frame(TEXT, b"\xc3", fin=False), frame(CONTINUATION, b"\xa9")],
            None,
            "\u00e9",
            id="half-a-sequence",
        ),
        pytest.param(
            [frame(BINARY, b"\xc3", fin=False), frame(CONTINUATION, b"\xa9")],
            True,
            b"\xc3\xa9",
            id="half-a-sequence-decoded",
        ),
    ],
)
async def test_a_stream_cancelled_before_anything_it_could_yield_loses_nothing(
    frames: list[bytes], decode: bool | None, message: str | bytes
) -> None:
    # The message has begun, but its first frame gives nothing to yield (it is empty, or
    # the start of a UTF-8 sequence): a stream cancelled then has yielded nothing, so the
    # message stays queued for the next receive, whole.
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frames[0])
        await anyio.wait_all_tasks_blocked()
        assert len(ws._messages) == 1  # the message has begun: the stream takes it
        with anyio.move_on_after(0):
            await ws.recv_streaming(decode=decode).__anext__()
        script.frames(frames[1], frame(TEXT, b"next"))
        assert await ws.recv() == message
        assert await ws.recv() == "next"


async def test_a_decode_error_in_the_first_frame_of_a_fragmented_message_keeps_it() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(BINARY, b"\xff", fin=False), frame(CONTINUATION, b"rest"))
        with pytest.raises(UnicodeDecodeError):
            await ws.recv_streaming(decode=True).__anext__()
        assert await ws.recv() == b"\xffrest"


async def test_a_message_in_many_frames_needs_only_one_place_in_the_queue() -> None:
    script = Script()
    async with memory_websocket(script, compression=False, max_queue=1) as ws:
        script.frames(
            frame(TEXT, b"a", fin=False),
            *(frame(CONTINUATION, b"b", fin=False) for _ in range(50)),
            frame(CONTINUATION, b"c"),
            frame(TEXT, b"next"),
        )
        assert await ws.recv() == "a" + "b" * 50 + "c"
        assert await ws.recv() == "next"


async def test_recv_waiting_for_the_rest_of_a_message_when_the_server_vanishes() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(TEXT, b"cut", fin=False))
        async with anyio.create_task_group() as tg:
            tg.start_soon(script.send.aclose)
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
        assert ws.close_code == 1006


async def test_aclose_before_or_after_the_message_changes_nothing() -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        await ws.recv_streaming().aclose()  # never started: the next message stays queued
        script.frames(frame(TEXT, b"a", fin=False), frame(CONTINUATION, b"b"))
        stream = ws.recv_streaming()
        assert [fragment async for fragment in stream] == ["a", "b"]
        await stream.aclose()
        script.frames(frame(TEXT, b"c"))
        assert await ws.recv() == "c"


@pytest.mark.parametrize("end", ["close frame", "no close frame"])
async def test_a_connection_that_ends_mid_message_raises_from_the_stream(end: str) -> None:
    script = Script()
    async with memory_websocket(script, compression=False) as ws:
        script.frames(frame(TEXT, b"complete"), frame(TEXT, b"cut", fin=False))
        assert await ws.recv() == "complete"
        stream = ws.recv_streaming()
        assert await stream.__anext__() == "cut"
        if end == "close frame":
            script.close()
            with pytest.raises(ConnectionClosedOK):
                await stream.__anext__()
            assert ws.close_code == 1000
        else:
            script.frames(b"\x88")  # half a close frame, then the server vanishes
            await script.send.aclose()
            with pytest.raises(ConnectionClosedError):
                await stream.__anext__()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()


async def test_max_size_bounds_a_streamed_message() -> None:
    script = Script()
    async with memory_websocket(script, compression=False, max_size=10) as ws:
        script.frames(frame(TEXT, b"ok"), frame(BINARY, b"12345", fin=False))
        assert await ws.recv() == "ok"
        stream = ws.recv_streaming()
        assert await stream.__anext__() == b"12345"
        script.frames(frame(CONTINUATION, b"678901"))
        with pytest.raises(ConnectionClosedError) as caught:
            await stream.__anext__()
        assert caught.value.sent is not None
        assert caught.value.sent.code == 1009
        assert isinstance(caught.value.__cause__, PayloadTooBig)


async def test_a_message_too_big_while_nobody_streams_is_reported_after_the_earlier_ones() -> None:
    script = Script()
    async with memory_websocket(script, compression=False, max_size=10) as ws:
        script.frames(frame(TEXT, b"ok"), frame(BINARY, b"12345", fin=False))
        script.frames(frame(CONTINUATION, b"678901"))
        assert await ws.recv() == "ok"
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.recv()
        assert isinstance(caught.value.__cause__, PayloadTooBig)


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_streaming_from_the_websockets_server(compression: str | None) -> None:
    """An independent server sends fragmented messages, one fragment at a time."""
    go_on = threading.Event()

    def fragments() -> Iterator[str]:
        yield "first "
        go_on.wait(timeout=10)
        yield "second "
        yield "third"

    def handler(server_ws: Any) -> None:
        server_ws.recv()
        server_ws.send(fragments())
        server_ws.send([b"\x01" * 70_000, b"\x02" * 70_000])
        server_ws.recv()

    async with (
        websockets_server(handler, compression=compression and "deflate") as uri,
        anyws.connect(uri, compression=compression) as ws,
    ):
        await ws.send("go")
        stream = ws.recv_streaming(decode=True)
        assert await stream.__anext__() == "first "
        go_on.set()
        assert "".join([fragment async for fragment in stream]) == "second third"
        received = b""
        async for fragment in ws.recv_streaming(decode=False):
            assert len(fragment) <= 70_000
            received += fragment
        assert received == b"\x01" * 70_000 + b"\x02" * 70_000
        await ws.send("done")


# -- streamed sends ----------------------------------------------------------------------


def streaming_echo(first_fragment_seen: threading.Event) -> Any:
    """A `websockets` handler that reads each message in fragments as they come and
    answers with the fragments it saw."""

    def handler(server_ws: Any) -> None:
        while True:
            fragments = []
            for fragment in server_ws.recv_streaming():
                fragments.append(fragment)
                first_fragment_seen.set()
            server_ws.send(repr(fragments))

    return handler


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_an_async_iterable_is_streamed_fragment_by_fragment(compression: str | None) -> None:
    first_fragment_seen = threading.Event()

    async def source() -> Any:
        yield "stream"
        # The server has read the first fragment before the second one even exists.
        await anyio.to_thread.run_sync(first_fragment_seen.wait, 10)
        assert first_fragment_seen.is_set()
        yield "ed"

    async with (
        websockets_server(
            streaming_echo(first_fragment_seen), compression=compression and "deflate"
        ) as uri,
        anyws.connect(uri, compression=compression) as ws,
    ):
        await ws.send(source())
        # An empty final frame ends the message (the server sees it as an empty fragment).
        assert await ws.recv() == repr(["stream", "ed", ""])
        # Pings go out between the fragments of a compressed message without harm.
        first_fragment_seen.clear()

        async def with_pings() -> Any:
            for chunk in (b"a" * 5000, b"b" * 5000):
                yield chunk
                await ws.ping()

        await ws.send(with_pings())
        assert await ws.recv() == repr([b"a" * 5000, b"b" * 5000, b""])
        # A plain iterator (a generator) is streamed too; a list is sent as it is.
        await ws.send(chunk for chunk in ["x", "y"])
        assert await ws.recv() == repr(["x", "y", ""])
        await ws.send(["x", "y"])
        assert await ws.recv() == repr(["x", "y"])


async def test_a_source_that_fails_mid_message_closes_with_1011() -> None:
    async def source() -> Any:
        yield b"half a message"
        raise ValueError("the source failed")

    async with websockets_server() as uri:
        async with anyws.connect(uri) as ws:
            with pytest.raises(ValueError, match="the source failed"):
                await ws.send(source())
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
        assert caught.value.sent is not None
        assert caught.value.sent.code == 1011
        assert isinstance(caught.value.__cause__, ValueError)

        # Mixed types after the first fragment: the same.
        async with anyws.connect(uri) as ws:
            mixed: list[str | bytes] = ["text", b"bytes"]
            with pytest.raises(TypeError, match="all fragments"):
                await ws.send(iter(mixed))
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
        assert caught.value.sent is not None
        assert caught.value.sent.code == 1011


async def test_a_source_that_fails_before_its_first_fragment_sends_nothing() -> None:
    async def failing() -> Any:
        raise ValueError("nothing to send")
        yield "never"  # pragma: no cover (makes this an async generator)

    async with websockets_server() as uri, anyws.connect(uri) as ws:
        with pytest.raises(ValueError, match="nothing to send"):
            await ws.send(failing())
        with pytest.raises(TypeError, match="not int"):
            await ws.send(iter([1]))  # type: ignore[arg-type]
        await ws.send(iter([]))  # an empty iterable sends nothing
        await ws.send("still usable")
        assert await ws.recv() == "still usable"


async def test_a_streamed_send_waits_for_room_and_a_cancelled_one_closes_with_1011() -> None:
    produced = 0

    def source() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(200):
            produced += 1
            yield b"x" * 2**16

    script = Script(read=False)  # the transport fills up
    async with memory_websocket(script, compression=False, max_chunks=1, close_timeout=0.1) as ws:
        with anyio.move_on_after(30) as timeout:  # (a hang guard, never reached)
            async with anyio.create_task_group() as tg:
                tg.start_soon(ws.send, source())
                await anyio.wait_all_tasks_blocked()
                # The source is read only as fast as the transport takes the frames:
                # write_limit (64 KiB) in the writer's buffer, a frame in flight, one in the
                # pipe, and the one waiting for room; not the 200.
                assert produced <= 5
                tg.cancel_scope.cancel()
        assert not timeout.cancelled_caught
        assert ws.state is anyws.State.CLOSING  # the message can't be finished: 1011
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.send("after")
        assert caught.value.sent is not None
        assert caught.value.sent.code == 1011
        assert isinstance(caught.value.__cause__, ConnectionAbortedError)


async def test_other_messages_wait_for_a_streamed_one() -> None:
    release = anyio.Event()

    async def source() -> Any:
        yield "a"
        await release.wait()
        yield "b"

    async with websockets_server() as uri, anyws.connect(uri) as ws:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.send, source())
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ws.send, "after")
            tg.start_soon(ws.send, ["also", " after"])
            await anyio.wait_all_tasks_blocked()
            release.set()
        # The streamed message first, whole; the two that waited in either order (tasks
        # woken together run in no promised order: trio shuffles them).
        received = [await ws.recv() for _ in range(3)]
        assert received[0] == "ab"
        assert sorted(received[1:]) == ["after", "also after"]
