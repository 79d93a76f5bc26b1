/* JPEG decoding from memory with libjpeg-turbo: errors are returned as messages, never printed. */
#include "jpeg.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

/* No image of more pixels than this is decoded (a corrupt header could claim gigapixels). */
#define JPEG_MAX_PIXELS ((size_t)1 << 28)

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    int truncated;    /* libjpeg warned that the data ended early (it pads with grey) */
    char msg[JMSG_LENGTH_MAX];
} JpegErr;

/* Fatal errors return to jpeg_decode through the jump, with libjpeg's message. */
static void on_error(j_common_ptr cinfo)
{
    JpegErr *e = (JpegErr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings are silent, except that data ending early counts as an error (as PIL's "image file
 * is truncated"); other recoverable damage (extraneous bytes) is tolerated as PIL does. */
static void on_message(j_common_ptr cinfo, int level)
{
    JpegErr *e = (JpegErr *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
}

int jpeg_decode(const uint8_t *buf, size_t len, int channels, uint8_t **out, int *h, int *w,
                char *msg, size_t msg_size)
{
    struct jpeg_decompress_struct cinfo;
    JpegErr err;
    uint8_t *volatile pix = NULL;
    *out = NULL;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = on_error;
    err.mgr.emit_message = on_message;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        snprintf(msg, msg_size, "%s", err.msg);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    if (len == 0) {
        jpeg_destroy_decompress(&cinfo);
        snprintf(msg, msg_size, "no bytes stored");
        return -1;
    }
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_start_decompress(&cinfo);
    size_t row = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    if ((int)cinfo.output_components != channels ||
        (size_t)cinfo.output_width * cinfo.output_height > JPEG_MAX_PIXELS) {
        snprintf(msg, msg_size, "%ux%u with %d components cannot be decoded to %d channels",
                 cinfo.output_width, cinfo.output_height, cinfo.output_components, channels);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    pix = malloc(row * cinfo.output_height);
    if (!pix) {
        snprintf(msg, msg_size, "out of memory for %ux%u pixels", cinfo.output_width,
                 cinfo.output_height);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW r = pix + row * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &r, 1);
    }
    jpeg_finish_decompress(&cinfo);
    *h = (int)cinfo.output_height;
    *w = (int)cinfo.output_width;
    jpeg_destroy_decompress(&cinfo);
    if (err.truncated) {
        free(pix);
        snprintf(msg, msg_size, "truncated (the data ends before the image does)");
        return -1;
    }
    *out = pix;
    return 0;
}
