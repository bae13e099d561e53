"""Sans-IO tests of the opening handshake against h11 and wsproto server objects."""

from __future__ import annotations

import base64
import zlib

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.extensions import PerMessageDeflate

from anyws import (
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
    SecurityError,
)
from anyws._deflate import NegotiatedDeflate, negotiate_deflate
from anyws._handshake import (
    DEFAULT_USER_AGENT,
    Accepted,
    ClientHandshake,
    Redirect,
    accept_key,
    parse_extension_header,
)
from anyws._url import parse_uri

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def server_request(handshake: ClientHandshake) -> tuple[WSConnection, Request]:
    """Feed the client's request to a wsproto server; return it and the Request event."""
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(handshake.data_to_send())
    (event,) = list(server.events())
    assert isinstance(event, Request)
    return server, event


def response(status: str, *headers: str, body: bytes = b"") -> bytes:
    head = "\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n"
    return head.encode() + body


def switching(*headers: str, key: str = KEY) -> bytes:
    return response(
        "101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
        *headers,
    )


def test_accept_key_rfc_example() -> None:
    # RFC 6455 §1.3
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_request_is_what_a_server_accepts() -> None:
    handshake = ClientHandshake(
        parse_uri("ws://example.com:8080/chat?x=1"),
        origin="http://example.com",
        subprotocols=["v2", "v1"],
        additional_headers={"X-Token": "abc"},
    )
    server, request = server_request(handshake)
    assert request.host == "example.com:8080"
    assert request.target == "/chat?x=1"
    assert request.subprotocols == ["v2", "v1"]
    assert request.extensions == ["permessage-deflate; client_max_window_bits"]
    headers = dict(request.extra_headers)
    assert headers[b"origin"] == b"http://example.com"
    assert headers[b"x-token"] == b"abc"
    assert headers[b"user-agent"] == DEFAULT_USER_AGENT.encode()
    assert handshake.request.headers["Sec-WebSocket-Version"] == "13"
    assert len(base64.b64decode(handshake.key)) == 16

    reply = server.send(AcceptConnection(subprotocol="v1", extensions=[PerMessageDeflate()]))
    outcome = handshake.receive_data(reply + b"\x81\x02hi")
    assert isinstance(outcome, Accepted)
    assert outcome.subprotocol == "v1"
    assert outcome.trailing_data == b"\x81\x02hi"
    (deflate,) = outcome.extensions
    assert isinstance(deflate, NegotiatedDeflate)
    assert outcome.response.status_code == 101


def test_user_agent_and_compression_options() -> None:
    handshake = ClientHandshake(
        parse_uri("ws://h/"), user_agent_header=None, compression=None, key=KEY
    )
    _, request = server_request(handshake)
    assert request.extensions == []
    assert b"user-agent" not in dict(request.extra_headers)
    custom = ClientHandshake(
        parse_uri("ws://h/"), additional_headers=[("User-Agent", "mine")], key=KEY
    )
    assert custom.request.headers.get_all("User-Agent") == ["mine"]


def test_basic_auth_from_uri() -> None:
    handshake = ClientHandshake(parse_uri("ws://user:pa%20ss@h/"), key=KEY)
    expected = base64.b64encode(b"user:pa ss").decode()
    assert handshake.request.headers["Authorization"] == f"Basic {expected}"
    explicit = ClientHandshake(
        parse_uri("ws://user:pass@h/"), additional_headers={"Authorization": "Bearer t"}
    )
    assert explicit.request.headers.get_all("authorization") == ["Bearer t"]


def test_invalid_header_value_is_value_error() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), additional_headers={"X": "a\r\nb: c"})
    with pytest.raises(ValueError, match="invalid handshake request"):
        handshake.data_to_send()


def test_response_split_across_reads() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    data = switching()
    for byte in data[:-1]:
        assert handshake.receive_data(bytes([byte])) is None
    assert isinstance(handshake.receive_data(data[-1:]), Accepted)


def test_interim_response_is_skipped() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    outcome = handshake.receive_data(response("100 Continue") + switching())
    assert isinstance(outcome, Accepted)


def test_rejection_with_body() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    server, _ = server_request(handshake)
    reply = server.send(
        RejectConnection(
            status_code=403, headers=[(b"content-length", b"6"), (b"X-Why", b"no")], has_body=True
        )
    )
    reply += server.send(RejectData(data=b"denied"))
    with pytest.raises(InvalidStatus) as info:
        handshake.receive_data(reply)
    assert info.value.response.status_code == 403
    assert info.value.response.status == 403
    assert info.value.response.headers["x-why"] == "no"
    assert info.value.response.body == b"denied"
    assert not info.value.response.body_truncated
    assert "HTTP 403" in str(info.value)


def test_rejection_body_until_eof() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    assert (
        handshake.receive_data(response("200 OK", "Content-Type: text/html", body=b"<html>"))
        is None
    )
    with pytest.raises(InvalidStatus) as info:
        handshake.receive_eof()
    assert info.value.response.body == b"<html>"
    assert info.value.response.reason_phrase == "OK"


