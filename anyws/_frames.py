"""Serializing the data frames a client sends (RFC 6455 §5.2), byte for byte as wsproto does,
without its per-frame copies: the header and the masked payload are built in one buffer.

Control frames and every frame of a connection with extensions other than our
permessage-deflate still go through wsproto; tests/test_frames.py checks that both produce
identical bytes for the same masking key.
"""

from __future__ import annotations

import os
import struct

from ._mask import apply_mask

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
