/* The lane-map loads and stores of src/nn/gemm_tile.h (gt_load_lanes, gt_store_lanes), compiled
 * for x86-64-v3 so that their AVX2 permute tables are the code under test: every one of the 256
 * masks against a lane-by-lane reference, with the data placed right before a protected page so
 * that reading or writing one float past popcount(mask) faults. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../src/nn/gemm_tile.h"
#include "harness.h"
#include "legr/util.h"

int main(void)
{
    if (!__builtin_cpu_supports("avx2")) return 77; /* this file's code needs AVX2 */
    EXPECT(GT_VL == 8, "built for 8 lanes (x86-64-v3), got %d", GT_VL);
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, (size_t)(2 * page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    CHECK(map != MAP_FAILED, "mmap");
    CHECK(mprotect(map + page, (size_t)page, PROT_NONE) == 0, "mprotect");
    float *end = (float *)(map + page); /* the first float that faults */
    gt_vf v;
    for (int e = 0; e < GT_VL; e++) v[e] = (float)(e + 1);
    for (unsigned m = 0; m < 256; m++) {
        int n = __builtin_popcount(m);
        float *p = end - n;
        /* Store: the selected lanes, in lane order, to p[0..n); the float before p untouched. */
        p[-1] = -1.0f;
        gt_store_lanes(p, v, m);
        for (int e = 0, i = 0; e < GT_VL; e++)
            if (m >> e & 1) {
                EXPECT(p[i] == v[e], "store mask 0x%02x: p[%d] = %g, want lane %d", m, i, p[i], e);
                i++;
            }
        EXPECT(p[-1] == -1.0f, "store mask 0x%02x wrote before p", m);
        /* Load: p[i] to the i-th selected lane, 0 elsewhere. */
        for (int i = 0; i < n; i++) p[i] = 100.0f + (float)i;
        gt_vf x = gt_load_lanes(p, m);
        for (int e = 0, i = 0; e < GT_VL; e++) {
            float want = m >> e & 1 ? 100.0f + (float)i++ : 0.0f;
            EXPECT(x[e] == want, "load mask 0x%02x: lane %d = %g, want %g", m, e, x[e], want);
        }
    }
    munmap(map, (size_t)(2 * page));
    return harness_finish("test_gemm_lanes");
}
