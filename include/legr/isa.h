/* Which vector ISA the convolution kernels run with: picked at run time from the CPU (or the
 * LEGR_ISA environment variable) in the default build, fixed by -march=native with LEGR_NATIVE. */
#ifndef LEGR_ISA_H
#define LEGR_ISA_H

/* "avx512" (16-lane vectors), "avx2" (8 lanes, with FMA) or "sse" (4 lanes, any x86-64); in a
 * LEGR_NATIVE build "native-<width>". The first call makes the choice: LEGR_ISA when set (a
 * name this CPU cannot run, or an unknown one, stops the program with a usage error), else the
 * widest this CPU supports. */
const char *legr_isa(void);

/* 1 when this build has the named variant and this CPU can run it, else 0. */
int legr_isa_supported(const char *name);

/* The variants this CPU can run, widest first, e.g. "avx2, sse". */
const char *legr_isa_available(void);

#endif
