"""The byte stream under a connection: TCP (happy eyeballs), TLS, a Unix socket, or a
tunnel through an HTTP proxy (CONNECT) or a SOCKS proxy (with the `socks` extra).
Connection failures leave as the same `OSError` on both backends: a refused port is
`ConnectionRefusedError` on trio as on asyncio.
"""

from __future__ import annotations

import base64
import math
import os
import socket
import ssl as ssl_module
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import anyio.abc
import h11
import sniffio
from anyio.streams.tls import TLSStream

from . import _asyncio_stream as asyncio_stream
from ._exceptions import InvalidProxy, InvalidProxyMessage, InvalidProxyStatus, ProxyError
from ._handshake import decode_headers
from ._options import Options
from ._trio_stream import TrioSocketStream
from ._types import Response
from ._url import WebSocketURI, ip_family

if sys.version_info < (3, 11):  # pragma: no cover (the backport on 3.10 only)
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

_PROXY_READ = 2**16
# What urllib.request.getproxies() reads for the "http", "https" and "all" schemes.
_PROXY_VARIABLES = tuple(
    case(f"{scheme}_proxy")
    for scheme in ("http", "https", "all")
    for case in (str.lower, str.upper)
)


SOCKS_SCHEMES = ("socks5h", "socks5", "socks4a", "socks4")


@dataclass(frozen=True)
class SocksProxy:
    """A SOCKS proxy: `scheme` is one of `SOCKS_SCHEMES` (socks5h and socks4a let the
    proxy resolve the server's name; socks5 and socks4 resolve it here).
    """

    scheme: str
    host: str
    port: int
    user_info: tuple[str, str] | None


def resolve_proxy(proxy: str | bool | None, uri: WebSocketURI) -> WebSocketURI | SocksProxy | None:
    """Return the proxy to go through, or None: an HTTP(S) proxy as a `WebSocketURI`, a
    SOCKS proxy as a `SocksProxy`. `True` reads the environment like `urllib.request`
    (HTTPS_PROXY for wss, HTTP_PROXY for ws, then ALL_PROXY; NO_PROXY honoured).

    Raises:
        ProxyError: the proxy URL is unusable or of an unsupported scheme.
    """
    if proxy is None or proxy is False:
        return None
    if proxy is True:
        # Reading every proxy variable costs more than a whole handshake; most machines
        # have none of the ones that apply to ws:// and wss://, which six look-ups tell.
        if not any(name in os.environ for name in _PROXY_VARIABLES):
            return None
        # Imported here: with http.client and email, a fifth of anyws's import time.
        from urllib.request import getproxies, proxy_bypass

        proxies = getproxies()
        url = proxies.get("https" if uri.secure else "http") or proxies.get("all")
        if url is None or proxy_bypass(uri.host):
            return None
        proxy = url
    parsed = urllib.parse.urlsplit(proxy)
    if parsed.scheme not in ("http", "https", *SOCKS_SCHEMES):
        raise InvalidProxy(
            proxy,
            f"unsupported scheme {parsed.scheme!r}: anyws supports http:// and https:// "
            "(CONNECT) and socks5h://, socks5://, socks4a://, socks4:// proxies",
        )
    try:
        port = parsed.port
    except ValueError as exc:
        raise InvalidProxy(proxy, str(exc)) from None
    if not parsed.hostname:
        raise InvalidProxy(proxy, "no host")
    user_info = None
    if parsed.username is not None:
        user_info = (
            urllib.parse.unquote(parsed.username),
            urllib.parse.unquote(parsed.password or ""),
        )
    if parsed.scheme in SOCKS_SCHEMES:
        return SocksProxy(parsed.scheme, parsed.hostname, port or 1080, user_info)
    secure = parsed.scheme == "https"
    return WebSocketURI(
        secure=secure,
        host=parsed.hostname,
        port=port or (443 if secure else 80),
        user_info=user_info,
    )


def connect_error(errors: Sequence[OSError]) -> OSError:
    """The one error to raise when every connection attempt failed.

    One attempt: its error. Several failing the same way (e.g. every address refused): the
    first, as that type; several failing differently: an `OSError` naming them. Either way
    every attempt's error stays reachable as `__cause__` (an `ExceptionGroup`).
    """
    if len(errors) == 1:
        return errors[0]
    first = errors[0]
    if all(type(error) is type(first) for error in errors):
        error = first
    else:
        error = OSError(
            f"all {len(errors)} connection attempts failed: "
            + "; ".join(f"{type(e).__name__}: {e}" for e in errors)
        )
    error.__cause__ = ExceptionGroup("every connection attempt failed", list(errors))
    return error


