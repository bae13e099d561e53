"""A TCP proxy that injects network faults between a client and a server: latency, a
bandwidth cap, bytes delivered one at a time or split at random points, stalls, a
blackhole, resets and half-closes. Faults are attributes of each direction and may change
while connections are live; they apply to every connection through the proxy.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from ._server import Server, background_tasks, close_stream

_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


class Direction:
    """The faults of one direction of the proxy (`FaultProxy.to_server` or `to_client`).

    Every attribute may change at any time; a change applies from the next bytes forwarded.

    Attributes:
        delay: Seconds each piece waits before it is forwarded.
        bandwidth: Bytes per second at most (`None`: no cap).
        chunk_size: Forward at most this many bytes per write (`1`: one byte at a time).
        split: Split what is read at points drawn from this generator (seed it: a failing
            test then replays the same splits).
        bytes_forwarded: How many bytes went through so far, on every connection.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.bytes_forwarded = 0
        self.split: random.Random | None = None
        self._delay = 0.0
        self._bandwidth: float | None = None
        self._chunk_size: int | None = None
        self._stalled_until = 0.0
        self._resumed = anyio.Event()
        self._reset_budget: int | None = None
        self._half_closed = False
        self._pipes: list[_Pipe] = []

    def __repr__(self) -> str:
        return f"<Direction {self.name} forwarded={self.bytes_forwarded}>"

    @property
    def delay(self) -> float:
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {seconds!r}")
        self._delay = seconds

    @property
    def bandwidth(self) -> float | None:
        return self._bandwidth

    @bandwidth.setter
    def bandwidth(self, bytes_per_second: float | None) -> None:
        if bytes_per_second is not None and not bytes_per_second > 0:
            raise ValueError(f"bandwidth must be > 0 bytes per second, not {bytes_per_second!r}")
        self._bandwidth = bytes_per_second

    @property
    def chunk_size(self) -> int | None:
        return self._chunk_size

    @chunk_size.setter
    def chunk_size(self, size: int | None) -> None:
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"chunk_size must be an int >= 1, not {size!r}")
        self._chunk_size = size

    def stall(self, seconds: float | None = None) -> None:
        """Hold every byte in this direction for `seconds` (`None`: until `resume()`)."""
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, not {seconds!r}")
        self._stalled_until = math.inf if seconds is None else anyio.current_time() + seconds

    def resume(self) -> None:
        """Forward again after `stall()`."""
        self._stalled_until = 0.0
        self._resumed.set()
        self._resumed = anyio.Event()

    def reset_after(self, count: int) -> None:
        """Forward `count` more bytes in this direction, then reset the connection (RST to
        both ends): with a count inside a frame, the connection is cut mid-frame.
        """
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, not {count!r}")
        self._reset_budget = count

    async def half_close(self) -> None:
        """Shut down this direction: the receiving end gets EOF (once what is in flight was
        forwarded); what is sent afterwards in this direction is discarded. The other
        direction keeps working.
        """
        self._half_closed = True
        for pipe in list(self._pipes):
            await pipe.send_eof()

    def _pieces(self, data: bytes) -> Iterator[bytes]:
        while data:
            size = len(data)
            if self._chunk_size is not None:
                size = min(size, self._chunk_size)
            if self.split is not None and size > 1:
                size = self.split.randint(1, size)
            yield data[:size]
            data = data[size:]

    async def _wait_until_resumed(self) -> None:
        while (remaining := self._stalled_until - anyio.current_time()) > 0:
            with anyio.move_on_after(remaining):
                await self._resumed.wait()


