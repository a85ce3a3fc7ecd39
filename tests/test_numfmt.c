/* test_numfmt.c - suite "numfmt": the number formats against MPFR.
 *
 * Decoding is checked exhaustively against values MPFR builds from the bit fields (an
 * independent construction from the format parameters written out below).  Encoding is
 * checked against MPFR emulating each format (precision M+1, mpfr_set_emin +
 * mpfr_subnormalize, overflow decided on the value rounded with an unbounded exponent) on
 * every midpoint between consecutive values, both neighbours of each midpoint, every
 * binade boundary, and a few hundred thousand random doubles over the whole double range.
 * The seed is printed; set MSA_TEST_SEED to replay another. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <mpfr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/numfmt.h"

/* The formats as the specs define them: E exponent bits, M fraction bits, bias, whether the
 * all-ones exponent is inf/NaN (IEEE) or only S.1111.111 is NaN (OCP E4M3). */
typedef struct {
    const char *name;
    int E, M, bias, ieee;
    double maxval;            /* largest finite value, from the specs */
    unsigned canon_nan;       /* documented canonical NaN code */
    double (*dec)(unsigned);  /* wrappers around the code under test */
    unsigned (*enc)(double, int);
    int has_sat;              /* encoder takes a saturate flag */
} tfmt;

static double dec_bf16(unsigned c) { return msa_bf16_to_double((uint16_t)c); }
static double dec_fp16(unsigned c) { return msa_fp16_to_double((uint16_t)c); }
static double dec_e4m3(unsigned c) { return msa_e4m3_to_double((uint8_t)c); }
static double dec_e5m2(unsigned c) { return msa_e5m2_to_double((uint8_t)c); }
static unsigned enc_bf16(double x, int s) { (void)s; return msa_double_to_bf16(x); }
static unsigned enc_fp16(double x, int s) { (void)s; return msa_double_to_fp16(x); }
static unsigned enc_e4m3(double x, int s) { return msa_double_to_e4m3(x, s); }
static unsigned enc_e5m2(double x, int s) { return msa_double_to_e5m2(x, s); }

/* max: bf16 (2 - 2^-7) 2^127; fp16 65504 (IEEE 754); e4m3 448, e5m2 57344 (OCP FP8 v1.0). */
static const tfmt FMTS[] = {
    {"bf16", 8, 7, 127, 1, 0x1.FEp127, 0x7FC0, dec_bf16, enc_bf16, 0},
    {"fp16", 5, 10, 15, 1, 65504.0, 0x7E00, dec_fp16, enc_fp16, 0},
    {"e4m3", 4, 3, 7, 0, 448.0, 0x7F, dec_e4m3, enc_e4m3, 1},
    {"e5m2", 5, 2, 15, 1, 57344.0, 0x7E, dec_e5m2, enc_e5m2, 1},
};
#define NFMT (int)(sizeof FMTS / sizeof FMTS[0])
/* fp32 (IEEE binary32) is only checked through msa_round_fp32. */
static const tfmt FP32 = {"fp32", 8, 23, 127, 1, 0x1.FFFFFEp127, 0, NULL, NULL, 0};

/* Largest finite magnitude code: IEEE one below the inf code; e4m3 one below 0x7F. */
static unsigned maxcode_of(const tfmt *t)
{
    return t->ieee ? (((1u << t->E) - 1) << t->M) - 1 : (1u << (t->E + t->M)) - 2;
}
static unsigned nbits(const tfmt *t) { return (unsigned)(1 + t->E + t->M); }
static unsigned sign_bit(const tfmt *t) { return 1u << (t->E + t->M); }
static int emin_of(const tfmt *t) { return 1 - t->bias; }
static int emax_of(const tfmt *t) { return (1 << t->E) - 1 - t->bias - (t->ieee ? 1 : 0); }

/* ---- a tiny private generator, so that this suite does not trust common/rng.c */
static uint64_t g_state;
static uint64_t g_seed;
static uint64_t xs_next(void)
{
    g_state ^= g_state >> 12; /* xorshift64* (Marsaglia; Vigna 2016) */
    g_state ^= g_state << 25;
    g_state ^= g_state >> 27;
    return g_state * UINT64_C(2685821657736338717);
}

