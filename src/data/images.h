/* Private to src/data: batch assembly from a file-backed set, shared by dataset.c and loader.c. */
#ifndef LEGR_DATA_IMAGES_H
#define LEGR_DATA_IMAGES_H

#include "legr/data.h"

/* Fill x (n, c, h, w) and y from images idx[0..n) of file-backed d. Augmentation draws come from
 * *shared in image order when shared != NULL, else image i from its own stream (seed,
 * RNG_PURPOSE_AUGMENT, stream0 + i). Any thread may call it (the HDF5 reads take the io lock).
 * Returns 0, or -1 with err (LEGR_EXIT_DATA naming file, group and image index). */
int images_fill(float *x, int *y, const Dataset *d, const int *idx, int n,
                const Normalize *norm, const Augment *aug, Rng *shared, uint64_t seed,
                uint64_t stream0, Err *err);

/* Close the file group of a file-backed set and drop its cached images (dataset_free). */
void images_close(ImageSource *s);

/* lut[ch * 256 + v] = (v / 255 - mean[ch]) / std[ch] for ch < c (norm NULL: mean 0, std 1). */
void data_norm_lut(float *lut, int c, const Normalize *norm);

#endif
