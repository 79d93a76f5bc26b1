# tools/images_to_h5.py: an image folder (PNG and JPEG of random sizes, some greyscale, one
# corrupt file) converted both ways and read back with h5py against independent PIL decodes;
# refusals (exit 3 naming the corrupt file, exit 2 for bad usage); Fashion-MNIST from its IDX
# files byte for byte; a fake CIFAR-10 directory; then the whole pipeline on the converted folder
# at -np 2 and 3 (3 only in the sanitizer build). (test_h5images trains a converted
# Fashion-MNIST subset to the IDX files' losses.)
source "$(dirname "$0")/lib.sh"
conv="$PYTHON $LEGR_SRC/tools/images_to_h5.py"
"$PYTHON" "$LEGR_SRC/tests/make_image_tree.py" "$T/tree" --count 300 --seed 3 --corrupt

RC=0; $conv "$T/tree" -o "$T/bad.h5" --size 32 >"$T/bad.out" 2>&1 || RC=$?
[[ $RC -eq 3 ]] || fail "a corrupt image gave exit $RC"
expect_grep "class_b/zz_broken.jpg: cannot read the image" "$T/bad.out" "the corrupt file named"
[[ ! -e $T/bad.h5 && ! -e $T/bad.h5.tmp ]] || fail "a failed conversion left a file behind"
RC=0; $conv "$T/tree" -o "$T/x.h5" >"$T/usage.out" 2>&1 || RC=$?
[[ $RC -eq 2 ]] && grep -q "needs --size S or --keep-jpeg" "$T/usage.out" || fail "no mode: exit $RC"
RC=0; $conv "$T/tree" -o "$T/x.h5" --size 32 --keep-jpeg >"$T/usage.out" 2>&1 || RC=$?
[[ $RC -eq 2 ]] || fail "--size with --keep-jpeg: exit $RC"

$conv "$T/tree" -o "$T/px.h5" --size 32 --skip-bad --seed 4 >"$T/px.out" 2>"$T/px.err"
expect_grep "skipped 1 unreadable image(s)" "$T/px.err" "--skip-bad lists the file"
expect_grep "zz_broken.jpg" "$T/px.err" "--skip-bad names the file"
$conv "$T/tree" -o "$T/jpg.h5" --keep-jpeg --skip-bad --seed 4 >"$T/jpg.out" 2>/dev/null
"$PYTHON" - "$T" <<'PY'
import io, os, sys
import numpy as np, h5py
from PIL import Image
T = sys.argv[1]
def fail(msg):
    sys.exit("FAIL: " + msg)
with h5py.File(T + "/px.h5") as f, h5py.File(T + "/jpg.h5") as g:
    for h in (f, g):
        if h.attrs["format"] != b"legr-images" or h.attrs["format_version"] != 1:
            fail("root attributes")
        if list(h.attrs["classes"]) != [b"class_a", b"class_b", b"class_c"] or h.attrs["channels"] != 3:
            fail("classes or channels")
    n = {s: len(f[s + "/labels"]) for s in ("train", "val")}
    if n["train"] + n["val"] != 300 or n["val"] != 30:
        fail("split sizes %s (300 images, val fraction 0.1)" % n)
    x = f["train/images"]
    if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3) or x.chunks != (1, 32, 32, 3):
        fail("pixel dataset %s %s %s" % (x.dtype, x.shape, x.chunks))
    counts = np.bincount(np.concatenate([f["train/labels"][:], f["val/labels"][:]]))
    if counts.tolist() != [100, 100, 100]:
        fail("images per class %s" % counts.tolist())
    for split in ("train", "val"):
        names = [v.decode() if isinstance(v, bytes) else v for v in f[split + "/names"][:]]
        labels = f[split + "/labels"][:]
        for i in range(0, len(names), 9):
            img = Image.open(os.path.join(T, "tree", names[i])).convert("RGB")
            w, h = img.size
            s = 32
            img = img.resize((s, int(s * h / w)) if w <= h else (int(s * w / h), s), Image.BILINEAR) \
                if min(w, h) != s else img
            w, h = img.size
            t, l = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
            ref = np.asarray(img.crop((l, t, l + s, t + s)))
            if not np.array_equal(f[split + "/images"][i], ref):
                fail("%s image %d (%s) differs from PIL's resize and crop" % (split, i, names[i]))
            if ["class_a", "class_b", "class_c"].index(names[i].split("/")[0]) != labels[i]:
                fail("label of %s" % names[i])
        gnames = [v.decode() if isinstance(v, bytes) else v for v in g[split + "/names"][:]]
        if gnames != names:
            fail("the two conversions split differently")
        d = g[split + "/images"]
        if d.attrs["encoding"] != b"jpeg":
            fail("encoding attribute")
        for i in range(len(names)):
            path = os.path.join(T, "tree", names[i])
            dec = Image.open(io.BytesIO(d[i].tobytes()))
            if path.endswith(".jpg") and d[i].tobytes() != open(path, "rb").read():
                fail("%s: stored JPEG bytes differ from the file" % names[i])
            if dec.size != Image.open(path).size:
                fail("%s: stored JPEG has another size" % names[i])
    m = f.attrs["mean"]
    allpix = np.concatenate([f["train/images"][:].reshape(-1, 3)]).astype(np.float64) / 255
    if np.abs(m - allpix.mean(0)).max() > 1e-9 or np.abs(f.attrs["std"] - allpix.std(0)).max() > 1e-9:
        fail("mean/std of the training pixels")
