# The built-in MobileNetV2 (LeGR's CIFAR variant: depthwise convs, ReLU6, linear-bottleneck adds,
# dropout) and ImageNet ResNet-18 (7x7 stem, max pool, 1x1 projection shortcuts) run the whole
# pipeline; a base network given as model.arch = "file" is searched and pruned like a built-in
# one, with the same family at -np 2 and -np 3; pretraining with dropout is the same with 1 and
# 2 ranks.
source "$(dirname "$0")/lib.sh"

data='data: { dataset = "synthetic"; synthetic_n = 192; synthetic_size = 16; val_fraction = 0.25; };'
search='search: { population = 4; sample = 2; evaluations = 6; tau = 2; batch = 16; val_limit = 32;
  mode = "deterministic"; sync_batch = 3; };'
family='family: { flops = [0.6, 0.35]; epochs = 1; batch = 32; latency_repeats = 1; };'

# 1. Pretraining of the MobileNetV2 (dropout 0.5 in training, synchronised BN) does not depend on
#    the rank count. Two steps: the second step's loss depends on the first step's gradient. (This
#    tiny network on random images amplifies rounding differences from the third step on: a
#    learning rate changed by 1e-6 moves the third loss by 1e-3 in a single process, so later
#    steps could not tell a bug from summation order.)
for np in 1 2; do
    DATA_GROUP=$data MODEL_GROUP='model: { arch = "mobilenetv2_cifar"; width = 0.25; };' \
        write_cfg "$T/mb$np.cfg" "mb$np" 'pretrain: { epochs = 1; batch = 64; lr = 0.05; };
search: { enabled = false; };
family: { enabled = false; };'
    legr_mpirun $np 120 "$T/mb$np" "$T/mb$np.cfg"
    expect_rc 0 "$T/mb$np" "mobilenetv2_cifar pretraining, -np $np"
done
"$PYTHON" - "$T/runs/mb1/log.jsonl" "$T/runs/mb2/log.jsonl" <<'PY'
import json, sys
def steps(p):
    return [e["loss"] for e in map(json.loads, open(p))
            if e.get("event") == "train_step" and e.get("stage") == "pretrain"]
a, b = steps(sys.argv[1]), steps(sys.argv[2])
assert len(a) == len(b) == 2, "steps logged: %d and %d, expected 2" % (len(a), len(b))
worst = max(abs(x - y) for x, y in zip(a, b))
print("mobilenetv2_cifar pretraining, np 1 vs np 2: losses %s and %s" % (a, b))
assert worst <= 1e-5, "losses differ by %g" % worst
assert abs(a[0] - a[1]) > 1e-3, "the loss does not move"
PY

# 2. The trained MobileNetV2 as a file network: --dry-run shows it, and the search and family
#    give the same family at -np 2 and -np 3.
MODEL_FILE="model: { arch = \"file\"; init = \"$T/runs/mb1/base.h5\"; };"
DATA_GROUP=$data MODEL_GROUP=$MODEL_FILE write_cfg "$T/file.cfg" file "$search
$family"
legr_run 60 "$T/dry" --dry-run "$T/file.cfg"
expect_rc 0 "$T/dry" "--dry-run of a file network"
expect_grep "# network (from $T/runs/mb1/base.h5)" "$T/dry.out" "the dry run names the file"
expect_grep "features.0.0(8) features.1.conv.0.0(8)" "$T/dry.out" \
    "the stem and the first depthwise conv are one prune group"
for np in 2 3; do
    DATA_GROUP=$data MODEL_GROUP=$MODEL_FILE write_cfg "$T/file$np.cfg" "file$np" "$search
$family"
    legr_mpirun $np 180 "$T/file$np" "$T/file$np.cfg"
    expect_rc 0 "$T/file$np" "search and family of a file network, -np $np"
done

# 3. The ImageNet ResNet-18 (width 0.25) through the whole pipeline, pretraining included.
DATA_GROUP='data: { dataset = "synthetic"; synthetic_n = 192; synthetic_size = 32; val_fraction = 0.25; };' \
MODEL_GROUP='model: { arch = "resnet18"; width = 0.25; };' \
    write_cfg "$T/r18.cfg" r18 "pretrain: { epochs = 1; batch = 32; };
$search
$family"
legr_mpirun 2 180 "$T/r18" "$T/r18.cfg"
expect_rc 0 "$T/r18" "resnet18 pipeline, -np 2"

"$PYTHON" - "$T/runs" <<'PY'
import sys
import h5py
import numpy as np

runs = sys.argv[1]

def levels(run):
    out = {}
    with h5py.File("%s/%s/family.h5" % (runs, run), "r") as f:
        base = int(f["base"].attrs["flops"])
        for name in sorted(f["levels"]):
            lv = f["levels/" + name]
            a = lv.attrs
            key = (a["method"].decode() if isinstance(a["method"], bytes) else str(a["method"]),
                   round(float(a["target"]), 6))
            flops = int(a["flops"])
            assert 0 < flops <= key[1] * base, "%s %s: %d FLOPs over %g x %d" % (run, key, flops, key[1], base)
            nodes = {r["name"].decode(): r for r in lv["arch/nodes"][()]} if "arch" in lv else None
            params = lv["params"]
            for t in params:
                assert np.all(np.isfinite(params[t][()])), "%s %s: %s not finite" % (run, key, t)
            out[key] = (flops, float(a["test_top1"]), float(a["test_loss"]),
                        {c: lv["kept"][c][()].tolist() for c in lv["kept"]}, lv)
            if nodes is not None:
                for n, r in nodes.items():
                    if r["kind"].decode() == "conv" and r["groups"] > 1:
                        assert r["groups"] == r["c"], "%s: %s is grouped but not depthwise" % (run, n)
        return out, base

for run in ("file2", "file3", "r18"):
    lv, base = levels(run)
    assert len(lv) == 2, "%s: %d levels" % (run, len(lv))
    print("%s: base %d MACs, levels %s" % (run, base, ", ".join(
        "%.0f%%: %d MACs top-1 %.3f" % (100 * k[1], v[0], v[1]) for k, v in sorted(lv.items()))))

a, _ = levels("file2")
b, _ = levels("file3")
assert sorted(a) == sorted(b), "levels differ between np 2 and np 3"
for k in a:
    assert a[k][0] == b[k][0] and a[k][3] == b[k][3], "%s: pruned networks differ (np 2 vs 3)" % (k,)
    assert a[k][1] == b[k][1] and abs(a[k][2] - b[k][2]) <= 1e-9 * abs(b[k][2]), \
        "%s: metrics differ between np 2 and np 3" % (k,)
print("file network: the same family with -np 2 and -np 3")
PY
note "ok"
