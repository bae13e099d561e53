"""A plain TCP or Unix socket on trio, read and written through the socket itself.

anyio's trio socket stream goes through trio's socket layer: every `receive()` tries the
socket, and after a successful read yields to the scheduler once more (trio's
`cancel_shielded_checkpoint`), so a message costs the reader two scheduler passes; a
`send()` and an `aclose()` are always a checkpoint too. The driver's reader needs one pass
per read: it waits until the socket is readable, then reads what is there. Waiting is the
checkpoint, so the reader still yields once per read, as trio requires of a loop.

The stream owns the stdlib socket, without anyio's or trio's socket objects around it:
making those for every connection, and closing through them (a further pass of the
scheduler), was almost a tenth of the CPU time of a connection that opens and closes.

Besides the `ByteStream` interface, `try_send` lets the driver write a frame from the task
that queued it when the writer task is idle (see `_connection._kick_writer`): a write the
socket takes whole needs no task switch. The semantics are anyio's: `EndOfStream` at EOF,
`BrokenResourceError` (caused by the `OSError`) when the connection broke,
`ClosedResourceError` after `aclose()`, also for a waiting receiver or sender. Only a
stream whose bytes are the socket's own is wrapped: never TLS, whose bytes the socket
doesn't hold.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

if TYPE_CHECKING:
    from typing_extensions import Buffer

_Argument = TypeVar("_Argument")
_Read = TypeVar("_Read", bytes, int)


class TrioSocketStream(anyio.abc.ByteStream):
    """A connected stream socket as an anyio `ByteStream` on trio; it owns the socket,
    which must be non-blocking.
    """

    def __init__(self, sock: socket.socket) -> None:
        import trio  # here, not at the top: `_connection` imports this module on asyncio too

        self._socket = sock
        self._closed = False
        self._wait_readable = trio.lowlevel.wait_readable
        self._wait_writable = trio.lowlevel.wait_writable
        self._notify_closing = trio.lowlevel.notify_closing
        self._trio_closed_error = trio.ClosedResourceError

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Wait until the socket is readable, then read at most `max_bytes`.

        Cancel-safe: a receive cancelled while it waits has read nothing.

        Raises:
            EndOfStream: the peer closed its side.
            BrokenResourceError: the connection broke (the `OSError` is the cause).
            ClosedResourceError: the stream was closed, also while this call waited.
        """
        return await self._read(self._socket.recv, max_bytes)

    async def receive_into(self, buffer: Buffer) -> int:
        """Wait until the socket is readable, then read at most `len(buffer)` bytes into
        `buffer`; return how many. Cancel safety and errors as `receive`'s.
        """
        return await self._read(self._socket.recv_into, buffer)

    async def _read(self, read: Callable[[_Argument], _Read], argument: _Argument) -> _Read:
        # Nothing read (b"" or 0) is the end of the stream.
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                await self._wait_readable(self._socket)
                result = read(argument)
            except self._trio_closed_error:
                raise anyio.ClosedResourceError from None
            except BlockingIOError:  # pragma: no cover (readable, yet nothing: wait again)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if not result:
                raise anyio.EndOfStream
            return result

    def try_send(self, data: bytes) -> int:
        """Write as much of `data` as the socket takes now, without waiting; return how
        much. Any error (a full buffer, a broken connection) writes nothing and is left to
        `send`, which waits or reports it.
        """
        try:
            return self._socket.send(data)  # a closed socket raises EBADF
        except OSError:
            return 0

    async def send(self, item: bytes) -> None:
        """Write all of `item`, waiting while the socket's buffer is full. What the socket
        takes at once is written without yielding (the writer yields when it waits for
        more frames, and the handshake's request is followed by a receive).

        Not cancel-safe: a send cancelled while it waits may have written part of `item`.

        Raises:
            BrokenResourceError: the connection broke (the `OSError` is the cause).
            ClosedResourceError: the stream was closed, also while this call waited.
        """
        sent = self.try_send(item)
        if sent == len(item):
            return
        rest = memoryview(item)[sent:]
        while rest:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                await self._wait_writable(self._socket)
                rest = rest[self._socket.send(rest) :]
            except self._trio_closed_error:
                raise anyio.ClosedResourceError from None
            except BlockingIOError:  # pragma: no cover (writable, yet full: wait again)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        """Shut down the writing side of the socket.

        Raises:
            BrokenResourceError: the connection broke (the `OSError` is the cause).
            ClosedResourceError: the stream was closed.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            self._socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        """Close the socket now: a waiting receiver or sender gets `ClosedResourceError`.
        No checkpoint: the driver closes on its way out, and a pass through the scheduler
        would only delay the tasks that end next.
        """
        if not self._closed:
            self._closed = True
            self._notify_closing(self._socket)
            self._socket.close()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The socket's family, addresses and ports, and the socket, as anyio's socket
        streams report them: an IPv6 address as its host and port, and no remote address
        or port once the socket isn't connected.
        """
        sock = self._socket

        def convert(address: Any) -> Any:
            return address[:2] if sock.family == socket.AF_INET6 else address

        ip = sock.family in (socket.AF_INET, socket.AF_INET6)
        attributes: dict[Any, Callable[[], Any]] = {
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: lambda: convert(sock.getsockname()),
            SocketAttribute.raw_socket: lambda: sock,
        }
        if ip:
            attributes[SocketAttribute.local_port] = lambda: sock.getsockname()[1]
        try:
            peer = convert(sock.getpeername())
        except OSError:  # not connected (any more): no remote side to report
            return attributes
        attributes[SocketAttribute.remote_address] = lambda: peer
        if ip:
            attributes[SocketAttribute.remote_port] = lambda: peer[1]
        return attributes