/* ---- MPFR side */
enum { K_NUM, K_INF, K_NAN };

/* Builds the value of a code from its fields: (-1)^s 2^(ef - bias) (1 + f 2^-M), or
 * 2^(1 - bias - M) f for ef == 0.  Returns K_NUM/K_INF/K_NAN. */
static int build(const tfmt *t, unsigned code, mpfr_t v, int *neg)
{
    unsigned mag = code & (sign_bit(t) - 1);
    unsigned ef = mag >> t->M, f = mag & ((1u << t->M) - 1);
    *neg = (code & sign_bit(t)) != 0;
    if (t->ieee && ef == (1u << t->E) - 1) return f ? K_NAN : K_INF;
    if (!t->ieee && mag == (1u << (t->E + t->M)) - 1) return K_NAN;
    if (ef == 0)
        mpfr_set_ui_2exp(v, f, 1 - t->bias - t->M, MPFR_RNDN);
    else
        mpfr_set_ui_2exp(v, f + (1u << t->M), (int)ef - t->bias - t->M, MPFR_RNDN);
    if (*neg) mpfr_neg(v, v, MPFR_RNDN); /* -0 for the zero code, as wanted */
    return K_NUM;
}

/* Rounds x into format t emulated in MPFR; r has precision M+1.  Returns 1 on overflow
 * (the value rounded with an unbounded exponent is above max), else 0 with r set. */
static int ref_round(const tfmt *t, double x, mpfr_t r)
{
    mpfr_exp_t oemin = mpfr_get_emin(), oemax = mpfr_get_emax();
    /* MPFR's exponent e means 0.1b.. x 2^e, so the smallest subnormal 2^(emin-M) has
     * MPFR exponent emin-M+1; emax leaves two spare binades so MPFR itself never
     * overflows for values that round to just above max. */
    mpfr_set_emin(emin_of(t) - t->M + 1);
    mpfr_set_emax(emax_of(t) + 3);
    int i = mpfr_set_d(r, x, MPFR_RNDN);
    i = mpfr_check_range(r, i, MPFR_RNDN);
    mpfr_subnormalize(r, i, MPFR_RNDN);
    mpfr_set_emin(oemin);
    mpfr_set_emax(oemax);
    return mpfr_inf_p(r) || mpfr_cmp_d(r, t->maxval) > 0 || mpfr_cmp_d(r, -t->maxval) < 0;
}

static int g_fail_print;
static mpfr_t g_r; /* scratch for check_one, set up and cleared by the suite */
static void report(const char *what, const tfmt *t, double x, int sat, double got, double want)
{
    if (g_fail_print++ < 10)
        fprintf(stderr, "\n  numfmt %s %s sat=%d: x=%a got %a want %a (seed %llu)\n", what,
                t->name, sat, x, got, want, (unsigned long long)g_seed);
}

/* Checks one encode of x (code and value) against MPFR; returns 1 on mismatch. */
static int check_one(const tfmt *t, double x, int sat)
{
    mpfr_ptr r = g_r;
    mpfr_set_prec(r, t->M + 1);
    double got = t->dec ? t->dec(t->enc(x, sat)) : msa_round_fp32(x);
    if (isnan(x)) {
        int bad = t->enc ? t->enc(x, sat) != t->canon_nan : !isnan(got);
        if (bad) report("nan", t, x, sat, got, NAN);
        return bad;
    }
    if (ref_round(t, x, r)) {
        double want = sat ? t->maxval : (t->ieee ? INFINITY : NAN);
        want = signbit(x) ? -want : want;
        int bad = isnan(want) ? !isnan(got) : got != want;
        /* e4m3 non-saturating overflow keeps x's sign on the NaN code (documented). */
        if (!bad && isnan(want)) bad = t->enc(x, sat) != (signbit(x) ? 0xFFu : 0x7Fu);
        if (bad) report("overflow", t, x, sat, got, want);
        return bad;
    }
    int bad = isnan(got) || mpfr_cmp_d(r, got) != 0 || signbit(got) != signbit(x);
    if (bad) report("round", t, x, sat, got, mpfr_get_d(r, MPFR_RNDN));
    if (t == &FMTS[0] && !bad) bad = msa_round_bf16(x) != got;
    if (t == &FMTS[1] && !bad) bad = msa_round_fp16(x) != got;
    return bad;
}

