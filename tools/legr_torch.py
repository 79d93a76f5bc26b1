#!/usr/bin/python3
"""Rebuild a legr-mpi network (a family level, the family's base, or a legr-model file) in PyTorch,
evaluate it on the stored test set, compare its top-1 with the stored one, optionally export ONNX.

usage:
  legr_torch.py FAMILY.h5 --list                 the levels and what the file says about them
  legr_torch.py FAMILY.h5 --level N [--onnx OUT] evaluate level N (index as in --list)
  legr_torch.py FAMILY.h5 --base   [--onnx OUT]  evaluate the unpruned base network
  legr_torch.py FAMILY.h5 --all                  evaluate the base and every level
  legr_torch.py MODEL.h5           [--onnx OUT]  evaluate a legr-model file (e.g. runs/x/base.h5)

The network is built from the stored architecture table (/arch/nodes, /arch/chan_map), not from
a hand-written ResNet: any DAG of the node kinds legr-mpi writes can be rebuilt. PyTorch
state_dict names are the stored tensor names (docs/FORMAT.md).

The reference top-1 is the level's (or /base's) `test_top1` attribute; for plain model files it
is the last "base" event of log.jsonl
beside the file, when there is one. A model file whose config names no dataset (one written by
tools/torch_to_legr.py) gets the structural checks (and the ONNX export) only.

Exit codes: 0 agreement (or nothing to compare with); 1 an accuracy differs by more than
--tolerance (absolute, default 0.001 = 0.1%) or the ONNX file was not written; 2 usage; 3 the file
or the dataset cannot be read or does not hold what it should.

Needs only Debian's python3-torch and python3-h5py (run it with /usr/bin/python3).
"""
import argparse
import gzip
import json
import os
import re
import struct
import sys
import warnings

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

EXIT_MISMATCH, EXIT_USAGE, EXIT_DATA = 1, 2, 3
BN_EPS = 1e-5  # legr-mpi's BatchNorm epsilon


class DataError(Exception):
    """The model file or the dataset is missing, unreadable or inconsistent (exit code 3)."""


def text(v):
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)


def field(row, name, default):
    """A field of an /arch/nodes row, or default when the file predates it (bias, drop_p)."""
    return row[name] if name in (row.dtype.names or ()) else default


# ---------------------------------------------------------------------------------------------
# The network: a generic executor of the stored node table.

def attach(root, dotted, module):
    """Register module under its dotted name (e.g. "layer1.0.conv1") through plain container
    modules, so that state_dict keys are exactly the stored tensor names."""
    parts = dotted.split(".")
    parent = root
    for p in parts[:-1]:
        child = parent._modules.get(p)
        if child is None:
            child = nn.Module()
            parent.add_module(p, child)
        elif type(child) is not nn.Module:
            raise DataError("layer name %r runs through layer %r" % (dotted, p))
        parent = child
    if parts[-1] in parent._modules:
        raise DataError("layer name %r is used twice" % dotted)
    parent.add_module(parts[-1], module)


