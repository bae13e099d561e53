"""The API of `httpx-ws`, on anyws: `from anyws.compat.httpx_ws import aconnect_ws`.

Code written for httpx-ws runs unchanged but for the import: the same functions, sessions,
methods, parameter names, defaults, constants and exceptions. Underneath it is an anyws
`ClientConnection`, with its lifecycle, cancellation and backpressure rules; each exception
is also the matching anyws exception, so code mixing both APIs catches either.

Where httpx-ws behaves in a way that is a bug, anyws keeps its fix:

- leaving the `async with` block never raises an `ExceptionGroup` the code didn't cause
  (the session's tasks live in the connection's own task group);
- `close()` from another thread wakes a receive blocked in the sync session, which then
  raises `WebSocketDisconnect`;
- a ping whose pong never comes doesn't leave `wait()` hanging once the connection closed:
  it raises the session's exception instead.

With `client=`, the upgrade request goes through that httpx client and `response` is
httpx's `Response`; `WebSocketUpgradeError.response` is anyws's `Response` (status, headers,
body), whichever sent the request.
"""

from __future__ import annotations

import contextlib
import json
import queue
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)

from .._client import _WebSocketContext
from .._connection import ClientConnection, PongWaiter
from .._exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    InvalidHandshake,
    InvalidMessageType,
    InvalidStatus,
)
from .._options import Options
from .._types import Close, Response
from .._url import websocket_url

__all__ = [
    "DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS",
    "DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS",
    "DEFAULT_MAX_MESSAGE_SIZE_BYTES",
    "DEFAULT_QUEUE_SIZE",
    "AsyncWebSocketSession",
    "HTTPXWSException",
    "JSONMode",
    "WebSocketDisconnect",
    "WebSocketInvalidTypeReceived",
    "WebSocketNetworkError",
    "WebSocketSession",
    "WebSocketUpgradeError",
    "aconnect_ws",
    "connect_ws",
]

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

JSONMode = Literal["text", "binary"]
"""How `send_json`/`receive_json` carry JSON: in a text message, or UTF-8 in a binary one."""

DEFAULT_MAX_MESSAGE_SIZE_BYTES = 65_536
DEFAULT_QUEUE_SIZE = 512
DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS = 20.0
DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS = 20.0


# -- exceptions -------------------------------------------------------------------------


class HTTPXWSException(Exception):
    """Base class of the exceptions of this module."""


class WebSocketDisconnect(HTTPXWSException, ConnectionClosed):
    """The WebSocket closed: `code` and `reason` are those of the server's close frame (or
    of ours, if the server sent none after we closed). Also an `anyws.ConnectionClosed`.
    """

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        # `rcvd` and `sent` say what each side sent, as for any ConnectionClosed.
        ConnectionClosed.__init__(self, Close(code, reason or ""), None)
        self._code = code
        self._reason = reason or ""

    @property
    def code(self) -> int:
        """The close code."""
        return self._code

    @property
    def reason(self) -> str:
        """The close reason ("" if none)."""
        return self._reason


class WebSocketInvalidTypeReceived(HTTPXWSException, InvalidMessageType):
    """A message of the other type than asked for arrived; it is `event`. Also an
    `anyws.InvalidMessageType`.
    """

    def __init__(self, event: Event) -> None:
        message: str | bytes = b""
        expected = "a message"
        if isinstance(event, TextMessage):
            expected, message = "binary", event.data
        elif isinstance(event, BytesMessage):
            expected, message = "text", bytes(event.data)
        InvalidMessageType.__init__(self, expected, message)
        self.event = event


class WebSocketNetworkError(HTTPXWSException, ConnectionClosedError):
    """The connection failed without a close frame from the server (the network, or no
    answer to the keepalive ping). Also an `anyws.ConnectionClosedError`; `__cause__`
    says what happened.
    """

    def __init__(self) -> None:
        ConnectionClosedError.__init__(self, None, None)


class WebSocketUpgradeError(HTTPXWSException, InvalidHandshake):
    """The server didn't upgrade the connection to a WebSocket; `response` is its answer
    (status, headers, body). Also an `anyws.InvalidHandshake`, and an
    `anyws.InvalidStatus` when the status wasn't 101.
    """

    def __init__(self, response: Response | None) -> None:
        InvalidHandshake.__init__(self, response)
        self.response = response


class _UpgradeRefused(WebSocketUpgradeError, InvalidStatus):  # type: ignore[misc]
    # (`response` is never None here, as InvalidStatus has it.)
    def __init__(self, response: Response) -> None:
        WebSocketUpgradeError.__init__(self, response)


class _ReceiveTimeout(queue.Empty, TimeoutError):
    """The sync session's timeout: `queue.Empty` as httpx-ws raises, and `TimeoutError`."""


