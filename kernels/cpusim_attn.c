/* cpusim_attn.c - cpu-sim's main branch, docs/DESIGN.md items 3-6: input decoding and
 * per-query positions, the k2q CSR (for each (KV head, block) the (query, slot) pairs
 * that chose it), KV-outer partials normalised within their block with a partial LSE,
 * the merge, and dense causal GQA through the same partials and merge.
 * Workspace is O(Tq * (Hq/Hkv) * k * D) for the partials of one KV group at a time plus
 * O(Hkv * (Tq * k + blocks)) for the CSR: never O(N^2).  Not fast, not threaded: it fixes the arithmetic, not the speed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "../common/numfmt.h"
#include "cs_internal.h"

/* The deterministic "uninitialised" workspace contents: what a reused GPU workspace
 * might hold.  Only the uninit-partial variant ever reads them. */
#define CS_STALE_LSE 0.0f
#define CS_STALE_O 1.0f

static const float CS_LN2 = 0.693147180559945309417f;
static const double CS_LOG2E = 1.44269504088896340736;

msa_dtype cs_out_dtype(msa_dtype declared, msa_dtype input)
{
    if (declared != MSA_DT_INVALID) return declared;
    return input == MSA_DT_BF16 || input == MSA_DT_FP16 ? input : MSA_DT_FP32;
}

static float *decode(msa_dtype t, const void *src, size_t n)
{
    float *f = malloc((n ? n : 1) * sizeof *f);
    if (!f) return NULL;
    for (size_t i = 0; i < n; i++) f[i] = (float)msa_dtype_load(t, src, i); /* exact */
    return f;
}

static int positions(cs_run *r)
{
    const msa_problem *p = r->p;
    int causal = p->causal && r->v != CS_V_NONCAUSAL, B = p->block_size;
    const int32_t *cq = p->cu_seqlens_q_host, *ck = p->cu_seqlens_k_host;
    r->blk_base[0] = 0;
    for (int b = 0; b < p->batch; b++) {
        int lq = cq[b + 1] - cq[b], lk = ck[b + 1] - ck[b];
        r->nblocks[b] = (lk + B - 1) / B;
        r->blk_base[b + 1] = r->blk_base[b] + r->nblocks[b];
        for (int i = 0; i < lq; i++) {
            int t = cq[b] + i;
            if (t < 0 || t >= r->Tq) return MSA_EINPUT;
            int pos = r->v == CS_V_TOP_LEFT ? i : lk - lq + i, nk = lk;
            if (causal) {
                nk = pos + 1;
                if (r->v == CS_V_DIAG_DROP) nk = pos;
                if (r->v == CS_V_DIAG_EXTRA) nk = pos + 2;
                nk = nk < 0 ? 0 : nk > lk ? lk : nk;
            }
            r->seq[t] = b;
            r->nkeys[t] = nk;
            r->nvis[t] = (nk + B - 1) / B;
        }
    }
    r->total_blocks = r->blk_base[p->batch];
    return 0;
}

int cs_run_prepare(cs_run *r, const msa_problem *p, int variant, int need_main, int need_index,
                   char *err, size_t errn)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    r->v = variant;
    r->Tq = p->total_q;
    size_t Tq = (size_t)p->total_q, rows = (size_t)p->kv_rows, nb = (size_t)p->batch;
    r->seq = calloc(Tq + 1, sizeof(int));
    r->nkeys = calloc(Tq + 1, sizeof(int));
    r->nvis = calloc(Tq + 1, sizeof(int));
    r->nblocks = calloc(nb + 1, sizeof(int));
    r->blk_base = calloc(nb + 2, sizeof(int));
    int bad = !r->seq || !r->nkeys || !r->nvis || !r->nblocks || !r->blk_base;
    if (!bad && need_main) {
        r->q = decode(p->dtype, p->q, Tq * (size_t)p->Hq * (size_t)p->D);
        r->k = decode(p->dtype, p->k, rows * (size_t)p->Hkv * (size_t)p->D);
        r->vv = decode(p->dtype, p->v, rows * (size_t)p->Hkv * (size_t)p->D);
        bad = !r->q || !r->k || !r->vv;
    }
    if (!bad && need_index) {
        r->iq = decode(p->index_dtype, p->index_q, Tq * (size_t)p->HI * (size_t)p->DI);
        r->ik = decode(p->index_dtype, p->index_k, rows * (size_t)p->DI);
        bad = !r->iq || !r->ik;
    }
    if (bad) {
        cs_run_free(r);
        snprintf(err, errn, "cpu-sim: out of memory decoding inputs");
        return MSA_ENOMEM;
    }
    if (positions(r)) {
        cs_run_free(r);
        snprintf(err, errn, "cpu-sim: cu_seqlens_q inconsistent with total_q");
        return MSA_EINPUT;
    }
    return 0;
}

