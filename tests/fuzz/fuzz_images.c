/* Fuzz target: the legr-images reader (header probe, group open, batch assembly with JPEG
 * decoding and the crops), driven by structure-aware edits (fuzz_h5_edit, which also mutates the
 * bytes of variable-length JPEG data) of two valid files built here: uint8 images at their stored
 * size, and JPEGs of mixed sizes. The first input byte picks the file and the transform. */
#include "fuzz.h"

#include <hdf5.h>
#include <jpeglib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/data/images.h"
#include "legr/data.h"

static uint8_t *seed[2];
static size_t seed_size[2];

static void put_attr(hid_t loc, const char *name, hid_t type, hid_t space, const void *v)
{
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, type, v) < 0) abort();
    H5Aclose(a);
}

static void put_string(hid_t loc, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(v) + 1);
    put_attr(loc, name, t, s, v);
    H5Tclose(t);
    H5Sclose(s);
}

/* A w x h RGB (or greyscale) JPEG of a gradient, malloc'd into *out. */
static size_t make_jpeg(int w, int h, int grey, unsigned char **out)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned long size = 0;
    *out = NULL;
    jpeg_mem_dest(&c, out, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = grey ? 1 : 3;
    c.in_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_start_compress(&c, TRUE);
    unsigned char row[3 * 64];
    while (c.next_scanline < c.image_height) {
        for (int i = 0; i < w * c.input_components; i++)
            row[i] = (unsigned char)(37 * i + 11 * (int)c.next_scanline);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return size;
}

/* /group with n images (uint8 4x5x3, or JPEGs of varied sizes) and labels i % 3. */
static void put_group(hid_t fid, const char *group, int n, int jpeg)
{
    hid_t g = H5Gcreate2(fid, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dn[1] = {(hsize_t)n};
    if (jpeg) {
        hid_t t = H5Tvlen_create(H5T_NATIVE_UINT8), s = H5Screate_simple(1, dn, NULL);
        hvl_t *v = calloc((size_t)n, sizeof *v);
        for (int i = 0; i < n; i++) {
            unsigned char *b;
            v[i].len = make_jpeg(6 + 5 * i, 9 - i, i == 1, &b);
            v[i].p = b;
        }
        hid_t d = H5Dcreate2(g, "images", t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (d < 0 || H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) abort();
        put_string(d, "encoding", "jpeg");
        for (int i = 0; i < n; i++) free(v[i].p);
        free(v);
        H5Dclose(d);
        H5Sclose(s);
        H5Tclose(t);
    } else {
        hsize_t dims[4] = {(hsize_t)n, 4, 5, 3};
        hid_t s = H5Screate_simple(4, dims, NULL);
        unsigned char px[64 * 60];
        for (int i = 0; i < n * 60; i++) px[i] = (unsigned char)(i * 7);
        hid_t d = H5Dcreate2(g, "images", H5T_NATIVE_UINT8, s, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        if (d < 0 || H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, px) < 0) abort();
        H5Dclose(d);
        H5Sclose(s);
    }
    int labels[64];
    for (int i = 0; i < n; i++) labels[i] = i % 3;
    hid_t s = H5Screate_simple(1, dn, NULL);
    hid_t d = H5Dcreate2(g, "labels", H5T_NATIVE_INT, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) < 0) abort();
    H5Dclose(d);
    H5Sclose(s);
    H5Gclose(g);
}

static void write_seed(const char *path, int jpeg)
{
    hid_t fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (fid < 0) abort();
    put_string(fid, "format", "legr-images");
    int one = 1, three = 3;
    hid_t sc = H5Screate(H5S_SCALAR);
    put_attr(fid, "format_version", H5T_NATIVE_INT, sc, &one);
    put_attr(fid, "channels", H5T_NATIVE_INT, sc, &three);
    H5Sclose(sc);
    hsize_t k[1] = {3};
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate_simple(1, k, NULL);
    H5Tset_size(t, 2);
    put_attr(fid, "classes", t, s, "a\0b\0c");
    H5Tclose(t);
    H5Sclose(s);
    put_group(fid, "train", 3, jpeg);
    put_group(fid, "test", 2, jpeg);
    H5Fclose(fid);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *path = fuzz_path("seed");
    for (int jpeg = 0; jpeg < 2; jpeg++) {
        write_seed(path, jpeg);
        fuzz_read_file(path, &seed[jpeg], &seed_size[jpeg]);
    }
    return 0;
}

/* Open a group and assemble one batch of all its images (at most 8); a file that loads must
 * give finite inputs and in-range labels. */
static void read_group(const char *path, const char *group, const ImagesOpen *o, int augment)
{
    Dataset d;
    Err err;
    if (dataset_open_images(&d, path, group, o, &err) != 0) {
        fuzz_note(err.msg);
        if (err.code != LEGR_EXIT_DATA) abort();
        return;
    }
    int n = d.n < 8 ? d.n : 8, idx[8];
    size_t per = (size_t)d.c * (size_t)d.h * (size_t)d.w;
    if (n > 0 && per > 0 && per <= (1u << 20)) {
        for (int i = 0; i < n; i++) idx[i] = n - 1 - i;
        float *x = malloc((size_t)n * per * sizeof *x);
        int y[8];
        Augment aug = {.crop_pad = 1, .flip = 1, .resized_crop = 1};
        Normalize norm;
        for (int c = 0; c < DATA_MAX_CHANNELS; c++) {
            norm.mean[c] = 0.5f;
            norm.std[c] = 0.25f;
        }
        if (images_fill(x, y, &d, idx, n, &norm, augment ? &aug : NULL, NULL, 7, 0, &err) == 0) {
            for (size_t i = 0; i < (size_t)n * per; i++)
                if (!isfinite(x[i])) abort();
            for (int i = 0; i < n; i++)
                if (y[i] < 0 || y[i] >= d.num_classes) abort();
        } else {
            fuzz_note(err.msg);
            if (err.code != LEGR_EXIT_DATA) abort();
        }
        free(x);
    }
    dataset_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int jpeg = data[0] & 1, crop = jpeg || (data[0] & 2), augment = data[0] >> 2 & 1;
    const char *path = fuzz_path("images");
    fuzz_write_file(path, seed[jpeg], seed_size[jpeg]);
    fuzz_h5_edit(path, data + 1, size - 1);
    ImagesInfo info;
    Err err;
    if (images_probe(path, &info, &err) != 0) {
        fuzz_note(err.msg);
        if (err.code != LEGR_EXIT_DATA) abort();
        return 0;
    }
    ImagesOpen o = {.crop = crop ? 4 : 0, .resize = crop ? 5 : 0, .limit = 0};
    read_group(path, "train", &o, augment);
    read_group(path, info.test_group, &o, 0);
    return 0;
}
