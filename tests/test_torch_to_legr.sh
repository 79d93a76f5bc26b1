# tools/torch_to_legr.py on torchvision's ResNet-18, ResNet-50 and MobileNetV2 and on a small
# custom network (conv bias, grouped and depthwise convs, max pooling, ReLU6, a linear-bottleneck
# add, dropout) with random weights and random BN statistics: the C engine's eval logits of every
# converted file equal PyTorch's within 1e-4 (relative to the largest |logit|), its flops and
# params equal the MACs counted by forward hooks and PyTorch's parameter count, its tensors load
# back into the original PyTorch class (load_state_dict strict) and give the same logits, the
# network rebuilt by tools/legr_torch.py agrees and exports to a valid ONNX file, and unsupported
# layers (nn.Sigmoid, a 3x1 kernel, torch.cat, BN eps 1e-3, a shared conv) are refused with exit
# code 2 and a message naming the module.
source "$(dirname "$0")/lib.sh"
: "${LEGR_BUILD:?LEGR_BUILD must name the build directory}"
logits_bin=$LEGR_BUILD/tests/model_logits
[[ -x $logits_bin ]] || fail "$logits_bin is missing (build the target model_logits)"
tool=$LEGR_SRC/tools/torch_to_legr.py
export PYTHONPATH=$LEGR_SRC/tools${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=1

# The custom network (FILE.py:CLASS) and the ones that must be refused.
cat >"$T/custom.py" <<'EOF'
"""A small CNN using every node kind torch_to_legr maps, plus networks it must refuse."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Bottleneck(nn.Module):
    """MobileNetV2-style inverted residual: expand, depthwise, project, plain add (no ReLU)."""

    def __init__(self, c, hidden):
        super().__init__()
        self.expand = nn.Conv2d(c, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.ReLU6(inplace=True)
        self.dw = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, c, 1, bias=True)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = self.act(self.bn1(self.expand(x)))
        y = F.hardtanh(self.bn2(self.dw(y)), 0.0, 6.0)
        return x + self.bn3(self.project(y))


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=True)
        self.act6 = nn.ReLU6()
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.block = Bottleneck(16, 48)
        self.conv2 = nn.Conv2d(16, 32, 3, 2, 1, groups=2, bias=True)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU()
        self.shortcut = nn.Conv2d(16, 32, 1, 2, bias=True)
        self.skip = nn.Identity()
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(32, 7)

    def forward(self, x):
        x = self.pool(self.stem(x))  # negative values: the pool's padding must never win
        x = self.block(x)
        y = self.relu(self.bn2(self.conv2(self.act6(x))))
        y = self.relu(torch.add(self.skip(y), self.shortcut(x)))
        y = torch.relu(F.max_pool2d(y, 2))
        y = y.mean((2, 3), keepdim=True)
        y = y.view(y.size(0), -1)
        y = F.dropout(self.drop(y), 0.1, self.training)
        return self.fc(y)


class Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Sigmoid()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.gate(self.conv(x))), 1))


class Kernel31(Sigmoid):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, (3, 1), padding=(1, 0))
        self.gate = nn.ReLU()


class Concat(Sigmoid):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(torch.flatten(self.pool(torch.cat([y, y], 1)), 1))


class Eps(Sigmoid):
    def __init__(self):
        super().__init__()
        self.gate = nn.BatchNorm2d(8, eps=1e-3)


class Shared(Sigmoid):
    def __init__(self):
        super().__init__()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv2(self.conv2(self.conv(x)))
        return self.fc(torch.flatten(self.pool(y), 1))
EOF

# Random networks with randomised BN (running statistics from a training-mode pass on random
# images, then scaled and shifted; gamma and beta random), saved as state_dicts, with 3 random
# images each, PyTorch's eval logits, the MACs counted by forward hooks and the parameter count.
# Models: name  builder  input  classes (torch_to_legr arguments).
models="resnet18 torchvision:resnet18 3,64,64 10
resnet50 torchvision:resnet50 3,64,64 1000
mobilenet_v2 torchvision:mobilenet_v2 3,64,64 100
custom $T/custom.py:Custom 3,24,24 7"

"$PYTHON" - "$T" "$models" <<'EOF' || fail "generating the reference networks"
import importlib.util
import sys

import h5py
import torch
import torch.nn as nn
import torchvision.models as tvm

torch.set_num_threads(1)
out, models = sys.argv[1], sys.argv[2]


def build(spec, classes):
    if spec.startswith("torchvision:"):
        return getattr(tvm, spec.split(":")[1])(num_classes=classes)
    path, cls = spec.rsplit(":", 1)
    s = importlib.util.spec_from_file_location("custom", path)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return getattr(mod, cls)()


def macs(model, x):
    """Multiply-accumulates of every Conv2d and Linear, counted by forward hooks."""
    total = [0]

    def hook(m, inp, y):
        if isinstance(m, nn.Conv2d):
            total[0] += y[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * \
                m.kernel_size[1]
        else:
            total[0] += m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x[:1])
    for h in hs:
        h.remove()
    return total[0]


for i, line in enumerate(models.splitlines()):
    name, spec, shape, classes = line.split()
    shape = tuple(int(v) for v in shape.split(","))
    torch.manual_seed(100 + i)
    model = build(spec, int(classes))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.train()
    for m in bns:
        m.momentum = 1.0  # running statistics = those of the next batch
    with torch.no_grad():
        model(torch.randn(4, *shape))
        for m in bns:
            m.momentum = 0.1
            c = m.num_features
            m.running_mean.add_(0.2 * torch.randn(c) * m.running_var.sqrt())
            m.running_var.mul_(torch.empty(c).uniform_(0.5, 2.0))
            m.weight.copy_(torch.empty(c).uniform_(0.5, 1.5))
            m.bias.copy_(0.2 * torch.randn(c))
        if name == "custom":  # large enough activations that every ReLU6 caps some values
            model.stem.weight.mul_(8.0)
            model.block.bn1.weight.mul_(6.0)
            model.block.bn2.weight.mul_(6.0)
    model.eval()
    torch.save(model.state_dict(), "%s/%s.pt" % (out, name))
    x = torch.randn(3, *shape)
    capped = []
    hooks = [m.register_forward_pre_hook(lambda m, inp: capped.append(
             float((inp[0] > 6).float().mean()))) for m in model.modules()
             if isinstance(m, nn.ReLU6)]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    if name == "custom" and min(capped) < 0.01:
        sys.exit("custom: only %s of the ReLU6 inputs exceed 6; the cap would go untested"
                 % capped)
    with h5py.File("%s/%s.x.h5" % (out, name), "w") as f:
        f["x"] = x.numpy()
    n_macs, n_params = macs(model, x), sum(p.numel() for p in model.parameters())
    with h5py.File("%s/%s.ref.h5" % (out, name), "w") as f:
        f["logits"] = logits.numpy()
        f.attrs["macs"] = n_macs
        f.attrs["params"] = n_params
    print("reference %s: %d MACs, %d params, max |logit| %.3g%s"
          % (name, n_macs, n_params, float(logits.abs().max()),
             ", ReLU6 inputs above 6: %s" % " ".join("%.1f%%" % (100 * c) for c in capped)
             if name == "custom" else ""))
EOF

# Convert (the command line a user runs), then evaluate with the C engine.
while read -r name spec shape classes; do
    RC=0
    "$PYTHON" "$tool" "$spec" -o "$T/$name.h5" --weights "$T/$name.pt" --input "$shape" \
        --classes "$classes" --threads 1 >"$T/$name.conv.out" 2>"$T/$name.conv.err" || RC=$?
    expect_rc 0 "$T/$name.conv" "torch_to_legr $spec"
    cat "$T/$name.conv.out"
    expect_grep "torch_to_legr: $T/$name.h5: " "$T/$name.conv.out" "the summary line"
    [[ ! -e $T/$name.h5.tmp ]] || fail "$name: torch_to_legr left $name.h5.tmp behind"
    RC=0
    "$logits_bin" "$T/$name.h5" "$T/$name.x.h5" "$T/$name.c.h5" >"$T/$name.c.out" \
        2>"$T/$name.c.err" || RC=$?
    expect_rc 0 "$T/$name.c" "model_logits on the converted $name"
done <<<"$models"

# Compare: C engine vs PyTorch, flops/params, tensors back into the original class, and the
# network rebuilt by legr_torch.py.
"$PYTHON" - "$T" "$models" <<'EOF' || fail "the converted networks do not agree with PyTorch"
import importlib.util
import sys

import h5py
import numpy as np
import torch
import torchvision.models as tvm

import legr_torch

torch.set_num_threads(1)
out, models = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def build(spec, classes):
    if spec.startswith("torchvision:"):
        return getattr(tvm, spec.split(":")[1])(num_classes=classes)
    path, cls = spec.rsplit(":", 1)
    s = importlib.util.spec_from_file_location("custom", path)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return getattr(mod, cls)()


def rel(a, ref):
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max())


for line in models.splitlines():
    name, spec, shape, classes = line.split()
    with h5py.File("%s/%s.ref.h5" % (out, name), "r") as f:
        ref = f["logits"][()].astype(np.float64)
        macs, nparams = int(f.attrs["macs"]), int(f.attrs["params"])
    with h5py.File("%s/%s.x.h5" % (out, name), "r") as f:
        x = torch.from_numpy(f["x"][()])
    with h5py.File("%s/%s.c.h5" % (out, name), "r") as f:
        c_logits = f["logits"][()]
        c_flops, c_params = int(f.attrs["flops"]), int(f.attrs["params"])
    m = h5py.File("%s/%s.h5" % (out, name), "r")
    flops, params = int(m.attrs["flops"]), int(m.attrs["params"])
    kinds = [k.decode() for k in m["arch/nodes"]["kind"]]
    check(m.attrs["format"] == b"legr-model" and int(m.attrs["format_version"]) == 1,
          "%s: format attributes" % name)
    check(int(m["arch"].attrs["num_classes"]) == int(classes), "%s: num_classes" % name)

    # 1. The C engine.
    check(c_logits.shape == ref.shape, "%s: C logits shape %s" % (name, c_logits.shape))
    d_c = rel(c_logits, ref)
    check(d_c <= 1e-4, "%s: C engine logits differ from PyTorch's by %.3g (relative)" % (name, d_c))
    check(flops == macs,
          "%s: flops attribute %d, forward hooks count %d MACs" % (name, flops, macs))
    check(c_flops == flops and c_params == params,
          "%s: the C code recomputes %d MACs / %d params, the file says %d / %d"
          % (name, c_flops, c_params, flops, params))
    check(params == nparams, "%s: params attribute %d, PyTorch has %d" % (name, params, nparams))

    # 2. The file's tensors back into the original class, strictly.
    model = build(spec, int(classes))
    sd = {k: torch.from_numpy(v[()]) for g in ("params", "buffers") for k, v in m[g].items()}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.zeros_like(v)
    model.load_state_dict(sd, strict=True)
    orig = torch.load("%s/%s.pt" % (out, name))
    check(all(torch.equal(orig[k], sd[k]) for k in orig if not k.endswith("num_batches_tracked")),
          "%s: the written tensors are not the state_dict's" % name)
    model.eval()
    with torch.no_grad():
        back = model(x).numpy()
    d_back = rel(back, ref)
    check(d_back <= 1e-6, "%s: the reloaded PyTorch model differs by %.3g" % (name, d_back))

    # 3. legr_torch.py's rebuild from the node table.
    net = legr_torch.load_net(m, name)
    with torch.no_grad():
        rebuilt = net(x).numpy()
    d_rb = rel(rebuilt, ref)
    check(d_rb <= 1e-5, "%s: legr_torch.py's rebuild differs by %.3g" % (name, d_rb))
    check(sum(p.numel() for p in net.parameters()) == params, "%s: rebuilt parameter count" % name)
    print("%-12s %3d nodes (%s), %11d MACs, %9d params: max |diff| / max |logit|: C engine %.2e, "
          "reloaded torch %.2e, legr_torch rebuild %.2e"
          % (name, len(kinds), " ".join(sorted(set(kinds))), flops, params, d_c, d_back, d_rb))
    m.close()

# The custom network really holds what it is meant to test.
with h5py.File(out + "/custom.h5", "r") as f:
    rows = f["arch/nodes"][()]
    by = {r["name"].decode(): r for r in rows}
    check(by["block.dw"]["groups"] == 48 and by["conv2"]["groups"] == 2, "custom: conv groups")
    check(by["stem"]["bias"] == 1 and by["block.expand"]["bias"] == 0, "custom: conv bias flags")
    check("stem.bias" in f["params"] and "block.expand.bias" not in f["params"], "custom: biases")
    check(by["pool"]["kind"] == b"maxpool" and (by["pool"]["k"], by["pool"]["stride"],
          by["pool"]["pad"]) == (3, 2, 1), "custom: max pool 3/2/1")
    check(by["maxpool"]["kind"] == b"maxpool" and by["maxpool"]["stride"] == 2,
          "custom: F.max_pool2d")
    check([r["kind"] for r in rows].count(b"relu6") == 3, "custom: three relu6 nodes")
    check(by["block.add"]["kind"] == b"add" and rows[list(by).index("block.add") + 1]["kind"]
          != b"relu", "custom: the linear-bottleneck add has no ReLU after it")
    check(by["relu_1"]["kind"] == b"relu", "custom: the reused ReLU module's second call")
    drops = sorted(round(float(r["drop_p"]), 6) for r in rows if r["kind"] == b"dropout")
    check(drops == [0.1, 0.3], "custom: dropout probabilities %s" % drops)
    check(rows[-1]["name"] == b"fc" and rows[-1]["kind"] == b"fc", "custom: fc last")

if failures:
    for msg in failures:
        print("FAIL:", msg)
    sys.exit(1)
EOF

# ONNX: the network legr_torch.py rebuilds from the custom file (every new node kind) exports
# with opset 13 and passes onnx.checker, with the operators it should have.
RC=0
"$PYTHON" "$LEGR_SRC/tools/legr_torch.py" "$T/custom.h5" --onnx "$T/custom.onnx" --threads 1 \
    >"$T/onnx.out" 2>"$T/onnx.err" || RC=$?
expect_rc 0 "$T/onnx" "legr_torch.py --onnx on the converted custom network"
expect_grep "structural check" "$T/onnx.out" "legr_torch.py on a converted file"
"$PYTHON" - "$T/custom.onnx" <<'EOF' || fail "the ONNX export is not valid"
import sys
import onnx

model = onnx.load(sys.argv[1])
onnx.checker.check_model(model, full_check=True)
ops = [n.op_type for n in model.graph.node]
groups = sorted(a.i for n in model.graph.node if n.op_type == "Conv"
                for a in n.attribute if a.name == "group")
need = {"Conv", "MaxPool", "Clip", "Add", "Relu", "Gemm"}
missing = need - set(ops)
if missing or groups[-2:] != [2, 48] or model.opset_import[0].version != 13:
    print("FAIL: ONNX ops %s (missing %s), conv groups %s, opset %d"
          % (sorted(set(ops)), sorted(missing), groups, model.opset_import[0].version))
    sys.exit(1)
print("onnx: %d nodes, opset %d, conv groups %s, passes onnx.checker"
      % (len(ops), model.opset_import[0].version, sorted(set(groups))))
EOF

# Refusals: exit code 2, a message naming the module and the operation, no file written.
refuse() {
    local cls=$1 want=$2
    RC=0
    "$PYTHON" "$tool" "$T/custom.py:$cls" --input 3,16,16 -o "$T/$cls.h5" \
        >"$T/$cls.out" 2>"$T/$cls.err" || RC=$?
    expect_rc 2 "$T/$cls" "converting $cls"
    expect_grep "$want" "$T/$cls.err" "the refusal of $cls"
    [[ ! -e $T/$cls.h5 && ! -e $T/$cls.h5.tmp ]] || fail "$cls: a file was written"
    note "$cls refused: $(tail -n 1 "$T/$cls.err")"
}
refuse Sigmoid "module 'gate' (torch.nn.Sigmoid)"
refuse Kernel31 "module 'conv' (torch.nn.Conv2d): kernel 3x1 is not square"
refuse Concat "torch.cat in the top-level forward"
refuse Eps "module 'gate' (torch.nn.BatchNorm2d): eps=0.001"
refuse Shared "module 'conv2' (torch.nn.Conv2d): the layer is called 2 times"

# Usage errors: FILE.py without --input; a wrong --classes.
RC=0
"$PYTHON" "$tool" "$T/custom.py:Custom" -o "$T/x.h5" >"$T/noinput.out" 2>"$T/noinput.err" || RC=$?
expect_rc 2 "$T/noinput" "FILE.py:CLASS without --input"
expect_grep "--input C,H,W is required" "$T/noinput.err" "the missing --input"
note "PyTorch, the C engine and legr_torch.py agree on every converted network"
