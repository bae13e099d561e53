"""Sans-IO tests of `ClientProtocol` against a wsproto server `Connection`; no event loop."""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate

from anyws import (
    Close,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    PayloadTooBig,
    ProtocolError,
    State,
)
from anyws._deflate import negotiate_deflate, utf8_completion
from anyws._protocol import (
    _SMALL_FRAGMENT,
    TRANSITIONS,
    ClientProtocol,
    PartialMessage,
    Phase,
    PongReceived,
    validate_close,
)
from anyws._types import Data
from anyws.testing import frame


def pair(
    *,
    deflate: bool = False,
    max_size: int | None = 2**20,
    max_fragment_size: int | None = None,
    fast_path: bool = True,
    params: list[tuple[str, str | None]] | None = None,
) -> tuple[ClientProtocol[str], Connection]:
    limits: dict[str, Any] = {
        "max_size": max_size,
        "max_fragment_size": max_fragment_size,
        "fast_path": fast_path,
    }
    if not deflate:
        return ClientProtocol[str](**limits), Connection(ConnectionType.SERVER)
    server_ext = PerMessageDeflate()
    offer = "permessage-deflate; client_max_window_bits"
    server_ext.accept(offer)
    client = ClientProtocol[str](
        [negotiate_deflate(params or [("client_max_window_bits", "15")])], **limits
    )
    return client, Connection(ConnectionType.SERVER, [server_ext])


def feed(
    client: ClientProtocol[str], data: bytes
) -> list[Data | PartialMessage | PongReceived[str]]:
    """Give the client bytes and parse them all (no queue limit); a message in several
    frames that is complete is given joined, one the protocol gave up on is left out.
    """
    client.receive_data(data)
    return [
        item.join() if isinstance(item, PartialMessage) and item.complete else item
        for item in client.parse(None)
        if not (isinstance(item, PartialMessage) and item.abandoned)
    ]


def to_server(client: ClientProtocol[str], server: Connection) -> list[Event]:
    server.receive_data(b"".join(client.data_to_send()))
    return list(server.events())


def test_send_messages() -> None:
    client, server = pair()
    client.send_message("héllo")
    client.send_message(b"\x00\x01")
    client.send_message(bytearray(b"ba"))
    client.send_message(memoryview(b"mv"))
    events = to_server(client, server)
    assert [(type(e), e.data) for e in events if isinstance(e, Message)] == [
        (TextMessage, "héllo"),
        (BytesMessage, b"\x00\x01"),
        (BytesMessage, b"ba"),
        (BytesMessage, b"mv"),
    ]
    assert client.outbox_size == 0


def test_send_fragments() -> None:
    client, server = pair()
    client.send_fragments(["a", "b", "c"])
    client.send_fragments([b"x", bytearray(b"y")])
    client.send_fragments([])
    events = to_server(client, server)
    assert [(e.data, e.message_finished) for e in events if isinstance(e, Message)] == [
        ("a", False),
        ("b", False),
        ("c", True),
        (b"x", False),
        (b"y", True),
    ]


def test_send_fragments_all_or_nothing() -> None:
    client, _ = pair()
    with pytest.raises(TypeError, match="all fragments"):
        client.send_fragments(["a", b"b"])
    with pytest.raises(TypeError, match="not int"):
        client.send_fragments(["a", 1])  # type: ignore[list-item]
    assert client.data_to_send() == []
    assert client.state is State.OPEN


def test_send_invalid_type() -> None:
    client, _ = pair()
    with pytest.raises(TypeError, match="str or bytes-like, not int"):
        client.send_message(1)  # type: ignore[arg-type]


def test_receive_messages() -> None:
    client, server = pair()
    data = server.send(TextMessage("hi")) + server.send(BytesMessage(b"yo"))
    data += server.send(TextMessage("a", message_finished=False)) + server.send(TextMessage("b"))
    data += server.send(BytesMessage(b"1", message_finished=False)) + server.send(
        BytesMessage(b"2")
    )
    assert feed(client, data) == ["hi", b"yo", "ab", b"12"]


def test_receive_split_at_every_byte() -> None:
    client, server = pair()
    data = server.send(TextMessage("héllo wörld")) + server.send(BytesMessage(b"x" * 300))
    received: list[object] = []
    for index in range(len(data)):
        received += feed(client, data[index : index + 1])
    # Each frame arrived in parts: each message was queued when its first part arrived,
    # and is complete with its last.
    assert all(isinstance(item, PartialMessage) and item.complete for item in received)
    assert [item.join() for item in received] == ["héllo wörld", b"x" * 300]  # type: ignore[attr-defined]


@given(st.text(), st.integers(min_value=1, max_value=50))
def test_text_fragmented_anywhere_in_utf8(text: str, split: int) -> None:
    client, _ = pair()
    encoded = text.encode("utf-8")
    pieces = [encoded[i : i + split] for i in range(0, len(encoded), split)] or [b""]
    data = b"".join(
        frame(0x1 if index == 0 else 0x0, piece, fin=index == len(pieces) - 1)
        for index, piece in enumerate(pieces)
    )
    assert feed(client, data) == [text]


@given(st.lists(st.binary(max_size=200), min_size=1, max_size=10))
def test_fragments_round_trip(fragments: list[bytes]) -> None:
    client, server = pair()
    client.send_fragments(fragments)
    events = to_server(client, server)
    assert b"".join(e.data for e in events if isinstance(e, BytesMessage)) == b"".join(fragments)
    data = b"".join(
        server.send(BytesMessage(fragment, message_finished=index == len(fragments) - 1))
        for index, fragment in enumerate(fragments)
    )
    assert feed(client, data) == [b"".join(fragments)]


