# Family levels fine-tuned by rank groups (family.ranks_per_level): two levels at -np 2 with one
# rank per level and at -np 4 with two ranks per level (data-parallel, synchronised BN) give the
# same levels up to floating-point summation order: per-step losses within 1e-4, weights within
# 1e-3 after 20 steps (the bounds test_pretrain_ranks uses for 1 against 2 replicas), equal
# test accuracies; the logs say which ranks trained which level; a ranks_per_level that does not
# divide the ranks is refused with exit 2.
source "$(dirname "$0")/lib.sh"
pretrain_base 1 32

# 320 training images, batch 32, 2 epochs: 20 fine-tuning steps per level.
job() {
    local name=$1 per=$2
    MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/base/base.h5\"; };" \
    DATA_GROUP='data: { dataset = "synthetic"; synthetic_n = 384; synthetic_size = 8; val_fraction = 0.0; train_limit = 320; };' \
        write_cfg "$T/$name.cfg" "$name" "search: { enabled = false; };
family: { ranking = \"identity\"; flops = [0.6, 0.4]; epochs = 2; batch = 32; lr = 0.05;
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

# A group size that does not divide the ranks: exit 2 before any fine-tuning.
job bad 3
legr_mpirun 4 60 "$T/bad" "$T/bad.cfg"
expect_rc 2 "$T/bad" "ranks_per_level 3 at -np 4"
expect_grep "family.ranks_per_level = 3 does not divide the job's 4 rank(s) into groups" \
    "$T/bad.err" "the message"
note "OK"
