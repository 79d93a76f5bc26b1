#!/usr/bin/python3
"""Convert an image folder, IDX files or CIFAR binaries into one legr-images HDF5 file.

usage: images_to_h5.py SRC -o OUT.h5 [--size S | --keep-jpeg] [--val-fraction F] [--seed N]
                       [--skip-bad]

SRC is one of
  - an ImageFolder tree: one folder per class (classes are the sorted folder names, labels their
    positions), images anywhere below them (torchvision's convention and extensions);
  - a tree with train/ and val/ (and optionally test/) folders, each an ImageFolder tree with the
    same classes;
  - a directory of IDX files (MNIST, Fashion-MNIST: train-images-idx3-ubyte[.gz] ...);
  - a directory of CIFAR-10 (data_batch_1.bin ... test_batch.bin) or CIFAR-100 (train.bin,
    test.bin; fine labels) binary files.
Photos are stored either as pixels of one size (--size S: the short side resized to S, bilinear,
then the central S x S) or as their JPEG bytes (--keep-jpeg; other formats are re-encoded as JPEG
of quality 95), decoded by legr-mpi when read. IDX and CIFAR sets keep their native size.
Images are RGB (greyscale ones converted) unless every image is greyscale. Without val/ a
seeded --val-fraction (default 0.1) of the training images becomes /val. The order is
deterministic; mean and std come from the training images.

Exit codes: 0 success; 2 bad usage; 3 an image or file that cannot be read (named; with
--skip-bad, unreadable images are skipped and listed instead). Needs python3-pil, numpy, h5py.
"""
import argparse
import gzip
import io
import os
import struct
import sys
import time

import h5py
import numpy as np
from PIL import Image

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


class DataError(Exception):
    """An input that cannot be read: exit code 3."""


# ---- sources -------------------------------------------------------------------------------

def class_dirs(root):
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))


def folder_items(root, classes):
    """[(path, label)] of an ImageFolder tree in torchvision's order."""
    items = []
    for label, cls in enumerate(classes):
        for dirpath, dirnames, files in sorted(os.walk(os.path.join(root, cls), followlinks=True)):
            dirnames.sort()
            for name in sorted(files):
                if name.lower().endswith(EXTENSIONS):
                    items.append((os.path.join(dirpath, name), label))
    return items


def read_idx(path):
    data = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DataError("%s: not an IDX file of unsigned bytes" % path)
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    count = int(np.prod(dims))
    if len(data) != 4 + 4 * nd + count:
        raise DataError("%s: %d bytes, the header announces %d" % (path, len(data), 4 + 4 * nd + count))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def idx_path(src, name):
    for p in (os.path.join(src, name + ".gz"), os.path.join(src, name)):
        if os.path.exists(p):
            return p
    raise DataError("%s: no %s[.gz]" % (src, name))