@given(st.binary(min_size=1, max_size=40).filter(lambda b: not _is_utf8(b)))
def test_invalid_utf8_fails_with_1007(payload: bytes) -> None:
    client, _ = pair()
    assert feed(client, frame(0x1, payload)) == []
    assert isinstance(client.failure, ProtocolError)
    client.commit_failure()
    assert client.close_sent == Close(1007, client.close_sent.reason if client.close_sent else "")
    assert client.failure.code == 1007


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x3, b"x"), 1002),  # reserved opcode (RFC 6455 §5.2)
        (frame(0xB, b""), 1002),  # reserved control opcode
        (frame(0x1, b"x", rsv=4), 1002),  # RSV1 without an extension
        (frame(0x9, b"x", fin=False), 1002),  # fragmented control frame (§5.5)
        (frame(0x9, b"x" * 126), 1002),  # control frame over 125 bytes
        (frame(0x0, b"x"), 1002),  # continuation without a start
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),  # new message inside one
        (frame(0x8, struct.pack("!H", 1005)), 1002),  # close code that can't be sent (§7.4.1)
        (frame(0x8, struct.pack("!H", 2999)), 1002),
        (frame(0x8, b"\x03"), 1002),  # a one-byte close payload
        (frame(0x8, struct.pack("!H", 1000) + b"\xff"), 1007),  # reason isn't UTF-8
        (bytes([0x81, 0x81, 1, 2, 3, 4, 5]), 1002),  # masked frame from a server (§5.1)
    ],
)
def test_protocol_violations_fail_the_connection(data: bytes, code: int) -> None:
    client, server = pair()
    client.send_message("queued before")
    assert feed(client, frame(0x1, b"ok") + data + frame(0x1, b"after")) == ["ok"]
    assert isinstance(client.failure, ProtocolError)
    assert client.failure.code == code
    assert client.reading_done
    # The messages before the bad frame can still be answered; then the close goes out.
    assert client.failure_pending
    assert client.state is State.OPEN
    client.send_message("answer to ok")
    client.commit_failure()
    assert not client.failure_pending
    assert client.state is State.CLOSING
    events = to_server(client, server)
    assert [e.data for e in events if isinstance(e, TextMessage)] == [
        "queued before",
        "answer to ok",
    ]
    assert isinstance(events[2], CloseConnection)
    assert events[2].code == code
    assert feed(client, frame(0x1, b"ignored")) == []
    exc = client.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert exc.sent is not None
    assert exc.sent.code == code
    assert exc.rcvd is None
    assert exc.__cause__ is client.failure
    with pytest.raises(ConnectionClosedError):
        client.send_message("late")


def test_garbage_while_closing_fails_without_second_close() -> None:
    client, server = pair()
    client.send_close(1000)
    feed(client, frame(0x3, b""))
    assert isinstance(client.failure, ProtocolError)
    events = to_server(client, server)
    assert [type(e) for e in events] == [CloseConnection]


def test_ping_from_server_is_answered_first() -> None:
    client, server = pair()
    client.send_message("data")
    feed(client, server.send(Ping(b"abc")))
    frames = client.data_to_send()
    server.receive_data(b"".join(frames))
    events = list(server.events())
    assert isinstance(events[0], Pong)
    assert events[0].payload == b"abc"
    assert isinstance(events[1], TextMessage)


def test_ping_while_closing_is_not_answered() -> None:
    client, server = pair()
    client.send_close()
    client.data_to_send()
    feed(client, server.send(Ping(b"late")))
    assert client.data_to_send() == []


def test_ping_bookkeeping() -> None:
    client, server = pair()
    client.send_ping(b"1", "waiter 1")
    client.send_ping(b"2", "waiter 2")
    client.send_ping(b"3", "waiter 3")
    assert client.ping_pending(b"2")
    with pytest.raises(ConcurrencyError):
        client.send_ping(b"2", "again")
    with pytest.raises(ValueError, match="125"):
        client.send_ping(b"x" * 126, "too long")
    pings = [e for e in to_server(client, server) if isinstance(e, Ping)]
    assert [p.payload for p in pings] == [b"1", b"2", b"3"]
    assert feed(client, server.send(Pong(b"unknown"))) == []
    assert feed(client, server.send(Pong(b"2"))) == [PongReceived(["waiter 1", "waiter 2"])]
    assert not client.ping_pending(b"2")
    client.send_ping(b"4", "waiter 4")
    assert feed(client, server.send(Pong(b"3"))) == [PongReceived(["waiter 3"])]
    assert feed(client, server.send(Pong(b"3"))) == []
    assert client.abandon_pings() == ["waiter 4"]
    assert client.abandon_pings() == []


def test_unsolicited_pong() -> None:
    client, server = pair()
    client.send_pong(b"beat")
    (event,) = to_server(client, server)
    assert isinstance(event, Pong)
    assert event.payload == b"beat"
    with pytest.raises(ValueError, match="125"):
        client.send_pong(b"x" * 126)


def test_server_initiated_close() -> None:
    client, server = pair()
    received = feed(
        client, server.send(TextMessage("last")) + server.send(CloseConnection(1001, "bye"))
    )
    assert received == ["last"]
    assert client.close_rcvd == Close(1001, "bye")
    assert client.close_sent == Close(1001, "bye")
    assert client.close_rcvd_then_sent is True
    assert client.state is State.CLOSING
    (reply,) = to_server(client, server)
    assert isinstance(reply, CloseConnection)
    assert reply.code == 1001
    client.receive_eof()
    assert client.state is State.CLOSED
    exc = client.close_exc()
    assert isinstance(exc, ConnectionClosedOK)
    assert str(exc) == "received 1001 (going away) bye; then sent 1001 (going away) bye"
    assert exc.code == 1001
    assert exc.reason == "bye"
    with pytest.raises(ConnectionClosedOK):
        client.send_ping(b"", "waiter")
    client.send_close()  # already closing: no-op
    assert client.data_to_send() == []


def test_client_initiated_close() -> None:
    client, server = pair()
    in_flight = server.send(TextMessage("in flight"))
    client.send_close(4000, "done")
    (close,) = to_server(client, server)
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (4000, "done")
    assert client.state is State.CLOSING
    assert not client.reading_done
    assert feed(client, in_flight) == ["in flight"]
    feed(client, server.send(close.response()))
    assert client.close_rcvd == Close(4000, "done")
    assert client.close_rcvd_then_sent is False
    exc = client.close_exc()
    assert isinstance(exc, ConnectionClosedError)  # 4000 isn't a normal code
    assert str(exc) == "sent 4000 (private use) done; then received 4000 (private use) done"


