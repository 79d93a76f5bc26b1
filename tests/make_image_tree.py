#!/usr/bin/python3
"""Write a synthetic ImageFolder tree for the tests: 3 classes of small PNG and JPEG images.

usage: make_image_tree.py OUT_DIR [--count N] [--seed S] [--corrupt]
Images are 20-80 px on a side, random sizes, every 7th greyscale; a class shows in which colour
channel is bright, so a small network can learn it. --corrupt adds class_b/zz_broken.jpg, a file
that is not an image.
"""
import argparse
import os

import numpy as np
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--count", type=int, default=300)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--corrupt", action="store_true")
args = ap.parse_args()
rng = np.random.default_rng(args.seed)
classes = ["class_a", "class_b", "class_c"]
for c in classes:
    os.makedirs(os.path.join(args.out, c), exist_ok=True)
for i in range(args.count):
    k = i % 3
    h, w = (int(v) for v in rng.integers(20, 81, 2))
    a = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    a[..., k] += 120
    img = Image.fromarray(a)
    if i % 7 == 0:
        img = img.convert("L")
    ext = "png" if i % 2 else "jpg"
    img.save(os.path.join(args.out, classes[k], "img%04d.%s" % (i, ext)))
if args.corrupt:
    with open(os.path.join(args.out, "class_b", "zz_broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a JPEG")
