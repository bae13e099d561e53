"""Plain data types shared by every layer: headers, the handshake request and response, and
the close frame description. No I/O, no protocol rules.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

Data: TypeAlias = str | bytes
"""A WebSocket message: `str` for a text message, `bytes` for a binary one."""

HeadersLike: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]] | Headers"
"""What the `additional_headers` option accepts."""


class Headers(Mapping[str, str]):
    """Case-insensitive HTTP headers that keep every value of a repeated field.

    `headers["name"]` returns the values of all fields with that name joined with ", " (the
    combination RFC 9110 §5.3 allows); `get_all()` returns them separately.
    """

    __slots__ = ("_items",)

    def __init__(self, items: HeadersLike | None = None) -> None:
        pairs: Iterable[tuple[str, str]]
        if items is None:
            pairs = ()
        elif isinstance(items, Headers):
            pairs = items.raw_items()
        elif isinstance(items, Mapping):
            pairs = items.items()
        else:
            pairs = items
        self._items: list[tuple[str, str]] = [(str(k), str(v)) for k, v in pairs]

    @classmethod
    def _of(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers that own `items`, whose names and values already are `str`: the
        handshake's own lists, without a copy made per connection.
        """
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._items:
            lowered = name.lower()
            if lowered not in seen:
                seen.add(lowered)
                yield name

    def __len__(self) -> int:
        return len({name.lower() for name, _ in self._items})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k, _ in self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def get_all(self, name: str) -> list[str]:
        """Return the values of every field named `name`, in order (empty if none)."""
        lowered = name.lower()
        return [value for key, value in self._items if key.lower() == lowered]

    def raw_items(self) -> list[tuple[str, str]]:
        """Return the fields as received or sent, in order, names with their original case."""
        return list(self._items)


@dataclass(frozen=True)
class Request:
    """The opening handshake request that was sent (`ClientConnection.request`)."""

    path: str
    headers: Headers


@dataclass(frozen=True)
class Response:
    """An HTTP response to the opening handshake (`ClientConnection.response`,
    `InvalidStatus.response`).

    `body` holds at most the first `MAX_BODY` bytes of a rejection's body; `body_truncated`
    says whether more was sent.
    """

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = b""
    body_truncated: bool = False

    MAX_BODY = 2**16

    @property
    def status(self) -> int:
        """The status code (alias of `status_code`, as in `websockets`)."""
        return self.status_code


@dataclass(frozen=True)
class Close:
    """A close frame that was sent or received: its status `code` and `reason`.

    A Close frame without a status code is reported with code 1005 (RFC 6455 §7.1.5).
    """

    code: int
    reason: str = field(default="")

    def __str__(self) -> str:
        explanation = CLOSE_CODE_EXPLANATIONS.get(
            self.code,
            "private use"
            if 4000 <= self.code < 5000
            else "registered"
            if self.code >= 3000
            else "unknown",
        )
        text = f"{self.code} ({explanation})"
        return f"{text} {self.reason}" if self.reason else text


class CloseCode(enum.IntEnum):
    """The close codes of RFC 6455 §7.4.1 and the IANA registry, by the names `websockets`
    gives them: `await ws.close(CloseCode.GOING_AWAY)`. Codes anyws reports are plain ints,
    which compare equal to these.
    """

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


# RFC 6455 §7.4.1 and the IANA "WebSocket Close Code Number Registry".
CLOSE_CODE_EXPLANATIONS: dict[int, str] = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received [internal]",
    1006: "connection closed abnormally [internal]",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "extension required",
    1011: "unexpected error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS failure [internal]",
}
