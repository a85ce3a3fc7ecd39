/* test_rng.c - suite "rng": the counter-based generator.
 *
 * Published SplitMix64 vectors pin stream 0; the rest checks the properties the suite
 * relies on (order independence, distinct seeds/streams, bounded unbiased ranges, moments
 * of uniform and normal draws within stated standard errors).  Normal values are pinned
 * against Box-Muller evaluated in MPFR from the published raw draws.
 *
 * Statistical thresholds.  For N i.i.d. draws of a variable Y with variance s^2, the sample
 * mean has standard error s/sqrt(N); by the CLT it is within 5 SE of E[Y] except with
 * probability ~5.7e-7 (two-sided normal tail at 5 sigma).  The moments used:
 *   U ~ U[0,1):  E[U] = 1/2, Var U = 1/12;  Y = (U-1/2)^2: E Y = 1/12,
 *                Var Y = E(U-1/2)^4 - (1/12)^2 = 1/80 - 1/144 = 1/180.
 *   Z ~ N(0,1):  E Z = 0, Var Z = 1;  E Z^2 = 1, Var Z^2 = E Z^4 - 1 = 2;
 *                E Z^3 = 0, Var Z^3 = E Z^6 = 15;  E Z^4 = 3, Var Z^4 = E Z^8 - 9 = 96.
 * Bucket counts use Pearson's chi-square with k-1 degrees of freedom; its 5-sigma-tail
 * threshold comes from the Wilson-Hilferty approximation
 *   q(z) = d (1 - 2/(9d) + z sqrt(2/(9d)))^3   (d = k-1, z = 5).
 * The seed is fixed (printed) so results are reproducible; MSA_TEST_SEED replays another. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <mpfr.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/rng.h"

#define N_STAT 1000000 /* draws per moment test: SE of the uniform mean is 2.9e-4 */
#define Z_SIGMA 5.0
static uint64_t g_seed;

/* Published outputs of SplitMix64.  Seed 0: the first four outputs, which are also the
 * state xoshiro256 gets when seeded through splitmix64.c with 0 (prng.di.unimi.it).
 * Seed 1234567: Rosetta Code, "Pseudo-random numbers/Splitmix64", task statement. */
static const uint64_t SEED0[] = {UINT64_C(0xE220A8397B1DCDAF), UINT64_C(0x6E789E6AA1B965F4),
                                 UINT64_C(0x06C45D188009454F), UINT64_C(0xF88BB8A8724C81EC)};
static const uint64_t SEED1234567[] = {UINT64_C(6457827717110365317),
                                       UINT64_C(3203168211198807973),
                                       UINT64_C(9817491932198370423),
                                       UINT64_C(4593380528125082431),
                                       UINT64_C(16408922859458223821)};

static void test_published_vectors(void)
{
    for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(msa_rng_u64(0, 0, (uint64_t)i), SEED0[i]);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(msa_rng_u64(1234567, 0, (uint64_t)i), SEED1234567[i]);
    msa_rng r;
    msa_rng_init(&r, 1234567, 0);
    for (int i = 0; i < 5; i++) CU_ASSERT_EQUAL(msa_rng_next(&r), SEED1234567[i]);
    /* Rosetta Code, same task: seed 987654321, 100000 draws of floor(5 * next / 2^64)
     * fall into the buckets 0..4 as 20027, 19892, 20073, 19978, 20030. */
    static const int BUCKETS[5] = {20027, 19892, 20073, 19978, 20030};
    int cnt[5] = {0};
    for (uint64_t i = 0; i < 100000; i++) {
        unsigned __int128 p = (unsigned __int128)msa_rng_u64(987654321, 0, i) * 5;
        cnt[(int)(p >> 64)]++;
    }
    for (int b = 0; b < 5; b++) CU_ASSERT_EQUAL(cnt[b], BUCKETS[b]);
}

/* Box-Muller in MPFR at 200 bits from two raw draws, with u1 = ((a >> 11) + 1) 2^-53 and
 * u2 = (b >> 11) 2^-53 as documented in rng.c. */