static int check_all_modes(const tfmt *t, double x)
{
    int bad = check_one(t, x, 0);
    if (t->has_sat) bad += check_one(t, x, 1);
    return bad;
}

/* ---- tests */
static void test_decode_exhaustive(void)
{
    MPFR_DECL_INIT(v, 64);
    for (int k = 0; k < NFMT; k++) {
        const tfmt *t = &FMTS[k];
        long bad = 0;
        for (unsigned c = 0; c < (1u << nbits(t)); c++) {
            int neg, kind = build(t, c, v, &neg);
            double d = t->dec(c);
            if (kind == K_NAN) bad += !isnan(d);
            else if (kind == K_INF) bad += !(isinf(d) && (signbit(d) != 0) == neg);
            else bad += mpfr_cmp_d(v, d) != 0 || (signbit(d) != 0) != neg;
            if (nbits(t) == 16) {
                float f = t == &FMTS[0] ? msa_bf16_to_float((uint16_t)c)
                                        : msa_fp16_to_float((uint16_t)c);
                bad += isnan(d) ? !isnan(f) : memcmp(&(double){f}, &d, sizeof d) != 0;
            }
            if (bad && g_fail_print++ < 10) fprintf(stderr, "\n  decode %s 0x%x\n", t->name, c);
        }
        CU_ASSERT_EQUAL(bad, 0);
    }
}

static void test_roundtrip(void)
{
    for (int k = 0; k < NFMT; k++) {
        const tfmt *t = &FMTS[k];
        long bad = 0, nan_codes = 0;
        for (unsigned c = 0; c < (1u << nbits(t)); c++) {
            double d = t->dec(c);
            if (isnan(d)) { nan_codes++; continue; }
            if (isinf(d)) {
                bad += t->enc(d, 0) != c;
                if (t->has_sat) bad += t->enc(d, 1) != ((c & sign_bit(t)) | maxcode_of(t));
                continue;
            }
            bad += t->enc(d, 0) != c;
            if (t->has_sat) bad += t->enc(d, 1) != c;
        }
        /* NaN counts from the specs: IEEE 2 (2^M - 1), e4m3 exactly 2 (0x7F, 0xFF). */
        CU_ASSERT_EQUAL(nan_codes, t->ieee ? 2 * ((1 << t->M) - 1) : 2);
        CU_ASSERT_EQUAL(bad, 0);
    }
}

/* All non-negative finite values of t in increasing order (built by MPFR from the fields)
 * plus one value past max (the next value if the exponent range were unbounded). */
static double *ladder(const tfmt *t, int *n)
{
    MPFR_DECL_INIT(v, 64);
    unsigned ncode = sign_bit(t);
    double *a = malloc((ncode + 1) * sizeof *a);
    int m = 0, neg;
    for (unsigned c = 0; c < ncode; c++)
        if (build(t, c, v, &neg) == K_NUM) a[m++] = mpfr_get_d(v, MPFR_RNDN);
    /* past max: max + ulp(max) = max + 2^(emax - M) */
    a[m] = a[m - 1] + ldexp(1.0, emax_of(t) - t->M);
    *n = m + 1;
    return a;
}

/* Every midpoint and its two neighbours, both signs; ties must also land on the even code:
 * between codes c and c+1 the expected magnitude code is the even one (past max this is
 * maxcode+1, which is inf for IEEE formats and the NaN code 0x7F for e4m3). */
