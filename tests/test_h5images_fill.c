/* legr-images batches at the C level, against PIL, torchvision and the in-memory path: JPEG
 * decoding equals PIL's, the crop path's batches equal torchvision's transforms, a stored-size
 * file fills the same batches (pad-crop, flip, normalisation) as the same pixels in memory, and
 * the DataLoader thread and any cache size give the same batches. */
#include "harness.h"
#include "legr/data.h"
#include "legr/image_aug.h"
#include "../src/data/jpeg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes, into the directory argv[1]: u8.h5 (a uint8 legr-images file, 20 training images of
 * 7x9x3 and 6 test images) with u8.bin (its training pixels, HWC), and for JPEG images 0..N-1
 * of random sizes (RGB, greyscale, progressive, subsampled 4:2:0 and 4:4:4) jN.jpg with jN.rgb
 * (PIL's decoding, converted to RGB, preceded by int32 height and width), and jpeg.h5 holding
 * them as its /train and /test. */
static const char *gen_py =
    "import io, sys, numpy as np, h5py\n"
    "from PIL import Image\n"
    "d = sys.argv[1]\n"
    "rng = np.random.default_rng(11)\n"
    "x = rng.integers(0, 256, (20, 7, 9, 3), dtype=np.uint8)\n"
    "with h5py.File(d + '/u8.h5', 'w') as f:\n"
    "    f.attrs['format'] = np.bytes_('legr-images')\n"
    "    f.attrs['format_version'] = np.int32(1)\n"
    "    f.attrs['classes'] = np.array([b'a', b'b', b'c', b'd'])\n"
    "    f.attrs['channels'] = np.int32(3)\n"
    "    for g, n in (('train', 20), ('test', 6)):\n"
    "        gr = f.create_group(g)\n"
    "        gr.create_dataset('images', data=x[:n], chunks=(1, 7, 9, 3), compression='gzip')\n"
    "        gr.create_dataset('labels', data=(np.arange(n) % 4).astype(np.int32))\n"
    "x.tofile(d + '/u8.bin')\n"
    "kinds = [dict(), dict(grey=1), dict(progressive=True), dict(subsampling=0),\n"
    "         dict(subsampling=2, quality=60), dict(grey=1, progressive=True)]\n"
    "for i, k in enumerate(kinds):\n"
    "    h, w = int(rng.integers(5, 70)), int(rng.integers(5, 70))\n"
    "    grey = k.pop('grey', 0)\n"
    "    a = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)\n"
    "    a = (a // 32 * 32).astype(np.uint8)  # some structure for the encoder\n"
    "    b = io.BytesIO()\n"
    "    Image.fromarray(a).save(b, format='JPEG', **k)\n"
    "    open('%s/j%d.jpg' % (d, i), 'wb').write(b.getvalue())\n"
    "    im = np.asarray(Image.open(io.BytesIO(b.getvalue())).convert('RGB'))\n"
    "    with open('%s/j%d.rgb' % (d, i), 'wb') as o:\n"
    "        o.write(np.array([h, w], np.int32).tobytes() + im.tobytes())\n"
    "with h5py.File(d + '/jpeg.h5', 'w') as f:\n"
    "    f.attrs['format'] = np.bytes_('legr-images')\n"
    "    f.attrs['format_version'] = np.int32(1)\n"
    "    f.attrs['classes'] = np.array([b'a', b'b'])\n"
    "    f.attrs['channels'] = np.int32(3)\n"
    "    for g in ('train', 'test'):\n"
    "        ds = f.create_dataset(g + '/images', (len(kinds),), dtype=h5py.vlen_dtype(np.uint8))\n"
    "        ds.attrs['encoding'] = np.bytes_('jpeg')\n"
    "        for i in range(len(kinds)):\n"
    "            ds[i] = np.fromfile('%s/j%d.jpg' % (d, i), np.uint8)\n"
    "        f[g + '/labels'] = (np.arange(len(kinds)) % 2).astype(np.int32)\n";

/* Compares the crop path's batches (eval.f32, train.f32; boxes.i32: top, left, height, width,
 * flip of each training image) with torchvision's transforms of the same JPEGs. */
static const char *check_py =
    "import sys, numpy as np\n"
    "from PIL import Image\n"
    "import torchvision.transforms as T, torchvision.transforms.functional as F\n"
    "d, n, crop, resize = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])\n"
    "norm = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])\n"
    "ev = np.fromfile(d + '/eval.f32', np.float32).reshape(n, 3, crop, crop)\n"
    "tr = np.fromfile(d + '/train.f32', np.float32).reshape(n, 3, crop, crop)\n"
    "box = np.fromfile(d + '/boxes.i32', np.int32).reshape(n, 5)\n"
    "worst = 0.0\n"
    "for i in range(n):\n"
    "    im = Image.open('%s/j%d.jpg' % (d, i)).convert('RGB')\n"
    "    e = norm(T.CenterCrop(crop)(T.Resize(resize)(im))).numpy()\n"
    "    t, l, h, w, flip = (int(v) for v in box[i])\n"
    "    c = F.resized_crop(im, t, l, h, w, [crop, crop])\n"
    "    r = norm(F.hflip(c) if flip else c).numpy()\n"
    "    worst = max(worst, float(np.abs(e - ev[i]).max()), float(np.abs(r - tr[i]).max()))\n"
    "print('crop path against torchvision: largest difference %.3g' % worst)\n"
    "sys.exit(0 if worst <= 1e-6 else 1)\n";
#define N_JPEG 6

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = xmalloc((size_t)n + 1);
    CHECK(fread(b, 1, (size_t)n, f) == (size_t)n, "short read of %s", path);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* libjpeg-turbo decodes exactly as PIL (which uses the same library); damage is reported. */
static void test_jpeg(const char *dir)
{
    char path[600];
    for (int i = 0; i < N_JPEG; i++) {
        size_t len, rlen;
        snprintf(path, sizeof path, "%s/j%d.jpg", dir, i);
        unsigned char *jpg = read_all(path, &len);
        snprintf(path, sizeof path, "%s/j%d.rgb", dir, i);
        unsigned char *ref = read_all(path, &rlen);
        int rh, rw;
        memcpy(&rh, ref, 4);
        memcpy(&rw, ref + 4, 4);
        uint8_t *out = NULL;
        int h = 0, w = 0;
        char msg[256];
        int rc = jpeg_decode(jpg, len, 3, &out, &h, &w, msg, sizeof msg);
        EXPECT(rc == 0, "JPEG %d: %s", i, msg);
        EXPECT(rc != 0 || (h == rh && w == rw), "JPEG %d: %dx%d, PIL %dx%d", i, h, w, rh, rw);
        if (rc == 0 && h == rh && w == rw)
            EXPECT(memcmp(out, ref + 8, (size_t)h * w * 3) == 0, "JPEG %d differs from PIL's", i);
        free(out);
        if (i == 0) {
            /* Cut short: an error, not grey padding; garbage: libjpeg's reason. */
            rc = jpeg_decode(jpg, len / 2, 3, &out, &h, &w, msg, sizeof msg);
            EXPECT(rc == -1 && out == NULL && strstr(msg, "truncated"), "half a JPEG: %d %s", rc,
                   msg);
            rc = jpeg_decode((const uint8_t *)"GIF89a....", 10, 3, &out, &h, &w, msg, sizeof msg);
            EXPECT(rc == -1 && strstr(msg, "Not a JPEG file"), "garbage: %d %s", rc, msg);
            rc = jpeg_decode(jpg, 0, 3, &out, &h, &w, msg, sizeof msg);
            EXPECT(rc == -1 && strstr(msg, "no bytes"), "empty: %d %s", rc, msg);
        }
        free(jpg);
        free(ref);
    }
}

/* The same 20 images in memory (N, C, H, W) as the file holds them (N, H, W, C). */
static void memory_twin(Dataset *m, const char *dir)
{
    char path[600];
    size_t len;
    snprintf(path, sizeof path, "%s/u8.bin", dir);
    unsigned char *hwc = read_all(path, &len);
    CHECK(len == 20 * 7 * 9 * 3, "u8.bin has %zu bytes", len);
    memset(m, 0, sizeof *m);
    m->n = 20;
    m->c = 3;
    m->h = 7;
    m->w = 9;
    m->num_classes = 4;
    m->pix = xmalloc(len);
    m->labels = xmalloc(20 * sizeof(int));
    for (int i = 0; i < 20; i++) {
        m->labels[i] = i % 4;
        for (int y = 0; y < 7; y++)
            for (int x = 0; x < 9; x++)
                for (int c = 0; c < 3; c++)
                    m->pix[((i * 3 + c) * 7 + y) * 9 + x] = hwc[((i * 7 + y) * 9 + x) * 3 + c];
    }
    free(hwc);
}

/* A stored-size file gives the in-memory path's batches, through the loader thread too, with
 * the cache off, tiny or large. */
static void test_stored_size(const char *dir)
{
    char path[600];
    Err err;
    Dataset f, m;
    snprintf(path, sizeof path, "%s/u8.h5", dir);
    ImagesOpen o = {0, 0, 0};
    EXPECT(dataset_open_images(&f, path, "train", &o, &err) == 0, "open: %s", err.msg);
    EXPECT(f.n == 20 && f.c == 3 && f.h == 7 && f.w == 9 && f.num_classes == 4 && !f.pix,
           "file set %d %dx%dx%d, %d classes", f.n, f.c, f.h, f.w, f.num_classes);
    memory_twin(&m, dir);
    Normalize nz;
    for (int c = 0; c < 3; c++) {
        nz.mean[c] = 0.2f + 0.1f * c;
        nz.std[c] = 0.3f - 0.05f * c;
    }
    const int idx[12] = {4, 19, 0, 7, 7, 13, 2, 11, 18, 3, 9, 5};
    const size_t img = 3 * 7 * 9;
    float *xm = xmalloc(12 * img * sizeof(float)), *xf = xmalloc(12 * img * sizeof(float));
    int ym[12], yf[12];
    Augment augs[3] = {{2, 1, 0}, {3, 0, 1}, {0, 1, 0}};
    const size_t limits[3] = {0, 600, (size_t)1 << 30};
    for (int l = 0; l < 3; l++) {
        images_cache_limit(limits[l]);
        for (int a = -1; a < 3; a++) {
            const Augment *aug = a < 0 ? NULL : &augs[a];
            data_fill_keyed(xm, ym, &m, idx, 12, &nz, aug, 5, 100);
            data_fill_keyed(xf, yf, &f, idx, 12, &nz, aug, 5, 100);
            EXPECT(memcmp(xm, xf, 12 * img * sizeof(float)) == 0 && !memcmp(ym, yf, sizeof ym),
                   "cache %zu, augmentation %d: the file's batch differs from memory's",
                   limits[l], a);
            /* Twice through the loader (the second from the cache when there is one). */
            DataLoader *ld = data_loader_new(&f, 12, &nz, aug);
            data_loader_submit(ld, idx, 12, 5, 100);
            for (int rep = 0; rep < 2; rep++) {
                const float *x;
                const int *y;
                data_loader_take(ld, &x, &y);
                if (rep == 0) data_loader_submit(ld, idx, 12, 5, 100);
                EXPECT(memcmp(x, xm, 12 * img * sizeof(float)) == 0 && !memcmp(y, ym, sizeof ym),
                       "cache %zu, augmentation %d: the loader's batch %d differs", limits[l],
                       a, rep);
            }
            data_loader_free(ld);
        }
    }
    /* A shared rng draws in image order as the in-memory path does. */
    Rng r1, r2;
    rng_init(&r1, 3, rng_stream_id(RNG_PURPOSE_TEST, 1));
    rng_init(&r2, 3, rng_stream_id(RNG_PURPOSE_TEST, 1));
    data_fill_batch(xm, ym, &m, idx, 12, &nz, &augs[0], &r1);
    data_fill_batch(xf, yf, &f, idx, 12, &nz, &augs[0], &r2);
    EXPECT(memcmp(xm, xf, 12 * img * sizeof(float)) == 0, "shared-rng batch differs");
    EXPECT(rng_u32(&r1) == rng_u32(&r2), "the two paths drew different amounts");
    images_cache_limit(0);
    free(xm);
    free(xf);
    dataset_free(&m);
    dataset_free(&f);
    EXPECT(f.src == NULL && f.labels == NULL, "dataset_free leaves the file set empty");

    /* The limit keeps the first images; the test group opens as well. */
    ImagesOpen lim = {0, 0, 5};
    EXPECT(dataset_open_images(&f, path, "train", &lim, &err) == 0 && f.n == 5, "limit 5");
    dataset_free(&f);
    EXPECT(dataset_open_images(&f, path, "test", &o, &err) == 0 && f.n == 6, "test group");
    dataset_free(&f);
    ImagesInfo in;
    EXPECT(images_probe(path, &in, &err) == 0 && in.channels == 3 && in.classes == 4 &&
               in.height == 7 && in.width == 9 && !in.jpeg && in.n_train == 20 &&
               in.n_test == 6 && !strcmp(in.test_group, "test") && !in.has_stats,
           "probe: %s", err.msg);
}

static void write_file(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(p, 1, bytes, f) == bytes, "cannot write %s", path);
    fclose(f);
}