void cs_run_free(cs_run *r)
{
    free(r->q), free(r->k), free(r->vv), free(r->iq), free(r->ik);
    free(r->seq), free(r->nkeys), free(r->nvis), free(r->nblocks), free(r->blk_base);
    memset(r, 0, sizeof *r);
}

int64_t cs_kv_row(const cs_run *r, int b, int j)
{
    const msa_problem *p = r->p;
    int B = p->block_size;
    if (p->page_table_host && p->max_blocks > 0)
        return (int64_t)p->page_table_host[(size_t)b * p->max_blocks + j / B] * B + j % B;
    return (int64_t)p->cu_seqlens_k_host[b] + j;
}

int cs_group(const cs_run *r, int h)
{
    const msa_problem *p = r->p;
    return r->v == CS_V_GROUP_MAP ? h % p->Hkv : h / (p->Hq / p->Hkv);
}

/* ---- one partial (design item 3) ---- */

/* Keys [j0, j1) of block `id` visible to query t (half: 0/1 for split2, -1 whole). */
static void key_range(const cs_run *r, int t, int id, int half, int *j0, int *j1)
{
    const msa_problem *p = r->p;
    int B = p->block_size, b = r->seq[t];
    int lo = id * B, hi = lo + B, lim = r->nkeys[t];
    if (half >= 0) {
        lo += half * (B / 2);
        hi = lo + B / 2;
    }
    int lk = p->cu_seqlens_k_host[b + 1] - p->cu_seqlens_k_host[b];
    if (r->v == CS_V_UNMASKED_TAIL && id == r->nblocks[b] - 1 && lk % B) {
        lim = hi; /* the bug: the partial last block loaded without any mask */
        if (!(p->page_table_host && p->max_blocks > 0)) {
            /* packed storage: stay inside the buffer (the simulator must not crash) */
            int64_t room = (int64_t)p->kv_rows - p->cu_seqlens_k_host[b];
            if (lim > room) lim = (int)room;
        }
    }
    *j0 = lo;
    *j1 = hi < lim ? hi : lim;
}

static float dot(const cs_run *r, const float *a, const float *b, int n)
{
    float acc = 0.0f;
    if (r->v == CS_V_REVERSE_SUM)
        for (int d = n - 1; d >= 0; d--) acc += a[d] * b[d];
    else
        for (int d = 0; d < n; d++) acc += a[d] * b[d];
    return acc;
}

/* x_j = s_j * (scale * log2 e rounded to fp32), the exp2 prescale of design item 3. */
static float scale_log2(const cs_run *r)
{
    double s = r->v == CS_V_WRONG_SCALE ? 1.0 / r->p->D : (double)r->p->softmax_scale;
    return (float)(s * CS_LOG2E);
}

/* P rounded to the input's 16-bit type before P.V (fp16 for fp16 inputs, as the GPU's
 * P.V MMA needs P in V's type; bf16 otherwise): the declared p_dtype "follows input". */
static float round_p(const cs_run *r, float p)
{
    if (r->v == CS_V_P_FP32) return p;
    return (float)(r->p->dtype == MSA_DT_FP16 ? msa_round_fp16((double)p) : msa_round_bf16((double)p));
}

/* Partial O (normalised within the block) and LSE of query t, head h over keys [j0, j1). */
static void partial(const cs_run *r, int t, int h, int g, int j0, int j1, float *x, float *o,
                    float *lse)
{
    const msa_problem *p = r->p;
    int D = p->D, b = r->seq[t], n = j1 - j0, rev = r->v == CS_V_REVERSE_SUM;
    memset(o, 0, (size_t)D * sizeof *o);
    if (n <= 0) {
        *lse = -INFINITY; /* no visible key: contributes nothing */
        return;
    }
    const float *qv = r->q + ((size_t)t * p->Hq + h) * D;
    float sl2 = scale_log2(r), m = -INFINITY, l = 0.0f;
    for (int i = 0; i < n; i++) {
        const float *kv = r->k + ((size_t)cs_kv_row(r, b, j0 + i) * p->Hkv + g) * D;
        x[i] = dot(r, qv, kv, D) * sl2;
        if (x[i] > m) m = x[i];
    }
    if (r->v == CS_V_NO_MAX_SUB) m = 0.0f;
    for (int i = 0; i < n; i++) x[i] = round_p(r, exp2f(x[i] - m));
    for (int ii = 0; ii < n; ii++) {
        int i = rev ? n - 1 - ii : ii;
        l += x[i];
        const float *vv = r->vv + ((size_t)cs_kv_row(r, b, j0 + i) * p->Hkv + g) * D;
        for (int d = 0; d < D; d++) {
            o[d] += x[i] * vv[d];
            if (r->v == CS_V_ACCUM_BF16) o[d] = (float)msa_round_bf16((double)o[d]);
        }
    }
    for (int d = 0; d < D; d++) o[d] /= l;
    *lse = (m + log2f(l)) * CS_LN2;
}

