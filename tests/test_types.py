"""Sans-IO tests of the shared data types."""

from __future__ import annotations

import pytest

from anyws import Headers, InvalidHeader, Response


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X-One", "1")])
    assert headers["SET-COOKIE"] == "a=1, b=2"
    assert headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert list(headers) == ["Set-Cookie", "X-One"]
    assert len(headers) == 2
    assert "x-one" in headers
    assert 1 not in headers
    assert headers.get("missing") is None
    with pytest.raises(KeyError):
        headers["missing"]
    assert Headers(headers).raw_items() == headers.raw_items()
    assert Headers({"A": "1"}).raw_items() == [("A", "1")]
    assert Headers().raw_items() == []
    assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"


def test_response_status_alias() -> None:
    assert Response(404, "Not Found", Headers()).status == 404


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "missing X header"), ("", "empty X header"), ("v", "invalid X header: v")],
)
def test_invalid_header_messages(value: str | None, text: str) -> None:
    assert str(InvalidHeader("X", value)) == text
