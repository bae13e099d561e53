"""The handshake's fast path against h11, its reference (see `anyws/_handshake.py`).

Hypothesis generates request options and server responses, plain and otherwise (every
status class, unusual bytes, bare LFs, folded lines, framing headers, EOFs, heads of any
size), cuts them into reads anywhere, and feeds them to two `ClientHandshake`s: one on
the fast path, one with `fast_path=False`, where h11 does everything. Both must give the
same bytes to send and the same outcome or error after every step.
"""

from __future__ import annotations

import base64
import functools
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyws import InvalidHandshake, InvalidStatus
from anyws._handshake import (
    MAX_RESPONSE_HEAD,
    Accepted,
    ClientHandshake,
    Redirect,
    _parse_switching_head,
    _request_template,
    accept_key,
)
from anyws._types import Response
from anyws._url import parse_uri

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = accept_key(KEY)

keys = st.binary(min_size=16, max_size=16).map(lambda raw: base64.b64encode(raw).decode())
# Characters that h11 treats differently (controls, NUL, DEL, obs-text, whitespace) mixed
# with ordinary ones.
odd_text = st.text(alphabet='ab ;,="\t\r\n\x00\x01\x0b\x7f\x80é\xff:', max_size=8)
tokens = st.text(alphabet="abcXYZ09-!#$%&'*+.^_`|~", min_size=1, max_size=8)


def describe_response(response: Response) -> tuple[object, ...]:
    return (
        response.status_code,
        response.reason_phrase,
        response.headers.raw_items(),
        response.body,
        response.body_truncated,
    )


def outcome(call: Callable[[], Any]) -> tuple[object, ...]:
    """What a call on a handshake gave: its result or its error, comparably."""
    try:
        result = call()
    except (InvalidHandshake, ValueError) as exc:
        cause = exc.__cause__
        details: tuple[object, ...] = ("raised", type(exc), str(exc), type(cause), str(cause))
        if isinstance(exc, InvalidStatus):
            details += describe_response(exc.response)
        return details
    if result is None:
        return ("waiting",)
    if isinstance(result, bytes):  # the request
        return ("sent", result)
    if isinstance(result, Redirect):
        return ("redirect", result.location, *describe_response(result.response))
    assert isinstance(result, Accepted)
    extensions = [
        (type(ext).__name__, sorted(vars(ext).items(), key=str)) for ext in result.extensions
    ]
    return (
        "accepted",
        result.subprotocol,
        result.trailing_data,
        repr(extensions),
        *describe_response(result.response),
    )


# -- the request --------------------------------------------------------------------------


request_options = st.fixed_dictionaries(
    {
        "uri": st.sampled_from(
            ["ws://h/", "ws://example.com:8080/chat?x=1", "wss://u:p%20w@h/a/b", "ws://[::1]:9/"]
        ),
        "origin": st.none() | st.sampled_from(["http://h", "bad\r\norigin"]),
        "subprotocols": st.lists(tokens | odd_text, max_size=2),
        "additional_headers": st.lists(st.tuples(tokens | odd_text, tokens | odd_text), max_size=3),
        "user_agent_header": st.none() | tokens | odd_text,
        "compression": st.sampled_from(["deflate", None]),
        "key": keys,
    }
)


@settings(max_examples=300, deadline=None)
@given(options=request_options)
def test_request_bytes_are_h11s(options: dict[str, Any]) -> None:
    uri = parse_uri(options.pop("uri"))
    fast = ClientHandshake(uri, **options)
    expected = outcome(ClientHandshake(uri, **options, fast_path=False).data_to_send)
    assert outcome(fast.data_to_send) == expected
    # Once more: from the template h11 made the first time.
    assert outcome(ClientHandshake(uri, **options).data_to_send) == expected


def test_request_template_is_made_once_per_set_of_headers() -> None:
    _request_template.cache_clear()
    for key in (KEY, "AAAAAAAAAAAAAAAAAAAAAA==", "/////////////////////w=="):
        data = ClientHandshake(parse_uri("ws://h/"), key=key).data_to_send()
        assert f"\r\nSec-WebSocket-Key: {key}\r\n".encode() in data
    assert _request_template.cache_info().misses == 1


@pytest.mark.parametrize(
    "key", ["short", "dGhlIHNhbXBsZSBub25jZQ==\r\nX: y", "dGhlIHNhbXBsZSBub25jZR=="]
)
def test_a_pinned_key_must_be_16_bytes_in_base64(key: str) -> None:
    with pytest.raises(ValueError, match="invalid Sec-WebSocket-Key"):
        ClientHandshake(parse_uri("ws://h/"), key=key)


# -- the response -------------------------------------------------------------------------

