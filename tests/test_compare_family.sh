# tools/compare_family.py on three hand-made family files (one per seed) whose top-1 values are
# chosen so that every mean, sample standard deviation, paired difference and win count below
# can be checked by hand; then its refusals (a file that is not a family, files with different
# levels) and its plot.
source "$(dirname "$0")/lib.sh"
tool="$PYTHON $LEGR_SRC/tools/compare_family.py"

# legr, uniform and identity at targets 0.5 and 0.3, top-1 in % per seed; base 93, 94, 95.
"$PYTHON" - "$T" <<'PY'
import sys, h5py
out = sys.argv[1]
top1 = {  # (method, target): one value per seed
    ("legr", 0.5): [90, 91, 92], ("uniform", 0.5): [89, 91, 90], ("identity", 0.5): [91, 92, 93],
    ("legr", 0.3): [85, 86, 90], ("uniform", 0.3): [84, 84, 85], ("identity", 0.3): [80, 81, 82],
}
for s in range(3):
    with h5py.File("%s/f%d.h5" % (out, s), "w") as f:
        f.attrs["format"] = b"legr-family"
        f.create_group("base").attrs["test_top1"] = (93 + s) / 100
        for i, ((m, t), v) in enumerate(sorted(top1.items())):
            a = f.create_group("levels/%02d" % i).attrs
            a["method"], a["target"], a["test_top1"] = m.encode(), t, v[s] / 100
