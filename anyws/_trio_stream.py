"""A plain TCP or Unix socket on trio, read and written through the socket itself.

anyio's trio socket stream goes through trio's socket layer: every `receive()` tries the
socket, and after a successful read yields to the scheduler once more (trio's
`cancel_shielded_checkpoint`), so a message costs the reader two scheduler passes; and a
`send()` is always a checkpoint too. The driver's reader needs one pass per read: it waits
until the socket is readable, then reads what is there. Waiting is the checkpoint, so the
reader still yields once per read, as trio requires of a loop.

Besides the `ByteStream` interface, `try_send` lets the driver write a frame from the task
that queued it when the writer task is idle (see `_connection._kick_writer`): a write the
socket takes whole needs no task switch. The semantics are anyio's: `EndOfStream` at EOF,
`BrokenResourceError` (caused by the `OSError`) when the connection broke,
`ClosedResourceError` after `aclose()`, also for a waiting receiver. Only a stream whose
bytes are the socket's own is wrapped: never TLS, whose bytes the socket doesn't hold.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute


class TrioSocketStream(anyio.abc.ByteStream):
    """anyio's socket stream on trio, with its receives and immediate writes done on the
    socket directly. Writes that must wait go through the wrapped stream.
    """

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        import trio  # here, not at the top: `_connection` imports this module on asyncio too

        self._stream = stream
        self._socket: socket.socket = stream.extra(SocketAttribute.raw_socket)
        self._closed = False
        self._wait_readable = trio.lowlevel.wait_readable
        self._trio_closed_error = trio.ClosedResourceError

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Wait until the socket is readable, then read at most `max_bytes`.

        Cancel-safe: a receive cancelled while it waits has read nothing.

        Raises:
            EndOfStream: the peer closed its side.
            BrokenResourceError: the connection broke (the `OSError` is the cause).
            ClosedResourceError: the stream was closed, also while this call waited.
        """
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                await self._wait_readable(self._socket)
                data = self._socket.recv(max_bytes)
            except self._trio_closed_error:
                raise anyio.ClosedResourceError from None
            except BlockingIOError:  # pragma: no cover (readable, yet nothing: wait again)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if not data:
                raise anyio.EndOfStream
            return data

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

        Raises:
            BrokenResourceError: the connection broke.
            ClosedResourceError: the stream was closed.
        """
        sent = self.try_send(item)
        if sent < len(item):
            await self._stream.send(item[sent:])

    async def send_eof(self) -> None:
        """Shut down the writing side of the socket."""
        await self._stream.send_eof()

    async def aclose(self) -> None:
        """Close the socket: a waiting receiver gets `ClosedResourceError`."""
        self._closed = True
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The wrapped stream's (addresses, the socket)."""
        return self._stream.extra_attributes