/* The JPEGs through the crop path, evaluation and training, against torchvision (check_py);
 * the training boxes and flips are those of the images' keyed streams. */
static void test_crop_path(const char *dir, const char *py)
{
    enum { CROP = 24, RESIZE = 28, SEED = 9, STREAM0 = 40 };
    char path[600], cmd[1400];
    Err err;
    Dataset d;
    snprintf(path, sizeof path, "%s/jpeg.h5", dir);
    ImagesOpen o = {CROP, RESIZE, 0};
    EXPECT(dataset_open_images(&d, path, "train", &o, &err) == 0, "open: %s", err.msg);
    EXPECT(d.n == N_JPEG && d.c == 3 && d.h == CROP && d.w == CROP, "JPEG set %d %dx%dx%d", d.n,
           d.c, d.h, d.w);
    Normalize nz;
    const float m[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) {
        nz.mean[c] = m[c];
        nz.std[c] = sd[c];
    }
    int idx[N_JPEG], y[N_JPEG], box[N_JPEG][5];
    for (int i = 0; i < N_JPEG; i++) idx[i] = i;
    const size_t n = (size_t)N_JPEG * 3 * CROP * CROP;
    float *x = xmalloc(n * sizeof(float));
    data_fill_batch(x, y, &d, idx, N_JPEG, &nz, NULL, NULL);
    write_file(dir, "eval.f32", x, n * sizeof(float));
    Augment aug = {0, 1, 1};
    data_fill_keyed(x, y, &d, idx, N_JPEG, &nz, &aug, SEED, STREAM0);
    write_file(dir, "train.f32", x, n * sizeof(float));
    for (int i = 0; i < N_JPEG; i++) {
        size_t len;
        snprintf(path, sizeof path, "%s/j%d.jpg", dir, i);
        unsigned char *jpg = read_all(path, &len);
        uint8_t *pix = NULL;
        int h = 0, w = 0;
        char msg[256];
        CHECK(jpeg_decode(jpg, len, 3, &pix, &h, &w, msg, sizeof msg) == 0, "%s", msg);
        Rng r;
        rng_init(&r, SEED, rng_stream_id(RNG_PURPOSE_AUGMENT, STREAM0 + (uint64_t)i));
        CropBox b = aug_rrc_box(h, w, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0, &r);
        int flip = rng_below(&r, 2) == 1;
        int row[5] = {b.top, b.left, b.height, b.width, flip};
        memcpy(box[i], row, sizeof row);
        free(pix);
        free(jpg);
    }
    write_file(dir, "boxes.i32", box, sizeof box);
    snprintf(path, sizeof path, "%s/check.py", dir);
    FILE *f = fopen(path, "w");
    CHECK(f, "cannot write %s", path);
    fputs(check_py, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s %s %d %d %d", py, path, dir, N_JPEG, CROP, RESIZE);
    EXPECT(system(cmd) == 0, "the crop path differs from torchvision's transforms");
    free(x);
    dataset_free(&d);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    char dir[256], cmd[1024], script[300];
    snprintf(dir, sizeof dir, "%s/legr-test-h5images-XXXXXX", base ? base : "/tmp");
    CHECK(mkdtemp(dir), "mkdtemp %s", dir);
    snprintf(script, sizeof script, "%s/gen.py", dir);
    FILE *f = fopen(script, "w");
    CHECK(f, "cannot write %s", script);
    fputs(gen_py, f);
    fclose(f);
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    snprintf(cmd, sizeof cmd, "%s %s %s", py, script, dir);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    test_jpeg(dir);
    test_crop_path(dir, py);
    test_stored_size(dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cannot remove %s", dir);
    return harness_finish("test_h5images_fill");
}
