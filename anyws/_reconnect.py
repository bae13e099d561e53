"""`reconnecting()`: a structured reconnection loop.

    async with anyws.reconnecting(uri) as connections:
        async for ws in connections:
            ...

Each connection is an `open_websocket` context entered by `__anext__` and left by the next
`__anext__` or by the exit of the block, all in the task that runs the loop: the
connection's task group nests inside the block like any `async with`, and nothing runs
once the block is left. A failure to connect, or the end of a connection that the server
or the network closed, goes to `process_exception`: None retries after a backoff delay,
an exception is raised from the `async for` as itself.
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from ._client import _WebSocketContext, open_websocket
from ._connection import ClientConnection
from ._exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidMessage,
    InvalidStatus,
)
from ._options import ConnectOptions

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["Reconnecting", "process_exception", "reconnecting"]

# As `websockets`' defaults in scale: about 3 s at first, at most 90 s.
DEFAULT_BACKOFF = (3.1, 1.618, 90.0)
# Closes of an established connection worth reconnecting after (RFC 6455 §7.4.1): abnormal
# closure, internal error, service restart, try again later. 1008 (policy violation) and
# the others mean the server doesn't want this client back as it is.
RETRYABLE_CLOSE_CODES = frozenset({1006, 1011, 1012, 1013})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
# With `delays=`, how long a connection must stay up for the delays to start over.
RESET_AFTER = 60.0

logger = logging.getLogger("anyws.client")


def process_exception(exc: Exception) -> Exception | None:
    """Decide whether a failure is worth reconnecting after, as in `websockets`.

    Returns None (retry) for errors that may go away: network errors and timeouts, a server
    closing the connection during the handshake, HTTP 500, 502, 503 and 504, and an
    established connection closed with 1006, 1011, 1012 or 1013 (or without a close
    frame). Returns `exc`, to be raised, for anything else (another status such as 403, a
    close with 1008 or another code, a bad URI, a failed negotiation).
    """
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if isinstance(exc, ConnectionClosedError) and rcvd is None:
            return None  # no close frame: the network, or a server that went away (1006)
        return None if rcvd is not None and rcvd.code in RETRYABLE_CLOSE_CODES else exc
    if isinstance(exc, (OSError, TimeoutError)):
        return None
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError):
        return None
    if isinstance(exc, InvalidStatus) and exc.response.status_code in RETRYABLE_STATUSES:
        return None
    return exc


def backoff_delays(initial: float, factor: float, maximum: float) -> Iterator[float]:
    """Exponential backoff with full jitter: the n-th delay is drawn uniformly from
    [0, min(maximum, initial * factor**n)], so that clients that lost the same server don't
    come back at the same moment.
    """
    ceiling = initial
    while True:
        yield random.uniform(0, min(maximum, ceiling))
        ceiling *= factor


class Reconnecting:
    """What `reconnecting()` returns: enter it with `async with`, then iterate over it with
    `async for` to get a connection, and a fresh one each time round.
    """

    def __init__(
        self,
        uri: str,
        options: ConnectOptions,
        process_exception: Callable[[Exception], Exception | None],
        delays: Callable[[], Iterable[float]],
        reset_after: float,
    ) -> None:
        self._uri = uri
        self._options = options
        self._process_exception = process_exception
        self._make_delays = delays
        self._delays: Iterator[float] = iter(delays())
        self._reset_after = reset_after
        self._entered = False
        self._context: _WebSocketContext | None = None
        self._connection: ClientConnection | None = None
        self._connected_at = 0.0

    async def __aenter__(self) -> Reconnecting:
        if self._entered:
            raise RuntimeError("this reconnecting() context is already in use")
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The current connection closes as a block would: 1000, 1011 if the loop raised,
        # 1001 without waiting if it was cancelled. The exception leaves unchanged.
        await self._leave_current(exc)

    def __aiter__(self) -> Reconnecting:
        return self

    async def __anext__(self) -> ClientConnection:
        """Close the current connection (if any) and return a new one, retrying as
        `process_exception` says.

        Raises:
            RuntimeError: outside the `async with` block.
            Exception: what `process_exception` returned for a failure, as itself.
        """
        if not self._entered:
            raise RuntimeError("use `async for` inside `async with anyws.reconnecting(...)`")
        delay = self._after_connection()
        await self._leave_current(None)
        while True:
            if delay is not None:
                await anyio.sleep(delay)
            context = open_websocket(self._uri, **self._options)
            try:
                connection = await context.__aenter__()
            except Exception as exc:
                error = self._process_exception(exc)
                if error is exc:
                    raise
                if error is not None:
                    raise error from exc
                delay = self._next_delay(exc)
                continue
            self._context, self._connection = context, connection
            self._connected_at = anyio.current_time()
            return connection

    def _after_connection(self) -> float | None:
        """The delay before the next attempt, after the current connection (if any)."""
        connection = self._connection
        if connection is None or not connection.closed:
            return None  # the first attempt, or the loop moved on from an open connection
        closed = connection._protocol.close_exc()
        # A normal close (1000, 1001: the server restarts) ends a connection, not the loop.
        if not isinstance(closed, ConnectionClosedOK):
            error = self._process_exception(closed)
            if error is not None:
                raise error
        if anyio.current_time() - self._connected_at >= self._reset_after:
            self._delays = iter(self._make_delays())  # it stayed up: start over
        return self._next_delay(closed)

    def _next_delay(self, cause: Exception) -> float:
        delay = next(self._delays, None)
        if delay is None:
            raise cause  # the delays ran out: give up with the last failure
        logger.info("reconnecting to %s in %.1f s after %s", self._uri, delay, _describe(cause))
        return delay

    async def _leave_current(self, exc: BaseException | None) -> None:
        context, self._context = self._context, None
        if context is not None:
            if exc is None:
                await context.__aexit__(None, None, None)
            else:
                await context.__aexit__(type(exc), exc, exc.__traceback__)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def reconnecting(
    uri: str,
    *,
    process_exception: Callable[[Exception], Exception | None] = process_exception,
    backoff: tuple[float, float, float] = DEFAULT_BACKOFF,
    delays: Callable[[], Iterable[float]] | None = None,
    **options: Unpack[ConnectOptions],
) -> Reconnecting:
    """Connect, and connect again after each failure worth retrying.

        async with anyws.reconnecting(uri) as connections:
            async for ws in connections:
                try:
                    await ws.send(subscribe)
                    async for message in ws:
                        ...
                except anyws.ConnectionClosed:
                    continue  # the next round reconnects, or raises if it shouldn't

    Each round of the loop closes the previous connection (if it is still open) and opens a
    new one: at once if the loop moved on from an open connection, after a backoff delay if
    the server closed it normally (1000, 1001). A failure to connect, and an established
    connection that the server or the network closed abnormally, go to
    `process_exception`; when it returns None, the next attempt waits a backoff delay,
    logged at INFO on the "anyws.client" logger with the delay and the cause. The delays
    start over after a connection that stayed up at least as long as the longest backoff
    delay (60 s with `delays`). Leaving the loop or the block closes
    the current connection; no task outlives the block and no exception group leaves it.

    Args:
        uri: as in `open_websocket`.
        process_exception: called with each failure; return None to retry, or an
            exception to raise (the default is `anyws.process_exception`).
        backoff: (initial, factor, maximum) seconds of exponential backoff with full
            jitter (see `backoff_delays`).
        delays: instead of `backoff`, a function returning a fresh iterable of delays in
            seconds; when it runs out, the last failure is raised.
        **options: the options of `open_websocket`.

    Returns:
        An async context manager whose value is an async iterator of `ClientConnection`.

    Raises:
        InvalidURI, ValueError, TypeError: at the call, as `open_websocket`.
        Exception: from the `async for`, what `process_exception` returned, as itself (an
            `InvalidStatus` 403 is an `InvalidStatus`, a close with 1008 a
            `ConnectionClosedError`).
    """
    initial, factor, maximum = backoff
    if initial < 0 or factor < 1 or maximum < initial:
        raise ValueError(
            f"backoff must be (initial >= 0, factor >= 1, maximum >= initial), not {backoff}"
        )
    if delays is None:

        def delays() -> Iterator[float]:
            return backoff_delays(initial, factor, maximum)

        reset_after = maximum
    else:
        reset_after = RESET_AFTER
    open_websocket(uri, **options)  # checks the URI and the options now
    return Reconnecting(uri, options, process_exception, delays, reset_after)