static void test_midpoints(void)
{
    MPFR_DECL_INIT(mid, 128);
    for (int k = 0; k < NFMT; k++) {
        const tfmt *t = &FMTS[k];
        int n;
        double *a = ladder(t, &n);
        long bad = 0, ties = 0;
        for (int i = 0; i + 1 < n; i++) {
            mpfr_set_d(mid, a[i], MPFR_RNDN);
            mpfr_add_d(mid, mid, a[i + 1], MPFR_RNDN);
            mpfr_div_2ui(mid, mid, 1, MPFR_RNDN);
            double m = mpfr_get_d(mid, MPFR_RNDN);
            CU_ASSERT_FATAL(mpfr_cmp_d(mid, m) == 0); /* midpoints are doubles */
            for (int s = 0; s < 2; s++) {
                double xm = s ? -m : m;
                unsigned want = (unsigned)(i & 1 ? i + 1 : i) | (s ? sign_bit(t) : 0);
                bad += t->enc(xm, 0) != want;
                ties++;
                bad += check_all_modes(t, xm);
                bad += check_all_modes(t, nextafter(xm, INFINITY));
                bad += check_all_modes(t, nextafter(xm, -INFINITY));
            }
        }
        printf("[numfmt %s: %ld ties + neighbours] ", t->name, ties);
        free(a);
        CU_ASSERT_EQUAL(bad, 0);
    }
}

/* Every binade boundary 2^e, emin <= e <= emax+1, explicitly: the tie just below it (the
 * lower neighbour has an all-ones, odd fraction) and just above it (2^e is even) both go
 * to 2^e, whose code is (e - emin + 1) << M; at e = emax+1 that is the inf code (IEEE,
 * non-saturating) and for e4m3 the boundary 2^9 lies beyond the NaN code, so it stops at
 * emax.  Also the tie between 0 and the smallest subnormal goes to 0. */
static long binade_ties(const tfmt *t)
{
    long bad = 0;
    int emin = emin_of(t), top = emax_of(t) + (t->ieee ? 1 : 0);
    for (int e = emin; e <= top; e++) {
        unsigned want = (unsigned)(e - emin + 1) << t->M;
        double p = ldexp(1.0, e);
        double below = p - ldexp(1.0, (e > emin ? e - 1 : e) - t->M - 1);
        double above = p + ldexp(1.0, e - t->M - 1);
        bad += t->enc(below, 0) != want || t->enc(-below, 0) != (want | sign_bit(t));
        if (e <= emax_of(t)) bad += t->enc(above, 0) != want;
        bad += check_all_modes(t, below) + check_all_modes(t, above);
    }
    double tiny = ldexp(1.0, emin - t->M - 1);
    bad += t->enc(tiny, 0) != 0 || t->enc(-tiny, 0) != sign_bit(t);
    bad += t->enc(nextafter(tiny, 1.0), 0) != 1;
    return bad;
}

static void test_binade_ties(void)
{
    for (int k = 0; k < NFMT; k++) CU_ASSERT_EQUAL(binade_ties(&FMTS[k]), 0);
}

/* A random double: a quarter are raw 64-bit patterns (any exponent, NaN, inf), the rest
 * have exponents within 4 binades of the format's range, some with truncated fractions
 * so that exact ties and near-ties are frequent. */
static double random_double(const tfmt *t)
{
    uint64_t r = xs_next(), bits;
    double x;
    if ((r & 3) == 0) {
        bits = xs_next();
    } else {
        int lo = emin_of(t) - t->M - 4, hi = emax_of(t) + 4;
        int e = lo + (int)(xs_next() % (uint64_t)(hi - lo + 1));
        uint64_t frac = xs_next() >> 12;
        if ((r >> 2 & 3) == 0) frac &= ~((UINT64_C(1) << (52 - t->M - 2)) - 1);
        bits = ((uint64_t)(e + 1023) << 52) | frac | (r >> 63 << 63);
    }
    memcpy(&x, &bits, sizeof x);
    return x;
}

#define N_RANDOM 100000 /* per format: 5 formats, x2 modes for fp8: 700k encodes */

static void test_random(void)
{
    for (int k = 0; k <= NFMT; k++) {
        const tfmt *t = k < NFMT ? &FMTS[k] : &FP32;
        long bad = 0;
        for (int i = 0; i < N_RANDOM; i++) bad += check_all_modes(t, random_double(t));
        CU_ASSERT_EQUAL(bad, 0);
    }
}

