"""W5's floor: the CPU that every client spends per W5 operation whatever its WebSocket code.

    python bench/w5_floor.py

A W5 operation encodes the JSON document, deflates it, inflates the echo and decodes the
JSON. This times each of those alone in a loop, with the parameters the benchmark's
server negotiates (12 window bits, memLevel 5, zlib's default level, a sync flush per
message), and prints client CPU µs per operation: a lower bound for any client's W5.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterator

from clients import DOCUMENT

WINDOW_BITS = 12
MEM_LEVEL = 5
COUNT = 3000


def per_operation(operation: Callable[[], object]) -> float:
    for _ in range(200):  # warm-up
        operation()
    start = time.process_time()
    for _ in range(COUNT):
        operation()
    return (time.process_time() - start) / COUNT * 1e6


def deflater() -> Callable[[bytes], bytes]:
    compressor = zlib.compressobj(
        zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -WINDOW_BITS, MEM_LEVEL
    )

    def deflate(data: bytes) -> bytes:
        # RFC 7692 §7.2.1: a sync flush, its 4-byte tail removed.
        return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]

    return deflate


def main() -> None:
    text = json.dumps(DOCUMENT)
    data = text.encode()
    deflate = deflater()
    server_deflate = deflater()  # the echo, compressed with the server's own context
    echoes: Iterator[bytes] = iter([server_deflate(data) for _ in range(COUNT + 200)])
    inflater = zlib.decompressobj(-WINDOW_BITS)
    results = {
        "json.dumps": per_operation(lambda: json.dumps(DOCUMENT)),
        "json.loads": per_operation(lambda: json.loads(text)),
        "deflate": per_operation(lambda: deflate(data)),
        "inflate": per_operation(lambda: inflater.decompress(next(echoes) + b"\x00\x00\xff\xff")),
    }
    for name, micros in results.items():
        print(f"{name:<12} {micros:7.1f} µs")
    print(f"{'total':<12} {sum(results.values()):7.1f} µs")


if __name__ == "__main__":
    main()