static double mpfr_box_muller(uint64_t a, uint64_t b)
{
    MPFR_DECL_INIT(u1, 200);
    MPFR_DECL_INIT(u2, 200);
    MPFR_DECL_INIT(t, 200);
    mpfr_set_ui_2exp(u1, (unsigned long)((a >> 11) + 1), -53, MPFR_RNDN);
    mpfr_set_ui_2exp(u2, (unsigned long)(b >> 11), -53, MPFR_RNDN);
    mpfr_log(u1, u1, MPFR_RNDN);
    mpfr_mul_si(u1, u1, -2, MPFR_RNDN);
    mpfr_sqrt(u1, u1, MPFR_RNDN);
    mpfr_const_pi(t, MPFR_RNDN);
    mpfr_mul(u2, u2, t, MPFR_RNDN);
    mpfr_mul_ui(u2, u2, 2, MPFR_RNDN);
    mpfr_cos(u2, u2, MPFR_RNDN);
    mpfr_mul(u1, u1, u2, MPFR_RNDN);
    return mpfr_get_d(u1, MPFR_RNDN);
}

/* Tolerance against MPFR: log, sqrt, cos and the products each contribute <= 1 ulp
 * relative (glibc's log/cos are < 1 ulp), so |z| (<= 9 for 53-bit u1) carries <= ~6 ulp =
 * 6*9*2^-53 ~ 6e-15; the argument 2*pi*u2 is rounded with absolute error <= 2^-50 ~ 9e-16,
 * moving cos by at most that much, times r <= 9: 8e-15.  1e-13 bounds the sum with margin.
 *
 * The bit patterns below were recorded on glibc 2.36 x86-64 (gcc -O2 and clang -O0 agree)
 * and are each within 1e-13 of MPFR: they guard bit-for-bit reproducibility of the
 * tensors across machines and libm versions (rng.h promises it); a failure on another
 * platform means its log/cos differ in the last bit and case tensors would differ. */
#define NORMAL_TOL 1e-13
static void test_normal_pinned(void)
{
    static const double PIN_1234567[4] = {0x1.566554d8c056bp-1, 0x1.caefc44cb0628p-8,
                                          -0x1.b6bd57050617ep-2, -0x1.4c84bb02908efp-3};
    double got0 = msa_rng_normal(0, 0, 0);
    CU_ASSERT(fabs(got0 - mpfr_box_muller(SEED0[0], SEED0[1])) <= NORMAL_TOL);
    msa_rng r;
    msa_rng_init(&r, 0, 0);
    CU_ASSERT_EQUAL(msa_rng_next_normal(&r), got0);
    for (int i = 0; i < 4; i++) {
        uint64_t a = msa_rng_u64(1234567, 0, 2 * (uint64_t)i);
        uint64_t b = msa_rng_u64(1234567, 0, 2 * (uint64_t)i + 1);
        CU_ASSERT(fabs(PIN_1234567[i] - mpfr_box_muller(a, b)) <= NORMAL_TOL);
        CU_ASSERT_EQUAL(msa_rng_normal(1234567, 0, (uint64_t)i), PIN_1234567[i]);
    }
    /* uniform: (x >> 11) 2^-53 exactly */
    CU_ASSERT_EQUAL(msa_rng_uniform(0, 0, 0), (double)(SEED0[0] >> 11) * 0x1p-53);
    mpfr_free_cache();
}

