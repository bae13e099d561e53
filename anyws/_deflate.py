"""permessage-deflate (RFC 7692), sans-IO: the negotiated parameters and the compression of
outgoing messages. Inflating incoming frames is wsproto's `PerMessageDeflate`, which this
extends.
"""

from __future__ import annotations

import zlib

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameDecoder, FrameProtocol, Opcode, RsvBits

from ._exceptions import NegotiationError


class NegotiatedDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate with the parameters the server accepted (RFC 7692 §7.1).

    Window bits of 8 are legal in RFC 7692, but zlib can't compress with a window of 256
    bytes. Inflating with a larger window is always correct, so a server window of 8 is read
    with 9; when the server limits *our* window to 8, we send messages uncompressed, which
    RFC 7692 §6.1 allows ("An endpoint MAY send a message without compression").
    """

    def __init__(
        self,
        *,
        client_no_context_takeover: bool,
        server_no_context_takeover: bool,
        client_max_window_bits: int,
        server_max_window_bits: int,
    ) -> None:
        super().__init__(
            client_no_context_takeover=client_no_context_takeover,
            server_no_context_takeover=server_no_context_takeover,
            client_max_window_bits=max(client_max_window_bits, 9),
            server_max_window_bits=max(server_max_window_bits, 9),
        )
        self.compress_outbound = client_max_window_bits > 8
        self._deflater: zlib._Compress | None = None
        self.finalize("")

    def compress(self, data: bytes, *, first: bool, fin: bool) -> tuple[bool, bytes]:
        """Compress one frame's payload of an outgoing message; return (RSV1, payload).

        RSV1 marks the first frame of a compressed message (RFC 7692 §6); the last frame
        ends with an empty deflate block whose 4-byte tail is removed (§7.2.1).
        """
        if not self.compress_outbound:
            return False, data
        if self._deflater is None:
            self._deflater = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.client_max_window_bits
            )
        compressed = self._deflater.compress(data)
        if fin:
            compressed += self._deflater.flush(zlib.Z_SYNC_FLUSH)
            compressed = compressed[:-4]
            if self.client_no_context_takeover:
                self._deflater = None  # §7.1.1.1: each message starts a new context
        return first, compressed

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        """Wsproto's hook, served by `compress` so that both share one deflate context."""
        if opcode.iscontrol():
            return rsv, data
        rsv1, payload = self.compress(data, first=opcode is not Opcode.CONTINUATION, fin=fin)
        return RsvBits(rsv1, rsv.rsv2, rsv.rsv3), payload


def negotiate_deflate(params: list[tuple[str, str | None]]) -> NegotiatedDeflate:
    """Configure permessage-deflate from the server's response parameters (RFC 7692 §7.1).

    Raises:
        NegotiationError: an unknown, repeated or malformed parameter.
    """
    seen: set[str] = set()
    no_context_takeover = {"client_no_context_takeover": False, "server_no_context_takeover": False}
    window_bits = {"client_max_window_bits": 15, "server_max_window_bits": 15}
    for key, param_value in params:
        if key in seen:
            raise NegotiationError(f"duplicate permessage-deflate parameter: {key}")
        seen.add(key)
        if key in no_context_takeover:
            if param_value is not None:
                raise NegotiationError(f"permessage-deflate parameter {key} takes no value")
            no_context_takeover[key] = True
        elif key in window_bits:
            # RFC 7692 §7.1.2: the value is a decimal 8..15 without leading zeros; a server
            # must send one in its response.
            if (
                param_value is None
                or not param_value.isdigit()
                or param_value.startswith("0")
                or not 8 <= int(param_value) <= 15
            ):
                raise NegotiationError(f"invalid permessage-deflate parameter: {key}={param_value}")
            window_bits[key] = int(param_value)
        else:
            raise NegotiationError(f"unknown permessage-deflate parameter: {key}")
    return NegotiatedDeflate(
        client_no_context_takeover=no_context_takeover["client_no_context_takeover"],
        server_no_context_takeover=no_context_takeover["server_no_context_takeover"],
        client_max_window_bits=window_bits["client_max_window_bits"],
        server_max_window_bits=window_bits["server_max_window_bits"],
    )
