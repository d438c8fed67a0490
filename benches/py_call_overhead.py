"""Time per image of a Python call `net(x)` against `convc bench` on the same network.

    python benches/py_call_overhead.py [MODEL] [--threads 1] [--convc target/release/convc]

Needs the module installed (`pip install ./crates/convc-py`) and a release build of the CLI.
Both sides: one warm-up run, then the median over at least a second of runs, single images.
"""

import argparse
import json
import statistics
import subprocess
import time

import numpy as np

import convc


def python_ms(model, threads, seconds):
    """Median and best milliseconds of `net(x)` for one image."""
    net = convc.compile(model, threads=threads)
    (_, shape), = net.inputs
    x = np.random.default_rng(0).random(shape, dtype=np.float32) - 0.5
    net(x)
    times = []
    start = time.perf_counter()
    while len(times) < 10 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, min(times) * 1e3


def cli_ms(exe, model, threads, seconds):
    """Median and best milliseconds per image of `convc bench`."""
    out = subprocess.run(
        [exe, "bench", model, "--threads", str(threads), "--min-time", str(seconds), "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    v = json.loads(out)
    return v["ms_per_image"], v["min_ms_per_image"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="../shared/bench/seed_3to8.conv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--convc", default="target/release/convc")
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args()
    c_med, c_min = cli_ms(a.convc, a.model, a.threads, a.seconds)
    p_med, p_min = python_ms(a.model, a.threads, a.seconds)
    print(f"{a.model}, {a.threads} thread(s)")
    print(f"  convc bench  {c_med:.4f} ms/image (best {c_min:.4f})")
    print(f"  python call  {p_med:.4f} ms/image (best {p_min:.4f})")
    print(f"  python / cli {p_med / c_med:.3f} (medians), {p_min / c_min:.3f} (best)")


if __name__ == "__main__":
    main()
