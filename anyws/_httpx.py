"""The opening handshake through an httpx client (the `httpx` extra): its base URL,
headers, cookies, auth, event hooks, proxy and transport configuration apply to the
upgrade request; the WebSocket then runs over the network stream httpx hands back, with
anyws's protocol and tasks.

httpx is imported only here, and only when a client is given.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.abc import SocketAttribute

from ._handshake import Accepted, ClientHandshake
from ._types import Response
from ._url import WebSocketURI, websocket_url

_READ = 2**16
_SEND_ARGUMENTS = frozenset({"auth", "follow_redirects"})  # the rest go to build_request()


def join_base_url(client: Any, uri: str) -> str:
    """A URL relative to the client's `base_url` made absolute, as a ws(s):// URL."""
    if "://" not in uri:
        uri = str(client.base_url.join(uri))
    return websocket_url(uri)


async def open_through_client(
    client: Any, uri: WebSocketURI, handshake: ClientHandshake, request: Mapping[str, Any]
) -> tuple[anyio.abc.ByteStream, Accepted, Any]:
    """Send the upgrade request with `client`, check the response, and return the
    network stream, the outcome and httpx's `Response`. `request` holds more arguments
    of httpx's `stream()` (`cookies`, `timeout`, `extensions`, `auth`, `follow_redirects`).

    Raises:
        TypeError: `client` is neither an `httpx.AsyncClient` nor an `httpx.Client`.
        InvalidStatus: the server answered with another status than 101.
        InvalidUpgrade, InvalidHeader, NegotiationError: a 101 with wrong headers.
        httpx.HTTPError: the request failed (httpx's own errors: connect, proxy, TLS...).
    """
    import httpx

    url = f"{'https' if uri.secure else 'http'}://{uri.host_header}{uri.resource_name}"
    # The client's own User-Agent (and Host, from the URL) apply; the rest is the upgrade.
    headers = [
        (name, value)
        for name, value in handshake.request.headers.raw_items()
        if name.lower() not in ("host", "user-agent")
    ]
    build = {key: value for key, value in request.items() if key not in _SEND_ARGUMENTS}
    send = {key: value for key, value in request.items() if key in _SEND_ARGUMENTS}
    if isinstance(client, httpx.AsyncClient):
        upgrade = client.build_request("GET", url, headers=headers, **build)
        response = await client.send(upgrade, stream=True, **send)
        try:
            body = b""
            if response.status_code != 101:
                body = await _read_body(response.aiter_raw())
            accepted = handshake.check_response(
                response.status_code, response.reason_phrase, response.headers.raw, body
            )
        except BaseException:
            await response.aclose()
            raise
        return _AsyncNetworkStream(response), accepted, response
    if isinstance(client, httpx.Client):
        upgrade = client.build_request("GET", url, headers=headers, **build)
        response = await anyio.to_thread.run_sync(lambda: client.send(upgrade, stream=True, **send))
        try:
            body = b""
            if response.status_code != 101:
                body = await anyio.to_thread.run_sync(_read_sync_body, response)
            accepted = handshake.check_response(
                response.status_code, response.reason_phrase, response.headers.raw, body
            )
        except BaseException:
            await anyio.to_thread.run_sync(response.close)
            raise
        return _SyncNetworkStream(response), accepted, response
    raise TypeError(
        f"client must be an httpx.AsyncClient or httpx.Client, not {type(client).__name__}"
    )


async def _read_body(chunks: Any) -> bytes:
    # Read to the end (leaving httpx's generators half-read would leak them on trio),
    # keeping one byte past the limit: enough to say it was cut. open_timeout bounds it.
    body = b""
    async for chunk in chunks:
        body += chunk[: Response.MAX_BODY + 1 - len(body)]
    return body


def _read_sync_body(response: Any) -> bytes:
    body = b""
    for chunk in response.iter_raw():
        body += chunk[: Response.MAX_BODY + 1 - len(body)]
    return body


class _NetworkStream(anyio.abc.ByteStream):
    """httpcore's network stream after a 101, as an anyio byte stream: httpcore's errors
    become anyio's (the driver then reports the connection lost).
    """

    def __init__(self, response: Any) -> None:
        import httpcore

        self._response = response
        self._stream = response.extensions["network_stream"]
        self._errors = (httpcore.NetworkError, OSError)

    @property
    def extra_attributes(self) -> dict[Any, Any]:
        return {
            SocketAttribute.local_address: lambda: self._stream.get_extra_info("client_addr"),
            SocketAttribute.remote_address: lambda: self._stream.get_extra_info("server_addr"),
        }

    async def receive(self, max_bytes: int = _READ) -> bytes:
        try:
            data = await self._read(max_bytes)
        except self._errors as exc:
            raise anyio.BrokenResourceError from exc
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        try:
            await self._write(item)
        except self._errors as exc:
            raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        raise NotImplementedError("httpx's network stream can't half-close")

    @abstractmethod
    async def _read(self, max_bytes: int) -> bytes:
        raise NotImplementedError

    @abstractmethod
    async def _write(self, data: bytes) -> None:
        raise NotImplementedError


class _AsyncNetworkStream(_NetworkStream):
    """An `httpx.AsyncClient`'s network stream."""

    async def _read(self, max_bytes: int) -> bytes:
        data: bytes = await self._stream.read(max_bytes)
        return data

    async def _write(self, data: bytes) -> None:
        await self._stream.write(data)

    async def aclose(self) -> None:
        with contextlib.suppress(*self._errors):
            await self._stream.aclose()
        with contextlib.suppress(*self._errors):
            await self._response.aclose()


class _SyncNetworkStream(_NetworkStream):
    """An `httpx.Client`'s blocking network stream: each read and write runs in a worker
    thread; closing the stream ends a blocked read.
    """

    async def _read(self, max_bytes: int) -> bytes:
        data: bytes = await anyio.to_thread.run_sync(
            self._stream.read, max_bytes, abandon_on_cancel=True
        )
        return data

    async def _write(self, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._stream.write, data)

    async def aclose(self) -> None:
        # Closing the socket from here wakes a read blocked in a worker thread.
        with contextlib.suppress(*self._errors):
            self._stream.close()
        with contextlib.suppress(*self._errors):
            self._response.close()
        await anyio.lowlevel.checkpoint()
