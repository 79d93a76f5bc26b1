#!/usr/bin/python3
"""Summarise several legr-mpi family files (one per seed) method against method.

usage: compare_family.py FAMILY.h5[+OTHER.h5...] [...] [--markdown] [--widths] [-o PLOT]

Prints, per FLOP target, the mean and sample standard deviation over the files of every method's
test top-1, then the paired difference "legr minus baseline" (computed within each file, so a
seed's shared base network and data order cancel out) with its standard deviation and how many
files LeGR won, and a last line counting the levels at which LeGR's mean paired difference is
>= 0 against every baseline. --markdown prints the same tables as Markdown; -o writes a plot of
top-1 against the target with error bars (one standard deviation), the base network as a dashed
line (OUT ending in .png, .svg or .pdf; needs python3-matplotlib). --widths adds, per target,
what each method's pruning did (means over the files): the top-1 right after pruning, before any
fine-tuning; the parameters kept; and the channels kept in every conv layer the methods prune, so
one sees where a ranking takes its FLOPs from.

A.h5+B.h5+... stands for one run made of several files: the levels of A, then the baseline
levels (any method but legr) of each next file that the earlier ones lack; all must share the
base network's top-1. A variant of the search (another target, or one search per level, each its
own job) then needs families of LeGR levels only (family.baselines = []): its seed's baselines
come from the first run's file, as they do not depend on the search, and that file's LeGR levels
never stand in for the variant's.

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


class Run:
    """One run's family: top1 {(method, target): test top-1 %}, base (top-1 % or None), and
    shape {(method, target): Shape or None (a file without the pruning details)}."""

    def __init__(self, top1, base, shape):
        self.top1, self.base, self.shape = top1, base, shape


class Shape:
    """What pruning did to one level: top-1 % before fine-tuning, params as % of the base
    network's, and {conv name: kept filters}; base_widths {conv name: filters in the base}."""

    def __init__(self, before, params, kept, base_widths):
        self.before, self.params, self.kept, self.base_widths = before, params, kept, base_widths


def read_shape(f, g):
    if "kept" not in g or "test_top1_before" not in g.attrs or "params" not in f["base"].attrs:
        return None
    kept = {n: g["kept"][n].shape[0] for n in g["kept"]}
    base_widths = {n: f["base/params/%s.weight" % n].shape[0] for n in kept}
    params = 100 * float(g.attrs["params"]) / float(f["base"].attrs["params"])
    return Shape(100 * float(g.attrs["test_top1_before"]), params, kept, base_widths)


def read_family(path):
    """The Run of one family file."""
    with h5py.File(path, "r") as f:
        if text(f.attrs.get("format", b"")) != "legr-family":
            raise ValueError("not a legr-family file")
        top1, shape = {}, {}
        for k in sorted(f["levels"]):
            g = f["levels"][k]
            key = (text(g.attrs["method"]), round(float(g.attrs["target"]), 6))
            if key in top1:
                raise ValueError("two levels of %s at %g" % key)
            top1[key] = 100 * float(g.attrs["test_top1"])
            shape[key] = read_shape(f, g)
        base = f["base"].attrs.get("test_top1")
    return Run(top1, None if base is None else 100 * float(base), shape)


def read_run(spec):
    """read_family of one file, or of A+B+... (A's levels, then each next file's missing
    baseline levels); an existing file whose name holds '+' is read as one."""
    if os.path.exists(spec) or "+" not in spec:
        return read_family(spec)
    paths = spec.split("+")
    run = read_family(paths[0])
    for path in paths[1:]:
        more = read_family(path)
        if more.base != run.base:
            raise ValueError("%s and %s come from different base networks (top-1 %s and %s)"
                             % (paths[0], path, run.base, more.base))
        for key, v in more.top1.items():
            if key[0] != PRIMARY and key not in run.top1:
                run.top1[key], run.shape[key] = v, more.shape[key]
    return run


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
    keys = set(runs[0].top1)
    for r in runs[1:]:
        if set(r.top1) != keys:
            raise ValueError("the files do not hold the same methods and targets")
    methods = sorted({m for m, _ in keys}, key=lambda m: (m != PRIMARY, m))
    targets = sorted({t for _, t in keys}, reverse=True)
    top1 = [["target"] + methods]
    for t in targets:
        top1.append(["%g%%" % (100 * t)] +
                    [fmt(*mean_std([r.top1[(m, t)] for r in runs])[:2]) for m in methods])
    bases = [r.base for r in runs if r.base is not None]
    if bases:
        top1.append(["base (100%)", fmt(*mean_std(bases)[:2])] + [""] * (len(methods) - 1))
    baselines = [m for m in methods if m != PRIMARY]
    paired = [["target"] + ["%s - %s (wins)" % (PRIMARY, b) for b in baselines]]
    good = 0
    if PRIMARY in methods:
        for t in targets:
            row, ok = ["%g%%" % (100 * t)], True
            for b in baselines:
                d = [r.top1[(PRIMARY, t)] - r.top1[(b, t)] for r in runs]
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


def natural(name):
    """Sort key that puts features.2 before features.10."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split(".")]


def width_tables(runs, methods, targets):
    """Per target, the rows of the --widths table: a column per method, a row per pruned conv."""
    shapes = [r.shape[k] for r in runs for k in r.shape]
    if any(s is None for s in shapes):
        raise ValueError("--widths needs levels with kept/, test_top1_before and the base's "
                         "params (files written by legr-mpi)")
    layers = sorted({n for s in shapes for n in s.kept}, key=natural)
    # Only the convs some method prunes somewhere: the others would be columns of constants.
    layers = [n for n in layers if any(n in s.kept and s.kept[n] < s.base_widths[n]
                                       for s in shapes)]
    base_widths = {n: w for s in shapes for n, w in s.base_widths.items()}
    tables = []
    for t in targets:
        per = {m: [r.shape[(m, t)] for r in runs] for m in methods}

        def cell(values):
            return "%d" % values[0] if len(set(values)) == 1 else "%.1f" % np.mean(values)
        rows = [["", *methods],
                ["top-1 pruned"] + ["%.2f" % np.mean([x.before for x in per[m]]) for m in methods],
                ["params %"] + ["%.1f" % np.mean([x.params for x in per[m]]) for m in methods]]
        for n in layers:
            rows.append(["%s (%d)" % (n, base_widths[n])] +
                        [cell([x.kept.get(n, base_widths[n]) for x in per[m]])
                         for m in methods])
        tables.append((t, rows))
    return tables


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
        stats = [mean_std([r.top1[(m, t)] for r in runs]) for t in targets]
        err = [0 if math.isnan(s) else s for _, s, _ in stats]
        # Small horizontal offsets keep overlapping error bars apart.
        ax.errorbar([v + 0.4 * (i - (len(methods) - 1) / 2) for v in x], [s[0] for s in stats],
                    yerr=err, marker="o", capsize=3, label=m)
    bases = [r.base for r in runs if r.base is not None]
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
    ap.add_argument("--widths", action="store_true",
                    help="also show, per target, the top-1 before fine-tuning, the parameters and "
                    "the channels every method keeps")
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
        widths = width_tables(runs, methods, targets) if args.widths else []
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
    for t, rows in widths:
        print()
        print("%g%% FLOPs: top-1 right after pruning (%%), parameters kept (%% of the base) and "
              "channels kept per pruned conv (of the base's), mean over %d file(s)"
              % (100 * t, len(runs)))
        print_table(rows, args.markdown)
    if args.out:
        plot(runs, methods, targets, args.out)
        print("compare_family: wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
