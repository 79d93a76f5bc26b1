/* image_aug by hand: RandomResizedCrop boxes (inside the image, within scale and ratio, a pure
 * function of the stream, the central fallback), and resamples whose results are known exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/image_aug.h"

static void test_rrc_boxes(void)
{
    const int sizes[][2] = {{224, 224}, {375, 500}, {37, 53}, {600, 40}, {1, 1}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int h = sizes[s][0], w = sizes[s][1], fitted = 0, outside = 0;
        for (int i = 0; i < 2000; i++) {
            Rng r, r2;
            rng_init(&r, 11, rng_stream_id(RNG_PURPOSE_AUGMENT, (uint64_t)i));
            r2 = r;
            CropBox b = aug_rrc_box(h, w, 0.08, 1.0, 3.0 / 4, 4.0 / 3, &r);
            CropBox b2 = aug_rrc_box(h, w, 0.08, 1.0, 3.0 / 4, 4.0 / 3, &r2);
            outside += b.top < 0 || b.left < 0 || b.height < 1 || b.width < 1 ||
                       b.top + b.height > h || b.left + b.width > w;
            EXPECT(memcmp(&b, &b2, sizeof b) == 0, "%dx%d: the same stream gave another box", h, w);
            double area = (double)b.height * b.width / ((double)h * w);
            double ratio = (double)b.width / b.height;
            /* Rounding to whole pixels moves area and ratio a little past the drawn values. */
            fitted += area >= 0.08 * 0.8 && area <= 1.0 && ratio >= 0.75 * 0.85 && ratio <= 4.0 / 3 / 0.85;
        }
        EXPECT(outside == 0, "%dx%d: %d boxes outside the image", h, w, outside);
        if (h >= 37 && w >= 53 && h <= 500) EXPECT(fitted == 2000, "%dx%d: %d of 2000 boxes within "
                                                   "scale and ratio", h, w, fitted);
    }
    /* Impossible ratios fall back to the central box clamped to the range: a 600x40 image with
     * ratio [3/4, 4/3] and scale 1 gives a 40-wide, round(40 / 0.75) = 53-high box, centred. */
    Rng r;
    rng_init(&r, 1, 2);
    CropBox b = aug_rrc_box(600, 40, 1.0, 1.0, 3.0 / 4, 4.0 / 3, &r);
    EXPECT(b.width == 40 && b.height == 53 && b.top == (600 - 53) / 2 && b.left == 0,
           "fallback box %d,%d %dx%d", b.top, b.left, b.height, b.width);
}

static void test_resample_exact(void)
{
    /* Same size: a copy. */
    uint8_t img[6 * 8 * 3], out[16 * 16 * 3], scratch[4096];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 37 % 251);
    ImageView v = {6, 8, 3, img};
    aug_resized_crop(out, 6, 8, &v, (CropBox){0, 0, 6, 8}, scratch);
    EXPECT(memcmp(out, img, sizeof img) == 0, "an unchanged size is not a copy");
    /* A box of the same size as the output: the box's pixels. */
    aug_resized_crop(out, 2, 3, &v, (CropBox){1, 4, 2, 3}, scratch);
    int same = 1;
    for (int y = 0; y < 2; y++)
        same &= memcmp(out + y * 9, img + ((1 + y) * 8 + 4) * 3, 9) == 0;
    EXPECT(same, "a box without resizing is not the box's pixels");
    /* Halving a row: scale 2 widens the triangle to +-2 pixels; output 0 is centred at 1.0 and
     * reads pixels 0, 1, 2 at distances 0.5, 0.5, 1.5 (weights 0.75, 0.75, 0.25, over 1.75),
     * output 1 reads pixels 1, 2, 3 (0.25, 0.75, 0.75): (0, 10, 100, 101) gives 32.5 / 1.75 =
     * 18.57 and 153.25 / 1.75 = 87.57, rounded 19 and 88; one row, so no vertical pass. */
    uint8_t row[4] = {0, 10, 100, 101}, half[2];
    ImageView rv = {1, 4, 1, row};
    aug_resized_crop(half, 1, 2, &rv, (CropBox){0, 0, 1, 4}, scratch);
    EXPECT(half[0] == 19 && half[1] == 88, "halving a row gave %d %d, expected 19 88", half[0],
           half[1]);
    /* The weights sum to one: a flat image stays flat whatever the sizes. */
    uint8_t flat[7 * 5 * 3], res[11 * 13 * 3];
    memset(flat, 93, sizeof flat);
    ImageView fv = {7, 5, 3, flat};
    int flat_ok = 1;
    const int outs[][2] = {{3, 2}, {11, 13}, {1, 1}, {7, 2}};
    for (int t = 0; t < 4; t++) {
        aug_resized_crop(res, outs[t][0], outs[t][1], &fv, (CropBox){0, 0, 7, 5}, scratch);
        for (int k = 0; k < outs[t][0] * outs[t][1] * 3; k++) flat_ok &= res[k] == 93;
    }
    EXPECT(flat_ok, "a flat image did not stay flat");
    uint8_t g[4 * 4] = {0, 10, 100, 101, 20, 30, 102, 103, 255, 255, 0, 1, 255, 254, 1, 1};
    ImageView gv = {4, 4, 1, g};
    /* Resize + center crop of a 4x4 image to itself with a larger crop pads with zeros around it:
     * crop 6 puts the image at rows and columns 1..4. */
    uint8_t pad[6 * 6];
    uint8_t *scr = malloc(aug_resize_center_crop_scratch(6, 4, &gv));
    aug_resize_center_crop(pad, 6, 4, &gv, scr);
    int ok = 1;
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 6; x++) {
            int inside = y >= 1 && y <= 4 && x >= 1 && x <= 4;
            ok &= pad[y * 6 + x] == (inside ? g[(y - 1) * 4 + x - 1] : 0);
        }
    EXPECT(ok, "a crop larger than the image is not the image padded with zeros");
    free(scr);
}

int main(void)
{
    test_rrc_boxes();
    test_resample_exact();
    return harness_finish("test_image_aug");
}