/* ---- the merge (design item 4) ---- */

static int valid_or(const unsigned char *valid, int nslot, int s) { return s < nslot && valid[s]; }

/* Merges the partials of one row.  valid[s]: slot s holds a partial; extra >= 0: a slot
 * the uninit-partial variant reads as well. */
static void merge(const cs_run *r, const float *wo, const float *wl, const unsigned char *valid,
                  int nslot, int extra, float *o, float *lse)
{
    int D = r->p->D, rev = r->v == CS_V_REVERSE_SUM, nan_bug = r->v == CS_V_MERGE_NAN;
    float M = -INFINITY, sumw = 0.0f, n = 0.0f;
    int last = extra >= nslot ? extra : nslot - 1;
#define CS_USED(s) (valid_or(valid, nslot, s) || (s) == extra || nan_bug)
#define CS_LSE(s) (valid_or(valid, nslot, s) || (s) == extra ? wl[s] : -INFINITY)
    for (int s = 0; s <= last; s++)
        if (CS_USED(s) && CS_LSE(s) > M) M = CS_LSE(s);
    memset(o, 0, (size_t)D * sizeof *o);
    if (M == -INFINITY && !nan_bug) { /* empty row: O = 0, LSE = -inf, never NaN */
        if (r->v == CS_V_EMPTY_ROW_NAN)
            for (int d = 0; d < D; d++) o[d] = NAN;
        *lse = -INFINITY;
        return;
    }
    for (int ss = 0; ss <= last; ss++) {
        int s = rev ? last - ss : ss;
        if (CS_USED(s)) sumw += expf(CS_LSE(s) - M), n += 1.0f;
    }
    for (int ss = 0; ss <= last; ss++) {
        int s = rev ? last - ss : ss;
        if (!CS_USED(s)) continue;
        int has = valid_or(valid, nslot, s) || s == extra;
        float w = r->v == CS_V_MERGE_WEIGHTS ? 1.0f / n : expf(CS_LSE(s) - M) / sumw;
        for (int d = 0; d < D; d++) o[d] += w * (has ? wo[(size_t)s * D + d] : 0.0f);
    }
#undef CS_USED
#undef CS_LSE
    *lse = M + logf(sumw);
    if (r->v == CS_V_LSE_LOG2) *lse = (float)(*lse * CS_LOG2E);
}

/* ---- output ---- */
static void store_row(const cs_run *r, void *out, float *lse, int t, int h, const float *o, float l)
{
    const msa_problem *p = r->p;
    msa_dtype od = cs_out_dtype(MSA_DT_INVALID, p->dtype);
    size_t base = ((size_t)t * p->Hq + h) * p->D;
    for (int d = 0; d < p->D; d++) {
        if (r->v == CS_V_UNWRITTEN && t == r->Tq - 1 && h == p->Hq - 1 && d == p->D - 1) continue;
        if (od == MSA_DT_BF16) {
            uint16_t u = msa_double_to_bf16((double)o[d]);
            memcpy((char *)out + 2 * (base + d), &u, 2);
        } else if (od == MSA_DT_FP16) {
            uint16_t u = msa_double_to_fp16((double)o[d]);
            memcpy((char *)out + 2 * (base + d), &u, 2);
        } else {
            memcpy((char *)out + 4 * (base + d), &o[d], 4);
        }
    }
    lse[(size_t)t * p->Hq + h] = l;
}

/* ---- KV-outer attention (design items 3-5) ---- */
typedef struct {
    int *off;     /* [Hkv * total_blocks + 1] */
    int32_t *ent; /* (query, slot) pairs */
} cs_csr;

