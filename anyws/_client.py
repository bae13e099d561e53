"""`open_websocket` (= `connect`) and `unix_connect`: the opening handshake under
`open_timeout` over the transport `_transport` opens (or a stream the caller has),
redirects, and the task group the connection's tasks live in. No exception group leaves:
the tasks never raise, and the user's exception is never handed to the task group.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Generator, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.abc

from ._connection import ClientConnection, PongWaiter, TaskSpawner, open_task_group
from ._exceptions import InvalidStatus, InvalidURI, SecurityError
from ._handshake import Accepted, ClientHandshake, Redirect
from ._httpx import join_base_url, open_through_client
from ._options import ConnectOptions, Options
from ._protocol import ClientProtocol
from ._transport import open_socket, open_transport, resolve_proxy
from ._types import Request
from ._url import WebSocketURI, parse_uri, resolve_redirect

if TYPE_CHECKING:
    import httpx

    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

MAX_REDIRECTS = 10  # as in `websockets` and browsers
_HANDSHAKE_READ = 2**16

__all__ = ["connect", "open_websocket", "unix_connect"]


class _WebSocketContext:
    """What `open_websocket()` returns: an async context manager that yields an open
    `ClientConnection` and closes it on exit.
    """

    def __init__(
        self,
        uri: str,
        options: Options,
        stream: anyio.abc.ByteStream | None = None,
        client: Any = None,
        client_request: Mapping[str, Any] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        given = [
            name
            for name, value in (("stream", stream), ("sock", sock), ("client", client))
            if value is not None
        ]
        if len(given) > 1:
            raise ValueError(
                f"give one of stream=, sock= or client=, not {given[0]}= and {given[1]}="
            )
        if sock is not None:
            _check_socket(sock, options)
        if client is not None:
            uri = join_base_url(client, uri)
        self._uri = uri
        self._parsed = parse_uri(uri)
        self._options = options
        self._stream = stream
        self._sock = sock
        self._given_way = stream is not None or sock is not None
        self._client = client
        self._client_request = client_request or {}
        self.http_response: Any = None
        """With `client=`, httpx's `Response` to the upgrade request."""
        if options.ssl is not None and options.ssl is not False and not self._parsed.secure:
            raise ValueError("ssl= is only valid with a wss:// URI")
        if options.server_hostname is not None and not self._parsed.secure:
            raise ValueError("server_hostname= is only valid with a wss:// URI")
        # Resolved (and checked) at the call; redirects to other hosts resolve again.
        self._proxy = None if given else resolve_proxy(options.proxy, self._parsed)
        https_proxy = isinstance(self._proxy, WebSocketURI) and self._proxy.secure
        if self._proxy is not None and not https_proxy:
            for name in ("proxy_ssl", "proxy_server_hostname"):
                if getattr(options, name) is not None:
                    raise ValueError(f"{name}= only applies to an https:// proxy")
        self._connection: ClientConnection | None = None
        self._task_group: AbstractAsyncContextManager[TaskSpawner] | None = None

    def __await__(self) -> Generator[Any, None, NoReturn]:
        raise TypeError(
            "anyws connections own a task group, so they are used as context managers: "
            "`async with anyws.connect(uri) as ws:` instead of `ws = await anyws.connect(uri)`; "
            "to reconnect after failures, use `anyws.reconnecting(uri)`"
        )

    def __aiter__(self) -> NoReturn:
        raise TypeError(
            "`async for ws in anyws.connect(uri)` isn't supported: a connection owns a task "
            "group, entered and left by one block. Reconnect with "
            "`async with anyws.reconnecting(uri) as connections: async for ws in connections:`"
        )

    async def __aenter__(self) -> ClientConnection:
        if self._connection is not None:
            raise RuntimeError("this open_websocket() context is already in use")
        options = self._options
        with anyio.move_on_after(
            float("inf") if options.open_timeout is None else options.open_timeout
        ) as scope:
            stream, accepted, request = await self._open()
        if scope.cancelled_caught:
            raise TimeoutError(
                f"timed out during the opening handshake (open_timeout={options.open_timeout}s)"
            )
        logger = options.get_logger()
        protocol: ClientProtocol[PongWaiter] = ClientProtocol(
            accepted.extensions,
            max_size=options.size_limits[0],
            max_fragment_size=options.size_limits[1],
            compression_threshold=options.compression_threshold,
            # Frames are logged at debug level, as `websockets` does; decided once, so
            # that a connection without debug logging pays nothing per frame.
            trace=logger.debug if logger.isEnabledFor(logging.DEBUG) else None,
        )
        connection = (options.create_connection or ClientConnection)(
            stream,
            protocol,
            request=request,
            response=accepted.response,
            subprotocol=accepted.subprotocol,
            limits=options.limits,
            logger=logger,
            initial_data=accepted.trailing_data,
        )
        # The connection's tasks live under this task group's cancel scope: the one scope
        # the connection owns. `__aexit__` ends them. On asyncio's own stream there are no
        # tasks (callbacks and timers do their work), hence no task group.
        spawner = None
        if connection._needs_tasks:
            self._task_group = open_task_group()
            spawner = await self._task_group.__aenter__()
        connection._start_tasks(spawner, heartbeat=options.limits.ping_interval is not None)
        self._connection = connection
        connection.logger.debug("connected to %s", self._uri)
        return connection

    async def _open(self) -> tuple[anyio.abc.ByteStream, Accepted, Request]:
        uri = self._parsed
        if self._client is not None:
            # The client's configuration (redirects included) applies to the request.
            handshake = self._handshake(uri)
            stream, accepted, self.http_response = await open_through_client(
                self._client, uri, handshake, self._client_request
            )
            return stream, accepted, handshake.request
        # A stream or socket given is the only way to the server the caller chose: a
        # redirect isn't followed over another connection (as in `websockets`), nor is a
        # second connection opened once it was used.
        if self._given_way and self._stream is None and self._sock is None:
            raise RuntimeError(
                "this open_websocket() context was given a stream or socket, which its "
                "first connection used and closed: call open_websocket() with a new one"
            )
        for _ in range(MAX_REDIRECTS + 1):
            if self._stream is not None:
                stream, self._stream = self._stream, None
            elif self._sock is not None:
                sock, self._sock = self._sock, None
                stream = await open_socket(sock, uri, self._options)
            else:
                proxy = self._proxy
                if uri is not self._parsed:
                    proxy = resolve_proxy(self._options.proxy, uri)
                stream = await open_transport(uri, self._options, proxy)
            try:
                handshake = self._handshake(uri)
                outcome = await _exchange(stream, handshake)
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
            if isinstance(outcome, Accepted):
                return stream, outcome, handshake.request
            await anyio.aclose_forcefully(stream)
            if self._given_way:
                raise InvalidStatus(outcome.response)
            target = resolve_redirect(uri, outcome.location)
            try:
                new_uri = parse_uri(target)
            except InvalidURI:
                raise InvalidStatus(outcome.response) from None
            if uri.secure and not new_uri.secure:
                raise SecurityError(f"redirect from wss:// to ws:// refused: {target}")
            self._options.get_logger().debug("redirected to %s", target)
            uri = new_uri
        raise SecurityError(f"more than {MAX_REDIRECTS} redirects")

    def _handshake(self, uri: WebSocketURI) -> ClientHandshake:
        options = self._options
        return ClientHandshake(
            uri,
            origin=options.origin,
            subprotocols=list(options.subprotocols or ()),
            extensions=list(options.extensions or ()),
            compression=options.compression,
            additional_headers=options.additional_headers,
            user_agent_header=options.user_agent_header,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection, task_group = self._connection, self._task_group
        assert connection is not None  # entered
        self._connection = None
        self._task_group = None
        if exc is None:
            await connection._close_on_exit(1000, wait=True)
        elif isinstance(exc, anyio.get_cancelled_exc_class()):
            # Going away (RFC 6455 §7.4.1); don't keep the canceller waiting for a reply.
            await connection._close_on_exit(1001, wait=False)
        else:
            await connection._close_on_exit(1011, wait=True)
        # The tasks end by themselves: the reader once the closing handshake is over or
        # close_timeout has passed (its deadline), the writer once the transport is closed.
        # The user's exception is not handed to the task group: it would wrap it in an
        # ExceptionGroup on trio. The children never raise, so nothing else can come out.
        if task_group is not None:
            await task_group.__aexit__(None, None, None)


async def _exchange(
    stream: anyio.abc.ByteStream, handshake: ClientHandshake
) -> Accepted | Redirect:
    """Send the upgrade request and read until the handshake has an outcome."""
    try:
        await stream.send(handshake.data_to_send())
        while True:
            try:
                data = await stream.receive(_HANDSHAKE_READ)
            except anyio.EndOfStream:
                outcome = handshake.receive_eof()
            else:
                outcome = handshake.receive_data(data)
            if outcome is not None:
                return outcome
    except anyio.BrokenResourceError as exc:
        _raise_transport_error(exc)


def _raise_transport_error(exc: anyio.BrokenResourceError) -> NoReturn:
    # Network failures leave as OSError (DESIGN §5); anyio's error (and the OSError it
    # wraps, if any) is the cause.
    raise ConnectionResetError("connection lost during the opening handshake") from exc


def open_websocket(
    uri: str,
    *,
    stream: anyio.abc.ByteStream | None = None,
    sock: socket.socket | None = None,
    client: httpx.AsyncClient | httpx.Client | None = None,
    **options: Unpack[ConnectOptions],
) -> _WebSocketContext:
    """Open a WebSocket connection; use the result with `async with ... as ws:`.

    The connection's reader and writer run in a task group of its own (on asyncio's own
    stream, as the transport's callbacks: no task), entered and left by the `async with`.
    Leaving the block closes the connection (1000, or 1011 if the block raised, 1001
    without waiting for the server if it was cancelled), waiting at most `close_timeout`
    for the closing handshake; then the socket is released, also when the server stopped
    reading. Works under `trio.run` and `asyncio.run` alike.

    Args:
        uri: a `ws://` or `wss://` URI; user:password in it sends HTTP Basic auth.
        stream: a connected byte stream (any anyio `ByteStream`) to run the WebSocket over
            instead of opening a connection to the URI's host; the URI still gives the
            Host header and the resource. It is closed when the block ends. Its `receive`
            must lose nothing when cancelled, as anyio's streams don't: the heartbeat's
            deadline interrupts the reader's wait. A redirect isn't followed: it raises
            `InvalidStatus` with the 3xx response. The context then opens one connection:
            entering it again raises `RuntimeError` (as with `sock`).
        sock: a connected stream socket (TCP, or Unix) to run the WebSocket over, as
            `websockets`' `sock=`: TLS goes on top for `wss://` (`ssl`, `server_hostname`
            apply), the URI gives the Host header and the resource, and no proxy is used.
            anyws owns it from the `async with` on, and closes it when the block ends. A
            redirect isn't followed: it raises `InvalidStatus` with the 3xx response.
        client: an `httpx.AsyncClient` (or `httpx.Client`) that sends the upgrade
            request: its base URL (`uri` may then be relative, and `http(s)://` means
            `ws(s)://`), headers, cookies, auth, event hooks, proxy and transport apply,
            and the WebSocket runs over the network stream it hands back. Transport
            options (`ssl`, `proxy`, `unix_socket`, ...) are then the client's. Needs
            `pip install 'anyws[httpx]'`.
        **options: the options in `ConnectOptions`, names and defaults as in `websockets`:
            additional_headers, user_agent_header, origin, subprotocols, compression
            ("deflate"), compression_threshold (None), extensions, open_timeout (10),
            close_timeout (10), ping_interval (20), ping_timeout (20), max_size (2**20),
            max_queue (32), read_limit (2**16), write_limit (2**16), logger, ssl,
            server_hostname, unix_socket, proxy (True: from the environment), proxy_ssl,
            proxy_server_hostname, local_host, happy_eyeballs_delay (0.25),
            create_connection. See `anyws.Options` for what each does.

    Returns:
        An async context manager that yields a `ClientConnection`.

    Raises:
        InvalidURI: at the call, for a malformed or non-ws(s) URI.
        ValueError, TypeError: at the call, for an invalid or unknown option (the message
            names it), or a `sock` that isn't a connected stream socket.
        OSError: on entering, when the connection fails (refused, unreachable, TLS): the
            same class on both backends, e.g. `ConnectionRefusedError`.
        TimeoutError: on entering, when the handshake takes longer than `open_timeout`.
        InvalidHandshake: on entering, when the server refuses or answers wrongly:
            `InvalidStatus` (with `.response`), `InvalidUpgrade`, `InvalidHeader`,
            `NegotiationError`, `SecurityError`, `InvalidMessage`, `ProxyError`.
        httpx.HTTPError: on entering, with `client=`, when httpx's request fails.
    """
    return _WebSocketContext(uri, Options.from_kwargs(options), stream, client, sock=sock)


connect = open_websocket


def _check_socket(sock: socket.socket, options: Options) -> None:
    """At the call: `sock=` must be a connected stream socket, and no other way to the
    server may be asked for.
    """
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
        raise TypeError(f"sock must be a connected stream socket, not {sock!r}")
    try:
        sock.getpeername()
    except OSError:
        raise ValueError(f"sock must be connected: {sock!r}") from None
    if options.unix_socket is not None:
        raise ValueError("give sock= or unix_socket=, not both")
    if options.proxy not in (None, True, False):  # a proxy URL
        raise ValueError("give sock= or proxy=, not both: the socket is the way to the server")


def unix_connect(
    path: str | os.PathLike[str],
    uri: str = "ws://localhost/",
    **options: Unpack[ConnectOptions],
) -> _WebSocketContext:
    """Connect to a WebSocket server listening on a Unix socket at `path`.

    `uri` provides the Host header and the resource; options are those of
    `open_websocket`. Raises as `open_websocket`.
    """
    options["unix_socket"] = path
    return open_websocket(uri, **options)