def test_rejection_body_is_bounded() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    big = b"x" * (2**16 + 10)
    with pytest.raises(InvalidStatus) as info:
        handshake.receive_data(response("500 Oops", f"Content-Length: {len(big)}", body=big))
    assert info.value.response.body_truncated
    assert len(info.value.response.body) == 2**16


def test_rejection_with_broken_body() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    with pytest.raises(InvalidStatus) as info:
        handshake.receive_data(response("503 Busy", "Transfer-Encoding: chunked", body=b"zz\r\n"))
    assert info.value.response.status_code == 503


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect(status: int) -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    outcome = handshake.receive_data(
        response(f"{status} Moved", "Location: /elsewhere", "Content-Length: 0")
    )
    assert isinstance(outcome, Redirect)
    assert outcome.location == "/elsewhere"


def test_redirect_without_location_is_rejection() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    with pytest.raises(InvalidStatus):
        handshake.receive_data(response("302 Found", "Content-Length: 0"))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"garbage\r\n\r\n", InvalidMessage, "invalid HTTP response"),
        (b"HTTP/1.1 101 OK\r\n" + b"X: " + b"a" * 70000, SecurityError, "exceeds"),
        (
            response("101 OK", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept_key(KEY)}"),
            InvalidUpgrade,
            "missing Upgrade",
        ),
        (
            response("101 OK", "Upgrade: h2c", "Connection: Upgrade"),
            InvalidUpgrade,
            "invalid Upgrade header: h2c",
        ),
        (response("101 OK", "Upgrade: websocket"), InvalidUpgrade, "missing Connection"),
        (response("101 OK", "Upgrade: "), InvalidUpgrade, "empty Upgrade header"),
        (
            response("101 OK", "Upgrade: websocket", "Connection: close"),
            InvalidUpgrade,
            "invalid Connection",
        ),
        (
            response("101 OK", "Upgrade: websocket", "Connection: Upgrade"),
            InvalidHeader,
            "missing Sec-WebSocket-Accept",
        ),
        (
            response(
                "101 OK", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: nope"
            ),
            InvalidHeader,
            "invalid Sec-WebSocket-Accept header: nope",
        ),
        (
            switching(f"Sec-WebSocket-Accept: {accept_key(KEY)}"),
            InvalidHeader,
            "invalid Sec-WebSocket-Accept",
        ),
        (switching("Sec-WebSocket-Protocol: chat"), NegotiationError, "didn't offer: chat"),
        (
            switching("Sec-WebSocket-Extensions: x-unknown"),
            NegotiationError,
            "didn't offer: x-unknown",
        ),
        (
            switching("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate"),
            NegotiationError,
            "accepted twice",
        ),
        (
            switching("Sec-WebSocket-Extensions: permessage-deflate; foo"),
            NegotiationError,
            "unknown permessage-deflate parameter",
        ),
        (
            switching("Sec-WebSocket-Extensions: permessage-deflate; ="),
            InvalidHeader,
            "Sec-WebSocket-Extensions",
        ),
    ],
)
def test_invalid_responses(data: bytes, error: type[Exception], message: str) -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    with pytest.raises(error, match=message):
        handshake.receive_data(data)


def test_subprotocol_negotiation() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), subprotocols=["a", "b"], key=KEY)
    handshake.data_to_send()
    with pytest.raises(NegotiationError, match="several subprotocols"):
        handshake.receive_data(switching("Sec-WebSocket-Protocol: a, b"))
    handshake = ClientHandshake(parse_uri("ws://h/"), subprotocols=["a", "b"], key=KEY)
    handshake.data_to_send()
    outcome = handshake.receive_data(switching())
    assert isinstance(outcome, Accepted)
    assert outcome.subprotocol is None  # a server may decline every subprotocol


def test_eof_before_response() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    with pytest.raises(InvalidMessage, match="connection closed") as info:
        handshake.receive_eof()
    assert isinstance(info.value.__cause__, EOFError)


def test_eof_in_the_middle_of_a_response() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    handshake.receive_data(b"HTTP/1.1 101 Switching")
    with pytest.raises(InvalidMessage, match="connection closed") as info:
        handshake.receive_eof()
    assert isinstance(info.value.__cause__, EOFError)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a", [("a", [])]),
        ("a, b", [("a", []), ("b", [])]),
        (" , a ,", [("a", [])]),
        ("a; x; y=1", [("a", [("x", None), ("y", "1")])]),
        ('a; y="1"', [("a", [("y", "1")])]),
        ('a; y="\\1"', [("a", [("y", "1")])]),
        ("a ; x = 2 , b", [("a", [("x", "2")]), ("b", [])]),
    ],
)
def test_parse_extension_header(header: str, expected: object) -> None:
    assert parse_extension_header(header) == expected


