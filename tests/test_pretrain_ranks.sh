# Data-parallel pretraining does not depend on the rank count: 20 steps of the same global batch
# with -np 1 and -np 2 give per-step losses equal within 1e-4; the saved base.h5 reads back
# with h5py (format attribute, tensor names and shapes).
source "$(dirname "$0")/lib.sh"

# 320 training images (no validation split), batch 32, 2 epochs: exactly 20 steps.
job() {
    local name=$1
    DATA_GROUP='data: { dataset = "synthetic"; synthetic_n = 384; synthetic_size = 8; val_fraction = 0.0; train_limit = 320; };' \
        write_cfg "$T/$name.cfg" "$name" 'pretrain: { epochs = 2; batch = 32; lr = 0.05; schedule = "cosine"; };
search: { enabled = false; };
family: { enabled = false; };'
}
job np1
job np2
legr_mpirun 1 120 "$T/np1" "$T/np1.cfg"
expect_rc 0 "$T/np1" "pretrain -np 1"
legr_mpirun 2 120 "$T/np2" "$T/np2.cfg"
expect_rc 0 "$T/np2" "pretrain -np 2"

"$PYTHON" - "$T/runs/np1/log.jsonl" "$T/runs/np2/log.jsonl" <<'EOF'
import json, sys

def steps(path):
    out = []
    for line in open(path):
        ev = json.loads(line)
        if ev.get("event") == "train_step" and ev.get("stage") == "pretrain":
            out.append((ev["epoch"], ev["step"], ev["loss"]))
    return out

a, b = steps(sys.argv[1]), steps(sys.argv[2])
assert len(a) == 20, "np 1 logged %d pretrain steps, expected 20" % len(a)
assert len(b) == 20, "np 2 logged %d pretrain steps, expected 20" % len(b)
assert [s[:2] for s in a] == [s[:2] for s in b], "step numbering differs"
worst = max(abs(x[2] - y[2]) for x, y in zip(a, b))
print("pretrain losses np1 vs np2: max difference %.3g over 20 steps" % worst)
assert worst <= 1e-4, "losses differ by %g > 1e-4" % worst
# The steps trained something: a loss that never moves would make the comparison vacuous.
assert len({round(s[2], 6) for s in a}) > 10, "losses do not change from step to step"
EOF

# base.h5 from the two-rank run, read back with h5py; both runs saved the same weights (within
# the same float tolerance as the losses).
"$PYTHON" - "$T/runs/np2/base.h5" "$T/runs/np1/base.h5" <<'EOF'
import sys
import h5py
import numpy as np

def text(v):
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)

with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "r") as g:
    assert text(f.attrs["format"]) == "legr-model", "format attribute"
    assert int(f.attrs["format_version"]) == 1, "format_version"
    assert "depth = 8;" in text(f.attrs["config"]), "config attribute"
    # ResNet-8, width 0.5 (8/16/32 channels), 3x8x8 synthetic images, 10 classes.
    expect = {
        "params/conv1.weight": (8, 3, 3, 3),
        "params/layer1.0.conv1.weight": (8, 8, 3, 3),
        "params/layer2.0.conv1.weight": (16, 8, 3, 3),
        "params/layer3.0.conv2.weight": (32, 32, 3, 3),
        "params/layer3.0.bn2.bias": (32,),
        "params/fc.weight": (10, 32),
        "params/fc.bias": (10,),
        "buffers/layer2.0.bn1.running_var": (16,),
    }
    for name, shape in expect.items():
        assert name in f, "missing " + name
        assert f[name].shape == shape, "%s: shape %s, expected %s" % (name, f[name].shape, shape)
        assert f[name].dtype == np.float32, name + " dtype"
    assert len(f["params"]) == 7 + 2 * 7 + 2, "tensor count %d" % len(f["params"])
    assert int(f.attrs["params"]) == sum(f["params"][k].size for k in f["params"]), "params attr"
    worst = 0.0
    for grp in ("params", "buffers"):
        assert sorted(f[grp]) == sorted(g[grp]), grp + " names differ between np 1 and np 2"
        for k in f[grp]:
            worst = max(worst, float(np.abs(f[grp][k][()] - g[grp][k][()]).max()))
    print("base.h5 np1 vs np2: max weight difference %.3g" % worst)
    assert worst <= 1e-3, "weights after 20 steps differ by %g" % worst
EOF

note "ok"
