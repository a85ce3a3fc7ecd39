/* case_gen.c - deterministic random MSA cases from a seed (msa_case_generate).
 *
 * Every element is a pure function of (seed, tensor stream, flat index) through the
 * counter-based RNG, rounded once (RNE) to the storage dtype, so the same parameters give
 * the same bytes on every machine.  Paged layouts scatter each sequence's blocks over a
 * shuffled pool of pages (optionally with unused pages between them); unused pages and
 * the tails of partial blocks hold random data too, so a kernel that reads them gets
 * plausible but wrong numbers.  It does not choose shapes: callers (tests, the fuzzer)
 * pass them in. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "case.h"
#include "case_priv.h"
#include "numfmt.h"
#include "rng.h"

/* RNG streams, one per tensor (any distinct constants do). */
enum { ST_Q = 1, ST_K, ST_V, ST_IQ, ST_IK, ST_PAGES, ST_CHI = 0x100 };
#define HEAVY_DOF 3       /* Student-t degrees of freedom: finite mean, infinite variance-ish tails */
#define FP16_MAX 65504.0  /* largest finite binary16 */
#define BF16_MAX 3.3895313892515355e38 /* largest finite bfloat16, (2 - 2^-7) * 2^127 */
#define SMALLINT_MAX 4

static double draw(msa_dist d, uint64_t seed, uint64_t stream, uint64_t i)
{
    switch (d) {
    case MSA_DIST_UNIFORM: return 2.0 * msa_rng_uniform(seed, stream, i) - 1.0;
    case MSA_DIST_SMALLINT: return (double)msa_rng_range(seed, stream, i, -SMALLINT_MAX, SMALLINT_MAX);
    case MSA_DIST_CONST: return 1.0;
    case MSA_DIST_HEAVY: {
        double chi = 0;
        for (int k = 0; k < HEAVY_DOF; k++) {
            double z = msa_rng_normal(seed, stream + ST_CHI, (uint64_t)HEAVY_DOF * i + (uint64_t)k);
            chi += z * z;
        }
        return msa_rng_normal(seed, stream, i) / sqrt(chi / HEAVY_DOF + 1e-300);
    }
    default: return msa_rng_normal(seed, stream, i);
    }
}

static double clampd(double x, double m) { return x > m ? m : x < -m ? -m : x; }

/* Stores x rounded to nearest-even in dtype t at element i. */
static void store(msa_dtype t, void *base, size_t i, double x)
{
    unsigned char *p = base;
    if (t == MSA_DT_BF16) {
        uint16_t h = msa_double_to_bf16(clampd(x, BF16_MAX));
        memcpy(p + 2 * i, &h, 2);
    } else if (t == MSA_DT_FP16) {
        uint16_t h = msa_double_to_fp16(clampd(x, FP16_MAX));
        memcpy(p + 2 * i, &h, 2);
    } else if (t == MSA_DT_E4M3) {
        p[i] = msa_double_to_e4m3(x, 1);
    } else {
        float f = (float)clampd(x, 3.4028234663852886e38); /* FLT_MAX: stay finite */
        memcpy(p + 4 * i, &f, 4);
    }
}

static void *fill(msa_dtype t, size_t n, msa_dist d, double scale, uint64_t seed, uint64_t stream)
{
    void *p = malloc(n * msa_dtype_size(t) + 1);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) store(t, p, i, scale * draw(d, seed, stream, i));
    return p;
}

static const char *dist_name(msa_dist d)
{
    static const char *n[] = {"normal", "uniform", "smallint", "heavy", "const"};
    return (unsigned)d < 5 ? n[d] : "?";
}

