/* test_reference.c - CUnit suite "reference": the exact and fast CPU reference against
 * cases whose answers are derived by hand in the comments, structural properties (nvis <=
 * k gives dense, paged == packed, chunked prefill and decode alignment, empty rows), the
 * certified dd path against the pure MPFR path bit for bit, the dd exp against MPFR, and
 * fast mode against exact mode with the documented bound (docs/NUMERICS.md (section 11)).
 * Cases are built here directly (not through the case generator) so that this suite
 * depends only on the number formats and the RNG.  Seeds are printed. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <mpfr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/numfmt.h"
#include "../common/rng.h"
#include "../reference/ref.h"
#include "../reference/ref_internal.h"

#define SEED 20261122u

/* ------------------------------------------------------------------ case building */

static msa_case *mk(int batch, const int *lq, const int *lk, int Hq, int Hkv, int D, int DI, int B,
                    int topk, int init, int local, msa_dtype dt)
{
    msa_case *c = calloc(1, sizeof *c);
    c->dtype = c->index_dtype = dt;
    c->block_size = B, c->topk = topk, c->init_blocks = init, c->local_blocks = local;
    c->causal = 1;
    c->softmax_scale = 1 / sqrt((double)D), c->softmax_scale_is_default = 1;
    c->index_scale = 1 / sqrt((double)DI), c->index_scale_is_default = 1;
    c->batch = batch, c->Hq = Hq, c->Hkv = Hkv, c->HI = Hkv, c->D = D, c->DI = DI;
    c->cu_q = calloc((size_t)batch + 1, sizeof(int32_t));
    c->cu_k = calloc((size_t)batch + 1, sizeof(int32_t));
    for (int b = 0; b < batch; b++) {
        c->cu_q[b + 1] = c->cu_q[b] + lq[b], c->cu_k[b + 1] = c->cu_k[b] + lk[b];
        int nb = (lk[b] + B - 1) / B;
        if (nb > c->max_blocks) c->max_blocks = nb;
    }
    c->Tq = c->cu_q[batch], c->Tk = c->cu_k[batch];
    size_t es = msa_dtype_size(dt);
    c->q = calloc((size_t)c->Tq * Hq * D + 1, es);
    c->k = calloc((size_t)c->Tk * Hkv * D + 1, es);
    c->v = calloc((size_t)c->Tk * Hkv * D + 1, es);
    c->index_q = calloc((size_t)c->Tq * Hkv * DI + 1, es);
    c->index_k = calloc((size_t)c->Tk * DI + 1, es);
    snprintf(c->label, sizeof c->label, "test");
    return c;
}

static void kill_case(msa_case *c)
{
    free(c->cu_q), free(c->cu_k), free(c->page_table);
    free(c->q), free(c->k), free(c->v), free(c->index_q), free(c->index_k);
    free(c);
}

/* Stores x (which must be representable) at element i of a tensor of the case's dtype. */
static void put(const msa_case *c, void *base, size_t i, double x)
{
    switch (c->dtype) {
    case MSA_DT_BF16: ((uint16_t *)base)[i] = msa_double_to_bf16(x); break;
    case MSA_DT_FP16: ((uint16_t *)base)[i] = msa_double_to_fp16(x); break;
    case MSA_DT_E4M3: ((uint8_t *)base)[i] = msa_double_to_e4m3(x, 1); break;
    default: ((float *)base)[i] = (float)x; break;
    }
    CU_ASSERT_EQUAL(msa_dtype_load(c->dtype, base, i), x); /* the test's values are exact */
}

#define Q(c, t, h, d, x) put(c, (c)->q, ((size_t)(t) * (c)->Hq + (h)) * (c)->D + (d), x)
#define K(c, j, g, d, x) put(c, (c)->k, ((size_t)(j) * (c)->Hkv + (g)) * (c)->D + (d), x)
#define V(c, j, g, d, x) put(c, (c)->v, ((size_t)(j) * (c)->Hkv + (g)) * (c)->D + (d), x)
#define IQ(c, t, g, d, x) put(c, (c)->index_q, ((size_t)(t) * (c)->HI + (g)) * (c)->DI + (d), x)
#define IK(c, j, d, x) put(c, (c)->index_k, (size_t)(j) * (c)->DI + (d), x)

static double rnd_val(const msa_case *c, msa_rng *r, double scale)
{
    double x = scale * msa_rng_next_normal(r);
    switch (c->dtype) {
    case MSA_DT_BF16: return msa_round_bf16(x);
    case MSA_DT_FP16: return msa_round_fp16(x);
    case MSA_DT_E4M3: return msa_e4m3_to_double(msa_double_to_e4m3(x, 1));
    default: return msa_round_fp32(x);
    }
}

static void fill_random(msa_case *c, uint64_t seed, double qscale)
{
    msa_rng r;
    msa_rng_init(&r, seed, 7);
    for (int t = 0; t < c->Tq; t++)
        for (int h = 0; h < c->Hq; h++)
            for (int d = 0; d < c->D; d++) Q(c, t, h, d, rnd_val(c, &r, qscale));
    for (int j = 0; j < c->Tk; j++)
        for (int g = 0; g < c->Hkv; g++)
            for (int d = 0; d < c->D; d++) K(c, j, g, d, rnd_val(c, &r, 1)), V(c, j, g, d, rnd_val(c, &r, 1));
    for (int t = 0; t < c->Tq; t++)
        for (int g = 0; g < c->HI; g++)
            for (int d = 0; d < c->DI; d++) IQ(c, t, g, d, rnd_val(c, &r, 1));
    for (int j = 0; j < c->Tk; j++)
        for (int d = 0; d < c->DI; d++) IK(c, j, d, rnd_val(c, &r, 1));
}

