# search.rescore_top: after a deterministic search, its best distinct candidates are scored again
# on more batch sequences and the lowest mean (the recorded fitness included) is chosen. The
# scores and the choice are the same at 1, 2 and 3 ranks; the family is pruned with the chosen
# ranking; the dry run counts the re-scores; legr-family-fitness --top, scoring the same
# candidates on 1 + R sequences, reproduces every mean; a finished search resumes with other
# rescore_* and family values, re-scores again and builds the new family. The search trains on a
# subset (search.train_subset), which the job and the tool must draw alike. A signal during
# re-scoring stops the job at once (exit 4) and a resume re-scores; --stop-after search leaves
# re-scoring to the family run.
source "$(dirname "$0")/lib.sh"

FF="$(dirname "$LEGR_BIN")/legr-family-fitness"
[[ -x "$FF" ]] || fail "no $FF"

pretrain_base 2 32

cfg() { # NAME TOP SEQUENCES
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
        write_cfg "$T/$1.cfg" "$1" "search: { population = 4; sample = 2; evaluations = 10; tau = 3;
  batch = 16; val_limit = 32; target_flops = 0.5; mode = \"deterministic\"; sync_batch = 2;
  train_subset = 100; rescore_top = $2; rescore_sequences = $3; };
family: { flops = [0.5]; epochs = 0; batch = 32; latency_repeats = 1; };"
}

for np in 1 2 3; do
    cfg "np$np" 4 2
    legr_mpirun "$np" 180 "$T/np$np" "$T/np$np.cfg"
    expect_rc 0 "$T/np$np" "the pipeline with re-scoring at -np $np"
    expect_grep "search: re-scoring chose candidate" "$T/np$np.err" "the choice is logged"
done

"$PYTHON" - "$T/runs" <<'EOF'
import json, sys
import h5py
import numpy as np

runs = sys.argv[1]
def events(np_, name):
    return [json.loads(l) for l in open("%s/np%d/log.jsonl" % (runs, np_)) if '"%s"' % name in l]

ref = events(1, "rescore")
assert 2 <= len(ref) <= 4, "re-scored %d candidates" % len(ref)
done = events(1, "search_done")[0]
assert abs(ref[0]["recorded"] - done["fitness"]) < 6e-6 * abs(done["fitness"]), "the first re-scored is not the search's best"
rec = [e["recorded"] for e in ref]
assert rec == sorted(rec), "not best recorded first: %s" % rec
for e in ref:
    assert len(e["fitness"]) == 2, e
    want = (e["recorded"] + sum(e["fitness"])) / 3
    assert abs(e["mean"] - want) < 1e-7, "mean %s of %s" % (e["mean"], e)
    assert any(f != e["recorded"] for f in e["fitness"]), "other sequences gave the same bits: %s" % e
chosen = events(1, "rescore_done")[0]
means = [e["mean"] for e in ref]
assert chosen["chosen_id"] == ref[means.index(min(means))]["id"], "not the lowest mean"
for np_ in (2, 3):
    got = events(np_, "rescore")
    assert got == ref, "-np %d re-scored differently:\n%s\n%s" % (np_, got, ref)
    assert events(np_, "rescore_done")[0] == chosen, "-np %d chose differently" % np_
for np_ in (1, 2, 3):
    with h5py.File("%s/np%d/family.h5" % (runs, np_), "r") as f:
        assert np.allclose(f["search/alpha"][()], chosen["alpha"], rtol=1e-8, atol=0), "family alpha (np %d)" % np_
        assert np.allclose(f["search/kappa"][()], chosen["kappa"], rtol=1e-8, atol=1e-12), "family kappa (np %d)" % np_
print("re-scored", [(e["id"], e["recorded"], e["mean"]) for e in ref], "chose", chosen["chosen_id"])
EOF
[[ $? == 0 ]] || fail "re-scoring results"

# The tool scores the same candidates on run seed + 0 .. 2: the recorded draw and the two more.
RC=0
timeout 120 "$FF" "$T/np1.cfg" "$T/runs/base/base.h5" 3 --top 4 "$T/runs/np1/search.h5" \
    >"$T/top.out" 2>"$T/top.err" || RC=$?
expect_rc 0 "$T/top" "legr-family-fitness --top"
"$PYTHON" - "$T/top.out" "$T/runs/np1/log.jsonl" <<'EOF'
import json, sys
out, log = sys.argv[1:]
rows = [l.split() for l in open(out) if l[0].isdigit()]
ref = [json.loads(l) for l in open(log) if '"rescore"' in l]
assert [int(r[0]) for r in rows] == [e["id"] for e in ref], "other candidates: %s" % rows
for r, e in zip(rows, ref):
    assert abs(float(r[2]) - e["mean"]) < 6e-6, "tool mean %s, job mean %s" % (r[2], e["mean"])
EOF
[[ $? == 0 ]] || fail "legr-family-fitness disagrees with the job's means"