class DagNet(nn.Module):
    """Executes the nodes in their stored (topological) order. Layouts are PyTorch's: NCHW
    activations, conv weight (OC, C/G, K, K), fc weight (OUT, IN)."""

    def __init__(self, nodes, chan_maps):
        super().__init__()
        self.plan = []  # (kind, in0, in1, module or shortcut data), one per node
        self.shapes = []  # stored (c, h, w) per node, checked by check_shapes
        for i, r in enumerate(nodes):
            name, kind = text(r["name"]), text(r["kind"])
            in0, in1 = int(r["in0"]), int(r["in1"])
            c, h, w = int(r["c"]), int(r["h"]), int(r["w"])
            k, stride, pad, groups = int(r["k"]), int(r["stride"]), int(r["pad"]), int(r["groups"])
            for j in (in0, in1):
                if j >= i:
                    raise DataError("node %d %r reads node %d, which does not precede it" % (i, name, j))
            cin = self.shapes[in0][0] if in0 >= 0 else 0
            extra = None
            if kind == "input":
                if i != 0:
                    raise DataError("node %d %r: the input must be node 0" % (i, name))
            elif kind == "conv":
                # Files written before conv biases have no bias field: no bias.
                extra = nn.Conv2d(cin, c, k, stride=stride, padding=pad, groups=groups,
                                  bias=bool(field(r, "bias", 0)))
            elif kind == "maxpool":
                if k <= 0 or stride <= 0 or pad < 0 or 2 * pad > k:
                    raise DataError("max pool %r: kernel %d, stride %d, padding %d are not valid"
                                    % (name, k, stride, pad))
                extra = (k, stride, pad)
            elif kind == "dropout":
                p = float(field(r, "drop_p", 0.0))
                if not 0 <= p < 1:
                    raise DataError("dropout %r has probability %g, not in [0, 1)" % (name, p))
                extra = p
            elif kind == "bn":
                extra = nn.BatchNorm2d(c, eps=BN_EPS)
            elif kind == "fc":
                ci, hi, wi = self.shapes[in0]
                extra = nn.Linear(ci * hi * wi, c)
            elif kind == "shortcut":
                if name not in chan_maps:
                    raise DataError("shortcut %r has no /arch/chan_map entry" % name)
                cmap = [int(v) for v in chan_maps[name]]
                if len(cmap) != cin or len(set(cmap)) != len(cmap) or \
                        any(o < 0 or o >= c for o in cmap):
                    raise DataError("shortcut %r: chan_map %s does not map %d input channels "
                                    "injectively into %d" % (name, cmap, cin, c))
                # Output channel o takes input channel src[o]; the rest read an appended zero
                # channel. index_select exports to ONNX as a plain Gather.
                src = [cin] * c
                for i_in, o in enumerate(cmap):
                    src[o] = i_in
                buf = "_shortcut%d" % i
                self.register_buffer(buf, torch.tensor(src, dtype=torch.long), persistent=False)
                extra = (buf, stride)
            elif kind not in ("relu", "relu6", "add", "gap"):
                raise DataError("node %d %r has unknown kind %r" % (i, name, kind))
            if isinstance(extra, nn.Module):
                attach(self, name, extra)
            self.plan.append((kind, in0, in1, extra))
            self.shapes.append((c, h, w))

    def forward(self, x):
        return self.run_all(x)[-1]

    def run_all(self, x):
        """Every node's output, in node order (fc outputs as (N, OUT, 1, 1) like the table)."""
        outs = []
        for kind, in0, in1, extra in self.plan:
            a = outs[in0] if in0 >= 0 else None
            if kind == "input":
                y = x
            elif kind in ("conv", "bn"):
                y = extra(a)
            elif kind == "relu":
                y = F.relu(a)
            elif kind == "relu6":
                y = F.relu6(a)
            elif kind == "add":  # the plain sum: a ReLU after it is a node of its own
                y = a + outs[in1]
            elif kind == "maxpool":
                k, s, p = extra
                y = F.max_pool2d(a, k, s, p)
            elif kind == "dropout":  # the identity in eval mode
                y = F.dropout(a, extra, self.training)
            elif kind == "shortcut":
                buf, s = extra
                sub = a[:, :, ::s, ::s]
                y = F.pad(sub, (0, 0, 0, 0, 0, 1)).index_select(1, getattr(self, buf))
            elif kind == "gap":
                y = a.mean(dim=(2, 3), keepdim=True)
            else:  # fc
                y = extra(torch.flatten(a, 1))
            outs.append(y)
        return outs

    def check_shapes(self):
        """Run two zero images through the network; every node must have its stored shape."""
        c, h, w = self.shapes[0]
        with torch.no_grad():
            outs = self.run_all(torch.zeros(2, c, h, w))
        for i, (y, want) in enumerate(zip(outs, self.shapes)):
            got = tuple(y.shape[1:]) + (1, 1) * (y.dim() == 2)
            if got != want:
                raise DataError("node %d gives shape %s in PyTorch but is stored as %s"
                                % (i, got, want))


def load_net(g, where):
    """The network stored in HDF5 group g (a legr-model layout) with its tensors loaded."""
    for key in ("arch/nodes", "arch/chan_map", "params", "buffers"):
        if key not in g:
            raise DataError("%s: %s is missing" % (where, key))
    nodes = g["arch/nodes"][()]
    maps = {k: g["arch/chan_map"][k][()] for k in g["arch/chan_map"]}
    net = DagNet(nodes, maps)
    stored = {}
    for group in ("params", "buffers"):
        for k in g[group]:
            stored[k] = torch.from_numpy(np.asarray(g[group][k][()], dtype=np.float32))
    want = net.state_dict()
    # num_batches_tracked only matters in training mode; legr-mpi does not store it.
    need = {k: v for k, v in want.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(need) - set(stored))
    extra = sorted(set(stored) - set(need))
    if missing or extra:
        raise DataError("%s: tensors missing %s, unexpected %s" % (where, missing[:5], extra[:5]))
    for k, v in stored.items():
        if tuple(v.shape) != tuple(need[k].shape):
            raise DataError("%s: %s has shape %s, the architecture needs %s"
                            % (where, k, tuple(v.shape), tuple(need[k].shape)))
    net.load_state_dict(stored, strict=False)
    net.eval()
    net.check_shapes()
    return net


