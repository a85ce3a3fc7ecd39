/* cpusim.c - the cpu-sim backend: the variant table, the backend tables, the entry points
 * and the index branch (block scores and top-k selection), following docs/DESIGN.md
 * items 1-2 exactly so the CUDA kernels and the oracle's "cpu-sim" profile agree with it.
 * The main branch (KV-outer partials, merge, dense) is in cpusim_attn.c.
 * It sees only common/ and the ABI; it never includes the reference or the oracle, and it
 * does not try to be fast (single thread, inputs decoded to fp32 once per call). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpusim.h"
#include "cs_internal.h"
#include "harness.h"

/* ---- variant table ---- */
static const msa_cpusim_variant_info g_info[] = {
#define CS_INFO(e, n, l, w) {n, l, w},
    CS_VARIANTS(CS_INFO)
#undef CS_INFO
    {NULL, 0, NULL}};

const msa_cpusim_variant_info *msa_cpusim_variants(void) { return g_info; }

typedef struct {
    int variant;
    char err[512];
} cs_ctx;

/* One init function per variant: the ABI's init(void **ctx) carries no table pointer. */
static int cs_init_variant(void **ctx, int v)
{
    cs_ctx *c = calloc(1, sizeof *c);
    if (!c) return MSA_ENOMEM;
    c->variant = v;
    *ctx = c;
    return 0;
}
#define CS_INITFN(e, n, l, w) \
    static int cs_init_##e(void **ctx) { return cs_init_variant(ctx, CS_V_##e); }
CS_VARIANTS(CS_INITFN)
#undef CS_INITFN
static int (*const g_init[CS_V_COUNT])(void **) = {
#define CS_INITPTR(e, n, l, w) cs_init_##e,
    CS_VARIANTS(CS_INITPTR)
#undef CS_INITPTR
};

static void cs_fini(void *ctx) { free(ctx); }
static const char *cs_last_error(void *ctx) { return ctx ? ((cs_ctx *)ctx)->err : "no context"; }

static int cs_set_err(cs_ctx *c, int code, const char *msg)
{
    snprintf(c->err, sizeof c->err, "%s", msg);
    return code;
}

static int dtype_ok(msa_dtype t)
{
    return t == MSA_DT_BF16 || t == MSA_DT_FP16 || t == MSA_DT_FP32 || t == MSA_DT_E4M3;
}

static int cs_supports(void *ctx, const msa_problem *p)
{
    cs_ctx *c = ctx;
    if (!p || p->abi_version != MSA_ABI_VERSION) return cs_set_err(c, MSA_EUNSUPPORTED, "abi_version");
    if (!dtype_ok(p->dtype) || !dtype_ok(p->index_dtype))
        return cs_set_err(c, MSA_EUNSUPPORTED, "cpu-sim: dtype must be bf16, fp16, fp32 or e4m3");
    if (p->Hkv <= 0 || p->Hq % p->Hkv || p->HI != p->Hkv || p->D <= 0 || p->DI <= 0)
        return cs_set_err(c, MSA_EUNSUPPORTED, "cpu-sim: needs Hq % Hkv == 0, HI == Hkv, D, DI > 0");
    /* split2 halves a block, so the block must have an even size (MSA.md: 16..128). */
    if (p->block_size < 2 || p->block_size % 2 || p->topk < 1)
        return cs_set_err(c, MSA_EUNSUPPORTED, "cpu-sim: needs an even block_size >= 2 and topk >= 1");
    return 0;
}

/* ---- index branch (design item 1) ---- */

/* Index score s[g,t,j] = c_I * fp32 dot(iq[t,g], ik[row]). */
static float index_score(const cs_run *r, int t, int g, int64_t row)
{
    const msa_problem *p = r->p;
    int n = r->v == CS_V_INDEX_HALF_DIMS ? p->DI / 2 : p->DI;
    const float *a = r->iq + ((size_t)t * p->HI + g) * p->DI, *b = r->ik + (size_t)row * p->DI;
    float acc = 0.0f;
    if (r->v == CS_V_REVERSE_SUM)
        for (int d = n - 1; d >= 0; d--) acc += a[d] * b[d];
    else
        for (int d = 0; d < n; d++) acc += a[d] * b[d];
    float scale = r->v == CS_V_INDEX_SCALE_ONE ? 1.0f : p->index_scale;
    return scale * acc;
}

