# Family levels fine-tuned by rank groups (family.ranks_per_level): two levels at -np 2 with one
# rank per level and at -np 4 with two ranks per level (data-parallel, synchronised BN) give the
# same levels up to floating-point summation order: per-step losses within 1e-4, weights within
# 1e-3 after 20 steps (the bounds test_pretrain_ranks uses for 1 against 2 replicas), equal
# test accuracies; the logs say which ranks trained which level; a group stopped mid-level and run
# again resumes to the uninterrupted family exactly; a ranks_per_level that does not divide the
# ranks is refused with exit 2.
source "$(dirname "$0")/lib.sh"
pretrain_base 1 32

# 320 training images, batch 32: 10 fine-tuning steps per epoch, 2 epochs unless given.
job() {
    local name=$1 per=$2 epochs=${3:-2}
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
    DATA_GROUP='data: { dataset = "synthetic"; synthetic_n = 384; synthetic_size = 8; val_fraction = 0.0; train_limit = 320; };' \
        write_cfg "$T/$name.cfg" "$name" "search: { enabled = false; };
family: { ranking = \"identity\"; flops = [0.6, 0.4]; epochs = $epochs; batch = 32; lr = 0.05;
          latency_repeats = 1; ranks_per_level = $per; };"
}
job solo 1
job pairs 2
legr_mpirun 2 120 "$T/solo" "$T/solo.cfg"
expect_rc 0 "$T/solo" "one rank per level at -np 2"
legr_mpirun 4 120 "$T/pairs" "$T/pairs.cfg"
expect_rc 0 "$T/pairs" "two ranks per level at -np 4"
expect_grep "(2 group(s) of 2)" "$T/pairs.err" "the groups announced"
expect_grep "family: level 1/2 on ranks 0-1" "$T/pairs.err" "level 1's ranks"
expect_grep "family: level 2/2 on ranks 2-3" "$T/pairs.err" "level 2's ranks"

"$PYTHON" - "$T/runs/solo" "$T/runs/pairs" <<'PY'
import json, sys
import h5py, numpy as np
a, b = sys.argv[1:3]
def steps(run):
    out = {}
    for line in open(run + "/log.jsonl"):
        e = json.loads(line)
        if e.get("event") == "train_step" and str(e.get("stage", "")).startswith("family"):
            out.setdefault(e["stage"], []).append(e["loss"])
    return out
sa, sb = steps(a), steps(b)
print("logged family steps:", {k: len(v) for k, v in sa.items()}, {k: len(v) for k, v in sb.items()})
worst = 0.0
with h5py.File(a + "/family.h5") as f, h5py.File(b + "/family.h5") as g:
    assert sorted(f["levels"]) == sorted(g["levels"]) and len(f["levels"]) == 2, "levels"
    for k in f["levels"]:
        fa, ga = f["levels"][k].attrs, g["levels"][k].attrs
        assert fa["test_top1"] == ga["test_top1"], "level %s: top-1 %g vs %g" % (
            k, fa["test_top1"], ga["test_top1"])
        assert abs(fa["test_loss"] - ga["test_loss"]) <= 1e-3, "level %s test loss" % k
        for grp in ("params", "buffers"):
            for t in f["levels"][k][grp]:
                worst = max(worst, float(np.abs(f["levels"][k][grp][t][()] -
                                                g["levels"][k][grp][t][()]).max()))
print("family levels, 1 vs 2 ranks per level: largest weight difference %.3g" % worst)
assert worst <= 1e-3, "weights differ by %g" % worst
for s in sa:
    if s in sb:
        d = max(abs(x - y) for x, y in zip(sa[s], sb[s]))
        assert d <= 1e-4, "%s: losses differ by %g" % (s, d)
PY

# A group stopped by SIGTERM mid-level (its rank 0 frozen at the level's first checkpoint) and run
# again continues both ranks from the checkpoint to the uninterrupted family, bit for bit. Eight
# epochs (80 steps) leave the level far from done when its first checkpoint (step 10) appears.
job pref 2 8
legr_mpirun 4 120 "$T/pref" "$T/pref.cfg"
expect_rc 0 "$T/pref" "the uninterrupted reference of the stopped group"
job pcut 2 8
start_job_stopped "$T/cut" 4 120 "$T/pcut.cfg"
freeze_at_first_checkpoint "$T/runs/pcut/family-level-00.h5"
for r in 1 2 3; do for p in $(pids_of_rank "$r"); do kill -TERM "$p" 2>/dev/null || true; done; done
kill -TERM "$RANK0"
kill -CONT "$RANK0"
wait_job
expect_rc 4 "$T/cut" "a group stopped by SIGTERM"
done0=$(h5_int_attr "$T/runs/pcut/family-level-00.h5" steps_done)
legr_mpirun 4 120 "$T/pres" "$T/pcut.cfg"
expect_rc 0 "$T/pres" "the group's level resumed"
expect_grep "family: level 1: resuming $T/runs/pcut/family-level-00.h5 after step $done0 of 80" \
    "$T/pres.err" "the resume message"
"$PYTHON" - "$T/runs/pref/family.h5" "$T/runs/pcut/family.h5" <<'PY' || fail "the resumed group's family differs"
import sys
import h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
n = 0
for lv in a["levels"]:
    for grp in ("params", "buffers"):
        for k in a["levels"][lv][grp]:
            assert np.array_equal(a["levels"][lv][grp][k][()], b["levels"][lv][grp][k][()]), (lv, k)
            n += 1
    assert a["levels"][lv].attrs["test_top1"] == b["levels"][lv].attrs["test_top1"], lv
print("resumed group: %d tensors identical to the uninterrupted run's" % n)
PY
note "level 1 stopped after step $done0 of 80 and resumed to the uninterrupted family"

# A group size that does not divide the ranks: exit 2 before any fine-tuning.
job bad 3
legr_mpirun 4 60 "$T/bad" "$T/bad.cfg"
expect_rc 2 "$T/bad" "ranks_per_level 3 at -np 4"
expect_grep "family.ranks_per_level = 3 does not divide the job's 4 rank(s) into groups" \
    "$T/bad.err" "the message"
note "OK"