# ---------------------------------------------------------------------------------------------
# Data: the same files, subset and normalisation as legr-mpi.

def open_maybe_gz(directory, name):
    for path, opener in ((os.path.join(directory, name + ".gz"), gzip.open),
                         (os.path.join(directory, name), open)):
        if os.path.exists(path):
            try:
                with opener(path, "rb") as f:
                    return path, f.read()
            except OSError as e:
                raise DataError("%s: cannot read: %s" % (path, e))
    raise DataError("%s: neither %s nor %s.gz exists" % (directory, name, name))


def read_idx(directory, images_name, labels_name, limit):
    ipath, raw = open_maybe_gz(directory, images_name)
    if len(raw) < 16 or struct.unpack(">I", raw[:4])[0] != 0x803:
        raise DataError("%s: not an IDX image file (magic 0x00000803)" % ipath)
    n, rows, cols = struct.unpack(">III", raw[4:16])
    if len(raw) < 16 + n * rows * cols:
        raise DataError("%s: truncated" % ipath)
    lpath, lraw = open_maybe_gz(directory, labels_name)
    if len(lraw) < 8 or struct.unpack(">I", lraw[:4])[0] != 0x801:
        raise DataError("%s: not an IDX label file (magic 0x00000801)" % lpath)
    nl = struct.unpack(">I", lraw[4:8])[0]
    if nl != n or len(lraw) < 8 + n:
        raise DataError("%s: %d labels for %d images" % (lpath, nl, n))
    m = n if limit <= 0 else min(limit, n)
    pix = np.frombuffer(raw, np.uint8, m * rows * cols, 16).reshape(m, 1, rows, cols)
    return pix, np.frombuffer(lraw, np.uint8, m, 8).astype(np.int64)


def read_cifar(paths, cifar100, limit):
    label_bytes = 2 if cifar100 else 1
    rec = label_bytes + 3 * 32 * 32
    chunks = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise DataError("%s: cannot read: %s" % (p, e))
        if len(raw) == 0 or len(raw) % rec:
            raise DataError("%s: size %d is not a multiple of the %d-byte record" % (p, len(raw), rec))
        chunks.append(np.frombuffer(raw, np.uint8).reshape(-1, rec))
    a = np.concatenate(chunks)
    if limit > 0:
        a = a[:limit]
    return a[:, label_bytes:].reshape(-1, 3, 32, 32), a[:, label_bytes - 1].astype(np.int64)


