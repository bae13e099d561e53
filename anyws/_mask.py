"""Masking of client frames (RFC 6455 §5.3): the C accelerator if it was built, else Python
(also when ANYWS_NO_SPEEDUPS is set in the environment).

The Python version XORs each of the four key bytes into every fourth payload byte with a
translation table, which keeps the work in C loops inside CPython.
"""

from __future__ import annotations

import os

__all__ = ["apply_mask", "apply_mask_python"]

_XOR_TABLES = [bytes(value ^ key for value in range(256)) for key in range(256)]


def apply_mask_python(data: bytes, mask: bytes, prefix: bytes = b"") -> bytes:
    """Return `prefix` followed by `data` XORed with the 4-byte `mask` repeated (the
    pure-Python fallback of the C accelerator).
    """
    if len(mask) != 4:
        raise ValueError("mask must contain 4 bytes")
    masked = bytearray(data)
    for offset in range(4):
        masked[offset::4] = masked[offset::4].translate(_XOR_TABLES[mask[offset]])
    return prefix + masked if prefix else bytes(masked)


try:
    from ._speedups import apply_mask
except ImportError:  # pragma: no cover (the C accelerator is optional; CI builds it)
    apply_mask = apply_mask_python
if os.environ.get("ANYWS_NO_SPEEDUPS"):  # pragma: no cover (nox's pure-Python session)
    # The fallback even where the accelerator was built: how CI tests it.
    apply_mask = apply_mask_python
