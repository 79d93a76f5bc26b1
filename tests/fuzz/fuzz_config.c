/* Fuzz target: the libconfig job file loader, and its promise that a loaded config printed back
 * (config_to_string) loads to the same settings. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "legr/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16) return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    Config *c = malloc(sizeof *c), *back = malloc(sizeof *back);
    Err err;
    if (config_load_string(c, text, "fuzz.cfg", &err) == 0) {
        char *printed = config_to_string(c);
        if (config_load_string(back, printed, "resolved.cfg", &err) != 0 ||
            memcmp(c, back, sizeof *c) != 0) {
            fprintf(stderr, "the resolved config does not load back to the same settings: %s\n%s",
                    err.msg, printed);
            abort();
        }
        free(printed);
    } else if (err.code != LEGR_EXIT_USAGE || err.msg[0] == '\0') {
        fprintf(stderr, "a refused config must be a usage error with a message (code %d)\n",
                err.code);
        abort();
    }
    free(back);
    free(c);
    free(text);
    return 0;
}
