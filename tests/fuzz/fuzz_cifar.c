/* Fuzz target: the CIFAR-10/100 binary record reader. The first byte picks CIFAR-100 (odd) or
 * CIFAR-10 and whether the data is split over two files (bit 1); the rest is the file data. */
#include "fuzz.h"

#include <stdlib.h>

#include "legr/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int cifar100 = data[0] & 1, two = data[0] >> 1 & 1;
    size_t half = two ? (size - 1) / 2 : size - 1;
    const char *paths[2] = {fuzz_path("batch1"), fuzz_path("batch2")};
    fuzz_write_file(paths[0], data + 1, half);
    if (two) fuzz_write_file(paths[1], data + 1 + half, size - 1 - half);
    Dataset d;
    Err err;
    if (dataset_load_cifar(&d, paths, 1 + two, cifar100, &err) == 0) {
        int classes = cifar100 ? 100 : 10;
        if (d.n < 1 || d.c != 3 || d.h != 32 || d.w != 32) abort();
        for (int i = 0; i < d.n; i++)
            if (d.labels[i] < 0 || d.labels[i] >= classes) abort();
        dataset_free(&d);
    } else {
        fuzz_note(err.msg);
        if (err.code != LEGR_EXIT_DATA) abort();
    }
    return 0;
}