/* The id the consumer reads for (g, t, slot s), with the layout and -1 variants. */
static int eff_id(const cs_run *r, const int32_t *ids, int stride, int g, int t, int s)
{
    const msa_problem *p = r->p;
    size_t i = r->v == CS_V_TOPK_LAYOUT ? ((size_t)t * p->HI + g) * stride + s
                                        : ((size_t)g * r->Tq + t) * stride + s;
    int id = ids[i];
    if (id == -1 && r->v == CS_V_MINUS_ONE_INDEX) id = r->nblocks[r->seq[t]] - 1;
    /* ids outside the sequence's blocks read nothing (the simulator must not crash) */
    return id >= 0 && id < r->nblocks[r->seq[t]] ? id : -1;
}

static int csr_build(const cs_run *r, const int32_t *ids, int stride, cs_csr *c)
{
    const msa_problem *p = r->p;
    size_t nkey = (size_t)p->Hkv * r->total_blocks, cap;
    if (msa_mul_size((size_t)p->Hkv * r->Tq, (size_t)stride * 2, &cap)) return MSA_ENOMEM;
    c->off = calloc(nkey + 2, sizeof *c->off);
    c->ent = malloc((cap ? cap : 1) * sizeof *c->ent);
    if (!c->off || !c->ent) return MSA_ENOMEM;
    for (int pass = 0; pass < 2; pass++) {
        for (int g = 0; g < p->Hkv; g++)
            for (int t = 0; t < r->Tq; t++)
                for (int s = 0; s < stride; s++) {
                    int id = eff_id(r, ids, stride, g, t, s);
                    if (id < 0) continue;
                    size_t key = (size_t)g * r->total_blocks + r->blk_base[r->seq[t]] + id;
                    if (pass == 0) {
                        c->off[key + 2]++;
                    } else {
                        int at = c->off[key + 1]++;
                        c->ent[2 * at] = t, c->ent[2 * at + 1] = s;
                    }
                }
        if (pass == 0) /* exclusive prefix sum shifted by one: off[key+1] is the cursor */
            for (size_t i = 2; i < nkey + 2; i++) c->off[i] += c->off[i - 1];
    }
    return 0;
}

typedef struct {
    float *o, *lse, *x;
    unsigned char *valid;
    size_t slots; /* partial slots per (query, head) row */
} cs_ws;

static int ws_alloc(const cs_run *r, size_t rows, size_t slots, size_t xlen, cs_ws *w)
{
    size_t n, nd;
    memset(w, 0, sizeof *w);
    w->slots = slots;
    /* one spare slot at the end: the uninit-partial variant reads it for the last row */
    if (msa_mul_size(rows, slots, &n) || n + 1 < n || msa_mul_size(n + 1, (size_t)r->p->D, &nd))
        return MSA_ENOMEM;
    w->o = malloc(nd * sizeof *w->o);
    w->lse = malloc((n + 1) * sizeof *w->lse);
    w->x = malloc((xlen ? xlen : 1) * sizeof *w->x);
    w->valid = calloc(slots + 1, 1);
    if (!w->o || !w->lse || !w->x || !w->valid) return MSA_ENOMEM;
    for (size_t i = 0; i < nd; i++) w->o[i] = CS_STALE_O;
    for (size_t i = 0; i < n + 1; i++) w->lse[i] = CS_STALE_LSE;
    return 0;
}

static void ws_free(cs_ws *w) { free(w->o), free(w->lse), free(w->x), free(w->valid); }

/* Index of head h among its group's heads (the workspace holds one group at a time). */
static int head_in_group(const cs_run *r, int h)
{
    int hpg = r->p->Hq / r->p->Hkv;
    return r->v == CS_V_GROUP_MAP ? h / r->p->Hkv : h % hpg;
}

/* All partials of one (query, block) pair into the row's slot(s). */
static void block_partials(const cs_run *r, cs_ws *w, size_t row0, int t, int g, int id, int s)
{
    const msa_problem *p = r->p;
    int split = r->v == CS_V_SPLIT2;
    for (int h = 0; h < p->Hq; h++) {
        if (cs_group(r, h) != g) continue;
        for (int half = 0; half < (split ? 2 : 1); half++) {
            int j0, j1;
            key_range(r, t, id, split ? half : -1, &j0, &j1);
            size_t slot = (row0 + (size_t)head_in_group(r, h)) * w->slots + (size_t)(split ? 2 * s + half : s);
            partial(r, t, h, g, j0, j1, w->x, w->o + slot * p->D, w->lse + slot);
        }
    }
}