print("images_to_h5 photo checks: OK")
PY

# Fashion-MNIST from the IDX files: the same bytes and labels; a fake CIFAR-10 directory.
FM=/usr/share/datasets/fashion-mnist
$conv "$FM" -o "$T/fm.h5" >/dev/null 2>&1
mkdir -p "$T/cifar"
"$PYTHON" - "$T" "$FM" <<'PY'
import gzip, os, sys
import numpy as np, h5py
T, FM = sys.argv[1], sys.argv[2]
def idx(name):
    p = os.path.join(FM, name)
    b = gzip.open(p + ".gz").read() if os.path.exists(p + ".gz") else open(p, "rb").read()
    return np.frombuffer(b, np.uint8, offset=16 if "images" in name else 8)
with h5py.File(T + "/fm.h5") as f:
    assert np.array_equal(f["train/images"][:].ravel(), idx("train-images-idx3-ubyte")), "train pixels"
    assert np.array_equal(f["test/labels"][:], idx("t10k-labels-idx1-ubyte")), "test labels"
    px = f["train/images"][:].astype(np.float64) / 255
    assert abs(f.attrs["mean"][0] - px.mean()) < 1e-9 and abs(f.attrs["std"][0] - px.std()) < 1e-9
rng = np.random.default_rng(5)
recs = {}
for name, n in [("data_batch_%d.bin" % i, 4) for i in range(1, 6)] + [("test_batch.bin", 3)]:
    lab = rng.integers(0, 10, n, dtype=np.uint8)
    img = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    recs[name] = (lab, img)
    np.concatenate([lab[:, None], img.reshape(n, -1)], 1).tofile(os.path.join(T, "cifar", name))
import subprocess
subprocess.run([sys.executable, os.environ["LEGR_SRC"] + "/tools/images_to_h5.py", T + "/cifar",
                "-o", T + "/c10.h5"], check=True, capture_output=True)
with h5py.File(T + "/c10.h5") as f:
    imgs = np.concatenate([recs["data_batch_%d.bin" % i][1] for i in range(1, 6)])
    assert np.array_equal(f["train/images"][:], imgs.transpose(0, 2, 3, 1)), "CIFAR pixels (HWC)"
    assert np.array_equal(f["test/labels"][:], recs["test_batch.bin"][0]), "CIFAR test labels"
print("images_to_h5 IDX and CIFAR checks: OK")
PY

# The whole pipeline on the converted folder, at 2 and 3 ranks.
DATA_GROUP="data: { dataset = \"hdf5\"; file = \"$T/px.h5\"; val_fraction = 0.2; };" \
    write_cfg "$T/tree.cfg" tree 'pretrain: { epochs = 1; batch = 16; };
search: { evaluations = 4; population = 2; sample = 1; tau = 2; batch = 16; target_flops = 0.5; };
family: { flops = [0.5]; epochs = 1; batch = 16; latency_repeats = 1; };'
nps="2 3"
((SANITIZED)) && nps=3
for np in $nps; do
    sed -i "s/name = \"tree[0-9]*\"/name = \"tree$np\"/" "$T/tree.cfg"
    legr_mpirun "$np" 120 "$T/tree$np" "$T/tree.cfg"
    expect_rc 0 "$T/tree$np" "the converted folder at -np $np"
    test -s "$T/runs/tree$np/family.h5" || fail "-np $np: no family.h5"
done
note "OK"
