/* test_oracle.c - suite "oracle": the judge accepts every legal variant of a result and
 * rejects each bug class on probe data where every decision carries weight.
 *
 * Probe data (bf16, built here from the seed): each query has one-hot components that make
 * the keys at its own position (the diagonal) and one past it dominant, and its index
 * query prefers one target block per (query, group) that differs between groups.  Legal
 * variants come from the exact reference (rounded to fp32 / bf16, fast mode), from a small
 * private simulation of the kernel design (fp32 scores, exp2, P rounded to bf16, per-block
 * partials, LSE merge, bf16 out) and from re-orderings of legal selections.  Bug variants
 * are computed by the reference on modified inputs or selections (a per-query sub-case
 * with the diagonal key removed, one key more, top-left alignment, permuted heads, a wrong
 * scale, per-block reference partials merged with wrong weights), never hand-tuned.
 * Tightness is shown row by row (every row where the one-key change carries >= 1/32 of the
 * mass is rejected on its output alone), the band on synthetic block scores, honesty on
 * seeded random cases (MSA_ORACLE_RANDOM=N, default 6).
 * The seed is printed; MSA_TEST_SEED replays another. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/numfmt.h"
#include "../common/rng.h"
#include "../oracle/oracle.h"

#define DEFAULT_SEED 20261122u
#define AMP_MAIN 8.0  /* one-hot amplitude of q and k: score 64/sqrt(D) = 8 nats over noise */
#define AMP_INDEX 8.0 /* one-hot amplitude of index q and k: target block score ~64 vs ~5 */

static uint64_t g_seed = DEFAULT_SEED;

/* ---------------------------------------------------------------- probe cases */
typedef struct {
    int batch, lq[4], lk[4];
    int Hq, Hkv, D, DI, B, k, init, local;
    int index_flat;        /* 1: all index values equal (every block score ties) */
    double softmax_scale;  /* 0: default 1/sqrt(D) */
    double index_scale;    /* 0: default 1/sqrt(DI) */
    int swap_heads;        /* swap q heads 1 and 2 (wrong head-to-group mapping probe) */
} shape;

static const shape MAIN_SHAPE = {3, {40, 12, 3}, {40, 120, 1}, 4, 2, 64, 64, 16, 4, 1, 1,
                                 0, 0, 0, 0};

static void put_bf16(void *base, size_t i, double x) { ((uint16_t *)base)[i] = msa_double_to_bf16(x); }

static int code_of_block(int b, int DI) { return (b * 5 + 1) % DI; }

/* The target block the index query of (t, g) prefers: a non-forced visible block. */
static int target_block(const msa_case *c, int t, int g, msa_qinfo qi)
{
    int span = qi.nvis - c->init_blocks - c->local_blocks; /* independent of k on purpose */
    if (span <= 0) return -1;
    return c->init_blocks + (int)msa_rng_range(g_seed, 7, (uint64_t)t * 16 + g, 0, span - 1);
}

static void fill_main(msa_case *c, const shape *s)
{
    int t, h, d, g, b, j;
    for (t = 0; t < c->Tq; t++) {
        msa_qinfo qi = msa_case_qinfo(c, t);
        int pos = qi.nkeys - 1;
        for (h = 0; h < c->Hq; h++) {
            int hs = s->swap_heads && (h == 1 || h == 2) ? 3 - h : h; /* data of head hs */
            for (d = 0; d < c->D; d++) {
                double x = msa_rng_normal(g_seed, 1, ((uint64_t)t * c->Hq + hs) * c->D + d);
                if (pos >= 0 && (d == pos % c->D || d == (pos + 1) % c->D)) x += AMP_MAIN;
                put_bf16(c->q, ((size_t)t * c->Hq + h) * c->D + d, x);
            }
        }
    }
    for (b = 0; b < c->batch; b++)
        for (j = 0; j < msa_case_lk(c, b); j++)
            for (g = 0; g < c->Hkv; g++)
                for (d = 0; d < c->D; d++) {
                    size_t i = ((size_t)msa_case_kv_row(c, b, j) * c->Hkv + g) * c->D + d;
                    uint64_t r = ((uint64_t)(b * 1000 + j) * c->Hkv + g) * c->D + d;
                    double kx = msa_rng_normal(g_seed, 2, r) + (d == j % c->D ? AMP_MAIN : 0);
                    put_bf16(c->k, i, kx);
                    put_bf16(c->v, i, msa_rng_normal(g_seed, 3, r));
                }
}

static void fill_index(msa_case *c, const shape *s)
{
    int t, g, d, b, j;
    for (t = 0; t < c->Tq; t++) {
        msa_qinfo qi = msa_case_qinfo(c, t);
        for (g = 0; g < c->HI; g++) {
            int tb = target_block(c, t, g, qi);
            for (d = 0; d < c->DI; d++) {
                double x = s->index_flat ? 1.0
                                         : 2 * msa_rng_uniform(g_seed, 4, ((uint64_t)t * 16 + g) * 512 + d) - 1;
                if (!s->index_flat && tb >= 0 && d == code_of_block(tb, c->DI)) x += AMP_INDEX;
                put_bf16(c->index_q, ((size_t)t * c->HI + g) * c->DI + d, x);
            }
        }
    }
    for (b = 0; b < c->batch; b++)
        for (j = 0; j < msa_case_lk(c, b); j++)
            for (d = 0; d < c->DI; d++) {
                double x = s->index_flat ? 1.0
                                         : 2 * msa_rng_uniform(g_seed, 5, (uint64_t)(b * 1000 + j) * 512 + d) - 1;
                if (!s->index_flat && d == code_of_block(j / c->block_size, c->DI)) x += AMP_INDEX;
                put_bf16(c->index_k, (size_t)msa_case_kv_row(c, b, j) * c->DI + d, x);
            }
}

/* Allocates a packed (unpaged) bf16 case with lengths per sequence (no data). */
static int alloc_case(msa_case *c, const shape *s, int batch, const int *lq, const int *lk)
{
    int b;
    memset(c, 0, sizeof *c);
    c->dtype = c->index_dtype = MSA_DT_BF16;
    c->block_size = s->B; c->topk = s->k; c->init_blocks = s->init; c->local_blocks = s->local;
    c->causal = 1;
    c->softmax_scale_is_default = s->softmax_scale == 0;
    c->softmax_scale = s->softmax_scale ? s->softmax_scale : 1 / sqrt((double)s->D);
    c->index_scale_is_default = s->index_scale == 0;
    c->index_scale = s->index_scale ? s->index_scale : 1 / sqrt((double)s->DI);
    c->batch = batch;
    c->Hq = s->Hq; c->Hkv = s->Hkv; c->HI = s->Hkv; c->D = s->D; c->DI = s->DI;
    c->cu_q = calloc((size_t)batch + 1, sizeof(int32_t));
    c->cu_k = calloc((size_t)batch + 1, sizeof(int32_t));
    if (!c->cu_q || !c->cu_k) return -1;
    for (b = 0; b < batch; b++) {
        c->cu_q[b + 1] = c->cu_q[b] + lq[b];
        c->cu_k[b + 1] = c->cu_k[b] + lk[b];
    }
    c->Tq = c->cu_q[batch];
    c->Tk = c->cu_k[batch];
    c->q = calloc((size_t)c->Tq * c->Hq * c->D + 1, 2);
    c->index_q = calloc((size_t)c->Tq * c->HI * c->DI + 1, 2);
    c->k = calloc((size_t)c->Tk * c->Hkv * c->D + 1, 2);
    c->v = calloc((size_t)c->Tk * c->Hkv * c->D + 1, 2);
    c->index_k = calloc((size_t)c->Tk * c->DI + 1, 2);
    snprintf(c->label, sizeof c->label, "oracle-probe seed %llu", (unsigned long long)g_seed);
    return c->q && c->index_q && c->k && c->v && c->index_k ? 0 : -1;
}