class _Pipe:
    """One direction of one proxied connection."""

    def __init__(
        self,
        direction: Direction,
        source: anyio.abc.ByteStream,
        destination: anyio.abc.ByteStream,
        link: _Link,
    ) -> None:
        self.direction = direction
        self.source = source
        self.destination = destination
        self.link = link
        self._write_lock = anyio.Lock()
        self._eof_sent = False

    async def run(self) -> None:
        direction = self.direction
        direction._pipes.append(self)
        try:
            while True:
                try:
                    data = await self.source.receive()
                except anyio.EndOfStream:
                    await self.send_eof()  # a FIN is forwarded as a FIN
                    return
                except _GONE:
                    await self.link.reset()  # and a reset as a reset
                    return
                if direction._half_closed:
                    continue
                for piece in direction._pieces(data):
                    if not await self._forward(piece):
                        return
        finally:
            direction._pipes.remove(self)

    async def _forward(self, piece: bytes) -> bool:
        direction = self.direction
        await direction._wait_until_resumed()
        if direction.delay:
            await anyio.sleep(direction.delay)
        if direction.bandwidth is not None:
            await anyio.sleep(len(piece) / direction.bandwidth)
        budget = direction._reset_budget
        if budget is not None and budget < len(piece):
            direction._reset_budget = None
            if budget:
                await self._write(piece[:budget])
            await self.link.reset()
            return False
        if budget is not None:
            direction._reset_budget = budget - len(piece)
        return await self._write(piece)

    async def _write(self, piece: bytes) -> bool:
        async with self._write_lock:
            if self._eof_sent:
                return True
            try:
                await self.destination.send(piece)
            except _GONE:
                await self.link.reset()
                return False
        self.direction.bytes_forwarded += len(piece)
        return True

    async def send_eof(self) -> None:
        async with self._write_lock:
            if not self._eof_sent:
                self._eof_sent = True
                # Once the peer reset the socket, trio's shutdown() raises a bare OSError,
                # and uvloop's transport (closed then) a RuntimeError.
                with contextlib.suppress(*_GONE, OSError, RuntimeError):
                    await self.destination.send_eof()


class _Link:
    """Both ends of one proxied connection."""

    def __init__(self, client: anyio.abc.SocketStream, upstream: anyio.abc.SocketStream) -> None:
        self.ends = (client, upstream)
        self.scope = anyio.CancelScope()

    async def reset(self) -> None:
        for end in self.ends:
            await close_stream(end, reset=True)
        self.scope.cancel()


class FaultProxy:
    """A running fault-injecting proxy (see `fault_proxy()`).

    Attributes:
        to_server: The faults of the client-to-server direction.
        to_client: The faults of the server-to-client direction.
        blackhole: When true, new connections are accepted and never forwarded: nothing
            reaches the server, nothing comes back.
        accepted: How many connections the proxy accepted.
    """

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.to_server = Direction("to_server")
        self.to_client = Direction("to_client")
        self.blackhole = False
        self.accepted = 0
        self._port = port
        self._target = target
        self._links: list[_Link] = []

    def __repr__(self) -> str:
        return f"<FaultProxy {self.uri} -> {self._target[0]}:{self._target[1]}>"

    @property
    def port(self) -> int:
        """The port the proxy listens on, on 127.0.0.1."""
        return self._port

    @property
    def uri(self) -> str:
        """`ws://127.0.0.1:<port>/`: the URI that reaches the target through the proxy."""
        return f"ws://127.0.0.1:{self._port}/"

    async def reset(self) -> None:
        """Reset every live connection now (RST to the client and to the server)."""
        for link in list(self._links):
            await link.reset()

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        async with client:
            if self.blackhole:
                await anyio.sleep_forever()
            try:
                upstream = await anyio.connect_tcp(*self._target)
            except OSError:
                # Too late to refuse the connection: reset it, the nearest equivalent.
                await close_stream(client, reset=True)
                return
            link = _Link(client, upstream)
            self._links.append(link)
            try:
                # Each direction ends on its own (a half-close leaves the other working);
                # a reset ends both.
                async with upstream:
                    with link.scope:
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(_Pipe(self.to_server, client, upstream, link).run)
                            await _Pipe(self.to_client, upstream, client, link).run()
            finally:
                self._links.remove(link)


@asynccontextmanager
async def fault_proxy(target: Server | tuple[str, int]) -> AsyncIterator[FaultProxy]:
    """Run a fault-injecting TCP proxy on 127.0.0.1 in front of `target` (a test `Server`
    or a `(host, port)`) for the duration of the block, in the current event loop.

    Yields:
        The `FaultProxy`: connect to its `uri` (or `port`); set faults on `to_server`
        and `to_client`.

    Raises:
        ValueError: `target` is a server on a Unix socket.
    """
    if isinstance(target, Server):
        if target.unix_path is not None:
            raise ValueError("the proxy forwards TCP; this server listens on a Unix socket")
        target = ("127.0.0.1", target.port)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy = FaultProxy(listener.extra(anyio.abc.SocketAttribute.local_port), target)
    async with listener, background_tasks() as tg:
        tg.start_soon(listener.serve, proxy._relay)
        yield proxy