def test_empty_close_frame_is_1005_and_normal() -> None:
    client, _ = pair()
    feed(client, frame(0x8, b""))
    assert client.close_rcvd == Close(1005, "")
    assert isinstance(client.close_exc(), ConnectionClosedOK)
    assert str(client.close_exc().rcvd) == "1005 (no status received [internal])"


def test_error_close_code_from_server() -> None:
    client, server = pair()
    feed(client, server.send(CloseConnection(1011, "oops")))
    exc = client.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert exc.code == 1011
    assert str(Close(3001)) == "3001 (registered)"
    assert str(Close(2000)) == "2000 (unknown)"


def test_eof_without_close() -> None:
    client, server = pair()
    feed(client, server.send(TextMessage("part", message_finished=False)))
    cause = ConnectionResetError()
    client.receive_eof(cause)
    client.receive_eof()  # idempotent
    assert client.state is State.CLOSED
    assert feed(client, b"late") == []
    exc = client.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert exc.rcvd is None
    assert exc.code == 1006
    assert exc.reason == ""
    assert exc.__cause__ is cause
    assert str(exc) == "no close frame received or sent"


def test_close_exc_messages() -> None:
    assert str(ConnectionClosed(None, Close(1000))) == "sent 1000 (OK); no close frame received"
    assert str(ConnectionClosed(Close(1000), None)) == "received 1000 (OK); no close frame sent"


def test_max_size() -> None:
    client, server = pair(max_size=10)
    assert feed(client, server.send(BytesMessage(b"x" * 10))) == [b"x" * 10]
    assert feed(client, server.send(TextMessage("é" * 5))) == ["é" * 5]  # 10 bytes
    data = (
        server.send(TextMessage("ok"))
        + server.send(TextMessage("é" * 6))
        + server.send(TextMessage("no"))
    )
    assert feed(client, data) == ["ok"]
    assert isinstance(client.failure, PayloadTooBig)
    assert client.failure.size == 12
    assert str(client.failure) == "message of at least 12 bytes exceeds max_size=10"
    in_flight = server.send(TextMessage("dropped"))
    client.send_close(1000)  # a pending failure's code wins over the one asked for
    (close,) = to_server(client, server)
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (1009, "message too big")
    # The framing is intact: the rest is discarded, and the server's close frame is read.
    assert not client.reading_done
    assert feed(client, in_flight + server.send(close.response())) == []
    assert client.close_rcvd == Close(1009, "message too big")
    assert client.reading_done
    exc = client.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert exc.__cause__ is client.failure
    assert exc.sent == exc.rcvd == Close(1009, "message too big")


def test_max_size_counts_fragments() -> None:
    client, server = pair(max_size=5)
    data = server.send(BytesMessage(b"abc", message_finished=False)) + server.send(
        BytesMessage(b"def")
    )
    assert feed(client, data) == []
    assert isinstance(client.failure, PayloadTooBig)


def fragments(server: Connection, parts: Sequence[str | bytes]) -> bytes:
    """One message, a frame per part, as the server sends it."""
    last = len(parts) - 1
    return b"".join(
        server.send(
            TextMessage(part, message_finished=index == last)
            if isinstance(part, str)
            else BytesMessage(part, message_finished=index == last)
        )
        for index, part in enumerate(parts)
    )


@pytest.mark.parametrize("fast_path", [True, False])
def test_fragment_limit_bounds_each_frame_not_the_message(fast_path: bool) -> None:
    client, server = pair(max_size=None, max_fragment_size=10, fast_path=fast_path)
    wire = fragments(server, [b"x" * 10] * 50) + server.send(TextMessage("y" * 10))
    assert feed(client, wire) == [b"x" * 500, "y" * 10]
    # Counted in bytes on the wire: "é" straddles two frames of 10 bytes each, and the
    # second frame's text decodes to 11 bytes of UTF-8.
    text = ("a" * 9 + "é" + "b" * 8 + "c").encode()
    first, second = frame(0x1, text[:10], fin=False), frame(0x0, text[10:])
    assert feed(client, first + second) == [text.decode()]
    assert client.failure is None


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("split", [False, True])
def test_frame_over_the_fragment_limit_fails_with_1009(fast_path: bool, split: bool) -> None:
    client, server = pair(max_size=2**20, max_fragment_size=10, fast_path=fast_path)
    ok = fragments(server, [b"a" * 10, b"b" * 10])
    whole = server.send(BytesMessage(b"c" * 11))  # one frame: the fast path's case
    after = server.send(BytesMessage(b"dropped"))
    wire = ok + whole + after
    received: list[Data | PartialMessage | PongReceived[str]] = []
    step = 3 if split else len(wire)
    for start in range(0, len(wire), step):
        client.receive_data(wire[start : start + step])
        received += client.parse(None)
    (message,) = received
    assert isinstance(message, PartialMessage)
    assert message.complete
    assert message.join() == b"a" * 10 + b"b" * 10
    failure = client.failure
    assert isinstance(failure, PayloadTooBig)
    assert (failure.size, failure.max_size, failure.fragment) == (11, 10, True)
    assert str(failure) == "frame of at least 11 bytes exceeds the fragment limit 10"
    client.commit_failure()
    (close,) = to_server(client, server)
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (1009, "message too big")
    # The framing is intact: the server's close frame is still read.
    assert feed(client, server.send(close.response())) == []
    assert client.close_rcvd == Close(1009, "message too big")


def test_fragment_limit_leaves_control_frames_alone() -> None:
    client, server = pair(max_fragment_size=4)
    assert feed(client, server.send(Ping(b"ping of 20 bytes ...")) + frame(0x2, b"ok")) == [b"ok"]
    assert to_server(client, server) == [Pong(b"ping of 20 bytes ...")]
    assert client.failure is None


def test_fragment_limit_applies_to_a_fragment_of_a_message() -> None:
    client, server = pair(max_size=None, max_fragment_size=10)
    assert feed(client, fragments(server, ["a" * 10, "b" * 11, "c"])) == []
    assert isinstance(client.failure, PayloadTooBig)
    assert client.failure.fragment