/* S[g,t,0..nblk): max over visible tokens of each block, -inf where none is visible. */
static void block_scores_row(const cs_run *r, int t, int g, float *S)
{
    const msa_problem *p = r->p;
    int b = r->seq[t], B = p->block_size;
    int lk = p->cu_seqlens_k_host[b + 1] - p->cu_seqlens_k_host[b];
    /* index-mask-after-max: the max runs over every key < Lk, the mask only drops
     * blocks past nvis afterwards, so the diagonal block sees its future keys. */
    int lim = r->v == CS_V_MASK_AFTER_MAX ? lk : r->nkeys[t];
    for (int blk = 0; blk < p->nblk; blk++) {
        float m = -INFINITY;
        int j0 = blk * B, j1 = j0 + B < lim ? j0 + B : lim;
        for (int j = j0; j < j1; j++) {
            float s = index_score(r, t, g, cs_kv_row(r, b, j));
            if (s > m) m = s;
        }
        S[blk] = blk < r->nvis[t] ? m : -INFINITY;
    }
}

/* ---- selection (design item 2) ---- */
typedef struct {
    float s;
    int id;
} cand;

/* Score descending; NaN ranks lowest so a broken input still gives a deterministic order. */
static int score_cmp(const cand *x, const cand *y)
{
    int xn = isnan(x->s), yn = isnan(y->s);
    if (xn != yn) return xn - yn;
    if (!xn && x->s != y->s) return x->s > y->s ? -1 : 1;
    return 0;
}
static int cand_cmp_low(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    int c = score_cmp(x, y);
    return c ? c : x->id - y->id; /* exact ties: lower block id first (design item 2) */
}
static int cand_cmp_high(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    int c = score_cmp(x, y);
    return c ? c : y->id - x->id; /* tie-high variant */
}
static int int_cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Picks up to kk ids of one (g, t) row into ids (ascending); returns the count. */
static int select_row(const cs_run *r, const float *S, int nvis, int kk, int *ids, cand *tmp)
{
    const msa_problem *p = r->p;
    if (nvis <= kk) {
        for (int i = 0; i < nvis; i++) ids[i] = i;
        return nvis;
    }
    int init = p->init_blocks, local = r->v == CS_V_MISSING_LOCAL ? 0 : p->local_blocks;
    int n = 0, nc = 0;
    for (int i = 0; i < init; i++) ids[n++] = i;
    for (int i = nvis - local; i < nvis; i++) ids[n++] = i;
    for (int i = init; i < nvis - local; i++) tmp[nc++] = (cand){S[i], i};
    qsort(tmp, (size_t)nc, sizeof *tmp, r->v == CS_V_TIE_HIGH ? cand_cmp_high : cand_cmp_low);
    for (int i = 0; n < kk && i < nc; i++) ids[n++] = tmp[i].id;
    if (n > kk) n = kk; /* only k-minus-one with init + local == k gets here */
    qsort(ids, (size_t)n, sizeof *ids, int_cmp);
    return n;
}

/* Applies the output order of the variant to an ascending row. */
static void order_row(const cs_run *r, const float *S, int nvis, int *ids, int n, cand *tmp)
{
    if (r->v == CS_V_ORDER_DESC || r->v == CS_V_ORDER_UNDECLARED) {
        for (int i = 0; i < n; i++) tmp[i] = (cand){S[ids[i]], ids[i]};
        qsort(tmp, (size_t)n, sizeof *tmp, cand_cmp_low);
        for (int i = 0; i < n; i++) ids[i] = tmp[i].id;
    } else if (r->v == CS_V_ORDER_LOCAL_LAST) {
        /* MiniMax's convention: the others unordered (here: by descending score), the
         * query's own block in the last valid slot. */
        int m = 0, has_local = 0;
        for (int i = 0; i < n; i++) {
            if (ids[i] == nvis - 1) has_local = 1;
            else tmp[m++] = (cand){S[ids[i]], ids[i]};
        }
        qsort(tmp, (size_t)m, sizeof *tmp, cand_cmp_low);
        for (int i = 0; i < m; i++) ids[i] = tmp[i].id;
        if (has_local) ids[m] = nvis - 1;
    }
    if (r->v == CS_V_DUPLICATE_ID && n >= 2) ids[n - 1] = ids[n - 2];
}

