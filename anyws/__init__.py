"""anyws: a WebSocket client (RFC 6455 + RFC 7692) for trio and asyncio, on anyio.

async with anyws.open_websocket("wss://example.com/ws") as ws:
    await ws.send("hello")
    print(await ws.recv())
"""

from ._client import connect, open_websocket, unix_connect
from ._connection import ClientConnection, PongWaiter
from ._exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidMessageType,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    SecurityError,
    WebSocketError,
)
from ._options import ConnectOptions, LoggerLike, Options
from ._protocol import State
from ._reconnect import Reconnecting, backoff_delays, process_exception, reconnecting
from ._types import Close, CloseCode, Data, Headers, HeadersLike, Request, Response
from ._version import __version__

__all__ = [
    "ClientConnection",
    "Close",
    "CloseCode",
    "ConcurrencyError",
    "ConnectOptions",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Data",
    "Headers",
    "HeadersLike",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidMessage",
    "InvalidMessageType",
    "InvalidProxy",
    "InvalidProxyMessage",
    "InvalidProxyStatus",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "LoggerLike",
    "NegotiationError",
    "Options",
    "PayloadTooBig",
    "PongWaiter",
    "ProtocolError",
    "ProxyError",
    "Reconnecting",
    "Request",
    "Response",
    "SecurityError",
    "State",
    "WebSocketError",
    "__version__",
    "backoff_delays",
    "connect",
    "open_websocket",
    "process_exception",
    "reconnecting",
    "unix_connect",
]
