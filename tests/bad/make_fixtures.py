#!/usr/bin/env python3
"""Writes the binary fixtures of the bad-input corpus (tests/bad/): broken .npy, PNG and
safetensors files and a spec that is not UTF-8. Standard library only; deterministic.

Run from anywhere:  python3 tests/bad/make_fixtures.py
The files it writes are committed; run it again after changing it and commit the result.
Large inputs (the 1 MB line, 100,000 layers, 10,000 brackets, an oversized spec) are not
committed: the runner tests/bad_inputs.rs generates them (`generate:` in case.txt).
"""

import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def put(rel, data):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def npy(shape, payload, descr="<f4"):
    """A version 1.0 .npy file with this header and these data bytes (not checked)."""
    dims = "".join(f"{d}, " for d in shape).rstrip(" ") if len(shape) != 1 else f"{shape[0]},"
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def f32(values):
    return b"".join(struct.pack("<f", v) for v in values)


def count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def chunk(kind, data):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(width, height, color=2, depth=8, ihdr=None):
    """An 8-bit PNG of mid gray; `ihdr` overrides the (width, height) written in the header."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    row = b"\x00" + bytes([128] * (width * channels * depth // 8))
    w, h = ihdr or (width, height)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def safetensors(header, payload):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


W = [1, 1, 3, 3]  # the weight shape of `conv(image, out=1)` on a 1-channel input
good_w = f32([0.1] * 9)

# ---- weights ----------------------------------------------------------------------------
put("weights/npy_nan/w.npy", npy(W, f32([0.1] * 4 + [float("nan")] + [0.1] * 4)))
put("weights/npy_inf/w.npy", npy(W, f32([0.1] * 8 + [float("inf")])))
put("weights/npy_wrong_shape/w.npy", npy([1, 1, 3, 2], f32([0.1] * 6)))
put("weights/npy_truncated/w.npy", npy(W, f32([0.1] * 6)))
put("weights/npy_empty/w.npy", b"")
put("weights/npy_not_npy/w.npy", b"this is text, not a NumPy array\n")
put("weights/npy_int_dtype/w.npy", npy(W, struct.pack("<9i", *range(9)), descr="<i4"))
put("weights/npy_header_cut/w.npy", npy(W, good_w)[:20])
put(
    "weights/st_offsets_past_end/m.safetensors",
    safetensors({"w": {"dtype": "F32", "shape": W, "data_offsets": [0, 360]}}, good_w),
)
put("weights/st_header_longer_than_file/m.safetensors", struct.pack("<Q", 1_000_000) + b"{}")
put("weights/st_invalid_json/m.safetensors", struct.pack("<Q", 5) + b'{"w":')
put("weights/st_huge_header_length/m.safetensors", struct.pack("<Q", 2**64 - 1) + b"{}")
put(
    "weights/st_missing_tensor/m.safetensors",
    safetensors({"conv1.weight": {"dtype": "F32", "shape": W, "data_offsets": [0, 36]}}, good_w),
)
put(
    "weights/safetensors_without_name/m.safetensors",
    safetensors({"w": {"dtype": "F32", "shape": W, "data_offsets": [0, 36]}}, good_w),
)
put(
    "weights/st_int_dtype/m.safetensors",
    safetensors({"w": {"dtype": "I32", "shape": W, "data_offsets": [0, 36]}}, struct.pack("<9i", *range(9))),
)
put(
    "weights/st_wrong_shape/m.safetensors",
    safetensors({"w": {"dtype": "F32", "shape": [9], "data_offsets": [0, 36]}}, good_w),
)
put(
    "weights/st_nan/m.safetensors",
    safetensors({"w": {"dtype": "F32", "shape": W, "data_offsets": [0, 36]}}, f32([float("nan")] * 9)),
)

# ---- run inputs (the models take [3, 4, 4]) -----------------------------------------------
X = [3, 4, 4]
put("inputs/npy_truncated/x.npy", npy(X, f32([0.5] * 20)))
put("inputs/npy_empty/x.npy", b"")
put("inputs/npy_not_npy/x.npy", b"\x89PNG\r\n\x1a\n but named .npy")
put("inputs/npy_2d/x.npy", npy([4, 4], f32([0.5] * 16)))
put("inputs/npy_5d/x.npy", npy([1, 1, 3, 4, 4], f32([0.5] * 48)))
put("inputs/npy_zero_height/x.npy", npy([3, 0, 4], b""))
put("inputs/npy_zero_batch/x.npy", npy([0, 3, 4, 4], b""))
put("inputs/npy_f16/x.npy", npy(X, b"\x00\x38" * 48, descr="<f2"))
put("inputs/npy_huge_header/x.npy", npy([3, 100000, 100000], b""))
put("inputs/npy_trailing_bytes/x.npy", npy(X, f32([0.5] * 48) + b"extra"))
put("inputs/npy_wrong_channels/x.npy", npy([1, 4, 4], f32([0.5] * 16)))
put("inputs/npy_wrong_height/x.npy", npy([3, 5, 4], f32([0.5] * 60)))
put("inputs/batch_mismatch/a.npy", npy(X, f32([0.5] * 48)))
put("inputs/batch_mismatch/b.npy", npy([3, 4, 5], f32([0.5] * 60)))
put("inputs/symbol_mismatch/a.npy", npy([1, 4, 4], f32([0.5] * 16)))
put("inputs/symbol_mismatch/b.npy", npy([1, 4, 5], f32([0.5] * 20)))
good_png = png(4, 4)
put("inputs/png_truncated/x.png", good_png[: len(good_png) // 2])
put("inputs/png_signature_only/x.png", good_png[:8])
put("inputs/png_empty/x.png", b"")
put("inputs/png_not_png/x.png", b"GIF89a\x04\x00\x04\x00")
put("inputs/png_gray_for_rgb/x.png", png(4, 4, color=0))
put("inputs/png_rgba_for_rgb/x.png", png(4, 4, color=6))
put("inputs/png_lying_ihdr_huge/x.png", png(4, 4, ihdr=(100000, 100000)))
put("inputs/png_lying_ihdr_large/x.png", png(4, 4, ihdr=(4000, 4000)))
put("inputs/png_lying_ihdr_small/x.png", png(4, 4, ihdr=(2, 2)))
bad_crc = bytearray(good_png)
bad_crc[29] ^= 0xFF  # inside the IHDR CRC
put("inputs/png_bad_crc/x.png", bytes(bad_crc))

# ---- outputs ------------------------------------------------------------------------------
for case in ["out_missing_dir", "out_is_input", "out_is_dir", "out_under_file", "out_twice"]:
    put(f"outputs/{case}/x.npy", npy(X, f32([0.5] * 48)))
put("outputs/out_under_file/afile", b"a plain file\n")
put("outputs/png_grid_too_many_channels/x.npy", npy([1, 1, 1], f32([0.5])))
put("outputs/second_output_fails/x.npy", npy([1, 1, 1], f32([0.5])))

# ---- specs that are not text ----------------------------------------------------------------
put(
    "spec/not_utf8/model.conv",
    b"input image: [3, 8, 8]\nf = relu(im\xffage)  # a stray byte\noutput f\n",
)
put("spec/utf16/model.conv", "input image: [3, 8, 8]\n".encode("utf-16"))
put("spec/binary/model.conv", good_png)
put("spec/zero_bytes/model.conv", b"")

# ---- limits -------------------------------------------------------------------------------
put("limits/padded_output_too_big/x.npy", npy([1, 1, 1], f32([0.5])))
put("limits/input_over_memory_limit/x.npy", npy(X, f32([0.5] * 48)))
put("limits/size_disagrees_with_data/x.npy", npy([1, 4, 4], f32([0.5] * 16)))
