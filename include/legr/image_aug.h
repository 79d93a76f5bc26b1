/* ImageNet-style crops and resizes of uint8 images, pixel for pixel as torchvision does them on PIL images. */
#ifndef LEGR_IMAGE_AUG_H
#define LEGR_IMAGE_AUG_H

#include <stddef.h>
#include <stdint.h>
#include "legr/rng.h"

/* An image in memory: h x w pixels of c interleaved uint8 channels (HWC), rows packed. */
typedef struct {
    int h, w, c;
    const uint8_t *pix;
} ImageView;

/* A rectangle of source pixels. */
typedef struct {
    int top, left, height, width;
} CropBox;

/* torchvision's RandomResizedCrop.get_params(scale = [smin, smax], ratio = [rmin, rmax]) for an
 * h x w image: up to 10 draws of an area fraction (uniform) and an aspect ratio (log-uniform),
 * the first box that fits placed uniformly, else the central box clamped to the ratio range.
 * Every draw comes from rng, so the box is a function of the stream alone. */
CropBox aug_rrc_box(int h, int w, double smin, double smax, double rmin, double rmax, Rng *rng);

/* out (oh x ow x src->c) = the box of src resized to ow x oh as PIL's
 * img.crop(box).resize((ow, oh), BILINEAR) computes it: a triangle filter widened by the
 * reduction factor when shrinking (antialiased), 22-bit fixed-point weights, the horizontal pass
 * first and rounded to uint8 before the vertical one, a pass skipped when its size is unchanged.
 * scratch holds aug_resized_crop_scratch(...) bytes. */
void aug_resized_crop(uint8_t *out, int oh, int ow, const ImageView *src, CropBox box,
                      void *scratch);
size_t aug_resized_crop_scratch(int oh, int ow, const ImageView *src, CropBox box);

/* out (crop x crop x src->c) = torchvision's Resize(resize) (the short side to resize, the long
 * one to int(resize * long / short), with the resample above) then CenterCrop(crop) (offsets
 * round((size - crop) / 2) with Python's half-to-even rounding; zero padding where the image is
 * smaller than the crop). scratch holds aug_resize_center_crop_scratch(...) bytes. */
void aug_resize_center_crop(uint8_t *out, int crop, int resize, const ImageView *src,
                            void *scratch);
size_t aug_resize_center_crop_scratch(int crop, int resize, const ImageView *src);

#endif