static int build_case(const shape *s, msa_case *c)
{
    msa_err e;
    if (alloc_case(c, s, s->batch, s->lq, s->lk)) return -1;
    fill_main(c, s);
    fill_index(c, s);
    if (msa_case_validate(c, 0, &e)) {
        fprintf(stderr, "probe case invalid: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- per-query sub-cases */
typedef enum { SUB_DROP_DIAG, SUB_ONE_MORE, SUB_TOP_LEFT } sub_kind;

/* One sequence per query row t of c, holding the keys the buggy kernel would let the query
 * see: 0..pos-1 (diagonal dropped), 0..pos+1 (one key past the causal edge), or 0..i (top-
 * left alignment).  Same block ids, so a [HI][Tq][k] selection of c applies unchanged. */
static int build_subcase(const msa_case *c, sub_kind kind, msa_case *sc)
{
    int t, j, n = c->Tq, *lq = calloc((size_t)n + 1, sizeof(int)), *lk = calloc((size_t)n + 1, sizeof(int));
    shape s;
    int rc = -1;
    if (!lq || !lk) goto out;
    memset(&s, 0, sizeof s);
    s.Hq = c->Hq; s.Hkv = c->Hkv; s.D = c->D; s.DI = c->DI; s.B = c->block_size;
    s.k = c->topk; s.init = c->init_blocks; s.local = c->local_blocks;
    s.softmax_scale = c->softmax_scale_is_default ? 0 : c->softmax_scale;
    s.index_scale = c->index_scale_is_default ? 0 : c->index_scale;
    for (t = 0; t < n; t++) {
        msa_qinfo qi = msa_case_qinfo(c, t);
        int lkb = msa_case_lk(c, qi.b), pos = qi.nkeys - 1, want;
        want = kind == SUB_DROP_DIAG ? pos : kind == SUB_ONE_MORE ? pos + 2 : qi.i + 1;
        lq[t] = 1;
        lk[t] = want < 0 ? 0 : want > lkb ? lkb : want;
        if (qi.nkeys == 0) lk[t] = 0; /* an empty row stays empty */
    }
    if (alloc_case(sc, &s, n, lq, lk)) goto out;
    for (t = 0; t < n; t++) {
        msa_qinfo qi = msa_case_qinfo(c, t);
        memcpy((uint16_t *)sc->q + (size_t)t * c->Hq * c->D,
               (const uint16_t *)c->q + (size_t)t * c->Hq * c->D, 2 * (size_t)c->Hq * c->D);
        memcpy((uint16_t *)sc->index_q + (size_t)t * c->HI * c->DI,
               (const uint16_t *)c->index_q + (size_t)t * c->HI * c->DI, 2 * (size_t)c->HI * c->DI);
        for (j = 0; j < lk[t]; j++) {
            int64_t src = msa_case_kv_row(c, qi.b, j), dst = sc->cu_k[t] + j;
            size_t kvw = (size_t)c->Hkv * c->D;
            memcpy((uint16_t *)sc->k + dst * kvw, (const uint16_t *)c->k + src * kvw, 2 * kvw);
            memcpy((uint16_t *)sc->v + dst * kvw, (const uint16_t *)c->v + src * kvw, 2 * kvw);
            memcpy((uint16_t *)sc->index_k + dst * c->DI, (const uint16_t *)c->index_k + src * c->DI,
                   2 * (size_t)c->DI);
        }
    }
    rc = 0;
out:
    free(lq);
    free(lk);
    return rc;
}

/* ---------------------------------------------------------------- results */
typedef struct {
    int32_t *topk;
    double *out;
    float *lse;
} kres;

static int kres_alloc(const msa_case *c, kres *r)
{
    size_t nrow = (size_t)c->Tq * c->Hq;
    r->topk = calloc((size_t)c->HI * c->Tq * c->topk + 1, sizeof(int32_t));
    r->out = calloc(nrow * c->D + 1, sizeof(double));
    r->lse = calloc(nrow + 1, sizeof(float));
    return r->topk && r->out && r->lse ? 0 : -1;
}

static void kres_free(kres *r)
{
    free(r->topk);
    free(r->out);
    free(r->lse);
    memset(r, 0, sizeof *r);
}

/* The exact reference over a selection (NULL: the exact selection), out rounded by
 * `round` (NULL: none), lse rounded to float. */
static int ref_result(const msa_case *c, msa_ref_mode mode, const int32_t *sel,
                      double (*round)(double), kres *r)
{
    size_t i, nrow = (size_t)c->Tq * c->Hq;
    double *lse = calloc(nrow + 1, sizeof(double));
    msa_err e;
    int rc = -1;
    if (!lse || kres_alloc(c, r)) goto out;
    if (sel) memcpy(r->topk, sel, sizeof(int32_t) * (size_t)c->HI * c->Tq * c->topk);
    else if (msa_ref_select(c, MSA_REF_EXACT, r->topk, NULL, &e)) goto fail;
    if (msa_ref_attend(c, mode, r->topk, r->out, lse, &e)) goto fail;
    for (i = 0; i < nrow; i++) r->lse[i] = (float)lse[i];
    if (round)
        for (i = 0; i < nrow * c->D; i++) r->out[i] = round(r->out[i]);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "reference: %s\n", e.msg);
out:
    free(lse);
    return rc;
}

/* ---------------------------------------------------------------- private kernel simulation */
typedef struct {
    int p_bf16;          /* round P before P.V (the design: fp16 for fp16 inputs, else bf16) */
    int exp2_kind;       /* 1: exp2f(x*log2e) as the design; 0: expf */
    int reverse;         /* sum dot products and P.V in reverse order (another legal order) */
    msa_dtype out_dtype; /* BF16 or FP32 */
    msa_key_kind key;    /* selection keys */
    int drop_bits;       /* radix */
    float index_scale;   /* 0: the case's */
} sim_opts;

static float sim_dot(const float *a, const float *b, int n, int reverse)
{
    float s = 0;
    int i;
    for (i = 0; i < n; i++) s += a[reverse ? n - 1 - i : i] * b[reverse ? n - 1 - i : i];
    return s;
}

/* One block partial of the design: fp32 scores, exp2 of the log2e-prescaled scores, P in
 * bf16, l sums the rounded P, O_s = P.V / l, LSE_s = (m + log2 l) ln 2.  0 keys: returns 0. */
static int sim_partial(const msa_case *c, const sim_opts *o, const float *q, int g, msa_qinfo qi,
                       int b, float *Os, float *lse_s)
{
    enum { MAXB = 128 };
    float x[MAXB], kf[512], P, m = -INFINITY, l = 0;
    float c2 = o->exp2_kind ? (float)c->softmax_scale * (float)M_LOG2E : (float)c->softmax_scale;
    int j0 = b * c->block_size, n = 0, j, d;
    for (j = j0; j < j0 + c->block_size && j < qi.nkeys; j++, n++) {
        int64_t row = msa_case_kv_row(c, qi.b, j);
        for (d = 0; d < c->D; d++) kf[d] = (float)msa_case_k(c, row, g, d);
        x[n] = sim_dot(q, kf, c->D, o->reverse) * c2;
        if (x[n] > m) m = x[n];
    }
    if (n == 0) return 0;
    for (d = 0; d < c->D; d++) Os[d] = 0;
    for (j = 0; j < n; j++) {
        int jj = o->reverse ? n - 1 - j : j;
        int64_t row = msa_case_kv_row(c, qi.b, j0 + jj);
        P = o->exp2_kind ? exp2f(x[jj] - m) : expf(x[jj] - m);
        /* the design rounds P to V's 16-bit type: fp16 for fp16 inputs, bf16 otherwise */
        if (o->p_bf16) P = (float)(c->dtype == MSA_DT_FP16 ? msa_round_fp16(P) : msa_round_bf16(P));
        l += P;
        for (d = 0; d < c->D; d++) Os[d] += P * (float)msa_case_v(c, row, g, d);
    }
    for (d = 0; d < c->D; d++) Os[d] /= l;
    *lse_s = o->exp2_kind ? (m + log2f(l)) * (float)M_LN2 : m + logf(l);
    return 1;
}

/* The merge of the design, fp32: M = max LSE_s, w_s = exp(LSE_s - M), O = sum w_s/S O_s. */
static void sim_row(const msa_case *c, const sim_opts *o, const int32_t *ids, int t, int h,
                    double *out, float *lse)
{
    enum { MAXK = 64, MAXD = 512 };
    static float Os[MAXK][MAXD];
    float q[MAXD], ls[MAXK], M = -INFINITY, S = 0, acc[MAXD];
    int g = h / (c->Hq / c->Hkv), np = 0, s, s2, d, dup;
    msa_qinfo qi = msa_case_qinfo(c, t);
    for (d = 0; d < c->D; d++) q[d] = (float)msa_case_q(c, t, h, d);
    for (s = 0; s < c->topk && np < MAXK; s++) {
        int b = ids[s];
        for (dup = 0, s2 = 0; s2 < s; s2++) dup |= ids[s2] == b;
        if (b < 0 || b >= qi.nvis || dup) continue;
        if (sim_partial(c, o, q, g, qi, b, Os[np], &ls[np])) np++;
    }
    for (s = 0; s < np; s++) M = ls[s] > M ? ls[s] : M;
    for (s = 0; s < np; s++) S += expf(ls[s] - M);
    for (d = 0; d < c->D; d++) acc[d] = 0;
    for (s = 0; s < np; s++) {
        float w = expf(ls[s] - M) / S;
        for (d = 0; d < c->D; d++) acc[d] += w * Os[s][d];
    }
    for (d = 0; d < c->D; d++) {
        double v = np ? (double)acc[d] : 0.0;
        out[((size_t)t * c->Hq + h) * c->D + d] = o->out_dtype == MSA_DT_BF16   ? msa_round_bf16(v)
                                                  : o->out_dtype == MSA_DT_FP16 ? msa_round_fp16(v)
                                                                                : v;
    }
    lse[(size_t)t * c->Hq + h] = np ? M + logf(S) : -INFINITY;
}

/* The selection key of one fp32 block score under the declared key kind. */
static double sim_key(const sim_opts *o, float S, float mn, float mx)
{
    uint32_t bits;
    if (o->key == MSA_KEY_FP16) return msa_round_fp16(S);
    if (o->key == MSA_KEY_Q16ROW) return mx > mn ? floorf((S - mn) / (mx - mn) * 65535.0f + 0.5f) : 0;
    if (o->key == MSA_KEY_RADIX) {
        memcpy(&bits, &S, 4);
        bits = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
        return (double)(bits >> o->drop_bits);
    }
    return S;
}

/* Index branch of the design: fp32 token scores, block max, forced blocks, best of the
 * rest by key (ties: lower id), ascending ids with a -1 tail. */
static void sim_select_row(const msa_case *c, const sim_opts *o, int t, int g, int32_t *ids)
{
    enum { MAXN = 256 };
    float iq[512], ik[512], S[MAXN], mn = INFINITY, mx = -INFINITY;
    float sc = o->index_scale ? o->index_scale : (float)c->index_scale;
    double key[MAXN];
    unsigned char pick[MAXN] = {0};
    msa_qinfo qi = msa_case_qinfo(c, t);
    int b, j, d, n = 0, r;
    for (d = 0; d < c->DI; d++) iq[d] = (float)msa_case_iq(c, t, g, d);
    for (b = 0; b < qi.nvis && b < MAXN; b++) {
        S[b] = -INFINITY;
        for (j = b * c->block_size; j < (b + 1) * c->block_size && j < qi.nkeys; j++) {
            int64_t row = msa_case_kv_row(c, qi.b, j);
            float s;
            for (d = 0; d < c->DI; d++) ik[d] = (float)msa_case_ik(c, row, d);
            s = sc * sim_dot(iq, ik, c->DI, o->reverse);
            if (s > S[b]) S[b] = s;
        }
        mn = S[b] < mn ? S[b] : mn;
        mx = S[b] > mx ? S[b] : mx;
    }
    for (b = 0; b < qi.nvis; b++) key[b] = sim_key(o, S[b], mn, mx);
    for (b = 0; b < qi.nvis; b++)
        pick[b] = qi.nvis <= c->topk || b < c->init_blocks || b >= qi.nvis - c->local_blocks;
    r = c->topk - c->init_blocks - c->local_blocks;
    while (qi.nvis > c->topk && r-- > 0) {
        int best = -1;
        for (b = 0; b < qi.nvis; b++)
            if (!pick[b] && (best < 0 || key[b] > key[best])) best = b;
        pick[best] = 1;
    }
    for (b = 0; b < qi.nvis; b++)
        if (pick[b]) ids[n++] = b;
    while (n < c->topk) ids[n++] = -1;
}

static void sim_forward(const msa_case *c, const sim_opts *o, kres *r)
{
    int t, g, h;
    for (g = 0; g < c->HI; g++)
        for (t = 0; t < c->Tq; t++)
            sim_select_row(c, o, t, g, r->topk + ((size_t)g * c->Tq + t) * c->topk);
    for (t = 0; t < c->Tq; t++)
        for (h = 0; h < c->Hq; h++)
            sim_row(c, o, r->topk + ((size_t)(h / (c->Hq / c->Hkv)) * c->Tq + t) * c->topk, t, h,
                    r->out, r->lse);
}

static const sim_opts SIM_DESIGN = {1, 1, 0, MSA_DT_BF16, MSA_KEY_FP32, 0, 0};

/* ---------------------------------------------------------------- fixture and judging */
static msa_case g_case;        /* MAIN_SHAPE */
static kres g_exact;           /* exact selection and attention, unrounded */
static double *g_bs;           /* exact block scores */
static double *g_xlse;         /* exact lse as doubles */
static int g_ready;

static const char *BUD_NAMES[MSA_BUD_N] = {"input", "accum", "exp", "rescale", "p-round", "output"};

static void show(const char *what, const msa_verdict *sel, const msa_verdict *att)
{
    int b;
    printf("\n  oracle %-28s sel %-10s att %-10s worst %.3g (lse %.3g) p50 %.3g p99 %.3g",
           what, sel ? msa_disposition_name(sel->disp) : "-", msa_disposition_name(att->disp),
           att->worst_ratio, att->worst_lse_ratio, att->ratio_p50, att->ratio_p99);
    if (sel && sel->disp != MSA_V_PASSED) printf("\n    sel[%s] %s", sel->stage, sel->detail);
    if (sel && sel->sel_rows)
        printf("\n    sel: %ld rows, %ld ambiguous, %ld tie choices", sel->sel_rows,
               sel->sel_ambiguous_rows, sel->sel_tie_choices);
    printf("\n    att[%s] %s\n    budget at worst:", att->stage, att->detail);
    for (b = 0; b < MSA_BUD_N; b++) printf(" %s %.3g", BUD_NAMES[b], att->budget[b]);
}

static int arith(const char *profile, msa_order order, msa_arith *a)
{
    msa_err e;
    int rc = msa_arith_profile(profile, a, &e);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    a->order = order;
    return rc;
}

/* Both stages with references computed by the oracle itself (msa_judge_forward). */
static void judge_fwd_a(const msa_case *c, const msa_arith *a, const kres *r, msa_verdict *sel,
                        msa_verdict *att, const char *what)
{
    msa_err e;
    CU_ASSERT_EQUAL_FATAL(msa_judge_forward(c, a, r->topk, r->out, r->lse, MSA_REF_EXACT, sel, att, &e), 0);
    show(what, sel, att);
}

static void judge_fwd(const msa_case *c, const char *profile, msa_order order, const kres *r,
                      msa_verdict *sel, msa_verdict *att, const char *what)
{
    msa_arith a;
    arith(profile, order, &a);
    judge_fwd_a(c, &a, r, sel, att, what);
}

/* Attention only, against the cached exact reference (valid when r->topk is the exact
 * selection). */
static void judge_att(const char *profile, const kres *r, msa_verdict *att, const char *what)
{
    msa_arith a;
    msa_err e;
    arith(profile, MSA_ORDER_ASCENDING, &a);
    CU_ASSERT_EQUAL_FATAL(msa_judge_attention(&g_case, &a, g_exact.topk, r->out, r->lse, g_exact.out,
                                              g_xlse, att, &e), 0);
    show(what, NULL, att);
}

static int suite_init(void)
{
    msa_err e;
    const char *env = getenv("MSA_TEST_SEED");
    if (env) g_seed = strtoull(env, NULL, 0);
    printf("\n  oracle suite seed %llu (MSA_TEST_SEED to replay)\n", (unsigned long long)g_seed);
    if (build_case(&MAIN_SHAPE, &g_case)) return 1;
    if (ref_result(&g_case, MSA_REF_EXACT, NULL, NULL, &g_exact)) return 1;
    g_bs = calloc((size_t)g_case.HI * g_case.Tq * msa_case_max_blocks(&g_case) + 1, sizeof(double));
    g_xlse = calloc((size_t)g_case.Tq * g_case.Hq + 1, sizeof(double));
    if (!g_bs || msa_ref_select(&g_case, MSA_REF_EXACT, NULL, g_bs, &e)) return 1;
    if (!g_xlse || msa_ref_attend(&g_case, MSA_REF_EXACT, g_exact.topk, g_exact.out, g_xlse, &e)) return 1;
    g_ready = 1;
    return 0;
}

static int suite_clean(void)
{
    kres_free(&g_exact);
    free(g_bs);
    free(g_xlse);
    msa_case_free(&g_case);
    return 0;
}

#define NEED_FIXTURE() do { CU_ASSERT_FATAL(g_ready); } while (0)
#define PASSED(v) ((v).disp == MSA_V_PASSED)
#define REJECTED(v) ((v).disp == MSA_V_INCORRECT)

static int copy_res(const msa_case *c, const kres *src, kres *dst)
{
    size_t nrow = (size_t)c->Tq * c->Hq;
    if (kres_alloc(c, dst)) return -1;
    memcpy(dst->topk, src->topk, sizeof(int32_t) * (size_t)c->HI * c->Tq * c->topk);
    memcpy(dst->out, src->out, sizeof(double) * nrow * c->D);
    memcpy(dst->lse, src->lse, sizeof(float) * nrow);
    return 0;
}

/* ---------------------------------------------------------------- profiles */
static void test_profiles(void)
{
    const char *const *n = msa_arith_profile_names();
    msa_arith a;
    msa_err e;
    int i;
    for (i = 0; n[i]; i++) {
        if (!strcmp(n[i], "radix-keys:N")) continue;
        CU_ASSERT_EQUAL(msa_arith_profile(n[i], &a, &e), 0);
    }
    CU_ASSERT(i >= 8);
    CU_ASSERT_EQUAL(msa_arith_profile("cpu-sim", &a, &e), 0);
    CU_ASSERT_EQUAL(a.p_dtype, MSA_DT_INVALID); /* follows the input (docs/DESIGN.md) */
    CU_ASSERT_EQUAL(a.merge, MSA_MERGE_LSE);
    CU_ASSERT_EQUAL(a.exp_kind, MSA_EXP_EXP2);
    CU_ASSERT_EQUAL(msa_arith_profile("radix-keys:12", &a, &e), 0);
    CU_ASSERT_EQUAL(a.key_drop_bits, 12);
    CU_ASSERT_EQUAL(msa_arith_profile("radix-keys:40", &a, &e), MSA_EINPUT);
    CU_ASSERT_EQUAL(msa_arith_profile("fp64-magic", &a, &e), MSA_EINPUT);
    CU_ASSERT(strstr(e.msg, "fp64-magic") != NULL);
    CU_ASSERT_STRING_EQUAL(msa_disposition_name(MSA_V_INCORRECT), "Incorrect");
}

/* Bad arguments give MSA_EINPUT with a message, never a crash. */
static void test_bad_input(void)
{
    msa_arith a;
    msa_verdict v;
    msa_err e;
    msa_case broken;
    NEED_FIXTURE();
    arith("cpu-sim", MSA_ORDER_ASCENDING, &a);
    CU_ASSERT_EQUAL(msa_judge_attention(&g_case, &a, g_exact.topk, g_exact.out, NULL, NULL, g_xlse, &v, &e),
                    MSA_EINPUT);
    CU_ASSERT_EQUAL(msa_judge_attention(&g_case, &a, g_exact.topk, NULL, NULL, g_exact.out, g_xlse, &v, &e),
                    MSA_EINPUT);
    a.accum_bits = 0;
    CU_ASSERT_EQUAL(msa_judge_attention(&g_case, &a, g_exact.topk, g_exact.out, NULL, g_exact.out, g_xlse,
                                        &v, &e), MSA_EINPUT);
    CU_ASSERT(strstr(e.msg, "accum_bits") != NULL);
    arith("radix-keys", MSA_ORDER_ASCENDING, &a);
    a.key_drop_bits = 30;
    CU_ASSERT_EQUAL(msa_judge_selection(&g_case, &a, g_exact.topk, g_bs, &v, &e), MSA_EINPUT);
    broken = g_case;
    broken.Hkv = 3; /* Hq = 4 is not a multiple */
    arith("cpu-sim", MSA_ORDER_ASCENDING, &a);
    CU_ASSERT_EQUAL(msa_judge_selection(&broken, &a, g_exact.topk, g_bs, &v, &e), MSA_EINPUT);
    CU_ASSERT_EQUAL(msa_judge_forward(&broken, &a, g_exact.topk, g_exact.out, NULL, MSA_REF_FAST, &v, &v, &e),
                    MSA_EINPUT);
}

/* ---------------------------------------------------------------- legal variants */
static void test_accept_rounded(void)
{
    kres r = {0};
    msa_verdict sel, att;
    NEED_FIXTURE();
    CU_ASSERT_FATAL(copy_res(&g_case, &g_exact, &r) == 0);
    judge_fwd(&g_case, "exact-fp64", MSA_ORDER_ASCENDING, &r, &sel, &att, "exact as is / exact-fp64");
    CU_ASSERT(PASSED(sel) && PASSED(att));
    kres_free(&r);
    CU_ASSERT_FATAL(ref_result(&g_case, MSA_REF_EXACT, g_exact.topk, msa_round_fp32, &r) == 0);
    judge_att("fp32", &r, &att, "exact->fp32 / fp32");
    CU_ASSERT(PASSED(att));
    kres_free(&r);
    CU_ASSERT_FATAL(ref_result(&g_case, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &r) == 0);
    judge_att("bf16-out", &r, &att, "exact->bf16 / bf16-out");
    CU_ASSERT(PASSED(att));
    judge_att("cpu-sim", &r, &att, "exact->bf16 / cpu-sim");
    CU_ASSERT(PASSED(att));
    kres_free(&r);
}

/* The reference's fast mode (double, compensated sums: another summation order). */
static void test_accept_fast_mode(void)
{
    kres r = {0};
    msa_verdict sel, att;
    msa_arith a;
    msa_err e;
    NEED_FIXTURE();
    CU_ASSERT_FATAL(ref_result(&g_case, MSA_REF_FAST, g_exact.topk, NULL, &r) == 0);
    judge_fwd(&g_case, "exact-fp64", MSA_ORDER_ASCENDING, &r, &sel, &att, "ref fast / exact-fp64");
    CU_ASSERT(PASSED(sel) && PASSED(att));
    arith("exact-fp64", MSA_ORDER_ASCENDING, &a); /* out alone: lse is stored as fp32 */
    CU_ASSERT_EQUAL(msa_judge_attention(&g_case, &a, g_exact.topk, r.out, NULL, g_exact.out, g_xlse,
                                        &att, &e), 0);
    show("ref fast out only", NULL, &att);
    CU_ASSERT(PASSED(att));
    kres_free(&r);
}

static void test_accept_sim_kernel(void)
{
    kres r = {0};
    msa_verdict sel, att;
    sim_opts o = SIM_DESIGN;
    msa_arith a;
    NEED_FIXTURE();
    CU_ASSERT_FATAL(kres_alloc(&g_case, &r) == 0);
    sim_forward(&g_case, &o, &r);
    judge_fwd(&g_case, "cpu-sim", MSA_ORDER_ASCENDING, &r, &sel, &att, "sim bf16 design / cpu-sim");
    CU_ASSERT(PASSED(sel) && PASSED(att));
    CU_ASSERT(att.worst_ratio > 0.01); /* the bound is not vacuous */
    o.reverse = 1;
    sim_forward(&g_case, &o, &r);
    judge_fwd(&g_case, "cuda", MSA_ORDER_ASCENDING, &r, &sel, &att, "sim reversed order / cuda");
    CU_ASSERT(PASSED(sel) && PASSED(att));
    o = SIM_DESIGN;
    o.p_bf16 = 0;
    o.exp2_kind = 0;
    o.out_dtype = MSA_DT_FP32;
    sim_forward(&g_case, &o, &r);
    arith("fp32", MSA_ORDER_ASCENDING, &a);
    a.merge = MSA_MERGE_LSE; /* the simulation merges per-block partials */
    judge_fwd_a(&g_case, &a, &r, &sel, &att, "sim fp32 / fp32+lse-merge");
    CU_ASSERT(PASSED(sel) && PASSED(att));
    kres_free(&r);
}

/* Valid ids of one selection row and their count. */
static int32_t *row_ids(const msa_case *c, int32_t *topk, int g, int t)
{
    return topk + ((size_t)g * c->Tq + t) * c->topk;
}

static int nvalid(const msa_case *c, const int32_t *ids)
{
    int n = 0;
    while (n < c->topk && ids[n] >= 0) n++;
    return n;
}

static const double *row_scores(const msa_case *c, const double *bs, int g, int t)
{
    return bs + ((size_t)g * c->Tq + t) * msa_case_max_blocks(c);
}

/* Re-orders every row: 1 score-descending, 2 local-last (own block last, rest reversed),
 * 3 reversed. */
static void reorder(const msa_case *c, const double *bs, int32_t *topk, int how)
{
    int g, t, i, j;
    for (g = 0; g < c->HI; g++)
        for (t = 0; t < c->Tq; t++) {
            int32_t *ids = row_ids(c, topk, g, t), tmp;
            const double *S = row_scores(c, bs, g, t);
            int n = nvalid(c, ids);
            for (i = 0; i < n / 2; i++) { /* reverse */
                tmp = ids[i]; ids[i] = ids[n - 1 - i]; ids[n - 1 - i] = tmp;
            }
            if (how == 1) /* stable insertion sort by exact score, descending */
                for (i = 1; i < n; i++)
                    for (j = i; j > 0 && S[ids[j]] > S[ids[j - 1]]; j--) {
                        tmp = ids[j]; ids[j] = ids[j - 1]; ids[j - 1] = tmp;
                    }
            if (how == 2 && n > 0) { /* own block (now first after reversal) to the end */
                tmp = ids[0];
                memmove(ids, ids + 1, sizeof(int32_t) * (size_t)(n - 1));
                ids[n - 1] = tmp;
            }
        }
}

static void test_accept_orders(void)
{
    kres r = {0};
    msa_verdict sel, att;
    static const msa_order ord[] = {MSA_ORDER_SCORE_DESC, MSA_ORDER_LOCAL_LAST, MSA_ORDER_ANY};
    static const char *name[] = {"score-desc", "local-last", "any (reversed)"};
    int i;
    NEED_FIXTURE();
    for (i = 0; i < 3; i++) {
        CU_ASSERT_FATAL(ref_result(&g_case, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &r) == 0);
        reorder(&g_case, g_bs, r.topk, i + 1);
        judge_fwd(&g_case, "cpu-sim", ord[i], &r, &sel, &att, name[i]);
        CU_ASSERT(PASSED(sel) && PASSED(att));
        if (i == 2) { /* the same ids are illegal where ascending order is declared */
            judge_fwd(&g_case, "cpu-sim", MSA_ORDER_ASCENDING, &r, &sel, &att, "reversed / ascending");
            CU_ASSERT(REJECTED(sel));
            CU_ASSERT_STRING_EQUAL(sel.stage, "structure");
        }
        kres_free(&r);
    }
}

/* Ties: every block score equal; the exact rule takes the lowest ids, this variant the
 * highest.  Legal under every key profile. */
static void tie_other_way(const msa_case *c, int32_t *topk)
{
    int g, t, b;
    for (g = 0; g < c->HI; g++)
        for (t = 0; t < c->Tq; t++) {
            msa_qinfo qi = msa_case_qinfo(c, t);
            int32_t *ids = row_ids(c, topk, g, t);
            int n = 0, need = c->topk - c->init_blocks - c->local_blocks;
            if (qi.nvis <= c->topk) continue;
            for (b = 0; b < c->init_blocks; b++) ids[n++] = b;
            for (b = qi.nvis - c->local_blocks - need; b < qi.nvis; b++) ids[n++] = b;
        }
}

static void test_accept_ties_other_way(void)
{
    shape s = MAIN_SHAPE;
    msa_case c;
    kres r = {0};
    msa_verdict sel, att;
    int32_t *ids;
    msa_err e;
    NEED_FIXTURE();
    s.index_flat = 1;
    CU_ASSERT_FATAL(build_case(&s, &c) == 0);
    ids = calloc((size_t)c.HI * c.Tq * c.topk, sizeof(int32_t));
    CU_ASSERT_FATAL(ids != NULL);
    CU_ASSERT_FATAL(msa_ref_select(&c, MSA_REF_EXACT, ids, NULL, &e) == 0);
    tie_other_way(&c, ids);
    CU_ASSERT_FATAL(ref_result(&c, MSA_REF_EXACT, ids, msa_round_bf16, &r) == 0);
    judge_fwd(&c, "cpu-sim", MSA_ORDER_ASCENDING, &r, &sel, &att, "ties the other way");
    CU_ASSERT(PASSED(sel) && PASSED(att));
    CU_ASSERT(sel.sel_tie_choices > 0 && sel.sel_ambiguous_rows > 0);
    judge_fwd(&c, "q16-keys", MSA_ORDER_ASCENDING, &r, &sel, &att, "ties / q16-keys");
    CU_ASSERT(PASSED(sel) && PASSED(att));
    kres_free(&r);
    free(ids);
    msa_case_free(&c);
}

/* Selections by the simulated fp32 index branch with index scale 1 instead of 1/sqrt(DI),
 * and with each declared low-precision key kind, judged under that declaration. */
static void test_accept_index_variants(void)
{
    static const struct {
        const char *profile;
        msa_key_kind key;
        int drop;
        float scale;
    } v[] = {{"cpu-sim", MSA_KEY_FP32, 0, 1.0f},   {"fp16-keys", MSA_KEY_FP16, 0, 0},
             {"q16-keys", MSA_KEY_Q16ROW, 0, 0},    {"radix-keys", MSA_KEY_RADIX, 16, 0},
             {"radix-keys:20", MSA_KEY_RADIX, 20, 0}};
    kres r = {0};
    msa_verdict sel;
    msa_arith a;
    msa_err e;
    int32_t *ids;
    shape s = MAIN_SHAPE;
    msa_case c2;
    size_t i;
    NEED_FIXTURE();
    CU_ASSERT_FATAL(kres_alloc(&g_case, &r) == 0);
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        sim_opts o = SIM_DESIGN;
        char what[64];
        o.key = v[i].key;
        o.drop_bits = v[i].drop;
        o.index_scale = v[i].scale;
        sim_forward(&g_case, &o, &r);
        arith(v[i].profile, MSA_ORDER_ASCENDING, &a);
        CU_ASSERT_EQUAL(msa_judge_selection(&g_case, &a, r.topk, g_bs, &sel, &e), 0);
        snprintf(what, sizeof what, "sim keys / %s%s", v[i].profile, v[i].scale ? " scale 1" : "");
        printf("\n  oracle %-28s sel %-10s %s", what, msa_disposition_name(sel.disp), sel.detail);
        CU_ASSERT(PASSED(sel));
    }
    /* the reference itself on the same data with index_scale = 1 */
    s.index_scale = 1.0;
    CU_ASSERT_FATAL(build_case(&s, &c2) == 0);
    ids = calloc((size_t)c2.HI * c2.Tq * c2.topk, sizeof(int32_t));
    CU_ASSERT_FATAL(ids && msa_ref_select(&c2, MSA_REF_EXACT, ids, NULL, &e) == 0);
    arith("cpu-sim", MSA_ORDER_ASCENDING, &a);
    CU_ASSERT_EQUAL(msa_judge_selection(&g_case, &a, ids, g_bs, &sel, &e), 0);
    printf("\n  oracle %-28s sel %-10s %s", "ref index scale 1", msa_disposition_name(sel.disp), sel.detail);
    CU_ASSERT(PASSED(sel));
    free(ids);
    msa_case_free(&c2);
    kres_free(&r);
}

/* The ambiguous band itself (NUMERICS.md 7.2-7.3) on synthetic block scores for one row
 * (seq 1, last query: nvis 8, forced 0 and 7, r = 2 of candidates 1..6): block 2 is far
 * ahead; blocks 3 and 4 are `gap` apart.  Choosing the lower of the two is legal exactly
 * when the declared keys cannot separate them. */
static int judge_synthetic(const char *profile, double gap, int pick)
{
    const msa_case *c = &g_case;
    int t = c->cu_q[1] + 11, nb = msa_case_max_blocks(c), b;
    size_t nbs = (size_t)c->HI * c->Tq * nb, nsel = (size_t)c->HI * c->Tq * c->topk;
    double *bs = malloc(sizeof(double) * nbs), S[8] = {20, 0, 655.35, 10, 0, 5, 1, 20};
    int32_t *ids = malloc(sizeof(int32_t) * nsel), *row;
    msa_verdict v;
    msa_arith a;
    msa_err e;
    CU_ASSERT_FATAL(bs && ids && msa_case_qinfo(c, t).nvis == 8);
    memcpy(bs, g_bs, sizeof(double) * nbs);
    memcpy(ids, g_exact.topk, sizeof(int32_t) * nsel);
    S[4] = S[3] + gap;
    for (b = 0; b < 8; b++) bs[(size_t)t * nb + b] = S[b]; /* group 0 */
    row = row_ids(c, ids, 0, t);
    row[0] = 0; row[1] = 2; row[2] = pick; row[3] = 7;
    arith(profile, MSA_ORDER_ASCENDING, &a);
    CU_ASSERT_FATAL(msa_judge_selection(c, &a, ids, bs, &v, &e) == 0);
    printf("\n  oracle band %-10s gap %-8g pick %d: %s %s", profile, gap, pick,
           msa_disposition_name(v.disp), v.disp ? v.detail : "");
    free(bs);
    free(ids);
    return v.disp == MSA_V_PASSED;
}

static void test_band_decisions(void)
{
    const double q = 655.35 / 65535; /* the row's 16-bit quantum: (max - min) / 65535 */
    NEED_FIXTURE();
    CU_ASSERT(judge_synthetic("cpu-sim", 1e-3, 4));      /* the right choice */
    CU_ASSERT(!judge_synthetic("cpu-sim", 1e-3, 3));     /* fp32 keys separate 1e-3 */
    CU_ASSERT(judge_synthetic("q16-keys", 1.4 * q, 3));  /* within 1.5 quanta: a tie */
    CU_ASSERT(judge_synthetic("q16-keys", 1.4 * q, 4));
    CU_ASSERT(!judge_synthetic("q16-keys", 1.6 * q, 3)); /* beyond 1.5 quanta */
    CU_ASSERT(judge_synthetic("fp16-keys", 0.009, 3));   /* 2^-11 * 10 on each side */
    CU_ASSERT(!judge_synthetic("fp16-keys", 0.011, 3));
    CU_ASSERT(judge_synthetic("radix-keys", 0.15, 3));   /* 2^(16-23) * 10 = 0.078 each side */
    CU_ASSERT(!judge_synthetic("radix-keys", 0.17, 3));
    CU_ASSERT(!judge_synthetic("q16-keys", 0, 5));       /* 5 is certainly out under any key */
}

/* Judging against the fast reference (what large cases use): the same verdicts. */
static void test_fast_reference_judging(void)
{
    kres r = {0};
    msa_case sc;
    msa_verdict sel, att;
    msa_arith a;
    msa_err e;
    NEED_FIXTURE();
    arith("cpu-sim", MSA_ORDER_ASCENDING, &a);
    CU_ASSERT_FATAL(kres_alloc(&g_case, &r) == 0);
    sim_forward(&g_case, &SIM_DESIGN, &r);
    CU_ASSERT_EQUAL(msa_judge_forward(&g_case, &a, r.topk, r.out, r.lse, MSA_REF_FAST, &sel, &att, &e), 0);
    show("sim design vs fast reference", &sel, &att);
    CU_ASSERT(PASSED(sel) && PASSED(att));
    kres_free(&r);
    CU_ASSERT_FATAL(build_subcase(&g_case, SUB_DROP_DIAG, &sc) == 0);
    CU_ASSERT_FATAL(ref_result(&sc, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &r) == 0);
    CU_ASSERT_EQUAL(msa_judge_forward(&g_case, &a, r.topk, r.out, r.lse, MSA_REF_FAST, &sel, &att, &e), 0);
    show("dropped diagonal vs fast ref", &sel, &att);
    CU_ASSERT(REJECTED(att));
    kres_free(&r);
    msa_case_free(&sc);
}

/* ---------------------------------------------------------------- bug variants */
/* Judges r (reported selection r->topk) under cpu-sim; expects the given stage to fail. */
static void expect_reject(const msa_case *c, const kres *r, const char *what, int want_sel,
                          int want_att)
{
    msa_verdict sel, att;
    judge_fwd(c, "cpu-sim", MSA_ORDER_ASCENDING, r, &sel, &att, what);
    if (want_sel) CU_ASSERT(REJECTED(sel));
    if (want_att) CU_ASSERT(REJECTED(att));
    if (!want_sel) CU_ASSERT(PASSED(sel));
}

/* The reference on a per-query sub-case (diagonal dropped, one key more, top-left). */
static void reject_subcase(sub_kind kind, const char *what)
{
    msa_case sc;
    kres r = {0};
    NEED_FIXTURE();
    CU_ASSERT_FATAL(build_subcase(&g_case, kind, &sc) == 0);
    CU_ASSERT_FATAL(ref_result(&sc, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &r) == 0);
    expect_reject(&g_case, &r, what, 0, 1);
    kres_free(&r);
    msa_case_free(&sc);
}

static void test_reject_dropped_diagonal(void) { reject_subcase(SUB_DROP_DIAG, "dropped diagonal key"); }
static void test_reject_one_key_more(void) { reject_subcase(SUB_ONE_MORE, "one key past the edge"); }
static void test_reject_top_left(void) { reject_subcase(SUB_TOP_LEFT, "top-left aligned chunk"); }

/* Selection edits, attention from the reference over the edited selection. */
typedef enum { EDIT_SHARED, EDIT_NO_LOCAL, EDIT_K_MINUS_1, EDIT_DUPLICATE } sel_edit;

static void edit_row(const msa_case *c, int32_t *topk, int g, int t, sel_edit how)
{
    msa_qinfo qi = msa_case_qinfo(c, t);
    int32_t *ids = row_ids(c, topk, g, t);
    int n = nvalid(c, ids), i, b;
    if (qi.nvis <= c->topk) return;
    if (how == EDIT_SHARED && g > 0) memcpy(ids, row_ids(c, topk, 0, t), sizeof(int32_t) * (size_t)c->topk);
    if (how == EDIT_K_MINUS_1) ids[n - 1] = -1;
    if (how == EDIT_DUPLICATE) ids[n - 1] = ids[n - 2];
    if (how == EDIT_NO_LOCAL) { /* replace the own block by the lowest unchosen block */
        for (b = 0; b < qi.nvis; b++) {
            for (i = 0; i < n && ids[i] != b; i++) {}
            if (i == n) break;
        }
        for (i = 0; i < n; i++)
            if (ids[i] == qi.nvis - 1) ids[i] = b;
        for (i = 1; i < n; i++) /* keep ascending */
            for (b = i; b > 0 && ids[b] < ids[b - 1]; b--) {
                int32_t tmp = ids[b]; ids[b] = ids[b - 1]; ids[b - 1] = tmp;
            }
    }
}

static void reject_sel_edit(sel_edit how, const char *what)
{
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)g_case.HI * g_case.Tq * g_case.topk);
    kres r = {0};
    int g, t;
    NEED_FIXTURE();
    CU_ASSERT_FATAL(ids != NULL);
    memcpy(ids, g_exact.topk, sizeof(int32_t) * (size_t)g_case.HI * g_case.Tq * g_case.topk);
    for (g = 0; g < g_case.HI; g++)
        for (t = 0; t < g_case.Tq; t++) edit_row(&g_case, ids, g, t, how);
    CU_ASSERT_FATAL(ref_result(&g_case, MSA_REF_EXACT, ids, msa_round_bf16, &r) == 0);
    expect_reject(&g_case, &r, what, 1, 0);
    kres_free(&r);
    free(ids);
}

