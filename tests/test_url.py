"""Sans-IO tests of URI parsing (RFC 6455 §3)."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from anyws import InvalidURI
from anyws._url import WebSocketURI, ip_family, parse_uri, resolve_redirect


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("ws://example.com", WebSocketURI(False, "example.com", 80, "/", "")),
        ("wss://example.com", WebSocketURI(True, "example.com", 443, "/", "")),
        (
            "ws://example.com:8080/chat?room=1",
            WebSocketURI(False, "example.com", 8080, "/chat", "room=1"),
        ),
        ("ws://EXAMPLE.com/Path", WebSocketURI(False, "example.com", 80, "/Path", "")),
        ("ws://[::1]:9000/", WebSocketURI(False, "::1", 9000, "/", "")),
        ("ws://bücher.example/", WebSocketURI(False, "xn--bcher-kva.example", 80, "/", "")),
        ("ws://h/a b/ü?q=ä x", WebSocketURI(False, "h", 80, "/a%20b/%C3%BC", "q=%C3%A4%20x")),
        ("ws://u:p%40ss@h/", WebSocketURI(False, "h", 80, "/", "", ("u", "p@ss"))),
    ],
)
def test_parse_valid(uri: str, expected: WebSocketURI) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://example.com/", "scheme isn't ws or wss"),
        ("https://example.com/", "scheme isn't ws or wss"),
        ("example.com", "scheme isn't ws or wss"),
        ("ws:///path", "hostname isn't provided"),
        ("ws://:80/", "hostname isn't provided"),
        ("ws://example.com:99999/", "out of range"),
        ("ws://example.com:port/", "port"),
        ("ws://example.com:0/", "port 0"),
        ("ws://example.com/#frag", "fragment"),
        ("ws://example.com/#", "fragment"),
        ("ws://[::1/", "Invalid IPv6 URL"),
        ("ws://user@example.com/", "username provided without password"),
        ("ws://" + "a" * 64 + ".ü/", "IDNA"),
        ("ws://bad host/", "characters a host can't have"),
        ("ws://a<b>/", "characters a host can't have"),
    ],
)
def test_parse_invalid(uri: str, message: str) -> None:
    with pytest.raises(InvalidURI, match=message) as info:
        parse_uri(uri)
    assert info.value.uri == uri
    assert "isn't a valid WebSocket URI" in str(info.value)


def test_an_invalid_uri_is_refused_every_time() -> None:
    # Parses are cached: a refusal must not be, nor turn into a result.
    for _ in range(3):
        with pytest.raises(InvalidURI):
            parse_uri("http://example.com/")


def test_a_parsed_uri_is_immutable() -> None:
    # What makes the cache safe: one connection can't change the URI another one gets.
    uri = parse_uri("ws://example.com/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        uri.host = "elsewhere.example"  # type: ignore[misc]
    assert parse_uri("ws://example.com/").host == "example.com"


@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("127.0.0.1", socket.AF_INET),
        ("::1", socket.AF_INET6),
        ("fe80::1%eth0", socket.AF_INET6),
        ("localhost", None),
        ("xn--bcher-kva.example", None),
        ("1.2.3", None),
    ],
)
def test_ip_family(host: str, family: socket.AddressFamily | None) -> None:
    assert ip_family(host) == family


def test_parse_rejects_non_str() -> None:
    with pytest.raises(InvalidURI, match="must be a str"):
        parse_uri(b"ws://example.com/")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "host_header", "resource"),
    [
        ("ws://example.com/", "example.com", "/"),
        ("ws://example.com:80/a?b", "example.com", "/a?b"),
        ("wss://example.com:443/", "example.com", "/"),
        ("wss://example.com:80/", "example.com:80", "/"),
        ("ws://[::1]:81/", "[::1]:81", "/"),
        ("ws://[::1]/", "[::1]", "/"),
    ],
)
def test_host_header_and_resource(uri: str, host_header: str, resource: str) -> None:
    parsed = parse_uri(uri)
    assert parsed.host_header == host_header
    assert parsed.resource_name == resource


@pytest.mark.parametrize(
    ("base", "location", "target"),
    [
        ("ws://a/x/y", "/z", "ws://a/z"),
        ("ws://a/x/y", "z", "ws://a/x/z"),
        ("wss://a:8443/x", "wss://b/c", "wss://b/c"),
        ("ws://a/", "http://b/c", "ws://b/c"),
        ("wss://a/", "https://b/c", "wss://b/c"),
        ("wss://a/", "ws://b/c", "ws://b/c"),
    ],
)
def test_resolve_redirect(base: str, location: str, target: str) -> None:
    assert resolve_redirect(parse_uri(base), location) == target
