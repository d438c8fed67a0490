"""Time per image of a Python call `net(x)` against `convc bench` on the same network.

    python benches/py_call_overhead.py [MODEL] [--threads 1] [--convc target/release/convc]

Needs the module installed (`pip install ./crates/convc-py`) and a release build of the CLI.
Both sides: one warm-up run, then the median over at least `--seconds` of runs of single
images; `--rounds` alternations of the two (a shared machine's load changes from one second to
the next), reported as the median of the per-round ratios and the ratio of the best times.
"""

import argparse
import json
import statistics
import subprocess
import time

import numpy as np

import convc


def python_ms(net, seconds):
    """Median and best milliseconds of `net(x)` for one image."""
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
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    net = convc.compile(a.model, threads=a.threads)
    rows = []
    for _ in range(a.rounds):
        rows.append((cli_ms(a.convc, a.model, a.threads, a.seconds), python_ms(net, a.seconds)))
    print(f"{a.model}, {a.threads} thread(s), {a.rounds} rounds")
    for (c_med, c_min), (p_med, p_min) in rows:
        print(f"  convc bench {c_med:.4f} ms (best {c_min:.4f})   python {p_med:.4f} ms (best {p_min:.4f})   ratio {p_med / c_med:.3f}")
    ratio = statistics.median(p[0] / c[0] for c, p in rows)
    best = min(p[1] for _, p in rows) / min(c[1] for c, _ in rows)
    print(f"  python / cli: {ratio:.3f} (median of the rounds' median ratios), {best:.3f} (best times)")


if __name__ == "__main__":
    main()