static void test_reject_shared_selection(void) { reject_sel_edit(EDIT_SHARED, "one selection for all groups"); }
static void test_reject_missing_local(void) { reject_sel_edit(EDIT_NO_LOCAL, "missing local block"); }
static void test_reject_k_minus_1(void) { reject_sel_edit(EDIT_K_MINUS_1, "k-1 blocks"); }
static void test_reject_duplicate(void) { reject_sel_edit(EDIT_DUPLICATE, "duplicate id"); }

/* The attention of k+1 blocks (the reference's own top-(k+1)) reported as the top-k. */
static void test_reject_k_plus_1(void)
{
    shape s = MAIN_SHAPE;
    msa_case c2;
    kres r2 = {0}, r = {0};
    NEED_FIXTURE();
    s.k = MAIN_SHAPE.k + 1;
    CU_ASSERT_FATAL(build_case(&s, &c2) == 0);
    CU_ASSERT_FATAL(ref_result(&c2, MSA_REF_EXACT, NULL, msa_round_bf16, &r2) == 0);
    CU_ASSERT_FATAL(copy_res(&g_case, &g_exact, &r) == 0);
    memcpy(r.out, r2.out, sizeof(double) * (size_t)g_case.Tq * g_case.Hq * g_case.D);
    memcpy(r.lse, r2.lse, sizeof(float) * (size_t)g_case.Tq * g_case.Hq);
    expect_reject(&g_case, &r, "attention over k+1 blocks", 0, 1);
    kres_free(&r);
    kres_free(&r2);
    msa_case_free(&c2);
}

