/* Test helper for test_image_aug_torch.sh: applies one crop of src/data/image_aug.c to a raw HWC uint8 image file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "legr/image_aug.h"

/* usage: aug_apply IN H W C crop TOP LEFT HEIGHT WIDTH OH OW OUT
 *        aug_apply IN H W C center CROP RESIZE OUT
 * IN and OUT are raw HWC bytes; exit 1 on a usage or file error. */
int main(int argc, char **argv)
{
    if (argc < 7) return fprintf(stderr, "aug_apply: bad usage\n"), 1;
    ImageView v = {atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), NULL};
    size_t n = (size_t)v.h * v.w * v.c;
    uint8_t *pix = malloc(n);
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(pix, 1, n, f) != n) return fprintf(stderr, "aug_apply: cannot read %s\n", argv[1]), 1;
    fclose(f);
    v.pix = pix;
    uint8_t *out, *scratch;
    size_t on;
    const char *path;
    if (strcmp(argv[5], "crop") == 0 && argc == 13) {
        CropBox b = {atoi(argv[6]), atoi(argv[7]), atoi(argv[8]), atoi(argv[9])};
        int oh = atoi(argv[10]), ow = atoi(argv[11]);
        on = (size_t)oh * ow * v.c;
        out = malloc(on);
        scratch = malloc(aug_resized_crop_scratch(oh, ow, &v, b));
        aug_resized_crop(out, oh, ow, &v, b, scratch);
        path = argv[12];
    } else if (strcmp(argv[5], "center") == 0 && argc == 9) {
        int crop = atoi(argv[6]), resize = atoi(argv[7]);
        on = (size_t)crop * crop * v.c;
        out = malloc(on);
        scratch = malloc(aug_resize_center_crop_scratch(crop, resize, &v));
        aug_resize_center_crop(out, crop, resize, &v, scratch);
        path = argv[8];
    } else {
        return fprintf(stderr, "aug_apply: bad usage\n"), 1;
    }
    f = fopen(path, "wb");
    if (!f || fwrite(out, 1, on, f) != on || fclose(f) != 0)
        return fprintf(stderr, "aug_apply: cannot write %s\n", path), 1;
    free(pix);
    free(out);
    free(scratch);
    return 0;
}
