"""The exception taxonomy of anyws (DESIGN §5). One hierarchy under `WebSocketError`.

Network failures while connecting are raised as the `OSError` they are, and timeouts as the
builtin `TimeoutError`; everything anyws itself detects is a `WebSocketError`.
"""

from __future__ import annotations

from ._types import Close, Response

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidMessage",
    "InvalidMessageType",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "SecurityError",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Base class of every exception anyws raises itself."""


class InvalidURI(WebSocketError):
    """The URI is not a usable `ws://` or `wss://` URI."""

    def __init__(self, uri: str, msg: str) -> None:
        super().__init__(uri, msg)
        self.uri = uri
        self.msg = msg

    def __str__(self) -> str:
        return f"{self.uri!r} isn't a valid WebSocket URI: {self.msg}"


class InvalidHandshake(WebSocketError):
    """The opening handshake failed."""


class InvalidMessage(InvalidHandshake):
    """The server's handshake response isn't well-formed HTTP/1.1 (or the connection ended
    before a complete response arrived).
    """


class InvalidStatus(InvalidHandshake):
    """The server answered the upgrade request with a status other than 101.

    Attributes:
        response: the `Response`, with `status_code`, `reason_phrase`, case-insensitive
            `headers` and the first bytes of the `body`.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response)
        self.response = response

    def __str__(self) -> str:
        return (
            "server rejected WebSocket connection: "
            f"HTTP {self.response.status_code} {self.response.reason_phrase}".rstrip()
        )


class InvalidHeader(InvalidHandshake):
    """A handshake header is missing, repeated or has a wrong value."""

    def __init__(self, name: str, value: str | None = None) -> None:
        super().__init__(name, value)
        self.name = name
        self.value = value

    def __str__(self) -> str:
        if self.value is None:
            return f"missing {self.name} header"
        if self.value == "":
            return f"empty {self.name} header"
        return f"invalid {self.name} header: {self.value}"


class InvalidUpgrade(InvalidHeader):
    """The `Upgrade` or `Connection` header of a 101 response doesn't name websocket."""


class NegotiationError(InvalidHandshake):
    """The server chose a subprotocol or extension (parameters) that the client didn't offer."""


class SecurityError(InvalidHandshake):
    """A limit was exceeded (oversized response, too many redirects) or a redirect would
    downgrade `wss://` to `ws://`.
    """


class ProxyError(InvalidHandshake):
    """The proxy refused or failed to open the tunnel, or its URL is unusable.

    Attributes:
        response: the proxy's `Response` when it answered with an error status, else None.
    """

    def __init__(self, msg: str, response: Response | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.response = response

    def __str__(self) -> str:
        return self.msg


class InvalidProxy(ProxyError):
    """The proxy URL can't be used (an unsupported scheme, no host, a bad port); raised by
    the call, before connecting.

    `websockets` raises `InvalidProxy` for the same URLs; anyws makes it a `ProxyError`
    too, so that code catching either catches it.

    Attributes:
        proxy: the proxy URL.
        reason: what is wrong with it.
    """

    def __init__(self, proxy: str, reason: str) -> None:
        super().__init__(f"invalid proxy URL {proxy!r}: {reason}")
        self.proxy = proxy
        self.reason = reason


class InvalidProxyMessage(ProxyError):
    """The HTTP proxy's answer to CONNECT isn't valid HTTP, or it closed the connection
    before answering.
    """


class InvalidProxyStatus(ProxyError):
    """The HTTP proxy answered CONNECT with a status other than 2xx (e.g. 407: it wants
    credentials); `response` holds its status, reason and headers.
    """

    response: Response

    def __init__(self, response: Response) -> None:
        message = f"proxy refused the tunnel: HTTP {response.status_code} {response.reason_phrase}"
        super().__init__(message.rstrip(), response)


class ConnectionClosed(WebSocketError):
    """The WebSocket connection is closed; raised by every operation that needs it open.

    Attributes:
        rcvd: the close frame received from the server, or None if none was (TCP dropped).
        sent: the close frame sent to the server, or None if none was.
        rcvd_then_sent: True if the server's close came first, False if ours did, None if
            the close handshake didn't complete.
    """

    def __init__(
        self, rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None = None
    ) -> None:
        super().__init__(rcvd, sent, rcvd_then_sent)
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent

    @property
    def code(self) -> int:
        """The close code of the connection (1006 when no close frame was received)."""
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self) -> str:
        """The close reason received from the server ("" if none)."""
        return "" if self.rcvd is None else self.rcvd.reason

    def __str__(self) -> str:
        if self.rcvd is None:
            if self.sent is None:
                return "no close frame received or sent"
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: both close frames carried 1000 or 1001."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed abnormally: an error code, or no close handshake at all.

    When anyws detected the problem (a protocol error, a dead peer, a lost connection), the
    exception that describes it is the `__cause__`.
    """


class PayloadTooBig(WebSocketError):
    """The server sent a message larger than `max_size` (after decompression), or a frame
    larger than the fragment limit of `max_size=(message, fragment)`.

    The connection is closed with 1009; later calls raise `ConnectionClosedError` caused by
    this exception. `fragment` says which limit it was; `size` is the size seen when it was
    passed, `max_size` that limit.
    """

    def __init__(self, size: int, max_size: int, *, fragment: bool = False) -> None:
        super().__init__(size, max_size)
        self.size = size
        self.max_size = max_size
        self.fragment = fragment

    def __str__(self) -> str:
        if self.fragment:
            return f"frame of at least {self.size} bytes exceeds the fragment limit {self.max_size}"
        return f"message of at least {self.size} bytes exceeds max_size={self.max_size}"


class ProtocolError(WebSocketError):
    """The server violated RFC 6455 / RFC 7692, or a call would make anyws violate it.

    Attributes:
        code: the close code anyws used to fail the connection (1002, 1007, ...), or None
            when the error was raised before anything was sent.
    """

    def __init__(self, msg: str, code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.code = code

    def __str__(self) -> str:
        return self.msg


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two tasks did something that only one may do at a time (e.g. two concurrent `recv`)."""


class InvalidMessageType(WebSocketError, TypeError):
    """`receive_text`, `receive_bytes` or `receive_json` got a message of the other type.

    The message is not lost: it is the `message` attribute.
    """

    def __init__(self, expected: str, message: str | bytes) -> None:
        super().__init__(expected, message)
        self.expected = expected
        self.message = message

    def __str__(self) -> str:
        got = "text" if isinstance(self.message, str) else "binary"
        return f"expected a {self.expected} message, received a {got} message"
