"""permessage-deflate (RFC 7692), sans-IO: the negotiated parameters, the compression of
outgoing messages and the inflation of incoming ones, as a wsproto `Extension`.
"""

from __future__ import annotations

import zlib

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ._exceptions import NegotiationError

_EMPTY_BLOCK_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1-§7.2.2


class NegotiatedDeflate(Extension):
    """permessage-deflate with the parameters the server accepted (RFC 7692 §7.1).

    Inflating stops as soon as a message grows past `max_size`, or one frame's payload
    past `max_fragment_size` (RFC 7692 §8.1 warns of "decompression bombs"): zlib is asked
    for at most the bytes that remain allowed, so a small compressed frame can't make a huge
    allocation. Passing a limit sets `too_big` rather than failing the frame, so that
    wsproto keeps parsing: the connection is failed with 1009 by `ClientProtocol`, which
    calls `discard()` and still reads the server's close frame behind the oversized message.

    Window bits of 8 are legal in RFC 7692, but zlib can't compress with a window of 256
    bytes. Inflating with a larger window is always correct, so a server window of 8 is read
    with 9; when the server limits *our* window to 8, we send messages uncompressed, which
    RFC 7692 §6.1 allows ("An endpoint MAY send a message without compression").
    """

    name = "permessage-deflate"

    def __init__(
        self,
        *,
        client_no_context_takeover: bool,
        server_no_context_takeover: bool,
        client_max_window_bits: int,
        server_max_window_bits: int,
        max_size: int | None = None,
        max_fragment_size: int | None = None,
    ) -> None:
        self.client_no_context_takeover = client_no_context_takeover
        self.server_no_context_takeover = server_no_context_takeover
        self.client_max_window_bits = max(client_max_window_bits, 9)
        self.server_max_window_bits = max(server_max_window_bits, 9)
        self.compress_outbound = client_max_window_bits > 8
        self.max_size = max_size
        self.max_fragment_size = max_fragment_size
        self.inflated_size = 0  # of the message being received
        self.frame_inflated_size = 0  # of the frame being received
        self.too_big = False  # the message or frame being received passed its limit
        self._discarding = False
        self._text_tail = b""  # the last bytes inflated for a text message (see discard)
        self._message_is_text = False
        self._deflater: zlib._Compress | None = None
        self._inflater: zlib._Decompress | None = None
        self._message_compressed = False
        self._frame_compressed = False
        # Set by the protocol for a message it sends uncompressed while wsproto frames it.
        self.skip_message = False

    def enabled(self) -> bool:
        """Negotiated, so always in use."""
        return True

    def offer(self) -> str:
        """The parameters anyws offers (the handshake sends them; see `DEFLATE_OFFER`)."""
        return "client_max_window_bits"

    # -- outgoing ----------------------------------------------------------------------

    def compress(self, data: bytes, *, first: bool, fin: bool) -> tuple[bool, bytes]:
        """Compress one frame's payload of an outgoing message; return (RSV1, payload).

        RSV1 marks the first frame of a compressed message (RFC 7692 §6); the last frame
        ends with an empty deflate block whose 4-byte tail is removed (§7.2.1). Every frame
        carries all of its data (a sync flush), so that a receiver can read a fragment
        before the message ends, as `websockets` does.
        """
        if not self.compress_outbound:
            return False, data
        if self._deflater is None:
            # memLevel 5 (as `websockets` does): 16 KiB of hash tables instead of 128 KiB
            # per connection, and about 40 % less CPU, for much the same ratio.
            self._deflater = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.client_max_window_bits, 5
            )
        compressed = self._deflater.compress(data)
        compressed += self._deflater.flush(zlib.Z_SYNC_FLUSH)
        if fin:
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
        """Wsproto's hook (when wsproto frames data), served by `compress`."""
        if opcode.iscontrol() or self.skip_message:
            return rsv, data
        rsv1, payload = self.compress(data, first=opcode is not Opcode.CONTINUATION, fin=fin)
        return RsvBits(rsv1, rsv.rsv2, rsv.rsv3), payload

    # -- incoming ----------------------------------------------------------------------

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        """Note whether the frame's payload is compressed; claim the RSV1 bit."""
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR  # RSV1 only on a message's first frame (§6)
        if opcode.iscontrol():
            self._frame_compressed = False
        else:
            self.frame_inflated_size = 0
            if opcode is not Opcode.CONTINUATION:
                self._message_compressed = rsv.rsv1
                self._message_is_text = opcode is Opcode.TEXT
                self._text_tail = b""
                self.inflated_size = 0
            self._frame_compressed = self._message_compressed
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        """Inflate the payload of a compressed frame."""
        if not self._frame_compressed:
            return data
        if self._discarding:
            return b""
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        """At the end of a compressed message, inflate the removed empty-block tail."""
        if not (fin and self._frame_compressed):
            return None
        if self._discarding:
            # wsproto decodes text incrementally: end the discarded message on a whole
            # character, or its decoder would fail the stream we still need to parse.
            completion, self._text_tail = utf8_completion(self._text_tail), b""
            self._message_compressed = False
            return completion
        tail = self._inflate(_EMPTY_BLOCK_TAIL)
        self._message_compressed = False
        if self.server_no_context_takeover:
            self._inflater = None  # §7.1.1.2: each message was compressed afresh
        return tail

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-self.server_max_window_bits)
        try:
            allowed = self._allowed()
            if allowed is None:
                inflated = self._inflater.decompress(data)
            else:
                # At most one byte past the limit: enough to know it was passed.
                inflated = self._inflater.decompress(data, allowed + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self.inflated_size += len(inflated)
        self.frame_inflated_size += len(inflated)
        if self._message_is_text:
            tail = inflated if len(inflated) >= 3 else self._text_tail + inflated
            self._text_tail = tail[-3:]
        if allowed is not None and len(inflated) > allowed:
            # The connection fails with 1009: nothing more is inflated.
            self.too_big = True
            self.discard()
        return inflated

    def _allowed(self) -> int | None:
        """The bytes the message and the frame being received may still grow by."""
        allowed = None
        if self.max_size is not None:
            allowed = self.max_size - self.inflated_size
        if self.max_fragment_size is not None:
            frame_allowed = self.max_fragment_size - self.frame_inflated_size
            allowed = frame_allowed if allowed is None else min(allowed, frame_allowed)
        return allowed

    def discard(self) -> None:
        """Stop inflating: every later data frame's payload is dropped unread.

        Called once the connection failed; only the server's close frame still matters.
        """
        self._discarding = True
        self._inflater = None


def utf8_completion(tail: bytes) -> bytes:
    """The bytes that complete a UTF-8 sequence left open at the end of `tail`.

    Returns b"" if `tail` ends on a whole character. The bytes chosen are the smallest valid
    continuation (RFC 3629 §4: E0 needs A0-BF next, ED 80-9F, F0 90-BF, F4 80-8F).
    """
    for back in range(1, min(len(tail), 3) + 1):
        byte = tail[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: the lead byte is further back
        if byte < 0xC0:
            return b""  # ASCII: nothing open
        needed = (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4) - back
        if needed <= 0:
            return b""
        first = {0xE0: 0xA0, 0xF0: 0x90}.get(byte, 0x80) if back == 1 else 0x80
        return bytes([first]) + b"\x80" * (needed - 1)
    return b""


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
