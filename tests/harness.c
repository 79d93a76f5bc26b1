/* The test harness's counters and comparison helpers. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>

#include "legr/isa.h"

int harness_failures = 0;
int harness_checks = 0;

/* A test run with LEGR_ISA naming a kernel variant this CPU cannot run is skipped (exit 77,
 * which CTest reports as skipped), before any check. */
__attribute__((constructor)) static void harness_isa_check(void)
{
    const char *want = getenv("LEGR_ISA");
    if (want && *want && !legr_isa_supported(want)) {
        printf("skipped: this CPU cannot run LEGR_ISA=%s (it runs: %s)\n", want,
               legr_isa_available());
        exit(77);
    }
}

double harness_max_rel_err(const float *a, const float *b, long long n, double floor)
{
    double worst = 0.0;
    for (long long i = 0; i < n; i++) {
        double den = fabs((double)b[i]);
        if (den < floor) den = floor;
        double e = fabs((double)a[i] - (double)b[i]) / den;
        if (isnan(e)) return e; /* a NaN anywhere is a failure */
        if (e > worst) worst = e;
    }
    return worst;
}

double harness_max_abs_err(const float *a, const float *b, long long n)
{
    double worst = 0.0;
    for (long long i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (isnan(e)) return e;
        if (e > worst) worst = e;
    }
    return worst;
}

int harness_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, harness_checks, harness_failures);
    return harness_failures ? 1 : 0;
}