/* Head h attended with group h % Hkv instead of h / (Hq/Hkv): the reference on a case with
 * q heads 1 and 2 swapped, rows swapped back. */
static void test_reject_head_group_mapping(void)
{
    shape s = MAIN_SHAPE;
    msa_case c2;
    kres r = {0};
    int t, d;
    NEED_FIXTURE();
    s.swap_heads = 1;
    CU_ASSERT_FATAL(build_case(&s, &c2) == 0);
    CU_ASSERT_FATAL(ref_result(&c2, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &r) == 0);
    for (t = 0; t < g_case.Tq; t++) {
        double *o1 = r.out + ((size_t)t * g_case.Hq + 1) * g_case.D, *o2 = o1 + g_case.D;
        float l = r.lse[(size_t)t * g_case.Hq + 1];
        for (d = 0; d < g_case.D; d++) {
            double x = o1[d]; o1[d] = o2[d]; o2[d] = x;
        }
        r.lse[(size_t)t * g_case.Hq + 1] = r.lse[(size_t)t * g_case.Hq + 2];
        r.lse[(size_t)t * g_case.Hq + 2] = l;
    }
    expect_reject(&g_case, &r, "head h -> group h % Hkv", 0, 1);
    kres_free(&r);
    msa_case_free(&c2);
}

