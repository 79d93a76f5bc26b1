#!/usr/bin/python3
"""Summarise several legr-mpi family files (one per seed) method against method.

usage: compare_family.py FAMILY.h5[+OTHER.h5...] [...] [--markdown] [-o PLOT]

Prints, per FLOP target, the mean and sample standard deviation over the files of every method's
test top-1, then the paired difference "legr minus baseline" (computed within each file, so a
seed's shared base network and data order cancel out) with its standard deviation and how many
files LeGR won, and a last line counting the levels at which LeGR's mean paired difference is
>= 0 against every baseline. --markdown prints the same tables as Markdown; -o writes a plot of
top-1 against the target with error bars (one standard deviation), the base network as a dashed
line (OUT ending in .png, .svg or .pdf; needs python3-matplotlib).

A.h5+B.h5+... stands for one run made of several files: the levels of A, then those of each
next file that the earlier ones lack; all must share the base network's top-1. A variant of the
search (another target, or one search per level, each its own job) then needs families of LeGR
levels only (family.baselines = []): its seed's baselines come from the first run's file, as
they do not depend on the search.

Exit codes: 0 success; 2 bad usage; 3 a file that is missing or not a legr-family file, or files
that do not share their levels. Needs python3-h5py and python3-numpy.
"""
import argparse
import math
import os
import sys

import h5py
import numpy as np

PRIMARY = "legr"


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def read_family(path):
    """({(method, target): top-1 %}, base top-1 % or None) of one family file."""
    with h5py.File(path, "r") as f:
        if text(f.attrs.get("format", b"")) != "legr-family":
            raise ValueError("not a legr-family file")
        levels = {}
        for k in sorted(f["levels"]):
            a = f["levels"][k].attrs
            key = (text(a["method"]), round(float(a["target"]), 6))
            if key in levels:
                raise ValueError("two levels of %s at %g" % key)
            levels[key] = 100 * float(a["test_top1"])
        base = f["base"].attrs.get("test_top1")
    return levels, None if base is None else 100 * float(base)


def read_run(spec):
    """read_family of one file, or of A+B+... (A's levels, then each next file's missing ones);
    an existing file whose name holds '+' is read as one."""
    if os.path.exists(spec) or "+" not in spec:
        return read_family(spec)
    paths = spec.split("+")
    levels, base = read_family(paths[0])
    for path in paths[1:]:
        more, other = read_family(path)
        if other != base:
            raise ValueError("%s and %s come from different base networks (top-1 %s and %s)"
                             % (paths[0], path, base, other))
        for key, v in more.items():
            levels.setdefault(key, v)
    return levels, base


def mean_std(values):
    """(mean, sample standard deviation or nan for one value, count), rounded to 1e-9 so that
    differences of equal top-1 values are exactly 0 (not -1e-15, printed as -0.00)."""
    v = np.asarray(values, np.float64)
    m = round(float(v.mean()), 9) + 0.0
    return m, round(float(v.std(ddof=1)), 9) if len(v) > 1 else math.nan, len(v)


def fmt(m, s):
    return "%.2f" % m if math.isnan(s) else "%.2f ± %.2f" % (m, s)


def summarise(runs):
    """The tables as lists of rows, and the verdict line."""
    keys = set(runs[0][0])
    for levels, _ in runs[1:]:
        if set(levels) != keys:
            raise ValueError("the files do not hold the same methods and targets")
    methods = sorted({m for m, _ in keys}, key=lambda m: (m != PRIMARY, m))
    targets = sorted({t for _, t in keys}, reverse=True)
    top1 = [["target"] + methods]
    for t in targets:
        top1.append(["%g%%" % (100 * t)] +
                    [fmt(*mean_std([r[0][(m, t)] for r in runs])[:2]) for m in methods])
    bases = [b for _, b in runs if b is not None]
    if bases:
        top1.append(["base (100%)", fmt(*mean_std(bases)[:2])] + [""] * (len(methods) - 1))
    baselines = [m for m in methods if m != PRIMARY]
    paired = [["target"] + ["%s - %s (wins)" % (PRIMARY, b) for b in baselines]]
    good = 0
    if PRIMARY in methods:
        for t in targets:
            row, ok = ["%g%%" % (100 * t)], True
            for b in baselines:
                d = [r[0][(PRIMARY, t)] - r[0][(b, t)] for r in runs]
                m, s, n = mean_std(d)
                wins = sum(x > 0 for x in d)
                row.append("%s (%d/%d)" % (fmt(m, s) if math.isnan(s) else
                                           "%+.2f ± %.2f" % (m, s), wins, n))
                ok = ok and m >= 0
            good += ok
            paired.append(row)
    verdict = ("%s matches or beats every baseline (mean paired difference >= 0) at %d of %d "
               "levels, over %d file(s)" % (PRIMARY, good, len(targets), len(runs))
               if PRIMARY in methods and baselines else None)
    return top1, paired if baselines and PRIMARY in methods else None, verdict, methods, targets


def print_table(rows, markdown):
    if markdown:
        print("| " + " | ".join(rows[0]) + " |")
        print("|" + "---|" * len(rows[0]))
        for r in rows[1:]:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    print()


def plot(runs, methods, targets, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.6))
    x = [100 * t for t in targets]
    for i, m in enumerate(methods):
        stats = [mean_std([r[0][(m, t)] for r in runs]) for t in targets]
        err = [0 if math.isnan(s) else s for _, s, _ in stats]
        # Small horizontal offsets keep overlapping error bars apart.
        ax.errorbar([v + 0.4 * (i - (len(methods) - 1) / 2) for v in x], [s[0] for s in stats],
                    yerr=err, marker="o", capsize=3, label=m)
    bases = [b for _, b in runs if b is not None]
    if bases:
        ax.axhline(np.mean(bases), color="black", linestyle="--", linewidth=1,
                   label="base (unpruned)")
    ax.set_xlabel("FLOP target (% of the base network)")
    ax.set_ylabel("test top-1 (%%), mean ± sd of %d run(s)" % len(runs))
    ax.invert_xaxis()
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+",
                    help="family.h5 files written by legr-mpi (A.h5+B.h5: one run of several files)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("-o", "--out", help="plot file (.png, .svg or .pdf)")
    args = ap.parse_args()
    if args.out and not args.out.lower().endswith((".png", ".svg", ".pdf")):
        ap.error("-o must end in .png, .svg or .pdf")
    runs = []
    for path in args.files:
        try:
            runs.append(read_run(path))
        except (OSError, KeyError, ValueError) as e:
            print("compare_family: error: %s: %s" % (path, e), file=sys.stderr)
            return 3
    try:
        top1, paired, verdict, methods, targets = summarise(runs)
    except (KeyError, ValueError) as e:
        print("compare_family: error: %s" % e, file=sys.stderr)
        return 3
    print("test top-1 (%%), mean ± sample sd over %d file(s)" % len(runs))
    print_table(top1, args.markdown)
    if paired:
        print("paired difference %s - baseline (percentage points) and files %s won"
              % (PRIMARY, PRIMARY))
        print_table(paired, args.markdown)
    if verdict:
        print(verdict)
    if args.out:
        plot(runs, methods, targets, args.out)
        print("compare_family: wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
