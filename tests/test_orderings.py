"""Generated orders and timings (hypothesis): a server bursts messages and ends the
connection in one of several ways (a close, a drop, a drop in the middle of a message, an
oversized message, a protocol error) while the client reads, pauses, cancels its reads at
every point and pings. Whatever the interleaving, every message sent before the end is
delivered once, in order; the queue never holds more than `max_queue`; the end is reported
as the server made it. Each example runs on both backends over an in-memory transport.

Generated sends, over real sockets: frames reach the server in the order they were sent,
whichever task wrote them.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from typing import Any, Literal, get_args

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyws import (
    Close,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    PayloadTooBig,
    ProtocolError,
    connect,
)
from anyws.testing import ServerConnection, frame

from .conftest import memory_websocket, websockets_server

Op = Literal[
    "recv",
    "recv_cancelled",
    "recv_timeout",
    "yield",
    "ping",
    "stream",
    "stream_break",
    "stream_cancelled",
]
End = Literal["close 1000", "close 1011", "drop", "cut", "oversized", "garbage"]
MAX_SIZE = 2**16  # above every generated message
CUT = b"the first fragment of a message never finished"

Message = str | bytes | tuple[str, ...] | tuple[bytes, ...]
"""A message, or the fragments of one sent in as many frames."""

messages_strategy = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40),
        st.binary(min_size=2000, max_size=5000),  # several frames per read, big ones
        st.lists(st.text(max_size=10), min_size=2, max_size=5).map(tuple),
        st.lists(st.binary(max_size=3000), min_size=2, max_size=5).map(tuple),
    ),
    max_size=30,
)
ops_strategy = st.lists(st.sampled_from(get_args(Op)), max_size=60)


def whole(message: Message) -> str | bytes:
    if isinstance(message, tuple):
        return whole_of(list(message))
    return message


@dataclass(frozen=True)
class Scenario:
    """What the server sends and how it ends; what the client does meanwhile."""

    messages: list[Message]
    end: End
    ops: list[Op]
    max_queue: int | None
    compression: bool = False


scenarios = st.builds(
    Scenario,
    messages=messages_strategy,
    end=st.sampled_from(get_args(End)),
    ops=ops_strategy,
    max_queue=st.sampled_from([1, 2, 5, None]),
    compression=st.booleans(),
)


async def run_scenario(scenario: Scenario) -> None:
    messages, end, ops = scenario.messages, scenario.end, scenario.ops
    max_queue, compression = scenario.max_queue, scenario.compression

    async def server(connection: ServerConnection) -> None:
        for message in messages:
            if isinstance(message, tuple):
                await connection.send_fragments(message)
            else:
                await connection.send(message)
        if end == "drop":
            await connection.drop()
        elif end == "cut":
            # The first frame of a message, then the connection ends in the middle of it.
            await connection.send_raw(frame(0x2, CUT, fin=False))
            await connection.drop()
        elif end == "oversized":
            # Fails the connection with 1009; the server's close frame right behind it is
            # still read (the framing is intact), after which nothing but our close may
            # be sent.
            await connection.send(b"x" * (MAX_SIZE + 1))
            await connection.close(1000)
        elif end == "garbage":
            # A reserved opcode: 1002, and nothing after it is parsed.
            await connection.send_raw(frame(0x3))
            await connection.wait_closed()
        else:
            await connection.close(int(end.split()[1]))

    # What the client got of each message, and whether it got all of it.
    received: list[tuple[str | bytes, bool]] = []
    ended: ConnectionClosed | None = None

    async def stream(ws: Any, op: Op) -> None:
        fragments = ws.recv_streaming()
        first = await fragments.__anext__()  # the message leaves the queue with this
        taken = [first]
        if op == "stream_break":
            received.append((whole_of(taken), False))
            return
        if op == "stream_cancelled":
            with anyio.CancelScope() as scope, contextlib.suppress(StopAsyncIteration):
                scope.cancel()
                taken.append(await fragments.__anext__())
        async for fragment in fragments:
            taken.append(fragment)
        received.append((whole_of(taken), True))

    def check_queue(ws: Any) -> None:
        assert max_queue is None or len(ws._messages) <= max_queue

    async with memory_websocket(
        server,
        compression=compression,
        max_queue=max_queue,
        max_size=MAX_SIZE,
        ping_interval=None,
    ) as ws:
        try:
            for op in ops:
                check_queue(ws)
                if op == "recv":
                    received.append((await ws.recv(), True))
                elif op == "recv_cancelled":
                    with anyio.CancelScope() as scope:
                        scope.cancel()
                        received.append((await ws.recv(), True))
                elif op == "recv_timeout":
                    with anyio.move_on_after(0):
                        received.append((await ws.recv(), True))
                elif op.startswith("stream"):
                    await stream(ws, op)
                elif op == "yield":
                    await anyio.lowlevel.checkpoint()
                else:
                    with contextlib.suppress(ConnectionClosed):
                        await ws.ping()
            while True:  # then read whatever is left
                check_queue(ws)
                received.append((await ws.recv(), True))
        except ConnectionClosed as exc:
            ended = exc
    # Each message once, in order: whole, or (where the client broke off a stream) the
    # part it read. A message cut short by a stream that raised counts as read up to there.
    sent = [whole(message) for message in messages]
    if end == "cut" and len(received) == len(sent) + 1:
        # A stream broke off in the unfinished message: it read a part, never all of it.
        got, complete = received.pop()
        assert not complete
        assert isinstance(got, bytes)
        assert CUT.startswith(got)
    assert len(received) == len(sent)
    for (got, complete), expected in zip(received, sent, strict=True):
        assert got == expected if complete else expected[: len(got)] == got
    if end == "close 1000":
        assert isinstance(ended, ConnectionClosedOK)
        assert ws.close_code == 1000
    elif end == "oversized":
        assert isinstance(ended, ConnectionClosedError)
        assert isinstance(ended.__cause__, PayloadTooBig)
        assert ended.sent == Close(1009, "message too big")
        assert ws.close_code == 1000
    elif end == "garbage":
        assert isinstance(ended, ConnectionClosedError)
        assert isinstance(ended.__cause__, ProtocolError)
        assert ended.sent is not None
        assert ended.sent.code == 1002
        assert ws.close_code == 1006
    else:
        assert isinstance(ended, ConnectionClosedError)
        assert ws.close_code == (1011 if end == "close 1011" else 1006)
        if end == "cut":
            assert not isinstance(ended.__cause__, (PayloadTooBig, ProtocolError))


def whole_of(fragments: list[Any]) -> str | bytes:
    return "".join(fragments) if isinstance(fragments[0], str) else b"".join(fragments)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios)
def test_every_message_before_the_end_is_delivered_in_order(
    backend: str, scenario: Scenario
) -> None:
    anyio.run(run_scenario, scenario, backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_regression_burst_beyond_the_queue_then_close(backend: str) -> None:
    # The shape of the loss found at the core's first version: the close frame arrived in
    # the same read as more messages than the queue holds, before anyone read.
    scenario = Scenario([f"m{i}" for i in range(40)], "close 1000", ["yield"] * 5, 4)
    anyio.run(run_scenario, scenario, backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_regression_failed_write_loses_nothing_received(backend: str) -> None:
    # Shrunk by hypothesis: the ping's write fails (the server is gone) while the second
    # message still waits, unparsed, behind a full queue; it must still be delivered.
    anyio.run(run_scenario, Scenario(["", ""], "drop", ["ping"], 1), backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_regression_an_oversized_message_behind_a_full_queue(backend: str) -> None:
    # Found by hypothesis: parsing stopped at the room the oversized message took; the
    # failure then dropped it, so the queue was empty and nobody would take a message to
    # resume parsing: the server's close frame was never read, and recv() hung.
    anyio.run(run_scenario, Scenario(["a"], "oversized", [], 1), backend=backend)


# -- outgoing: frames written by the sending task and by the writer keep their order ------

SendOp = Literal["send", "send_big", "yield", "recv"]


async def run_sends(ops: list[SendOp]) -> None:
    """Send over real loopback sockets to the `websockets` echo server, receiving the
    echoes at generated points: their order is the order the frames reached the server.

    On trio, a frame goes out from the sending task when the writer is idle, else through
    the writer; a big one only partly fits the small socket buffers and the writer
    finishes it. Incoming echoes, yields and waits for room interleave the two.
    """
    async with (
        websockets_server(receive_buffer=4096, max_size=None) as uri,
        connect(uri, max_queue=None, max_size=None, compression=None) as ws,
    ):
        # Small socket buffers on both sides: a big frame only partly fits.
        sock = ws._stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sent: list[str] = []
        echoed: list[str] = []
        for index, op in enumerate(ops):
            if op == "send" or op == "send_big":
                message = f"{index:04d}" * (1 if op == "send" else 2**14)  # 64 KiB
                await ws.send(message)
                sent.append(message)
            elif op == "yield":
                await anyio.lowlevel.checkpoint()
            elif len(echoed) < len(sent):
                echoed.append(str(await ws.recv()))
        while len(echoed) < len(sent):
            echoed.append(str(await ws.recv()))
        assert [message[:4] for message in echoed] == [message[:4] for message in sent]
        assert echoed == sent


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.sampled_from(["send", "send", "send", "send_big", "yield", "recv", "recv"]),
        max_size=40,
    )
)
def test_frames_reach_the_server_in_the_order_sent(backend: str, ops: list[SendOp]) -> None:
    anyio.run(run_sends, ops, backend=backend)
