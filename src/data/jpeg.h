/* Private to src/data: decode one JPEG held in memory (libjpeg-turbo) to HWC uint8. */
#ifndef LEGR_DATA_JPEG_H
#define LEGR_DATA_JPEG_H

#include <stddef.h>
#include <stdint.h>

/* Decode buf[0..len) to *out (malloc'd, h*w*channels bytes, rows top to bottom, channels
 * interleaved) with libjpeg's default (PIL's) settings: islow IDCT, fancy upsampling. channels
 * is 3 (RGB; greyscale JPEGs are expanded) or 1 (colour JPEGs are converted to luma). Returns 0,
 * or -1 with a reason in msg (libjpeg's message, "truncated" for data that ends early, or a
 * size beyond the limit); nothing is allocated then. */
int jpeg_decode(const uint8_t *buf, size_t len, int channels, uint8_t **out, int *h, int *w,
                char *msg, size_t msg_size);

#endif