def idx_source(src):
    splits = {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        x = read_idx(idx_path(src, stem + "-images-idx3-ubyte"))
        y = read_idx(idx_path(src, stem + "-labels-idx1-ubyte")).astype(np.int32)
        if len(x) != len(y):
            raise DataError("%s: %d %s images but %d labels" % (src, len(x), stem, len(y)))
        splits[split] = (x[..., None], y)
    k = int(max(splits["train"][1].max(), splits["test"][1].max())) + 1
    return [str(i) for i in range(k)], splits


def cifar_source(src, hundred):
    rec = 3074 if hundred else 3073
    files = {"train": ["train.bin"] if hundred else ["data_batch_%d.bin" % i for i in range(1, 6)],
             "test": ["test.bin" if hundred else "test_batch.bin"]}
    splits = {}
    for split, names in files.items():
        raw = b""
        for name in names:
            path = os.path.join(src, name)
            try:
                raw_file = open(path, "rb").read()
            except OSError as e:
                raise DataError("%s: %s" % (path, e.strerror))
            if len(raw_file) % rec:
                raise DataError("%s: %d bytes, not a whole number of %d-byte records"
                                % (path, len(raw_file), rec))
            raw += raw_file
        a = np.frombuffer(raw, np.uint8).reshape(-1, rec)
        y = a[:, rec - 3073].astype(np.int32)
        x = a[:, rec - 3072:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        splits[split] = (np.ascontiguousarray(x), y)
    meta = os.path.join(src, "fine_label_names.txt" if hundred else "batches.meta.txt")
    k = 100 if hundred else 10
    names = [str(i) for i in range(k)]
    if os.path.exists(meta):
        listed = [l.strip() for l in open(meta) if l.strip()]
        if len(listed) == k:
            names = listed
    return names, splits


# ---- photos --------------------------------------------------------------------------------

def open_checked(path):
    """The decoded image, or DataError naming the file."""
    try:
        img = Image.open(path)
        img.load()
        return img
    except Exception as e:  # PIL raises many kinds for damaged files
        raise DataError("%s: cannot read the image (%s)" % (path, e))


def resize_center(img, size):
    """Short side to size (bilinear, long side int(size * long / short)), central size x size."""
    w, h = img.size
    if min(w, h) != size:
        if w <= h:
            img = img.resize((size, int(size * h / w)), Image.BILINEAR)
        else:
            img = img.resize((int(size * w / h), size), Image.BILINEAR)
    w, h = img.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def jpeg_bytes(path, img, mode):
    """The file's own bytes when it is a JPEG of a usable mode, else a quality-95 re-encoding."""
    if img.format == "JPEG" and img.mode in ("L", "RGB"):
        return open(path, "rb").read()
    buf = io.BytesIO()
    img.convert(mode).save(buf, "JPEG", quality=95)
    return buf.getvalue()


class Progress:
    """One status line on stderr: done/total, rate, ETA; redrawn in place on a terminal."""

    def __init__(self, what, total):
        self.what, self.total, self.t0, self.last = what, total, time.time(), 0.0
        self.tty = sys.stderr.isatty()

    def update(self, done):
        now = time.time()
        if done < self.total and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0
        line = "images_to_h5: %s %d/%d images, %.0f/s, ETA %.0f s" % (
            self.what, done, self.total, rate, eta)
        sys.stderr.write(("\r" + line + " " * 8) if self.tty else line + "\n")
        if self.tty and done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


# ---- writing -------------------------------------------------------------------------------

class Stats:
    """Per-channel sums of pixel/255 for mean and std (exact integer sums)."""

    def __init__(self, c):
        self.s = np.zeros(c, np.float64)
        self.q = np.zeros(c, np.float64)
        self.n = 0

    def add(self, a):
        a = a.reshape(-1, a.shape[-1]).astype(np.uint64)
        self.s += a.sum(0)
        self.q += (a * a).sum(0)
        self.n += a.shape[0]

    def result(self):
        m = self.s / self.n
        return m / 255.0, np.sqrt(np.maximum(self.q / self.n - m * m, 0)) / 255.0


def write_root(f, classes, channels, stats):
    f.attrs["format"] = np.bytes_("legr-images")
    f.attrs["format_version"] = np.int32(1)
    f.attrs["legr_version"] = np.bytes_("images_to_h5.py 1")
    f.attrs["classes"] = np.array([c.encode() for c in classes], dtype="S%d" % max(
        1, max(len(c.encode()) for c in classes)))
    f.attrs["channels"] = np.int32(channels)
    if stats is not None and stats.n:
        mean, std = stats.result()
        f.attrs["mean"], f.attrs["std"] = mean, std


def write_arrays(f, split, x, y, stats):
    g = f.create_group(split)
    g.create_dataset("images", data=x, chunks=(1,) + x.shape[1:], compression="gzip",
                     compression_opts=1)
    g.create_dataset("labels", data=y.astype(np.int32))
    g.attrs["count"] = np.int32(len(y))
    if stats is not None:
        stats.add(x)


def write_photos(f, split, items, args, mode, stats, skipped):
    """One group of photos; returns the labels written (skipped images left out)."""
    c = 1 if mode == "L" else 3
    g = f.create_group(split)
    n = len(items)
    if args.keep_jpeg:
        d = g.create_dataset("images", (n,), dtype=h5py.vlen_dtype(np.uint8), maxshape=(None,))
        d.attrs["encoding"] = np.bytes_("jpeg")
    else:
        s = args.size
        d = g.create_dataset("images", (n, s, s, c), dtype=np.uint8, maxshape=(None, s, s, c),
                             chunks=(1, s, s, c), compression="gzip", compression_opts=1)
    labels, names = [], []
    progress = Progress(split, n)
    for i, (path, label) in enumerate(items):
        try:
            img = open_checked(path)
        except DataError as e:
            if not args.skip_bad:
                raise
            skipped.append(str(e))
            progress.update(i + 1)
            continue
        j = len(labels)
        if args.keep_jpeg:
            d[j] = np.frombuffer(jpeg_bytes(path, img, mode), np.uint8)
            pix = np.asarray(img.convert(mode))
        else:
            pix = np.asarray(resize_center(img.convert(mode), args.size))
            d[j] = pix.reshape(args.size, args.size, c)
        if stats is not None:
            stats.add(pix.reshape(-1, c))
        labels.append(label)
        names.append(os.path.relpath(path, args.src))
        progress.update(i + 1)
    d.resize((len(labels),) + d.shape[1:])
    g.create_dataset("labels", data=np.array(labels, np.int32))
    g.create_dataset("names", data=np.array([p.encode() for p in names], dtype=h5py.string_dtype()))
    g.attrs["count"] = np.int32(len(labels))
    return labels


def split_val(items, fraction, seed):
    """(train, val): a seeded choice of round(fraction * n) items for val, both in input order."""
    n_val = int(round(fraction * len(items)))
    chosen = set(np.random.default_rng(seed).permutation(len(items))[:n_val].tolist())
    return ([it for i, it in enumerate(items) if i not in chosen],
            [it for i, it in enumerate(items) if i in chosen])


def photo_mode(items):
    """"L" when every image is greyscale, else "RGB" (headers only: no decoding)."""
    for path, _ in items:
        try:
            with Image.open(path) as img:
                if img.mode not in GREY_MODES:
                    return "RGB"
        except Exception:
            continue  # reported when the image is decoded
    return "L"


def convert(args):
    src = args.src
    if not os.path.isdir(src):
        raise DataError("%s: not a directory" % src)
    entries = set(os.listdir(src))
    tmp = args.out + ".tmp"
    counts = {}
    skipped = []
    kind = None
    if any(e.startswith("train-images-idx3-ubyte") for e in entries):
        kind = "idx"
        classes, splits = idx_source(src)
    elif "data_batch_1.bin" in entries:
        kind = "cifar10"
        classes, splits = cifar_source(src, False)
    elif "train.bin" in entries and "test.bin" in entries:
        kind = "cifar100"
        classes, splits = cifar_source(src, True)
    if kind:
        with h5py.File(tmp, "w") as f:
            stats = Stats(splits["train"][0].shape[-1])
            for split in ("train", "test"):
                x, y = splits[split]
                write_arrays(f, split, x, y, stats if split == "train" else None)
                counts[split] = np.bincount(y, minlength=len(classes))
            write_root(f, classes, splits["train"][0].shape[-1], stats)
    else:
        if args.size is None and not args.keep_jpeg:
            raise UsageError("a photo tree needs --size S or --keep-jpeg")
        if "train" in entries and os.path.isdir(os.path.join(src, "train")):
            classes = class_dirs(os.path.join(src, "train"))
            parts = {"train": folder_items(os.path.join(src, "train"), classes)}
            for split in ("val", "test"):
                d = os.path.join(src, split)
                if os.path.isdir(d):
                    if class_dirs(d) != classes:
                        raise DataError("%s: its class folders differ from train/'s" % d)
                    parts[split] = folder_items(d, classes)
        else:
            classes = class_dirs(src)
            parts = {"train": folder_items(src, classes)}
        if not classes or not parts["train"]:
            raise DataError("%s: no class folders with images (%s)" % (src, ", ".join(EXTENSIONS)))
        fraction = args.val_fraction
        if fraction is None:
            fraction = 0.0 if "val" in parts or "test" in parts else 0.1
        if fraction > 0:
            if "val" in parts:
                raise UsageError("--val-fraction with a val/ folder: use one or the other")
            parts["train"], parts["val"] = split_val(parts["train"], fraction, args.seed)
        if "val" not in parts and "test" not in parts:
            raise UsageError("no val/ or test/ folder and --val-fraction 0: legr-mpi needs a "
                             "test set")
        mode = photo_mode([it for p in parts.values() for it in p])
        with h5py.File(tmp, "w") as f:
            stats = Stats(1 if mode == "L" else 3)
            for split in ("train", "val", "test"):
                if split in parts:
                    labels = write_photos(f, split, parts[split], args, mode,
                                          stats if split == "train" else None, skipped)
                    counts[split] = np.bincount(np.array(labels, np.int64), minlength=len(classes))
            write_root(f, classes, 1 if mode == "L" else 3, stats)
    os.replace(tmp, args.out)
    width = max(len(c) for c in classes)
    splits_done = [s for s in ("train", "val", "test") if s in counts]
    print("%-*s %s" % (width, "class", " ".join("%8s" % s for s in splits_done)))
    for k, name in enumerate(classes):
        print("%-*s %s" % (width, name, " ".join("%8d" % counts[s][k] for s in splits_done)))
    if skipped:
        print("images_to_h5: skipped %d unreadable image(s):" % len(skipped), file=sys.stderr)
        for s in skipped:
            print("  " + s, file=sys.stderr)
    print("images_to_h5: wrote %s" % args.out, file=sys.stderr)


class UsageError(Exception):
    """Bad usage: exit code 2."""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="See docs/FORMAT.md, legr-images, for the file layout.")
    ap.add_argument("src", help="image folder tree, IDX or CIFAR directory")
    ap.add_argument("-o", "--out", required=True, help="the legr-images file to write")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--size", type=int, help="store S x S pixels (short side to S, centre crop)")
    how.add_argument("--keep-jpeg", action="store_true", help="store the JPEG bytes")
    ap.add_argument("--val-fraction", type=float,
                    help="hold out this fraction of train as /val (default 0.1 without val/)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the validation split (0)")
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable images, list them")
    args = ap.parse_args()
    if args.size is not None and not 1 <= args.size <= 4096:
        ap.error("--size must be in [1, 4096]")
    if args.val_fraction is not None and not 0 <= args.val_fraction < 1:
        ap.error("--val-fraction must be in [0, 1)")
    try:
        convert(args)
    except UsageError as e:
        print("images_to_h5: error: %s" % e, file=sys.stderr)
        return 2
    except (DataError, OSError) as e:
        print("images_to_h5: error: %s" % e, file=sys.stderr)
        if os.path.exists(args.out + ".tmp"):
            os.remove(args.out + ".tmp")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