def attempt_errors(error: BaseException | None) -> list[OSError]:
    """The `OSError` of each connection attempt behind `error`: asyncio's group (Python >=
    3.12) or the cause of anyio's "All connection attempts failed" (one, or a group).
    """
    if isinstance(error, BaseExceptionGroup):
        return [error for error in error.exceptions if isinstance(error, OSError)]
    return [error] if isinstance(error, OSError) else []


async def open_transport(
    uri: WebSocketURI, options: Options, proxy: WebSocketURI | SocksProxy | None
) -> anyio.abc.ByteStream:
    """Open the stream the handshake goes over.

    Raises:
        OSError: the connection or TLS failed (see `connect_error`).
        ProxyError: the proxy refused or failed to open the tunnel.
    """
    context = options.ssl_context(uri.secure)
    hostname = options.server_hostname or uri.host
    unix_socket = None if options.unix_socket is None else os.fspath(options.unix_socket)
    if unix_socket is not None:
        proxy = None
    if proxy is None and sniffio.current_async_library() == "asyncio":
        try:
            return await asyncio_stream.connect(
                host=uri.host,
                port=uri.port,
                path=unix_socket,
                ssl_context=context,
                server_hostname=hostname if context is not None else None,
                read_buffer_limit=options.limits.read_limit,
                local_host=options.local_host,
                happy_eyeballs_delay=options.happy_eyeballs_delay,
            )
        except ExceptionGroup as group:  # all_errors=True (Python >= 3.12)
            raise connect_error(attempt_errors(group)) from None
    stream: anyio.abc.ByteStream
    if unix_socket is not None:
        stream = await anyio.connect_unix(unix_socket)
    elif proxy is None:
        family = ip_family(uri.host)
        if family is None or options.local_host is not None:
            stream = await _connect_tcp(uri.host, uri.port, context, hostname, options)
            return stream if context is not None else _lean(stream)
        # One address: nothing to race. anyio's happy eyeballs would still open a task
        # group and a task for it, which costs as much as the connect itself on trio
        # (the backend here: asyncio's streams were opened above).
        stream = await _connect_address(family, uri.host, uri.port, tls=context is not None)
    elif isinstance(proxy, SocksProxy):
        stream = await _open_socks(proxy, uri, options)
    else:
        stream = await _open_tunnel(proxy, uri, options)
    return await _secure(stream, context, hostname)


async def open_socket(
    sock: socket.socket, uri: WebSocketURI, options: Options
) -> anyio.abc.ByteStream:
    """Open the stream the handshake goes over on `sock`, a connected stream socket that
    the caller gave (`open_websocket(sock=)`): with TLS for `wss://`. The stream owns the
    socket, which is closed if this fails.

    Raises:
        OSError: the TLS handshake failed.
    """
    context = options.ssl_context(uri.secure)
    hostname = options.server_hostname or uri.host
    try:
        if sniffio.current_async_library() == "asyncio":
            return await asyncio_stream.connect(
                sock=sock,
                ssl_context=context,
                server_hostname=hostname if context is not None else None,
                read_buffer_limit=options.limits.read_limit,
            )
        stream = await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise
    return await _secure(stream, context, hostname)


