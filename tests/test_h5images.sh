# data.dataset = "hdf5": legr-images files read per rank. Bad files end the job with exit 3 naming
# file, group and image index (also under mpirun, without hanging); Fashion-MNIST converted by
# tools/images_to_h5.py trains to the IDX path's losses at -np 1 and 2; the peak resident memory
# of a rank stays flat from 2,000 to 50,000 images.
source "$(dirname "$0")/lib.sh"

FMNIST=/usr/share/datasets/fashion-mnist

# make_h5 KIND OUT [ARGS]: a legr-images file written with h5py (docs/FORMAT.md, legr-images).
#   random OUT N              N random 32x32x3 training images (10 classes), 200 test images
#   jpeg OUT N [BAD]          N random-size JPEGs (PIL), training image BAD damaged
#   labels|dtype|nogroup|count OUT   a small uint8 file broken in one way
make_h5() {
    "$PYTHON" - "$@" <<'EOF'
import gzip, io, os, struct, sys
import numpy as np, h5py
kind, out = sys.argv[1], sys.argv[2]
args = [int(a) for a in sys.argv[3:]]
rng = np.random.default_rng(7)

def root(f, classes, channels):
    f.attrs["format"] = np.bytes_("legr-images")
    f.attrs["format_version"] = np.int32(1)
    f.attrs["legr_version"] = np.bytes_("test_h5images")
    f.attrs["classes"] = np.array([b"class%d" % i for i in range(classes)], dtype="S12")
    f.attrs["channels"] = np.int32(channels)

def group(f, name, images, labels, **kw):
    g = f.create_group(name)
    g.create_dataset("images", data=images, chunks=(1,) + images.shape[1:], **kw)
    g.create_dataset("labels", data=np.asarray(labels, dtype=np.int32))
    return g

with h5py.File(out, "w") as f:
    if kind == "random":
        (n,) = args
        root(f, 10, 3)
        f.attrs["mean"] = np.array([0.5, 0.5, 0.5])
        f.attrs["std"] = np.array([0.29, 0.29, 0.29])
        group(f, "train", rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10)
        group(f, "test", rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8),
              np.arange(200) % 10)
    elif kind == "strattrs":
        # h5py's own string attributes (variable-length UTF-8) are read as well
        (n,) = args
        f.attrs["format"] = "legr-images"
        f.attrs["format_version"] = np.int32(1)
        f.attrs["classes"] = ["cat", "dog", "bird"]
        f.attrs["channels"] = np.int32(3)
        x = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
        group(f, "train", x, np.arange(n) % 3)
        group(f, "test", x[:24], np.arange(24) % 3)
    elif kind == "jpeg":
        # real JPEGs of random sizes (some greyscale, decoded to 3 channels), 3 classes; the
        # training image of index BAD (if given) damaged
        from PIL import Image
        n, bad = args[0], (args[1] if len(args) > 1 else -1)
        root(f, 3, 3)
        for g, m in (("train", n), ("test", 24)):
            grp = f.create_group(g)
            d = grp.create_dataset("images", (m,), dtype=h5py.vlen_dtype(np.uint8))
            d.attrs["encoding"] = np.bytes_("jpeg")
            for i in range(m):
                h, w = (int(v) for v in rng.integers(12, 60, 2))
                a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                a[..., i % 3] = 40 + 60 * (i % 3)  # a class-dependent channel
                img = Image.fromarray(a)
                if i % 5 == 0:
                    img = img.convert("L")
                buf = io.BytesIO()
                img.save(buf, "JPEG", quality=90)
                b = buf.getvalue()
                if g == "train" and i == bad:
                    b = b[:20] + bytes(200) + b[220:]  # a header, then zeros over the tables
                d[i] = np.frombuffer(b, np.uint8)
            grp.create_dataset("labels", data=(np.arange(m) % 3).astype(np.int32))
    elif kind in ("labels", "dtype", "nogroup", "count"):
        root(f, 4, 3)
        x = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
        y = np.arange(64) % 4
        if kind == "labels":
            y[37] = 4
        if kind == "dtype":
            x = x.astype(np.float32)
        if kind != "nogroup":
            g = group(f, "train", x, y)
            if kind == "count":
                g.attrs["count"] = np.int32(65)
        group(f, "val", x[:16], y[:16])
    else:
        raise SystemExit("make_h5: unknown kind " + kind)
EOF
}

# A config reading FILE (name NAME) with a small ResNet-8, any extra groups after it.
h5_cfg() {
    local cfg=$1 name=$2 file=$3 extra=${4:-} data=${5:-}
    DATA_GROUP="data: { dataset = \"hdf5\"; file = \"$file\"; val_fraction = 0.25; $data };" \
        write_cfg "$cfg" "$name" "$extra"
}

NOSTAGES='pretrain: { epochs = 1; batch = 16; };
search: { enabled = false; };
family: { enabled = false; };'

