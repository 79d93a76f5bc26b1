/* Fuzz target: the IDX image + label reader (raw or gzip). The input is a 2-byte split point,
 * the images file and the labels file. */
#include "fuzz.h"

#include <stdlib.h>

#include "legr/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t split = ((size_t)data[0] | (size_t)data[1] << 8) % (size - 1);
    const char *images = fuzz_path("images"), *labels = fuzz_path("labels");
    fuzz_write_file(images, data + 2, split);
    fuzz_write_file(labels, data + 2 + split, size - 2 - split);
    Dataset d;
    Err err;
    if (dataset_load_idx(&d, images, labels, 10, &err) == 0) {
        /* Every label was checked against the class count. */
        for (int i = 0; i < d.n; i++)
            if (d.labels[i] < 0 || d.labels[i] >= 10) abort();
        dataset_free(&d);
    } else {
        fuzz_note(err.msg);
        if (err.code != LEGR_EXIT_DATA) abort();
    }
    return 0;
}