static void test_specials(void)
{
    for (int k = 0; k < NFMT; k++) {
        const tfmt *t = &FMTS[k];
        for (int s = 0; s < 2; s++) {
            CU_ASSERT_EQUAL(t->enc(NAN, s), t->canon_nan);
            CU_ASSERT_EQUAL(t->enc(-NAN, s), t->canon_nan);
            CU_ASSERT_EQUAL(t->enc(0.0, s), 0);
            CU_ASSERT_EQUAL(t->enc(-0.0, s), sign_bit(t));
            CU_ASSERT_EQUAL(t->enc(1e-300, s), 0);
            CU_ASSERT_EQUAL(t->enc(-1e-300, s), sign_bit(t));
        }
    }
    /* Hand-derived codes from the specs. */
    CU_ASSERT_EQUAL(msa_double_to_bf16(1.0), 0x3F80);
    CU_ASSERT_EQUAL(msa_double_to_bf16(M_PI), 0x4049); /* 3.140625 */
    CU_ASSERT_EQUAL(msa_double_to_bf16(INFINITY), 0x7F80);
    CU_ASSERT_EQUAL(msa_double_to_bf16(-INFINITY), 0xFF80);
    CU_ASSERT_EQUAL(msa_double_to_bf16(1e39), 0x7F80);
    CU_ASSERT_EQUAL(msa_double_to_fp16(1.0), 0x3C00);
    CU_ASSERT_EQUAL(msa_double_to_fp16(M_PI), 0x4248);
    CU_ASSERT_EQUAL(msa_double_to_fp16(65504.0), 0x7BFF);
    CU_ASSERT_EQUAL(msa_double_to_fp16(65519.99), 0x7BFF); /* below the 65520 tie */
    CU_ASSERT_EQUAL(msa_double_to_fp16(65520.0), 0x7C00);  /* tie -> even -> inf */
    CU_ASSERT_EQUAL(msa_double_to_fp16(0x1p-24), 0x0001);
    CU_ASSERT_EQUAL(msa_double_to_fp16(0x1p-25), 0x0000);  /* tie -> even zero */
    CU_ASSERT_EQUAL(msa_double_to_fp16(0x1.8p-24), 0x0002); /* tie -> even 2 */
    CU_ASSERT_EQUAL(msa_double_to_e4m3(1.0, 0), 0x38);
    CU_ASSERT_EQUAL(msa_double_to_e4m3(0x1p-9, 0), 0x01);
    CU_ASSERT_EQUAL(msa_double_to_e4m3(448.0, 0), 0x7E);
    CU_ASSERT_EQUAL(msa_double_to_e4m3(464.0, 0), 0x7E); /* tie 448|480 -> even 448 */
    CU_ASSERT_EQUAL(msa_double_to_e4m3(nextafter(464.0, 1e9), 0), 0x7F);
    CU_ASSERT_EQUAL(msa_double_to_e4m3(-nextafter(464.0, 1e9), 0), 0xFF);
    CU_ASSERT_EQUAL(msa_double_to_e4m3(nextafter(464.0, 1e9), 1), 0x7E);
    CU_ASSERT_EQUAL(msa_double_to_e4m3(INFINITY, 1), 0x7E);
    CU_ASSERT_EQUAL(msa_double_to_e4m3(-INFINITY, 1), 0xFE);
    CU_ASSERT_EQUAL(msa_double_to_e4m3(INFINITY, 0), 0x7F);
    CU_ASSERT_EQUAL(msa_double_to_e5m2(1.0, 0), 0x3C);
    CU_ASSERT_EQUAL(msa_double_to_e5m2(0x1p-16, 0), 0x01);
    CU_ASSERT_EQUAL(msa_double_to_e5m2(61440.0, 0), 0x7C); /* tie 57344|65536 -> inf */
    CU_ASSERT_EQUAL(msa_double_to_e5m2(61440.0, 1), 0x7B);
    CU_ASSERT_EQUAL(msa_double_to_e5m2(-INFINITY, 0), 0xFC);
    CU_ASSERT_EQUAL(msa_double_to_e5m2(-INFINITY, 1), 0xFB);
    CU_ASSERT(isnan(msa_e4m3_to_double(0x7F)) && isnan(msa_e4m3_to_double(0xFF)));
    CU_ASSERT_EQUAL(msa_e4m3_to_double(0x7E), 448.0);
    CU_ASSERT_EQUAL(msa_e5m2_to_double(0x7B), 57344.0);
}

