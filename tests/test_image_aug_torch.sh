# The crops of src/data/image_aug.c against torchvision on PIL images: resized crops (F.resized_crop
# with given boxes, shrinking and enlarging, 1 and 3 channels, odd sizes) and Resize + CenterCrop
# (including a crop larger than the image, which pads) must agree within 1/255 per value.
source "$(dirname "$0")/lib.sh"
"$PYTHON" - "$LEGR_BUILD/tests/aug_apply" "$T" <<'PY'
import subprocess, sys
import numpy as np
from PIL import Image
import torchvision.transforms as Tr
import torchvision.transforms.functional as F

tool, tmp = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)

def image(h, w, c):
    """Smooth gradients plus noise: edges and flat areas both."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1) + k * 60 + (y // 7) * 13) % 256 for k in range(c)], -1)
    a = np.clip(base + rng.integers(-40, 41, size=(h, w, c)), 0, 255).astype(np.uint8)
    return Image.fromarray(a[:, :, 0] if c == 1 else a, "L" if c == 1 else "RGB")

def ours(img, args, shape):
    a = np.asarray(img)
    c = 1 if a.ndim == 2 else a.shape[2]
    a.tofile(tmp + "/in.raw")
    subprocess.run([tool, tmp + "/in.raw", str(a.shape[0]), str(a.shape[1]), str(c)] +
                   [str(v) for v in args] + [tmp + "/out.raw"], check=True)
    return np.fromfile(tmp + "/out.raw", np.uint8).reshape(shape + (c,))

worst, diffs, n = 0, [], 0
def compare(what, mine, ref):
    global worst, n
    ref = np.asarray(ref).reshape(mine.shape).astype(int)
    d = np.abs(mine.astype(int) - ref)
    worst = max(worst, int(d.max()))
    diffs.append(float(d.mean()))
    n += 1
    if d.max() > 1:
        sys.exit("FAIL: %s differs by %d/255 (at %s)" % (what, d.max(), np.unravel_index(d.argmax(), d.shape)))

for (h, w) in [(37, 53), (300, 200), (375, 500), (224, 224), (20, 31)]:
    for c in (1, 3):
        img = image(h, w, c)
        for (top, left, bh, bw, out) in [(0, 0, h, w, 224), (h // 4, w // 5, h // 2, w // 3, 64),
                                         (1, 2, h - 3, w - 2, 17), (h // 3, w // 3, 7, 9, 96)]:
            ref = F.resized_crop(img, top, left, bh, bw, [out, out],
                                 interpolation=Tr.InterpolationMode.BILINEAR)
            compare("resized crop %dx%dx%d box %s -> %d" % (h, w, c, (top, left, bh, bw), out),
                    ours(img, ["crop", top, left, bh, bw, out, out], (out, out)), ref)
        for (crop, resize) in [(224, 256), (32, 36), (64, 64), (250, 240), (15, 20)]:
            ref = Tr.Compose([Tr.Resize(resize), Tr.CenterCrop(crop)])(img)
            compare("Resize(%d)+CenterCrop(%d) of %dx%dx%d" % (resize, crop, h, w, c),
                    ours(img, ["center", crop, resize], (crop, crop)), ref)
print("test_image_aug_torch: %d comparisons, largest difference %d/255, mean %.5f" %
      (n, worst, sum(diffs) / len(diffs)))
PY
