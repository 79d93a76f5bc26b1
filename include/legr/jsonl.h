/* The JSON-lines log (run directory's log.jsonl): one object per event, written field by field. */
#ifndef LEGR_JSONL_H
#define LEGR_JSONL_H

#include <stdio.h>

/* One line under construction. Every call is a no-op when the file is NULL (no log), so
 * callers need no test of their own. Keys are written as given (plain ASCII names); string
 * values are escaped; a non-finite number is written as null, which JSON allows and nan/inf
 * are not. */
typedef struct {
    FILE *f;
} JsonLine;

/* Start {"event":"<event>" on f. */
void jl_begin(JsonLine *j, FILE *f, const char *event);
void jl_str(JsonLine *j, const char *key, const char *value);
void jl_int(JsonLine *j, const char *key, long long value);
/* value with `digits` significant digits (%.*g). */
void jl_num(JsonLine *j, const char *key, double value, int digits);
void jl_ints(JsonLine *j, const char *key, const int *v, int n);
void jl_nums(JsonLine *j, const char *key, const double *v, int n, int digits);
/* Close the object, end the line and flush (so a crash loses no finished event). */
void jl_end(JsonLine *j);

#endif
