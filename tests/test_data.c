/* Dataset readers: real Fashion-MNIST, raw and gzip IDX, CIFAR-10/100, and every bad-file error. */
#include "harness.h"
#include "legr/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static char tmp_dir[256];

/* A path in the test's temporary directory; valid until eight more calls. */
static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int slot = 0;
    slot = (slot + 1) % 8;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", tmp_dir, name);
    return buf[slot];
}

static void write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write %s", path);
    CHECK(fwrite(b, 1, n, f) == n, "short write %s", path);
    fclose(f);
}

static void write_gz(const char *path, const unsigned char *b, size_t n)
{
    gzFile g = gzopen(path, "wb");
    CHECK(g, "cannot write %s", path);
    CHECK(gzwrite(g, b, (unsigned)n) == (int)n, "short gzwrite %s", path);
    gzclose(g);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = xmalloc(*n);
    CHECK(fread(b, 1, *n, f) == *n, "short read %s", path);
    fclose(f);
    return b;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX image file image: magic, n, h, w, then pixel (i,y,x) = (7i + 3y + x) mod 256. */
static unsigned char *make_idx_images(uint32_t magic, uint32_t n, uint32_t h, uint32_t w,
                                      size_t *len)
{
    *len = 16 + (size_t)n * h * w;
    unsigned char *b = xmalloc(*len);
    put_be32(b, magic);
    put_be32(b + 4, n);
    put_be32(b + 8, h);
    put_be32(b + 12, w);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++)
                b[16 + ((size_t)i * h + y) * w + x] = (unsigned char)(7 * i + 3 * y + x);
    return b;
}

static unsigned char *make_idx_labels(uint32_t n, int num_classes, size_t *len)
{
    *len = 8 + n;
    unsigned char *b = xmalloc(*len);
    put_be32(b, 0x00000801);
    put_be32(b + 4, n);
    for (uint32_t i = 0; i < n; i++) b[8 + i] = (unsigned char)((i * 3) % (uint32_t)num_classes);
    return b;
}

/* Expect loading to fail with LEGR_EXIT_DATA and a message containing both needles. */
static void expect_idx_error(const char *img, const char *lab, const char *needle1,
                             const char *needle2)
{
    Dataset d;
    Err err = {0, ""};
    int rc = dataset_load_idx(&d, img, lab, 10, &err);
    EXPECT(rc == -1, "loading %s / %s should fail", img, lab);
    EXPECT(err.code == LEGR_EXIT_DATA, "code %d for %s", err.code, err.msg);
    EXPECT(strstr(err.msg, needle1) != NULL, "message '%s' lacks '%s'", err.msg, needle1);
    EXPECT(strstr(err.msg, needle2) != NULL, "message '%s' lacks '%s'", err.msg, needle2);
    if (rc == 0) dataset_free(&d);
}

