/* gen_probe.c - block patterns of the index branch and probe inputs of the main branch.
 *
 * Index patterns shape the block scores: random, few discrete levels (exact ties), all
 * equal (total ties), distinct per-block levels, sub-quantum jitter around one level
 * (differences far below an fp16 key's quantum, above fp32's), values near the +-1e20 /
 * +-1e29 sentinels some kernels use for forced or invalid blocks, and per-group levels.
 * Probes put one dominant key (a logit about PROBE_LOGIT above the rest, a distinctive
 * value vector) exactly where one masking or selection decision decides whether it
 * counts: on the diagonal, just past it, on a block's first or last token, in the blocks
 * just above and below the k-th score, in a block only one group selects.  The ranking
 * here only places probes; it judges nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rng.h"
#include "gen_int.h"

/* A dominant key's logit margin: exp(-10) ~ 4.5e-5 of the mass stays elsewhere, so the
 * probe decides the output to about 1e-4 while the other keys still matter. */
#define PROBE_LOGIT 10.0
#define PROBE_V_HI 2.0
#define PROBE_V_LO (-2.0)
/* Levels: distinct multiples of LEVEL_STEP (exact in bf16 up to 256 levels); a block's
 * other tokens sit LEVEL_STEP/4 .. 3*LEVEL_STEP/4 below its peak. */
#define LEVEL_STEP 0.25
/* Jitter: scores 1 + m * 2^-14, m in [-8, 8]: below fp16's 2^-11 relative quantum. */
#define JITTER_Q 0x1p-6
#define JITTER_K 0x1p-8

static void put_iq(msa_case *c, int t, int g, int d, double x)
{
    fz_put(c->index_dtype, c->index_q, ((size_t)t * c->HI + g) * c->DI + d, x);
}
static void put_ik(msa_case *c, int64_t row, int d, double x)
{
    fz_put(c->index_dtype, c->index_k, (size_t)row * c->DI + d, x);
}
static double get_ik(const msa_case *c, int64_t row, int d)
{
    return msa_dtype_load(c->index_dtype, c->index_k, (size_t)row * c->DI + d);
}

/* iq[t,g] = e_dim(g) (one-hot), so the index score is c_I * ik[row, dim(g)]. */
static void one_hot_queries(msa_case *c, int per_group, double second)
{
    for (int t = 0; t < c->Tq; t++)
        for (int g = 0; g < c->HI; g++)
            for (int d = 0; d < c->DI; d++) {
                int hot = per_group ? g % c->DI : 0;
                put_iq(c, t, g, d, d == hot ? 1.0 : (d == 1 && !per_group ? second : 0.0));
            }
}

