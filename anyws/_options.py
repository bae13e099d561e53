"""The options of a connection, defined once: `ConnectOptions` types the keyword arguments
that `open_websocket`, `unix_connect` and `anyws.sync.connect` take, and `Options` holds
their defaults and checks them at the call, with messages that name the option.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import ssl as ssl_module
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict

from wsproto.extensions import Extension

from ._handshake import DEFAULT_USER_AGENT
from ._types import HeadersLike

if TYPE_CHECKING:
    from ._connection import ClientConnection

# A string: LoggerAdapter is subscriptable at run time only from Python 3.11.
LoggerLike: TypeAlias = "logging.Logger | logging.LoggerAdapter[logging.Logger] | str | None"


class ConnectOptions(TypedDict, total=False):
    """The keyword options of `open_websocket` (see `Options` for what each does)."""

    additional_headers: HeadersLike | None
    extra_headers: HeadersLike | None  # the seed's deprecated name of additional_headers
    user_agent_header: str | None
    origin: str | None
    subprotocols: Sequence[str] | None
    compression: str | None
    compression_threshold: int | None
    extensions: Sequence[Extension] | None
    open_timeout: float | None
    close_timeout: float | None
    ping_interval: float | None
    ping_timeout: float | None
    max_size: int | tuple[int | None, int | None] | None
    max_queue: int | tuple[int | None, int | None] | None
    read_limit: int
    write_limit: int | tuple[int, int | None]
    logger: LoggerLike
    ssl: ssl_module.SSLContext | bool | None
    server_hostname: str | None
    unix_socket: str | os.PathLike[str] | None
    proxy: str | bool | None
    proxy_ssl: ssl_module.SSLContext | None
    proxy_server_hostname: str | None
    local_host: str | None
    happy_eyeballs_delay: float | None
    create_connection: type[ClientConnection] | None


@dataclass(frozen=True)
class Limits:
    """The flow-control and timing options, as the driver uses them."""

    max_queue_high: int | None
    max_queue_low: int | None
    read_limit: int
    write_limit_high: int
    write_limit_low: int
    close_timeout: float | None
    ping_interval: float | None
    ping_timeout: float | None


@dataclass(frozen=True)
class Options:
    """Every option of a connection, with its default (the same as `websockets`').

    Attributes:
        additional_headers: extra headers for the handshake request.
        user_agent_header: the `User-Agent` header; None omits it.
        origin: the `Origin` header, if any.
        subprotocols: subprotocols to offer, by preference; see `ws.subprotocol`.
        compression: "deflate" offers permessage-deflate (RFC 7692) with
            `client_max_window_bits`; None disables compression.
        compression_threshold: with permessage-deflate negotiated, messages smaller than
            this many bytes (UTF-8 for text) are sent uncompressed; None compresses every
            message. `send(..., compress=)` decides for one message.
        extensions: further wsproto `Extension` objects to offer.
        open_timeout: seconds for connecting and the opening handshake; None: no limit.
        close_timeout: seconds to wait for the closing handshake; None: no limit.
        ping_interval: seconds between keepalive pings; None disables them.
        ping_timeout: seconds to wait for a keepalive pong before failing the connection
            with 1011; None: never.
        max_size: largest incoming message in bytes, after decompression; None: no limit.
            A (message, fragment) pair, as in `websockets`, also limits each frame's payload
            (on the wire and after decompression), e.g. `(None, 2**16)` for long messages
            streamed in short fragments.
        max_queue: incoming messages buffered for the application before the reader stops
            parsing and reading (or a (high, low) pair of marks); None: no limit.
        read_limit: incoming bytes waiting to be parsed before the transport stops
            reading (on trio, also the most read from the socket at a time).
        write_limit: bytes queued for writing before `send` waits (or a (high, low) pair).
        logger: a `Logger`, `LoggerAdapter` or logger name; default "anyws.client".
        ssl: an `SSLContext` for `wss://` (default: verified against the system's trust).
        server_hostname: the TLS server name, if it differs from the URI's host.
        unix_socket: connect to this Unix socket path instead of the URI's host.
        proxy: an `http://` or `https://` proxy URL to tunnel through with CONNECT; True
            uses HTTPS_PROXY/HTTP_PROXY/NO_PROXY from the environment; None: no proxy.
        proxy_ssl: the `SSLContext` for an `https://` proxy (default: verified).
        proxy_server_hostname: the TLS server name of an `https://` proxy, if it differs
            from the proxy URL's host.
        local_host: the local address (or a name resolving to it) to bind the TCP
            socket to before connecting, e.g. to pick an interface; None: any.
        happy_eyeballs_delay: seconds before trying the next address while the previous
            attempt is still pending (RFC 8305); None tries one address at a time, as
            uvloop's event loop always does (it has no such option).
        create_connection: a subclass of `ClientConnection` to make the connection with
            (methods of your own on it), as in `websockets`; None: `ClientConnection`.
    """

    additional_headers: HeadersLike | None = None
    user_agent_header: str | None = DEFAULT_USER_AGENT
    origin: str | None = None
    subprotocols: Sequence[str] | None = None
    compression: str | None = "deflate"
    compression_threshold: int | None = None
    extensions: Sequence[Extension] | None = None
    open_timeout: float | None = 10
    close_timeout: float | None = 10
    ping_interval: float | None = 20
    ping_timeout: float | None = 20
    max_size: int | tuple[int | None, int | None] | None = 2**20
    max_queue: int | tuple[int | None, int | None] | None = 32
    read_limit: int = 2**16
    write_limit: int | tuple[int, int | None] = 2**16
    logger: LoggerLike = None
    ssl: ssl_module.SSLContext | bool | None = None
    server_hostname: str | None = None
    unix_socket: str | os.PathLike[str] | None = None
    proxy: str | bool | None = True
    proxy_ssl: ssl_module.SSLContext | None = None
    proxy_server_hostname: str | None = None
    local_host: str | None = None
    happy_eyeballs_delay: float | None = 0.25
    create_connection: type[ClientConnection] | None = None

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> Options:
        """Build and check the options given as keyword arguments.

        Raises:
            TypeError: an unknown option, or an option of the wrong type.
            ValueError: an option with an invalid value (the message names it).
        """
        if "extra_headers" in options:
            warnings.warn(
                "extra_headers is deprecated; use additional_headers",
                DeprecationWarning,
                stacklevel=3,  # the caller of open_websocket()
            )
            options = dict(options)
            if "additional_headers" in options:
                raise TypeError("give additional_headers or extra_headers, not both")
            options["additional_headers"] = options.pop("extra_headers")
        if not options:
            return _DEFAULTS  # checked once: the options are immutable
        unknown = sorted(set(options) - _NAMES)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**options)

    def __post_init__(self) -> None:
        if self.compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {self.compression!r}")
        subprotocols = self.subprotocols
        if isinstance(subprotocols, str) or not all(
            isinstance(sub, str) and sub for sub in subprotocols or ()
        ):
            raise TypeError("subprotocols must be a sequence of non-empty str")
        if not all(isinstance(ext, Extension) for ext in self.extensions or ()):
            raise TypeError("extensions must be a sequence of wsproto.extensions.Extension")
        for name in (
            "user_agent_header",
            "origin",
            "server_hostname",
            "proxy_server_hostname",
            "local_host",
        ):
            if not isinstance(getattr(self, name), (str, type(None))):
                raise TypeError(f"{name} must be a str or None")
        if self.ssl is not None and not isinstance(self.ssl, (bool, ssl_module.SSLContext)):
            raise TypeError("ssl must be an ssl.SSLContext, True, or None")
        if self.proxy_ssl is not None and not isinstance(self.proxy_ssl, ssl_module.SSLContext):
            raise TypeError("proxy_ssl must be an ssl.SSLContext or None")
        if self.create_connection is not None:
            from ._connection import ClientConnection  # here: it imports this module

            if not (
                isinstance(self.create_connection, type)
                and issubclass(self.create_connection, ClientConnection)
            ):
                raise TypeError(
                    f"create_connection must be a subclass of anyws.ClientConnection, "
                    f"not {self.create_connection!r}"
                )
        if self.proxy is not None and not isinstance(self.proxy, (str, bool)):
            raise TypeError("proxy must be a proxy URL, True, False or None")
        self.limits  # noqa: B018 (checked at the call, computed once)
        _check_timeout("open_timeout", self.open_timeout)
        _check_timeout("happy_eyeballs_delay", self.happy_eyeballs_delay)
        self.size_limits  # noqa: B018 (checked at the call, computed once)
        _check_size("compression_threshold", self.compression_threshold, allow_none=True)
        if not isinstance(self.logger, (logging.Logger, logging.LoggerAdapter, str, type(None))):
            raise TypeError("logger must be a Logger, a LoggerAdapter, a logger name or None")

    @functools.cached_property
    def limits(self) -> Limits:
        """The flow-control and timing options, checked, as the driver reads them."""
        max_queue_high, max_queue_low = _check_limit_pair(
            "max_queue", self.max_queue, allow_none=True
        )
        write_high, write_low = _check_limit_pair("write_limit", self.write_limit, allow_none=False)
        assert write_high is not None  # allow_none=False
        assert write_low is not None
        ping_interval = _check_timeout("ping_interval", self.ping_interval)
        if ping_interval == 0:
            raise ValueError("ping_interval must be > 0 or None")
        return Limits(
            max_queue_high=max_queue_high,
            max_queue_low=max_queue_low,
            read_limit=_check_size("read_limit", self.read_limit, allow_none=False) or 0,
            write_limit_high=write_high,
            write_limit_low=write_low,
            close_timeout=_check_timeout("close_timeout", self.close_timeout),
            ping_interval=ping_interval,
            ping_timeout=_check_timeout("ping_timeout", self.ping_timeout),
        )

    @functools.cached_property
    def size_limits(self) -> tuple[int | None, int | None]:
        """`max_size`, checked, as (largest message, largest frame payload)."""
        if not isinstance(self.max_size, tuple):
            return _check_size("max_size", self.max_size, allow_none=True), None
        if len(self.max_size) != 2:
            raise ValueError(
                f"max_size must be a size, None, or a (message, fragment) pair, "
                f"not {self.max_size!r}"
            )
        message, fragment = self.max_size
        return (
            _check_size("max_size[0] (message)", message, allow_none=True),
            _check_size("max_size[1] (fragment)", fragment, allow_none=True),
        )

    def get_logger(self) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
        """The logger to use: the one given, the one named, or "anyws.client"."""
        if self.logger is None or isinstance(self.logger, str):
            return logging.getLogger(self.logger or "anyws.client")
        return self.logger

    def ssl_context(self, secure: bool) -> ssl_module.SSLContext | None:
        """The TLS context for a `wss://` connection (None for `ws://`)."""
        if not secure:
            return None
        if isinstance(self.ssl, ssl_module.SSLContext):
            return self.ssl
        return ssl_module.create_default_context()


_NAMES = frozenset(field.name for field in dataclasses.fields(Options))


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


_DEFAULTS = Options()  # what `from_kwargs` gives for no options