static void test_reject_lse_log2(void)
{
    kres r = {0};
    size_t i;
    NEED_FIXTURE();
    CU_ASSERT_FATAL(ref_result(&g_case, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &r) == 0);
    for (i = 0; i < (size_t)g_case.Tq * g_case.Hq; i++) r.lse[i] = (float)(r.lse[i] / M_LN2);
    expect_reject(&g_case, &r, "lse in log2", 0, 1);
    kres_free(&r);
}

static void test_reject_wrong_scale(void)
{
    shape s = MAIN_SHAPE;
    msa_case c2;
    kres r = {0};
    NEED_FIXTURE();
    s.softmax_scale = 1 / sqrt(2.0 * MAIN_SHAPE.D); /* the scale of a head dim twice as large */
    CU_ASSERT_FATAL(build_case(&s, &c2) == 0);
    CU_ASSERT_FATAL(ref_result(&c2, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &r) == 0);
    expect_reject(&g_case, &r, "softmax scale 1/sqrt(2D)", 0, 1);
    kres_free(&r);
    msa_case_free(&c2);
}

/* Per-block exact partials (the reference over one selected block at a time) merged with
 * exp (legal) or with exp2 of the natural-log LSE differences (the bug). */
static int merged_partials(int wrong, kres *r)
{
    const msa_case *c = &g_case;
    size_t nsel = (size_t)c->HI * c->Tq * c->topk, nrow = (size_t)c->Tq * c->Hq, i;
    int32_t *ids = malloc(sizeof(int32_t) * nsel);
    double *po = calloc(nrow * c->D * c->topk, sizeof(double)), *pl = calloc(nrow * c->topk, sizeof(double));
    int s, d, rc = -1;
    msa_err e;
    if (!ids || !po || !pl || copy_res(c, &g_exact, r)) goto out;
    for (s = 0; s < c->topk; s++) {
        for (i = 0; i < nsel; i++) ids[i] = (int)(i % c->topk) == s ? g_exact.topk[i] : -1;
        if (msa_ref_attend(c, MSA_REF_EXACT, ids, po + (size_t)s * nrow * c->D, pl + (size_t)s * nrow, &e)) goto out;
    }
    for (i = 0; i < nrow; i++) {
        double M = -INFINITY, S = 0, w;
        for (s = 0; s < c->topk; s++) M = fmax(M, pl[(size_t)s * nrow + i]);
        for (s = 0; s < c->topk; s++)
            if (pl[(size_t)s * nrow + i] > -INFINITY) S += wrong ? exp2(pl[(size_t)s * nrow + i] - M) : exp(pl[(size_t)s * nrow + i] - M);
        for (d = 0; d < c->D; d++) r->out[i * c->D + d] = 0;
        for (s = 0; s < c->topk && M > -INFINITY; s++) {
            double ls = pl[(size_t)s * nrow + i];
            if (ls == -INFINITY) continue;
            w = (wrong ? exp2(ls - M) : exp(ls - M)) / S;
            for (d = 0; d < c->D; d++) r->out[i * c->D + d] += w * po[((size_t)s * nrow + i) * c->D + d];
        }
        for (d = 0; d < c->D; d++) r->out[i * c->D + d] = msa_round_bf16(r->out[i * c->D + d]);
        r->lse[i] = M > -INFINITY ? (float)(M + log(S)) : -INFINITY;
    }
    rc = 0;
out:
    free(ids);
    free(po);
    free(pl);
    return rc;
}