/* Per-block levels in ik[:, dim]: a random permutation of 1..nb per sequence. */
static void levels(msa_case *c, msa_rng *r, int dim)
{
    int B = c->block_size;
    for (int b = 0; b < c->batch; b++) {
        int lk = msa_case_lk(c, b), nb = (lk + B - 1) / B;
        int *perm = malloc(sizeof(int) * (nb > 0 ? nb : 1));
        if (!perm) return;
        for (int i = 0; i < nb; i++) perm[i] = i + 1;
        for (int i = nb - 1; i > 0; i--) {
            int j = (int)msa_rng_next_range(r, 0, i), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        for (int blk = 0; blk < nb; blk++) {
            int n = lk - blk * B < B ? lk - blk * B : B;
            int peak = (int)msa_rng_next_range(r, 0, n - 1);
            for (int o = 0; o < n; o++) {
                double x = perm[blk] * LEVEL_STEP;
                if (o != peak) x -= LEVEL_STEP * (1 + msa_rng_next_range(r, 0, 2)) / 4.0;
                put_ik(c, fz_kv_row(c, b, blk * B + o), dim, x);
            }
        }
        free(perm);
    }
}

static void jitter(msa_case *c, msa_rng *r)
{
    one_hot_queries(c, 0, JITTER_Q);
    for (int b = 0; b < c->batch; b++)
        for (int j = 0; j < msa_case_lk(c, b); j++) {
            int64_t row = fz_kv_row(c, b, j);
            put_ik(c, row, 0, 1.0);
            put_ik(c, row, 1, (double)msa_rng_next_range(r, -8, 8) * JITTER_K);
        }
}

static void sentinel(msa_case *c, msa_rng *r)
{
    static const double marks[] = {1e20, -1e20, 1e29, -1e29};
    int B = c->block_size;
    one_hot_queries(c, 0, 0.0);
    for (int b = 0; b < c->batch; b++)
        for (int j = 0; j < msa_case_lk(c, b); j++) {
            uint64_t u = msa_rng_next(r);
            /* one mark per block, sometimes an ordinary score */
            double peak = (u & 7) < 5 ? marks[(j / B) % 4] : msa_rng_next_normal(r);
            double x = peak * (1.0 + (double)((u >> 8) % 64) * 0x1p-7);
            put_ik(c, fz_kv_row(c, b, j), 0, x / c->index_scale);
        }
}

void fz_fill_index(const fz_spec *s, uint64_t seed, uint64_t stream, msa_case *c)
{
    size_t nq = (size_t)c->Tq * c->HI * c->DI, nk = (size_t)c->Tk * c->DI;
    int few = s->index == FZ_I_FEWLEVEL, eq = s->index == FZ_I_EQUAL;
    for (size_t i = 0; i < nq; i++)
        fz_put(c->index_dtype, c->index_q, i, eq ? 1.0 : few ? (double)msa_rng_range(seed, stream, i, -1, 1)
                                                        : fz_normal(seed, stream, i));
    for (size_t i = 0; i < nk; i++)
        fz_put(c->index_dtype, c->index_k, i, eq ? 1.0 : few ? (double)msa_rng_range(seed, stream ^ 1, i, -1, 1)
                                                        : fz_normal(seed, stream ^ 1, i));
    msa_rng r;
    msa_rng_init(&r, seed, stream ^ 2);
    switch (s->index) {
    case FZ_I_LEVELS: one_hot_queries(c, 0, 0.0); levels(c, &r, 0); break;
    case FZ_I_JITTER: jitter(c, &r); break;
    case FZ_I_SENTINEL: sentinel(c, &r); break;
    case FZ_I_GROUPS:
        one_hot_queries(c, 1, 0.0);
        for (int g = 0; g < c->HI && g < c->DI; g++) levels(c, &r, g);
        break;
    default: break;
    }
}

/* ---- probes ---- */

typedef struct {
    int b, lq, lk, q0;
    double hot;
} probe_ctx;

/* Queries of sequence b all point along dim 0 with magnitude hot; its keys get 0 there,
 * so only keys made hot stand out. */
static void hot_axis(msa_case *c, probe_ctx *p)
{
    p->hot = sqrt(PROBE_LOGIT / c->softmax_scale);
    for (int i = 0; i < p->lq; i++)
        for (int h = 0; h < c->Hq; h++)
            fz_put(c->dtype, c->q, ((size_t)(p->q0 + i) * c->Hq + h) * c->D, p->hot);
    for (int j = 0; j < p->lk; j++)
        for (int g = 0; g < c->Hkv; g++)
            fz_put(c->dtype, c->k, ((size_t)fz_kv_row(c, p->b, j) * c->Hkv + g) * c->D, 0.0);
}

static void hot_key(msa_case *c, const probe_ctx *p, int j, double vval)
{
    if (j < 0 || j >= p->lk) return;
    int64_t row = fz_kv_row(c, p->b, j);
    for (int g = 0; g < c->Hkv; g++) {
        fz_put(c->dtype, c->k, ((size_t)row * c->Hkv + g) * c->D, p->hot);
        for (int d = 0; d < c->D; d++) fz_put(c->dtype, c->v, ((size_t)row * c->Hkv + g) * c->D + d, vval);
    }
}

/* Block scores of the last query of the probe sequence for index head g (iq one-hot on
 * dim(g)), and the canonical selection flags (MSA.md 4.3, ties to the lower id). */
static int last_query_selection(const msa_case *c, const probe_ctx *p, int dim, char *sel)
{
    int B = c->block_size, nkeys = p->lk; /* the last query sits at pos = lk - 1 */
    int nvis = (nkeys + B - 1) / B, k = c->topk;
    double *s = malloc(sizeof(double) * (nvis > 0 ? nvis : 1));
    if (!s) return 0;
    for (int blk = 0; blk < nvis; blk++) {
        s[blk] = -INFINITY;
        for (int j = blk * B; j < nkeys && j < (blk + 1) * B; j++) {
            double x = get_ik(c, fz_kv_row(c, p->b, j), dim);
            if (x > s[blk]) s[blk] = x;
        }
    }
    if (nvis > 0) memset(sel, 0, (size_t)nvis);
    int forced = 0;
    for (int blk = 0; blk < nvis; blk++)
        if (nvis <= k || blk < c->init_blocks || blk >= nvis - c->local_blocks) sel[blk] = 1, forced++;
    for (int n = forced; n < k && nvis > k; n++) {
        int best = -1;
        for (int blk = 0; blk < nvis; blk++)
            if (!sel[blk] && (best < 0 || s[blk] > s[best])) best = blk;
        if (best >= 0) sel[best] = 2; /* 2: chosen by score */
    }
    free(s);
    return nvis;
}

/* Just above / below the k-th: the lowest block chosen by score and the best one not. */
static void probe_kth(msa_case *c, probe_ctx *p)
{
    char *sel = malloc((size_t)p->lk + 1);
    if (!sel) return;
    int nvis = last_query_selection(c, p, 0, sel), B = c->block_size;
    int above = -1, below = -1;
    double sa = INFINITY, sb = -INFINITY;
    for (int blk = 0; blk < nvis; blk++) {
        double x = -INFINITY;
        for (int j = blk * B; j < p->lk && j < (blk + 1) * B; j++) {
            double y = get_ik(c, fz_kv_row(c, p->b, j), 0);
            if (y > x) x = y;
        }
        if (sel[blk] == 2 && x < sa) sa = x, above = blk;
        if (!sel[blk] && x > sb) sb = x, below = blk;
    }
    if (above >= 0) hot_key(c, p, above * B + B / 2, PROBE_V_HI);
    if (below >= 0) hot_key(c, p, below * B + B / 3, PROBE_V_LO);
    free(sel);
}

/* A block group 1 selects and group 0 does not (and the reverse), both made dominant. */
static void probe_group(msa_case *c, probe_ctx *p)
{
    if (c->HI < 2 || c->DI < 2) return;
    char *s0 = malloc((size_t)p->lk + 1), *s1 = malloc((size_t)p->lk + 1);
    if (s0 && s1) {
        int nvis = last_query_selection(c, p, 0, s0), B = c->block_size;
        last_query_selection(c, p, 1, s1);
        int x = -1, y = -1;
        for (int blk = 0; blk < nvis; blk++) {
            if (s1[blk] && !s0[blk] && x < 0) x = blk;
            if (s0[blk] && !s1[blk] && y < 0) y = blk;
        }
        if (x >= 0) hot_key(c, p, x * B + B / 2, PROBE_V_HI);
        if (y >= 0) hot_key(c, p, y * B + B / 2, PROBE_V_LO);
    }
    free(s0);
    free(s1);
}

void fz_apply_probe(const fz_spec *s, uint64_t seed, uint64_t id, msa_case *c)
{
    if (s->probe == FZ_P_NONE) return;
    probe_ctx p = {0};
    p.b = -1;
    for (int b = 0; b < c->batch && p.b < 0; b++)
        if (msa_case_lq(c, b) >= 1 && msa_case_lk(c, b) >= 2) p.b = b;
    if (p.b < 0) return;
    p.lq = msa_case_lq(c, p.b), p.lk = msa_case_lk(c, p.b), p.q0 = c->cu_q[p.b];
    msa_rng r;
    msa_rng_init(&r, seed, id ^ (UINT64_C(9) << 56));
    hot_axis(c, &p);
    int i = (int)msa_rng_next_range(&r, 0, p.lq - 1), pos = p.lk - p.lq + i, B = c->block_size;
    if (s->probe == FZ_P_PAST_DIAG && p.lq >= 2) /* a query that has a key after it */
        pos = p.lk - p.lq + (int)msa_rng_next_range(&r, 0, p.lq - 2);
    if (pos < 0) pos = 0;
    switch (s->probe) {
    case FZ_P_DIAG: hot_key(c, &p, pos, PROBE_V_HI); break;
    case FZ_P_PAST_DIAG: hot_key(c, &p, pos + 1 < p.lk ? pos + 1 : p.lk - 1, PROBE_V_HI); break;
    case FZ_P_BLOCK_FIRST: hot_key(c, &p, pos / B * B, PROBE_V_HI); break;
    case FZ_P_BLOCK_LAST: hot_key(c, &p, pos / B * B + B - 1 < p.lk ? pos / B * B + B - 1 : p.lk - 1, PROBE_V_HI); break;
    case FZ_P_KTH: probe_kth(c, &p); break;
    case FZ_P_GROUP_ONLY: probe_group(c, &p); break;
    default: break;
    }
}