/* Same values forward, backward, in a shuffled order, and through the cursor. */
static void test_order_independence(void)
{
    enum { N = 4096 };
    static uint64_t fwd[N];
    static double nfwd[N];
    uint64_t streams[3] = {0, 1, UINT64_C(0xDEADBEEF)};
    for (int s = 0; s < 3; s++) {
        long bad = 0;
        msa_rng r;
        msa_rng_init(&r, g_seed, streams[s]);
        for (int i = 0; i < N; i++) fwd[i] = msa_rng_u64(g_seed, streams[s], (uint64_t)i);
        for (int i = N - 1; i >= 0; i--) bad += msa_rng_u64(g_seed, streams[s], (uint64_t)i) != fwd[i];
        for (int i = 0; i < N; i++) bad += msa_rng_next(&r) != fwd[i];
        /* shuffled order: a permutation i -> (i * 2654435761) mod N (odd multiplier) */
        for (int i = 0; i < N; i++) {
            uint64_t j = ((uint64_t)i * 2654435761u) % N;
            bad += msa_rng_u64(g_seed, streams[s], j) != fwd[j];
        }
        for (int i = 0; i < N; i++) nfwd[i] = msa_rng_normal(g_seed, streams[s], (uint64_t)i);
        msa_rng_init(&r, g_seed, streams[s]);
        for (int i = 0; i < N; i++) bad += msa_rng_next_normal(&r) != nfwd[i];
        for (int i = N - 1; i >= 0; i--) bad += msa_rng_normal(g_seed, streams[s], (uint64_t)i) != nfwd[i];
        CU_ASSERT_EQUAL(bad, 0);
    }
}

/* Distinct seeds and streams: no equal outputs at equal indices and no shared values at
 * any offset within the first N draws (for a good 64-bit hash a collision among ~10^4
 * values has probability ~ N^2/2^64 ~ 1e-11). */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_seeds_streams_differ(void)
{
    enum { N = 2000, K = 6 };
    static uint64_t all[N * K];
    uint64_t seeds[K] = {g_seed, g_seed + 1, g_seed, g_seed, g_seed ^ (UINT64_C(1) << 63), g_seed};
    uint64_t streams[K] = {0, 0, 1, 2, 0, UINT64_C(1) << 40};
    for (int k = 0; k < K; k++)
        for (int i = 0; i < N; i++) all[k * N + i] = msa_rng_u64(seeds[k], streams[k], (uint64_t)i);
    qsort(all, N * K, sizeof all[0], cmp_u64);
    int dup = 0;
    for (int i = 1; i < N * K; i++) dup += all[i] == all[i - 1];
    CU_ASSERT_EQUAL(dup, 0);
    /* and the cursor of stream 1 starts elsewhere than stream 0's */
    CU_ASSERT_NOT_EQUAL(msa_rng_u64(g_seed, 1, 0), msa_rng_u64(g_seed, 0, 0));
}

static double wilson_hilferty(int dof, double z)
{
    double a = 2.0 / (9.0 * dof);
    return dof * pow(1.0 - a + z * sqrt(a), 3);
}

static void test_range(void)
{
    enum { K = 10 };
    long cnt[K] = {0}, out_of_bounds = 0;
    for (uint64_t i = 0; i < N_STAT; i++) {
        int64_t v = msa_rng_range(g_seed, 3, i, -3, 6);
        if (v < -3 || v > 6) out_of_bounds++;
        else cnt[v + 3]++;
    }
    CU_ASSERT_EQUAL(out_of_bounds, 0);
    double e = (double)N_STAT / K, chi2 = 0;
    for (int k = 0; k < K; k++) chi2 += (cnt[k] - e) * (cnt[k] - e) / e;
    printf("[rng range chi2 %.2f < %.2f] ", chi2, wilson_hilferty(K - 1, Z_SIGMA));
    CU_ASSERT(chi2 < wilson_hilferty(K - 1, Z_SIGMA));
    /* Bias probe: span = 3 * 2^62 does not divide 2^64; a plain x % span would put
     * [0, 2^62) at probability 1/2 instead of 1/3.  SE of the fraction: sqrt(2/9/N). */
    const int64_t lo = INT64_MIN + 5;
    const int64_t hi = (int64_t)((uint64_t)lo + 3 * (UINT64_C(1) << 62) - 1);
    long low_third = 0, oob = 0;
    msa_rng r;
    msa_rng_init(&r, g_seed, 4);
    for (int i = 0; i < N_STAT / 4; i++) {
        int64_t v = msa_rng_next_range(&r, lo, hi);
        oob += v < lo || v > hi;
        low_third += (uint64_t)v - (uint64_t)lo < (UINT64_C(1) << 62);
    }
    double frac = (double)low_third / (N_STAT / 4), se = sqrt(2.0 / 9.0 / (N_STAT / 4));
    CU_ASSERT(fabs(frac - 1.0 / 3.0) < Z_SIGMA * se);
    CU_ASSERT_EQUAL(oob, 0);
    /* degenerate and extreme ranges */
    CU_ASSERT_EQUAL(msa_rng_range(g_seed, 0, 7, 42, 42), 42);
    CU_ASSERT_EQUAL(msa_rng_range(g_seed, 0, 7, INT64_MIN, INT64_MIN), INT64_MIN);
    int seen[2] = {0, 0};
    for (uint64_t i = 0; i < 64; i++) {
        int64_t v = msa_rng_range(g_seed, 0, i, INT64_MAX - 1, INT64_MAX);
        CU_ASSERT(v == INT64_MAX - 1 || v == INT64_MAX);
        seen[v == INT64_MAX]++;
    }
    CU_ASSERT(seen[0] > 0 && seen[1] > 0); /* P(one side never seen) = 2^-63 */
    /* full range: the raw draw, reinterpreted */
    CU_ASSERT_EQUAL((uint64_t)msa_rng_range(g_seed, 0, 9, INT64_MIN, INT64_MAX),
                    (uint64_t)INT64_MIN + msa_rng_u64(g_seed, 0, 9));
}

