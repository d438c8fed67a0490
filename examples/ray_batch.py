"""Map a compiled convc network over a folder of images with Ray Data.

    python examples/ray_batch.py MODEL.conv IMAGES/ -o OUT/ [--workers 2] [--threads 1]

Writes OUT/STEM.npy for every IMAGES/STEM.png or .npy (OUT/STEM.NAME.npy per output for a
network with several), the same files as `convc run MODEL IMAGES/ -o OUT/`. Each worker
compiles the network once and then reads, runs and writes its share of the images; only file
names go through Ray. Without a running cluster, Ray starts a local one on this machine
(`--workers` actors); with `RAY_ADDRESS` set it joins that cluster.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

import convc


def image_files(folder):
    """The folder's .png and .npy files (any case, not hidden), in name order, as `convc run
    DIR/` takes them."""
    return sorted(
        str(p)
        for p in Path(folder).iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.suffix.lower() in (".png", ".npy")
    )


def save_npy(path, array):
    """Writes an array whole or not at all (a temporary file, then a rename)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class Predictor:
    """A Ray Data worker: compiles the network once, then runs every batch of file names it
    is given and writes the outputs."""

    def __init__(self, model, out_dir, threads):
        self.net = convc.compile(model, threads=threads)
        self.names = [name for name, _ in self.net.outputs]
        self.out_dir = out_dir

    def __call__(self, batch):
        done = []
        for path in batch["path"]:
            ys = self.net(convc.read_image(path))
            ys = ys if isinstance(ys, tuple) else (ys,)
            stem = Path(path).stem
            for name, y in zip(self.names, ys):
                leaf = f"{stem}.npy" if len(ys) == 1 else f"{stem}.{name}.npy"
                save_npy(os.path.join(self.out_dir, leaf), y)
            done.append(path)
        return {"path": np.array(done)}


def run(model, folder, out_dir, workers=2, threads=1, batch_size=16, timing=None):
    """Runs `model` on every image of `folder` with `workers` Ray actors of `threads` threads
    each; returns (images done, seconds). `timing`, a dict, receives `steady`: images per
    second after the first batch came back (without Ray's start-up and the compiles)."""
    files = image_files(folder)
    t0 = time.perf_counter()
    # Blocks of about one batch each (by default a block per name, a task per block).
    blocks = max(1, -(-len(files) // batch_size))
    ds = ray.data.from_items([{"path": p} for p in files], override_num_blocks=blocks)
    ds = ds.map_batches(
        Predictor,
        fn_constructor_kwargs={
            "model": str(Path(model).resolve()),
            "out_dir": str(Path(out_dir).resolve()),
            "threads": threads,
        },
        batch_size=batch_size,
        concurrency=workers,
        num_cpus=threads,
    )
    done, first = 0, None
    for b in ds.iter_batches(batch_size=None):
        done += len(b["path"])
        first = first or (done, time.perf_counter())
    end = time.perf_counter()
    if timing is not None and first and end > first[1]:
        timing["steady"] = (done - first[0]) / (end - first[1])
    return done, end - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("folder")
    ap.add_argument("-o", "--output", required=True, help="an existing folder")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per worker")
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args()
    if not os.path.isdir(a.output):
        ap.error(f"-o {a.output}: not an existing folder")
    ray.init(num_cpus=None if "RAY_ADDRESS" in os.environ else a.workers * a.threads,
             include_dashboard=False, log_to_driver=False)
    timing = {}
    n, secs = run(a.model, a.folder, a.output, a.workers, a.threads, a.batch_size, timing)
    steady = f", {timing['steady']:.1f} images/s after the first batch" if timing else ""
    print(f"{n} images in {secs:.2f} s: {n / secs:.1f} images/s with {a.workers} worker(s){steady}")


if __name__ == "__main__":
    main()
