/* gpu_check.c - a private GPU driver for the cuda backend, independent of the harness
 * and oracle: random problems, a plain double-precision CPU computation of the same
 * mathematics (MSA.md 3-5) on sampled rows, and the GPU-only checks (graph replay bitwise
 * equal to forward, poisoned K/V rows that no query reads, mutant variants caught).
 *
 * Usage: gpu_check [path/to/libmsa_cuda.so] [seed]
 * Tolerances are engineering ones (bf16 output: relative ~2^-8; bf16 P: ~2^-8 per term),
 * not the oracle's derived bounds: this tool is a smoke test for the kernel author, and
 * the oracle-judged suite (tests/test_cuda.c) is the verdict.  Exit status 1 on failure. */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/msa_abi.h"

#define REL_TOL 2e-2 /* |out - ref| <= REL_TOL * (max|ref row| + 1e-3) */
#define LSE_TOL 2e-2 /* absolute, natural log */

static uint64_t rs;
static double urand(void)
{
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}
static int irand(int n) { return (int)(urand() * n); }
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

static uint16_t f2bf(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
static double bf2d(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
/* fp16 by hand (_Float16 is not available to every compiler): round to nearest even */
static uint16_t f2h(float f)
{
    double a = fabs((double)f);
    uint16_t s = signbit(f) ? 0x8000 : 0;
    if (a >= 65520.0) return s | 0x7c00; /* overflows to inf */
    int e;
    frexp(a, &e);                        /* a = m * 2^e, m in [0.5, 1) */
    int ex = e - 1 < -14 ? -14 : e - 1;  /* subnormals share exponent -14 */
    double q = nearbyint(ldexp(a, 10 - ex)); /* significand in units of 2^(ex-10), RNE */
    if (q >= 2048) { q /= 2; ex++; }
    if (ex > 15) return s | 0x7c00;
    uint16_t bits = q < 1024 ? (uint16_t)q : (uint16_t)(((ex + 15) << 10) | ((int)q - 1024));
    return s | bits;
}
static double h2d(uint16_t b)
{
    int e = (b >> 10) & 31, m = b & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (b & 0x8000) ? -v : v;
}
static double e4m3d(uint8_t x)
{
    int s = x >> 7, e = (x >> 3) & 15, m = x & 7;
    double v = e ? ldexp(1 + m / 8.0, e - 7) : ldexp(m, -9);
    return s ? -v : v;
}

typedef struct {
    int batch, Hq, Hkv, D, DI, B, k, init, local, causal, paged, fp16, idx; /* idx: 0 bf16 1 fp16 2 e4m3 */
    int lq[8], lk[8];
    double qscale; /* multiplies q: large values sharpen the softmax */
    int ties;      /* index values small integers: many exact ties */
} cfg;

typedef struct {
    cfg c;
    int Tq, rows, nblk, max_blocks, num_pages;
    int32_t cq[9], ck[9], *pt;
    uint16_t *q, *k, *v;
    void *iq, *ik;
    size_t esz_idx;
} prob;

static double ld(const prob *p, const uint16_t *a, size_t i) { return p->c.fp16 ? h2d(a[i]) : bf2d(a[i]); }
static double ldi(const prob *p, const void *a, size_t i)
{
    if (p->c.idx == 2) return e4m3d(((const uint8_t *)a)[i]);
    return p->c.idx == 1 ? h2d(((const uint16_t *)a)[i]) : bf2d(((const uint16_t *)a)[i]);
}
static uint16_t st(const prob *p, double x) { return p->c.fp16 ? f2h((float)x) : f2bf((float)x); }

static int64_t kvrow(const prob *p, int b, int j)
{
    return p->pt ? (int64_t)p->pt[b * p->max_blocks + j / p->c.B] * p->c.B + j % p->c.B : p->ck[b] + j;
}

static void gen(prob *p, const cfg *c)
{
    memset(p, 0, sizeof *p);
    p->c = *c;
    int nb_tot = 0;
    p->cq[0] = p->ck[0] = 0;
    for (int b = 0; b < c->batch; ++b) {
        p->cq[b + 1] = p->cq[b] + c->lq[b];
        p->ck[b + 1] = p->ck[b] + c->lk[b];
        int nb = (c->lk[b] + c->B - 1) / c->B;
        nb_tot += nb;
        if (nb > p->nblk) p->nblk = nb;
    }
    p->Tq = p->cq[c->batch];
    p->max_blocks = p->nblk > 0 ? p->nblk : 1;
    if (c->paged) {
        p->num_pages = nb_tot + 3; /* spare pages never referenced */
        int *perm = malloc(sizeof(int) * p->num_pages);
        for (int i = 0; i < p->num_pages; ++i) perm[i] = i;
        for (int i = p->num_pages - 1; i > 0; --i) { int j = irand(i + 1), t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
        p->pt = calloc((size_t)c->batch * p->max_blocks, sizeof(int32_t));
        int u = 0;
        for (int b = 0; b < c->batch; ++b)
            for (int i = 0; i < (c->lk[b] + c->B - 1) / c->B; ++i) p->pt[b * p->max_blocks + i] = perm[u++];
        free(perm);
        p->rows = p->num_pages * c->B;
    } else {
        p->rows = p->ck[c->batch];
    }
    size_t nq = (size_t)p->Tq * c->Hq * c->D, nk = (size_t)(p->rows + 1) * c->Hkv * c->D;
    p->q = malloc(2 * nq + 2); p->k = malloc(2 * nk); p->v = malloc(2 * nk);
    for (size_t i = 0; i < nq; ++i) p->q[i] = st(p, nrand() * c->qscale);
    for (size_t i = 0; i < nk; ++i) { p->k[i] = st(p, nrand()); p->v[i] = st(p, nrand()); }
    p->esz_idx = c->idx == 2 ? 1 : 2;
    size_t niq = (size_t)p->Tq * c->Hkv * c->DI, nik = (size_t)(p->rows + 1) * c->DI;
    p->iq = malloc(p->esz_idx * niq + 2); p->ik = malloc(p->esz_idx * nik);
    for (size_t i = 0; i < niq + nik; ++i) {
        int isq = i < niq;
        size_t j = isq ? i : i - niq;
        double x = c->ties ? (double)(irand(5) - 2) : nrand();
        if (c->idx == 2) {
            uint8_t b8;
            do b8 = (uint8_t)((irand(2) << 7) | (irand(10) << 3) | irand(8)); while (0);
            if (c->ties) b8 = (uint8_t)(irand(3) == 0 ? 0 : ((irand(2) << 7) | (7 << 3)));
            ((uint8_t *)(isq ? p->iq : p->ik))[j] = b8;
        } else {
            uint16_t h = c->idx == 1 ? f2h((float)x) : f2bf((float)x);
            ((uint16_t *)(isq ? p->iq : p->ik))[j] = h;
        }
    }
}

static void prob_free(prob *p) { free(p->q); free(p->k); free(p->v); free(p->iq); free(p->ik); free(p->pt); }

static int row_seq(const prob *p, int t) { int b = 0; while (p->cq[b + 1] <= t) ++b; return b; }
static int nkeys(const prob *p, int t)
{
    int b = row_seq(p, t), Lq = p->cq[b + 1] - p->cq[b], Lk = p->ck[b + 1] - p->ck[b];
    if (!p->c.causal) return Lk;
    int pos = Lk - Lq + (t - p->cq[b]);
    return pos + 1 < 0 ? 0 : (pos + 1 > Lk ? Lk : pos + 1);
}

/* ---- double-precision reference on one row ---- */
static double block_score(const prob *p, float iscale, int g, int t, int blk)
{
    int b = row_seq(p, t), nk = nkeys(p, t);
    double best = -INFINITY;
    for (int j = blk * p->c.B; j < (blk + 1) * p->c.B && j < nk; ++j) {
        double s = 0;
        int64_t r = kvrow(p, b, j);
        for (int d = 0; d < p->c.DI; ++d)
            s += ldi(p, p->iq, ((size_t)t * p->c.Hkv + g) * p->c.DI + d) * ldi(p, p->ik, (size_t)r * p->c.DI + d);
        s *= iscale;
        if (s > best) best = s;
    }
    return best;
}

/* selection of (g, t) with exact ties -> lower id; returns count, ids ascending */
static int ref_select(const prob *p, float iscale, int g, int t, int *ids, double *S, double *thr)
{
    int nvis = (nkeys(p, t) + p->c.B - 1) / p->c.B, K = p->c.k, n = 0;
    for (int b = 0; b < nvis; ++b) S[b] = block_score(p, iscale, g, t, b);
    *thr = -INFINITY;
    if (nvis <= K) { for (int b = 0; b < nvis; ++b) ids[n++] = b; return n; }
    char *take = calloc(nvis, 1);
    for (int b = 0; b < p->c.init; ++b) take[b] = 1;
    for (int b = nvis - p->c.local; b < nvis; ++b) take[b] = 1;
    for (int r = 0; r < K - p->c.init - p->c.local; ++r) {
        int best = -1;
        for (int b = p->c.init; b < nvis - p->c.local; ++b)
            if (!take[b] && (best < 0 || S[b] > S[best])) best = b;
        take[best] = 1;
        *thr = S[best];
    }
    for (int b = 0; b < nvis; ++b) if (take[b]) ids[n++] = b;
    free(take);
    return n;
}

/* attention of (t, h) over the blocks ids[0..n) (ids < 0 or >= nvis ignored) */
static void ref_attend(const prob *p, float scale, int t, int h, const int *ids, int n, double *out, double *lse)
{
    int b = row_seq(p, t), nk = nkeys(p, t), g = h / (p->c.Hq / p->c.Hkv), D = p->c.D, B = p->c.B;
    int nvis = (nk + B - 1) / B;
    double m = -INFINITY, l = 0;
    for (int d = 0; d < D; ++d) out[d] = 0;
    double *sc = malloc(sizeof(double) * (size_t)(n * B + 1));
    for (int pass = 0; pass < 2; ++pass) {
        int u = 0;
        for (int s = 0; s < n; ++s) {
            if (ids[s] < 0 || ids[s] >= nvis) continue;
            for (int j = ids[s] * B; j < (ids[s] + 1) * B && j < nk; ++j, ++u) {
                int64_t r = kvrow(p, b, j);
                if (pass == 0) {
                    double x = 0;
                    for (int d = 0; d < D; ++d)
                        x += ld(p, p->q, ((size_t)t * p->c.Hq + h) * D + d) * ld(p, p->k, ((size_t)r * p->c.Hkv + g) * D + d);
                    sc[u] = x * scale;
                    if (sc[u] > m) m = sc[u];
                } else {
                    double w = exp(sc[u] - m);
                    l += w;
                    for (int d = 0; d < D; ++d) out[d] += w * ld(p, p->v, ((size_t)r * p->c.Hkv + g) * D + d);
                }
            }
        }
    }
    free(sc);
    if (l == 0) { *lse = -INFINITY; return; }
    for (int d = 0; d < D; ++d) out[d] /= l;
    *lse = m + log(l);
}

/* ---- the GPU side ---- */
typedef struct {
    const msa_backend *be;
    void *ctx;
} kern;

typedef struct {
    void *q, *k, *v, *iq, *ik, *out, *out2;
    int32_t *cq, *ck, *pt, *topk, *topk2;
    float *lse, *lse2, *bs;
} dbuf;

#define DEV(x, n) ((x) = kn->be->dev_alloc(kn->ctx, (n)))
#define UP(d, s, n) kn->be->copy_to_dev(kn->ctx, (d), (s), (n))
#define DOWN(d, s, n) kn->be->copy_to_host(kn->ctx, (d), (s), (n))

static size_t kvbytes(const prob *p) { return (size_t)(p->rows + 1) * p->c.Hkv * p->c.D * 2; }

static void setup(kern *kn, const prob *p, dbuf *d, msa_problem *mp)
{
    const cfg *c = &p->c;
    size_t nq = (size_t)p->Tq * c->Hq * c->D * 2 + 2;
    DEV(d->q, nq); DEV(d->k, kvbytes(p)); DEV(d->v, kvbytes(p));
    DEV(d->iq, (size_t)p->Tq * c->Hkv * c->DI * p->esz_idx + 2); DEV(d->ik, (size_t)(p->rows + 1) * c->DI * p->esz_idx);
    DEV(d->cq, 4 * 9); DEV(d->ck, 4 * 9); DEV(d->pt, (size_t)c->batch * p->max_blocks * 4 + 4);
    DEV(d->topk, (size_t)c->Hkv * p->Tq * c->k * 4 + 4); DEV(d->topk2, (size_t)c->Hkv * p->Tq * c->k * 4 + 4);
    DEV(d->out, nq); DEV(d->out2, nq);
    DEV(d->lse, (size_t)p->Tq * c->Hq * 4 + 4); DEV(d->lse2, (size_t)p->Tq * c->Hq * 4 + 4);
    DEV(d->bs, (size_t)c->Hkv * p->Tq * p->nblk * 4 + 4);
    UP(d->q, p->q, nq - 2); UP(d->k, p->k, kvbytes(p)); UP(d->v, p->v, kvbytes(p));
    UP(d->iq, p->iq, (size_t)p->Tq * c->Hkv * c->DI * p->esz_idx);
    UP(d->ik, p->ik, (size_t)(p->rows + 1) * c->DI * p->esz_idx);
    UP(d->cq, p->cq, 4 * (c->batch + 1)); UP(d->ck, p->ck, 4 * (c->batch + 1));
    if (p->pt) UP(d->pt, p->pt, (size_t)c->batch * p->max_blocks * 4);
    memset(mp, 0, sizeof *mp);
    mp->abi_version = MSA_ABI_VERSION;
    mp->batch = c->batch; mp->total_q = p->Tq; mp->kv_rows = p->rows;
    mp->Hq = c->Hq; mp->Hkv = c->Hkv; mp->D = c->D; mp->HI = c->Hkv; mp->DI = c->DI;
    mp->block_size = c->B; mp->topk = c->k; mp->init_blocks = c->init; mp->local_blocks = c->local;
    mp->causal = c->causal; mp->nblk = p->nblk;
    for (int b = 0; b < c->batch; ++b) {
        if (c->lq[b] > mp->max_lq) mp->max_lq = c->lq[b];
        if (c->lk[b] > mp->max_lk) mp->max_lk = c->lk[b];
    }
    mp->max_blocks = p->pt ? p->max_blocks : 0; mp->num_pages = p->num_pages;
    mp->softmax_scale_f64 = 1 / sqrt((double)c->D); mp->softmax_scale = (float)mp->softmax_scale_f64;
    mp->index_scale_f64 = 1 / sqrt((double)c->DI); mp->index_scale = (float)mp->index_scale_f64;
    mp->dtype = c->fp16 ? MSA_DT_FP16 : MSA_DT_BF16;
    mp->index_dtype = c->idx == 2 ? MSA_DT_E4M3 : c->idx == 1 ? MSA_DT_FP16 : MSA_DT_BF16;
    mp->cu_seqlens_q = d->cq; mp->cu_seqlens_k = d->ck; mp->page_table = p->pt ? d->pt : NULL;
    mp->cu_seqlens_q_host = p->cq; mp->cu_seqlens_k_host = p->ck; mp->page_table_host = p->pt;
    mp->q = d->q; mp->k = d->k; mp->v = d->v; mp->index_q = d->iq; mp->index_k = d->ik;
}

static void teardown(kern *kn, dbuf *d)
{
    void *all[] = {d->q, d->k, d->v, d->iq, d->ik, d->out, d->out2, d->cq, d->ck, d->pt,
                   d->topk, d->topk2, d->lse, d->lse2, d->bs};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) kn->be->dev_free(kn->ctx, all[i]);
}

static int sample_rows(const prob *p, int *rows, int max)
{
    int n = 0;
    if (p->Tq <= max) { for (int t = 0; t < p->Tq; ++t) rows[n++] = t; return n; }
    for (int b = 0; b < p->c.batch; ++b)
        if (p->cq[b + 1] > p->cq[b]) { rows[n++] = p->cq[b]; rows[n++] = p->cq[b + 1] - 1; }
    while (n < max) rows[n++] = irand(p->Tq);
    return n;
}

typedef struct {
    double worst_out, worst_lse; /* error / tolerance ratios */
    int sel_bad, nan, struct_bad;
} stats;

/* Compares GPU out/lse rows with the reference over selection `sel` (NULL: dense). */
static void check_attn(const prob *p, const int *rows, int nr, const int32_t *sel, const uint16_t *out,
                       const float *lse, stats *s)
{
    const cfg *c = &p->c;
    double *ref = malloc(sizeof(double) * c->D);
    int *ids = malloc(sizeof(int) * (p->nblk + c->k + 1));
    float scale = (float)(1 / sqrt((double)c->D));
    for (int ri = 0; ri < nr; ++ri) {
        int t = rows[ri];
        for (int h = 0; h < c->Hq; ++h) {
            int g = h / (c->Hq / c->Hkv), n = 0;
            if (sel) { for (int q = 0; q < c->k; ++q) ids[n++] = sel[((size_t)g * p->Tq + t) * c->k + q]; }
            else { for (int b = 0; b < p->nblk; ++b) ids[n++] = b; }
            double rl;
            ref_attend(p, scale, t, h, ids, n, ref, &rl);
            double mx = 1e-3;
            for (int d = 0; d < c->D; ++d) if (fabs(ref[d]) > mx) mx = fabs(ref[d]);
            for (int d = 0; d < c->D; ++d) {
                double o = ld(p, out, ((size_t)t * c->Hq + h) * c->D + d);
                if (isnan(o)) { s->nan++; continue; }
                double r = fabs(o - ref[d]) / (REL_TOL * mx);
                if (r > s->worst_out) s->worst_out = r;
            }
            float gl = lse[(size_t)t * c->Hq + h];
            if (isnan(gl)) s->nan++;
            else if (isinf(rl) || isinf(gl)) { if (gl != rl) s->worst_lse = 1e9; }
            else if (fabs(gl - rl) / LSE_TOL > s->worst_lse) s->worst_lse = fabs(gl - rl) / LSE_TOL;
        }
    }
    free(ref);
    free(ids);
}

/* Structure and tie-aware set comparison of the GPU selection on sampled rows. */
static void check_sel(const prob *p, const int *rows, int nr, const int32_t *topk, stats *s)
{
    const cfg *c = &p->c;
    int *ids = malloc(sizeof(int) * (p->nblk + 1));
    double *S = malloc(sizeof(double) * (p->nblk + 1));
    float iscale = (float)(1 / sqrt((double)c->DI));
    for (int ri = 0; ri < nr; ++ri)
        for (int g = 0; g < c->Hkv; ++g) {
            int t = rows[ri], nvis = (nkeys(p, t) + c->B - 1) / c->B;
            double thr;
            int n = ref_select(p, iscale, g, t, ids, S, &thr);
            const int32_t *gs = topk + ((size_t)g * p->Tq + t) * c->k;
            double smax = 1e-30;
            for (int b = 0; b < nvis; ++b) if (fabs(S[b]) > smax) smax = fabs(S[b]);
            double tol = 1e-5 * smax; /* fp32 dot of DI terms vs exact: near-ties may flip */
            int cnt = 0;
            for (int q = 0; q < c->k; ++q) {
                if (gs[q] < 0) { for (int r = q; r < c->k; ++r) if (gs[r] >= 0) s->struct_bad++; break; }
                if (gs[q] >= nvis || (q && gs[q] <= gs[q - 1])) s->struct_bad++;
                cnt++;
            }
            if (cnt != n) { s->struct_bad++; continue; }
            for (int q = 0; q < n; ++q) {
                int in_ref = 0;
                for (int r = 0; r < n; ++r) in_ref |= ids[r] == gs[q];
                if (!in_ref && !(gs[q] < nvis && fabs(S[gs[q]] - thr) <= tol)) s->sel_bad++;
            }
        }
    free(ids);
    free(S);
}

/* Rows of K/V (of group g) that no query of g reads under selection topk: set to NaN. */
static void poison(const prob *p, const int32_t *topk, uint16_t *k, uint16_t *v)
{
    const cfg *c = &p->c;
    char *read = calloc((size_t)(p->rows + 1) * c->Hkv, 1);
    for (int t = 0; t < p->Tq; ++t)
        for (int g = 0; g < c->Hkv; ++g) {
            int b = row_seq(p, t), nk = nkeys(p, t);
            for (int q = 0; q < c->k; ++q) {
                int id = topk[((size_t)g * p->Tq + t) * c->k + q];
                for (int j = id * c->B; id >= 0 && j < (id + 1) * c->B && j < nk; ++j)
                    read[kvrow(p, b, j) * c->Hkv + g] = 1;
            }
        }
    uint16_t nan = c->fp16 ? 0x7e00 : 0x7fc0;
    for (int64_t r = 0; r <= p->rows; ++r)
        for (int g = 0; g < c->Hkv; ++g)
            if (!read[r * c->Hkv + g])
                for (int d = 0; d < c->D; ++d) k[(r * c->Hkv + g) * c->D + d] = v[(r * c->Hkv + g) * c->D + d] = nan;
    free(read);
}

enum { DO_REPLAY = 1, DO_POISON = 2, DO_DENSE = 4, DO_SCORES = 8 };

/* Runs every check on one configuration; returns 1 when something is off. */
static int check_case(kern *kn, const cfg *c, const char *label, int flags, int verbose)
{
    prob p;
    gen(&p, c);
    dbuf d;
    msa_problem mp;
    setup(kn, &p, &d, &mp);
    const cfg *cc = &p.c;
    size_t ntk = (size_t)cc->Hkv * p.Tq * cc->k, nout = (size_t)p.Tq * cc->Hq * cc->D, nl = (size_t)p.Tq * cc->Hq;
    int32_t *tk = malloc(4 * ntk + 4), *tk2 = malloc(4 * ntk + 4);
    uint16_t *out = malloc(2 * nout + 2), *out2 = malloc(2 * nout + 2);
    float *lse = malloc(4 * nl + 4), *lse2 = malloc(4 * nl + 4);
    int rows[96], nr = sample_rows(&p, rows, cc->Hq >= 32 ? 24 : 64);
    stats s = {0}, sd = {0};
    int bad = 0, rc, replay_diff = 0, poison_diff = 0;
    double sc_worst = 0;
    if ((rc = kn->be->forward(kn->ctx, &mp, d.topk, d.out, d.lse))) {
        printf("  %s: forward rc %d: %s\n", label, rc, kn->be->last_error(kn->ctx));
        bad = 1;
        goto done;
    }
    DOWN(tk, d.topk, 4 * ntk); DOWN(out, d.out, 2 * nout); DOWN(lse, d.lse, 4 * nl);
    check_sel(&p, rows, nr, tk, &s);
    check_attn(&p, rows, nr, tk, out, lse, &s);
    if (flags & DO_DENSE) {
        if ((rc = kn->be->dense(kn->ctx, &mp, d.out2, d.lse2))) { printf("  dense rc %d: %s\n", rc, kn->be->last_error(kn->ctx)); bad = 1; }
        DOWN(out2, d.out2, 2 * nout); DOWN(lse2, d.lse2, 4 * nl);
        check_attn(&p, rows, nr, NULL, out2, lse2, &sd);
    }
    if (flags & DO_SCORES) {
        float *bs = malloc(4 * (size_t)cc->Hkv * p.Tq * p.nblk + 4);
        if ((rc = kn->be->index_scores(kn->ctx, &mp, d.bs))) { printf("  index_scores rc %d: %s\n", rc, kn->be->last_error(kn->ctx)); bad = 1; }
        DOWN(bs, d.bs, 4 * (size_t)cc->Hkv * p.Tq * p.nblk);
        float iscale = (float)(1 / sqrt((double)cc->DI));
        for (int ri = 0; ri < nr && ri < 8; ++ri)
            for (int g = 0; g < cc->Hkv; ++g)
                for (int b = 0; b < p.nblk; ++b) {
                    double r = block_score(&p, iscale, g, rows[ri], b), x = bs[((size_t)g * p.Tq + rows[ri]) * p.nblk + b];
                    double e = (isinf(r) || isinf(x)) ? (r == x ? 0 : 1e9) : fabs(x - r) / (1e-4 * (fabs(r) + 1));
                    if (e > sc_worst) sc_worst = e;
                }
        free(bs);
    }
    if (flags & DO_REPLAY) {
        if ((rc = kn->be->forward_replay(kn->ctx, &mp, 100, d.topk2, d.out2, d.lse2))) {
            printf("  replay rc %d: %s\n", rc, kn->be->last_error(kn->ctx));
            bad = 1;
        } else {
            DOWN(tk2, d.topk2, 4 * ntk); DOWN(out2, d.out2, 2 * nout); DOWN(lse2, d.lse2, 4 * nl);
            replay_diff = memcmp(tk, tk2, 4 * ntk) || memcmp(out, out2, 2 * nout) || memcmp(lse, lse2, 4 * nl);
        }
    }
    if (flags & DO_POISON) {
        uint16_t *pk = malloc(kvbytes(&p)), *pv = malloc(kvbytes(&p));
        memcpy(pk, p.k, kvbytes(&p)); memcpy(pv, p.v, kvbytes(&p));
        poison(&p, tk, pk, pv);
        UP(d.k, pk, kvbytes(&p)); UP(d.v, pv, kvbytes(&p));
        if ((rc = kn->be->attend(kn->ctx, &mp, d.topk, d.out2, d.lse2))) { printf("  attend rc %d: %s\n", rc, kn->be->last_error(kn->ctx)); bad = 1; }
        DOWN(out2, d.out2, 2 * nout); DOWN(lse2, d.lse2, 4 * nl);
        poison_diff = memcmp(out, out2, 2 * nout) || memcmp(lse, lse2, 4 * nl);
        free(pk); free(pv);
    }
    bad |= s.worst_out > 1 || s.worst_lse > 1 || s.nan || s.sel_bad || s.struct_bad || sd.worst_out > 1 ||
           sd.worst_lse > 1 || sd.nan || replay_diff || poison_diff || sc_worst > 1;
    if (verbose || bad)
        printf("  %-44s Tq %6d sel_bad %d struct %d nan %d out %.3f lse %.3f | dense out %.3f lse %.3f nan %d | scores %.3f replay %s poison %s -> %s\n",
               label, p.Tq, s.sel_bad, s.struct_bad, s.nan, s.worst_out, s.worst_lse, sd.worst_out, sd.worst_lse, sd.nan,
               sc_worst, (flags & DO_REPLAY) ? (replay_diff ? "DIFF" : "same") : "-",
               (flags & DO_POISON) ? (poison_diff ? "DIFF" : "same") : "-", bad ? "FAIL" : "ok");
done:
    teardown(kn, &d);
    free(tk); free(tk2); free(out); free(out2); free(lse); free(lse2);
    prob_free(&p);
    return bad;
}

/* batch Hq Hkv D DI B k init local causal paged fp16 idx {lq} {lk} qscale ties */
#define ALL (DO_DENSE | DO_SCORES | DO_POISON)
static const struct { const char *label; cfg c; int flags; } cases[] = {
    {"M3 prefill 4k", {1, 64, 4, 128, 128, 128, 16, 0, 1, 1, 0, 0, 0, {4096}, {4096}, 1, 0}, ALL},
    {"M3 decode varlen paged", {4, 64, 4, 128, 128, 128, 16, 0, 1, 1, 1, 0, 0, {1, 4, 16, 2}, {3000, 5000, 2100, 700}, 1, 0}, ALL | DO_REPLAY},
    {"gqa1 D64 B16 k4 i1 l1", {1, 4, 4, 64, 64, 16, 4, 1, 1, 1, 0, 0, 0, {300}, {300}, 1, 0}, ALL | DO_REPLAY},
    {"gqa2 D128 B32 k8 fp16", {1, 4, 2, 128, 64, 32, 8, 0, 0, 1, 0, 1, 1, {500}, {500}, 1, 0}, ALL},
    {"gqa3 D64 B64 k3 i1 l1", {1, 6, 2, 64, 64, 64, 3, 1, 1, 1, 0, 0, 0, {700}, {700}, 1, 0}, ALL},
    {"gqa8 D256 B128 k4 l1", {1, 16, 2, 256, 128, 128, 4, 0, 1, 1, 0, 0, 0, {1000}, {1000}, 1, 0}, ALL},
    {"gqa16 D128 B64 k32 (nvis<k)", {1, 32, 2, 128, 128, 64, 32, 0, 1, 1, 0, 0, 0, {1500}, {1500}, 1, 0}, ALL},
    {"k1 l1", {1, 8, 1, 64, 64, 16, 1, 0, 1, 1, 0, 0, 0, {200}, {200}, 1, 0}, ALL},
    {"k1 i1", {1, 8, 1, 64, 64, 16, 1, 1, 0, 1, 0, 0, 0, {200}, {200}, 1, 0}, ALL},
    {"k1 i0 l0", {1, 8, 1, 64, 64, 16, 1, 0, 0, 1, 0, 0, 0, {200}, {200}, 1, 0}, ALL},
    {"varlen chunked+decode paged", {3, 8, 2, 64, 64, 32, 4, 0, 1, 1, 1, 0, 0, {17, 100, 1}, {17, 300, 129}, 1, 0}, ALL | DO_REPLAY},
    {"chunked prefill B64 k8 i1 l2", {1, 8, 2, 128, 64, 64, 8, 1, 2, 1, 0, 0, 0, {256}, {2048}, 1, 0}, ALL},
    {"e4m3 index keys", {1, 8, 2, 128, 64, 64, 4, 0, 1, 1, 0, 0, 2, {600}, {600}, 1, 0}, ALL},
    {"fp16 index, bf16 main", {1, 8, 2, 64, 128, 32, 6, 1, 1, 1, 0, 0, 1, {400}, {400}, 1, 0}, ALL},
    {"exact ties (small ints)", {1, 4, 2, 64, 32, 16, 5, 0, 1, 1, 0, 0, 0, {400}, {400}, 1, 1}, ALL},
    {"e4m3 ties", {1, 4, 2, 64, 32, 16, 5, 1, 1, 1, 1, 0, 2, {400}, {400}, 1, 1}, ALL},
    {"non-causal", {1, 8, 2, 64, 64, 64, 4, 0, 1, 0, 0, 0, 0, {100}, {700}, 1, 0}, ALL},
    {"nvis<k everywhere", {2, 8, 2, 64, 64, 64, 8, 1, 1, 1, 0, 0, 0, {100, 7}, {100, 300}, 1, 0}, ALL},
    {"D256 fp16 paged decode", {2, 16, 4, 256, 64, 64, 5, 0, 1, 1, 1, 1, 0, {16, 1}, {1000, 4000}, 1, 0}, ALL | DO_REPLAY},
    {"sharp softmax qscale 8", {1, 8, 2, 128, 64, 32, 6, 0, 1, 1, 0, 0, 0, {500}, {500}, 8, 0}, ALL},
    {"Lk%B!=0 B128 k4 i2 l1", {1, 8, 2, 128, 64, 128, 4, 2, 1, 1, 0, 0, 0, {1000}, {1000}, 1, 0}, ALL},
    {"gqa16 D64 B16 k16 i1 l2", {1, 16, 1, 64, 64, 16, 16, 1, 2, 1, 0, 0, 0, {900}, {900}, 1, 0}, ALL},
    {"empty rows (Lq>Lk)", {2, 8, 2, 64, 64, 16, 4, 0, 1, 1, 0, 0, 0, {5, 30}, {0, 100}, 1, 0}, ALL | DO_REPLAY},
    {"1 token, 1 key", {1, 8, 2, 64, 64, 16, 4, 0, 1, 1, 0, 0, 0, {1}, {1}, 1, 0}, ALL | DO_REPLAY},
    {"M3 decode 32k x2", {2, 64, 4, 128, 128, 128, 16, 0, 1, 1, 1, 0, 0, {1, 1}, {32768, 30000}, 1, 0}, DO_SCORES | DO_POISON | DO_REPLAY},
    {"M3 prefill 16k", {1, 64, 4, 128, 128, 128, 16, 0, 1, 1, 0, 0, 0, {16384}, {16384}, 1, 0}, DO_POISON},
};
#define NCASES (sizeof cases / sizeof cases[0])

static const struct { const char *variant; int case_idx; } mutants[] = {
    {"diag-drop", 2}, {"noncausal", 2}, {"shared-selection", 4}, {"merge-nan", 22},
    {"unmasked-tail", 2}, {"minus-one-index", 2},
};

int main(int argc, char **argv)
{
    const char *lib = argc > 1 ? argv[1] : "build/cuda/libmsa_cuda.so";
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 20261122;
    int only = argc > 3 ? atoi(argv[3]) : -1; /* run one case (index) */
    printf("gpu_check: lib %s seed %llu\n", lib, (unsigned long long)seed);
    void *dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!dl) { printf("cannot load %s: %s\n", lib, dlerror()); return 2; }
    msa_backend_entry_fn ent = (msa_backend_entry_fn)dlsym(dl, MSA_BACKEND_SYMBOL);
    msa_backend_variant_fn var = (msa_backend_variant_fn)dlsym(dl, MSA_BACKEND_VARIANT_SYMBOL);
    if (!ent || !var) { printf("symbols missing\n"); return 2; }
    kern kn = {ent(), NULL};
    if (kn.be->init(&kn.ctx)) { printf("init: %s\n", kn.be->last_error(NULL)); dlclose(dl); return 2; }
    printf("device: %s\n", kn.be->device_name(kn.ctx));
    int fails = 0;
    for (size_t i = 0; i < NCASES; ++i) {
        if (only >= 0 && (int)i != only) continue;
        rs = seed * 2654435761u + i + 1;
        fails += check_case(&kn, &cases[i].c, cases[i].label, cases[i].flags, 1);
    }
    kn.be->fini(kn.ctx);
    int survived = 0;
    for (size_t m = 0; only < 0 && m < sizeof mutants / sizeof mutants[0]; ++m) {
        kern mk = {var(mutants[m].variant), NULL};
        if (!mk.be || mk.be->init(&mk.ctx)) { printf("variant %s: cannot init\n", mutants[m].variant); survived++; continue; }
        rs = seed * 2654435761u + mutants[m].case_idx + 1;
        printf("mutant %s on '%s':\n", mutants[m].variant, cases[mutants[m].case_idx].label);
        int killed = check_case(&mk, &cases[mutants[m].case_idx].c, cases[mutants[m].case_idx].label, DO_POISON, 0);
        printf("  -> %s\n", killed ? "killed" : "SURVIVED");
        survived += !killed;
        mk.be->fini(mk.ctx);
    }
    printf("gpu_check: %d case(s) failed, %d mutant(s) survived\n", fails, survived);
    return fails || survived ? 1 : 0;
}