@pytest.mark.parametrize("header", ["a b", "a; ", 'a; y="1', 'a; y="\\', "a;=1", "é"])
def test_parse_extension_header_invalid(header: str) -> None:
    with pytest.raises(InvalidHeader):
        parse_extension_header(header)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([], (False, False, 15, 15, True)),
        ([("server_no_context_takeover", None)], (False, True, 15, 15, True)),
        ([("client_no_context_takeover", None)], (True, False, 15, 15, True)),
        (
            [("client_max_window_bits", "10"), ("server_max_window_bits", "12")],
            (False, False, 10, 12, True),
        ),
        ([("server_max_window_bits", "8")], (False, False, 15, 9, True)),
        ([("client_max_window_bits", "8")], (False, False, 9, 15, False)),
    ],
)
def test_negotiate_deflate(
    params: list[tuple[str, str | None]], expected: tuple[object, ...]
) -> None:
    deflate = negotiate_deflate(params)
    assert (
        deflate.client_no_context_takeover,
        deflate.server_no_context_takeover,
        deflate.client_max_window_bits,
        deflate.server_max_window_bits,
        deflate.compress_outbound,
    ) == expected
    assert deflate.enabled()
    assert deflate.offer() == "client_max_window_bits"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("server_max_window_bits", None)], "invalid"),
        ([("server_max_window_bits", "7")], "invalid"),
        ([("server_max_window_bits", "16")], "invalid"),
        ([("client_max_window_bits", "010")], "invalid"),
        ([("client_max_window_bits", "x")], "invalid"),
        ([("server_no_context_takeover", "1")], "takes no value"),
        ([("server_no_context_takeover", None)] * 2, "duplicate"),
    ],
)
def test_negotiate_deflate_invalid(params: list[tuple[str, str | None]], message: str) -> None:
    with pytest.raises(NegotiationError, match=message):
        negotiate_deflate(params)


def test_window_bits_8_sends_uncompressed() -> None:
    from wsproto.frame_protocol import FrameProtocol, Opcode, RsvBits

    deflate = negotiate_deflate([("client_max_window_bits", "8")])
    proto = FrameProtocol(client=True, extensions=[deflate])
    rsv, data = deflate.frame_outbound(
        proto, Opcode.TEXT, RsvBits(False, False, False), b"abc", True
    )
    assert (rsv.rsv1, data) == (False, b"abc")
    normal = negotiate_deflate([])
    rsv, data = normal.frame_outbound(
        proto, Opcode.TEXT, RsvBits(False, False, False), b"abc" * 10, True
    )
    assert rsv.rsv1
    assert zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff") == b"abc" * 10


class CustomExtension(PerMessageDeflate):
    name = "x-custom"

    def offer(self) -> bool:
        return True

    def finalize(self, offer: str) -> None:
        if offer.endswith("bad"):
            raise ValueError("bad parameter")
        self.finalized_with = offer


def test_user_extensions() -> None:
    custom = CustomExtension()
    handshake = ClientHandshake(
        parse_uri("ws://h/"), extensions=[custom], compression="deflate", key=KEY
    )
    assert handshake.request.headers["Sec-WebSocket-Extensions"] == (
        "permessage-deflate; client_max_window_bits, x-custom"
    )
    handshake.data_to_send()
    outcome = handshake.receive_data(switching("Sec-WebSocket-Extensions: x-custom; a=1; b"))
    assert isinstance(outcome, Accepted)
    assert outcome.extensions == [custom]
    assert custom.finalized_with == "x-custom; a=1; b"


class SilentExtension(CustomExtension):
    name = "x-silent"

    def offer(self) -> bool:
        return False


def test_extensions_that_decline_to_offer_and_several_extensions() -> None:
    first, second = SilentExtension(), CustomExtension()
    handshake = ClientHandshake(
        parse_uri("ws://h/"), extensions=[first, second], compression=None, key=KEY
    )
    assert handshake.request.headers["Sec-WebSocket-Extensions"] == "x-custom"
    handshake.data_to_send()
    outcome = handshake.receive_data(switching("Sec-WebSocket-Extensions: x-custom"))
    assert isinstance(outcome, Accepted)
    assert outcome.extensions == [second]


def test_user_extension_bad_parameters() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), extensions=[CustomExtension()], key=KEY)
    handshake.data_to_send()
    with pytest.raises(NegotiationError, match="bad parameter"):
        handshake.receive_data(switching("Sec-WebSocket-Extensions: x-custom; bad"))


def test_user_permessage_deflate_replaces_ours() -> None:
    mine = PerMessageDeflate(client_max_window_bits=10)
    handshake = ClientHandshake(parse_uri("ws://h/"), extensions=[mine], key=KEY)
    assert handshake.request.headers["Sec-WebSocket-Extensions"].startswith(
        "permessage-deflate; client_max_window_bits=10"
    )
    handshake.data_to_send()
    outcome = handshake.receive_data(
        switching("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=11")
    )
    assert isinstance(outcome, Accepted)
    assert outcome.extensions == [mine]
    assert mine.server_max_window_bits == 11


def test_h11_server_sees_a_valid_request() -> None:
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    server = h11.Connection(h11.SERVER)
    server.receive_data(handshake.data_to_send())
    event = server.next_event()
    assert isinstance(event, h11.Request)
    assert event.method == b"GET"
    assert dict(event.headers)[b"sec-websocket-key"] == KEY.encode()