def read_split(dataset, directory, split, limit):
    """(uint8 images (N,C,H,W), int64 labels) of the first `limit` images (0 = all)."""
    if dataset in ("fashion-mnist", "mnist"):
        stem = "train" if split == "train" else "t10k"
        return read_idx(directory, stem + "-images-idx3-ubyte", stem + "-labels-idx1-ubyte", limit)
    if dataset == "cifar10":
        names = ["data_batch_%d.bin" % i for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
        return read_cifar([os.path.join(directory, n) for n in names], False, limit)
    if dataset == "cifar100":
        return read_cifar([os.path.join(directory, split + ".bin")], True, limit)
    raise DataError("dataset %r cannot be read here" % dataset)


def channel_stats(pix):
    """Per-channel mean and std of pixel/255 over a uint8 set, as legr-mpi computes them
    (exact integer sums, moments in double, rounded to float32)."""
    mean, std = [], []
    count = float(pix.shape[0] * pix.shape[2] * pix.shape[3])
    for c in range(pix.shape[1]):
        p = pix[:, c].astype(np.uint64)
        s, s2 = float(p.sum()), float((p * p).sum())
        m = s / count
        var = s2 / count - m * m
        mean.append(np.float32(m / 255.0))
        std.append(np.float32(np.sqrt(max(var, 0.0)) / 255.0))
    return np.array(mean, np.float32), np.array(std, np.float32)


def config_value(config, group, key):
    """A scalar from the resolved config text stored in every file ("group = { key = v; };")."""
    m = re.search(r"^%s\s*[=:]\s*\{(.*?)^\};" % re.escape(group), config, re.S | re.M)
    v = m and re.search(r"^\s*%s\s*=\s*(.*?);\s*$" % re.escape(key), m.group(1), re.M)
    if not v:
        raise DataError("the stored config has no %s.%s" % (group, key))
    return v.group(1).strip().strip('"')


# ---------------------------------------------------------------------------------------------

def base_top1_from_log(path):
    """test_acc of the last "base" event in log.jsonl beside path, or None."""
    log = os.path.join(os.path.dirname(os.path.abspath(path)), "log.jsonl")
    acc = None
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "base":
                    acc = float(ev["test_acc"])
    return acc


def list_levels(f):
    print("%-5s %-9s %7s %9s %9s %9s %9s %9s %9s" % ("level", "method", "target", "MFLOPs",
          "params", "top1-pre", "top1", "ms@b1", "ms@b64"))
    b = f["base"]
    top1 = b.attrs.get("test_top1")
    print("%-5s %-9s %7s %9.3f %9d %9s %9s" % ("base", "-", "100%", b.attrs["flops"] / 1e6,
          b.attrs["params"], "-", "-" if top1 is None else "%.2f%%" % (100 * top1)))
    for k in sorted(f["levels"]):
        a = f["levels"][k].attrs
        print("%-5d %-9s %6.0f%% %9.3f %9d %8.2f%% %8.2f%% %9.3f %9.3f" % (
            int(k), text(a["method"]), 100 * a["target"], a["flops"] / 1e6, a["params"],
            100 * a["test_top1_before"], 100 * a["test_top1"], a["latency_b1_ms"],
            a["latency_b64_ms"]))


def evaluate(net, pix, labels, mean, std, batch):
    """(top-1, mean cross-entropy) over the whole set, eval mode."""
    mean_t = torch.from_numpy(mean).view(1, -1, 1, 1)
    std_t = torch.from_numpy(std).view(1, -1, 1, 1)
    correct, loss = 0, 0.0
    with torch.no_grad():
        for s in range(0, len(labels), batch):
            x = torch.from_numpy(pix[s:s + batch].astype(np.float32)) / 255.0
            x = (x - mean_t) / std_t
            y = torch.from_numpy(labels[s:s + batch])
            z = net(x)
            correct += int((z.argmax(dim=1) == y).sum())
            loss += float(F.cross_entropy(z, y, reduction="sum"))
    return correct / len(labels), loss / len(labels)


def export_onnx(net, shape, out):
    x = torch.zeros(1, *shape)
    with warnings.catch_warnings():
        # The tracer's notes on the strided slices of the shortcuts are expected and harmless.
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), out, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=13)
    ok = os.path.isfile(out) and os.path.getsize(out) > 0
    print("onnx: %s %s" % (out, "written (%d bytes)" % os.path.getsize(out) if ok else "NOT written"))
    return ok


def family_targets(f, args):
    """[(description, group, stored top-1 or None)] of the networks a family run asks for."""
    b = f["base"]
    base = ("base", b, float(b.attrs["test_top1"]) if "test_top1" in b.attrs
            else base_top1_from_log(args.file))
    levels = []
    for k in sorted(f["levels"]) if "levels" in f else []:
        g = f["levels"][k]
        levels.append(("level %d (%s %.0f%%)" % (int(k), text(g.attrs["method"]),
                                                100 * g.attrs["target"]),
                       g, float(g.attrs["test_top1"])))
    if args.all:
        return [base] + levels
    if args.base:
        return [base]
    if not 0 <= args.level < len(levels):
        raise DataError("%s: no level %d (the file has %d)" % (args.file, args.level, len(levels)))
    return [levels[args.level]]


def check_one(args, desc, g, ref, data):
    """Build, check and evaluate one network; True when it agrees with ref (or ref is None)."""
    net = load_net(g, "%s: %s" % (args.file, desc))
    flops, params = int(g.attrs["flops"]), int(g.attrs["params"])
    print("%s: %s, %.3f MFLOPs, %d parameters, %d nodes" % (args.file, desc, flops / 1e6, params,
          len(net.plan)))
    n_params = sum(p.numel() for p in net.parameters())
    if n_params != params:
        raise DataError("the PyTorch module has %d parameters, the file says %d" % (n_params, params))
    shape = net.shapes[0]
    with torch.no_grad():
        out = net(torch.zeros(3, *shape))
    if tuple(out.shape) != (3, net.shapes[-1][0]):
        raise DataError("the output has shape %s, expected (3, %d)" % (tuple(out.shape),
                        net.shapes[-1][0]))
    print("  structure: forward pass ok, output %s" % (tuple(out.shape),))
    ok = export_onnx(net, shape, args.onnx) if args.onnx else True
    if data is None:
        return ok
    pix, labels, mean, std = data
    if tuple(pix.shape[1:]) != shape:
        raise DataError("the images are %s, the network takes %s" % (tuple(pix.shape[1:]), shape))
    top1, loss = evaluate(net, pix, labels, mean, std, args.batch)
    line = "  torch top-1 %.4f%% (loss %.5f) on %d test images" % (100 * top1, loss, len(labels))
    if ref is None:
        print(line + "; no stored top-1 to compare with")
        return ok
    diff = abs(top1 - ref)
    agree = diff <= args.tolerance + 1e-12
    print("%s; stored top-1 %.4f%%; |difference| %.4f%% %s %.4f%%: %s" % (
        line, 100 * ref, 100 * diff, "<=" if agree else ">", 100 * args.tolerance,
        "AGREE" if agree else "DIFFER"))
    return ok and agree