PY
$tool "$T"/f0.h5 "$T"/f1.h5 "$T"/f2.h5 -o "$T/cmp.png" | tee "$T/out.txt"
expect() { grep -qF -- "$1" "$T/out.txt" || { echo "FAIL: no '$1' in the summary"; exit 1; }; }
# Means ± sample sd: legr 50% 91.00 ± 1.00, uniform 90.00 ± 1.00, identity 92.00 ± 1.00;
# legr 30% 87.00 ± 2.65 (sd of 85, 86, 90), uniform 84.33 ± 0.58, identity 81.00 ± 1.00.
expect "91.00 ± 1.00"; expect "90.00 ± 1.00"; expect "92.00 ± 1.00"
expect "87.00 ± 2.65"; expect "84.33 ± 0.58"; expect "81.00 ± 1.00"; expect "94.00 ± 1.00"
# Paired, 50%: legr - uniform = 1, 0, 2 -> +1.00 ± 1.00, 2 of 3 won; legr - identity = -1 each.
expect "+1.00 ± 1.00 (2/3)"; expect "-1.00 ± 0.00 (0/3)"
# 30%: legr - uniform = 1, 2, 5 -> +2.67 ± 2.08 (3/3); legr - identity = 5, 5, 8 -> +6.00 ± 1.73.
expect "+2.67 ± 2.08 (3/3)"; expect "+6.00 ± 1.73 (3/3)"
expect "at 1 of 2 levels, over 3 file(s)"
[[ $(head -c 8 "$T/cmp.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
    { echo "FAIL: cmp.png is not a PNG"; exit 1; }
md=$($tool --markdown "$T"/f0.h5 "$T"/f1.h5) || { echo "FAIL: --markdown failed"; exit 1; }
grep -q '^| 50% | ' <<<"$md" || { echo "FAIL: no Markdown row"; exit 1; }

# A run made of two files: f0's LeGR levels alone in one (another search, say, with LeGR 50%
# at 95), f0 itself second; the pair reads as f0 with that one value changed, so against f1
# and f2 legr 50% is 95, 91, 92 -> 92.67 ± 2.08.
"$PYTHON" - "$T" <<'PY'
import sys, h5py
out = sys.argv[1]
with h5py.File("%s/f0.h5" % out, "r") as src, h5py.File("%s/legr0.h5" % out, "w") as f:
    f.attrs["format"] = b"legr-family"
    f.create_group("base").attrs["test_top1"] = src["base"].attrs["test_top1"]
    for k in src["levels"]:
        a = src["levels"][k].attrs
        if a["method"] in (b"legr", "legr"):
            b = f.create_group("levels/" + k).attrs
            b["method"], b["target"] = a["method"], a["target"]
            b["test_top1"] = 0.95 if a["target"] == 0.5 else a["test_top1"]
PY
$tool "$T/legr0.h5+$T/f0.h5" "$T"/f1.h5 "$T"/f2.h5 >"$T/out.txt" || { echo "FAIL: A+B failed"; exit 1; }
expect "92.67 ± 2.08"; expect "87.00 ± 2.65"; expect "90.00 ± 1.00"
# B's LeGR levels never fill in for A's: with A's LeGR 30% level gone, the pair lacks it.
"$PYTHON" -c 'import h5py, sys
with h5py.File(sys.argv[1], "a") as f:
    for k in list(f["levels"]):
        if f["levels"][k].attrs["target"] == 0.3: del f["levels"][k]' "$T/legr0.h5"
rc=0; $tool "$T/legr0.h5+$T/f0.h5" "$T"/f1.h5 2>"$T/err.txt" >/dev/null || rc=$?
[[ $rc -eq 3 ]] && grep -q "do not hold the same methods and targets" "$T/err.txt" ||
    { cat "$T/err.txt"; echo "FAIL: B's LeGR level filled in for A's (exit $rc)"; exit 1; }
rc=0; $tool "$T/legr0.h5+$T/f1.h5" 2>"$T/err.txt" || rc=$?
[[ $rc -eq 3 ]] && grep -q "different base networks" "$T/err.txt" ||
    { cat "$T/err.txt"; echo "FAIL: A+B of two base networks gave exit $rc"; exit 1; }

# --widths: per target, the top-1 before fine-tuning, the parameters kept and the channels kept
# per pruned conv, means over the files. Two files, one conv "c" of 8 filters (plus "d", never
# pruned, so not shown): legr keeps 3 then 4 filters (3.5), uniform 6 in both (6); top-1 before
# fine-tuning 40 and 50 % for legr (45.00); params 60 and 70 of 100 for legr (65.0).
"$PYTHON" - "$T" <<'PY'
import sys, h5py, numpy as np
out = sys.argv[1]
for s in range(2):
    with h5py.File("%s/w%d.h5" % (out, s), "w") as f:
        f.attrs["format"] = b"legr-family"
        b = f.create_group("base")
        b.attrs["test_top1"], b.attrs["params"] = 0.9, 100
        b["params/c.weight"] = np.zeros((8, 1, 3, 3), np.float32)
        b["params/d.weight"] = np.zeros((2, 8, 3, 3), np.float32)
        for i, (m, kept, before, params) in enumerate(
                [("legr", 3 + s, 0.4 + 0.1 * s, 60 + 10 * s), ("uniform", 6, 0.3, 50)]):
            g = f.create_group("levels/%02d" % i)
            g.attrs["method"], g.attrs["target"], g.attrs["test_top1"] = m.encode(), 0.5, 0.8
            g.attrs["test_top1_before"], g.attrs["params"] = before, params
            g["kept/c"] = np.arange(kept, dtype=np.int32)
            g["kept/d"] = np.arange(2, dtype=np.int32)
PY
$tool --widths "$T"/w0.h5 "$T"/w1.h5 >"$T/out.txt" || { echo "FAIL: --widths failed"; exit 1; }
row() { grep -E "^ *$1 " "$T/out.txt" | tr -s ' ' | sed 's/^ //'; }
[[ $(row "top-1 pruned") == "top-1 pruned 45.00 30.00" && $(row "params %") == "params % 65.0 50.0" &&
   $(row "c \\(8\\)") == "c (8) 3.5 6" && -z $(row "d \\(2\\)") ]] ||
    { cat "$T/out.txt"; echo "FAIL: wrong --widths table"; exit 1; }
rc=0; $tool --widths "$T"/f0.h5 2>"$T/err.txt" >/dev/null || rc=$?
[[ $rc -eq 3 ]] && grep -q "needs levels with kept/" "$T/err.txt" ||
    { cat "$T/err.txt"; echo "FAIL: --widths on files without pruning details gave exit $rc"; exit 1; }

# Refusals: exit 3 naming the file or the mismatch.
"$PYTHON" -c 'import h5py, sys
with h5py.File(sys.argv[1], "a") as f: del f["levels/00"]' "$T/f2.h5"
rc=0; $tool "$T/f0.h5" "$T/f2.h5" 2>"$T/err.txt" || rc=$?
[[ $rc -eq 3 ]] && grep -q "do not hold the same methods and targets" "$T/err.txt" ||
    { cat "$T/err.txt"; echo "FAIL: mismatched levels gave exit $rc"; exit 1; }
echo "not hdf5" >"$T/bad.h5"
rc=0; $tool "$T/f0.h5" "$T/bad.h5" 2>"$T/err.txt" || rc=$?
[[ $rc -eq 3 ]] && grep -q "bad.h5" "$T/err.txt" ||
    { cat "$T/err.txt"; echo "FAIL: a non-HDF5 file gave exit $rc"; exit 1; }
echo "test_compare_family: OK"
