"""A small WebSocket server on anyio + wsproto: the local peer of the demos and of the
test suite. It runs under trio and asyncio alike and listens on 127.0.0.1 only.

    python examples/echo_server.py 8765       # echo server until Ctrl+C

`serve(handler)` runs any handler; `echo` sends every message back.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate


@dataclass
class ServerConnection:
    """One accepted connection, as a handler sees it."""

    stream: anyio.abc.ByteStream
    ws: WSConnection
    request: Request
    close_code: int | None = None
    close_reason: str = ""
    _pending: list[str | bytes] = field(default_factory=list)
    _text: list[str] = field(default_factory=list)
    _binary: list[bytes] = field(default_factory=list)

    @property
    def path(self) -> str:
        """The request target."""
        return self.request.target

    async def recv(self) -> str | bytes | None:
        """Return the next message, or None once the client closed (after replying)."""
        while not self._pending:
            if self.close_code is not None:
                return None
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.close_code = 1006
                return None
            self.ws.receive_data(data)
            await self._process()
        return self._pending.pop(0)

    async def _process(self) -> None:
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self._pending.append("".join(self._text))
                    self._text.clear()
            elif isinstance(event, BytesMessage):
                self._binary.append(bytes(event.data))
                if event.message_finished:
                    self._pending.append(b"".join(self._binary))
                    self._binary.clear()
            elif isinstance(event, Ping):
                if self.ws.state is ConnectionState.OPEN:  # no pong after our close frame
                    await self.stream.send(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code, self.close_reason = event.code, event.reason or ""
                if self.ws.state.name == "REMOTE_CLOSING":
                    await self.stream.send(self.ws.send(event.response()))
                # RFC 6455 §7.1.1: the server closes the TCP connection first.
                await self.stream.aclose()

    async def send(self, message: str | bytes) -> None:
        """Send one message."""
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        await self.stream.send(self.ws.send(event))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, wait for the client's, then close TCP. Does nothing if the
        client's close frame came first (it was answered then)."""
        if self.close_code is not None:
            return
        await self.stream.send(self.ws.send(CloseConnection(code=code, reason=reason)))
        while await self.recv() is not None:
            pass
        await self.stream.aclose()


Handler = Callable[[ServerConnection], Awaitable[None]]


async def echo(connection: ServerConnection) -> None:
    """Send every message back until the client closes."""
    while (message := await connection.recv()) is not None:
        await connection.send(message)


async def _accept(stream: anyio.abc.ByteStream, handler: Handler, compression: bool) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    async with stream:
        while True:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            ws.receive_data(data)
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
            if request is not None:
                break
        subprotocol = request.subprotocols[0] if request.subprotocols else None
        extensions: list[Extension] = [PerMessageDeflate()] if compression else []
        await stream.send(ws.send(AcceptConnection(subprotocol=subprotocol, extensions=extensions)))
        connection = ServerConnection(stream, ws, request)
        # A client that goes away mid-conversation is not the server's error.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await connection._process()  # frames that came with the handshake
            await handler(connection)


@asynccontextmanager
async def serve(
    handler: Handler = echo, *, port: int = 0, compression: bool = True, path: str | None = None
) -> AsyncIterator[int]:
    """Serve `handler` on 127.0.0.1 (or on the Unix socket `path`); yield the port (0 for
    a Unix socket). Every connection is closed on exit."""
    listener: anyio.abc.Listener[Any]
    if path is None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        bound = listener.extra(anyio.abc.SocketAttribute.local_port)
    else:
        listener = await anyio.create_unix_listener(path)
        bound = 0
    async with listener, anyio.create_task_group() as tg:

        async def accept(stream: anyio.abc.ByteStream) -> None:
            await _accept(stream, handler, compression)

        tg.start_soon(listener.serve, accept)
        yield bound
        tg.cancel_scope.cancel()


async def main(port: int) -> None:
    """Run the echo server until interrupted."""
    async with serve(port=port) as bound:
        print(f"echo server on ws://127.0.0.1:{bound}/", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
