#!/usr/bin/env python3
"""Writes N distinct SIZExSIZE RGB PNGs into a folder, for measuring `convc run` on a folder.

    python3 benches/make_batch_images.py OUTDIR [N=1000] [SIZE=128]

Standard library only (zlib); each image is a different deterministic pattern. The images are
not committed: make them when measuring (see the README's "Many images" section).
"""

import struct
import sys
import zlib
from pathlib import Path


def chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(size: int, seed: int) -> bytes:
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type 0 (none)
        for x in range(size):
            row += bytes(((x * 3 + y * 5 + seed * 7) % 256,
                          (x * y + seed * 13) % 256,
                          (x ^ y ^ seed) % 256))
        rows.append(bytes(row))
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 6)) + chunk(b"IEND", b""))


def main() -> None:
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (out / f"img{i:05d}.png").write_bytes(png(size, i))


if __name__ == "__main__":
    main()
