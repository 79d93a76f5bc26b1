#!/usr/bin/env python3
"""Data benchmark: JPEG decoding plus training augmentation, legr-mpi's reader against PIL and
torchvision, one thread each, in alternating rounds.

It writes N ImageNet-like JPEGs (random sizes 250-500 x 300-500 pixels, smooth colour fields
with noise, quality 90), then per round times one pass of the build's bench_data (libjpeg-turbo
decode, RandomResizedCrop(224) as torchvision defines it, horizontal flip) and one pass of
PIL.Image.open(...).convert("RGB") + torchvision's RandomResizedCrop(224) + RandomHorizontalFlip
on the same bytes. Prints images/s per thread of each side (medians over rounds) and the median
of the per-round ratios. Build the engine half first: cmake --build build --target bench_data.

Usage: tools/bench_data.py [--build DIR] [--images N] [--rounds R]
"""
import argparse
import io
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np


def make_jpegs(n, seed=1):
    from PIL import Image
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = int(rng.integers(250, 501)), int(rng.integers(300, 501))
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2) + c) * np.cos(4 * yy + 2 * c)
                         for c in range(3)], -1)
        img = np.clip(128 + 90 * base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def torch_pass(jpegs):
    from PIL import Image
    import torch
    import torchvision.transforms as T
    torch.set_num_threads(1)
    torch.manual_seed(1)
    aug = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip()])
    t0 = time.perf_counter()
    for b in jpegs:
        aug(Image.open(io.BytesIO(b)).convert("RGB"))
    return time.perf_counter() - t0


def main():
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(src, "build"))
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    exe = os.path.join(a.build, "bench_data")
    if not os.access(exe, os.X_OK):
        sys.exit("bench_data: %s is missing; build it: cmake --build %s --target bench_data"
                 % (exe, a.build))
    jpegs = make_jpegs(a.images)
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
        for b in jpegs:
            f.write(struct.pack("<I", len(b)) + b)
        path = f.name
    ours, theirs = [], []
    try:
        for _ in range(a.rounds):
            r = subprocess.run([exe, path, "1"], check=True, capture_output=True, text=True)
            ours.append(a.images / float(r.stdout.split()[3]))
            theirs.append(a.images / torch_pass(jpegs))
    finally:
        os.unlink(path)
    ratios = [x / y for x, y in zip(ours, theirs)]
    mb = sum(map(len, jpegs)) / 1e6
    print("%d JPEGs (%.1f MB, mean %.0f kB), decode + RandomResizedCrop(224) + flip, 1 thread, "
          "%d rounds" % (a.images, mb, 1e3 * mb / a.images, a.rounds))
    print("legr-mpi         %7.1f images/s" % statistics.median(ours))
    print("PIL+torchvision  %7.1f images/s" % statistics.median(theirs))
    print("ratio legr/PIL    %.2fx (median of per-round ratios; rounds %s)"
          % (statistics.median(ratios), " ".join("%.2f" % r for r in ratios)))


if __name__ == "__main__":
    main()
