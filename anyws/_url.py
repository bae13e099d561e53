"""Parsing of `ws://` and `wss://` URIs (RFC 6455 §3). Pure functions, no I/O."""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ._exceptions import InvalidURI

# Characters that may appear unescaped in a path or query (RFC 3986 §3.3, §3.4); anything
# else (spaces, non-ASCII text) is percent-encoded so that the request line is valid.
_PATH_SAFE = "/:@!$&'()*+,;=%-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
# RFC 3986 §3.2.2 reg-name characters (unreserved, pct-encoded, sub-delims), plus ":" for
# the inside of an IPv6 literal.
_HOST = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=:]+")


@dataclass(frozen=True)
class WebSocketURI:
    """A parsed WebSocket URI.

    Attributes:
        secure: True for `wss://`.
        host: the host, IDNA-encoded; IPv6 literals without brackets.
        port: the port (80 / 443 by default).
        path: the path, percent-encoded, at least "/".
        query: the query without "?", percent-encoded ("" if none).
        user_info: (username, password) from the URI, or None.
    """

    secure: bool
    host: str
    port: int
    path: str = "/"
    query: str = ""
    user_info: tuple[str, str] | None = None

    @property
    def resource_name(self) -> str:
        """The request target: path and query (RFC 6455 §3)."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def host_header(self) -> str:
        """The value of the `Host` header: the port only when it isn't the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.secure else 80
        return host if self.port == default_port else f"{host}:{self.port}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse and validate a WebSocket URI.

    Raises:
        InvalidURI: the scheme isn't ws/wss, the host is empty, the port is out of range, or
            the URI has a fragment (RFC 6455 §3 forbids it).
    """
    if not isinstance(uri, str):
        raise InvalidURI(repr(uri), "a WebSocket URI must be a str")
    return _parse_uri(uri)


# A program connects to a few URIs again and again, and urllib's split and quoting are a
# few percent of a short connection. Results are immutable; refusals aren't cached (they
# propagate). The cache keeps the last 64 URIs (credentials included) while the process runs.
@functools.lru_cache(maxsize=64)
def _parse_uri(uri: str) -> WebSocketURI:
    try:
        parsed = urllib.parse.urlsplit(uri)
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    if parsed.fragment or uri.endswith("#"):
        raise InvalidURI(uri, "a WebSocket URI must not have a fragment (RFC 6455 §3)")
    if not parsed.hostname:
        raise InvalidURI(uri, "hostname isn't provided")
    try:
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    secure = parsed.scheme == "wss"
    if port is None:
        port = 443 if secure else 80
    elif port == 0:
        raise InvalidURI(uri, "port 0 isn't a valid destination port")

    host = parsed.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURI(uri, f"hostname isn't a valid IDNA name: {exc}") from None
    if not _HOST.fullmatch(host):
        # RFC 3986 §3.2.2: a reg-name, an IPv4 address or an IPv6 literal (unbracketed here).
        raise InvalidURI(uri, f"hostname has characters a host can't have: {host!r}")

    user_info = None
    if parsed.username is not None or parsed.password is not None:
        if parsed.password is None:
            raise InvalidURI(uri, "username provided without password")
        user_info = (
            urllib.parse.unquote(parsed.username or ""),
            urllib.parse.unquote(parsed.password),
        )

    return WebSocketURI(
        secure=secure,
        host=host,
        port=port,
        path=urllib.parse.quote(parsed.path, safe=_PATH_SAFE) or "/",
        query=urllib.parse.quote(parsed.query, safe=_QUERY_SAFE),
        user_info=user_info,
    )


@functools.lru_cache(maxsize=64)
def ip_family(host: str) -> socket.AddressFamily | None:
    """AF_INET or AF_INET6 if `host` (as in `WebSocketURI.host`) is an IP address literal,
    None for a name.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def websocket_url(url: str, params: Any = None) -> str:
    """`url` with `http://` and `https://` (what httpx users write) turned into the `ws://`
    and `wss://` they stand for, and `params` (a mapping or pairs) added to its query.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme)
    query = parts.query
    if params:
        extra = urllib.parse.urlencode(params, doseq=True)
        query = f"{query}&{extra}" if query else extra
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment))


def resolve_redirect(base: WebSocketURI, location: str) -> str:
    """Return the absolute URI a `Location` header points to, relative to `base`.

    `http`/`https` targets are mapped to `ws`/`wss` (servers commonly redirect that way).
    """
    scheme = "wss" if base.secure else "ws"
    absolute = urllib.parse.urljoin(f"{scheme}://{base.host_header}{base.resource_name}", location)
    parsed = urllib.parse.urlsplit(absolute)
    if parsed.scheme in ("http", "https"):
        absolute = urllib.parse.urlunsplit(
            parsed._replace(scheme=parsed.scheme.replace("http", "ws"))
        )
    return absolute
