/* rng.h - counter-based deterministic random numbers.
 *
 * Every value is a pure function of (seed, stream, index): msa_rng_u64(seed, stream, i)
 * is a strong 64-bit hash (splitmix64-style finaliser over a mixed key), so tensors for
 * (seed, case number) are identical on every machine and in any evaluation order, and
 * sharded or multithreaded generation needs no shared state. */
#ifndef MSA_RNG_H
#define MSA_RNG_H

#include <stdint.h>

uint64_t msa_rng_u64(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform in [0, 1) with 53 random bits. */
double msa_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller on two counter draws; deterministic, libm-free except
 * log/sqrt/cos which are correctly rounded enough to be the same on glibc x86-64 and
 * aarch64 -- tests pin values to guard that). */
double msa_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* Integer in [lo, hi] inclusive (hi >= lo), unbiased by rejection over the counter. */
int64_t msa_rng_range(uint64_t seed, uint64_t stream, uint64_t index, int64_t lo, int64_t hi);

/* A small sequential cursor over the counter stream, for generators that draw many
 * values one after another.  Still deterministic: state is (seed, stream, next index). */
typedef struct {
    uint64_t seed, stream, next;
} msa_rng;

void msa_rng_init(msa_rng *r, uint64_t seed, uint64_t stream);
uint64_t msa_rng_next(msa_rng *r);
double msa_rng_next_uniform(msa_rng *r);
double msa_rng_next_normal(msa_rng *r);
int64_t msa_rng_next_range(msa_rng *r, int64_t lo, int64_t hi);

#endif