# With --stop-after search (the SLURM pipeline's search job) nothing is re-scored: re-scores are
# not saved, and the run that resumes the finished search for the family re-scores, to the
# same choice as the one-go run.
cfg split 4 2
legr_mpirun 2 180 "$T/split" --stop-after search "$T/split.cfg"
expect_rc 0 "$T/split" "the search alone"
expect_grep "search: re-scoring left to the run that builds the family" "$T/split.err" \
    "re-scoring deferred"
! grep -q '"rescore' "$T/runs/split/log.jsonl" || fail "--stop-after search re-scored"
legr_mpirun 2 180 "$T/split_family" --resume "$T/runs/split/search.h5" "$T/split.cfg"
expect_rc 0 "$T/split_family" "the family run of a finished search"
a=$(grep '"rescore_done"' "$T/runs/split/log.jsonl" | sed 's/.*"chosen_id"/"chosen_id"/')
b=$(grep '"rescore_done"' "$T/runs/np1/log.jsonl" | sed 's/.*"chosen_id"/"chosen_id"/')
[[ -n $a && $a == "$b" ]] || fail "the family run re-scored to '$a', the one-go run to '$b'"

# The dry run counts the re-scores as evaluations: 10 + 4 x 2.
legr_run 60 "$T/dry" --dry-run "$T/np1.cfg"
expect_rc 0 "$T/dry" "the dry run"
expect_grep "search:   18 candidates (8 of them re-scores)" "$T/dry.out" "the re-scores in the estimate"

# A finished search resumes with other re-scoring and family keys (re-scoring redone: two
# candidates on one sequence; the family at the new level); any other change is still refused.
cfg np2 2 1
sed -i 's/flops = \[0.5\];/flops = [0.6];/' "$T/np2.cfg"
legr_mpirun 2 180 "$T/resume" --resume "$T/runs/np2/search.h5" "$T/np2.cfg"
expect_rc 0 "$T/resume" "resuming a finished search with other rescore_* and family keys"
expect_grep "search: resuming" "$T/resume.err" "the resume"
expect_grep "re-scoring the 2 best distinct candidates on 1 more batch sequence(s) each" \
    "$T/resume.err" "the new re-scoring"
/usr/bin/python3 -c "
import h5py, sys
with h5py.File('$T/runs/np2/family.h5', 'r') as f:
    t = [f['levels'][k].attrs['target'] for k in f['levels']]
sys.exit(0 if len(t) == 1 and abs(t[0] - 0.6) < 1e-9 else 1)" ||
    fail "the resumed job's family is not at the new family.flops"
# A SIGTERM during re-scoring stops every rank before its next evaluation (exit 4, no family,
# no choice logged); a resume re-scores from the start. 4 x 3000 evaluations are far more than
# the ranks can do between the first progress line and the signal.
cfg stop 4 3000
start_job "$T/cut" 2 300 "$T/stop.cfg"
wait_until 240 grep -q "search: re-scoring: 1/" "$T/cut.err" ||
    { kill_job_hard; fail "re-scoring did not start: $(tail -n 3 "$T/cut.err")"; }
for p in $(pids_of_rank 0) $(pids_of_rank 1); do kill -TERM "$p" 2>/dev/null || true; done
wait_job
expect_rc 4 "$T/cut" "a job stopped during re-scoring"
expect_grep "search: re-scoring stopped by a signal after" "$T/cut.err" "the stop message"
expect_grep "continue with: legr-mpi --resume $T/runs/stop/search.h5 $T/stop.cfg" "$T/cut.err" \
    "the resume hint"
[[ ! -f $T/runs/stop/family.h5 ]] || fail "a job stopped during re-scoring wrote family.h5"
! grep -q '"rescore_done"' "$T/runs/stop/log.jsonl" || fail "a stopped re-scoring logged a choice"
done0=$(sed -n 's/.*"rescore_stopped".*"rank0_done": *\([0-9]*\).*/\1/p' "$T/runs/stop/log.jsonl")
share=$(sed -n 's|.*re-scoring: 1/\([0-9]*\) .*|\1|p' "$T/cut.err")
[[ -n $done0 && -n $share ]] && ((done0 >= 1 && done0 < share)) ||
    fail "rank 0 did '${done0}' of its '${share}' evaluations"
sed -i 's/rescore_sequences = 3000;/rescore_sequences = 1;/' "$T/stop.cfg"
legr_mpirun 2 180 "$T/restart" --resume "$T/runs/stop/search.h5" "$T/stop.cfg"
expect_rc 0 "$T/restart" "resuming after a stop during re-scoring"
expect_grep "best distinct candidates on 1 more batch sequence(s) each" "$T/restart.err" \
    "re-scoring redone"
[[ -f $T/runs/stop/family.h5 ]] || fail "no family.h5 after the resume"
note "stopped during re-scoring after $done0 of rank 0's $share evaluations; resumed"

sed -i 's/tau = 3;/tau = 4;/' "$T/np2.cfg"
legr_mpirun 2 180 "$T/changed" --resume "$T/runs/np2/search.h5" "$T/np2.cfg"
[[ $RC != 0 ]] || fail "a resume with another search.tau was accepted"
note "ok"