def _raise_closed(closed: ConnectionClosed) -> NoReturn:
    """Raise the httpx-ws exception for how the connection closed: `WebSocketDisconnect`
    for a close frame (the server's; ours if the server sent none after we closed),
    `WebSocketNetworkError` for a failure, with anyws's cause as its `__cause__`.
    """
    error: WebSocketDisconnect | WebSocketNetworkError
    if closed.rcvd is not None:
        error = WebSocketDisconnect(closed.rcvd.code, closed.rcvd.reason)
    elif closed.sent is not None and closed.__cause__ is None:
        error = WebSocketDisconnect(closed.sent.code, closed.sent.reason)
    else:
        error = WebSocketNetworkError()
    error.rcvd, error.sent = closed.rcvd, closed.sent
    error.rcvd_then_sent = closed.rcvd_then_sent
    raise error from closed.__cause__ or closed


# -- sessions ---------------------------------------------------------------------------


class AsyncPongEvent:
    """What `AsyncWebSocketSession.ping()` returns: `await event.wait()` until the pong."""

    def __init__(self, waiter: PongWaiter) -> None:
        self._waiter = waiter

    def is_set(self) -> bool:
        """True once the pong arrived (or the connection closed)."""
        return self._waiter.done()

    async def wait(self) -> None:
        """Wait for the pong. Cancel-safe.

        Raises:
            WebSocketDisconnect, WebSocketNetworkError: the connection closed first.
        """
        try:
            await self._waiter.wait()
        except ConnectionClosed as closed:
            _raise_closed(closed)