/* Scatters each sequence's blocks over a shuffled pool; mode 2 adds unused pages. */
static int make_pages(const msa_case_params *p, msa_case *c)
{
    int B = c->block_size;
    int64_t used = 0;
    int maxb = 0;
    for (int b = 0; b < p->batch; b++) {
        int nb = (int)(((int64_t)p->lk[b] + B - 1) / B);
        used += nb;
        if (nb > maxb) maxb = nb;
    }
    int64_t pages = used + (p->paged == 2 ? used / 2 + 1 : 0);
    if (pages * B > INT_MAX) return -1;
    int32_t *perm = malloc((size_t)pages * sizeof *perm + 1);
    c->page_table = malloc((size_t)p->batch * (size_t)maxb * sizeof(int32_t) + 1);
    if (!perm || !c->page_table) { free(perm); return -1; }
    for (int64_t i = 0; i < pages; i++) perm[i] = (int32_t)i;
    for (int64_t i = pages - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = msa_rng_range(p->seed, ST_PAGES, (uint64_t)i, 0, i);
        int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    int64_t next = 0;
    for (int b = 0; b < p->batch; b++) {
        int nb = (int)(((int64_t)p->lk[b] + B - 1) / B);
        for (int j = 0; j < maxb; j++)
            c->page_table[(size_t)b * (size_t)maxb + (size_t)j] = j < nb ? perm[next++] : -1;
    }
    free(perm);
    c->max_blocks = maxb;
    c->num_pages = (int)pages;
    c->Tk = (int)(pages * B);
    return 0;
}

static int set_shapes(const msa_case_params *p, msa_case *c, msa_err *e)
{
    if (p->batch < 1 || p->batch == INT_MAX || !p->lq || !p->lk)
        return msa_fail(e, MSA_EINPUT, "generator: batch: needs batch >= 1 and lengths");
    c->cu_q = malloc(((size_t)p->batch + 1) * sizeof(int32_t));
    c->cu_k = malloc(((size_t)p->batch + 1) * sizeof(int32_t));
    if (!c->cu_q || !c->cu_k) return msa_fail(e, MSA_ENOMEM, "generator: out of memory");
    int64_t sq = 0, sk = 0;
    c->cu_q[0] = c->cu_k[0] = 0;
    for (int b = 0; b < p->batch; b++) {
        if (p->lq[b] < 0 || p->lk[b] < 0) return msa_fail(e, MSA_EINPUT, "generator: lengths: negative length");
        sq += p->lq[b];
        sk += p->lk[b];
        if (sq > INT_MAX || sk > INT_MAX) return msa_fail(e, MSA_EINPUT, "generator: lengths: total too large");
        c->cu_q[b + 1] = (int32_t)sq;
        c->cu_k[b + 1] = (int32_t)sk;
    }
    c->batch = p->batch;
    c->Tq = (int)sq;
    c->Tk = (int)sk;
    c->Hq = p->Hq; c->Hkv = p->Hkv; c->HI = p->Hkv; c->D = p->D; c->DI = p->DI;
    c->block_size = p->block_size; c->topk = p->topk;
    c->init_blocks = p->init_blocks; c->local_blocks = p->local_blocks;
    c->dtype = p->dtype;
    c->index_dtype = p->index_dtype ? p->index_dtype : p->dtype;
    c->causal = p->causal;
    if (c->block_size < 1) return msa_fail(e, MSA_EINPUT, "generator: block_size: %d, must be >= 1", c->block_size);
    if (p->paged && make_pages(p, c) != 0) return msa_fail(e, MSA_ENOMEM, "generator: page_table: too large");
    return MSA_OK;
}

static int fill_tensors(const msa_case_params *p, msa_case *c, msa_err *e)
{
    size_t nq, nkv, niq, nik, t;
    if (c->Hq < 1 || c->Hkv < 1 || c->D < 1 || c->DI < 1 || msa_dtype_size(c->dtype) == 0 ||
        msa_dtype_size(c->index_dtype) == 0)
        return MSA_OK; /* msa_case_validate names the bad field */
    if (msa_mul_size((size_t)c->Tq * (size_t)c->Hq, (size_t)c->D, &nq) ||
        msa_mul_size((size_t)c->Tk * (size_t)c->Hkv, (size_t)c->D, &nkv) ||
        msa_mul_size((size_t)c->Tq * (size_t)c->HI, (size_t)c->DI, &niq) ||
        msa_mul_size((size_t)c->Tk, (size_t)c->DI, &nik) || msa_mul_size(nkv, 8, &t) ||
        msa_mul_size(nq, 8, &t) || msa_mul_size(niq, 8, &t) || msa_mul_size(nik, 8, &t))
        return msa_fail(e, MSA_EINPUT, "generator: shapes: sizes overflow");
    double qs = p->q_scale != 0 ? p->q_scale : 1.0;
    c->q = fill(c->dtype, nq, p->dist, qs, p->seed, ST_Q);
    c->k = fill(c->dtype, nkv, p->dist, 1.0, p->seed, ST_K);
    c->v = fill(c->dtype, nkv, p->dist, 1.0, p->seed, ST_V);
    c->index_q = fill(c->index_dtype, niq, p->index_dist, 1.0, p->seed, ST_IQ);
    c->index_k = fill(c->index_dtype, nik, p->index_dist, 1.0, p->seed, ST_IK);
    if (!c->q || !c->k || !c->v || !c->index_q || !c->index_k)
        return msa_fail(e, MSA_ENOMEM, "generator: out of memory");
    return MSA_OK;
}

int msa_case_generate(const msa_case_params *p, msa_case *c, msa_err *e)
{
    memset(c, 0, sizeof *c);
    int rc = set_shapes(p, c, e);
    if (!rc) rc = fill_tensors(p, c, e);
    if (!rc) {
        c->softmax_scale_is_default = c->index_scale_is_default = 1;
        c->softmax_scale = c->D > 0 ? msa_case_rsqrt_nearest(c->D) : 1; /* bad D: named by validate */
        c->index_scale = c->DI > 0 ? msa_case_rsqrt_nearest(c->DI) : 1;
        char d[200];
        msa_case_describe(c, d, sizeof d);
        snprintf(c->label, sizeof c->label, "gen seed=%llu %s%s%s: %s", (unsigned long long)p->seed,
                 dist_name(p->dist), p->index_dist != p->dist ? "/" : "",
                 p->index_dist != p->dist ? dist_name(p->index_dist) : "", d);
        rc = msa_case_validate(c, 0, e);
    }
    if (rc) msa_case_free(c);
    return rc;
}