# ---- bad files: exit 3, the file, the group and the reason (and the image index) named ----
bad_case() {
    local kind=$1 want1=$2 want2=$3
    make_h5 "$kind" "$T/$kind.h5"
    h5_cfg "$T/$kind.cfg" "$kind" "$T/$kind.h5" "$NOSTAGES"
    legr_run 60 "$T/$kind" "$T/$kind.cfg"
    expect_rc 3 "$T/$kind" "bad file ($kind)"
    expect_grep "$T/$kind.h5" "$T/$kind.err" "$kind: file named"
    expect_grep "$want1" "$T/$kind.err" "$kind: where"
    expect_grep "$want2" "$T/$kind.err" "$kind: why"
}
bad_case labels "/train/labels[37] = 4" "out of range [0, 4)"
bad_case dtype "/train/images" "wrong dtype"
bad_case nogroup "group /train" "missing"
bad_case count "/train" "count = 65"

# A file whose string attributes h5py wrote in its own way (variable-length UTF-8) is good.
make_h5 strattrs "$T/strattrs.h5" 96
h5_cfg "$T/strattrs.cfg" strattrs "$T/strattrs.h5" "$NOSTAGES"
legr_run 60 "$T/strattrs" "$T/strattrs.cfg"
expect_rc 0 "$T/strattrs" "h5py string attributes"
expect_grep "data: hdf5, 96 training and 24 test images of 3x12x12" "$T/strattrs.err" \
    "h5py string attributes: the set"

# Truncated: the first half of a good file.
make_h5 random "$T/good.h5" 300
head -c $(($(stat -c %s "$T/good.h5") / 2)) "$T/good.h5" >"$T/trunc.h5"
h5_cfg "$T/trunc.cfg" trunc "$T/trunc.h5" "$NOSTAGES"
legr_run 60 "$T/trunc" "$T/trunc.cfg"
expect_rc 3 "$T/trunc" "truncated file"
expect_grep "$T/trunc.h5" "$T/trunc.err" "truncated: file named"
expect_grep "truncated" "$T/trunc.err" "truncated: reason"
# Under mpirun every rank opens the file; one error report, code 3 from mpirun.
legr_mpirun 2 60 "$T/trunc_np2" "$T/trunc.cfg"
expect_rc 3 "$T/trunc_np2" "truncated file under mpirun -np 2"
[[ $(grep -c "legr-mpi: error:" "$T/trunc_np2.err") == 1 ]] ||
    fail "truncated, np 2: expected exactly one error report"

# A damaged JPEG is found when a batch first reads it: exit 3 naming the image, from whichever
# rank read it (its loader thread), and mpirun ends every rank (no hang).
make_h5 jpeg "$T/badjpeg.h5" 64 37
DATA_GROUP="data: { dataset = \"hdf5\"; file = \"$T/badjpeg.h5\"; val_fraction = 0.0; crop = 8; };" \
    write_cfg "$T/badjpeg.cfg" badjpeg "$NOSTAGES"
for np in 1 2; do
    legr_mpirun "$np" 60 "$T/badjpeg$np" "$T/badjpeg.cfg"
    expect_rc 3 "$T/badjpeg$np" "a damaged JPEG, np $np"
    expect_grep "legr-mpi: error: $T/badjpeg.h5: /train/images[37]: corrupt JPEG: " \
        "$T/badjpeg$np.err" "a damaged JPEG, np $np: the image named"
done

# Good JPEGs of random sizes through the crop path (RandomResizedCrop while training, Resize +
# CenterCrop in evaluation) and the whole pipeline at -np 2.
make_h5 jpeg "$T/jpeg.h5" 96
h5_cfg "$T/jpeg.cfg" jpeg "$T/jpeg.h5" 'pretrain: { epochs = 1; batch = 16; };
search: { evaluations = 4; population = 2; sample = 1; tau = 2; batch = 16; target_flops = 0.5; };
family: { flops = [0.5]; epochs = 1; batch = 16; latency_repeats = 1; };' "crop = 16;"
legr_mpirun 2 120 "$T/jpeg" "$T/jpeg.cfg"
expect_rc 0 "$T/jpeg" "JPEGs through the crop path"
test -s "$T/runs/jpeg/family.h5" || fail "JPEGs: no family.h5"
expect_grep "of 3x16x16" "$T/jpeg.err" "JPEGs: the network takes 16x16 crops"

# A file that is not there: exit 3 at the start; a dry run only warns (and needs data.crop).
h5_cfg "$T/missing.cfg" missing "$T/none.h5" "$NOSTAGES" "crop = 16; classes = 7;"
legr_run 60 "$T/missing" "$T/missing.cfg"
expect_rc 3 "$T/missing" "missing data.file"
expect_grep "$T/none.h5: cannot open" "$T/missing.err" "missing: reason"
legr_run 60 "$T/missing_dry" --dry-run "$T/missing.cfg"
expect_rc 0 "$T/missing_dry" "dry run without data.file"
expect_grep "warning: $T/none.h5: cannot open" "$T/missing_dry.out" "dry run: warning"
expect_grep "assuming 3x16x16 inputs and 7 classes" "$T/missing_dry.out" "dry run: assumed shape"