def test_message_limit_is_reported_before_the_fragment_limit() -> None:
    client, server = pair(max_size=15, max_fragment_size=10)
    assert feed(client, fragments(server, [b"a" * 10, b"b" * 10])) == []
    failure = client.failure
    assert isinstance(failure, PayloadTooBig)
    assert (failure.size, failure.max_size, failure.fragment) == (20, 15, False)


def test_fragment_limit_bounds_inflating_each_frame() -> None:
    client, server = pair(deflate=True, max_size=None, max_fragment_size=2**12)
    # Compressed frames that each inflate to the limit, in one message of 16 KiB. (wsproto's
    # server flushes only at the end of a message, so these are made here, flushed after
    # each frame as `websockets` and anyws send them.)
    parts = [bytes([index]) * 2**12 for index in range(4)]
    deflater = zlib.compressobj(wbits=-15)
    wire = b""
    for index, part in enumerate(parts):
        payload = deflater.compress(part) + deflater.flush(zlib.Z_SYNC_FLUSH)
        last = index == len(parts) - 1
        wire += frame(
            0x0 if index else 0x2,
            payload[:-4] if last else payload,
            fin=last,
            rsv=0 if index else 4,
        )
    assert feed(client, wire) == [b"".join(parts)]
    # A frame that inflates past it is stopped one byte past the limit, whatever its size
    # on the wire.
    bomb = server.send(BytesMessage(b"\x00" * 2**20))
    assert len(bomb) < 2**12
    assert feed(client, bomb) == []
    failure = client.failure
    assert isinstance(failure, PayloadTooBig)
    assert (failure.size, failure.max_size, failure.fragment) == (2**12 + 1, 2**12, True)
    client.commit_failure()
    assert client.close_sent == Close(1009, "message too big")


def test_no_max_size() -> None:
    client, server = pair(max_size=None)
    assert feed(client, server.send(BytesMessage(b"x" * 2**21))) == [b"x" * 2**21]


def test_deflate_round_trip() -> None:
    client, server = pair(deflate=True)
    client.send_message("a" * 10000)
    client.send_fragments([b"b" * 100, b"c" * 100])
    events = to_server(client, server)
    assert "".join(e.data for e in events if isinstance(e, TextMessage)) == "a" * 10000
    frames = b"".join(client.data_to_send())
    assert frames == b""
    data = server.send(TextMessage("z" * 50000)) + server.send(BytesMessage(b"\x00" * 70000))
    assert len(data) < 1000  # it was compressed
    assert feed(client, data) == ["z" * 50000, b"\x00" * 70000]


@pytest.mark.parametrize(
    "params",
    [
        [("server_no_context_takeover", None), ("client_no_context_takeover", None)],
        [("server_max_window_bits", "9"), ("client_max_window_bits", "9")],
        [("server_max_window_bits", "8"), ("client_max_window_bits", "8")],
    ],
)
def test_deflate_parameters_are_honoured(params: list[tuple[str, str | None]]) -> None:
    # The server side is a plain zlib peer configured as the response says.
    client = ClientProtocol[str]([negotiate_deflate(params)])
    values = dict(params)
    server_bits = int(values.get("server_max_window_bits") or 15)
    client_bits = int(values.get("client_max_window_bits") or 15)
    inflate = zlib.decompressobj(-max(client_bits, 9))
    for _ in range(2):
        client.send_message("hello hello hello")
        raw = b"".join(client.data_to_send())
        masked_payload = raw[6:]
        mask = raw[2:6]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(masked_payload))
        if client_bits == 8:
            assert raw[0] & 0x40 == 0  # sent uncompressed (RFC 7692 §6.1)
            assert payload == b"hello hello hello"
        else:
            assert raw[0] & 0x40
            if "client_no_context_takeover" in values:
                inflate = zlib.decompressobj(-client_bits)
            assert inflate.decompress(payload + b"\x00\x00\xff\xff") == b"hello hello hello"
    deflate = zlib.compressobj(6, zlib.DEFLATED, -max(server_bits, 9))
    compressed = deflate.compress(b"abcabc") + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert feed(client, frame(0x1, compressed[:-4], rsv=4)) == ["abcabc"]


def test_compressed_fragments_around_a_ping() -> None:
    client, _ = pair(deflate=True)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    compressed = deflate.compress(b"hello world" * 100) + deflate.flush(zlib.Z_SYNC_FLUSH)
    body = compressed[:-4]
    half = len(body) // 2
    data = (
        frame(0x2, body[:half], fin=False, rsv=4)
        + frame(0x9, b"ping")  # a control frame inside the message is never inflated
        + frame(0x0, body[half:])
    )
    assert feed(client, data) == [b"hello world" * 100]


def test_server_no_context_takeover_inflates_each_message_afresh() -> None:
    client = ClientProtocol[str]([negotiate_deflate([("server_no_context_takeover", None)])])
    messages = []
    for text in (b"same words same words", b"same words same words"):
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)  # a new context per message
        messages.append(
            frame(0x2, (deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4], rsv=4)
        )
    assert feed(client, b"".join(messages)) == [b"same words same words"] * 2


@pytest.mark.parametrize("bad", [frame(0x0, b"x", rsv=4), frame(0x9, b"x", rsv=4)])
def test_rsv1_only_on_the_first_frame_of_a_message(bad: bytes) -> None:
    client, _ = pair(deflate=True)
    start = frame(0x2, b"", fin=False) if bad[0] & 0x0F == 0 else b""
    feed(client, start + bad)
    assert isinstance(client.failure, ProtocolError)
    assert client.failure.code == 1002


def test_deflate_bomb_is_stopped_early() -> None:
    client, server = pair(deflate=True, max_size=2**16)
    bomb = server.send(BytesMessage(b"\x00" * 2**24))  # 16 MiB that compress to ~16 KiB
    assert len(bomb) < 2**15
    assert feed(client, bomb) == []
    assert isinstance(client.failure, PayloadTooBig)
    # zlib was asked for no more than the limit allows: inflating stopped one byte past it
    assert client.failure.size == 2**16 + 1
    client.commit_failure()
    assert client.close_sent == Close(1009, "message too big")