def load_test_data(dataset, data_dir, n_test, mean, std, config):
    """(pixels, labels, mean, std) of the evaluation set, or None for synthetic data. mean/std
    None: computed from the training set as legr-mpi did (the config's train_limit)."""
    if dataset == "synthetic":
        print("evaluation: the dataset is synthetic and cannot be regenerated in Python; "
              "evaluating needs a real dataset, so only the structural check is done")
        return None
    pix, labels = read_split(dataset, data_dir, "test", n_test)
    if n_test > 0 and len(labels) != n_test:
        raise DataError("%s: %d test images, the file was evaluated on %d" % (data_dir,
                        len(labels), n_test))
    if mean is None:
        limit = int(config_value(config, "data", "train_limit"))
        mean, std = channel_stats(read_split(dataset, data_dir, "train", limit)[0])
    std = np.where(std > 0, std, np.float32(1.0)).astype(np.float32)
    return pix, labels, mean, std


def run(args):
    try:
        f = h5py.File(args.file, "r")
    except OSError as e:
        raise DataError("%s: cannot open as HDF5: %s" % (args.file, e))
    with f:
        fmt = text(f.attrs.get("format", b""))
        chosen = args.all + args.base + (args.level is not None)
        if fmt == "legr-family":
            if args.list:
                list_levels(f)
                return 0
            if chosen != 1 or (args.all and args.onnx):
                print("legr_torch: give one of --level N, --base and --all (--onnx needs one "
                      "network)", file=sys.stderr)
                return EXIT_USAGE
            targets = family_targets(f, args)
            config = text(f.attrs["config"])
            data = load_test_data(text(f.attrs["dataset"]), args.data_dir or text(f.attrs["data_dir"]),
                                  int(f.attrs["test_images"]),
                                  np.asarray(f["norm_mean"][()], np.float32),
                                  np.asarray(f["norm_std"][()], np.float32), config)
        elif fmt == "legr-model":
            if args.list or chosen:
                print("legr_torch: %s is a single model; --list, --level, --base and --all are "
                      "for family files" % args.file, file=sys.stderr)
                return EXIT_USAGE
            targets = [("model", f, base_top1_from_log(args.file))]
            config = text(f.attrs["config"])
            if re.search(r"^data\s*[=:]\s*\{", config, re.M):
                data = load_test_data(config_value(config, "data", "dataset"),
                                      args.data_dir or config_value(config, "data", "dir"),
                                      int(config_value(config, "data", "test_limit")), None,
                                      None, config)
            else:
                # e.g. a network converted by tools/torch_to_legr.py: no job, no dataset.
                print("evaluation: the file's config names no dataset (%r); only the structural "
                      "check is done" % config[:60])
                data = None
        else:
            raise DataError("%s: format %r is neither legr-family nor legr-model" % (args.file, fmt))
        bad = [desc for desc, g, ref in targets if not check_one(args, desc, g, ref, data)]
    if bad:
        print("legr_torch: %d of %d network(s) failed: %s" % (len(bad), len(targets),
              ", ".join(bad)), file=sys.stderr)
        return EXIT_MISMATCH
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", help="family.h5 (legr-family) or a legr-model file")
    ap.add_argument("--list", action="store_true", help="list the levels of a family file")
    ap.add_argument("--level", type=int, help="evaluate level N of a family file")
    ap.add_argument("--base", action="store_true", help="evaluate the family's base network")
    ap.add_argument("--all", action="store_true", help="evaluate the base and every level")
    ap.add_argument("--onnx", metavar="OUT", help="also export the network to this ONNX file")
    ap.add_argument("--data-dir", help="read the dataset here instead of the stored directory")
    ap.add_argument("--tolerance", type=float, default=0.001,
                    help="largest accepted |torch - stored| top-1 (absolute; default 0.001)")
    ap.add_argument("--batch", type=int, default=250, help="evaluation batch (default 250)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default: all cores, at most 4)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads if args.threads > 0 else min(4, os.cpu_count() or 1))
    try:
        return run(args)
    except DataError as e:
        print("legr_torch: error: %s" % e, file=sys.stderr)
        return EXIT_DATA


if __name__ == "__main__":
    sys.exit(main())
