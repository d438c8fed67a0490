#!/usr/bin/env python3
"""Makes the test pictures in this folder, deterministically, with the standard library only.

    python3 specs/images/make_images.py

scene128.png  -- 128x128 RGB: a synthetic landscape (sky gradient, sun, hills, a striped house,
                 textured ground): smooth areas, hard edges and fine texture, like a photo.
gray128.png   -- the same scene in gray (1 channel), for single-channel networks.
"""
import math
import os
import struct
import zlib

W = H = 128


def rng(seed):
    state = seed & 0xFFFFFFFF
    while True:
        state = (1103515245 * state + 12345) & 0x7FFFFFFF
        yield state / 0x7FFFFFFF


def scene():
    noise = rng(7)
    px = []
    for y in range(H):
        row = []
        for x in range(W):
            t = y / (H - 1)
            # Sky: blue gradient.
            r, g, b = 0.35 + 0.3 * t, 0.55 + 0.25 * t, 0.95 - 0.15 * t
            # Sun with a soft halo.
            d = math.hypot(x - 96, y - 26)
            if d < 12:
                r, g, b = 1.0, 0.93, 0.55
            elif d < 22:
                a = (22 - d) / 10 * 0.5
                r, g, b = r + (1 - r) * a, g + (0.9 - g) * a, b + (0.6 - b) * a
            # Hills: two sine ridges.
            ridge1 = 70 + 10 * math.sin(x / 14.0)
            ridge2 = 84 + 6 * math.sin(x / 9.0 + 1.3)
            if y > ridge1:
                r, g, b = 0.25, 0.5 + 0.1 * math.sin(x / 5.0), 0.22
            if y > ridge2:
                n = next(noise)
                r, g, b = 0.45 + 0.15 * n, 0.35 + 0.1 * n, 0.2 + 0.05 * n
            # A house with a striped wall and a triangular roof.
            if 24 <= x < 56 and 62 <= y < 96:
                stripe = 0.8 if (x // 4) % 2 == 0 else 0.65
                r, g, b = stripe, stripe * 0.85, stripe * 0.7
                if 36 <= x < 44 and 80 <= y < 96:
                    r, g, b = 0.3, 0.18, 0.1
            if 46 <= y < 62 and abs(x - 40) <= (y - 46) * 1.1:
                r, g, b = 0.7, 0.15, 0.12
            row.append(tuple(min(255, max(0, int(round(v * 255)))) for v in (r, g, b)))
        px.append(row)
    return px


def png(path, rows, channels):
    color_type = {1: 0, 3: 2}[channels]
    raw = b"".join(b"\x00" + bytes(v for p in row for v in (p if channels == 3 else (p,))) for row in rows)

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


here = os.path.dirname(os.path.abspath(__file__))
img = scene()
png(os.path.join(here, "scene128.png"), img, 3)
gray = [[int(round(0.299 * r + 0.587 * g + 0.114 * b)) for (r, g, b) in row] for row in img]
png(os.path.join(here, "gray128.png"), gray, 1)