static void test_fashion_mnist(void)
{
    Dataset d;
    Err err = {0, ""};
    int rc = dataset_load_idx(&d, FMNIST_DIR "/t10k-images-idx3-ubyte.gz",
                              FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", 10, &err);
    EXPECT(rc == 0, "t10k load: %s", err.msg);
    if (rc != 0) return;
    EXPECT(d.n == 10000 && d.c == 1 && d.h == 28 && d.w == 28 && d.num_classes == 10,
           "t10k shape %d %d %d %d classes %d", d.n, d.c, d.h, d.w, d.num_classes);
    int counts[10] = {0};
    for (int i = 0; i < d.n; i++) counts[d.labels[i]]++;
    for (int k = 0; k < 10; k++) EXPECT(counts[k] == 1000, "class %d has %d", k, counts[k]);
    dataset_free(&d);

    rc = dataset_load_idx(&d, FMNIST_DIR "/train-images-idx3-ubyte.gz",
                          FMNIST_DIR "/train-labels-idx1-ubyte.gz", 10, &err);
    EXPECT(rc == 0, "train load: %s", err.msg);
    if (rc != 0) return;
    EXPECT(d.n == 60000, "train n %d", d.n);
    float mean, std;
    dataset_channel_stats(&d, &mean, &std);
    EXPECT(fabsf(mean - 0.2860f) < 5e-4f, "train mean %.5f", (double)mean);
    EXPECT(fabsf(std - 0.3530f) < 5e-4f, "train std %.5f", (double)std);
    dataset_free(&d);
}

static void test_idx_raw_and_gzip(void)
{
    size_t il, ll;
    unsigned char *img = make_idx_images(0x00000803, 5, 3, 4, &il);
    unsigned char *lab = make_idx_labels(5, 10, &ll);
    write_bytes(tmp_path("raw-images"), img, il);
    write_bytes(tmp_path("raw-labels"), lab, ll);
    write_gz(tmp_path("gz-images.gz"), img, il);
    write_gz(tmp_path("gz-labels.gz"), lab, ll);
    const char *pairs[2][2] = {{tmp_path("raw-images"), tmp_path("raw-labels")},
                               {tmp_path("gz-images.gz"), tmp_path("gz-labels.gz")}};
    for (int p = 0; p < 2; p++) {
        Dataset d;
        Err err = {0, ""};
        int rc = dataset_load_idx(&d, pairs[p][0], pairs[p][1], 10, &err);
        EXPECT(rc == 0, "load %s: %s", pairs[p][0], err.msg);
        if (rc != 0) continue;
        EXPECT(d.n == 5 && d.c == 1 && d.h == 3 && d.w == 4, "%s shape %d %d %d %d",
               pairs[p][0], d.n, d.c, d.h, d.w);
        EXPECT(memcmp(d.pix, img + 16, il - 16) == 0, "%s pixels differ", pairs[p][0]);
        int labels_ok = 1;
        for (int i = 0; i < 5; i++) labels_ok &= d.labels[i] == (i * 3) % 10;
        EXPECT(labels_ok, "%s labels differ", pairs[p][0]);
        dataset_free(&d);
    }
    free(img);
    free(lab);
}

static void test_idx_errors(void)
{
    size_t il, ll;
    unsigned char *img = make_idx_images(0x00000803, 6, 5, 5, &il);
    unsigned char *lab = make_idx_labels(6, 10, &ll);
    char good_img[512];
    char good_lab[512];
    snprintf(good_img, sizeof good_img, "%s", tmp_path("good-images.gz"));
    snprintf(good_lab, sizeof good_lab, "%s", tmp_path("good-labels"));
    write_gz(good_img, img, il);
    write_bytes(good_lab, lab, ll);

    expect_idx_error(tmp_path("no-such-file.gz"), good_lab, "no-such-file.gz", "cannot open");
    expect_idx_error(good_img, tmp_path("no-labels"), "no-labels", "cannot open");
    expect_idx_error(tmp_dir, good_lab, tmp_dir, "cannot read: Is a directory");

    /* Raw payload cut short, header cut short. */
    write_bytes(tmp_path("short-raw"), img, il - 7);
    expect_idx_error(tmp_path("short-raw"), good_lab, "short-raw", "truncated");
    write_bytes(tmp_path("short-header"), img, 10);
    expect_idx_error(tmp_path("short-header"), good_lab, "short-header", "truncated");

    /* A gzip file cut in the middle of the deflate stream, and one missing only its trailer. */
    size_t gl;
    unsigned char *gz = read_bytes(good_img, &gl);
    write_bytes(tmp_path("cut-middle.gz"), gz, gl / 2);
    expect_idx_error(tmp_path("cut-middle.gz"), good_lab, "cut-middle.gz", "truncated");
    write_bytes(tmp_path("cut-trailer.gz"), gz, gl - 4);
    expect_idx_error(tmp_path("cut-trailer.gz"), good_lab, "cut-trailer.gz", "truncated");
    write_bytes(tmp_path("cut-gzheader.gz"), gz, 5);
    expect_idx_error(tmp_path("cut-gzheader.gz"), good_lab, "cut-gzheader.gz", "truncated");
    /* Corrupt deflate data after an intact gzip header. */
    for (size_t i = 12; i < gl - 8; i++) gz[i] ^= 0x5a;
    write_bytes(tmp_path("corrupt.gz"), gz, gl);
    expect_idx_error(tmp_path("corrupt.gz"), good_lab, "corrupt.gz", "corrupt");
    free(gz);

    /* Labels given as images, images given as labels: wrong magic both ways. */
    expect_idx_error(good_lab, good_lab, "good-labels", "wrong magic 0x00000801");
    expect_idx_error(good_img, good_img, "good-images.gz", "wrong magic 0x00000803");

    /* Zero height. */
    size_t zl;
    unsigned char *zero = make_idx_images(0x00000803, 6, 0, 5, &zl);
    write_bytes(tmp_path("zero-dim"), zero, zl);
    expect_idx_error(tmp_path("zero-dim"), good_lab, "zero-dim", "wrong dims");
    free(zero);

    /* Extra bytes after the declared payload. */
    unsigned char *longer = xmalloc(il + 3);
    memcpy(longer, img, il);
    memset(longer + il, 0, 3);
    write_bytes(tmp_path("trailing"), longer, il + 3);
    expect_idx_error(tmp_path("trailing"), good_lab, "trailing", "3 unexpected bytes");
    free(longer);

    /* Label 10 with 10 classes. */
    lab[8 + 4] = 10;
    write_bytes(tmp_path("bad-label"), lab, ll);
    expect_idx_error(good_img, tmp_path("bad-label"), "bad-label",
                     "label 10 of sample 4 is out of range [0, 10)");
    free(lab);

    /* Five labels for six images. */
    lab = make_idx_labels(5, 10, &ll);
    write_bytes(tmp_path("five-labels"), lab, ll);
    expect_idx_error(good_img, tmp_path("five-labels"), "count mismatch", "6 images");
    expect_idx_error(good_img, tmp_path("five-labels"), "five-labels", "5 labels");
    free(lab);
    free(img);
}

/* A CIFAR record file of n records; label bytes (coarse, fine) = (i % 20, (5i+1) % classes),
 * pixels = (i + k) mod 256. */
static void write_cifar(const char *path, int n, int cifar100, int first)
{
    size_t rec = (cifar100 ? 2 : 1) + 3072;
    unsigned char *b = xmalloc(rec * (size_t)n);
    for (int i = 0; i < n; i++) {
        unsigned char *r = b + rec * (size_t)i;
        int g = first + i;
        if (cifar100) {
            r[0] = (unsigned char)(g % 20);
            r[1] = (unsigned char)((5 * g + 1) % 100);
        } else {
            r[0] = (unsigned char)((5 * g + 1) % 10);
        }
        for (int k = 0; k < 3072; k++) r[rec - 3072 + k] = (unsigned char)(g + k);
    }
    write_bytes(path, b, rec * (size_t)n);
    free(b);
}

static void expect_cifar_error(const char *path, int cifar100, const char *needle)
{
    Dataset d;
    Err err = {0, ""};
    int rc = dataset_load_cifar(&d, &path, 1, cifar100, &err);
    EXPECT(rc == -1, "loading %s should fail", path);
    EXPECT(err.code == LEGR_EXIT_DATA, "code %d for %s", err.code, err.msg);
    EXPECT(strstr(err.msg, path) != NULL, "message '%s' lacks the path", err.msg);
    EXPECT(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    if (rc == 0) dataset_free(&d);
}

static void test_cifar(void)
{
    for (int c100 = 0; c100 <= 1; c100++) {
        const char *a = tmp_path(c100 ? "c100-a.bin" : "c10-a.bin");
        const char *b = tmp_path(c100 ? "c100-b.bin" : "c10-b.bin");
        write_cifar(a, 3, c100, 0);
        write_cifar(b, 2, c100, 3);
        const char *paths[2] = {a, b};
        Dataset d;
        Err err = {0, ""};
        int rc = dataset_load_cifar(&d, paths, 2, c100, &err);
        EXPECT(rc == 0, "cifar%d load: %s", c100 ? 100 : 10, err.msg);
        if (rc != 0) continue;
        int classes = c100 ? 100 : 10;
        EXPECT(d.n == 5 && d.c == 3 && d.h == 32 && d.w == 32 && d.num_classes == classes,
               "cifar shape %d %d %d %d classes %d", d.n, d.c, d.h, d.w, d.num_classes);
        for (int i = 0; i < 5; i++) {
            EXPECT(d.labels[i] == (5 * i + 1) % classes, "cifar%d label %d = %d",
                   classes, i, d.labels[i]);
            int px_ok = 1;
            for (int k = 0; k < 3072; k++)
                px_ok &= d.pix[(size_t)i * 3072 + k] == (unsigned char)(i + k);
            EXPECT(px_ok, "cifar%d pixels of record %d", classes, i);
        }
        dataset_free(&d);
    }

    write_cifar(tmp_path("c10-short.bin"), 2, 0, 0);
    size_t n;
    unsigned char *b = read_bytes(tmp_path("c10-short.bin"), &n);
    write_bytes(tmp_path("c10-short.bin"), b, n - 1);
    expect_cifar_error(tmp_path("c10-short.bin"), 0, "not a multiple of the 3073-byte");
    /* A CIFAR-10 file read as CIFAR-100 has the wrong record size. */
    write_bytes(tmp_path("c10-as-100.bin"), b, n);
    expect_cifar_error(tmp_path("c10-as-100.bin"), 1, "3074-byte");
    b[3073] = 10;
    write_bytes(tmp_path("c10-label.bin"), b, n);
    expect_cifar_error(tmp_path("c10-label.bin"), 0, "label 10 of record 1 is out of range");
    free(b);
    write_bytes(tmp_path("c10-empty.bin"), (const unsigned char *)"", 0);
    expect_cifar_error(tmp_path("c10-empty.bin"), 0, "empty");
    expect_cifar_error(tmp_path("c10-missing.bin"), 0, "cannot open");
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/legr-test-data-XXXXXX", base ? base : "/tmp");
    CHECK(mkdtemp(tmp_dir), "mkdtemp %s", tmp_dir);
    test_fashion_mnist();
    test_idx_raw_and_gzip();
    test_idx_errors();
    test_cifar();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return harness_finish("test_data");
}
