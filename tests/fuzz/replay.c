/* Runs a fuzz target over files and directories of inputs without libFuzzer: the seed corpora
 * and the regression inputs of past findings become an ordinary test in every build. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int run_file(const char *path)
{
    uint8_t *data;
    size_t size;
    fuzz_read_file(path, &data, &size);
    fprintf(stderr, "%s\n", path); /* so a failure names its input */
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 1;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    int n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            n += run_file(argv[i]);
            continue;
        }
        DIR *d = opendir(argv[i]);
        char **names = NULL;
        int m = 0;
        for (struct dirent *e; d && (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            names = realloc(names, sizeof *names * (size_t)(m + 1));
            size_t len = strlen(argv[i]) + strlen(e->d_name) + 2;
            names[m] = malloc(len);
            snprintf(names[m++], len, "%s/%s", argv[i], e->d_name);
        }
        if (d) closedir(d);
        qsort(names, (size_t)m, sizeof *names, by_name);
        for (int k = 0; k < m; k++) {
            n += run_file(names[k]);
            free(names[k]);
        }
        free(names);
    }
    printf("%s: %d inputs ran\n", argv[0], n);
    return n > 0 ? 0 : 1;
}
