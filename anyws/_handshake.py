"""The opening handshake, sans-IO (RFC 6455 §4.1, RFC 7692 §5 and §7).

`ClientHandshake` builds the upgrade request with h11 and validates the server's answer.
Feed it bytes; it returns an outcome (`Accepted` or `Redirect`) once it has one, and raises
an `InvalidHandshake` subclass when the server refuses or answers wrongly.

h11 is the authority on HTTP, but running it costs more than the rest of a connection's
setup, so the common case is served without it, with h11's results:

- **The request** is h11's bytes for the same headers, made once per set of headers (the
  URI, the options) and reused with each connection's own `Sec-WebSocket-Key` put in
  (`_request_template`). h11 validates every set the first time it is used.
- **A 101 response** is read by `_parse_switching_head` when its head is plain and came
  in the first read: the status line and header lines in the forms h11 accepts,
  restricted to visible ASCII, with CRLF line ends, no framing headers (`Content-Length`,
  `Transfer-Encoding`) and fields within `MAX_RESPONSE_HEAD`. It gives what h11 would
  (`tests/test_handshake_fast_path.py` compares the two on generated responses, cut into
  reads anywhere). Anything else (another status, an interim response, a rejection's
  body, an unusual byte, a head cut across reads, an early EOF) goes to h11, which then
  reads everything received so far, as it would have from the start.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import h11
from wsproto.extensions import Extension, PerMessageDeflate

from ._deflate import negotiate_deflate
from ._exceptions import (
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
    SecurityError,
)
from ._types import Headers, HeadersLike, Request, Response
from ._url import WebSocketURI
from ._version import __version__

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_RESPONSE_HEAD = 2**16  # bytes of status line + headers accepted before SecurityError

DEFAULT_USER_AGENT = f"Python/{sys.version_info.major}.{sys.version_info.minor} anyws/{__version__}"

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"

# A Sec-WebSocket-Key: 16 bytes, base64-encoded (RFC 6455 §4.1).
_KEY_FORMAT = re.compile(r"[A-Za-z0-9+/]{21}[AQgw]==")
_KEY_PLACEHOLDER = "A" * 22 + "=="
# Where h11 ends a response head (a blank line, CRLF or LF), and the forms of its status
# and header lines (RFC 9112 §4 and §5) restricted to visible ASCII, spaces and tabs: on
# such lines h11's grammar, whose character classes are wider, matches the same way.
_HEAD_END = re.compile(rb"\n\r?\n")
_SWITCHING_STATUS_LINE = re.compile(rb"HTTP/1\.1 101(?: ([\t\x20-\x7e]*))?")
_HEADER_LINE = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*((?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?)[ \t]*"
)
# h11 checks and rewrites these; a 101 response has no use for them.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


def accept_key(key: str) -> str:
    """Return the `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_key() -> str:
    """Return a fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


@dataclass(frozen=True)
class Accepted:
    """The server accepted the upgrade.

    Attributes:
        response: the 101 response.
        subprotocol: the subprotocol the server chose, or None.
        extensions: the negotiated extensions, configured, ready for wsproto.
        trailing_data: bytes received after the response: the start of the WebSocket stream.
    """

    response: Response
    subprotocol: str | None
    extensions: list[Extension]
    trailing_data: bytes


@dataclass(frozen=True)
class Redirect:
    """The server redirected the upgrade (3xx with a Location header)."""

    response: Response
    location: str


def _split_tokens(value: str) -> list[str]:
    return [token.strip() for token in value.split(",") if token.strip()]


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def parse_extension_header(value: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1) into (name, params) pairs.

    Raises:
        InvalidHeader: the value isn't well-formed.
    """
    pos = 0
    length = len(value)

    def fail() -> InvalidHeader:
        return InvalidHeader("Sec-WebSocket-Extensions", value)

    def skip_ows() -> None:
        nonlocal pos
        while pos < length and value[pos] in " \t":
            pos += 1

    def token() -> str:
        nonlocal pos
        start = pos
        while pos < length and value[pos] in _TOKEN_CHARS:
            pos += 1
        if pos == start:
            raise fail()
        return value[start:pos]

    def quoted_string() -> str:
        nonlocal pos
        pos += 1  # opening quote
        chars: list[str] = []
        while pos < length and value[pos] != '"':
            if value[pos] == "\\":
                pos += 1
                if pos == length:
                    raise fail()
            chars.append(value[pos])
            pos += 1
        if pos == length:
            raise fail()
        pos += 1  # closing quote
        return "".join(chars)

    result: list[tuple[str, list[tuple[str, str | None]]]] = []
    while True:
        skip_ows()
        if pos < length and value[pos] == ",":  # empty list elements are allowed (RFC 9110 §5.6.1)
            pos += 1
            continue
        if pos == length:
            break
        name = token()
        params: list[tuple[str, str | None]] = []
        skip_ows()
        while pos < length and value[pos] == ";":
            pos += 1
            skip_ows()
            key = token()
            skip_ows()
            param_value: str | None = None
            if pos < length and value[pos] == "=":
                pos += 1
                skip_ows()
                param_value = quoted_string() if pos < length and value[pos] == '"' else token()
                skip_ows()
            params.append((key, param_value))
        result.append((name, params))
        if pos < length and value[pos] != ",":
            raise fail()
    return result


def _format_extension(name: str, params: list[tuple[str, str | None]]) -> str:
    # The form wsproto's Extension.finalize() expects: the accepted extension as sent.
    return "; ".join([name, *(key if value is None else f"{key}={value}" for key, value in params)])


def _send_request(connection: h11.Connection, path: str, headers: list[tuple[str, str]]) -> bytes:
    """Have h11 send the request (a GET without a body) on `connection`; return its bytes.

    Raises:
        ValueError: a header name or value isn't valid HTTP (e.g. contains a newline).
    """
    try:
        request = h11.Request(method="GET", target=path, headers=headers)
        return (connection.send(request) or b"") + (connection.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError as exc:
        raise ValueError(f"invalid handshake request: {exc}") from None


@functools.lru_cache(maxsize=64)
def _request_template(path: str, headers: tuple[tuple[str, str], ...]) -> tuple[bytes, bytes]:
    """h11's bytes for a request whose Sec-WebSocket-Key is `_KEY_PLACEHOLDER`, as the parts
    before and after the key. Errors aren't cached: a bad set raises every time. The cache
    keeps the header values of the last 64 sets (credentials included) while the process
    runs.
    """
    wire = _send_request(h11.Connection(h11.CLIENT), path, list(headers))
    # The first such line is ours: it comes fourth, after lines without a CR or LF.
    line = f"\r\nSec-WebSocket-Key: {_KEY_PLACEHOLDER}\r\n".encode()
    start = wire.index(line) + len(line) - len(_KEY_PLACEHOLDER) - 2
    return wire[:start], wire[start + len(_KEY_PLACEHOLDER) :]


def _parse_switching_head(buffer: bytes) -> tuple[str, list[tuple[str, str]], int] | None:
    """Read a plain 101 response head at the start of `buffer` (see the module's docstring):
    return its reason phrase, its header fields and where the head ends, or None for h11
    to read it (not a 101, not plain, or not complete: h11 decides).
    """
    end = _HEAD_END.search(buffer)
    if end is None or not buffer.endswith(b"\r\n\r\n", 0, end.end()):
        return None
    lines = buffer[: end.start() - 1].split(b"\r\n")
    status = _SWITCHING_STATUS_LINE.fullmatch(lines[0])
    if status is None:
        return None
    reason = status.group(1)
    fields: list[tuple[str, str]] = []
    size = 0
    for line in lines[1:]:
        field = _HEADER_LINE.fullmatch(line)
        if field is None:  # an obsolete line folding, a bare LF, an unusual byte
            return None
        name, value = field.group(1).decode("ascii"), field.group(2).decode("ascii")
        if name.lower() in _FRAMING_HEADERS:
            return None
        fields.append((name, value))
        size += len(name) + len(value) + 4
    if size > MAX_RESPONSE_HEAD:  # as `ClientHandshake._process` bounds h11's result
        return None
    return ("" if reason is None else reason.decode("ascii")), fields, end.end()


class ClientHandshake:
    """The client side of the opening handshake, without I/O.

    Args:
        uri: where to connect.
        origin: the `Origin` header, or None.
        subprotocols: subprotocols to offer, in order of preference.
        extensions: wsproto extensions to offer, besides permessage-deflate.
        compression: "deflate" to offer permessage-deflate, None not to.
        additional_headers: extra request headers.
        user_agent_header: the `User-Agent`, or None to omit it.
        key: the `Sec-WebSocket-Key`; random by default (tests pin it).
        fast_path: False to have h11 build the request and read the response from the
            start (the reference the fast path is tested against; see the module).

    Raises:
        ValueError: `key` isn't 16 bytes in base64.
    """

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        extensions: Sequence[Extension] | None = None,
        compression: str | None = "deflate",
        additional_headers: HeadersLike | None = None,
        user_agent_header: str | None = DEFAULT_USER_AGENT,
        key: str | None = None,
        fast_path: bool = True,
    ) -> None:
        if key is not None and not _KEY_FORMAT.fullmatch(key):
            raise ValueError(f"invalid Sec-WebSocket-Key {key!r}: not 16 bytes in base64")
        self.key = generate_key() if key is None else key
        self.subprotocols = list(subprotocols or ())
        self.extensions = list(extensions or ())
        self._deflate_offered = compression == "deflate" and not any(
            ext.name == PerMessageDeflate.name for ext in self.extensions
        )

        extra = Headers(additional_headers)
        headers: list[tuple[str, str]] = [
            ("Host", uri.host_header),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self.key),
            ("Sec-WebSocket-Version", "13"),
        ]
        if origin is not None:
            headers.append(("Origin", origin))
        offers = [DEFLATE_OFFER] if self._deflate_offered else []
        for ext in self.extensions:
            offer = ext.offer()
            if offer:
                offers.append(ext.name if offer is True else f"{ext.name}; {offer}")
        if offers:
            headers.append(("Sec-WebSocket-Extensions", ", ".join(offers)))
        if self.subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self.subprotocols)))
        if uri.user_info is not None and "Authorization" not in extra:
            credentials = base64.b64encode(":".join(uri.user_info).encode()).decode("ascii")
            headers.append(("Authorization", f"Basic {credentials}"))
        headers.extend(extra.raw_items())
        if user_agent_header is not None and "User-Agent" not in extra:
            headers.append(("User-Agent", user_agent_header))

        self.request = Request(path=uri.resource_name, headers=Headers._of(headers))
        # The key's line is the fourth (see `_request_template`).
        template = headers.copy()
        template[3] = ("Sec-WebSocket-Key", _KEY_PLACEHOLDER)
        self._template_headers = tuple(template)
        # h11, from the start on the reference path, else once the fast path declines.
        self._h11: h11.Connection | None = None
        if not fast_path:
            self._h11 = self._new_h11()
        self._rejection: Response | None = None
        self._body = bytearray()
        self._eof_received = False

    @staticmethod
    def _new_h11() -> h11.Connection:
        return h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)

    def data_to_send(self) -> bytes:
        """Return the bytes of the upgrade request.

        Raises:
            ValueError: a header name or value isn't valid HTTP (e.g. contains a newline).
        """
        if self._h11 is not None:
            return _send_request(self._h11, self.request.path, self.request.headers.raw_items())
        before, after = _request_template(self.request.path, self._template_headers)
        return before + self.key.encode("ascii") + after

    def _reference(self) -> h11.Connection:
        """h11, made on the first call on the fast path: told of the request we sent."""
        if self._h11 is None:
            self._h11 = self._new_h11()
            _send_request(self._h11, self.request.path, self.request.headers.raw_items())
        return self._h11

    def receive_data(self, data: bytes) -> Accepted | Redirect | None:
        """Feed bytes from the server; return the outcome once it is known, else None.

        Raises:
            InvalidStatus: the server answered with a status other than 101.
            InvalidUpgrade, InvalidHeader: a 101 response with wrong headers.
            NegotiationError: the server chose something we didn't offer.
            SecurityError: the response head exceeds `MAX_RESPONSE_HEAD` bytes.
            InvalidMessage: the response isn't valid HTTP/1.1.
        """
        if self._h11 is None:
            head = _parse_switching_head(data)
            if head is not None:
                reason, fields, end = head
                return self._validate(Response(101, reason, Headers._of(fields)), data[end:])
        self._reference().receive_data(data)
        return self._process()

    def receive_eof(self) -> Accepted | Redirect | None:
        """Tell the handshake that the server closed the connection.

        Raises:
            InvalidStatus: a rejection whose body was cut short by the close.
            InvalidMessage: the connection closed before a complete response head.
        """
        if self._rejection is not None:
            raise InvalidStatus(self._rejected_response(truncated=False))
        self._eof_received = True
        self._reference().receive_data(b"")
        return self._process()

    def _rejected_response(self, *, truncated: bool) -> Response:
        assert self._rejection is not None
        return Response(
            status_code=self._rejection.status_code,
            reason_phrase=self._rejection.reason_phrase,
            headers=self._rejection.headers,
            body=bytes(self._body),
            body_truncated=truncated,
        )

    def _process(self) -> Accepted | Redirect | None:
        h11_connection = self._reference()
        while True:
            try:
                event = h11_connection.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    raise SecurityError(
                        f"handshake response exceeds {MAX_RESPONSE_HEAD} bytes"
                    ) from None
                if self._rejection is not None:
                    # A broken body after a rejection: the status is the news.
                    raise InvalidStatus(self._rejected_response(truncated=False)) from None
                if self._eof_received:
                    raise InvalidMessage(
                        "connection closed while reading HTTP response"
                    ) from EOFError(str(exc))
                raise InvalidMessage(f"invalid HTTP response: {exc}") from None
            if event is h11.NEED_DATA:
                return None
            # h11 bounds a head that arrives slowly; this bounds one that arrives at once.
            if (
                isinstance(event, (h11.InformationalResponse, h11.Response))
                and sum(len(name) + len(value) + 4 for name, value in event.headers)
                > MAX_RESPONSE_HEAD
            ):
                raise SecurityError(f"handshake response exceeds {MAX_RESPONSE_HEAD} bytes")
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return self._accept(event)
                continue  # 1xx interim responses precede the real one (RFC 9110 §15.2)
            if isinstance(event, h11.Response):
                response = Response(
                    status_code=event.status_code,
                    reason_phrase=event.reason.decode("latin-1"),
                    headers=decode_headers(event.headers.raw_items()),
                )
                location = response.headers.get("Location")
                if event.status_code in REDIRECT_STATUSES and location:
                    return Redirect(response, location)
                self._rejection = response
            elif isinstance(event, h11.Data):
                room = Response.MAX_BODY - len(self._body)
                self._body += event.data[:room]
                if len(event.data) > room:
                    raise InvalidStatus(self._rejected_response(truncated=True))
            elif isinstance(event, h11.EndOfMessage):
                raise InvalidStatus(self._rejected_response(truncated=False))
            else:  # pragma: no cover (h11 reports an EOF before the response as an error)
                raise InvalidMessage(
                    "connection closed while reading HTTP response"
                ) from EOFError()

    def check_response(
        self,
        status_code: int,
        reason_phrase: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
    ) -> Accepted:
        """Check a response that another HTTP client (httpx) read for this request.

        Raises:
            InvalidStatus: the status isn't 101 (`body`, at most `Response.MAX_BODY` bytes
                of it, goes with the response).
            InvalidUpgrade, InvalidHeader, NegotiationError: as `receive_data`.
        """
        decoded = decode_headers(headers)
        if status_code != 101:
            raise InvalidStatus(
                Response(
                    status_code,
                    reason_phrase,
                    decoded,
                    body[: Response.MAX_BODY],
                    body_truncated=len(body) > Response.MAX_BODY,
                )
            )
        return self._validate(Response(101, reason_phrase, decoded), b"")

    def _accept(self, event: h11.InformationalResponse) -> Accepted:
        response = Response(
            101, event.reason.decode("latin-1"), decode_headers(event.headers.raw_items())
        )
        trailing_data, _ = self._reference().trailing_data
        return self._validate(response, bytes(trailing_data))

    def _validate(self, response: Response, trailing_data: bytes) -> Accepted:
        # Every field's values by lower-case name, in one pass over them.
        fields: dict[str, list[str]] = {}
        for name, value in response.headers.raw_items():
            fields.setdefault(name.lower(), []).append(value)

        # RFC 6455 §4.1, server response validation, items 2 to 6.
        upgrade = fields.get("upgrade")
        if upgrade is None:
            raise InvalidUpgrade("Upgrade")
        upgrade_value = ", ".join(upgrade)
        if [token.lower() for token in _split_tokens(upgrade_value)] != ["websocket"]:
            raise InvalidUpgrade("Upgrade", upgrade_value)
        connection = fields.get("connection")
        if connection is None:
            raise InvalidUpgrade("Connection")
        connection_value = ", ".join(connection)
        if "upgrade" not in (token.lower() for token in _split_tokens(connection_value)):
            raise InvalidUpgrade("Connection", connection_value)

        accept_values = fields.get("sec-websocket-accept")
        if accept_values is None:
            raise InvalidHeader("Sec-WebSocket-Accept")
        if len(accept_values) > 1 or accept_values[0].strip() != accept_key(self.key):
            raise InvalidHeader("Sec-WebSocket-Accept", ", ".join(accept_values))

        extensions = self._negotiate_extensions(fields.get("sec-websocket-extensions", []))
        subprotocol = self._negotiate_subprotocol(fields.get("sec-websocket-protocol", []))
        return Accepted(response, subprotocol, extensions, trailing_data)

    def _negotiate_extensions(self, values: list[str]) -> list[Extension]:
        accepted: list[Extension] = []
        used: set[str] = set()
        for value in values:
            for name, params in parse_extension_header(value):
                if name in used:
                    raise NegotiationError(f"extension {name} accepted twice")
                used.add(name)
                if name == PerMessageDeflate.name and self._deflate_offered:
                    accepted.append(negotiate_deflate(params))
                    continue
                for ext in self.extensions:
                    if ext.name == name:
                        try:
                            ext.finalize(_format_extension(name, params))
                        except ValueError as exc:
                            raise NegotiationError(
                                f"invalid parameters for extension {name}: {exc}"
                            ) from None
                        accepted.append(ext)
                        break
                else:
                    raise NegotiationError(f"server accepted an extension we didn't offer: {name}")
        return accepted

    def _negotiate_subprotocol(self, values: list[str]) -> str | None:
        if not values:
            return None
        tokens = [token for value in values for token in _split_tokens(value)]
        if len(tokens) != 1:
            raise NegotiationError(f"server chose several subprotocols: {', '.join(tokens)}")
        if tokens[0] not in self.subprotocols:
            offered = ", ".join(self.subprotocols) or "none"
            raise NegotiationError(
                f"server chose a subprotocol we didn't offer: {tokens[0]} (offered: {offered})"
            )
        return tokens[0]


def decode_headers(raw: list[tuple[bytes, bytes]]) -> Headers:
    """Turn h11's raw header pairs into `Headers`."""
    # Header values are opaque octets (RFC 9110 §5.5); latin-1 maps each to one character.
    return Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)