static void test_merge_weights(void)
{
    kres r = {0};
    msa_verdict sel, att;
    NEED_FIXTURE();
    CU_ASSERT_FATAL(merged_partials(0, &r) == 0);
    judge_fwd(&g_case, "cpu-sim", MSA_ORDER_ASCENDING, &r, &sel, &att, "exact partials, exp merge");
    CU_ASSERT(PASSED(sel) && PASSED(att));
    kres_free(&r);
    CU_ASSERT_FATAL(merged_partials(1, &r) == 0);
    expect_reject(&g_case, &r, "partials merged with exp2", 0, 1);
    kres_free(&r);
}

/* The element of largest |exact| and one element of an empty row. */
static size_t largest_elem(void)
{
    size_t i, best = 0, n = (size_t)g_case.Tq * g_case.Hq * g_case.D;
    for (i = 0; i < n; i++)
        if (fabs(g_exact.out[i]) > fabs(g_exact.out[best])) best = i;
    return best;
}

static void test_reject_unwritten(void)
{
    static const double poison[] = {0.0, NAN, INFINITY};
    static const char *name[] = {"one element left 0", "one element NaN", "one element inf"};
    kres r = {0};
    int i;
    NEED_FIXTURE();
    for (i = 0; i < 3; i++) {
        CU_ASSERT_FATAL(ref_result(&g_case, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &r) == 0);
        r.out[largest_elem()] = poison[i];
        expect_reject(&g_case, &r, name[i], 0, 1);
        kres_free(&r);
    }
}

static void test_empty_rows(void)
{
    kres r = {0};
    msa_verdict sel, att;
    int t, found = 0;
    NEED_FIXTURE();
    CU_ASSERT_FATAL(ref_result(&g_case, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &r) == 0);
    for (t = 0; t < g_case.Tq; t++)
        if (msa_case_qinfo(&g_case, t).nkeys == 0) {
            size_t row = (size_t)t * g_case.Hq;
            CU_ASSERT(r.out[row * g_case.D] == 0 && r.lse[row] == -INFINITY);
            if (!found++) {
                r.out[row * g_case.D] = NAN;
                expect_reject(&g_case, &r, "NaN out in an empty row", 0, 1);
                r.out[row * g_case.D] = 0;
                r.lse[row] = NAN;
                judge_fwd(&g_case, "cpu-sim", MSA_ORDER_ASCENDING, &r, &sel, &att, "NaN lse in an empty row");
                CU_ASSERT(REJECTED(att));
                CU_ASSERT_STRING_EQUAL(att.stage, "empty-row");
                r.lse[row] = -INFINITY;
            }
        }
    CU_ASSERT(found >= 2); /* the probe has empty rows */
    kres_free(&r);
}

/* k >= nvis everywhere: MSA must equal dense GQA; a kernel dropping one block is caught. */
static void test_dense_identity(void)
{
    shape s = MAIN_SHAPE;
    msa_case c;
    kres r = {0};
    msa_verdict sel, att;
    int32_t *ids;
    int g, t;
    NEED_FIXTURE();
    s.k = 8; /* Lk <= 128 = 8 blocks of 16 */
    CU_ASSERT_FATAL(build_case(&s, &c) == 0);
    CU_ASSERT_FATAL(kres_alloc(&c, &r) == 0);
    sim_forward(&c, &SIM_DESIGN, &r);
    judge_fwd(&c, "cpu-sim", MSA_ORDER_ASCENDING, &r, &sel, &att, "dense: sim design");
    CU_ASSERT(PASSED(sel) && PASSED(att));
    ids = malloc(sizeof(int32_t) * (size_t)c.HI * c.Tq * c.topk);
    CU_ASSERT_FATAL(ids != NULL);
    memcpy(ids, r.topk, sizeof(int32_t) * (size_t)c.HI * c.Tq * c.topk);
    for (g = 0; g < c.HI; g++)
        for (t = 0; t < c.Tq; t++) {
            int32_t *row = row_ids(&c, ids, g, t);
            if (nvalid(&c, row) > 1) row[0] = -1; /* attention skips block 0 */
        }
    kres_free(&r);
    CU_ASSERT_FATAL(ref_result(&c, MSA_REF_EXACT, ids, msa_round_bf16, &r) == 0);
    CU_ASSERT_FATAL(msa_ref_select(&c, MSA_REF_EXACT, r.topk, NULL, NULL) == 0); /* report all */
    expect_reject(&c, &r, "dense: block 0 skipped", 0, 1);
    kres_free(&r);
    free(ids);
    msa_case_free(&c);
}

/* Tightness: one row at a time, the exact bf16 result with that single row replaced by the
 * one-key variant (diagonal dropped / one key more) must be rejected on its output alone
 * whenever the key carries real weight (>= W_REAL of the row's softmax mass). */
#define W_REAL (1.0 / 32)