class AsyncWebSocketSession:
    """An open WebSocket session, as httpx-ws's `aconnect_ws` yields it.

    Attributes:
        subprotocol: the subprotocol the server accepted, or None.
        response: the server's handshake response (status 101, headers).
        connection: the anyws `ClientConnection` underneath, for anything more.
    """

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.subprotocol: str | None = connection.subprotocol
        self.response: Response | None = connection.response
        self._fragments: list[str | bytes] = []  # a message sent as events, in parts

    async def ping(self, payload: bytes = b"") -> AsyncPongEvent:
        """Send a ping (with a random payload if `payload` is empty); return an event set
        when its pong arrives.

        Raises:
            WebSocketDisconnect, WebSocketNetworkError: the connection is closed.
        """
        try:
            waiter = await self.connection.ping(payload or None)
        except ConnectionClosed as closed:
            _raise_closed(closed)
        return AsyncPongEvent(waiter)

    async def send(self, event: Event) -> None:
        """Send a wsproto event: `TextMessage`, `BytesMessage` (with `message_finished=False`
        for all but the last part of a fragmented message), `Ping`, `Pong` or
        `CloseConnection`. Cancel-safe, as `anyws.ClientConnection.send`.

        Raises:
            WebSocketDisconnect, WebSocketNetworkError: the connection is closed.
            TypeError: another kind of event, or parts of a message mixing text and bytes.
        """
        try:
            if isinstance(event, (TextMessage, BytesMessage)):
                data: str | bytes = (
                    event.data if isinstance(event, TextMessage) else bytes(event.data)
                )
                if not event.message_finished:
                    # Sent with the last part: the frames are the same (RFC 6455 §5.4).
                    self._fragments.append(data)
                    return
                if self._fragments:
                    parts, self._fragments = [*self._fragments, data], []
                    await self.connection.send(parts)
                else:
                    await self.connection.send(data)
            elif isinstance(event, Ping):
                await self.connection.ping(bytes(event.payload) or None)
            elif isinstance(event, Pong):
                await self.connection.pong(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                await self.close(event.code, event.reason)
            else:
                raise TypeError(f"can't send a {type(event).__name__} event")
        except ConnectionClosed as closed:
            _raise_closed(closed)

    async def send_text(self, data: str) -> None:
        """Send a text message. Raises as `send`."""
        await self.send(TextMessage(data=data))

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message. Raises as `send`."""
        await self.send(BytesMessage(data=data))

    async def send_json(self, data: Any, mode: JSONMode = "text") -> None:
        """Send `data` as JSON (`json.dumps`), in a text or (UTF-8) binary message.

        Raises:
            ValueError: `mode` is neither "text" nor "binary".
            WebSocketDisconnect, WebSocketNetworkError: as `send`.
        """
        text = json.dumps(data)
        if mode == "text":
            await self.send_text(text)
        elif mode == "binary":
            await self.send_bytes(text.encode("utf-8"))
        else:
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")

    async def receive(self, timeout: float | None = None) -> TextMessage | BytesMessage:
        """Receive the next message, as a wsproto `TextMessage` or `BytesMessage`.
        Cancel-safe: a cancelled call (or a timeout) loses no message.

        Raises:
            TimeoutError: no message within `timeout` seconds.
            WebSocketDisconnect: the server closed the connection (and every message
                before its close frame was received).
            WebSocketNetworkError: the connection failed.
        """
        try:
            message = await self.connection.recv(timeout)
        except ConnectionClosed as closed:
            _raise_closed(closed)
        if isinstance(message, str):
            return TextMessage(data=message)
        return BytesMessage(data=message)

    async def receive_text(self, timeout: float | None = None) -> str:
        """Receive a text message.

        Raises:
            WebSocketInvalidTypeReceived: the message was binary (it is the exception's
                `event`).
            TimeoutError, WebSocketDisconnect, WebSocketNetworkError: as `receive`.
        """
        event = await self.receive(timeout)
        if isinstance(event, TextMessage):
            return event.data
        raise WebSocketInvalidTypeReceived(event)

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """Receive a binary message; raises as `receive_text`."""
        event = await self.receive(timeout)
        if isinstance(event, BytesMessage):
            return bytes(event.data)
        raise WebSocketInvalidTypeReceived(event)

    async def receive_json(self, timeout: float | None = None, mode: JSONMode = "text") -> Any:
        """Receive a message and decode it as JSON (`json.loads`).

        Raises:
            ValueError: `mode` is neither "text" nor "binary".
            json.JSONDecodeError: the message isn't JSON.
            WebSocketInvalidTypeReceived: the message has the other type.
            TimeoutError, WebSocketDisconnect, WebSocketNetworkError: as `receive`.
        """
        if mode == "text":
            return json.loads(await self.receive_text(timeout))
        if mode == "binary":
            return json.loads(await self.receive_bytes(timeout))
        raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the session (the closing handshake, bounded by 10 s); called when the
        block ends. Idempotent.

        Raises:
            anyws.ProtocolError: the code may not be sent or the reason is too long.
        """
        await self.connection.close(code, reason)


class PongEvent:
    """What `WebSocketSession.ping()` returns: `event.wait(timeout=None)` blocks until the
    pong (as a `threading.Event`).
    """

    def __init__(self, portal: BlockingPortal, event: AsyncPongEvent) -> None:
        self._portal = portal
        self._event = event

    def is_set(self) -> bool:
        """True once the pong arrived (or the connection closed)."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the pong arrives; return False if `timeout` seconds passed first.

        Raises:
            WebSocketDisconnect, WebSocketNetworkError: the connection closed first.
        """

        async def wait() -> bool:
            with anyio.move_on_after(timeout):
                await self._event.wait()
                return True
            return False

        return self._portal.call(wait)


class WebSocketSession:
    """An open WebSocket session for blocking code, as httpx-ws's `connect_ws` yields it.
    An event loop in a background thread runs the connection; a `timeout` that expires
    raises `queue.Empty` (which is also a `TimeoutError` here).

    Attributes:
        subprotocol: the subprotocol the server accepted, or None.
        response: the server's handshake response.
    """

    def __init__(self, portal: BlockingPortal, session: AsyncWebSocketSession) -> None:
        self._portal = portal
        self._session = session
        self.subprotocol = session.subprotocol
        self.response = session.response

    def ping(self, payload: bytes = b"") -> PongEvent:
        """Send a ping; return an event whose `wait()` blocks until the pong."""
        return PongEvent(self._portal, self._portal.call(self._session.ping, payload))

    def send(self, event: Event) -> None:
        """Send a wsproto event; as `AsyncWebSocketSession.send`."""
        self._portal.call(self._session.send, event)

    def send_text(self, data: str) -> None:
        """Send a text message."""
        self._portal.call(self._session.send_text, data)

    def send_bytes(self, data: bytes) -> None:
        """Send a binary message."""
        self._portal.call(self._session.send_bytes, data)

    def send_json(self, data: Any, mode: JSONMode = "text") -> None:
        """Send `data` as JSON."""
        self._portal.call(self._session.send_json, data, mode)

    def receive(self, timeout: float | None = None) -> TextMessage | BytesMessage:
        """Receive the next message as a wsproto event.

        Raises:
            queue.Empty: no message within `timeout` seconds (also a `TimeoutError`).
            WebSocketDisconnect, WebSocketNetworkError: as the async session.
        """
        return self._call_receiving(self._session.receive, timeout)

    def receive_text(self, timeout: float | None = None) -> str:
        """Receive a text message; raises as `receive`, and
        `WebSocketInvalidTypeReceived`.
        """
        return self._call_receiving(self._session.receive_text, timeout)

    def receive_bytes(self, timeout: float | None = None) -> bytes:
        """Receive a binary message; raises as `receive_text`."""
        return self._call_receiving(self._session.receive_bytes, timeout)

    def receive_json(self, timeout: float | None = None, mode: JSONMode = "text") -> Any:
        """Receive a JSON message; raises as `receive_text`."""
        return self._call_receiving(self._session.receive_json, timeout, mode)

    def _call_receiving(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return self._portal.call(method, *args)
        except TimeoutError as exc:
            raise _ReceiveTimeout() from exc

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the session; safe to call from another thread (a blocked receive then
        raises `WebSocketDisconnect`).
        """
        self._portal.call(self._session.close, code, reason)


# -- connecting -------------------------------------------------------------------------


# What httpx's `stream()` takes besides the method, URL and headers.
_CLIENT_REQUEST_ARGUMENTS = frozenset(
    {"params", "cookies", "auth", "timeout", "follow_redirects", "extensions"}
)


@asynccontextmanager
async def aconnect_ws(
    url: str,
    client: httpx.AsyncClient | httpx.Client | None = None,
    *,
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    subprotocols: list[str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[AsyncWebSocketSession]:
    """Open a WebSocket session, closed when the `async with` block ends.

    `async with aconnect_ws("http://host/ws") as ws: ...`

    Args:
        url: `ws://`, `wss://`, `http://` or `https://` (the last two mean the first two);
            with a client, also relative to its `base_url`.
        client: an `httpx.AsyncClient` to send the upgrade request with (its headers,
            cookies, auth, event hooks, proxy and transport apply; needs the `httpx`
            extra); None: anyws connects by itself.
        max_message_size_bytes: the largest message accepted (64 KiB).
        queue_size: messages buffered for the application before reading pauses (512).
        keepalive_ping_interval_seconds: seconds between keepalive pings; None: none (20).
        keepalive_ping_timeout_seconds: seconds to wait for their pong before the
            connection fails with `WebSocketNetworkError` (20).
        subprotocols: subprotocols to offer.
        **kwargs: arguments of httpx's `stream()` for the upgrade request: `headers`,
            `params`, and with httpx installed `cookies`, `auth`, `timeout`,
            `follow_redirects`, `extensions` (without a client, a temporary
            `httpx.AsyncClient` then sends the request).

    Raises:
        WebSocketUpgradeError: the server didn't upgrade (e.g. answered 403).
        TypeError: an argument httpx's `stream()` doesn't take, or one that needs httpx
            when it isn't installed.
        OSError, TimeoutError, httpx.HTTPError: connecting failed.
    """
    headers: Mapping[str, str] | None = kwargs.pop("headers", None)
    unknown = set(kwargs) - _CLIENT_REQUEST_ARGUMENTS
    if unknown:
        raise TypeError(f"unexpected argument(s): {', '.join(sorted(unknown))}")
    async with contextlib.AsyncExitStack() as stack:
        if client is None and set(kwargs) - {"params"}:
            try:
                import httpx
            except ImportError:
                raise TypeError(
                    f"{', '.join(sorted(set(kwargs) - {'params'}))} need(s) httpx: "
                    "pip install 'anyws[httpx]'"
                ) from None
            client = await stack.enter_async_context(httpx.AsyncClient())
        if client is None:
            url = websocket_url(url, kwargs.get("params"))
        context = _WebSocketContext(
            url,
            Options(
                additional_headers=headers,
                max_size=max_message_size_bytes,
                max_queue=queue_size,
                ping_interval=keepalive_ping_interval_seconds,
                ping_timeout=keepalive_ping_timeout_seconds,
                subprotocols=subprotocols,
            ),
            client=client,
            client_request=kwargs,
        )
        entered = False
        try:
            async with context as connection:
                entered = True
                session = AsyncWebSocketSession(connection)
                if context.http_response is not None:
                    session.response = context.http_response
                yield session
        except InvalidHandshake as failed:
            if entered:
                raise  # the block's own: it leaves unchanged
            if isinstance(failed, InvalidStatus):
                raise _UpgradeRefused(failed.response) from failed
            raise WebSocketUpgradeError(getattr(failed, "response", None)) from failed


@contextmanager
def connect_ws(
    url: str,
    client: httpx.Client | None = None,
    *,
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    subprotocols: list[str] | None = None,
    backend: Literal["asyncio", "trio"] = "asyncio",
    **kwargs: Any,
) -> Iterator[WebSocketSession]:
    """Open a WebSocket session for blocking code, closed when the `with` block ends.

    `with connect_ws("http://host/ws") as ws: ...`; the arguments and what raises as
    `aconnect_ws`. `backend` (an anyws addition) picks the event loop that runs the
    connection in a background thread: "asyncio" or "trio".
    """
    with start_blocking_portal(backend) as portal:
        context = aconnect_ws(
            url,
            client,
            max_message_size_bytes=max_message_size_bytes,
            queue_size=queue_size,
            keepalive_ping_interval_seconds=keepalive_ping_interval_seconds,
            keepalive_ping_timeout_seconds=keepalive_ping_timeout_seconds,
            subprotocols=subprotocols,
            **kwargs,
        )
        with portal.wrap_async_context_manager(context) as session:
            yield WebSocketSession(portal, session)
