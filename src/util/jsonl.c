/* The JSON-lines log writer: escaped strings, null for non-finite numbers, one flush per line. */
#include "legr/jsonl.h"

#include <math.h>

static void jl_key(const JsonLine *j, const char *key)
{
    fprintf(j->f, ",\"%s\":", key);
}

static void jl_number(FILE *f, double v, int digits)
{
    if (isfinite(v))
        fprintf(f, "%.*g", digits, v);
    else
        fputs("null", f);
}

static void jl_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void jl_begin(JsonLine *j, FILE *f, const char *event)
{
    j->f = f;
    if (!f) return;
    fputs("{\"event\":", f);
    jl_string(f, event);
}

void jl_str(JsonLine *j, const char *key, const char *value)
{
    if (!j->f) return;
    jl_key(j, key);
    jl_string(j->f, value);
}

void jl_int(JsonLine *j, const char *key, long long value)
{
    if (!j->f) return;
    jl_key(j, key);
    fprintf(j->f, "%lld", value);
}

void jl_num(JsonLine *j, const char *key, double value, int digits)
{
    if (!j->f) return;
    jl_key(j, key);
    jl_number(j->f, value, digits);
}

void jl_ints(JsonLine *j, const char *key, const int *v, int n)
{
    if (!j->f) return;
    jl_key(j, key);
    for (int i = 0; i < n; i++) fprintf(j->f, "%c%d", i ? ',' : '[', v[i]);
    fputs(n ? "]" : "[]", j->f);
}

void jl_nums(JsonLine *j, const char *key, const double *v, int n, int digits)
{
    if (!j->f) return;
    jl_key(j, key);
    for (int i = 0; i < n; i++) {
        fputc(i ? ',' : '[', j->f);
        jl_number(j->f, v[i], digits);
    }
    fputs(n ? "]" : "[]", j->f);
}

void jl_end(JsonLine *j)
{
    if (!j->f) return;
    fputs("}\n", j->f);
    fflush(j->f);
}
