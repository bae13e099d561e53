"""Sans-IO parts of the transport layer: one error for every failed connection attempt."""

from __future__ import annotations

import sys

from anyws._transport import attempt_errors, connect_error

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


def test_connect_error_keeps_every_attempt() -> None:
    refused = [ConnectionRefusedError(111, "refused"), ConnectionRefusedError(111, "again")]
    error = connect_error(refused)
    assert error is refused[0]
    assert list(error.__cause__.exceptions) == refused  # type: ignore[union-attr]
    mixed: list[OSError] = [ConnectionRefusedError(111, "refused"), TimeoutError("slow")]
    error = connect_error(mixed)
    assert type(error) is OSError
    assert "ConnectionRefusedError" in str(error)
    assert "TimeoutError: slow" in str(error)
    assert list(error.__cause__.exceptions) == mixed  # type: ignore[union-attr]
    single = OSError("unreachable")
    assert connect_error([single]) is single
    assert single.__cause__ is None


def test_attempt_errors() -> None:
    refused = ConnectionRefusedError(111, "refused")
    assert attempt_errors(None) == []
    assert attempt_errors(refused) == [refused]
    group = ExceptionGroup("attempts", [refused, TimeoutError("slow")])
    assert attempt_errors(group) == list(group.exceptions)