async def _secure(
    stream: anyio.abc.ByteStream, context: ssl_module.SSLContext | None, hostname: str
) -> anyio.abc.ByteStream:
    """`stream` with TLS on top if there is a `context` (closed if TLS fails), else as it
    is (on trio, through `_lean`).
    """
    if context is None:
        return _lean(stream)
    try:
        return await TLSStream.wrap(
            stream, hostname=hostname, ssl_context=context, standard_compatible=False
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


def _lean(stream: anyio.abc.ByteStream) -> anyio.abc.ByteStream:
    """On trio, a socket stream whose bytes are the socket's own, read and written through
    the socket itself (see `_trio_stream`); anyio's wrapper is dropped, the socket kept.
    """
    if isinstance(stream, anyio.abc.SocketStream) and sniffio.current_async_library() == "trio":
        return TrioSocketStream(stream.extra(anyio.abc.SocketAttribute.raw_socket))
    return stream


def _race_delay(options: Options) -> float:
    # anyio races addresses always; an infinite delay tries them one at a time.
    delay = options.happy_eyeballs_delay
    return math.inf if delay is None else delay


async def _connect_tcp(
    host: str,
    port: int,
    context: ssl_module.SSLContext | None,
    hostname: str,
    options: Options,
) -> anyio.abc.ByteStream:
    local_host, delay = options.local_host, _race_delay(options)
    try:
        if context is None:
            return await anyio.connect_tcp(
                host, port, local_host=local_host, happy_eyeballs_delay=delay
            )
        # anyio does TLS when any TLS argument is given, so only here.
        return await anyio.connect_tcp(
            host,
            port,
            local_host=local_host,
            happy_eyeballs_delay=delay,
            ssl_context=context,
            tls_hostname=hostname,
            tls_standard_compatible=False,
        )
    except OSError as exc:
        # anyio reports "All connection attempts failed", the errors as its cause; other
        # errors (a failed name lookup) are raised as they are.
        raise connect_error(attempt_errors(exc.__cause__) or [exc]) from None


async def _connect_address(
    family: socket.AddressFamily, host: str, port: int, *, tls: bool
) -> anyio.abc.ByteStream:
    """Connect a TCP socket to one IP address, on trio: the stream for TLS to wrap if
    `tls`, else a `TrioSocketStream`.

    Raises:
        OSError: the connection failed (e.g. `ConnectionRefusedError`).
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # Small frames go out at once, as anyio and asyncio set it on their sockets.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect((host, port))
        except BlockingIOError:  # in progress: the socket turns writable when it's done
            await anyio.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(
                    error, f"connect to {host}:{port} failed: {os.strerror(error)}"
                ) from None
        if not tls:
            return TrioSocketStream(sock)
        return await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


async def _open_socks(
    proxy: SocksProxy, uri: WebSocketURI, options: Options
) -> anyio.abc.ByteStream:
    """Connect to the server through a SOCKS proxy (RFC 1928, RFC 1929 for credentials;
    SOCKS4/4a), with the `python-socks` package.
    """
    try:
        from python_socks import ProxyConnectionError, ProxyTimeoutError, ProxyType
        from python_socks import ProxyError as SocksError
        from python_socks.async_.anyio import Proxy
    except ImportError:
        raise ProxyError(
            f"a {proxy.scheme}:// proxy needs the python-socks package: pip install 'anyws[socks]'"
        ) from None
    # python-socks 3.2's anyio proxy lets its own IncompleteReadError through (it catches
    # asyncio's); the class is private, so a release without it mustn't break the import.
    incomplete_read: type[Exception] = getattr(
        sys.modules.get("python_socks._errors"), "IncompleteReadError", SocksError
    )
    username, password = proxy.user_info or (None, None)
    socks = Proxy(
        ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4,
        proxy.host,
        proxy.port,
        username,
        password,
        rdns=proxy.scheme in ("socks5h", "socks4a"),
    )
    try:
        # open_timeout bounds the whole handshake; python-socks wants a number of its own.
        stream: anyio.abc.ByteStream = await socks.connect(
            uri.host,
            uri.port,
            timeout=math.inf,
            local_host=options.local_host,
            happy_eyeballs_delay=_race_delay(options),
        )
    except ProxyConnectionError as exc:
        raise ProxyError(
            f"failed to connect to the proxy {proxy.host}:{proxy.port}: {exc}"
        ) from exc
    except (SocksError, ProxyTimeoutError) as exc:
        raise ProxyError(f"the SOCKS proxy refused the connection: {exc}") from exc
    except incomplete_read as exc:
        raise ProxyError(
            "the SOCKS proxy closed the connection during its handshake "
            "(wrong credentials, or a SOCKS version it doesn't speak?)"
        ) from exc
    return stream


async def _open_tunnel(
    proxy: WebSocketURI, uri: WebSocketURI, options: Options
) -> anyio.abc.ByteStream:
    """Connect to an HTTP proxy and open a tunnel to the server with CONNECT (RFC 9110 §9.3.6)."""
    proxy_ssl = options.proxy_ssl
    try:
        stream: anyio.abc.ByteStream = await anyio.connect_tcp(
            proxy.host,
            proxy.port,
            local_host=options.local_host,
            happy_eyeballs_delay=_race_delay(options),
        )
    except OSError as exc:
        raise ProxyError(
            f"failed to connect to the proxy {proxy.host}:{proxy.port}: {exc}"
        ) from exc
    try:
        if proxy.secure:
            stream = await TLSStream.wrap(
                stream,
                hostname=options.proxy_server_hostname or proxy.host,
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
                    client.receive_data(await stream.receive(_PROXY_READ))
                except anyio.EndOfStream:
                    raise InvalidProxyMessage(
                        "proxy closed the connection before answering CONNECT"
                    ) from None
            elif isinstance(event, h11.Response):
                if 200 <= event.status_code < 300:
                    return stream
                raise InvalidProxyStatus(
                    Response(
                        event.status_code,
                        event.reason.decode("latin-1"),
                        decode_headers(event.headers.raw_items()),
                    )
                )
            # else: a 1xx interim response precedes the real one (RFC 9110 §15.2)
    except h11.RemoteProtocolError as exc:
        await anyio.aclose_forcefully(stream)
        raise InvalidProxyMessage(f"invalid response from the proxy: {exc}") from None
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
