#!/usr/bin/python3
"""Plot a legr-mpi family: test top-1 against MFLOPs and against latency (batch 1 and batch 64),
one line per pruning method (the learned ranking and every baseline), as PNG and SVG.

usage: plot_family.py runs/NAME/family.h5 [-o OUT] [--title TEXT]
       OUT ending in .png, .svg or .pdf writes that one file; any other OUT is a prefix and
       writes OUT.png and OUT.svg (default: family.png/.svg beside the input)

The unpruned base network's test top-1 (stored in the file's /base group; older files: the last
"base" event of log.jsonl beside the file) is drawn as a dashed reference line in every panel and
as a star in the FLOPs panel. Each latency panel joins its points in order of latency. Needs
python3-h5py and python3-matplotlib.
"""
import argparse
import json
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

STYLE = {"legr": ("tab:red", "o"), "uniform": ("tab:blue", "s"), "identity": ("tab:green", "^"),
         "random": ("tab:gray", "v")}


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def read_family(path):
    """{method: [(mflops, top1 %, b1 ms, b64 ms, target)] sorted by FLOPs}, base (mflops, top1)."""
    by_method = {}
    with h5py.File(path, "r") as f:
        if text(f.attrs.get("format", b"")) != "legr-family":
            raise ValueError("%s is not a legr-family file" % path)
        for k in sorted(f["levels"]):
            a = f["levels"][k].attrs
            by_method.setdefault(text(a["method"]), []).append(
                (a["flops"] / 1e6, 100 * a["test_top1"], a["latency_b1_ms"], a["latency_b64_ms"],
                 a["target"]))
        base_mflops = f["base"].attrs["flops"] / 1e6
        stored = f["base"].attrs.get("test_top1")
    for rows in by_method.values():
        rows.sort()
    if stored is not None:
        return by_method, (base_mflops, 100 * float(stored))
    base_top1 = None
    log = os.path.join(os.path.dirname(os.path.abspath(path)), "log.jsonl")
    if os.path.exists(log):
        with open(log) as lf:
            for line in lf:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "base":
                    base_top1 = 100 * float(ev["test_acc"])
    return by_method, (base_mflops, base_top1)


def plot(by_method, base, title, outputs):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharey=True)
    panels = [(0, "MFLOPs (multiply-accumulates)"), (2, "latency, batch 1 (ms)"),
              (3, "latency, batch 64 (ms)")]
    # Baselines first, as larger hollow markers, so that the learned ranking drawn on top stays
    # visible where both give the same network.
    order = sorted(by_method, key=lambda m: (m == "legr", m))
    for ax, (col, label) in zip(axes, panels):
        for m in order:
            rows = sorted(by_method[m], key=lambda r: r[col])
            color, marker = STYLE.get(m, ("tab:purple", "D"))
            hollow = m != "legr"
            ax.plot([r[col] for r in rows], [r[1] for r in rows], marker=marker, color=color,
                    label=m, linewidth=1.5, markersize=9 if hollow else 6,
                    markerfacecolor="none" if hollow else color)
        if base[1] is not None:
            ax.axhline(base[1], color="black", linestyle="--", linewidth=1,
                       label="base (unpruned) %.2f%%" % base[1] if col == 0 else None)
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test top-1 (%)")
    if base[1] is not None:
        axes[0].plot([base[0]], [base[1]], marker="*", color="black", markersize=12,
                     linestyle="none")
    # Target labels next to the learned ranking's points in the FLOPs panel.
    first = order[-1]
    for r in by_method[first]:
        axes[0].annotate("%.0f%%" % (100 * r[4]), (r[0], r[1]), textcoords="offset points",
                         xytext=(4, -11), fontsize=8)
    axes[0].legend(loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    for out in outputs:
        fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", help="family.h5 written by legr-mpi")
    ap.add_argument("-o", "--out", help="output file (.png, .svg or .pdf) or prefix "
                    "(default: <dir of file>/family, writing .png and .svg)")
    ap.add_argument("--title", help="figure title (default: the file name)")
    args = ap.parse_args()
    try:
        by_method, base = read_family(args.file)
    except (OSError, KeyError, ValueError) as e:
        print("plot_family: error: %s: %s" % (args.file, e), file=sys.stderr)
        return 3
    if not by_method:
        print("plot_family: error: %s holds no levels" % args.file, file=sys.stderr)
        return 3
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.file)), "family")
    if os.path.splitext(out)[1].lower() in (".png", ".svg", ".pdf"):
        outputs = [out]
    else:
        outputs = [out + ".png", out + ".svg"]
    plot(by_method, base, args.title or args.file, outputs)
    print("plot_family: wrote %s" % " and ".join(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