def test_invalid_compressed_data() -> None:
    client, _ = pair(deflate=True)
    feed(client, frame(0x2, b"\xff\xff\xff\xff", rsv=4))
    assert isinstance(client.failure, ProtocolError)
    client.commit_failure()
    assert client.close_sent is not None
    assert client.close_sent.code == 1007


@pytest.mark.parametrize(
    ("code", "reason", "valid"),
    [
        (1000, "", True),
        (1001, "x" * 123, True),
        (1012, "", True),
        (3000, "", True),
        (4999, "", True),
        (1004, "", False),
        (1005, "", False),
        (1006, "", False),
        (1015, "", False),
        (999, "", False),
        (2999, "", False),
        (5000, "", False),
        (1000, "x" * 124, False),
        (1000, "é" * 62, False),
    ],
)
def test_validate_close(code: int, reason: str, valid: bool) -> None:
    if valid:
        validate_close(code, reason)
    else:
        with pytest.raises(ProtocolError):
            validate_close(code, reason)
    client, _ = pair()
    if not valid:
        with pytest.raises(ProtocolError):
            client.send_close(code, reason)
        assert client.state is State.OPEN


def test_fail_is_recorded_once() -> None:
    client, server = pair()
    first = TimeoutError("no pong")
    client.fail(1011, "keepalive ping timeout", first)
    client.fail(1002, "other", ValueError())
    assert client.failure is first
    (close,) = to_server(client, server)
    assert isinstance(close, CloseConnection)
    assert close.code == 1011


def test_no_transition_outside_the_table() -> None:
    client, _ = pair()
    client.receive_eof()
    with pytest.raises(RuntimeError, match="anyws bug: no transition"):
        client._enter(Phase.OPEN)
    assert all(Phase.CLOSED in TRANSITIONS[phase] for phase in Phase if phase is not Phase.CLOSED)


def test_parse_stops_at_the_room_and_keeps_the_rest() -> None:
    client, server = pair()
    client.receive_data(b"".join(server.send(TextMessage(str(i))) for i in range(5)))
    assert client.parse(0) == []
    assert client.paused
    assert client.parse(2) == ["0", "1"]
    assert client.paused
    assert not client.wants_data
    assert client.parse(None) == ["2", "3", "4"]
    assert not client.paused
    assert client.wants_data


def test_server_close_while_failing_is_answered_by_the_failure() -> None:
    client, server = pair(max_size=10)
    data = server.send(TextMessage("ok")) + server.send(BytesMessage(b"x" * 11))
    data += server.send(TextMessage("dropped")) + server.send(CloseConnection(1000, "bye"))
    assert feed(client, data) == ["ok"]
    assert client.failure_pending
    assert client.close_rcvd == Close(1000, "bye")
    assert client.reading_done
    # Only our close frame may follow the server's (RFC 6455 §5.5.1).
    assert client.state is State.CLOSING
    with pytest.raises(ConnectionClosedError):
        client.send_ping(b"p", "waiter")
    with pytest.raises(ConnectionClosedError):
        client.send_pong(b"p")
    with pytest.raises(ConnectionClosedError):
        client.send_message("answer")
    client.commit_failure()  # the application took "ok": our close answers the server's
    assert client.phase is Phase.CLOSE_EXCHANGED
    assert client.close_sent == Close(1009, "message too big")
    assert client.close_rcvd_then_sent is True
    (close,) = to_server(client, server)
    assert isinstance(close, CloseConnection)
    assert close.code == 1009


def test_garbage_after_an_oversized_message_keeps_the_first_cause() -> None:
    client, server = pair(max_size=10)
    feed(client, server.send(BytesMessage(b"x" * 11)) + frame(0x3, b"bad opcode"))
    assert isinstance(client.failure, PayloadTooBig)
    assert client.reading_done  # the stream can't be trusted past the garbage


def test_fail_while_failing_commits_the_deferred_close() -> None:
    client, server = pair(max_size=10)
    feed(client, server.send(BytesMessage(b"x" * 11)))
    client.fail(1011, "keepalive ping timeout", TimeoutError())
    assert isinstance(client.failure, PayloadTooBig)
    assert client.close_sent == Close(1009, "message too big")
    assert client.phase is Phase.CLOSE_SENT


@pytest.mark.parametrize(
    ("tail", "completion"),
    [
        (b"", b""),
        (b"abc", b""),
        (b"\xc3", b"\x80"),
        (b"a\xc3\xa9", b""),
        (b"\xe2", b"\x80\x80"),
        (b"\xe0", b"\xa0\x80"),
        (b"\xe2\x82", b"\x80"),
        (b"\xf0", b"\x90\x80\x80"),
        (b"\xf0\x9f\x98", b"\x80"),
        (b"\xf0\x9f", b"\x80\x80"),
        (b"\xe2\x82\xac", b""),
    ],
)
def test_utf8_completion(tail: bytes, completion: bytes) -> None:
    assert utf8_completion(tail) == completion
    (tail + completion).decode("utf-8")  # a whole character, whatever was open


@pytest.mark.parametrize("own_framing", [True, False])
def test_per_message_compression_control(own_framing: bool) -> None:
    client, server = pair(deflate=True)
    if not own_framing:
        # Another extension makes wsproto frame the messages: the choice must still hold.
        deflate = negotiate_deflate([("client_max_window_bits", "15")])
        client = ClientProtocol[str]([deflate, PassThrough()])
    client.compression_threshold = 100
    cases: list[tuple[Data, bool | None, bool]] = [
        ("a" * 1000, None, True),  # over the threshold
        ("tiny", None, False),  # under it
        (b"x" * 1000, False, False),  # refused for this message
        ("y" * 10, True, True),  # forced for this one
        ("a" * 1000, None, True),  # the context is intact after uncompressed messages
    ]
    for message, compress, compressed in cases:
        client.send_message(message, compress=compress)
        raw = b"".join(client.data_to_send())
        assert bool(raw[0] & 0x40) is compressed  # RSV1 (RFC 7692 §6)
        server.receive_data(raw)
        (event,) = server.events()
        assert isinstance(event, (TextMessage, BytesMessage))
        assert event.data == message
    client.send_fragments([b"b" * 10, b"c" * 10], compress=False)
    raw = b"".join(client.data_to_send())
    assert not raw[0] & 0x40
    assert [e.data for e in to_server_raw(raw, server)] == [b"b" * 10, b"c" * 10]