static int bits_equal(const double *a, const double *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

static msa_ref_result run(const msa_case *c, msa_ref_mode m)
{
    msa_ref_result r;
    msa_err e = {{0}};
    int rc = msa_ref_run(c, m, &r, &e);
    if (rc) fprintf(stderr, "msa_ref_run: %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, MSA_OK);
    return r;
}

/* ------------------------------------------------------------------ hand-computed cases */

/* Four keys with identical k and q = 0: every score is 0, so the softmax weights are all
 * 1/4 and out = mean(v) = (1 + 2 + 3 + 6) / 4 = 3 exactly; lse = log(4 * e^0) = 2 ln 2,
 * and RN(2 ln 2) = 2 RN(ln 2) = 2 * M_LN2 (doubling is exact).  Query 3 sees all 4 keys. */
static void test_all_equal_keys(void)
{
    int lq = 4, lk = 4;
    msa_case *c = mk(1, &lq, &lk, 1, 1, 4, 4, 4, 1, 0, 0, MSA_DT_BF16);
    const double vs[4] = {1, 2, 3, 6};
    for (int j = 0; j < 4; j++)
        for (int d = 0; d < 4; d++) K(c, j, 0, d, 0.5), V(c, j, 0, d, vs[j] * (d + 1));
    for (int m = 0; m < 2; m++) {
        msa_ref_result r = run(c, m ? MSA_REF_FAST : MSA_REF_EXACT);
        for (int d = 0; d < 4; d++) CU_ASSERT_EQUAL(r.out[3 * 4 + d], 3.0 * (d + 1));
        CU_ASSERT_EQUAL(r.lse[3], 2 * M_LN2);
        /* query 1 sees keys 0, 1: mean (1 + 2) / 2 = 1.5, lse = ln 2 */
        CU_ASSERT_EQUAL(r.out[1 * 4], 1.5);
        CU_ASSERT_EQUAL(r.lse[1], M_LN2);
        msa_ref_result_free(&r);
    }
    kill_case(c);
}

/* Key 0 has q.k = 400 and keys 1..3 have 0, with an explicit softmax scale of 1/8: scaled
 * scores 50 and 0.  Weights: 1 / (1 + 3e^-50) and e^-50 / (...), e^-50 < 2^-72, so
 * out = 1.5 + O(2^-70) rounds to v0 = 1.5 and lse = 50 + log(1 + 3e^-50) = 50 + O(2^-70)
 * rounds to 50 (ulp(50) = 2^-47). */
static void test_one_dominant_key(void)
{
    int lq = 1, lk = 4;
    msa_case *c = mk(1, &lq, &lk, 1, 1, 4, 4, 4, 1, 0, 0, MSA_DT_FP32);
    c->softmax_scale = 0.125, c->softmax_scale_is_default = 0;
    Q(c, 0, 0, 0, 20);
    K(c, 0, 0, 0, 20); /* 20 * 20 = 400 */
    for (int j = 0; j < 4; j++) V(c, j, 0, 0, j == 0 ? 1.5 : 0.25);
    for (int m = 0; m < 2; m++) {
        msa_ref_result r = run(c, m ? MSA_REF_FAST : MSA_REF_EXACT);
        CU_ASSERT_EQUAL(r.out[0], 1.5);
        CU_ASSERT_EQUAL(r.lse[0], 50.0);
        msa_ref_result_free(&r);
    }
    kill_case(c);
}

/* Query 0 of a prefill sees only key 0: out = v0 and lse = c * q.k0.  With D = 2 and the
 * default scale 1/sqrt(2): q = (1, 1), k0 = (1, 1), q.k0 = 2, lse = 2/sqrt(2) = sqrt(2),
 * whose correct rounding is sqrt(2.0) (IEEE sqrt is correctly rounded). */
static void test_one_visible_token(void)
{
    int lq = 3, lk = 3;
    msa_case *c = mk(1, &lq, &lk, 2, 1, 2, 2, 2, 1, 0, 0, MSA_DT_BF16);
    for (int d = 0; d < 2; d++) {
        Q(c, 0, 0, d, 1), Q(c, 0, 1, d, 1), K(c, 0, 0, d, 1);
        V(c, 0, 0, d, d ? -0.375 : 7.0), V(c, 1, 0, d, 100), V(c, 2, 0, d, 100);
    }
    for (int m = 0; m < 2; m++) {
        msa_ref_result r = run(c, m ? MSA_REF_FAST : MSA_REF_EXACT);
        for (int h = 0; h < 2; h++) { /* both heads of the group */
            CU_ASSERT_EQUAL(r.out[h * 2 + 0], 7.0);
            CU_ASSERT_EQUAL(r.out[h * 2 + 1], -0.375);
            CU_ASSERT_EQUAL(r.lse[h], sqrt(2.0));
            CU_ASSERT_EQUAL(r.dense_lse[h], sqrt(2.0));
        }
        msa_ref_result_free(&r);
    }
    kill_case(c);
}

/* Two keys with equal scores (q = 0): out = (v0 + v1) / 2.  v0 = 2, v1 = 2^-52 (fp32)
 * gives 1 + 2^-53, exactly the midpoint of 1 and 1 + 2^-52: ties-to-even gives 1.0.
 * v0 = 2, v1 = 3 * 2^-52 gives 1 + 3 * 2^-53, the midpoint of 1 + 2^-52 and 1 + 2^-51:
 * the even one is 1 + 2^-51.  v0 = 1, v1 = -1 gives exactly +0.  The dd path cannot
 * certify midpoints or zero; the MPFR path must collapse its interval. */
static void test_exact_midpoints(void)
{
    int lq = 2, lk = 2;
    msa_case *c = mk(1, &lq, &lk, 1, 1, 3, 2, 2, 1, 0, 0, MSA_DT_FP32);
    V(c, 0, 0, 0, 2), V(c, 1, 0, 0, 0x1p-52);
    V(c, 0, 0, 1, 2), V(c, 1, 0, 1, 3 * 0x1p-52);
    V(c, 0, 0, 2, 1), V(c, 1, 0, 2, -1);
    msa_ref_result r = run(c, MSA_REF_EXACT);
    CU_ASSERT_EQUAL(r.out[3 + 0], 1.0);
    CU_ASSERT_EQUAL(r.out[3 + 1], 1 + 0x1p-51);
    CU_ASSERT_EQUAL(r.out[3 + 2], 0.0);
    CU_ASSERT_FALSE(signbit(r.out[3 + 2]));
    CU_ASSERT_EQUAL(r.lse[1], M_LN2);
    msa_ref_result_free(&r);
    kill_case(c);
}

/* Extreme fp32 scores: q = k0 = (2^60, 0), so token 0 scores 2^120 and
 * token 1 (k1 = 0) scores 0 (D = 2, explicit scale 1): its weight exp(-2^120) is far
 * below any working precision (it even underflows MPFR's default exponent range).  v0 = 0, v1 = -1: out = -exp(-2^120) / (1 + exp(-2^120)), a negative number far
 * below 2^-1075, whose correct rounding is -0.0; lse = 2^120 + log(1 + exp(-2^120))
 * rounds to 2^120.  A second column with v0 = 3, v1 = -1 gives out = 3 - tiny -> 3. */
static void test_extreme_underflow(void)
{
    int lq = 2, lk = 2;
    msa_case *c = mk(1, &lq, &lk, 1, 1, 2, 1, 2, 1, 0, 0, MSA_DT_FP32);
    c->softmax_scale = 1, c->softmax_scale_is_default = 0;
    Q(c, 1, 0, 0, 0x1p60), K(c, 0, 0, 0, 0x1p60);
    V(c, 0, 0, 0, 0), V(c, 1, 0, 0, -1), V(c, 0, 0, 1, 3), V(c, 1, 0, 1, -1);
    msa_ref_result r = run(c, MSA_REF_EXACT);
    CU_ASSERT_TRUE(r.out[2] == 0 && signbit(r.out[2]));
    CU_ASSERT_EQUAL(r.out[3], 3.0);
    CU_ASSERT_EQUAL(r.lse[1], 0x1p120);
    msa_ref_result_free(&r);
    kill_case(c);
}

/* Boundary cases where the other weights are far below any working precision (explicit
 * scale 1, D = 2, fp32; token 2 (k2 = 0) scores 0, far below the top score 2^120):
 *  - lse: q = (2^60, 1), k0 = (2^60, 2^67): M = 2^120 + 2^67, exactly the midpoint of
 *    2^120 and 2^120 + 2^68.  Query 1 sees tokens 0, 1 with k1 = 0: lse = M + log(1 +
 *    e^-M) is strictly above the midpoint, so it rounds up to 2^120 + 2^68 (ties-to-even
 *    would give 2^120).
 *  - out: tokens 0 and 1 both score 2^120 (k0 = k1 = (2^60, 0), q = (2^60, 0)) with
 *    v = 2 and 2^-52: their mean 1 + 2^-53 is the midpoint of 1 and 1 + 2^-52.  Token 2
 *    has v = 5 in column 0 (pulls out above the midpoint: 1 + 2^-52) and -5 in column 1
 *    (below: 1.0).  lse = 2^120 + log(2 + e^-2^120) rounds to 2^120 (ulp 2^68). */
static void test_boundary_directions(void)
{
    int lq = 2, lk = 2, lq3 = 3, lk3 = 3;
    msa_case *c = mk(1, &lq, &lk, 1, 1, 2, 1, 2, 1, 0, 0, MSA_DT_FP32);
    c->softmax_scale = 1, c->softmax_scale_is_default = 0;
    Q(c, 1, 0, 0, 0x1p60), Q(c, 1, 0, 1, 1), K(c, 0, 0, 0, 0x1p60), K(c, 0, 0, 1, 0x1p67);
    msa_ref_result r = run(c, MSA_REF_EXACT);
    CU_ASSERT_EQUAL(r.lse[1], 0x1p120 + 0x1p68);
    msa_ref_result_free(&r);
    kill_case(c);
    c = mk(1, &lq3, &lk3, 1, 1, 2, 1, 4, 1, 0, 0, MSA_DT_FP32);
    c->softmax_scale = 1, c->softmax_scale_is_default = 0;
    Q(c, 2, 0, 0, 0x1p60), K(c, 0, 0, 0, 0x1p60), K(c, 1, 0, 0, 0x1p60);
    V(c, 0, 0, 0, 2), V(c, 1, 0, 0, 0x1p-52), V(c, 2, 0, 0, 5);
    V(c, 0, 0, 1, 2), V(c, 1, 0, 1, 0x1p-52), V(c, 2, 0, 1, -5);
    r = run(c, MSA_REF_EXACT);
    CU_ASSERT_EQUAL(r.out[2 * 2 + 0], 1 + 0x1p-52);
    CU_ASSERT_EQUAL(r.out[2 * 2 + 1], 1.0);
    CU_ASSERT_EQUAL(r.lse[2], 0x1p120);
    msa_ref_result_free(&r);
    kill_case(c);
}

/* Selection.  B = 2, 6 blocks, one query at the end (sees all 12 keys), DI = 2,
 * index q = (1, 0) so a token's score is its first index-key coordinate.
 * Block maxima: b0 = 1, b1 = 5, b2 = 5, b3 = 5, b4 = 2, b5 = 0.5.
 *  - k = 2, init = local = 0: best two are 5, 5, 5 at b1, b2, b3; lower id wins: {1, 2}.
 *  - k = 3, init = 1, local = 1: forced b0 and b5 (the lowest scores), plus the best
 *    remaining one: b1 (tie with b2, b3).  Ascending: {0, 1, 5}.
 *  - k = 8 > nvis = 6: all blocks, then -1 tail.
 * Block scores are index_scale * max with the default scale 1/sqrt(2): b1 = 5/sqrt(2),
 * correctly rounded = RN(sqrt(12.5)) (IEEE sqrt). */
static void test_selection_ties_forcing(void)
{
    int lq = 1, lk = 12;
    const double s[12] = {1, -3, 5, 5, 4, 5, 5, -1, 2, 2, 0.5, -2};
    int32_t want_a[2] = {1, 2}, want_b[3] = {0, 1, 5};
    for (int v = 0; v < 3; v++) {
        int k = v == 0 ? 2 : (v == 1 ? 3 : 8);
        msa_case *c = mk(1, &lq, &lk, 1, 1, 2, 2, 2, k, v == 1, v == 1, MSA_DT_BF16);
        IQ(c, 0, 0, 0, 1);
        for (int j = 0; j < 12; j++) IK(c, j, 0, s[j]), IK(c, j, 1, -7);
        for (int m = 0; m < 2; m++) {
            msa_ref_result r = run(c, m ? MSA_REF_FAST : MSA_REF_EXACT);
            for (int i = 0; i < k; i++) {
                int32_t want = v == 0 ? want_a[i] : v == 1 ? want_b[i] : (i < 6 ? i : -1);
                CU_ASSERT_EQUAL(r.topk[i], want);
            }
            CU_ASSERT_EQUAL(r.nblk, 6);
            if (m == 0) CU_ASSERT_EQUAL(r.block_scores[1], sqrt(12.5));
            msa_ref_result_free(&r);
        }
        kill_case(c);
    }
}

/* Exact ranking beyond double: fp32 index keys, q = (1, 1).  Block 0's token scores
 * 1 + 2^-60 (k = (1, 2^-60)), block 1's 1 (k = (1, 0)), block 2 (local) 0.  In double
 * both dots round to 1.0 and the tie rule would also pick block 0 - so block 1 gets the
 * larger exact score 1 + 2^-59 instead: exact mode must pick block 1 with k = 2,
 * local = 1; rounded doubles would tie and pick block 0. */
static void test_exact_ranking(void)
{
    int lq = 1, lk = 3;
    msa_case *c = mk(1, &lq, &lk, 1, 1, 2, 2, 1, 2, 0, 1, MSA_DT_FP32);
    IQ(c, 0, 0, 0, 1), IQ(c, 0, 0, 1, 1);
    IK(c, 0, 0, 1), IK(c, 0, 1, 0x1p-60);
    IK(c, 1, 0, 1), IK(c, 1, 1, 0x1p-59);
    msa_ref_result r = run(c, MSA_REF_EXACT);
    CU_ASSERT_EQUAL(r.topk[0], 1);
    CU_ASSERT_EQUAL(r.topk[1], 2);
    msa_ref_result_free(&r);
    kill_case(c);
}

/* A block score exactly on a rounding boundary: DI = 9, so the default index scale is the
 * rational 1/3.  q = (1, 1, 0, ...), k0 = (3 * 2^54, 6, 0, ...): the exact max is
 * 3 * 2^54 + 6 and the score (2^54 + 6/3) = 2^54 + 2 is the midpoint of the doubles 2^54
 * and 2^54 + 4 (spacing 4 there); round to nearest, ties to even, gives 2^54.  k1 = -k0
 * gives -2^54.  (The interval loop never settled on such a value: a fuzz case hung.) */
static void test_score_on_midpoint(void)
{
    int lq = 1, lk = 2;
    msa_case *c = mk(1, &lq, &lk, 1, 1, 2, 9, 1, 1, 0, 0, MSA_DT_FP32);
    IQ(c, 0, 0, 0, 1), IQ(c, 0, 0, 1, 1);
    IK(c, 0, 0, 3 * 0x1p54), IK(c, 0, 1, 6);
    IK(c, 1, 0, -3 * 0x1p54), IK(c, 1, 1, -6);
    msa_ref_result r = run(c, MSA_REF_EXACT);
    CU_ASSERT_EQUAL(r.nblk, 2);
    CU_ASSERT_EQUAL(r.block_scores[0], 0x1p54);
    CU_ASSERT_EQUAL(r.block_scores[1], -0x1p54);
    CU_ASSERT_EQUAL(r.topk[0], 0);
    msa_ref_result_free(&r);
    kill_case(c);
}

/* Lq = 5 > Lk = 3 (causal): queries 0 and 1 sit at positions -2 and -1 and see nothing:
 * out = +0, lse = -inf, selection all -1, block scores -inf.  Query 2 sits at 0. */
static void test_empty_rows(void)
{
    int lq = 5, lk = 3;
    msa_case *c = mk(1, &lq, &lk, 2, 1, 4, 4, 2, 2, 0, 1, MSA_DT_BF16);
    fill_random(c, SEED, 1);
    for (int m = 0; m < 2; m++) {
        msa_ref_result r = run(c, m ? MSA_REF_FAST : MSA_REF_EXACT);
        for (int t = 0; t < 2; t++) {
            for (int h = 0; h < 2; h++) {
                CU_ASSERT_TRUE(isinf(r.lse[t * 2 + h]) && r.lse[t * 2 + h] < 0);
                CU_ASSERT_TRUE(isinf(r.dense_lse[t * 2 + h]) && r.dense_lse[t * 2 + h] < 0);
                for (int d = 0; d < 4; d++) {
                    CU_ASSERT_TRUE(r.out[(t * 2 + h) * 4 + d] == 0 && !signbit(r.out[(t * 2 + h) * 4 + d]));
                }
            }
            CU_ASSERT_EQUAL(r.topk[t * 2], -1);
            CU_ASSERT_EQUAL(r.topk[t * 2 + 1], -1);
            CU_ASSERT_TRUE(isinf(r.block_scores[t * r.nblk]));
        }
        CU_ASSERT_EQUAL(r.topk[2 * 2], 0); /* query 2 sees block 0 only */
        CU_ASSERT_EQUAL(r.topk[2 * 2 + 1], -1);
        CU_ASSERT_TRUE(isfinite(r.lse[2 * 2]));
        msa_ref_result_free(&r);
    }
    kill_case(c);
}

/* ------------------------------------------------------------------ structural */

/* Copies query rows [t0, t0 + n) of a one-sequence case into a case with Lq = n over the
 * same keys (chunked prefill / decode of the same sequence). */
static msa_case *tail_queries(const msa_case *c, int t0, int n)
{
    int lk = c->Tk;
    msa_case *d = mk(1, &n, &lk, c->Hq, c->Hkv, c->D, c->DI, c->block_size, c->topk,
                     c->init_blocks, c->local_blocks, c->dtype);
    size_t es = msa_dtype_size(c->dtype);
    memcpy(d->q, (char *)c->q + (size_t)t0 * c->Hq * c->D * es, (size_t)n * c->Hq * c->D * es);
    memcpy(d->index_q, (char *)c->index_q + (size_t)t0 * c->HI * c->DI * es, (size_t)n * c->HI * c->DI * es);
    memcpy(d->k, c->k, (size_t)lk * c->Hkv * c->D * es);
    memcpy(d->v, c->v, (size_t)lk * c->Hkv * c->D * es);
    memcpy(d->index_k, c->index_k, (size_t)lk * c->DI * es);
    return d;
}

/* Bottom-right alignment: prefill rows 30..36 of a 37-token prefill must equal a chunk
 * of Lq = 7 over Lk = 37 bit for bit, and row 36 a decode step (Lq = 1). */
static void test_chunked_and_decode(void)
{
    int l = 37;
    printf("\n  reference chunked/decode seed %u\n", SEED + 1);
    msa_case *c = mk(1, &l, &l, 4, 2, 8, 8, 4, 3, 1, 1, MSA_DT_BF16);
    fill_random(c, SEED + 1, 1);
    for (int m = 0; m < 2; m++) {
        msa_ref_result full = run(c, m ? MSA_REF_FAST : MSA_REF_EXACT);
        for (int v = 0; v < 2; v++) {
            int n = v ? 1 : 7, t0 = l - n;
            msa_case *d = tail_queries(c, t0, n);
            msa_ref_result r = run(d, m ? MSA_REF_FAST : MSA_REF_EXACT);
            CU_ASSERT_TRUE(bits_equal(r.out, full.out + (size_t)t0 * 4 * 8, (size_t)n * 4 * 8));
            CU_ASSERT_TRUE(bits_equal(r.lse, full.lse + (size_t)t0 * 4, (size_t)n * 4));
            CU_ASSERT_TRUE(bits_equal(r.dense_out, full.dense_out + (size_t)t0 * 4 * 8, (size_t)n * 4 * 8));
            for (int g = 0; g < 2; g++)
                CU_ASSERT_EQUAL(memcmp(r.topk + (size_t)g * n * 3, full.topk + ((size_t)g * l + t0) * 3,
                                       (size_t)n * 3 * sizeof(int32_t)), 0);
            msa_ref_result_free(&r);
            kill_case(d);
        }
        msa_ref_result_free(&full);
    }
    kill_case(c);
}

/* A paged copy (pages shuffled, one unused page) gives bit-identical results. */
static void test_paged_equals_packed(void)
{
    int lq[2] = {5, 9}, lk[2] = {13, 9}, B = 4;
    printf("\n  reference paged seed %u\n", SEED + 2);
    msa_case *c = mk(2, lq, lk, 2, 2, 8, 8, B, 2, 0, 1, MSA_DT_FP16);
    fill_random(c, SEED + 2, 1);
    msa_case *p = mk(2, lq, lk, 2, 2, 8, 8, B, 2, 0, 1, MSA_DT_FP16);
    memcpy(p->q, c->q, (size_t)c->Tq * 2 * 8 * 2), memcpy(p->index_q, c->index_q, (size_t)c->Tq * 2 * 8 * 2);
    int npages = 4 + 3 + 1, perm[8] = {5, 2, 7, 0, 3, 6, 1, 4}; /* page 4 unused */
    p->num_pages = npages, p->Tk = npages * B, p->max_blocks = 4;
    free(p->k), free(p->v), free(p->index_k);
    p->k = calloc((size_t)p->Tk * 2 * 8, 2), p->v = calloc((size_t)p->Tk * 2 * 8, 2);
    p->index_k = calloc((size_t)p->Tk * 8, 2);
    p->page_table = calloc(2 * 4, sizeof(int32_t));
    int next = 0;
    for (int b = 0; b < 2; b++)
        for (int blk = 0; blk < (lk[b] + B - 1) / B; blk++) {
            int page = perm[next++];
            p->page_table[b * 4 + blk] = page;
            for (int o = 0; o < B && blk * B + o < lk[b]; o++) {
                size_t src = (size_t)c->cu_k[b] + blk * B + o, dst = (size_t)page * B + o;
                memcpy((char *)p->k + dst * 32, (char *)c->k + src * 32, 32);
                memcpy((char *)p->v + dst * 32, (char *)c->v + src * 32, 32);
                memcpy((char *)p->index_k + dst * 16, (char *)c->index_k + src * 16, 16);
            }
        }
    for (int m = 0; m < 2; m++) {
        msa_ref_result a = run(c, m ? MSA_REF_FAST : MSA_REF_EXACT), b = run(p, m ? MSA_REF_FAST : MSA_REF_EXACT);
        size_t no = (size_t)c->Tq * 2 * 8, nl = (size_t)c->Tq * 2;
        CU_ASSERT_TRUE(bits_equal(a.out, b.out, no) && bits_equal(a.lse, b.lse, nl));
        CU_ASSERT_TRUE(bits_equal(a.dense_out, b.dense_out, no) && bits_equal(a.dense_lse, b.dense_lse, nl));
        CU_ASSERT_EQUAL(memcmp(a.topk, b.topk, (size_t)2 * c->Tq * 2 * sizeof(int32_t)), 0);
        msa_ref_result_free(&a), msa_ref_result_free(&b);
    }
    kill_case(p);
    kill_case(c);
}

/* Random small shapes: the case index picks everything from the seed. */
static msa_case *random_case(uint64_t seed, int i)
{
    msa_rng r;
    msa_rng_init(&r, seed, 1000 + (uint64_t)i);
    int batch = (int)msa_rng_next_range(&r, 1, 2), lq[2], lk[2];
    for (int b = 0; b < batch; b++) {
        lk[b] = (int)msa_rng_next_range(&r, 0, 40);
        lq[b] = (int)msa_rng_next_range(&r, 0, lk[b] + 2);
    }
    int Hkv = (int)msa_rng_next_range(&r, 1, 2), grp = (int)msa_rng_next_range(&r, 1, 3);
    const int Ds[3] = {2, 8, 16}, Bs[3] = {2, 4, 8};
    const msa_dtype dts[4] = {MSA_DT_BF16, MSA_DT_FP16, MSA_DT_FP32, MSA_DT_E4M3};
    int k = (int)msa_rng_next_range(&r, 1, 4), init = (int)msa_rng_next_range(&r, 0, 1);
    int local = (int)msa_rng_next_range(&r, 0, k - init);
    msa_case *c = mk(batch, lq, lk, Hkv * grp, Hkv, Ds[msa_rng_next_range(&r, 0, 2)],
                     (int)msa_rng_next_range(&r, 1, 8), Bs[msa_rng_next_range(&r, 0, 2)], k, init,
                     local, dts[msa_rng_next_range(&r, 0, 3)]);
    if (msa_rng_next_range(&r, 0, 3) == 0) c->softmax_scale = 0.3, c->softmax_scale_is_default = 0;
    fill_random(c, seed + (uint64_t)i, msa_rng_next_range(&r, 0, 1) ? 1 : 4);
    return c;
}

/* When every visible block fits in k, MSA equals dense causal GQA bit for bit. */
static void test_nvis_le_k_is_dense(void)
{
    printf("\n  reference nvis<=k seed %u\n", SEED + 3);
    for (int i = 0; i < 40; i++) {
        msa_case *c = random_case(SEED + 3, i);
        c->topk = c->max_blocks > 0 ? c->max_blocks : 1;
        c->init_blocks = 0, c->local_blocks = c->topk > 1;
        for (int m = 0; m < 2; m++) {
            msa_ref_result r = run(c, m ? MSA_REF_FAST : MSA_REF_EXACT);
            CU_ASSERT_TRUE(bits_equal(r.out, r.dense_out, (size_t)c->Tq * c->Hq * c->D));
            CU_ASSERT_TRUE(bits_equal(r.lse, r.dense_lse, (size_t)c->Tq * c->Hq));
            msa_ref_result_free(&r);
        }
        kill_case(c);
    }
}

/* The reference computes its own geometry; it must agree with the case module's
 * msa_case_qinfo: every row selects min(nvis, k) blocks, all below nvis, and block
 * scores are finite exactly below nvis. */
static void test_geometry_matches_case(void)
{
    printf("\n  reference geometry seed %u\n", SEED + 7);
    for (int i = 0; i < 40; i++) {
        msa_case *c = random_case(SEED + 7, i);
        c->causal = i % 5 != 0;
        msa_ref_result r = run(c, MSA_REF_FAST);
        CU_ASSERT_EQUAL(r.nblk, msa_case_max_blocks(c));
        for (int g = 0; g < c->HI; g++)
            for (int t = 0; t < c->Tq; t++) {
                msa_qinfo qi = msa_case_qinfo(c, t);
                const int32_t *sel = r.topk + ((size_t)g * c->Tq + t) * c->topk;
                int valid = 0;
                for (int j = 0; j < c->topk; j++) valid += sel[j] >= 0 && sel[j] < qi.nvis;
                CU_ASSERT_EQUAL(valid, qi.nvis < c->topk ? qi.nvis : c->topk);
                for (int b = 0; b < r.nblk; b++)
                    CU_ASSERT_EQUAL(isfinite(r.block_scores[((size_t)g * c->Tq + t) * r.nblk + b]), b < qi.nvis);
            }
        msa_ref_result_free(&r);
        kill_case(c);
    }
}

/* ------------------------------------------------------------------ engines */

/* The certified dd path and the pure MPFR path are two routes to the same correctly
 * rounded numbers: they must agree bit for bit. */
static void test_dd_path_equals_mpfr_path(void)
{
    printf("\n  reference dd-vs-mpfr seed %u\n", SEED + 4);
    long dd0 = msa_ref_debug_rows(0);
    for (int i = 0; i < 60; i++) {
        msa_case *c = random_case(SEED + 4, i);
        msa_ref_result a = run(c, MSA_REF_EXACT);
        msa_ref_debug_force_mpfr = 1;
        msa_ref_result b = run(c, MSA_REF_EXACT);
        msa_ref_debug_force_mpfr = 0;
        size_t no = (size_t)c->Tq * c->Hq * c->D, nl = (size_t)c->Tq * c->Hq;
        CU_ASSERT_TRUE(bits_equal(a.out, b.out, no) && bits_equal(a.lse, b.lse, nl));
        CU_ASSERT_TRUE(bits_equal(a.dense_out, b.dense_out, no) && bits_equal(a.dense_lse, b.dense_lse, nl));
        if (!bits_equal(a.out, b.out, no)) printf("  mismatch in random case %d\n", i);
        msa_ref_result_free(&a), msa_ref_result_free(&b);
        kill_case(c);
    }
    /* the comparison means something only if the dd path certified rows */
    printf("  rows certified by the dd path: %ld\n", msa_ref_debug_rows(0) - dd0);
    CU_ASSERT_TRUE(msa_ref_debug_rows(0) - dd0 > 1000);
}

/* The dd exp against MPFR at 256 bits: relative error below MSA_REF_EXP_ERR = 2^-90. */
static void test_dd_exp(void)
{
    msa_ref_consts_init();
    mpfr_t x, y, t;
    mpfr_inits2(256, x, y, t, (mpfr_ptr)0);
    double worst = 0;
    printf("\n  reference dd-exp seed %u\n", SEED + 5);
    for (int i = 0; i < 20000; i++) {
        double a = -600 * msa_rng_uniform(SEED + 5, 0, (uint64_t)i);
        double b = ldexp(msa_rng_uniform(SEED + 5, 1, (uint64_t)i) - 0.5, -53) * fabs(a);
        msa_dd xd = dd_two_sum(a, b);
        if (i < 3) xd.hi = i == 0 ? 0 : -i * M_LN2, xd.lo = 0; /* k = 0 and exact k ln2 */
        msa_dd e = msa_ref_dd_exp(xd);
        mpfr_set_d(x, xd.hi, MPFR_RNDN), mpfr_add_d(x, x, xd.lo, MPFR_RNDN);
        mpfr_exp(y, x, MPFR_RNDN);
        mpfr_set_d(t, e.hi, MPFR_RNDN), mpfr_add_d(t, t, e.lo, MPFR_RNDN);
        mpfr_sub(t, t, y, MPFR_RNDN), mpfr_div(t, t, y, MPFR_RNDN);
        double rel = fabs(mpfr_get_d(t, MPFR_RNDU));
        if (rel > worst) worst = rel;
    }
    printf("  dd exp: max relative error 2^%.2f (bound 2^-90)\n", log2(worst));
    CU_ASSERT_TRUE(worst < MSA_REF_EXP_ERR);
    mpfr_clears(x, y, t, (mpfr_ptr)0);
    mpfr_free_cache();
}

/* Fast vs exact on a few hundred random small cases.  Bound (docs/NUMERICS.md (section 11),
 * "fast mode"): with u = 2^-53, S = c * max_j sum_d |q_d k_jd| (an upper bound on every
 * |scaled score|) and Vmax = max |v|:
 *   |out_fast - out_exact| <= u (28 S + 24) Vmax,   |lse_fast - lse_exact| <= u (20 S + 8 + 2|lse|). */
static void test_fast_vs_exact(void)
{
    const int n = 300;
    double worst_out = 0, worst_lse = 0, worst_abs = 0;
    printf("\n  reference fast-vs-exact seed %u (%d cases)\n", SEED + 6, n);
    for (int i = 0; i < n; i++) {
        msa_case *c = random_case(SEED + 6, i);
        msa_ref_result a = run(c, MSA_REF_EXACT), b = run(c, MSA_REF_FAST);
        double S = 0, vmax = 0, cs = c->softmax_scale, u = 0x1p-53;
        for (int t = 0; t < c->Tq; t++)
            for (int h = 0; h < c->Hq; h++)
                for (int j = 0; j < c->Tk; j++) {
                    double s = 0;
                    for (int d = 0; d < c->D; d++)
                        s += fabs(msa_dtype_load(c->dtype, c->q, ((size_t)t * c->Hq + h) * c->D + d) *
                                  msa_dtype_load(c->dtype, c->k, ((size_t)j * c->Hkv + h / (c->Hq / c->Hkv)) * c->D + d));
                    S = fmax(S, cs * s * 1.01);
                }
        for (size_t j = 0; j < (size_t)c->Tk * c->Hkv * c->D; j++) vmax = fmax(vmax, fabs(msa_dtype_load(c->dtype, c->v, j)));
        for (size_t j = 0; j < (size_t)c->Tq * c->Hq * c->D; j++) {
            double err = fabs(a.out[j] - b.out[j]), bound = u * (28 * S + 24) * vmax;
            worst_abs = fmax(worst_abs, err);
            if (bound > 0) worst_out = fmax(worst_out, err / bound);
            CU_ASSERT_TRUE(err <= bound);
        }
        for (size_t j = 0; j < (size_t)c->Tq * c->Hq; j++) {
            if (isinf(a.lse[j])) {
                CU_ASSERT_EQUAL(a.lse[j], b.lse[j]);
                continue;
            }
            double err = fabs(a.lse[j] - b.lse[j]), bound = u * (20 * S + 8 + 2 * fabs(a.lse[j]));
            worst_lse = fmax(worst_lse, err / bound);
            CU_ASSERT_TRUE(err <= bound);
        }
        msa_ref_result_free(&a), msa_ref_result_free(&b);
        kill_case(c);
    }
    printf("  fast vs exact: max out error %.3g (%.3f of bound), max lse error %.3f of bound\n",
           worst_abs, worst_out, worst_lse);
}

/* Bad input: a non-finite value gives MSA_EINPUT with a message, never a crash;
 * fp64 inputs are refused by exact mode (their products are not exact). */
static void test_bad_input(void)
{
    int lq = 2, lk = 2;
    msa_case *c = mk(1, &lq, &lk, 1, 1, 2, 2, 2, 1, 0, 0, MSA_DT_FP32);
    ((float *)c->v)[1] = NAN;
    msa_ref_result r;
    msa_err e = {{0}};
    CU_ASSERT_EQUAL(msa_ref_run(c, MSA_REF_EXACT, &r, &e), MSA_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "v"));
    ((float *)c->v)[1] = 0;
    c->cu_k[1] = 5; /* more keys than rows */
    CU_ASSERT_EQUAL(msa_ref_run(c, MSA_REF_FAST, &r, &e), MSA_EINPUT);
    c->cu_k[1] = 2;
    c->dtype = MSA_DT_FP64;
    CU_ASSERT_EQUAL(msa_ref_run(c, MSA_REF_EXACT, &r, &e), MSA_EUNSUPPORTED);
    c->dtype = MSA_DT_FP32;
    kill_case(c);
}

int msa_suite_reference(void)
{
    CU_pSuite s = CU_add_suite("reference", NULL, NULL);
    if (!s) return 1;
    msa_ref_set_threads(2);
    if (!CU_add_test(s, "all equal keys -> mean of v", test_all_equal_keys) ||
        !CU_add_test(s, "one dominant key", test_one_dominant_key) ||
        !CU_add_test(s, "query sees one token", test_one_visible_token) ||
        !CU_add_test(s, "exact midpoints and zero", test_exact_midpoints) ||
        !CU_add_test(s, "extreme scores: underflow to a signed zero", test_extreme_underflow) ||
        !CU_add_test(s, "extreme scores: direction at a midpoint", test_boundary_directions) ||
        !CU_add_test(s, "selection ties and init/local forcing", test_selection_ties_forcing) ||
        !CU_add_test(s, "exact ranking beyond double", test_exact_ranking) ||
        !CU_add_test(s, "block score on a rounding boundary (rational scale)", test_score_on_midpoint) ||
        !CU_add_test(s, "empty rows", test_empty_rows) ||
        !CU_add_test(s, "chunked prefill and decode alignment", test_chunked_and_decode) ||
        !CU_add_test(s, "paged equals packed", test_paged_equals_packed) ||
        !CU_add_test(s, "nvis <= k equals dense", test_nvis_le_k_is_dense) ||
        !CU_add_test(s, "geometry agrees with msa_case_qinfo", test_geometry_matches_case) ||
        !CU_add_test(s, "dd path equals MPFR path", test_dd_path_equals_mpfr_path) ||
        !CU_add_test(s, "dd exp error bound", test_dd_exp) ||
        !CU_add_test(s, "fast vs exact bound", test_fast_vs_exact) ||
        !CU_add_test(s, "bad input", test_bad_input))
        return 1;
    return 0;
}
