# Bad inputs stop the job cleanly with the documented exit codes: a corrupt IDX dataset (exit 3,
# on every rank under mpirun), a model.init that is not HDF5, holds another network or a NaN
# weight (exit 3, naming the tensor), and an unreachable family FLOPs target (exit 2, explained).
source "$(dirname "$0")/lib.sh"

# A Fashion-MNIST directory of raw IDX files: good labels and test files, and a training image
# file broken in one of two ways.
make_idx_dir() {
    local dir=$1 how=$2
    mkdir -p "$dir"
    "$PYTHON" - "$dir" "$how" <<'EOF'
import struct, sys
d, how = sys.argv[1], sys.argv[2]
def images(n, magic=0x803, cut=0):
    b = struct.pack(">IIII", magic, n, 28, 28) + bytes((i * 7) % 256 for i in range(n * 784))
    return b[:len(b) - cut] if cut else b
def labels(n):
    return struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))
train = images(64, magic=0x802) if how == "magic" else images(64, cut=1000)
open(d + "/train-images-idx3-ubyte", "wb").write(train)
open(d + "/train-labels-idx1-ubyte", "wb").write(labels(64))
open(d + "/t10k-images-idx3-ubyte", "wb").write(images(16))
open(d + "/t10k-labels-idx1-ubyte", "wb").write(labels(16))
EOF
}

idx_cfg() {
    local name=$1 dir=$2
    DATA_GROUP="data: { dataset = \"fashion-mnist\"; dir = \"$dir\"; };" \
        write_cfg "$T/$name.cfg" "$name" 'pretrain: { epochs = 1; batch = 16; };
search: { enabled = false; };
family: { enabled = false; };'
}

# Wrong magic number in the training images.
make_idx_dir "$T/magic" magic
idx_cfg magic "$T/magic"
legr_run 60 "$T/magic" "$T/magic.cfg"
expect_rc 3 "$T/magic" "IDX with a wrong magic"
expect_grep "$T/magic/train-images-idx3-ubyte" "$T/magic.err" "wrong magic: file named"
expect_grep "wrong magic" "$T/magic.err" "wrong magic: reason given"

# Truncated training images, singleton and with two ranks: every rank must stop with code 3
# (rank 0 reads the data, the others learn the verdict), and mpirun passes the code on.
make_idx_dir "$T/trunc" truncated
idx_cfg trunc "$T/trunc"
legr_run 60 "$T/trunc" "$T/trunc.cfg"
expect_rc 3 "$T/trunc" "truncated IDX"
expect_grep "$T/trunc/train-images-idx3-ubyte" "$T/trunc.err" "truncated: file named"
expect_grep "truncated" "$T/trunc.err" "truncated: reason given"

legr_mpirun 2 60 "$T/trunc_np2" "$T/trunc.cfg"
expect_rc 3 "$T/trunc_np2" "truncated IDX under mpirun -np 2"
expect_grep "truncated" "$T/trunc_np2.err" "np 2: reason given"
[[ $(grep -c "legr-mpi: error:" "$T/trunc_np2.err") == 1 ]] ||
    fail "np 2: expected exactly one error report (from rank 0)"

# model.init that is not an HDF5 file.
echo "this is not an HDF5 file" >"$T/not-a-model.h5"
MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/not-a-model.h5\"; };" \
    write_cfg "$T/nothdf5.cfg" nothdf5 'search: { enabled = false; };
family: { enabled = false; };'
legr_run 60 "$T/nothdf5" "$T/nothdf5.cfg"
expect_rc 3 "$T/nothdf5" "model.init not HDF5"
expect_grep "$T/not-a-model.h5" "$T/nothdf5.err" "not HDF5: file named"

# model.init holding another network: save an untrained ResNet-14 (epochs 0), load it as a
# ResNet-8 (extra blocks) and as a ResNet-14 of another width (same names, other shapes).
MODEL_GROUP="model: { depth = 14; width = 0.5; };" \
    write_cfg "$T/r14.cfg" r14 'pretrain: { epochs = 0; };
search: { enabled = false; };
family: { enabled = false; };'
legr_run 60 "$T/r14" "$T/r14.cfg"
expect_rc 0 "$T/r14" "saving a ResNet-14"
test -f "$T/runs/r14/base.h5" || fail "no base.h5 written"

MODEL_GROUP="model: { depth = 8; width = 0.5; init = \"$T/runs/r14/base.h5\"; };" \
    write_cfg "$T/depth.cfg" depth 'search: { enabled = false; };
family: { enabled = false; };'
legr_run 60 "$T/depth" "$T/depth.cfg"
expect_rc 3 "$T/depth" "model.init of another depth"
expect_grep "$T/runs/r14/base.h5" "$T/depth.err" "other depth: file named"
grep -Eq "'layer1\.1\.[a-z0-9_.]+'" "$T/depth.err" ||
    fail "other depth: the message should name a layer1.1 tensor: $(cat "$T/depth.err")"

MODEL_GROUP="model: { depth = 14; width = 1.0; init = \"$T/runs/r14/base.h5\"; };" \
    write_cfg "$T/width.cfg" width 'search: { enabled = false; };
family: { enabled = false; };'
legr_run 60 "$T/width" "$T/width.cfg"
expect_rc 3 "$T/width" "model.init of another width"
expect_grep "params/conv1.weight" "$T/width.err" "other width: tensor named"
expect_grep "(8, 3, 3, 3)" "$T/width.err" "other width: the file's shape"
expect_grep "(16, 3, 3, 3)" "$T/width.err" "other width: the expected shape"

# model.init with a NaN weight (the right network otherwise): refused before training, exit 3
# naming the file and the tensor (it used to train on and report a NaN loss).
"$PYTHON" - "$T/runs/r14/base.h5" "$T/nan.h5" <<'PY'
import shutil, sys, h5py, numpy as np
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    w = f["params/layer1.0.conv1.weight"]
    a = w[()]
    a.flat[5] = np.nan
    w[...] = a
PY
MODEL_GROUP="model: { depth = 14; width = 0.5; init = \"$T/nan.h5\"; };" \
    write_cfg "$T/nan.cfg" nan 'pretrain: { epochs = 1; };
search: { enabled = false; };
family: { enabled = false; };'
legr_run 60 "$T/nan" "$T/nan.cfg"
expect_rc 3 "$T/nan" "model.init with a NaN weight"
expect_grep "$T/nan.h5: tensor 'params/layer1.0.conv1.weight' holds nan at element 5" "$T/nan.err" \
    "NaN weight: file, tensor and element named"

# A family level below what the safeguard allows: a usage error (2) that says why.
write_cfg "$T/unreach.cfg" unreach 'pretrain: { epochs = 0; };
search: { enabled = false; };
family: { flops = [0.001]; epochs = 0; ranking = "identity"; };'
legr_mpirun 2 60 "$T/unreach" "$T/unreach.cfg"
expect_rc 2 "$T/unreach" "unreachable family target"
expect_grep "unreachable" "$T/unreach.err" "unreachable target: reason"
expect_grep "0.001" "$T/unreach.err" "unreachable target: the target"
test ! -e "$T/runs/unreach/family.h5" || fail "family.h5 written despite the error"

note "ok"