static void test_uniform_moments(void)
{
    double s1 = 0, s2 = 0, mn = 1, mx = 0;
    for (uint64_t i = 0; i < N_STAT; i++) {
        double u = msa_rng_uniform(g_seed, 5, i);
        s1 += u;
        s2 += (u - 0.5) * (u - 0.5);
        mn = u < mn ? u : mn;
        mx = u > mx ? u : mx;
    }
    double n = N_STAT;
    CU_ASSERT(mn >= 0.0 && mx < 1.0);
    CU_ASSERT(fabs(s1 / n - 0.5) < Z_SIGMA * sqrt(1.0 / 12.0 / n));
    CU_ASSERT(fabs(s2 / n - 1.0 / 12.0) < Z_SIGMA * sqrt(1.0 / 180.0 / n));
}

static void test_normal_moments(void)
{
    double m[5] = {0};
    long nonfinite = 0;
    for (uint64_t i = 0; i < N_STAT; i++) {
        double z = msa_rng_normal(g_seed, 6, i), p = 1;
        nonfinite += !isfinite(z);
        for (int k = 1; k <= 4; k++) m[k] += (p *= z);
    }
    double n = N_STAT;
    CU_ASSERT_EQUAL(nonfinite, 0);
    printf("[rng normal moments %.4f %.4f %.4f %.4f] ", m[1] / n, m[2] / n, m[3] / n, m[4] / n);
    CU_ASSERT(fabs(m[1] / n - 0.0) < Z_SIGMA * sqrt(1.0 / n));
    CU_ASSERT(fabs(m[2] / n - 1.0) < Z_SIGMA * sqrt(2.0 / n));
    CU_ASSERT(fabs(m[3] / n - 0.0) < Z_SIGMA * sqrt(15.0 / n));
    CU_ASSERT(fabs(m[4] / n - 3.0) < Z_SIGMA * sqrt(96.0 / n));
}

int msa_suite_rng(void)
{
    const char *env = getenv("MSA_TEST_SEED");
    g_seed = env ? strtoull(env, NULL, 0) : UINT64_C(20261122);
    printf("rng: seed %llu (MSA_TEST_SEED)\n", (unsigned long long)g_seed);
    CU_pSuite s = CU_add_suite("rng", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "published SplitMix64 vectors", test_published_vectors) ||
        !CU_add_test(s, "normal: MPFR Box-Muller and bit pins", test_normal_pinned) ||
        !CU_add_test(s, "order independence", test_order_independence) ||
        !CU_add_test(s, "seeds and streams differ", test_seeds_streams_differ) ||
        !CU_add_test(s, "range bounds and bias", test_range) ||
        !CU_add_test(s, "uniform moments", test_uniform_moments) ||
        !CU_add_test(s, "normal moments", test_normal_moments))
        return -1;
    return 0;
}