class PassThrough(Extension):
    name = "x-pass-through"

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return True


def to_server_raw(raw: bytes, server: Connection) -> list[Any]:
    server.receive_data(raw)
    return list(server.events())


def test_compression_control_without_deflate_is_ignored() -> None:
    client, server = pair()
    client.send_message("plain", compress=True)
    (event,) = to_server(client, server)
    assert isinstance(event, TextMessage)
    assert event.data == "plain"


# -- messages in several frames (PartialMessage) -----------------------------------------


def test_a_message_in_several_frames_is_queued_when_it_starts() -> None:
    client, server = pair()
    client.receive_data(server.send(TextMessage("ab", message_finished=False)))
    (partial,) = client.parse(None)
    assert isinstance(partial, PartialMessage)
    assert partial.text
    assert not partial.complete
    assert list(partial.fragments) == ["ab"]
    # Later fragments go into it; nothing new is returned for them.
    client.receive_data(server.send(TextMessage("cd", message_finished=False)))
    client.receive_data(server.send(TextMessage("e")))
    assert client.parse(None) == []
    assert partial.complete
    assert partial.join() == "abcde"


def test_the_frames_of_a_started_message_need_no_room() -> None:
    client, server = pair()
    data = server.send(BytesMessage(b"a", message_finished=False))
    client.receive_data(data)
    (partial,) = client.parse(1)
    # The queue is now full (room 0), yet the message's own frames are still parsed, so a
    # receiver waiting for the whole message can't wait forever; the next one waits.
    data = server.send(BytesMessage(b"b", message_finished=False))
    data += server.send(BytesMessage(b"c")) + server.send(BytesMessage(b"next"))
    client.receive_data(data)
    assert client.parse(0) == []
    assert client.paused
    assert isinstance(partial, PartialMessage)
    assert partial.join() == b"abc"
    assert client.parse(1) == [b"next"]


def test_an_abandoned_message_keeps_no_more_fragments() -> None:
    client, server = pair()
    client.receive_data(server.send(BytesMessage(b"a", message_finished=False)))
    (partial,) = client.parse(None)
    assert isinstance(partial, PartialMessage)
    partial.abandon()  # the application discarded it
    client.receive_data(server.send(BytesMessage(b"b" * 1000)) + server.send(BytesMessage(b"n")))
    assert client.parse(None) == [b"n"]
    assert partial.complete
    assert not partial.fragments


@pytest.mark.parametrize("fast_path", [True, False])
def test_messages_that_start_after_our_close_with_a_full_queue_are_dropped(
    fast_path: bool,
) -> None:
    client = ClientProtocol[str](fast_path=fast_path)
    server = Connection(ConnectionType.SERVER)
    client.send_close()
    data = server.send(BytesMessage(b"fits")) + server.send(TextMessage("whole"))
    data += server.send(BytesMessage(b"a", message_finished=False)) + server.send(
        BytesMessage(b"b")
    )
    data += server.send(CloseConnection(1000))
    client.receive_data(data)
    assert client.parse(1) == [b"fits"]
    assert client.dropped == 2
    assert client.close_rcvd == Close(1000, "")


@pytest.mark.parametrize("end", ["eof", "close frame", "oversized", "protocol error"])
def test_a_message_cut_short_is_abandoned(end: str) -> None:
    client, server = pair(max_size=10)
    client.receive_data(server.send(BytesMessage(b"a", message_finished=False)))
    (partial,) = client.parse(None)
    assert isinstance(partial, PartialMessage)
    if end == "eof":
        client.receive_eof()
    elif end == "close frame":
        feed(client, server.send(CloseConnection(1000)))
    elif end == "oversized":
        feed(client, server.send(BytesMessage(b"x" * 20)))
    else:
        feed(client, frame(0x1, b"a new message before the end of this one"))
    assert partial.abandoned
    assert not partial.complete
    assert not partial.fragments


# -- messages sent in fragments as they come ---------------------------------------------


@pytest.mark.parametrize("deflate", [False, True])
def test_send_fragment_streams_a_message(deflate: bool) -> None:
    client, server = pair(deflate=deflate)
    client.send_fragment("héllo ")
    # The first frame can be read whole before the message ends (a sync flush when
    # compressed), and nothing else may be sent meanwhile (RFC 6455 §5.4).
    server.receive_data(b"".join(client.data_to_send()))
    assert [(e.data, e.message_finished) for e in server.events()] == [("héllo ", False)]  # type: ignore[attr-defined]
    with pytest.raises(ConcurrencyError):
        client.send_message("interleaved")
    with pytest.raises(ConcurrencyError):
        client.send_fragments(["inter", "leaved"])
    with pytest.raises(TypeError, match="all fragments"):
        client.send_fragment(b"bytes in a text message")
    if not deflate:  # (wsproto's inflater loses its place at a ping inside a message)
        client.send_ping(b"p", "waiter")  # control frames may come between fragments
    client.send_fragment("wörld")
    client.finish_fragments()
    client.send_message("next")
    events = to_server(client, server)
    assert [type(e).__name__ for e in events] == ["Ping"] * (not deflate) + ["TextMessage"] * 3
    texts = [e for e in events if isinstance(e, TextMessage)]
    assert "".join(e.data for e in texts[:2]) == "wörld"
    assert texts[1].message_finished
    assert texts[2].data == "next"
    with pytest.raises(RuntimeError, match="no message"):
        client.finish_fragments()


def test_send_fragment_uncompressed_on_request() -> None:
    client, server = pair(deflate=True)
    client.send_fragment(b"abc" * 100, compress=False)
    client.send_fragment(b"def")
    client.finish_fragments()
    raw = b"".join(client.data_to_send())
    assert not raw[0] & 0x40  # RSV1 clear (RFC 7692 §6)
    assert b"".join(e.data for e in to_server_raw(raw, server)) == b"abc" * 100 + b"def"


