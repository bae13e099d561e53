"""A lean anyio `ByteStream` over an asyncio transport, used when anyws runs on asyncio.

anyio's own asyncio socket stream pauses and resumes reading around every `receive()` (two
selector updates per message) and yields to the event loop on every `send()`. The driver
needs neither: reading stays on until `read_buffer_limit` bytes wait unread (that is the
backpressure), and a write that the transport accepts returns at once. The semantics are
anyio's: `EndOfStream` at EOF, `BrokenResourceError` (caused by the OSError) when the
connection broke, `ClosedResourceError` after `aclose()`, also for a waiting receiver or
sender. `aclose()` aborts: whatever is still buffered for a peer that stopped reading is
dropped and the socket released at once (the driver closes only once the closing handshake
is over or has timed out).

Small reads go into one shared buffer and are copied out at their size; a big read starts a
bulk transfer, read by the transport into buffers of its own until a read is small again
(see `_Protocol.buffer_updated`). While the driver offers a window (the rest of a big
frame, see `set_reader`), the transport reads straight into it instead.

Besides the `ByteStream` interface, the stream lets the driver use the transport as its
writer: `write_nowait` hands bytes over at once (the transport buffers what the socket
doesn't take), `write_buffer_size` and `wait_writable` are the backpressure, `flush` waits
until the buffer is empty.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from ._url import ip_family

if TYPE_CHECKING:
    from ._speedups import MessageBuffer as Window

READ_SIZE = 2**18  # as much as asyncio's own transports read at a time
BULK_READ = READ_SIZE // 4  # a read this big switches to bulk reads


class _ReadBuffer(threading.local):
    # The transport reads into this, and `buffer_updated` copies what it read out at once:
    # one buffer per thread (an event loop runs its callbacks one at a time) serves every
    # connection. asyncio's plain `Protocol` allocates 256 KiB for every read and shrinks
    # it to the size read, which costs the allocator far more than the copy of a small read.
    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_SIZE))


_read_buffer = _ReadBuffer()


class _Protocol(asyncio.BufferedProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, read_buffer_limit: int) -> None:
        self.loop = loop
        self.limit = read_buffer_limit
        self.transport: asyncio.Transport | None = None
        # What arrived and wasn't taken: rarely more than one chunk, and a list is a tenth
        # of the size of a deque (a connection keeps one).
        self.chunks: list[bytes] = []
        self.head = 0  # how much of the first chunk was taken already
        self.buffered = 0
        self.reading_paused = False
        self.writing_paused = False
        self.at_eof = False
        self.lost = False
        self.exception: BaseException | None = None
        self.read_waiter: asyncio.Future[None] | None = None
        # Called instead of waking a receiver once the driver reads by callback.
        self.on_readable: Callable[[], None] | None = None
        # Called when the write buffer has drained after being over its high-water mark.
        self.on_writable: Callable[[], None] | None = None
        # Where the driver wants the next read to go, if anywhere (see `set_reader`), and
        # the window the transport is reading into.
        self.window_source: Callable[[], Window | None] | None = None
        self.on_window: Callable[[Window, int], None] | None = None
        self.window: Window | None = None
        # Every task waiting for the write buffer to drain has a future of its own: a
        # cancelled waiter cancels its future, which mustn't wake the others.
        self.drain_waiters: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an `asyncio.Transport`: uvloop's aren't.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        self.window = None  # a read into it that failed, or found nothing after all
        if self.window_source is not None and not self.chunks:
            # Everything read before was taken: the next bytes may go to the driver's window.
            window = self.window_source()
            if window is not None:
                self.window = window
                # Only the transport holds the view, until the read is done (uvloop: until
                # `buffer_updated` has returned); the message isn't handed out before.
                return memoryview(window)
        return _read_buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        window = self.window
        if window is not None:
            self.window = None
            assert self.on_window is not None  # set with `window_source`
            self.on_window(window, nbytes)
            return
        self.data_received(bytes(_read_buffer.view[:nbytes]))
        if nbytes >= BULK_READ and not (self.window_source and self.window_source()):
            # A big read: a bulk transfer has begun. Copied out of the shared buffer, each
            # read is a second pass over the data and an allocation of its own size, and
            # with those glibc kept handing the memory of big messages back to the kernel
            # and faulting it in again. Read by the transport into a buffer of its own,
            # a 1 MiB round trip took a third less CPU (median of twelve runs), and that
            # slow state came in 5 of 12 processes instead of 11 (README, Performance).
            # `set_protocol` is asyncio's switch between buffered and plain reading.
            assert self.transport is not None
            self.transport.set_protocol(_BulkReads(self, self.transport))

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered >= self.limit and not self.reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        self.wake_reader()

    def eof_received(self) -> bool:
        self.at_eof = True
        self.wake_reader()
        return True  # keep the transport open for writing: the close frame may follow

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.exception = exc
        self.wake_reader()
        self.wake_writer()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.wake_writer()
        if self.on_writable is not None:
            self.on_writable()

    def wake_reader(self) -> None:
        if self.on_readable is not None:
            self.on_readable()
        elif self.read_waiter is not None and not self.read_waiter.done():
            self.read_waiter.set_result(None)

    def wake_writer(self) -> None:
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_drained(self) -> None:
        waiter = self.loop.create_future()
        self.drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            self.drain_waiters.remove(waiter)


class _BulkReads(asyncio.Protocol):
    """The transport's protocol during a bulk transfer: asyncio's plain reads, each into
    a new buffer; what they read, and every other event, goes to the connection's
    `_Protocol`, which becomes the transport's protocol again after a small read.
    """

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol: _Protocol, transport: asyncio.Transport) -> None:
        self.protocol = protocol
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.protocol.data_received(data)
        if len(data) < BULK_READ:
            self.transport.set_protocol(self.protocol)

    def eof_received(self) -> bool:
        return self.protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()


class AsyncioStream(anyio.abc.ByteStream):
    """The stream of one connected asyncio transport (TCP, TLS or Unix socket)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return what has arrived, up to `max_bytes`; wait if nothing has."""
        protocol = self._protocol
        while (data := self.receive_nowait(max_bytes)) is None:
            protocol.read_waiter = protocol.loop.create_future()
            try:
                await protocol.read_waiter
            finally:
                protocol.read_waiter = None
        return data

    def receive_nowait(self, max_bytes: int = 65536) -> bytes | None:
        """Return what has arrived, up to `max_bytes`, or None if nothing has.

        Raises:
            EndOfStream, BrokenResourceError, ClosedResourceError: as `receive`.
        """
        protocol = self._protocol
        chunks = protocol.chunks
        if self._closed:
            raise anyio.ClosedResourceError
        if not chunks:
            if protocol.lost or protocol.at_eof:
                if protocol.exception is not None:
                    raise anyio.BrokenResourceError from protocol.exception
                raise anyio.EndOfStream
            return None
        head = protocol.head
        first = chunks[0]
        if len(first) - head > max_bytes:
            # A big read is given out in parts; what is left isn't copied each time.
            protocol.head = head + max_bytes
            chunk = first[head : head + max_bytes]
        else:
            del chunks[0]
            protocol.head = 0
            chunk = first[head:] if head else first
            # Several small reads that arrived together go to the parser as one.
            while chunks and len(chunk) + len(chunks[0]) <= max_bytes:
                chunk += chunks.pop(0)
        protocol.buffered -= len(chunk)
        if protocol.reading_paused and protocol.buffered < protocol.limit // 2:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return chunk

    def set_reader(
        self,
        on_readable: Callable[[], None],
        window_source: Callable[[], Window | None] | None = None,
        on_window: Callable[[Window, int], None] | None = None,
        on_writable: Callable[[], None] | None = None,
    ) -> None:
        """Read by callback from now on: call `on_readable` (in the event loop's callback,
        never in a task) whenever data, EOF or a failure arrives, instead of waking a
        waiting `receive`; it takes what arrived with `receive_nowait`. What arrives while
        the reader doesn't take it stays buffered, up to `read_buffer_limit`.

        When everything that arrived was taken, the transport asks `window_source` where
        the next read should go: into the window it returns (a writable buffer), then
        `on_window` gets the window and the count read, or as usual if it returns None.
        `on_writable` is called (also in a callback) whenever the write buffer, having
        gone over its high-water mark, has drained to the low one (`writing_paused` ends).
        """
        protocol = self._protocol
        protocol.on_readable = on_readable
        protocol.window_source = window_source
        protocol.on_window = on_window
        protocol.on_writable = on_writable

    async def send(self, item: bytes) -> None:
        """Hand `item` to the transport; wait only while the transport is over its limit."""
        protocol = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.lost:
            raise anyio.BrokenResourceError from protocol.exception
        self._transport.write(item)
        await self.wait_writable()
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.lost:
            raise anyio.BrokenResourceError from protocol.exception

    @property
    def open(self) -> bool:
        """True until the stream is closed or the connection lost."""
        return not (self._closed or self._protocol.lost)

    def write_nowait(self, item: bytes) -> None:
        """Hand `item` to the transport without waiting: the transport takes it whole (so a
        cancellation can't cut it short) and buffers what the socket doesn't take. Dropped
        once the stream is closed or the connection lost, as unsent data is then.
        """
        if self.open:
            self._transport.write(item)

    @property
    def writing_paused(self) -> bool:
        """True while the write buffer is over its high-water mark (until it drains to the
        low-water mark).
        """
        return self._protocol.writing_paused

    @property
    def write_buffer_size(self) -> int:
        """Bytes handed over but not yet taken by the socket (0 once closed)."""
        return self._transport.get_write_buffer_size() if self.open else 0

    def set_write_limits(self, high: int, low: int) -> None:
        """Set the high- and low-water marks of the write buffer (see `wait_writable`)."""
        self._transport.set_write_buffer_limits(high, low)

    async def wait_writable(self) -> None:
        """Wait while the write buffer is over its high-water mark: until it has drained to
        the low-water mark, or the stream is closed or the connection lost. Cancel-safe.
        """
        protocol = self._protocol
        while protocol.writing_paused and self.open:
            await protocol.wait_drained()

    async def flush(self) -> None:
        """Wait until the socket has taken everything written (or the stream is gone).

        Used on the way to `aclose()`: the limits stay at zero afterwards.
        """
        if self.write_buffer_size:
            self._transport.set_write_buffer_limits(0, 0)  # resume_writing once empty
            await self.wait_writable()

    async def send_eof(self) -> None:
        """Half-close: no more data will be sent."""
        self._transport.write_eof()

    def close_after_writing(self) -> None:
        """Close the transport once it has written what it holds (asyncio's graceful
        close); the reader is called back when it has closed.
        """
        self._transport.close()

    async def aclose(self) -> None:
        """Abort the transport: unsent data is dropped, the socket closed now."""
        self.abort()

    def abort(self) -> None:
        """`aclose()` without awaiting: abort the transport now."""
        if not self._closed:
            self._closed = True
            # The reader closed it, or is gone. The callbacks are bound to the connection,
            # which holds this stream: dropped, they leave no cycle for the collector, and
            # the connection is freed as soon as the application lets go of it.
            protocol = self._protocol
            protocol.on_readable = protocol.window_source = protocol.on_window = None
            protocol.on_writable = None
            self._transport.abort()
            protocol.wake_reader()
            protocol.wake_writer()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The socket's addresses, as anyio's socket streams report them."""
        transport = self._transport

        def address(name: str) -> Callable[[], Any]:
            def get() -> Any:
                value = transport.get_extra_info(name)
                return tuple(value[:2]) if isinstance(value, tuple) else value

            return get

        return {
            SocketAttribute.local_address: address("sockname"),
            SocketAttribute.remote_address: address("peername"),
            SocketAttribute.raw_socket: lambda: transport.get_extra_info("socket"),
        }


async def connect(
    *,
    sock: socket.socket | None = None,
    host: str | None = None,
    port: int | None = None,
    path: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    read_buffer_limit: int = 2**16,
    local_host: str | None = None,
    happy_eyeballs_delay: float | None = 0.25,
) -> AsyncioStream:
    """Open a TCP (happy eyeballs, RFC 8305) or Unix socket connection, or take `sock`, a
    connected stream socket; with TLS if `ssl_context` is given. `local_host` and
    `happy_eyeballs_delay` as in `anyws.Options`.

    Raises:
        OSError: the connection or the TLS handshake failed.
        ExceptionGroup: on Python >= 3.12, of the OSError of each address tried.
    """
    loop = asyncio.get_running_loop()
    protocol = _Protocol(loop, read_buffer_limit)
    tls: dict[str, Any] = {}
    if ssl_context is not None:
        tls = {"ssl": ssl_context, "server_hostname": server_hostname}
    if sock is not None:
        transport, _ = await loop.create_connection(lambda: protocol, sock=sock, **tls)
    elif path is not None:
        transport, _ = await loop.create_unix_connection(lambda: protocol, path, **tls)
    else:
        assert host is not None
        assert port is not None
        # Happy eyeballs (RFC 8305) races the addresses a name resolves to; an address
        # literal has one, and the race would only add tasks. Only asyncio's own event
        # loop has the options: uvloop tries the addresses one at a time.
        race: dict[str, Any] = {}
        standard_loop = isinstance(loop, asyncio.BaseEventLoop)
        if happy_eyeballs_delay is not None and standard_loop and ip_family(host) is None:
            race["happy_eyeballs_delay"] = happy_eyeballs_delay
        if sys.version_info >= (3, 12) and standard_loop:
            # Every address's error, not only a summary of them (see _transport.connect_error).
            race["all_errors"] = True
        if local_host is not None:
            race["local_addr"] = (local_host, 0)
        transport, _ = await loop.create_connection(lambda: protocol, host, port, **race, **tls)
    return AsyncioStream(transport, protocol)