static double key_weight(const msa_case *c, int t, int h, int j, double lse)
{
    msa_qinfo qi = msa_case_qinfo(c, t);
    int64_t row = msa_case_kv_row(c, qi.b, j);
    int g = h / (c->Hq / c->Hkv), d;
    double dot = 0;
    for (d = 0; d < c->D; d++) dot += msa_case_q(c, t, h, d) * msa_case_k(c, row, g, d);
    return exp(c->softmax_scale * dot - lse);
}

static void tight_one_key(sub_kind kind, const char *what)
{
    const msa_case *c = &g_case;
    msa_case sc;
    kres var = {0}, mix = {0}, base = {0};
    msa_arith a;
    msa_verdict v;
    msa_err e;
    int t, h, heavy = 0, caught = 0, light_caught = 0;
    double wmin_caught = 1;
    size_t D = (size_t)c->D;
    CU_ASSERT_FATAL(build_subcase(c, kind, &sc) == 0);
    CU_ASSERT_FATAL(ref_result(&sc, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &var) == 0);
    CU_ASSERT_FATAL(ref_result(c, MSA_REF_EXACT, g_exact.topk, msa_round_bf16, &base) == 0);
    CU_ASSERT_FATAL(copy_res(c, &base, &mix) == 0);
    arith("cpu-sim", MSA_ORDER_ASCENDING, &a);
    for (t = 0; t < c->Tq; t++) {
        msa_qinfo qi = msa_case_qinfo(c, t);
        int pos = qi.nkeys - 1, lkb = msa_case_lk(c, qi.b);
        if (pos < 0 || (kind == SUB_ONE_MORE && pos + 1 >= lkb)) continue;
        for (h = 0; h < c->Hq; h++) {
            size_t row = (size_t)t * c->Hq + h;
            const int32_t *ids = row_ids(c, g_exact.topk, h / (c->Hq / c->Hkv), t);
            int s, sel_next = 0;
            for (s = 0; s < c->topk; s++) sel_next |= ids[s] == (pos + 1) / c->block_size;
            if (kind == SUB_ONE_MORE && !sel_next) continue; /* the extra key's block is not selected */
            double w = kind == SUB_DROP_DIAG ? key_weight(c, t, h, pos, g_xlse[row])
                                             : key_weight(c, t, h, pos + 1, var.lse[row]);
            memcpy(mix.out + row * D, var.out + row * D, sizeof(double) * D);
            CU_ASSERT_FATAL(msa_judge_attention(c, &a, g_exact.topk, mix.out, NULL, g_exact.out,
                                                g_xlse, &v, &e) == 0);
            memcpy(mix.out + row * D, base.out + row * D, sizeof(double) * D);
            if (w >= W_REAL) heavy++;
            if (REJECTED(v)) {
                caught += w >= W_REAL;
                light_caught += w < W_REAL;
                wmin_caught = fmin(wmin_caught, w);
            } else if (w >= W_REAL) {
                printf("\n    NOT caught: row t=%d h=%d key weight %.4f", t, h, w);
            }
        }
    }
    printf("\n  oracle tightness %-20s rows with key weight >= 1/32: %d, caught by out alone: %d;"
           " lighter rows caught: %d; lightest caught weight %.4f", what, heavy, caught,
           light_caught, wmin_caught);
    CU_ASSERT(heavy > 20);
    CU_ASSERT_EQUAL(caught, heavy);
    kres_free(&var);
    kres_free(&mix);
    kres_free(&base);
    msa_case_free(&sc);
}

static void test_tight_diagonal(void) { NEED_FIXTURE(); tight_one_key(SUB_DROP_DIAG, "dropped diagonal"); }
static void test_tight_one_more(void) { NEED_FIXTURE(); tight_one_key(SUB_ONE_MORE, "one key more"); }

/* Seeded random cases (shapes, dtypes, distributions, paging, q scaled up to make the
 * softmax peaky): the simulated design kernel must pass under cpu-sim, the simulated fp32
 * kernel under fp32 (+ LSE merge), the reference's fast mode under exact-fp64.
 * MSA_ORACLE_RANDOM=N runs N cases (default 6). */
static void random_params(uint64_t i, msa_case_params *p, int *lq, int *lk)
{
    static const int dims[] = {32, 64, 128}, bsz[] = {16, 32, 64}, ratio[] = {1, 2, 3};
    static const msa_dtype dt[] = {MSA_DT_BF16, MSA_DT_BF16, MSA_DT_FP16, MSA_DT_FP32};
    static const msa_dist dist[] = {MSA_DIST_NORMAL, MSA_DIST_UNIFORM, MSA_DIST_HEAVY, MSA_DIST_SMALLINT};
    int b;
#define R(lo, hi) ((int)msa_rng_range(g_seed, 100 + i, n++, (lo), (hi)))
    uint64_t n = 0;
    memset(p, 0, sizeof *p);
    p->batch = R(1, 3);
    p->Hkv = R(1, 2);
    p->Hq = p->Hkv * ratio[R(0, 2)];
    p->D = dims[R(0, 2)];
    p->DI = dims[R(0, 2)];
    p->block_size = bsz[R(0, 2)];
    p->topk = R(1, 6);
    p->local_blocks = R(0, 1) && p->topk > 1;
    p->init_blocks = R(0, p->topk - p->local_blocks > 1 ? 1 : 0);
    p->dtype = dt[R(0, 3)];
    p->index_dtype = p->dtype;
    p->causal = R(0, 5) > 0;
    p->paged = R(0, 2);
    p->dist = dist[R(0, 3)];
    p->index_dist = dist[R(0, 3)];
    p->q_scale = R(0, 1) ? 1.0 : 3.0;
    p->seed = g_seed + i;
    for (b = 0; b < p->batch; b++) {
        lk[b] = R(1, 300);
        lq[b] = R(0, 1) ? lk[b] : R(1, lk[b] < 17 ? lk[b] : 17);
    }
    p->lq = lq;
    p->lk = lk;
#undef R
}

/* The simulated index branch with each low-precision key kind, judged under it. */
static void random_key_kinds(const msa_case *c, kres *r)
{
    static const struct {
        const char *profile;
        msa_key_kind key;
        int drop;
    } kk[] = {{"fp16-keys", MSA_KEY_FP16, 0}, {"q16-keys", MSA_KEY_Q16ROW, 0},
              {"radix-keys:20", MSA_KEY_RADIX, 20}};
    double *bs = calloc((size_t)c->HI * c->Tq * msa_case_max_blocks(c) + 1, sizeof(double));
    msa_verdict v;
    msa_arith a;
    msa_err e;
    size_t i;
    CU_ASSERT_FATAL(bs && msa_ref_select(c, MSA_REF_EXACT, NULL, bs, &e) == 0);
    for (i = 0; i < sizeof kk / sizeof kk[0]; i++) {
        sim_opts o = SIM_DESIGN;
        o.key = kk[i].key;
        o.drop_bits = kk[i].drop;
        sim_forward(c, &o, r);
        arith(kk[i].profile, MSA_ORDER_ASCENDING, &a);
        CU_ASSERT_EQUAL(msa_judge_selection(c, &a, r->topk, bs, &v, &e), 0);
        printf("\n  oracle random keys %-14s sel %s %s", kk[i].profile,
               msa_disposition_name(v.disp), v.detail);
        CU_ASSERT(PASSED(v));
    }
    free(bs);
}

/* Score-descending lists in the Hugging Face style: the forced (local) block first, also in
 * rows with nvis <= k, then the others by descending exact score.  Legal.  Swapping the two
 * best free blocks of a row whose scores differ beyond any band must be rejected. */
static const double *cmp_desc_ctx;
static int cmp_desc(const void *a, const void *b)
{
    int x = *(const int32_t *)a, y = *(const int32_t *)b;
    double sx = cmp_desc_ctx[x], sy = cmp_desc_ctx[y];
    return sx < sy ? 1 : sx > sy ? -1 : (x > y) - (x < y);
}

static void test_desc_forced_first(void)
{
    NEED_FIXTURE();
    const msa_case *c = &g_case;
    int nblk = msa_case_max_blocks(c), k = c->topk;
    size_t n = (size_t)c->HI * c->Tq * k;
    int32_t *ids = malloc(n * sizeof *ids), *bad = malloc(n * sizeof *bad);
    CU_ASSERT_FATAL(ids && bad);
    memcpy(ids, g_exact.topk, n * sizeof *ids);
    int swapped = 0;
    for (size_t r = 0; r < (size_t)c->HI * c->Tq; r++) {
        int32_t *row = ids + r * k;
        msa_qinfo qi = msa_case_qinfo(c, (int)(r % c->Tq));
        int cnt = 0;
        while (cnt < k && row[cnt] >= 0) cnt++;
        cmp_desc_ctx = g_bs + r * nblk;
        qsort(row, (size_t)cnt, sizeof *row, cmp_desc);
        for (int s = 0; s < cnt; s++) /* the local (own) block to the front */
            if (c->local_blocks && row[s] == qi.nvis - 1) {
                memmove(row + 1, row, (size_t)s * sizeof *row);
                row[0] = qi.nvis - 1;
                break;
            }
    }
    memcpy(bad, ids, n * sizeof *ids);
    for (size_t r = 0; r < (size_t)c->HI * c->Tq && !swapped; r++) { /* two free blocks, clear gap */
        int32_t *row = bad + r * k;
        msa_qinfo qi = msa_case_qinfo(c, (int)(r % c->Tq));
        const double *S = g_bs + r * nblk;
        for (int s = 1; s + 1 < k && row[s + 1] >= 0; s++) {
            int a0 = row[s], b0 = row[s + 1];
            int fa = a0 < c->init_blocks || a0 >= qi.nvis - c->local_blocks, fb = b0 < c->init_blocks || b0 >= qi.nvis - c->local_blocks;
            if (!fa && !fb && S[a0] - S[b0] > 1.0) {
                row[s] = b0, row[s + 1] = a0, swapped = 1;
                break;
            }
        }
    }
    msa_arith a;
    msa_verdict v;
    msa_err e;
    arith("cpu-sim", MSA_ORDER_SCORE_DESC, &a);
    CU_ASSERT_EQUAL(msa_judge_selection(c, &a, ids, g_bs, &v, &e), 0);
    printf("\n  oracle score-desc, local block first: sel %s %s", msa_disposition_name(v.disp), v.detail);
    CU_ASSERT(PASSED(v));
    CU_ASSERT_FATAL(swapped);
    CU_ASSERT_EQUAL(msa_judge_selection(c, &a, bad, g_bs, &v, &e), 0);
    printf("\n  oracle score-desc, two free blocks swapped: sel %s %s", msa_disposition_name(v.disp), v.detail);
    CU_ASSERT(!PASSED(v));
    free(ids);
    free(bad);
}

