/* Counter-based random numbers (Philox4x32-10 from Random123) keyed by run seed and stream id. */
#ifndef LEGR_RNG_H
#define LEGR_RNG_H

#include <stdint.h>

/* A stream is fully determined by (seed, stream); its state is plain data, so it can be
 * checkpointed and restored bit-exactly. Draws never depend on which rank makes them. */
typedef struct {
    uint32_t key[2];  /* the run seed */
    uint32_t ctr[4];  /* ctr[0..1]: block counter, ctr[2..3]: stream id */
    uint32_t buf[4];  /* last generated block */
    int avail;        /* unused words left in buf */
    int has_spare;    /* Box-Muller keeps its second normal */
    double spare;
} Rng;

/* Stream purposes: a stream id is (purpose << 48) | index, so purposes never collide. */
enum {
    RNG_PURPOSE_INIT = 1,      /* parameter initialisation */
    RNG_PURPOSE_SPLIT = 2,     /* train/validation split */
    RNG_PURPOSE_EPOCH = 3,     /* epoch order; index = epoch */
    RNG_PURPOSE_AUGMENT = 4,   /* augmentation; index = step */
    RNG_PURPOSE_EVOLUTION = 5, /* the master's population RNG */
    RNG_PURPOSE_CANDIDATE = 6, /* per-candidate randomness; index = candidate id */
    RNG_PURPOSE_SYNTH = 7,     /* synthetic datasets */
    RNG_PURPOSE_BASELINE = 8,  /* random-ranking baseline */
    RNG_PURPOSE_DROPOUT = 9,   /* dropout masks; index = hash of (key, image) */
    RNG_PURPOSE_TEST = 15      /* tests only */
};

uint64_t rng_stream_id(unsigned purpose, uint64_t index);
void rng_init(Rng *r, uint64_t seed, uint64_t stream);
uint32_t rng_u32(Rng *r);
uint64_t rng_u64(Rng *r);
double rng_uniform(Rng *r);            /* [0, 1) with 53 random bits */
uint32_t rng_below(Rng *r, uint32_t n); /* uniform integer in [0, n), unbiased; n > 0 */
double rng_normal(Rng *r);             /* standard normal (Box-Muller) */
void rng_shuffle_int(Rng *r, int *a, int n); /* Fisher-Yates */

#endif
