"""Data frames without wsproto's per-frame work (RFC 6455 §5.2).

Outgoing: the data frames a client sends, byte for byte as wsproto builds them, without its
per-frame copies: the header and the masked payload are built in one buffer. Control frames
and every frame of a connection with extensions other than our permessage-deflate still go
through wsproto; tests/test_frames.py checks that both produce identical bytes for the same
masking key.

Incoming: `parse_frames` (the C accelerator's, None without it) takes the whole uncompressed
messages at the start of a buffer, and `frame_extent` finds where any other frame ends, so
that exactly that frame can be handed to wsproto, which decides everything about it. A
whole binary message that arrives in many reads goes into a `MessageBuffer` (the
accelerator's too) of its size: the first read is copied in, and the socket reads the rest
straight into it (`ClientProtocol.receive_window`).
tests/test_incoming.py checks that both paths deliver the same for the same bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._mask import apply_mask

if TYPE_CHECKING:
    from . import _speedups

parse_frames: Callable[[bytes | bytearray, int, int, int], tuple[list[str | bytes], int]] | None
MessageBuffer: type[_speedups.MessageBuffer] | None
try:
    from ._speedups import MessageBuffer, parse_frames
except ImportError:  # pragma: no cover (the C accelerator is optional; CI builds it)
    parse_frames = MessageBuffer = None
if os.environ.get("ANYWS_NO_SPEEDUPS"):  # pragma: no cover (nox's pure-Python session)
    # wsproto parses everything, as without the accelerator: how CI tests that path.
    parse_frames = MessageBuffer = None

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2

_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """Return a masked client frame: header, a fresh random masking key (§5.3), payload."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = _HEADER_16.pack(first, 0xFE, length)
    else:
        header = _HEADER_64.pack(first, 0xFF, length)
    # "a fresh masking key ... derived from a strong source of entropy" (§5.3)
    mask = os.urandom(4)
    return apply_mask(payload, mask, header + mask)


INVALID_FRAME = -1
"""`frame_extent`'s end for a header wsproto rejects: the rest of the stream is its."""

_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})  # RFC 6455 §5.2; the others are reserved


def frame_extent(
    buffer: bytes | bytearray, start: int, *, rsv1: bool
) -> tuple[int, int, int] | None:
    """Where the server frame at `buffer[start:]` lies: (its first byte, the offset of its
    payload, the offset of its end).

    None if its header isn't all in the buffer. The end is `INVALID_FRAME` for a header
    that breaks RFC 6455 §5.2 (a mask on a server frame, a reserved opcode or RSV bit, an
    RSV1 bit without permessage-deflate (`rsv1`), a fragmented or long control frame
    (§5.5), a length not in its shortest form or with its top bit set): wsproto reports it.
    """
    available = len(buffer) - start
    if available < 2:
        return None
    first, second = buffer[start], buffer[start + 1]
    opcode = first & 0x0F
    length = second & 0x7F
    if (
        second & 0x80
        or first & (0x30 if rsv1 else 0x70)
        or opcode not in _OPCODES
        or (opcode >= 0x8 and (not first & 0x80 or length > 125))
    ):
        return first, start + 2, INVALID_FRAME
    header = 2
    if length == 126:
        if available < 4:
            return None
        header = 4
        length = int.from_bytes(buffer[start + 2 : start + 4], "big")
        if length < 126:
            return first, start + header, INVALID_FRAME
    elif length == 127:
        if available < 10:
            return None
        header = 10
        length = int.from_bytes(buffer[start + 2 : start + 10], "big")
        if length < 65536 or length >> 63:
            return first, start + header, INVALID_FRAME
    return first, start + header, start + header + length