def test_send_fragment_through_wsproto_framing() -> None:
    client = ClientProtocol[str]([negotiate_deflate([]), PassThrough()])
    server_deflate = PerMessageDeflate()
    server_deflate.accept("permessage-deflate")
    server = Connection(ConnectionType.SERVER, [server_deflate, PassThrough()])
    client.send_fragment(b"x" * 100)
    server.receive_data(b"".join(client.data_to_send()))
    assert [e.data for e in server.events()] == [b"x" * 100]  # type: ignore[attr-defined]
    client.finish_fragments()
    client.send_fragment(b"y" * 100, compress=False)
    client.finish_fragments()
    raw = b"".join(client.data_to_send())
    assert not raw[0] & 0x40  # RSV1 clear: sent as is
    assert b"".join(e.data for e in to_server_raw(raw, server)) == b"y" * 100


def test_abort_fragments_closes_with_1011() -> None:
    client, server = pair()
    client.abort_fragments(ValueError("nothing started: nothing to do"))
    assert client.state is State.OPEN
    client.send_fragment(b"half")
    later = server.send(TextMessage("still delivered"))
    cause = ValueError("the source failed")
    client.abort_fragments(cause)
    events = to_server(client, server)
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].code == 1011
    assert client.close_sent == Close(1011, "fragmented message interrupted")
    assert client.close_exc().__cause__ is cause
    # A message that arrives before the server's close frame is still delivered.
    assert feed(client, later) == ["still delivered"]
    client.abort_fragments(cause)  # nothing in progress any more
    client2, _ = pair()
    client2.send_fragment(b"half")
    client2.send_close()
    client2.abort_fragments(cause)  # closing already: no second close frame
    assert client2.close_sent == Close(1000, "")


def test_abort_fragments_while_failing_keeps_the_first_cause() -> None:
    client, server = pair(max_size=3)
    client.send_fragment(b"half")
    feed(client, server.send(BytesMessage(b"too big")))
    assert client.failure_pending
    client.abort_fragments(ValueError("later"))
    assert isinstance(client.failure, PayloadTooBig)
    assert client.close_sent == Close(1009, "message too big")  # the failure's close frame


def test_trace_describes_every_frame() -> None:
    lines: list[str] = []
    client = ClientProtocol[str](trace=lines.append)
    server = Connection(ConnectionType.SERVER)
    client.send_message("hello")
    client.send_fragments([b"ab", b"c" * 50])
    client.send_fragment("stream")
    client.finish_fragments()
    client.send_ping(b"p", "waiter")
    client.send_pong(b"q")
    to_server(client, server)
    data = server.send(TextMessage("hi", message_finished=False)) + server.send(TextMessage("!"))
    data += server.send(Ping(b"x")) + server.send(Pong(b"p"))
    data += server.send(CloseConnection(1000, "bye"))
    feed(client, data)
    assert lines == [
        "> TEXT 'hello' [5 bytes]",
        "> BINARY b'ab' [2 bytes, more]",
        "> CONT b'" + "c" * 40 + "'… [50 bytes]",
        "> TEXT 'stream' [6 bytes, more]",
        "> CONT '' [0 bytes]",
        "> PING b'p'",
        "> PONG b'q'",
        "< TEXT 'hi' [2 bytes, more]",
        "< TEXT '!' [1 bytes]",
        "< PING b'x'",
        "> PONG b'x'",
        "< PONG b'p'",
        "< CLOSE 1000 bye",
        "> CLOSE 1000 bye",
    ]
    client2 = ClientProtocol[str](trace=lines.append)
    client2.fail(1011, "", RuntimeError("down"))
    assert lines[-1] == "> CLOSE 1011"


# -- text=: the frame's type set by the caller, as in `websockets` ------------------------


def framing_pair(framing: str, *, deflate: bool) -> tuple[ClientProtocol[str], Connection]:
    """A client and a server, the client framing data itself ("own") or through wsproto
    ("wsproto": an extension other than ours makes it hand the framing over).
    """
    if framing == "own":
        return pair(deflate=deflate)
    extensions: list[Extension] = [PassThrough()]
    server_extensions: list[Extension] = [PassThrough()]
    if deflate:
        server_deflate = PerMessageDeflate()
        server_deflate.accept("permessage-deflate")
        extensions.insert(0, negotiate_deflate([]))
        server_extensions.insert(0, server_deflate)
    return ClientProtocol[str](extensions), Connection(ConnectionType.SERVER, server_extensions)


def received(events: list[Event]) -> list[tuple[str, Data]]:
    """The messages the server got: ("text" or "binary", the whole message)."""
    messages: list[tuple[str, Data]] = []
    parts: list[Any] = []
    for event in events:
        if isinstance(event, Message):
            parts.append(event.data)
            if event.message_finished:
                kind = "text" if isinstance(event, TextMessage) else "binary"
                messages.append((kind, "".join(parts) if kind == "text" else b"".join(parts)))
                parts = []
    return messages


@pytest.mark.parametrize("deflate", [False, True])
@pytest.mark.parametrize("framing", ["own", "wsproto"])
def test_text_overrides_the_frame_type(framing: str, deflate: bool) -> None:
    client, server = framing_pair(framing, deflate=deflate)
    client.send_message("café".encode(), text=True)
    client.send_message(b'{"ascii": true}', text=True)
    client.send_message(bytearray("ça".encode()), text=True)
    client.send_message("héllo", text=False)
    client.send_message("as usual", text=True)
    client.send_message(b"as usual", text=False)
    # A character split between two fragments is still one character.
    client.send_fragments([b"caf\xc3", memoryview(b"\xa9!")], text=True)
    client.send_fragments(["é", "t", "é"], text=False)
    client.send_fragment(b"\xe2\x82", text=True)  # the first two bytes of "€"
    client.send_fragment(b"\xac = euro")
    client.finish_fragments()
    client.send_fragment("stré", text=False)
    client.send_fragment("am")
    client.finish_fragments()
    assert received(to_server(client, server)) == [
        ("text", "café"),
        ("text", '{"ascii": true}'),
        ("text", "ça"),
        ("binary", "héllo".encode()),
        ("text", "as usual"),
        ("binary", b"as usual"),
        ("text", "café!"),
        ("binary", "été".encode()),
        ("text", "€ = euro"),
        ("binary", "stréam".encode()),
    ]


