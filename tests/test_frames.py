"""Our own framing of outgoing data frames is byte-identical to wsproto's (same masking key),
with and without permessage-deflate (wsproto then compresses through the same extension
class, so that only the framing differs); the C masking equals the Python fallback; and
what our deflate sends, a plain zlib peer inflates."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate

from anyws._deflate import negotiate_deflate
from anyws._mask import apply_mask, apply_mask_python
from anyws._protocol import ClientProtocol

BOUNDARY_LENGTHS = [0, 1, 3, 4, 5, 125, 126, 127, 65535, 65536, 65537, 200_000]

payload_lengths = st.one_of(st.sampled_from(BOUNDARY_LENGTHS), st.integers(0, 2000))
binary_payloads = payload_lengths.map(lambda n: bytes(i * 7 % 251 for i in range(n)))
text_payloads = st.one_of(st.text(max_size=300), payload_lengths.map(lambda n: "é" * (n // 2)))
messages = st.one_of(
    text_payloads,
    binary_payloads,
    st.lists(text_payloads, min_size=1, max_size=4),
    st.lists(binary_payloads, min_size=1, max_size=4),
)
deflate_params = st.sampled_from(
    [
        None,
        [],
        [("client_no_context_takeover", None)],
        [("client_max_window_bits", "9")],
        [("client_max_window_bits", "12"), ("client_no_context_takeover", None)],
    ]
)


def reference(params: list[tuple[str, str | None]] | None) -> Connection:
    """wsproto framing, compressing through an extension of its own configured alike."""
    extensions: list[Extension] = [] if params is None else [negotiate_deflate(params)]
    return Connection(ConnectionType.CLIENT, extensions)


def wsproto_frames(connection: Connection, message: str | bytes | list[str] | list[bytes]) -> bytes:
    parts = message if isinstance(message, list) else [message]
    out = b""
    for index, part in enumerate(parts):
        finished = index == len(parts) - 1
        event = (
            TextMessage(part, message_finished=finished)
            if isinstance(part, str)
            else BytesMessage(part, message_finished=finished)
        )
        out += connection.send(event)
    return out


@given(
    sequence=st.lists(messages, min_size=1, max_size=4),
    params=deflate_params,
    key=st.binary(min_size=4, max_size=4),
)
def test_own_framing_is_byte_identical_to_wsproto(
    sequence: list[str | bytes | list[str] | list[bytes]],
    params: list[tuple[str, str | None]] | None,
    key: bytes,
) -> None:
    ours = ClientProtocol[str]([] if params is None else [negotiate_deflate(params)])
    theirs = reference(params)
    with patch("os.urandom", return_value=key):
        for message in sequence:
            if isinstance(message, list):
                ours.send_fragments(message)
            else:
                ours.send_message(message)
            assert b"".join(ours.data_to_send()) == wsproto_frames(theirs, message)


def test_other_extensions_leave_framing_to_wsproto() -> None:
    class Marker(PerMessageDeflate):
        name = "x-marker"

    mine, reference_marker = Marker(), Marker()
    mine.finalize("x-marker")
    reference_marker.finalize("x-marker")
    ours = ClientProtocol[str]([mine])
    theirs = Connection(ConnectionType.CLIENT, [reference_marker])
    with patch("os.urandom", return_value=b"abcd"):
        ours.send_message("hello")
        ours.send_fragments([b"a", b"b"])
        assert b"".join(ours.data_to_send()) == theirs.send(TextMessage("hello")) + wsproto_frames(
            theirs, [b"a", b"b"]
        )


@given(
    data=st.binary(max_size=100),
    key=st.binary(min_size=4, max_size=4),
    prefix=st.binary(max_size=10),
)
def test_c_masking_equals_python(data: bytes, key: bytes, prefix: bytes) -> None:
    assert apply_mask(data, key, prefix) == apply_mask_python(data, key, prefix)
    assert apply_mask(data, key) == apply_mask_python(data, key)
    assert apply_mask(apply_mask(data, key), key) == data


@pytest.mark.parametrize("mask", [apply_mask, apply_mask_python])
def test_mask_must_have_four_bytes(mask: object) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        mask(b"data", b"abc")  # type: ignore[operator]
    with pytest.raises(ValueError, match="4 bytes"):
        mask(b"data", b"abc", b"prefix")  # type: ignore[operator]


@given(messages=st.lists(st.binary(max_size=3000), min_size=1, max_size=5), takeover=st.booleans())
def test_compressed_messages_inflate_at_a_plain_zlib_peer(
    messages: list[bytes], takeover: bool
) -> None:
    params: list[tuple[str, str | None]] = (
        [] if takeover else [("client_no_context_takeover", None)]
    )
    ours = ClientProtocol[str]([negotiate_deflate(params)])
    inflater = zlib.decompressobj(-15)
    for message in messages:
        ours.send_message(message)
        (raw,) = ours.data_to_send()
        header_length = 2 + {126: 2, 127: 8}.get(raw[1] & 0x7F, 0)
        mask = raw[header_length : header_length + 4]
        payload = apply_mask_python(raw[header_length + 4 :], mask)
        assert raw[0] & 0x40  # RSV1: compressed
        if not takeover:
            inflater = zlib.decompressobj(-15)
        assert inflater.decompress(payload + b"\x00\x00\xff\xff") == message


def test_anyws_no_speedups_selects_the_pure_python_fallback() -> None:
    # How nox's pure-Python session runs the suite where the accelerator was built.
    check = (
        "from anyws import _mask; "
        "assert _mask.apply_mask is _mask.apply_mask_python, 'the accelerator is in use'"
    )
    environment = {**os.environ, "ANYWS_NO_SPEEDUPS": "1"}
    subprocess.run([sys.executable, "-c", check], env=environment, check=True, timeout=60)


@given(
    parts=st.lists(text_payloads, min_size=1, max_size=4),
    text=st.booleans(),
    params=deflate_params,
    key=st.binary(min_size=4, max_size=4),
)
def test_text_override_is_byte_identical_to_wsproto(
    parts: list[str],
    text: bool,
    params: list[tuple[str, str | None]] | None,
    key: bytes,
) -> None:
    # UTF-8 sent as text (or text sent as binary) frames exactly as wsproto frames the same
    # message given in the type that makes it pick that opcode.
    ours = ClientProtocol[str]([] if params is None else [negotiate_deflate(params)])
    theirs = reference(params)
    given_parts: list[Any] = [part.encode() for part in parts] if text else parts
    expected: list[Any] = parts if text else [part.encode() for part in parts]
    with patch("os.urandom", return_value=key):
        if len(parts) == 1:
            ours.send_message(given_parts[0], text=text)
            assert b"".join(ours.data_to_send()) == wsproto_frames(theirs, expected[0])
        else:
            ours.send_fragments(given_parts, text=text)
            assert b"".join(ours.data_to_send()) == wsproto_frames(theirs, expected)