/* The double-rounding trap: 1 + 2^-8 + 2^-40 is above the bf16 midpoint 1 + 2^-8, so it
 * rounds up to 0x3F81; via float it first becomes exactly 1 + 2^-8 and ties to 0x3F80. */
static void test_no_double_rounding(void)
{
    double x = 1.0 + 0x1p-8 + 0x1p-40;
    CU_ASSERT_EQUAL(msa_double_to_bf16(x), 0x3F81);
    CU_ASSERT_EQUAL(msa_double_to_bf16(1.0 + 0x1p-8), 0x3F80);
    CU_ASSERT_EQUAL(msa_double_to_fp16(1.0 + 0x1p-11 + 0x1p-40), 0x3C01);
    CU_ASSERT_EQUAL(msa_double_to_e4m3(1.0 + 0x1p-4 + 0x1p-40, 0), 0x39);
    CU_ASSERT_EQUAL(msa_round_fp32(1.0 + 0x1p-24 + 0x1p-50), 1.0 + 0x1p-23);
    CU_ASSERT_EQUAL(msa_round_fp32(1.0 + 0x1p-24), 1.0);
}

/* fp32: binade ties at every exponent incl. subnormal boundary and overflow, plus a
 * cross-check against the hardware double->float conversion (IEEE RNE, one rounding). */
static void test_fp32(void)
{
    const tfmt *t = &FP32;
    long bad = 0;
    for (int e = -149; e <= 128; e++) {
        double p = ldexp(1.0, e);
        double pts[4] = {p - ldexp(1.0, (e > -126 ? e - 1 : e) - 24), p + ldexp(1.0, e - 24),
                         p * 1.5, p * 1.25 + ldexp(1.0, e - 25)};
        for (int j = 0; j < 4; j++)
            for (int s = 0; s < 3; s++) {
                double x = s == 0 ? pts[j] : nextafter(pts[j], s == 1 ? INFINITY : 0.0);
                bad += check_one(t, x, 0) + check_one(t, -x, 0);
                if (x < 0x1.FFFFFFp127) bad += msa_round_fp32(x) != (double)(float)x;
            }
    }
    CU_ASSERT_EQUAL(msa_round_fp32(0x1.FFFFFFp127), INFINITY); /* tie at max -> inf */
    CU_ASSERT_EQUAL(msa_round_fp32(nextafter(0x1.FFFFFFp127, 0)), 0x1.FFFFFEp127);
    CU_ASSERT_EQUAL(msa_round_fp32(0x1p-150), 0.0);  /* tie -> even zero */
    CU_ASSERT_EQUAL(msa_round_fp32(0x1.8p-149), 0x1p-148);
    CU_ASSERT_EQUAL(bad, 0);
}

static int suite_init(void)
{
    mpfr_init2(g_r, 64);
    return 0;
}

static int suite_clean(void)
{
    mpfr_clear(g_r);
    mpfr_free_cache();
    return 0;
}

int msa_suite_numfmt(void)
{
    const char *env = getenv("MSA_TEST_SEED");
    g_seed = env ? strtoull(env, NULL, 0) : UINT64_C(20261122);
    g_state = g_seed ? g_seed : 1;
    printf("numfmt: seed %llu (MSA_TEST_SEED)\n", (unsigned long long)g_seed);
    CU_pSuite s = CU_add_suite("numfmt", suite_init, suite_clean);
    if (!s) return -1;
    if (!CU_add_test(s, "decode all codes vs MPFR fields", test_decode_exhaustive) ||
        !CU_add_test(s, "encode(decode(c)) == c", test_roundtrip) ||
        !CU_add_test(s, "specials and hand-derived codes", test_specials) ||
        !CU_add_test(s, "no double rounding", test_no_double_rounding) ||
        !CU_add_test(s, "every midpoint and neighbours vs MPFR", test_midpoints) ||
        !CU_add_test(s, "ties at every binade boundary", test_binade_ties) ||
        !CU_add_test(s, "random doubles vs MPFR", test_random) ||
        !CU_add_test(s, "fp32 rounding vs MPFR and hardware", test_fp32))
        return -1;
    return 0;
}
