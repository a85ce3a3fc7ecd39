/* rng.c - counter-based random numbers: every value is a pure function of
 * (seed, stream, index), so generation order, sharding and threads never change results.
 *
 * Stream 0 is exactly SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number
 * generators", OOPSLA 2014; Vigna's splitmix64.c): output i (0-based) of the generator
 * started from state = seed is mix64(seed + (i+1) * GOLDEN_GAMMA), which is what
 * msa_rng_u64(seed, 0, i) returns, so published SplitMix64 vectors check it.
 *
 * Stream s != 0 uses its own Weyl sequence: start key seed ^ mix64(s ^ STREAM_SALT) and an
 * odd increment gamma_s = mix64(s + GOLDEN_GAMMA) | 1 (the "split" idea of SplitMix: a
 * different gamma per stream, so two streams are different arithmetic progressions and
 * never run in lockstep as shifted copies of one another).
 *
 * Deliberately not cryptographic, and not a bit-for-bit reproduction of any other
 * library's uniform/normal/range conversions. */
#include "rng.h"

#include <math.h>

/* Constants of SplitMix64 (Steele et al. 2014; splitmix64.c by S. Vigna): the golden-ratio
 * increment 2^64/phi and the "Mix13" finaliser multipliers of D. Stafford. */
#define GOLDEN_GAMMA UINT64_C(0x9E3779B97F4A7C15)
#define MIX_M1 UINT64_C(0xBF58476D1CE4E5B9)
#define MIX_M2 UINT64_C(0x94D049BB133111EB)
/* Arbitrary odd salt (first 64 bits of the fractional part of sqrt(2)) so that stream s
 * keys differ from the mix of s used for gamma. */
#define STREAM_SALT UINT64_C(0x6A09E667F3BCC908)
#define TWO_POW_M53 0x1p-53 /* uniform doubles are k * 2^-53, k < 2^53 */
#define TWO_PI 6.283185307179586476925286766559

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * MIX_M1;
    z = (z ^ (z >> 27)) * MIX_M2;
    return z ^ (z >> 31);
}

uint64_t msa_rng_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint64_t key = seed, gamma = GOLDEN_GAMMA;
    if (stream != 0) {
        key = seed ^ mix64(stream ^ STREAM_SALT);
        gamma = mix64(stream + GOLDEN_GAMMA) | 1;
    }
    return mix64(key + (index + 1) * gamma); /* unsigned wrap-around is intended */
}

static double to_uniform(uint64_t x) { return (double)(x >> 11) * TWO_POW_M53; }

double msa_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    return to_uniform(msa_rng_u64(seed, stream, index));
}

/* Box-Muller: u1 in (0, 1] (never log(0)), u2 in [0, 1). */
static double box_muller(uint64_t a, uint64_t b)
{
    double u1 = (double)((a >> 11) + 1) * TWO_POW_M53;
    double u2 = to_uniform(b);
    return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
}

/* Normal number i uses raw draws 2i and 2i+1 of (seed, stream); do not mix normal and
 * uniform draws on one stream if they must be independent. */
double msa_rng_normal(uint64_t seed, uint64_t stream, uint64_t index)
{
    return box_muller(msa_rng_u64(seed, stream, 2 * index),
                      msa_rng_u64(seed, stream, 2 * index + 1));
}

/* Unbiased reduction: accept x only when x >= 2^64 mod span, so the accepted values are a
 * whole number of copies of [0, span).  A rejected x is replaced by mix64(x + GOLDEN_GAMMA),
 * a deterministic chain, so the result still depends on (seed, stream, index) alone.  The
 * rejection probability is below span / 2^64. */
static int64_t reduce_range(uint64_t x, int64_t lo, int64_t hi)
{
    if (hi <= lo) return lo; /* hi == lo; hi < lo is a caller error: answer lo */
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;
    if (span == 0) return (int64_t)((uint64_t)lo + x); /* full 64-bit range */
    uint64_t threshold = (0 - span) % span;            /* 2^64 mod span */
    while (x < threshold) x = mix64(x + GOLDEN_GAMMA);
    return (int64_t)((uint64_t)lo + x % span);
}

int64_t msa_rng_range(uint64_t seed, uint64_t stream, uint64_t index, int64_t lo, int64_t hi)
{
    return reduce_range(msa_rng_u64(seed, stream, index), lo, hi);
}

void msa_rng_init(msa_rng *r, uint64_t seed, uint64_t stream)
{
    r->seed = seed;
    r->stream = stream;
    r->next = 0;
}

uint64_t msa_rng_next(msa_rng *r) { return msa_rng_u64(r->seed, r->stream, r->next++); }

double msa_rng_next_uniform(msa_rng *r) { return to_uniform(msa_rng_next(r)); }

/* Consumes two raw draws; from a fresh cursor the k-th call equals msa_rng_normal(k). */
double msa_rng_next_normal(msa_rng *r)
{
    uint64_t a = msa_rng_next(r);
    return box_muller(a, msa_rng_next(r));
}

int64_t msa_rng_next_range(msa_rng *r, int64_t lo, int64_t hi)
{
    return reduce_range(msa_rng_next(r), lo, hi);
}