@pytest.mark.parametrize("framing", ["own", "wsproto"])
def test_bytes_sent_as_text_must_be_utf8(framing: str) -> None:
    client, server = framing_pair(framing, deflate=False)
    with pytest.raises(UnicodeDecodeError, match="invalid start byte"):
        client.send_message(b"\xff", text=True)
    with pytest.raises(UnicodeDecodeError):
        client.send_fragments([b"fine", b"\xc3("], text=True)
    with pytest.raises(UnicodeDecodeError, match="unexpected end of data"):
        client.send_fragments([b"ends inside a character \xc3"], text=True)
    # A bad first fragment of a streamed message leaves nothing started.
    with pytest.raises(UnicodeDecodeError):
        client.send_fragment(b"\xff", text=True)
    assert client.data_to_send() == []
    assert client.state is State.OPEN
    client.send_message("still usable")
    assert received(to_server(client, server)) == [("text", "still usable")]


@pytest.mark.parametrize("framing", ["own", "wsproto"])
def test_a_streamed_text_message_that_goes_bad_stays_unfinished(framing: str) -> None:
    client, server = framing_pair(framing, deflate=False)
    client.send_fragment(b"ok \xc3", text=True)
    with pytest.raises(UnicodeDecodeError):
        client.send_fragment(b"(")  # not a continuation byte
    with pytest.raises(UnicodeDecodeError, match="unexpected end of data"):
        client.finish_fragments()  # the message would end inside "é"
    # Neither queued anything; the message is still open, as the connection sees it.
    with pytest.raises(ConcurrencyError):
        client.send_message("another")
    client.abort_fragments(UnicodeDecodeError("utf-8", b"", 0, 1, "bad"))
    assert client.close_sent == Close(1011, "fragmented message interrupted")
    events = to_server(client, server)
    assert [e.data for e in events if isinstance(e, Message)] == ["ok "]


def test_trace_shows_the_type_text_sets() -> None:
    lines: list[str] = []
    client = ClientProtocol[str](trace=lines.append)
    client.send_message(b"bytes", text=True)
    client.send_message("str", text=False)
    client.send_fragment(b"a", text=True)
    client.finish_fragments()
    client.send_fragment("b", text=False)
    client.finish_fragments()
    assert lines == [
        "> TEXT b'bytes' [5 bytes]",
        "> BINARY 'str' [3 bytes]",
        "> TEXT b'a' [1 bytes, more]",
        "> CONT '' [0 bytes]",
        "> BINARY 'b' [1 bytes, more]",
        "> CONT b'' [0 bytes]",
    ]


# -- a message in many small frames is held in few pieces --------------------------------


def held(partial: PartialMessage) -> int:
    """The bytes that the pieces of a message take in memory, their objects included."""
    return sum(sys.getsizeof(piece) for piece in partial.fragments)


@pytest.mark.parametrize("text", [False, True])
def test_a_message_of_one_byte_frames_is_held_in_few_pieces(text: bool) -> None:
    # 20,000 frames of one byte (three on the wire): kept one object each, the message
    # would take some 40 bytes per byte.
    client, _ = pair()
    count = 20_000
    chunk = "é".encode()[:1] if text else b"x"  # text: "é" split between two frames
    payload = b"".join(
        frame(0x0, "é".encode()[index % 2 : index % 2 + 1], fin=False)
        if text
        else frame(0x0, b"x", fin=False)
        for index in range(1, count - 1)
    )
    last = "é".encode()[1:] if text else b"x"
    [partial] = feed(client, frame(0x1 if text else 0x2, chunk, fin=False) + payload)
    assert isinstance(partial, PartialMessage)
    feed(client, frame(0x0, last))
    assert partial.complete
    assert held(partial) <= 1.1 * count + 4096
    assert partial.join() == ("é" * (count // 2) if text else b"x" * count)


@given(
    script=st.lists(
        st.one_of(
            st.integers(0, 3),  # add a fragment of this size: tiny,
            st.integers(0, 2 * _SMALL_FRAGMENT),  # or any
            st.none(),  # a stream takes the oldest piece
        ),
        min_size=200,  # enough tiny fragments to matter
        max_size=600,
    ),
    text=st.booleans(),
)
def test_joining_small_fragments_keeps_every_byte_in_order(
    script: list[int | None], text: bool
) -> None:
    partial = PartialMessage(text)
    added: list[str | bytes] = []
    taken: list[str | bytes] = []
    for step in script:
        if step is None:
            if partial.fragments:
                taken.append(partial.fragments.popleft())
            continue
        letter = chr(ord("a") + len(added) % 26)
        fragment: str | bytes = letter * step if text else letter.encode() * step
        added.append(fragment)
        partial.add(fragment)
        assert held(partial) <= 1.1 * sum(len(piece) for piece in partial.fragments) + 4096
    empty: str | bytes = "" if text else b""
    assert empty.join([*taken, partial.join()]) == empty.join(added)  # type: ignore[arg-type,list-item]


# -- pings while the server reads nothing ------------------------------------------------


def test_deferred_pings_get_one_pong_for_the_latest() -> None:
    client, server = pair()
    client.pongs_deferred = True  # the driver: what we write isn't being taken
    feed(client, b"".join(server.send(Ping(b"%d" % index)) for index in range(1000)))
    assert client.data_to_send() == []
    assert client.pong_owed
    client.pongs_deferred = False
    feed(client, server.send(Ping(b"answered at once")))
    client.answer_deferred_pong()
    assert not client.pong_owed
    client.answer_deferred_pong()  # nothing owed: nothing sent
    pongs = [e.payload for e in to_server(client, server) if isinstance(e, Pong)]
    assert pongs == [b"answered at once", b"999"]


def test_no_deferred_pong_once_closing() -> None:
    client, server = pair()
    client.pongs_deferred = True
    feed(client, server.send(Ping(b"late")))
    client.send_close(1000)
    client.answer_deferred_pong()
    assert [type(e) for e in to_server(client, server)] == [CloseConnection]