/* Merges the rows of group g's heads. */
static void merge_rows(const cs_run *r, int g, const int32_t *ids, int stride, cs_ws *w, void *out,
                       float *lse, float *orow)
{
    const msa_problem *p = r->p;
    int per = r->v == CS_V_SPLIT2 ? 2 : 1, hpg = p->Hq / p->Hkv;
    for (int t = 0; t < r->Tq; t++)
        for (int h = 0; h < p->Hq; h++) {
            if (cs_group(r, h) != g) continue;
            int count = 0;
            for (int s = 0; s < stride; s++) {
                int ok = ids ? eff_id(r, ids, stride, g, t, s) >= 0 : s < r->nvis[t];
                for (int k = 0; k < per; k++) w->valid[s * per + k] = (unsigned char)ok;
                count += ok;
            }
            size_t slot0 = ((size_t)t * hpg + head_in_group(r, h)) * w->slots;
            int extra = r->v == CS_V_UNINIT_PARTIAL ? count * per : -1;
            float l;
            merge(r, w->o + slot0 * p->D, w->lse + slot0, w->valid, (int)w->slots, extra, orow, &l);
            store_row(r, out, lse, t, h, orow, l);
        }
}

int cs_attend(cs_run *r, const int32_t *ids, int stride, void *out, float *lse, char *err,
              size_t errn)
{
    const msa_problem *p = r->p;
    int per = r->v == CS_V_SPLIT2 ? 2 : 1;
    cs_csr c = {NULL, NULL};
    cs_ws w;
    float *orow = malloc((size_t)p->D * sizeof *orow);
    int rc = csr_build(r, ids, stride, &c);
    size_t hpg = (size_t)(p->Hq / p->Hkv);
    /* one KV group at a time: the workspace holds [Tq][Hq/Hkv][slots] partials */
    if (!rc) rc = ws_alloc(r, (size_t)r->Tq * hpg, (size_t)stride * per, (size_t)p->block_size, &w);
    else memset(&w, 0, sizeof w);
    if (!rc && !orow) rc = MSA_ENOMEM;
    for (int g = 0; !rc && g < p->Hkv; g++) {
        /* KV-outer: each (KV head, block) visits the queries that chose it. */
        for (int b = 0; b < p->batch; b++)
            for (int id = 0; id < r->nblocks[b]; id++) {
                size_t key = (size_t)g * r->total_blocks + r->blk_base[b] + id;
                for (int e = c.off[key]; e < c.off[key + 1]; e++) {
                    int t = c.ent[2 * e], s = c.ent[2 * e + 1];
                    block_partials(r, &w, (size_t)t * hpg, t, g, id, s);
                }
            }
        merge_rows(r, g, ids, stride, &w, out, lse, orow);
    }
    free(c.off), free(c.ent), free(orow);
    ws_free(&w);
    if (rc) snprintf(err, errn, "cpu-sim: out of memory for the partial workspace");
    return rc;
}

/* Dense causal GQA: every visible block is a partial (design item 6).  Same partials and
 * merge, but row by row, so the workspace stays O(nblk * D) instead of O(N^2). */
int cs_dense(cs_run *r, void *out, float *lse, char *err, size_t errn)
{
    const msa_problem *p = r->p;
    int per = r->v == CS_V_SPLIT2 ? 2 : 1, nblk = p->nblk > 0 ? p->nblk : 1;
    float *orow = malloc((size_t)p->D * sizeof *orow);
    cs_ws w;
    int rc = ws_alloc(r, 1, (size_t)nblk * per, (size_t)p->block_size, &w);
    if (!rc && !orow) rc = MSA_ENOMEM;
    for (int t = 0; !rc && t < r->Tq; t++)
        for (int h = 0; h < p->Hq; h++) {
            int g = cs_group(r, h), nv = r->nvis[t];
            for (int i = 0; i < (int)w.slots + 1; i++) w.lse[i] = CS_STALE_LSE;
            for (int id = 0; id < nv; id++)
                for (int half = 0; half < per; half++) {
                    int j0, j1;
                    key_range(r, t, id, per == 2 ? half : -1, &j0, &j1);
                    int slot = id * per + half;
                    partial(r, t, h, g, j0, j1, w.x, w.o + (size_t)slot * p->D, w.lse + slot);
                }
            for (int s = 0; s < (int)w.slots; s++) w.valid[s] = (unsigned char)(s < nv * per);
            float l;
            merge(r, w.o, w.lse, w.valid, (int)w.slots, r->v == CS_V_UNINIT_PARTIAL ? nv * per : -1,
                  orow, &l);
            store_row(r, out, lse, t, h, orow, l);
        }
    free(orow);
    ws_free(&w);
    if (rc) snprintf(err, errn, "cpu-sim: out of memory for the dense workspace");
    return rc;
}
