# Every parameter and running statistic of the built-in ImageNet ResNets and MobileNetV2s has
# torchvision's state_dict name and shape, in torchvision's order.
set -euo pipefail
: "${LEGR_BUILD:?}" "${PYTHON:=/usr/bin/python3}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# network classes width, one per line; the CIFAR variant is torchvision's MobileNetV2 with
# LeGR's strides (the strides change no name or shape).
models="resnet18 1000 1.0
resnet34 10 1.0
resnet50 1000 1.0
resnet101 100 1.0
mobilenetv2 1000 1.0
mobilenetv2 1000 0.5
mobilenetv2 10 1.4
mobilenetv2_cifar 100 1.0
mobilenetv2_cifar 10 0.35"

# torchvision's, from named_parameters() and named_buffers() (num_batches_tracked has no
# counterpart: the C code does not count BN steps).
rc=0
"$PYTHON" - "$models" >"$dir/torch.txt" <<'EOF' || rc=$?
import sys
import torch
import torchvision.models as tvm

# Only names and shapes matter: skip the weight initialisation, which only costs time.
for fn in ("kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_", "constant_", "ones_",
           "zeros_"):
    setattr(torch.nn.init, fn, lambda t, *args, **kwargs: t)

CIFAR_STRIDES = [1, 1, 2, 1, 1, 2, 1]
SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
           [6, 160, 3, 2], [6, 320, 1, 1]]

def build(net, classes, width):
    if net.startswith("resnet"):
        assert width == 1.0, "torchvision's ResNets have no width multiplier"
        return getattr(tvm, net)(num_classes=classes)
    if net == "mobilenetv2":
        return tvm.mobilenet_v2(num_classes=classes, width_mult=width)
    setting = [[t, c, n, s] for (t, c, n, _), s in zip(SETTING, CIFAR_STRIDES)]
    return tvm.mobilenet_v2(num_classes=classes, width_mult=width,
                            inverted_residual_setting=setting, dropout=0.5)

for line in sys.argv[1].splitlines():
    net, classes, width = line.split()
    print("==", net, classes, width)
    m = build(net, int(classes), float(width))
    for name, p in m.named_parameters():
        print("P", name, "x".join(str(d) for d in p.shape))
    for name, b in m.named_buffers():
        if not name.endswith("num_batches_tracked"):
            print("B", name, "x".join(str(d) for d in b.shape))
EOF
((rc == 0)) || { echo "FAIL (test_arch_zoo_names): torchvision's lists: exit code $rc" >&2; exit 1; }

# The C side: "P name shape" per parameter tensor, "B name shape" per running statistic.
while read -r net classes width; do
    echo "== $net $classes $width"
    "$LEGR_BUILD/tests/test_arch_zoo" --names "$net" "$classes" "$width"
done <<<"$models" >"$dir/c.txt"

if ! diff -u "$dir/torch.txt" "$dir/c.txt" >"$dir/diff.txt"; then
    head -n 40 "$dir/diff.txt" >&2
    echo "FAIL (test_arch_zoo_names): names or shapes differ from torchvision's" \
         "(- torchvision, + C)" >&2
    exit 1
fi
tensors=$(grep -c '^[PB] ' "$dir/c.txt")
nets=$(grep -c '^==' "$dir/c.txt")
echo "test_arch_zoo_names: $tensors tensors of $nets networks match torchvision's names and shapes"
