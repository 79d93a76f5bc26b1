/* The data half of tools/bench_data.py: JPEG decoding plus the training augmentation
 * (RandomResizedCrop to 224 and a horizontal flip) of legr-images files, timed on one thread.
 *
 * Usage: bench_data FILE REPS, where FILE holds JPEGs as records of a 4-byte little-endian
 * length and the bytes. Prints one line: "images N seconds S" for the best of REPS passes over
 * all images (the best, since a pass is a fixed amount of work and the machine only adds noise).
 * The flip here is a byte pass of its own; the reader mirrors while converting to floats, so this
 * side is timed with a little more work than the reader does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/data/jpeg.h"
#include "legr/image_aug.h"
#include "legr/rng.h"
#include "legr/util.h"

enum { CROP = 224 };

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_data FILE REPS\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 3;
    }
    int reps = atoi(argv[2]);
    uint8_t **buf = NULL;
    size_t *len = NULL, n = 0;
    unsigned char hdr[4];
    while (fread(hdr, 1, 4, f) == 4) {
        size_t l = hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
        buf = realloc(buf, (n + 1) * sizeof *buf);
        len = realloc(len, (n + 1) * sizeof *len);
        buf[n] = malloc(l);
        if (!buf || !len || !buf[n] || fread(buf[n], 1, l, f) != l) {
            fprintf(stderr, "%s: truncated record %zu\n", argv[1], n);
            return 3;
        }
        len[n++] = l;
    }
    fclose(f);
    uint8_t *out = malloc((size_t)CROP * CROP * 3);
    double best = -1;
    unsigned checksum = 0;
    for (int rep = 0; rep < reps; rep++) {
        Rng rng;
        rng_init(&rng, 1, rng_stream_id(RNG_PURPOSE_TEST, (uint64_t)rep));
        double t0 = time_now();
        for (size_t i = 0; i < n; i++) {
            uint8_t *pix;
            int h, w;
            char msg[200];
            if (jpeg_decode(buf[i], len[i], 3, &pix, &h, &w, msg, sizeof msg) != 0) {
                fprintf(stderr, "image %zu: %s\n", i, msg);
                return 3;
            }
            ImageView v = {h, w, 3, pix};
            CropBox box = aug_rrc_box(h, w, 0.08, 1.0, 3.0 / 4, 4.0 / 3, &rng);
            void *scratch = malloc(aug_resized_crop_scratch(CROP, CROP, &v, box));
            aug_resized_crop(out, CROP, CROP, &v, box, scratch);
            if (rng_uniform(&rng) < 0.5) /* the flip: swap pixels within each row */
                for (int y = 0; y < CROP; y++)
                    for (int x = 0; x < CROP / 2; x++)
                        for (int c = 0; c < 3; c++) {
                            uint8_t *a = out + ((size_t)y * CROP + x) * 3 + c;
                            uint8_t *b = out + ((size_t)y * CROP + CROP - 1 - x) * 3 + c;
                            uint8_t t = *a;
                            *a = *b;
                            *b = t;
                        }
            checksum += out[(i * 7919) % ((size_t)CROP * CROP * 3)];
            free(scratch);
            free(pix);
        }
        double s = time_now() - t0;
        if (best < 0 || s < best) best = s;
    }
    printf("images %zu seconds %.6f checksum %u\n", n, best, checksum);
    for (size_t i = 0; i < n; i++) free(buf[i]);
    free(buf);
    free(len);
    free(out);
    return 0;
}