/* Fills topk [HI][Tq][stride] with kk ids per row (-1 tail); block_scores optional. */
static int run_select(cs_run *r, int kk, int stride, int32_t *topk, float *scores)
{
    const msa_problem *p = r->p;
    size_t nb = (size_t)(p->nblk > 0 ? p->nblk : 1);
    float *S = malloc(nb * sizeof *S);
    int *ids = malloc(((size_t)kk + nb) * sizeof *ids);
    cand *tmp = malloc(nb * sizeof *tmp);
    if (!S || !ids || !tmp) {
        free(S), free(ids), free(tmp);
        return MSA_ENOMEM;
    }
    for (int g = 0; g < p->HI; g++)
        for (int t = 0; t < r->Tq; t++) {
            /* shared-selection: every group ranks group 0's scores. */
            int gs = r->v == CS_V_SHARED_SEL ? 0 : g;
            block_scores_row(r, t, gs, S);
            if (scores && gs != g) block_scores_row(r, t, g, scores + ((size_t)g * r->Tq + t) * nb);
            else if (scores) memcpy(scores + ((size_t)g * r->Tq + t) * nb, S, (size_t)p->nblk * sizeof *S);
            if (!topk) continue;
            int kr = kk;
            if (r->v == CS_V_K_MINUS_ONE && r->nvis[t] > kk) kr = kk - 1;
            int n = select_row(r, S, r->nvis[t], kr, ids, tmp);
            order_row(r, S, r->nvis[t], ids, n, tmp);
            int32_t *row = topk + ((size_t)g * r->Tq + t) * (size_t)stride;
            for (int i = 0; i < stride; i++) row[i] = i < n ? ids[i] : -1;
        }
    free(S), free(ids), free(tmp);
    return 0;
}

/* ---- entry points ---- */
static int prepare(cs_ctx *c, cs_run *r, const msa_problem *p, int need_main, int need_index)
{
    int rc = cs_supports(c, p);
    if (rc) return rc;
    rc = cs_run_prepare(r, p, c->variant, need_main, need_index, c->err, sizeof c->err);
    return rc;
}

static int cs_index_scores(void *ctx, const msa_problem *p, float *block_scores)
{
    cs_run r;
    int rc = prepare(ctx, &r, p, 0, 1);
    if (rc) return rc;
    rc = run_select(&r, p->topk, p->topk, NULL, block_scores);
    cs_run_free(&r);
    return rc ? cs_set_err(ctx, rc, "cpu-sim: out of memory in index_scores") : 0;
}

static int cs_select(void *ctx, const msa_problem *p, int32_t *topk)
{
    cs_run r;
    int rc = prepare(ctx, &r, p, 0, 1);
    if (rc) return rc;
    rc = run_select(&r, p->topk, p->topk, topk, NULL);
    cs_run_free(&r);
    return rc ? cs_set_err(ctx, rc, "cpu-sim: out of memory in select") : 0;
}

static int cs_attend_entry(void *ctx, const msa_problem *p, const int32_t *topk, void *out, float *lse)
{
    cs_ctx *c = ctx;
    cs_run r;
    int rc = prepare(c, &r, p, 1, 0);
    if (rc) return rc;
    rc = cs_attend(&r, topk, p->topk, out, lse, c->err, sizeof c->err);
    cs_run_free(&r);
    return rc;
}

static int cs_forward(void *ctx, const msa_problem *p, int32_t *topk, void *out, float *lse)
{
    cs_ctx *c = ctx;
    cs_run r;
    int rc = prepare(c, &r, p, 1, 1);
    if (rc) return rc;
    rc = run_select(&r, p->topk, p->topk, topk, NULL);
    if (!rc && c->variant == CS_V_K_PLUS_ONE) {
        /* The consumer runs with k+1 slots from its own buffer; the output shows k. */
        int32_t *wide = malloc((size_t)p->HI * (size_t)r.Tq * (size_t)(p->topk + 1) * sizeof *wide + 1);
        rc = wide ? run_select(&r, p->topk + 1, p->topk + 1, wide, NULL) : MSA_ENOMEM;
        if (!rc) rc = cs_attend(&r, wide, p->topk + 1, out, lse, c->err, sizeof c->err);
        free(wide);
    } else if (!rc) {
        rc = cs_attend(&r, topk, p->topk, out, lse, c->err, sizeof c->err);
    }
    if (rc == MSA_ENOMEM) cs_set_err(c, rc, "cpu-sim: out of memory in forward");
    cs_run_free(&r);
    return rc;
}