status_lines = st.sampled_from(
    [
        "HTTP/1.1 101 Switching Protocols",
        "HTTP/1.1 101",
        "HTTP/1.1 101 ",
        "HTTP/1.1 101 \tOK\t",
        "HTTP/1.1 101 caf\xe9",
        "HTTP/1.1 101 \x01",
        "HTTP/1.0 101 Switching Protocols",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 302 Found",
        "HTTP/1.1 403 Forbidden",
        "HTTP/1.1 1010 Nope",
        "HTTP/2 101",
        " HTTP/1.1 101 Switching Protocols",
        "garbage",
        "",
    ]
)
header_lines = st.one_of(
    st.sampled_from(
        [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {ACCEPT}",
            f"Sec-WebSocket-Accept:\t{ACCEPT} ",
            "Sec-WebSocket-Accept: wrong",
            "Sec-WebSocket-Protocol: chat",
            "Sec-WebSocket-Extensions: permessage-deflate",
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10",
            "Content-Length: 0",
            "Content-Length: 3",
            "content-length: 1, 1",
            "Transfer-Encoding: chunked",
            "Location: /elsewhere",
            "Upgrade:",
            "X-Spaces:   a  b   ",
            " folded continuation",
            "\tfolded",
            "Bad Name: x",
            "no colon",
            ": empty name",
        ]
    ),
    st.builds(lambda name, value: f"{name}: {value}", tokens, odd_text),
)
line_ends = st.sampled_from(["\r\n"] * 9 + ["\n"])
upgrade_lines = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {ACCEPT}"]


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """Mostly a 101 that upgrades, with other lines mixed in and some of its own left out,
    so that every way of ending is reached: accepted, refused, waiting, invalid.
    """
    status = draw(st.sampled_from(["HTTP/1.1 101 Switching Protocols"]) | status_lines)
    kept = [line for line in upgrade_lines if draw(st.integers(0, 9))]
    lines = draw(st.permutations([*kept, *draw(st.lists(header_lines, max_size=3))]))
    head = "".join(line + draw(line_ends) for line in [status, *lines])
    head += draw(st.sampled_from(["\r\n"] * 8 + ["\n", ""]))  # the blank line, or not yet
    return head.encode("latin-1") + draw(st.binary(max_size=12))


def feed_both(data: bytes, cuts: list[int], eof: bool) -> None:
    fast = ClientHandshake(parse_uri("ws://h/"), subprotocols=["chat"], key=KEY)
    reference = ClientHandshake(
        parse_uri("ws://h/"), subprotocols=["chat"], key=KEY, fast_path=False
    )
    assert fast.data_to_send() == reference.data_to_send()
    bounds = sorted({0, *(cut for cut in cuts if 0 < cut < len(data)), len(data)})
    for start, end in itertools.pairwise(bounds):
        chunk = data[start:end]
        result = outcome(functools.partial(fast.receive_data, chunk))
        assert result == outcome(functools.partial(reference.receive_data, chunk))
        if result != ("waiting",):
            return
    if eof:
        assert outcome(fast.receive_eof) == outcome(reference.receive_eof)


@settings(max_examples=1000, deadline=None)
@given(data=responses(), cuts=st.lists(st.integers(0, 400), max_size=3), eof=st.booleans())
def test_response_outcomes_are_h11s(data: bytes, cuts: list[int], eof: bool) -> None:
    feed_both(data, cuts, eof)


@pytest.mark.parametrize("padding", [-5, -1, 0, 1, 5])
@pytest.mark.parametrize("fields", [1, 500])
def test_heads_around_the_size_bound(padding: int, fields: int) -> None:
    # The bound applies to the buffered bytes while the head is incomplete (h11), and to
    # the size of the fields once it is complete: both sides of it, in one read or two.
    status_line = "HTTP/1.1 101 OK\r\n"
    lines = [
        "Upgrade: websocket\r\n",
        "Connection: Upgrade\r\n",
        f"Sec-WebSocket-Accept: {ACCEPT}\r\n",
        *(f"X{index}: v\r\n" for index in range(fields - 1)),
    ]
    # A field "name: value\r\n" counts as its length: len(name) + len(value) + 4.
    room = MAX_RESPONSE_HEAD - sum(map(len, lines)) - len("Y: \r\n") + padding
    head = status_line + "".join(lines) + f"Y: {'y' * room}\r\n\r\n"
    for cuts in ([], [len(head) // 2]):
        feed_both(head.encode() + b"\x81\x00", cuts, eof=True)


def test_a_plain_101_is_read_without_h11() -> None:
    head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX:\t a  b \r\n\r\n"
    assert _parse_switching_head(head.encode() + b"rest") == (
        "Switching Protocols",
        [("Upgrade", "websocket"), ("X", "a  b")],
        len(head),
    )
    handshake = ClientHandshake(parse_uri("ws://h/"), key=KEY)
    handshake.data_to_send()
    outcome = handshake.receive_data(
        f"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {ACCEPT}\r\n\r\nrest".encode()
    )
    assert isinstance(outcome, Accepted)
    assert outcome.trailing_data == b"rest"
    assert handshake._h11 is None


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 101 OK\r\nX: 1\r\n",  # not complete
        b"HTTP/1.1 101 OK\nX: 1\n\n",  # bare LFs
        b"\r\n\r\n",
        b"HTTP/1.1 101 OK\r\n folded\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nX: caf\xc3\xa9\r\n\r\n",
        b"HTTP/1.1 101 caf\xe9\r\nUpgrade: websocket\r\n\r\n",  # obs-text in the reason
        b"HTTP/1.1 101 O\x0bK\r\nUpgrade: websocket\r\n\r\n",  # h11 refuses VT there
        b"HTTP/1.1 101 O\x00K\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nX: a\x00b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
    ],
)
def test_unusual_heads_are_left_to_h11(head: bytes) -> None:
    assert _parse_switching_head(head) is None
    feed_both(head, [], eof=True)  # and h11 decides, on both paths alike
