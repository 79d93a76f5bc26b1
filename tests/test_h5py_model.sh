# Reads a legr-model file written by the C code back with h5py: attributes, names, shapes, values.
set -euo pipefail
: "${LEGR_BUILD:?}" "${PYTHON:=/usr/bin/python3}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$LEGR_BUILD/tests/test_h5model" --write "$dir/m.h5" >"$dir/ref.txt"
test -f "$dir/m.h5"
test ! -e "$dir/m.h5.tmp"

"$PYTHON" - "$dir/m.h5" "$dir/ref.txt" <<'EOF'
import sys
import h5py
import numpy as np

path, ref = sys.argv[1], sys.argv[2]
failures = []

def check(cond, what):
    if not cond:
        failures.append(what)

def text(v):
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)

with h5py.File(path, "r") as f:
    check(text(f.attrs["format"]) == "legr-model", "format attribute")
    check(int(f.attrs["format_version"]) == 1, "format_version")
    check(len(text(f.attrs["legr_version"])) > 0, "legr_version")
    check("depth = 8" in text(f.attrs["config"]), "config text")

    # ResNet-8 (CIFAR, 10 classes): shapes in PyTorch layout, hand-derived.
    expect = {
        "params/conv1.weight": (16, 3, 3, 3),
        "params/bn1.weight": (16,),
        "params/bn1.bias": (16,),
        "params/layer1.0.conv1.weight": (16, 16, 3, 3),
        "params/layer2.0.conv1.weight": (32, 16, 3, 3),
        "params/layer2.0.conv2.weight": (32, 32, 3, 3),
        "params/layer3.0.conv1.weight": (64, 32, 3, 3),
        "params/layer3.0.bn2.weight": (64,),
        "params/fc.weight": (10, 64),
        "params/fc.bias": (10,),
        "buffers/bn1.running_mean": (16,),
        "buffers/layer3.0.bn2.running_var": (64,),
    }
    for name, shape in expect.items():
        check(name in f, "missing " + name)
        if name in f:
            check(f[name].shape == shape, "%s shape %s != %s" % (name, f[name].shape, shape))
            check(f[name].dtype == np.float32, name + " dtype")
    # 3 convs per stage x 3 + stem = 7 convs, 7 BN (2 tensors each), fc weight + bias.
    check(len(f["params"]) == 7 + 14 + 2, "params count %d" % len(f["params"]))
    check(len(f["buffers"]) == 14, "buffers count %d" % len(f["buffers"]))

    # PyTorch default init bound for the stem: 1/sqrt(fan_in) = 1/sqrt(27).
    w = f["params/conv1.weight"][()]
    check(np.abs(w).max() <= 1 / np.sqrt(27) + 1e-7 and np.abs(w).max() > 0.1, "conv1 init range")
    check(np.all(f["params/bn1.weight"][()] == 1.0), "bn gamma init")

    # Exact values printed by the writer (first and last element).
    for line in open(ref):
        name, first, last = line.split()
        a = f[name][()].ravel()
        check(a[0] == np.float32(float(first)), "%s first %r != %s" % (name, a[0], first))
        check(a[-1] == np.float32(float(last)), "%s last %r != %s" % (name, a[-1], last))

    nodes = f["arch/nodes"][()]
    names = [text(n) for n in nodes["name"]]
    kinds = [text(k) for k in nodes["kind"]]
    check(names[0] == "input" and kinds[0] == "input", "first node")
    check(names[-1] == "fc" and kinds[-1] == "fc", "last node")
    i = names.index("layer2.0.conv1")
    check(kinds[i] == "conv" and nodes["stride"][i] == 2 and nodes["c"][i] == 32
          and nodes["h"][i] == 16, "layer2.0.conv1 row")
    check(list(f["arch/chan_map"].keys()) == ["layer2.0.shortcut", "layer3.0.shortcut"],
          "shortcut maps %s" % list(f["arch/chan_map"].keys()))
    check(list(f["arch/chan_map/layer2.0.shortcut"][()]) == list(range(16)), "identity map")
    check(int(f["arch"].attrs["num_classes"]) == 10, "num_classes")

if failures:
    for m in failures:
        print("FAIL:", m)
    sys.exit(1)
print("test_h5py_model: h5py read the model file correctly")
EOF