/* No graph on the CPU: "replay" is forward run `replays` times into the same buffers, so
 * the suite's replay check (bitwise equal to forward) runs in CI too. */
static int cs_forward_replay(void *ctx, const msa_problem *p, int replays, int32_t *topk, void *out,
                             float *lse)
{
    int rc = 0;
    for (int i = 0; !rc && i < (replays > 0 ? replays : 1); i++) rc = cs_forward(ctx, p, topk, out, lse);
    return rc;
}

static int cs_dense_entry(void *ctx, const msa_problem *p, void *out, float *lse)
{
    cs_ctx *c = ctx;
    cs_run r;
    int rc = prepare(c, &r, p, 1, 0);
    if (rc) return rc;
    rc = cs_dense(&r, out, lse, c->err, sizeof c->err);
    cs_run_free(&r);
    return rc;
}

/* ---- declarations ---- */
/* glibc's exp2f/expf/logf (the 2.28+ implementations) are within 1 ulp of the correctly
 * rounded result (glibc manual, "Known Maximum Errors in Math Functions"), i.e. relative
 * error <= 2^-23 for normal results; 2^-22 leaves a factor-2 margin (docs/ABI.md).  The
 * oracle's "cpu-sim" profile uses the same value. */
#define CS_EXP_REL_ERR 0x1p-22

static msa_arith cs_arith(int v)
{
    msa_arith a;
    memset(&a, 0, sizeof a);
    a.out_dtype = MSA_DT_INVALID; /* follows the input: bf16, fp16, else fp32 (cs_out_dtype) */
    a.accum_bits = 24;
    a.p_dtype = v == CS_V_P_FP32 ? MSA_DT_FP32 : MSA_DT_INVALID; /* fp16 for fp16 inputs, else bf16 */
    a.exp_kind = MSA_EXP_EXP2;
    a.exp_rel_err = CS_EXP_REL_ERR;
    a.merge = MSA_MERGE_LSE;
    /* 0: one partial per selected block; negative -m: m partials per selected block
     * (docs/ABI.md; proposed to the lead for msa_abi.h). */
    a.max_partials = v == CS_V_SPLIT2 ? -2 : 0;
    a.key_kind = MSA_KEY_FP32;
    a.order = v == CS_V_ORDER_DESC ? MSA_ORDER_SCORE_DESC
              : v == CS_V_ORDER_LOCAL_LAST ? MSA_ORDER_LOCAL_LAST : MSA_ORDER_ASCENDING;
    a.index_accum_bits = 24;
    return a;
}

static msa_backend g_tables[CS_V_COUNT];
static char g_names[CS_V_COUNT][64];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_tables_once(void)
{
    for (int v = 0; v < CS_V_COUNT; v++) {
        msa_backend *b = &g_tables[v];
        memset(b, 0, sizeof *b);
        if (v == CS_V_NONE) snprintf(g_names[v], sizeof g_names[v], "cpu-sim");
        else snprintf(g_names[v], sizeof g_names[v], "cpu-sim:%s", g_info[v].name);
        b->abi_version = MSA_ABI_VERSION;
        b->name = g_names[v];
        b->description = g_info[v].what;
        b->mem = MSA_MEM_HOST;
        b->arith = cs_arith(v);
        b->init = g_init[v];
        b->fini = cs_fini;
        b->last_error = cs_last_error;
        b->supports = cs_supports;
        b->index_scores = cs_index_scores;
        b->select = cs_select;
        b->attend = cs_attend_entry;
        b->forward = cs_forward;
        b->dense = cs_dense_entry;
        b->forward_replay = cs_forward_replay;
    }
}
static void build_tables(void) { pthread_once(&g_once, build_tables_once); }

const msa_backend *msa_cpusim_variant(const char *name)
{
    if (!name) return NULL;
    build_tables();
    for (int v = 0; v < CS_V_COUNT; v++)
        if (!strcmp(name, g_info[v].name)) return &g_tables[v];
    return NULL;
}

const msa_backend *msa_cpusim_backend(void) { return msa_cpusim_variant("none"); }
