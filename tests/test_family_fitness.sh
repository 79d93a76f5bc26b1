# legr-family-fitness rebuilds every network of a real family (LeGR and the three baselines) from
# the base, scores it with the search's fitness, reproduces the search's own fitness of its best
# candidate bit for bit (shared batches, first batch seed = the run seed), re-scores a search's
# best candidates (--top, again reproducing their recorded fitness), and rejects a family whose
# recorded FLOPs do not match the network it rebuilds.
source "$(dirname "$0")/lib.sh"

FF="$(dirname "$LEGR_BIN")/legr-family-fitness"
[[ -x "$FF" ]] || fail "no $FF"

pretrain_base 2 32

MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
    write_cfg "$T/job.cfg" job 'search: { population = 4; sample = 2; evaluations = 6; tau = 3; batch = 16;
  val_limit = 32; target_flops = 0.5; };
family: { flops = [0.7, 0.5]; epochs = 1; batch = 32; baselines = ["uniform", "identity", "random"];
  latency_repeats = 1; };'
legr_mpirun 2 180 "$T/job" "$T/job.cfg"
expect_rc 0 "$T/job" "the pipeline"
FAM="$T/runs/job/family.h5"

RC=0
timeout 120 "$FF" "$T/job.cfg" "$T/runs/base/base.h5" 1 "$FAM" >"$T/ff.out" 2>"$T/ff.err" || RC=$?
expect_rc 0 "$T/ff" "legr-family-fitness"

"$PYTHON" - "$T/ff.out" "$T/runs/job/log.jsonl" "$FAM" <<'EOF'
import json, sys
import h5py

out, log, fam = sys.argv[1:]
rows = [l.split() for l in open(out) if l.startswith(fam)]
with h5py.File(fam, "r") as f:
    n = int(f.attrs["n_levels"])
    want = {(int(k), (a := f["levels/" + k].attrs)["method"].decode(), round(float(a["target"]), 2),
             round(float(a["test_top1"]), 4)) for k in f["levels"]}
assert n == 8, "the family has %d levels, expected 8" % n
got = {(int(r[1]), r[2], float(r[3]), float(r[7])) for r in rows}
assert got == want, "levels scored %s, the file holds %s" % (sorted(got), sorted(want))
for r in rows:
    assert float(r[4]) > 0 and 0 <= float(r[6]) <= 1, "implausible fitness/accuracy: %s" % r
done = [json.loads(l) for l in open(log) if '"search_done"' in l][0]
legr = [r for r in rows if r[2] == "legr" and float(r[3]) == 0.5]
assert len(legr) == 1, legr
assert abs(float(legr[0][4]) - done["fitness"]) < 6e-6, \
    "LeGR at the search target scores %s, the search's best had %s" % (legr[0][4], done["fitness"])
corr = [l for l in open(out) if l.startswith("target ")]
assert len(corr) == 2 and all("4 networks" in l for l in corr), corr
EOF

# K = 2: a second batch sequence, so a spread over sequences is reported (zero only where three
# steps of a tiny network move the loss by less than the printed digits).
RC=0
timeout 120 "$FF" "$T/job.cfg" "$T/runs/base/base.h5" 2 "$FAM" >"$T/ff2.out" 2>"$T/ff2.err" || RC=$?
expect_rc 0 "$T/ff2" "legr-family-fitness K=2"
awk -v f="$FAM" '$1 == f && $6 + 0 > 0 { n++ } END { exit n >= 4 ? 0 : 1 }' "$T/ff2.out" ||
    fail "K=2 should give a non-zero spread for most networks: $(cat "$T/ff2.out")"

# --top: the search's best distinct candidates; with K = 1 each scores exactly its recorded fitness.
RC=0
timeout 120 "$FF" "$T/job.cfg" "$T/runs/base/base.h5" 1 --top 3 "$T/runs/job/search.h5" \
    >"$T/top.out" 2>"$T/top.err" || RC=$?
expect_rc 0 "$T/top" "legr-family-fitness --top"
expect_grep "the search's choice: recorded" "$T/top.out" "the choice's summary"
"$PYTHON" - "$T/top.out" "$T/runs/job/log.jsonl" <<'EOF'
import json, sys
out, log = sys.argv[1:]
rows = [l.split() for l in open(out) if l[0].isdigit()]
assert 1 <= len(rows) <= 3, rows
done = [json.loads(l) for l in open(log) if '"search_done"' in l][0]
assert int(rows[0][0]) == done["best_id"], "first row %s, the search chose %s" % (rows[0], done["best_id"])
for r in rows:
    assert abs(float(r[1]) - float(r[2])) < 1e-9, "re-scored %s, recorded %s" % (r[2], r[1])
fit = [float(r[1]) for r in rows]
assert fit == sorted(fit), "not best first: %s" % fit
EOF

# A target with a single network has no rank correlation: said so, not printed as nan.
cp "$FAM" "$T/one.h5"
"$PYTHON" -c '
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    keep = [k for k in f["levels"] if round(float(f["levels"][k].attrs["target"]), 2) == 0.5][:1]
    for k in list(f["levels"]):
        if k not in keep: del f["levels"][k]
    if keep[0] != "00": f["levels"].move(keep[0], "00")
    f.attrs["n_levels"] = 1
' "$T/one.h5"
RC=0
timeout 120 "$FF" "$T/job.cfg" "$T/runs/base/base.h5" 1 "$T/one.h5" >"$T/one.out" 2>"$T/one.err" || RC=$?
expect_rc 0 "$T/one" "a family of one level"
expect_grep "1 network(s), Spearman(-fitness, test_top1) = n/a" "$T/one.out" "the undefined correlation"

# A family whose level records other FLOPs than the network rebuilt from this base and config.
cp "$FAM" "$T/bad.h5"
"$PYTHON" -c '
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    a = f["levels/01"].attrs
    a["flops"] = a["flops"] + 1
' "$T/bad.h5"
RC=0
timeout 120 "$FF" "$T/job.cfg" "$T/runs/base/base.h5" 1 "$T/bad.h5" >"$T/bad.out" 2>"$T/bad.err" || RC=$?
expect_rc 3 "$T/bad" "a mismatched family"
expect_grep "level 01" "$T/bad.err" "the mismatched level is named"
expect_grep "was the family made from another base" "$T/bad.err" "the mismatch is explained"

RC=0
"$FF" "$T/job.cfg" >"$T/usage.out" 2>"$T/usage.err" || RC=$?
expect_rc 2 "$T/usage" "missing arguments"
expect_grep "usage: legr-family-fitness" "$T/usage.err" "the usage line"
note "ok"
