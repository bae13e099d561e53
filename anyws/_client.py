"""`open_websocket` (= `connect`) and `unix_connect`: option checking, the transport (TCP
with happy eyeballs, TLS, Unix socket, HTTP proxy), the opening handshake under
`open_timeout`, redirects, and the task group the connection's tasks live in. This is the
one place where exception groups are unwrapped.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl as ssl_module
import urllib.parse
import urllib.request
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any, NoReturn

import anyio
import anyio.abc
import h11
import sniffio
from anyio.streams.tls import TLSStream
from wsproto.extensions import Extension

from . import _asyncio_stream as asyncio_stream
from ._connection import ClientConnection, Limits
from ._exceptions import (
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    ProxyError,
    SecurityError,
)
from ._handshake import DEFAULT_USER_AGENT, Accepted, ClientHandshake, Redirect, decode_headers
from ._protocol import ClientProtocol
from ._types import HeadersLike, Request, Response
from ._url import WebSocketURI, parse_uri, resolve_redirect

MAX_REDIRECTS = 10  # as in `websockets` and browsers
_HANDSHAKE_READ = 2**16

__all__ = ["connect", "open_websocket", "process_exception", "unix_connect"]


def _check_timeout(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, not {value!r}")
    return float(value)


def _check_size(name: str, value: object, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive int{extra}, not {value!r}")
    return value


def _check_limit_pair(
    name: str, value: object, *, allow_none: bool
) -> tuple[int | None, int | None]:
    """`max_queue` / `write_limit` take a high-water mark, or (high, low) as in `websockets`;
    the low-water mark defaults to a quarter of the high one.
    """
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a (high, low) pair, not {value!r}")
        high = _check_size(name, value[0], allow_none=allow_none)
        low = value[1]
        if low is None:
            low = None if high is None else high // 4
        elif (
            isinstance(low, bool)
            or not isinstance(low, int)
            or low < 0
            or (high is not None and low > high)
        ):
            raise ValueError(f"{name}: low-water mark must be an int in 0..high, not {low!r}")
        return high, low
    high = _check_size(name, value, allow_none=allow_none)
    return high, None if high is None else high // 4


def _resolve_proxy(proxy: str | bool | None, uri: WebSocketURI) -> WebSocketURI | None:
    """Return the proxy to go through, or None. `True` reads the environment like
    `urllib.request` (HTTPS_PROXY for wss, HTTP_PROXY for ws, NO_PROXY honoured).
    """
    if proxy is None or proxy is False:
        return None
    if proxy is True:
        # Reading every proxy variable costs more than a whole handshake; most machines
        # have none, which a scan of the names tells.
        if not any(name[-6:].lower() == "_proxy" for name in os.environ):
            return None
        proxies = urllib.request.getproxies()
        url = proxies.get("https" if uri.secure else "http") or proxies.get("all")
        if url is None or urllib.request.proxy_bypass(uri.host):
            return None
        proxy = url
    parsed = urllib.parse.urlsplit(proxy)
    if parsed.scheme not in ("http", "https"):
        raise ProxyError(
            f"unsupported proxy {proxy!r}: anyws supports http:// and https:// (CONNECT) proxies"
        )
    try:
        port = parsed.port
    except ValueError as exc:
        raise ProxyError(f"invalid proxy URL {proxy!r}: {exc}") from None
    if not parsed.hostname:
        raise ProxyError(f"invalid proxy URL {proxy!r}: no host")
    user_info = None
    if parsed.username is not None:
        user_info = (
            urllib.parse.unquote(parsed.username),
            urllib.parse.unquote(parsed.password or ""),
        )
    secure = parsed.scheme == "https"
    return WebSocketURI(
        secure=secure,
        host=parsed.hostname,
        port=port or (443 if secure else 80),
        user_info=user_info,
    )


class _Options:
    """Every option of `open_websocket`, checked once at the call."""

    def __init__(
        self,
        *,
        additional_headers: HeadersLike | None,
        user_agent_header: str | None,
        origin: str | None,
        subprotocols: Sequence[str] | None,
        compression: str | None,
        extensions: Sequence[Extension] | None,
        open_timeout: float | None,
        close_timeout: float | None,
        ping_interval: float | None,
        ping_timeout: float | None,
        max_size: int | None,
        max_queue: int | tuple[int | None, int | None] | None,
        read_limit: int,
        write_limit: int | tuple[int, int | None],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | str | None,
        ssl: ssl_module.SSLContext | bool | None,
        server_hostname: str | None,
        unix_socket: str | os.PathLike[str] | None,
        proxy: str | bool | None,
        proxy_ssl: ssl_module.SSLContext | None,
    ) -> None:
        if compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
        if isinstance(subprotocols, str) or not all(
            isinstance(sub, str) and sub for sub in subprotocols or ()
        ):
            raise TypeError("subprotocols must be a sequence of non-empty str")
        if not all(isinstance(ext, Extension) for ext in extensions or ()):
            raise TypeError("extensions must be a sequence of wsproto.extensions.Extension")
        if user_agent_header is not None and not isinstance(user_agent_header, str):
            raise TypeError("user_agent_header must be a str or None")
        if origin is not None and not isinstance(origin, str):
            raise TypeError("origin must be a str or None")
        if ssl is not None and not isinstance(ssl, (bool, ssl_module.SSLContext)):
            raise TypeError("ssl must be an ssl.SSLContext, True, or None")
        if proxy_ssl is not None and not isinstance(proxy_ssl, ssl_module.SSLContext):
            raise TypeError("proxy_ssl must be an ssl.SSLContext or None")
        self.additional_headers = additional_headers
        self.user_agent_header = user_agent_header
        self.origin = origin
        self.subprotocols = list(subprotocols or ())
        self.compression = compression
        self.extensions = list(extensions or ())
        self.open_timeout = _check_timeout("open_timeout", open_timeout)
        self.max_size = _check_size("max_size", max_size, allow_none=True)
        max_queue_high, max_queue_low = _check_limit_pair("max_queue", max_queue, allow_none=True)
        write_high, write_low = _check_limit_pair("write_limit", write_limit, allow_none=False)
        assert write_high is not None
        assert write_low is not None
        self.limits = Limits(
            max_queue_high=max_queue_high,
            max_queue_low=max_queue_low,
            read_limit=_check_size("read_limit", read_limit, allow_none=False) or 0,
            write_limit_high=write_high,
            write_limit_low=write_low,
            close_timeout=_check_timeout("close_timeout", close_timeout),
            ping_interval=_check_timeout("ping_interval", ping_interval),
            ping_timeout=_check_timeout("ping_timeout", ping_timeout),
        )
        if self.limits.ping_interval == 0:
            raise ValueError("ping_interval must be > 0 or None")
        if logger is None or isinstance(logger, str):
            logger = logging.getLogger(logger or "anyws.client")
        self.logger = logger
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.unix_socket = None if unix_socket is None else os.fspath(unix_socket)
        self.proxy = proxy
        self.proxy_ssl = proxy_ssl

    def ssl_context(self, uri: WebSocketURI) -> ssl_module.SSLContext | None:
        if not uri.secure:
            return None
        if isinstance(self.ssl, ssl_module.SSLContext):
            return self.ssl
        return ssl_module.create_default_context()


class _WebSocketContext:
    """What `open_websocket()` returns: an async context manager that yields an open
    `ClientConnection` and closes it on exit.
    """

    def __init__(self, uri: str, options: _Options) -> None:
        self._uri = uri
        self._parsed = parse_uri(uri)
        self._options = options
        if options.ssl is not None and options.ssl is not False and not self._parsed.secure:
            raise ValueError("ssl= is only valid with a wss:// URI")
        if options.server_hostname is not None and not self._parsed.secure:
            raise ValueError("server_hostname= is only valid with a wss:// URI")
        # Resolved (and checked) at the call; redirects to other hosts resolve again.
        self._proxy = _resolve_proxy(options.proxy, self._parsed)
        self._connection: ClientConnection | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

    def __await__(self) -> Generator[Any, None, NoReturn]:
        raise TypeError(
            "anyws connections own a task group, so they are used as context managers: "
            "`async with anyws.connect(uri) as ws:` instead of `ws = await anyws.connect(uri)`"
        )

    async def __aenter__(self) -> ClientConnection:
        if self._task_group is not None:
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
        protocol = ClientProtocol(accepted.extensions, max_size=options.max_size)
        connection = ClientConnection(
            stream,
            protocol,
            request=request,
            response=accepted.response,
            subprotocol=accepted.subprotocol,
            limits=options.limits,
            logger=options.logger,
            initial_data=accepted.trailing_data,
        )
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        connection._start_tasks(
            self._task_group, heartbeat=options.limits.ping_interval is not None
        )
        self._connection = connection
        options.logger.debug("connected to %s", self._uri)
        return connection

    async def _open(self) -> tuple[anyio.abc.ByteStream, Accepted, Request]:
        uri = self._parsed
        for _ in range(MAX_REDIRECTS + 1):
            stream = await self._open_transport(uri)
            try:
                handshake = self._handshake(uri)
                outcome = await _exchange(stream, handshake)
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
            if isinstance(outcome, Accepted):
                return stream, outcome, handshake.request
            await anyio.aclose_forcefully(stream)
            target = resolve_redirect(uri, outcome.location)
            try:
                new_uri = parse_uri(target)
            except InvalidURI:
                raise InvalidStatus(outcome.response) from None
            if uri.secure and not new_uri.secure:
                raise SecurityError(f"redirect from wss:// to ws:// refused: {target}")
            self._options.logger.debug("redirected to %s", target)
            uri = new_uri
        raise SecurityError(f"more than {MAX_REDIRECTS} redirects")

    def _handshake(self, uri: WebSocketURI) -> ClientHandshake:
        options = self._options
        return ClientHandshake(
            uri,
            origin=options.origin,
            subprotocols=options.subprotocols,
            extensions=options.extensions,
            compression=options.compression,
            additional_headers=options.additional_headers,
            user_agent_header=options.user_agent_header,
        )

    async def _open_transport(self, uri: WebSocketURI) -> anyio.abc.ByteStream:
        options = self._options
        context = options.ssl_context(uri)
        hostname = options.server_hostname or uri.host
        proxy = None
        if options.unix_socket is None:
            proxy = self._proxy if uri is self._parsed else _resolve_proxy(options.proxy, uri)
        if proxy is None and sniffio.current_async_library() == "asyncio":
            return await asyncio_stream.connect(
                host=uri.host,
                port=uri.port,
                path=options.unix_socket,
                ssl_context=context,
                server_hostname=hostname if context is not None else None,
                read_buffer_limit=options.limits.read_limit,
            )
        stream: anyio.abc.ByteStream
        if options.unix_socket is not None:
            stream = await anyio.connect_unix(options.unix_socket)
        elif proxy is None and context is None:
            return await anyio.connect_tcp(uri.host, uri.port)
        elif proxy is None:
            # anyio does TLS when any TLS argument is given, so only here.
            return await anyio.connect_tcp(
                uri.host,
                uri.port,
                ssl_context=context,
                tls_hostname=hostname,
                tls_standard_compatible=False,
            )
        else:
            stream = await _open_tunnel(proxy, uri, options.proxy_ssl)
        if context is None:
            return stream
        try:
            return await TLSStream.wrap(
                stream, hostname=hostname, ssl_context=context, standard_compatible=False
            )
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection, task_group = self._connection, self._task_group
        assert connection is not None
        assert task_group is not None
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        # Closing is shielded from the cancellation that may be ending the block, and
        # bounded by close_timeout instead.
        with anyio.CancelScope(shield=True):
            if exc is None:
                await connection._shutdown(1000, "", wait=True)
            elif cancelled:
                # Going away (RFC 6455 §7.4.1); don't keep the canceller waiting for a reply.
                await connection._shutdown(1001, "", wait=False)
            else:
                await connection._shutdown(1011, "", wait=True)
            connection._stop_tasks()
        # The user's exception is not handed to the task group: it would wrap it in an
        # ExceptionGroup on trio. The children never raise, so nothing else can come out.
        await task_group.__aexit__(None, None, None)
        self._connection = None
        self._task_group = None


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


async def _open_tunnel(
    proxy: WebSocketURI, uri: WebSocketURI, proxy_ssl: ssl_module.SSLContext | None
) -> anyio.abc.ByteStream:
    """Connect to an HTTP proxy and open a tunnel to the server with CONNECT (RFC 9110 §9.3.6)."""
    try:
        stream: anyio.abc.ByteStream = await anyio.connect_tcp(proxy.host, proxy.port)
    except OSError as exc:
        raise ProxyError(
            f"failed to connect to the proxy {proxy.host}:{proxy.port}: {exc}"
        ) from exc
    try:
        if proxy.secure:
            stream = await TLSStream.wrap(
                stream,
                hostname=proxy.host,
                ssl_context=proxy_ssl or ssl_module.create_default_context(),
                standard_compatible=False,
            )
        target = f"[{uri.host}]:{uri.port}" if ":" in uri.host else f"{uri.host}:{uri.port}"
        headers = [("Host", target)]
        if proxy.user_info is not None:
            credentials = base64.b64encode(":".join(proxy.user_info).encode()).decode("ascii")
            headers.append(("Proxy-Authorization", f"Basic {credentials}"))
        client = h11.Connection(h11.CLIENT)
        await stream.send(
            client.send(h11.Request(method="CONNECT", target=target, headers=headers)) or b""
        )
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                try:
                    client.receive_data(await stream.receive(_HANDSHAKE_READ))
                except anyio.EndOfStream:
                    raise ProxyError(
                        "proxy closed the connection before answering CONNECT"
                    ) from None
            elif isinstance(event, h11.Response):
                if 200 <= event.status_code < 300:
                    return stream
                response = Response(
                    event.status_code,
                    event.reason.decode("latin-1"),
                    decode_headers(event.headers.raw_items()),
                )
                raise ProxyError(
                    f"proxy refused the tunnel: HTTP {event.status_code} "
                    f"{response.reason_phrase}".rstrip(),
                    response,
                )
            # else: a 1xx interim response precedes the real one (RFC 9110 §15.2)
    except h11.RemoteProtocolError as exc:
        await anyio.aclose_forcefully(stream)
        raise ProxyError(f"invalid response from the proxy: {exc}") from None
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


def open_websocket(
    uri: str,
    *,
    additional_headers: HeadersLike | None = None,
    user_agent_header: str | None = DEFAULT_USER_AGENT,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: str | None = "deflate",
    extensions: Sequence[Extension] | None = None,
    open_timeout: float | None = 10,
    close_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    max_size: int | None = 2**20,
    max_queue: int | tuple[int | None, int | None] | None = 32,
    read_limit: int = 2**16,
    write_limit: int | tuple[int, int | None] = 2**16,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | str | None = None,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    unix_socket: str | os.PathLike[str] | None = None,
    proxy: str | bool | None = True,
    proxy_ssl: ssl_module.SSLContext | None = None,
) -> _WebSocketContext:
    """Open a WebSocket connection; use the result with `async with ... as ws:`.

    The connection's reader, writer and heartbeat tasks run in a task group of its own,
    entered and left by the `async with`. Leaving the block closes the connection (1000, or
    1011 if the block raised, 1001 without waiting for the server if it was cancelled),
    waiting at most `close_timeout` for the closing handshake. Works under `trio.run` and
    `asyncio.run` alike.

    Args:
        uri: a `ws://` or `wss://` URI; user:password in it sends HTTP Basic auth.
        additional_headers: extra headers for the handshake request.
        user_agent_header: the `User-Agent` header; None omits it.
        origin: the `Origin` header, if any.
        subprotocols: subprotocols to offer, by preference; see `ws.subprotocol`.
        compression: "deflate" offers permessage-deflate (RFC 7692) with
            `client_max_window_bits`; None disables compression.
        extensions: further wsproto `Extension` objects to offer.
        open_timeout: seconds for connecting and the opening handshake; None: no limit.
        close_timeout: seconds to wait for the closing handshake; None: no limit.
        ping_interval: seconds between keepalive pings; None disables them.
        ping_timeout: seconds to wait for a keepalive pong before failing the connection
            with 1011; None: never.
        max_size: largest incoming message in bytes, after decompression; None: no limit.
        max_queue: incoming messages buffered before the reader stops reading (or a
            (high, low) pair of marks); None: no limit.
        read_limit: bytes read from the transport at a time.
        write_limit: bytes queued for writing before `send` waits (or a (high, low) pair).
        logger: a `Logger`, `LoggerAdapter` or logger name; default "anyws.client".
        ssl: an `SSLContext` for `wss://` (default: verified against the system's trust).
        server_hostname: the TLS server name, if it differs from the URI's host.
        unix_socket: connect to this Unix socket path instead of the URI's host.
        proxy: an `http://` or `https://` proxy URL to tunnel through with CONNECT; True
            (default) uses HTTPS_PROXY/HTTP_PROXY/NO_PROXY from the environment; None: no
            proxy.
        proxy_ssl: the `SSLContext` for an `https://` proxy (default: verified against
            the system's trust).

    Returns:
        An async context manager that yields a `ClientConnection`.

    Raises:
        InvalidURI: at the call, for a malformed or non-ws(s) URI.
        ValueError, TypeError: at the call, for an invalid option (the message names it).
        OSError: on entering, when the connection fails (refused, unreachable, TLS).
        TimeoutError: on entering, when the handshake takes longer than `open_timeout`.
        InvalidHandshake: on entering, when the server refuses or answers wrongly:
            `InvalidStatus` (with `.response`), `InvalidUpgrade`, `InvalidHeader`,
            `NegotiationError`, `SecurityError`, `InvalidMessage`, `ProxyError`.
    """
    options = _Options(
        additional_headers=additional_headers,
        user_agent_header=user_agent_header,
        origin=origin,
        subprotocols=subprotocols,
        compression=compression,
        extensions=extensions,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_size=max_size,
        max_queue=max_queue,
        read_limit=read_limit,
        write_limit=write_limit,
        logger=logger,
        ssl=ssl,
        server_hostname=server_hostname,
        unix_socket=unix_socket,
        proxy=proxy,
        proxy_ssl=proxy_ssl,
    )
    return _WebSocketContext(uri, options)


connect = open_websocket


def unix_connect(
    path: str | os.PathLike[str], uri: str = "ws://localhost/", **options: Any
) -> _WebSocketContext:
    """Connect to a WebSocket server listening on a Unix socket at `path`.

    `uri` provides the Host header and the resource; options are those of
    `open_websocket`. Raises as `open_websocket`.
    """
    return open_websocket(uri, unix_socket=path, **options)


def process_exception(exc: Exception) -> Exception | None:
    """Decide whether a failure to connect is worth retrying, as in `websockets`.

    Returns None for errors that may go away (network errors, timeouts, a server closing the
    connection during the handshake, HTTP 500, 502, 503, 504); else returns `exc`, which
    the caller should raise.
    """
    if isinstance(exc, (OSError, TimeoutError)):
        return None
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError):
        return None
    if isinstance(exc, InvalidStatus) and exc.response.status_code in (500, 502, 503, 504):
        return None
    return exc
