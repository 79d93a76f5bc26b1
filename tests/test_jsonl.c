/* Tests the JSON-lines writer's exact text: field order, escaping, null for non-finite numbers,
 * arrays, and a NULL file as a no-op (the script tests read real logs back with Python's json). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/jsonl.h"

int main(void)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    JsonLine j;
    jl_begin(&j, f, "ev\"1");
    jl_str(&j, "s", "a\\b\"c\nd\x01");
    jl_int(&j, "i", -1234567890123LL);
    jl_num(&j, "x", 0.1, 6);
    jl_num(&j, "nan", NAN, 6);
    jl_num(&j, "inf", -INFINITY, 6);
    int iv[3] = {1, -2, 3};
    double dv[2] = {1.5, NAN};
    jl_ints(&j, "iv", iv, 3);
    jl_nums(&j, "dv", dv, 2, 9);
    jl_ints(&j, "empty", iv, 0);
    jl_end(&j);
    fclose(f);
    const char *want = "{\"event\":\"ev\\\"1\",\"s\":\"a\\\\b\\\"c\\u000ad\\u0001\","
                       "\"i\":-1234567890123,\"x\":0.1,\"nan\":null,\"inf\":null,"
                       "\"iv\":[1,-2,3],\"dv\":[1.5,null],\"empty\":[]}\n";
    EXPECT(strcmp(text, want) == 0, "line:\n%s\nwanted:\n%s", text, want);
    free(text);

    JsonLine none;
    jl_begin(&none, NULL, "x"); /* no log: every call does nothing */
    jl_int(&none, "i", 1);
    jl_nums(&none, "dv", dv, 2, 6);
    jl_end(&none);
    return harness_finish("test_jsonl");
}