static void test_random_cases(void)
{
    const char *env = getenv("MSA_ORACLE_RANDOM");
    long i, n = env ? atol(env) : 6;
    double worst_design = 0, worst_fp32 = 0, worst_fast = 0;
    for (i = 0; i < n; i++) {
        msa_case_params p;
        int lq[3], lk[3];
        msa_case c;
        msa_err e;
        kres r = {0};
        msa_verdict sel, att;
        msa_arith a;
        sim_opts o = SIM_DESIGN;
        char desc[256];
        random_params((uint64_t)i, &p, lq, lk);
        if (msa_case_generate(&p, &c, &e)) {
            printf("\n  random case %ld: %s", i, e.msg);
            CU_FAIL("case generation");
            continue;
        }
        msa_case_describe(&c, desc, sizeof desc);
        printf("\n  oracle random %ld: %s", i, desc);
        CU_ASSERT_FATAL(kres_alloc(&c, &r) == 0);
        o.out_dtype = c.dtype == MSA_DT_BF16 || c.dtype == MSA_DT_FP16 ? c.dtype : MSA_DT_FP32;
        sim_forward(&c, &o, &r);
        judge_fwd(&c, "cpu-sim", MSA_ORDER_ASCENDING, &r, &sel, &att, "random: sim design");
        CU_ASSERT(PASSED(sel) && PASSED(att));
        worst_design = fmax(worst_design, att.worst_ratio);
        o.p_bf16 = 0;
        o.exp2_kind = 0;
        o.out_dtype = MSA_DT_FP32;
        sim_forward(&c, &o, &r);
        arith("fp32", MSA_ORDER_ASCENDING, &a);
        a.merge = MSA_MERGE_LSE;
        judge_fwd_a(&c, &a, &r, &sel, &att, "random: sim fp32");
        CU_ASSERT(PASSED(sel) && PASSED(att));
        worst_fp32 = fmax(worst_fp32, att.worst_ratio);
        random_key_kinds(&c, &r);
        kres_free(&r);
        CU_ASSERT_FATAL(ref_result(&c, MSA_REF_FAST, NULL, NULL, &r) == 0);
        judge_fwd(&c, "exact-fp64", MSA_ORDER_ASCENDING, &r, &sel, &att, "random: ref fast");
        CU_ASSERT(PASSED(sel) && PASSED(att));
        worst_fast = fmax(worst_fast, att.worst_ratio);
        kres_free(&r);
        msa_case_free(&c);
    }
    printf("\n  oracle random: %ld cases, worst ratio design %.3g, fp32 %.3g, fast %.3g", n,
           worst_design, worst_fp32, worst_fast);
}

/* Row parallelism (oracle/workers.c) must not change a verdict: the same judgements with
 * one worker and with seven ($MSA_ORACLE_THREADS), on an output with failures planted in an
 * early, a middle and a late row and a selection with a swapped id, agree field by field. */
static void same_verdict(const msa_verdict *a, const msa_verdict *b)
{
    CU_ASSERT_EQUAL(a->disp, b->disp);
    CU_ASSERT_EQUAL(a->checked, b->checked);
    CU_ASSERT_EQUAL(a->failed, b->failed);
    CU_ASSERT_EQUAL(a->worst_ratio, b->worst_ratio);
    CU_ASSERT_EQUAL(a->worst_lse_ratio, b->worst_lse_ratio);
    CU_ASSERT_EQUAL(a->ratio_p50, b->ratio_p50);
    CU_ASSERT_EQUAL(a->ratio_p99, b->ratio_p99);
    CU_ASSERT_STRING_EQUAL(a->stage, b->stage);
    CU_ASSERT_STRING_EQUAL(a->detail, b->detail);
    CU_ASSERT_EQUAL(memcmp(a->budget, b->budget, sizeof a->budget), 0);
    CU_ASSERT_EQUAL(a->sel_rows, b->sel_rows);
    CU_ASSERT_EQUAL(a->sel_ambiguous_rows, b->sel_ambiguous_rows);
    CU_ASSERT_EQUAL(a->sel_tie_choices, b->sel_tie_choices);
}

static void test_parallel_equals_serial(void)
{
    NEED_FIXTURE();
    const msa_case *c = &g_case;
    kres r = {0};
    msa_arith a;
    msa_err e;
    msa_verdict v[2][3];
    const char *old = getenv("MSA_ORACLE_THREADS");
    char *saved = old ? strdup(old) : NULL;
    size_t rows = (size_t)c->Tq * c->Hq, D = (size_t)c->D;
    CU_ASSERT_FATAL(copy_res(c, &g_exact, &r) == 0);
    arith("cuda", MSA_ORDER_ASCENDING, &a);
    for (size_t i = 0; i < rows * D; i++) r.out[i] = msa_bf16_to_double(msa_double_to_bf16(r.out[i]));
    r.out[1 * D + 3] += 0.01;                   /* an early row */
    r.out[(rows / 2) * D + 7] -= 0.02;          /* a middle row */
    r.out[(rows - 2) * D + 1] += 0.5;           /* a late row, the worst */
    r.lse[rows / 3] += 0.25f;
    for (int pass = 0; pass < 2; pass++) {
        setenv("MSA_ORACLE_THREADS", pass ? "7" : "1", 1);
        CU_ASSERT_EQUAL(msa_judge_attention(c, &a, g_exact.topk, r.out, r.lse, g_exact.out, g_xlse,
                                            &v[pass][0], &e), 0);
        CU_ASSERT_EQUAL(msa_judge_attention(c, &a, g_exact.topk, g_exact.out, NULL, g_exact.out,
                                            g_xlse, &v[pass][1], &e), 0);
        /* row t = 45 (sequence 1: 8 visible blocks, k 4): a block left out instead of one
         * chosen */
        int32_t *ids = r.topk + ((size_t)(c->HI - 1) * c->Tq + 45) * c->topk;
        int32_t keep = ids[0], b = 0;
        for (int found = 1; found && b < 8; b += found) {
            found = 0;
            for (int j = 0; j < c->topk; j++) found |= ids[j] == b;
        }
        ids[0] = b;
        CU_ASSERT_EQUAL(msa_judge_selection(c, &a, r.topk, g_bs, &v[pass][2], &e), 0);
        ids[0] = keep;
    }
    if (saved) setenv("MSA_ORACLE_THREADS", saved, 1);
    else unsetenv("MSA_ORACLE_THREADS");
    free(saved);
    CU_ASSERT(REJECTED(v[0][0]) && v[0][0].failed >= 3);
    CU_ASSERT(PASSED(v[0][1]));
    CU_ASSERT(REJECTED(v[0][2]));
    printf("\n  serial and 7 workers: %s / %s", v[0][0].detail, v[1][0].detail);
    for (int k = 0; k < 3; k++) same_verdict(&v[0][k], &v[1][k]);
    kres_free(&r);
}

int msa_suite_oracle(void)
{
    CU_pSuite s = CU_add_suite("oracle", suite_init, suite_clean);
    if (!s) return 1;
    if (!CU_add_test(s, "profiles", test_profiles) ||
        !CU_add_test(s, "bad input", test_bad_input) ||
        !CU_add_test(s, "accept exact rounded fp32/bf16", test_accept_rounded) ||
        !CU_add_test(s, "accept reference fast mode", test_accept_fast_mode) ||
        !CU_add_test(s, "accept simulated kernels", test_accept_sim_kernel) ||
        !CU_add_test(s, "accept declared orders", test_accept_orders) ||
        !CU_add_test(s, "accept ties the other way", test_accept_ties_other_way) ||
        !CU_add_test(s, "accept index scale and key kinds", test_accept_index_variants) ||
        !CU_add_test(s, "ambiguous band decisions", test_band_decisions) ||
        !CU_add_test(s, "judging against the fast reference", test_fast_reference_judging) ||
        !CU_add_test(s, "reject dropped diagonal", test_reject_dropped_diagonal) ||
        !CU_add_test(s, "reject one key too many", test_reject_one_key_more) ||
        !CU_add_test(s, "reject top-left alignment", test_reject_top_left) ||
        !CU_add_test(s, "reject shared selection", test_reject_shared_selection) ||
        !CU_add_test(s, "reject missing local block", test_reject_missing_local) ||
        !CU_add_test(s, "reject k-1 blocks", test_reject_k_minus_1) ||
        !CU_add_test(s, "reject k+1 blocks", test_reject_k_plus_1) ||
        !CU_add_test(s, "reject duplicate id", test_reject_duplicate) ||
        !CU_add_test(s, "reject head-to-group mapping", test_reject_head_group_mapping) ||
        !CU_add_test(s, "reject lse in log2", test_reject_lse_log2) ||
        !CU_add_test(s, "reject wrong softmax scale", test_reject_wrong_scale) ||
        !CU_add_test(s, "merge weights", test_merge_weights) ||
        !CU_add_test(s, "reject unwritten element", test_reject_unwritten) ||
        !CU_add_test(s, "empty rows", test_empty_rows) ||
        !CU_add_test(s, "dense identity", test_dense_identity) ||
        !CU_add_test(s, "tightness: dropped diagonal row by row", test_tight_diagonal) ||
        !CU_add_test(s, "tightness: one key more row by row", test_tight_one_more) ||
        !CU_add_test(s, "random cases", test_random_cases) ||
        !CU_add_test(s, "parallel judging = serial", test_parallel_equals_serial) ||
        !CU_add_test(s, "score-desc: forced blocks first is legal, misordered free blocks are not", test_desc_forced_first))
        return 1;
    return 0;
}