# ---- Fashion-MNIST: its conversion by tools/images_to_h5.py trains exactly as the IDX files ----
# The first 1200 training and 300 test images as IDX files, and their legr-images conversion.
mkdir -p "$T/fmsub"
"$PYTHON" - "$FMNIST" "$T/fmsub" <<'EOF'
import gzip, os, sys
src, out = sys.argv[1:3]
for name, n in [("train-images-idx3-ubyte", 1200), ("train-labels-idx1-ubyte", 1200),
                ("t10k-images-idx3-ubyte", 300), ("t10k-labels-idx1-ubyte", 300)]:
    p = os.path.join(src, name)
    b = gzip.open(p + ".gz").read() if os.path.exists(p + ".gz") else open(p, "rb").read()
    head, per = (16, 784) if "images" in name else (8, 1)
    hdr = bytearray(b[:head])
    hdr[4:8] = n.to_bytes(4, "big")
    open(os.path.join(out, name), "wb").write(bytes(hdr) + b[head:head + n * per])
EOF
"$PYTHON" "$LEGR_SRC/tools/images_to_h5.py" "$T/fmsub" -o "$T/fm.h5" >"$T/fmconv.log" 2>&1 ||
    fail "converting the Fashion-MNIST subset: $(tail -3 "$T/fmconv.log")"
fm_run() {
    local np=$1 kind=$2 data
    if [[ $kind == idx ]]; then
        data="data: { dataset = \"fashion-mnist\"; dir = \"$T/fmsub\"; val_fraction = 0.1; };"
    else
        data="data: { dataset = \"hdf5\"; file = \"$T/fm.h5\"; val_fraction = 0.1; };"
    fi
    DATA_GROUP=$data write_cfg "$T/fm_$kind$np.cfg" "fm_$kind$np" 'pretrain: { epochs = 2; batch = 32; lr = 0.05; };
search: { enabled = false; };
family: { enabled = false; };'
    legr_mpirun "$np" 120 "$T/fm_$kind$np" "$T/fm_$kind$np.cfg"
    expect_rc 0 "$T/fm_$kind$np" "Fashion-MNIST ($kind, np $np)"
}
same_losses() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import json, sys
def losses(path):
    out = []
    for line in open(path):
        e = json.loads(line)
        if e["event"] == "train_step":
            out.append(e["loss"])
        elif e["event"] in ("train_epoch", "base"):
            out.append(e.get("test_loss"))
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) and len(a) > 5, (len(a), len(b))
worst = max(abs(x - y) / max(1.0, abs(x)) for x, y in zip(a, b))
print("%d losses, largest relative difference %.2g" % (len(a), worst))
sys.exit(0 if worst <= 1e-5 else 1)
EOF
}
# The sanitizer build runs the equality at -np 2 only (the same reader, sharded).
nps="1 2"
((SANITIZED)) && nps=2
for np in $nps; do
    fm_run "$np" idx
    fm_run "$np" h5
    expect_grep "normalised with the file's mean and std" "$T/fm_h5$np.err" "np $np: file's stats"
    same_losses "$T/runs/fm_idx$np/log.jsonl" "$T/runs/fm_h5$np/log.jsonl" ||
        fail "np $np: the legr-images file does not train as the IDX files"
done

# ---- memory: a rank's peak resident set does not grow with the number of images ----
# Not in the sanitizer build: its shadow memory and freed-memory quarantine are no rank's real
# footprint.
if ((SANITIZED)); then
    note "ok (the memory measurement runs in the optimised build)"
    exit 0
fi
mem_run() {
    local n=$1
    make_h5 random "$T/r$n.h5" "$n"
    h5_cfg "$T/mem$n.cfg" "mem$n" "$T/r$n.h5" 'pretrain: { epochs = 0; };
search: { evaluations = 4; population = 2; sample = 1; tau = 6; batch = 32; val_limit = 64; };
family: { enabled = false; };' "test_limit = 100; cache_mb = 4;"
    legr_mpirun 2 120 "$T/mem$n" "$T/mem$n.cfg"
    expect_rc 0 "$T/mem$n" "memory run with $n images"
    sed -n 's/.*, \([0-9.]*\) MiB at most over.*/\1/p' "$T/mem$n.err"
}
m2k=$(mem_run 2000)
m50k=$(mem_run 50000)
note "peak resident memory per rank: $m2k MiB with 2,000 images, $m50k MiB with 50,000"
"$PYTHON" -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if b <= 1.1 * a else 1)" \
    "$m2k" "$m50k" || fail "memory grows with the set: $m2k -> $m50k MiB"

note "ok"
