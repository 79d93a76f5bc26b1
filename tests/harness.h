/* A tiny test harness: checks count failures, tests exit 1 if any check failed. */
#ifndef LEGR_TEST_HARNESS_H
#define LEGR_TEST_HARNESS_H

#include <stdio.h>

extern int harness_failures;
extern int harness_checks;

/* Record a check; print file:line and the message when it fails. Evaluates cond once. */
#define EXPECT(cond, ...)                                                       \
    do {                                                                        \
        harness_checks++;                                                       \
        if (!(cond)) {                                                          \
            harness_failures++;                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* Largest |a-b| / max(|b|, floor) over n floats. */
double harness_max_rel_err(const float *a, const float *b, long long n, double floor);
/* Largest |a-b| over n floats. */
double harness_max_abs_err(const float *a, const float *b, long long n);

/* Print the summary line and return the process exit code (0 iff no failure). */
int harness_finish(const char *name);

#endif
