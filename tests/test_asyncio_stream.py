"""The lean asyncio stream, driven through its protocol callbacks with a recording
transport (no sockets). These tests are about the asyncio backend only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.abc import SocketAttribute

from anyws._asyncio_stream import BULK_READ, AsyncioStream, _BulkReads, _Protocol, _read_buffer
from anyws._frames import MessageBuffer

if TYPE_CHECKING:
    from anyws._speedups import MessageBuffer as Window

needs_accelerator = pytest.mark.skipif(MessageBuffer is None, reason="needs the C accelerator")

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingTransport(asyncio.Transport):
    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.written: list[bytes] = []
        self.extra = extra or {}

    def pause_reading(self) -> None:
        self.calls.append("pause_reading")

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    buffered = 0  # what the tests say the socket hasn't taken yet

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.calls.append(f"limits {high} {low}")

    def close(self) -> None:
        self.calls.append("close")

    def abort(self) -> None:
        self.calls.append("abort")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    protocol: asyncio.BaseProtocol | None = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol


def make_stream(
    limit: int = 100, **extra: Any
) -> tuple[AsyncioStream, _Protocol, RecordingTransport]:
    protocol = _Protocol(asyncio.get_running_loop(), limit)
    transport = RecordingTransport(extra)
    protocol.connection_made(transport)
    return AsyncioStream(transport, protocol), protocol, transport


async def test_small_reads_are_joined_and_large_ones_split() -> None:
    stream, protocol, _ = make_stream()
    for part in (b"ab", b"cd", b"efgh"):
        protocol.data_received(part)
    assert await stream.receive(5) == b"abcd"
    assert await stream.receive(2) == b"ef"
    assert await stream.receive() == b"gh"
    # A big read is given out in parts; its last part is joined with what came after it.
    protocol.data_received(b"0123456789")
    protocol.data_received(b"ab")
    assert [await stream.receive(4) for _ in range(3)] == [b"0123", b"4567", b"89ab"]
    assert protocol.buffered == 0


async def test_reads_go_through_one_shared_buffer() -> None:
    stream, protocol, _ = make_stream()
    other = make_stream()[1]
    buffer = protocol.get_buffer(-1)
    assert other.get_buffer(-1) is buffer  # one per thread, not one per connection
    buffer[:5] = b"hello"
    protocol.buffer_updated(5)
    buffer[:5] = b"xxxxx"  # the next read into it doesn't change what arrived
    assert await stream.receive() == b"hello"


async def test_a_big_read_switches_to_bulk_reads_and_a_small_one_back() -> None:
    stream, protocol, transport = make_stream(limit=2**22)
    buffer = protocol.get_buffer(-1)
    buffer[:10] = b"small read"
    protocol.buffer_updated(10)
    assert transport.protocol is None  # small reads stay in the shared buffer
    buffer[:BULK_READ] = b"b" * BULK_READ
    protocol.buffer_updated(BULK_READ)
    bulk = transport.protocol
    assert isinstance(bulk, _BulkReads)  # asyncio's own reads, each into a new buffer
    bulk.data_received(b"B" * BULK_READ)
    assert transport.protocol is bulk  # still a bulk transfer
    bulk.data_received(b"tail")
    assert transport.protocol is protocol  # a small read: the shared buffer again
    assert (
        await stream.receive(2**22) == b"small read" + b"b" * BULK_READ + b"B" * BULK_READ + b"tail"
    )


def read(protocol: _Protocol, data: bytes) -> None:
    """A read as the transport makes it: its buffer goes when the read is done."""
    buffer = protocol.get_buffer(-1)
    buffer[: len(data)] = data
    protocol.buffer_updated(len(data))


@needs_accelerator
async def test_reads_go_into_the_readers_window_once_everything_was_taken() -> None:
    """While the reader offers a window, the transport reads into it (not after data
    still waiting: order), and a view of it never outlives its read.
    """
    assert MessageBuffer is not None
    stream, protocol, transport = make_stream(limit=2**22)
    window = MessageBuffer(8)
    offered: list[Window | None] = [window]
    filled: list[int] = []

    def on_window(target: Window, count: int) -> None:
        assert target is window
        window.advance(count)
        filled.append(count)

    stream.set_reader(lambda: None, lambda: offered[0], on_window)
    protocol.data_received(b"waiting")
    assert protocol.get_buffer(-1) is _read_buffer.view  # "waiting" comes first
    assert stream.receive_nowait() == b"waiting"
    assert len(protocol.get_buffer(-1)) == 8
    read(protocol, b"abc")
    assert filled == [3]
    protocol.get_buffer(-1)  # a read that found nothing after all: no buffer_updated
    read(protocol, b"defgh")
    assert window.value() == b"abcdefgh"  # no view of it is left
    # A big read while a window is offered doesn't start a bulk transfer.
    offered[0] = MessageBuffer(4)
    protocol.data_received(b"x")
    assert protocol.get_buffer(-1) is _read_buffer.view
    protocol.buffer_updated(BULK_READ)
    assert transport.protocol is None
    stream.receive_nowait()
    protocol.get_buffer(-1)  # a read that ended without `buffer_updated`: the connection
    protocol.connection_lost(None)  # was lost, and no view of the window is left
    assert offered[0] is not None
    offered[0].append(b"last")
    assert offered[0].value() == b"last"


async def test_bulk_reads_pass_every_event_on() -> None:
    stream, protocol, transport = make_stream()
    bulk = _BulkReads(protocol, transport)
    bulk.pause_writing()
    assert protocol.writing_paused
    bulk.resume_writing()
    assert not protocol.writing_paused
    bulk.data_received(b"data")
    assert bulk.eof_received() is True  # the close frame may still be sent
    assert await stream.receive() == b"data"
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()
    error = ConnectionResetError()
    bulk.connection_lost(error)
    assert protocol.lost
    assert protocol.exception is error


async def test_reading_pauses_at_the_limit_and_resumes_below_half() -> None:
    stream, protocol, transport = make_stream(limit=10)
    protocol.data_received(b"x" * 12)
    assert transport.calls == ["pause_reading"]
    assert await stream.receive(4) == b"xxxx"  # 8 left: still paused
    assert transport.calls == ["pause_reading"]
    assert await stream.receive(4) == b"xxxx"  # 4 left: below half
    assert transport.calls == ["pause_reading", "resume_reading"]


async def test_receive_waits_for_data() -> None:
    stream, protocol, _ = make_stream()
    async with anyio.create_task_group() as tg:

        async def feed() -> None:
            await anyio.wait_all_tasks_blocked()
            protocol.data_received(b"late")

        tg.start_soon(feed)
        assert await stream.receive() == b"late"


async def test_eof_after_the_data() -> None:
    stream, protocol, _ = make_stream()
    protocol.data_received(b"last")
    assert protocol.eof_received() is True
    assert await stream.receive() == b"last"
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()


async def test_connection_lost() -> None:
    stream, protocol, _ = make_stream()
    error = ConnectionResetError()
    protocol.connection_lost(error)
    with pytest.raises(anyio.BrokenResourceError) as info:
        await stream.receive()
    assert info.value.__cause__ is error
    with pytest.raises(anyio.BrokenResourceError):
        await stream.send(b"x")
    clean, clean_protocol, _ = make_stream()
    clean_protocol.connection_lost(None)
    with pytest.raises(anyio.EndOfStream):
        await clean.receive()


async def close_once_blocked(stream: AsyncioStream) -> None:
    await anyio.wait_all_tasks_blocked()
    await stream.aclose()


async def test_aclose_wakes_a_waiting_receiver() -> None:
    stream, _, transport = make_stream()
    async with anyio.create_task_group() as tg:
        tg.start_soon(close_once_blocked, stream)
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()
    await stream.aclose()
    assert transport.calls == ["abort"]
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(b"x")


async def test_send_waits_while_the_transport_is_paused() -> None:
    stream, protocol, transport = make_stream()
    await stream.send(b"at once")
    protocol.pause_writing()
    async with anyio.create_task_group() as tg:

        async def resume_soon() -> None:
            await anyio.wait_all_tasks_blocked()
            protocol.resume_writing()

        tg.start_soon(resume_soon)
        await stream.send(b"after a pause")
    assert transport.written == [b"at once", b"after a pause"]


async def test_connection_lost_while_paused() -> None:
    stream, protocol, _ = make_stream()
    protocol.pause_writing()
    async with anyio.create_task_group() as tg:

        async def lose_soon() -> None:
            await anyio.wait_all_tasks_blocked()
            protocol.connection_lost(BrokenPipeError())

        tg.start_soon(lose_soon)
        with pytest.raises(anyio.BrokenResourceError):
            await stream.send(b"never drained")


async def test_send_eof_and_addresses() -> None:
    stream, _, transport = make_stream(
        sockname=("::1", 5, 0, 0), peername="/tmp/sock", socket="raw"
    )
    await stream.send_eof()
    assert transport.calls == ["write_eof"]
    assert stream.extra(SocketAttribute.local_address) == ("::1", 5)
    assert stream.extra(SocketAttribute.remote_address) == "/tmp/sock"
    assert stream.extra(SocketAttribute.raw_socket) == "raw"


async def woken_after_one_was_cancelled(
    wait: Callable[[], Awaitable[None]], wake: Callable[[], None]
) -> list[str]:
    """Two tasks wait; one is cancelled (its future with it) just before `wake()`: only
    the other wakes."""
    woken: list[str] = []
    cancelled_scope = anyio.CancelScope()

    async def cancelled_waiter() -> None:
        with cancelled_scope:
            await wait()
            woken.append("cancelled")

    async def waiter() -> None:
        await wait()
        woken.append("waiter")

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancelled_waiter)
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        cancelled_scope.cancel()  # its future is cancelled now, before it runs again
        wake()
    return woken


async def test_light_event() -> None:
    from anyws._connection import _AsyncioEvent

    event = _AsyncioEvent()
    assert await woken_after_one_was_cancelled(event.wait, event.set) == ["waiter"]
    assert event.is_set()
    await event.wait()  # already set: returns at once


async def test_aclose_wakes_a_waiting_sender() -> None:
    stream, protocol, transport = make_stream()
    protocol.pause_writing()
    async with anyio.create_task_group() as tg:
        tg.start_soon(close_once_blocked, stream)
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"stuck")
    assert transport.calls[-1] == "abort"


async def test_drain_waiters_are_woken_each_once() -> None:
    stream, protocol, _ = make_stream()
    protocol.pause_writing()
    woken = await woken_after_one_was_cancelled(stream.wait_writable, protocol.resume_writing)
    assert woken == ["waiter"]
    assert protocol.drain_waiters == []


async def test_the_transport_as_writer() -> None:
    stream, protocol, transport = make_stream()
    stream.set_write_limits(10, 2)
    stream.write_nowait(b"frame")
    assert transport.written == [b"frame"]
    await stream.flush()  # nothing buffered: returns at once
    transport.buffered = 5
    assert stream.write_buffer_size == 5
    async with anyio.create_task_group() as tg:

        async def drain_soon() -> None:
            await anyio.wait_all_tasks_blocked()
            transport.buffered = 0
            protocol.resume_writing()

        tg.start_soon(drain_soon)
        protocol.pause_writing()  # as the transport does when its limits drop to zero
        await stream.flush()
    assert transport.calls == ["limits 10 2", "limits 0 0"]
    await stream.aclose()
    stream.write_nowait(b"dropped")  # as unsent data is once the stream is closed
    assert transport.written == [b"frame"]
    assert stream.write_buffer_size == 0
