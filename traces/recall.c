/* recall.c - how much of dense attention MSA's top-k selection keeps (MSA.md section 8),
 * on the cases of a trace.
 *
 * For every record, block size B and k: the reference's index branch (msa_ref_select,
 * fast mode) gives the block scores; the selection at each k applies MSA's rule to them
 * (msa_recall_select_row); the dense causal softmax of every query head, averaged over the
 * group's heads, gives each block's probability mass.  Per (group, query row) we measure
 *   block recall@k   |Sel & Oracle_k| / min(k, nvis), Oracle_k = the k blocks of most mass
 *   mass recall      the mass inside Sel
 *   free recall      the non-forced picks against the best k-f non-forced blocks
 *   forced mass      the mass inside the forced (init, local) blocks
 * over the rows with nvis > k (rows with nvis <= k select everything and are counted
 * apart).  Dense mass is computed in double, one pass over each row for all block sizes.
 * On the GPU (--device, docs/TRACES.md 3.1) the mass and the block scores come instead from
 * msa_cuda_block_mass in the CUDA plugin (dlopen, never linked: the same double arithmetic
 * as cuBLAS DGEMMs, ~1e-15 from this file's numbers); everything after them is shared.
 * This file does not judge kernels and does not write reports (recall_cli.c does). */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/case.h"
#include "../kernels/harness.h"
#include "../reference/ref.h"
#include "traces.h"

/* ---------------------------------------------------------------- statistics */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v (n >= 1). */
static double pct(const double *v, long n, double p)
{
    long r = (long)ceil(p / 100.0 * (double)n);
    if (r < 1) r = 1;
    if (r > n) r = n;
    return v[r - 1];
}

void msa_dist_compute(double *v, long n, msa_dist_stats *s)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    if (n <= 0) {
        s->mean = s->min = s->p5 = s->p50 = s->p95 = NAN;
        return;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (long i = 0; i < n; i++) sum += v[i];
    s->mean = sum / (double)n;
    s->min = v[0];
    s->p5 = pct(v, n, 5);
    s->p50 = pct(v, n, 50);
    s->p95 = pct(v, n, 95);
}

/* ---------------------------------------------------------------- selection rule */

/* Is block a ranked before block b? Higher value first, ties to the lower id. */
static int before(const double *s, int a, int b) { return s[a] > s[b] || (s[a] == s[b] && a < b); }

/* Picks the best `want` blocks among [lo, hi) not in `taken`, marking them.  One pass
 * with a ranked buffer of `want` candidates (buf: `want` ints): `before` is a strict total
 * order, so the set is the one repeated argmax would give, in O(n) for typical rows
 * instead of O(n * want) (32k blocks per row at 1M keys). */
static void pick_best(const double *s, int lo, int hi, int want, unsigned char *taken, int *buf)
{
    int have = 0;
    if (want <= 0) return;
    for (int b = lo; b < hi; b++) {
        if (taken[b] || (have == want && !before(s, b, buf[want - 1]))) continue;
        int pos = have < want ? have++ : want - 1;
        while (pos > 0 && before(s, b, buf[pos - 1])) {
            buf[pos] = buf[pos - 1];
            pos--;
        }
        buf[pos] = b;
    }
    for (int i = 0; i < have; i++) taken[buf[i]] = 1;
}

static void select_mask(const double *scores, int nvis, int k, int init, int local, unsigned char *m, int *buf)
{
    memset(m, 0, (size_t)nvis);
    if (nvis <= k) {
        memset(m, 1, (size_t)nvis);
        return;
    }
    for (int b = 0; b < init; b++) m[b] = 1;
    for (int b = nvis - local; b < nvis; b++) m[b] = 1;
    pick_best(scores, 0, nvis, k - init - local, m, buf);
}

void msa_recall_select_row(const double *scores, int nvis, int k, int init, int local, int32_t *sel)
{
    unsigned char *m = malloc(nvis > 0 ? (size_t)nvis : 1);
    int *buf = malloc(sizeof *buf * (size_t)(k > 0 ? k : 1));
    int n = 0;
    if (m && buf) {
        select_mask(scores, nvis, k, init, local, m, buf);
        for (int b = 0; b < nvis && n < k; b++)
            if (m[b]) sel[n++] = b;
    }
    free(m);
    free(buf);
    while (n < k) sel[n++] = -1;
}

/* ---------------------------------------------------------------- dense mass */

typedef struct {
    const msa_case *c;
    int nB;
    const int *B;
    const int *nblk;
    double **mass; /* [nB] -> [Hkv][Tq][nblk] */
    const double *kd; /* decoded keys [Tk][Hkv][D] */
    int next;      /* next row (shared, under lock) */
    pthread_mutex_t mu;
    int err;
} mass_job;

static double dot(const double *a, const double *b, int n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* Dense causal probabilities of one query row t for group g, averaged over its heads. */
static void row_mass(mass_job *J, int t, double *qd, double *p, double *pbar)
{
    const msa_case *c = J->c;
    msa_qinfo qi = msa_case_qinfo(c, t);
    int G = c->Hq / c->Hkv, D = c->D;
    for (int g = 0; g < c->Hkv; g++) {
        memset(pbar, 0, sizeof *pbar * (size_t)(qi.nkeys > 0 ? qi.nkeys : 1));
        for (int h = g * G; h < (g + 1) * G; h++) {
            for (int d = 0; d < D; d++) qd[d] = msa_case_q(c, t, h, d);
            double m = -INFINITY;
            for (int j = 0; j < qi.nkeys; j++) {
                int64_t row = msa_case_kv_row(c, qi.b, j);
                p[j] = c->softmax_scale * dot(qd, J->kd + ((size_t)row * (size_t)c->Hkv + (size_t)g) * (size_t)D, D);
                if (p[j] > m) m = p[j];
            }
            double z = 0;
            for (int j = 0; j < qi.nkeys; j++) z += (p[j] = exp(p[j] - m));
            for (int j = 0; j < qi.nkeys; j++) pbar[j] += p[j] / z / G;
        }
        for (int bi = 0; bi < J->nB; bi++) {
            double *mrow = J->mass[bi] + ((size_t)g * (size_t)c->Tq + (size_t)t) * (size_t)J->nblk[bi];
            memset(mrow, 0, sizeof *mrow * (size_t)J->nblk[bi]);
            for (int j = 0; j < qi.nkeys; j++) mrow[j / J->B[bi]] += pbar[j];
        }
    }
}

static void *mass_worker(void *arg)
{
    mass_job *J = arg;
    const msa_case *c = J->c;
    int maxk = 0;
    for (int b = 0; b < c->batch; b++)
        if (msa_case_lk(c, b) > maxk) maxk = msa_case_lk(c, b);
    double *qd = malloc(sizeof *qd * (size_t)c->D);
    double *p = malloc(sizeof *p * (size_t)(maxk + 1));
    double *pbar = malloc(sizeof *pbar * (size_t)(maxk + 1));
    if (!qd || !p || !pbar) {
        pthread_mutex_lock(&J->mu);
        J->err = 1;
        pthread_mutex_unlock(&J->mu);
    }
    for (;;) {
        pthread_mutex_lock(&J->mu);
        int t = J->err ? c->Tq : J->next++;
        pthread_mutex_unlock(&J->mu);
        if (t >= c->Tq) break;
        row_mass(J, t, qd, p, pbar);
    }
    free(qd);
    free(p);
    free(pbar);
    return NULL;
}

static int nthreads(int want)
{
    if (want > 0) return want;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

static int block_mass_multi(const msa_case *c, int nB, const int *B, const int *nblk, double **mass,
                            int threads, msa_err *e)
{
    size_t nk;
    if (msa_mul_size((size_t)c->Tk, (size_t)c->Hkv * (size_t)c->D, &nk))
        return msa_fail(e, MSA_ENOMEM, "%s: recall: keys too large", c->label);
    double *kd = malloc(sizeof *kd * (nk ? nk : 1));
    if (!kd) return msa_fail(e, MSA_ENOMEM, "%s: recall: out of memory for keys", c->label);
    for (int64_t r = 0; r < c->Tk; r++)
        for (int g = 0; g < c->Hkv; g++)
            for (int d = 0; d < c->D; d++)
                kd[((size_t)r * (size_t)c->Hkv + (size_t)g) * (size_t)c->D + (size_t)d] = msa_case_k(c, r, g, d);
    mass_job J = {.c = c, .nB = nB, .B = B, .nblk = nblk, .mass = mass, .kd = kd};
    pthread_mutex_init(&J.mu, NULL);
    int nt = nthreads(threads);
    pthread_t th[64];
    int started = 0;
    for (int i = 0; i < nt; i++)
        if (pthread_create(&th[started], NULL, mass_worker, &J) == 0) started++;
    if (started == 0) mass_worker(&J);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&J.mu);
    free(kd);
    return J.err ? msa_fail(e, MSA_ENOMEM, "%s: recall: out of memory", c->label) : MSA_OK;
}

int msa_recall_block_mass(const msa_case *c, int B, int nblk, double *mass, int threads, msa_err *e)
{
    return block_mass_multi(c, 1, &B, &nblk, &mass, threads, e);
}

/* ---------------------------------------------------------------- per-row metrics */

/* Blocks a case with block size B needs per row. */
static int blocks_for(const msa_case *c, int B)
{
    int m = 0;
    for (int b = 0; b < c->batch; b++) {
        int n = (msa_case_lk(c, b) + B - 1) / B;
        if (n > m) m = n;
    }
    return m > 0 ? m : 1;
}

typedef struct {
    double *block, *mass, *fre, *forced;
    int *bucket, *group;
    long n;
} samples;

/* Metrics of one (g, t) row at one k.  Returns 0 when the row is trivial (nvis <= k). */
static int row_metrics(const double *scores, const double *mass, int nvis, int k, int init, int local,
                       unsigned char *sel, unsigned char *orc, int *buf, double out[4])
{
    if (nvis <= k) return 0;
    select_mask(scores, nvis, k, init, local, sel, buf);
    memset(orc, 0, (size_t)nvis);
    pick_best(mass, 0, nvis, k, orc, buf);
    int hit = 0;
    double m = 0, fm = 0;
    for (int b = 0; b < nvis; b++) {
        hit += sel[b] && orc[b];
        if (sel[b]) m += mass[b];
    }
    /* forced blocks apart: compare the free picks with the best free blocks */
    unsigned char *forced = orc; /* reuse: forced mask then free oracle */
    memset(forced, 0, (size_t)nvis);
    for (int b = 0; b < init; b++) forced[b] = 1;
    for (int b = nvis - local; b < nvis; b++) forced[b] = 1;
    for (int b = 0; b < nvis; b++)
        if (forced[b]) fm += mass[b];
    int f = init + local, fhit = 0;
    pick_best(mass, 0, nvis, k - f, forced, buf);
    for (int b = 0; b < init; b++) forced[b] = 0;
    for (int b = nvis - local; b < nvis; b++) forced[b] = 0;
    for (int b = 0; b < nvis; b++) fhit += forced[b] && sel[b];
    out[0] = (double)hit / k;
    out[1] = m;
    out[2] = k > f ? (double)fhit / (k - f) : 1.0;
    out[3] = fm;
    return 1;
}

/* ---------------------------------------------------------------- cases per block size */

/* Columns [lo, hi) outside which group g's index queries are all zero: the token scores
 * of g depend on those columns only, exactly (an "oracle index" of concatenated keys has
 * one nonzero slice per group, so this cuts the reference's work by the group count). */
static void iq_span(const msa_case *c, int g, int *lo, int *hi)
{
    *lo = c->DI;
    *hi = 0;
    for (int t = 0; t < c->Tq; t++)
        for (int d = 0; d < c->DI; d++)
            if (msa_case_iq(c, t, g, d) != 0.0) {
                if (d < *lo) *lo = d;
                if (d + 1 > *hi) *hi = d + 1;
            }
    if (*hi <= *lo) *lo = 0, *hi = 1;
}

/* Group g of c as a case of its own (Hkv = HI = 1, index columns [lo, hi)), with block
 * size B and k = topk, packed (no page table) so that any B works. */
static int case_for_group(const msa_case *c, int g, int B, int topk, msa_case *o, msa_err *e)
{
    int lo, hi, G = c->Hq / c->Hkv;
    iq_span(c, g, &lo, &hi);
    *o = *c; /* scalars; every owned pointer is replaced below */
    o->q = o->k = o->v = o->index_q = o->index_k = NULL;
    o->cu_q = o->cu_k = o->page_table = NULL;
    o->max_blocks = o->num_pages = 0;
    o->block_size = B;
    o->topk = topk;
    o->Hq = G; o->Hkv = 1; o->HI = 1; o->DI = hi - lo;
    o->index_scale = c->index_scale; o->index_scale_is_default = 0; /* keep c's scale, not 1/sqrt(new DI) */
    int64_t tk = 0;
    for (int b = 0; b < c->batch; b++) tk += msa_case_lk(c, b);
    o->Tk = (int)tk;
    size_t es = msa_dtype_size(c->dtype), ies = msa_dtype_size(c->index_dtype), D = (size_t)c->D;
    size_t nq = (size_t)c->Tq, nk = (size_t)(tk ? tk : 1), w = (size_t)(hi - lo);
    o->cu_q = malloc(sizeof(int32_t) * (size_t)(c->batch + 1));
    o->cu_k = malloc(sizeof(int32_t) * (size_t)(c->batch + 1));
    o->q = malloc(nq * G * D * es + 1);
    o->index_q = malloc(nq * w * ies + 1);
    o->k = malloc(nk * D * es);
    o->v = malloc(nk * D * es);
    o->index_k = malloc(nk * w * ies);
    if (!o->cu_q || !o->cu_k || !o->q || !o->index_q || !o->k || !o->v || !o->index_k) {
        msa_case_free(o);
        return msa_fail(e, MSA_ENOMEM, "%s: recall: out of memory", c->label);
    }
    memcpy(o->cu_q, c->cu_q, sizeof(int32_t) * (size_t)(c->batch + 1));
    for (size_t t = 0; t < nq; t++) {
        memcpy((char *)o->q + t * G * D * es, (const char *)c->q + (t * c->Hq + (size_t)g * G) * D * es, G * D * es);
        memcpy((char *)o->index_q + t * w * ies, (const char *)c->index_q + ((t * c->HI + g) * c->DI + lo) * ies, w * ies);
    }
    o->cu_k[0] = 0;
    for (int b = 0; b < c->batch; b++) {
        int lk = msa_case_lk(c, b);
        for (int j = 0; j < lk; j++) {
            size_t src = (size_t)msa_case_kv_row(c, b, j), dst = (size_t)o->cu_k[b] + (size_t)j;
            memcpy((char *)o->k + dst * D * es, (const char *)c->k + (src * c->Hkv + g) * D * es, D * es);
            memcpy((char *)o->v + dst * D * es, (const char *)c->v + (src * c->Hkv + g) * D * es, D * es);
            memcpy((char *)o->index_k + dst * w * ies, (const char *)c->index_k + (src * c->DI + lo) * ies, w * ies);
        }
        o->cu_k[b + 1] = o->cu_k[b] + lk;
    }
    return msa_case_validate(o, 1, e);
}

/* Block scores [HI][Tq][nblk] of c at block size B: the reference, one group at a time. */
static int ref_scores(const msa_case *c, int B, int topk, int nblk, double *scores, msa_err *e)
{
    int rc = MSA_OK;
    for (int g = 0; g < c->HI && !rc; g++) {
        msa_case cg;
        rc = case_for_group(c, g, B, topk, &cg, e);
        if (!rc && msa_case_max_blocks(&cg) != nblk)
            rc = msa_fail(e, MSA_EINTERNAL, "%s: recall: block count mismatch", c->label);
        if (!rc) rc = msa_ref_select(&cg, MSA_REF_FAST, NULL, scores + (size_t)g * c->Tq * nblk, e);
        msa_case_free(&cg);
    }
    return rc;
}

/* ---------------------------------------------------------------- GPU path */

/* msa_cuda_block_mass of the CUDA plugin (kernels/cuda/gpuref.cu documents it). */
typedef int (*block_mass_fn)(int Lk, int nrows, int Hkv, int G, int D, int DI, const float *k, const float *q,
                             const float *ik, const float *iq, const int *nkeys, double scale, double iscale,
                             int nB, const int *B, const int *nblk, double *const *mass, double *const *scores,
                             int row_stride, char *err, size_t errlen);
#define GPU_SYMBOL "msa_cuda_block_mass"

typedef struct {
    msa_kernel k;
    block_mass_fn fn;
    int open;
} recall_gpu;

/* Opens the CUDA plugin (which fails without a device) and finds the entry. */
static int gpu_open(recall_gpu *g, char *dev, size_t n, msa_err *e)
{
    memset(g, 0, sizeof *g);
    int rc = msa_kernel_open("cuda", &g->k, e);
    if (rc) return MSA_EUNSUPPORTED;
    void *f = g->k.dl ? dlsym(g->k.dl, GPU_SYMBOL) : NULL;
    if (!f) {
        msa_kernel_close(&g->k);
        return msa_fail(e, MSA_EUNSUPPORTED, "cuda plugin: no %s (an old build/libmsa_cuda.so? rebuild it)", GPU_SYMBOL);
    }
    memcpy(&g->fn, &f, sizeof f); /* POSIX: dlsym's pointer converts to a function pointer */
    g->open = 1;
    snprintf(dev, n, "gpu (%s)", g->k.be->device_name ? g->k.be->device_name(g->k.ctx) : "CUDA");
    return MSA_OK;
}

static void gpu_close(recall_gpu *g)
{
    if (g->open) msa_kernel_close(&g->k);
    g->open = 0;
}

/* Row r of a [rows][w] tensor in storage type t, widened to float (exact for every case dtype). */
static void row_to_float(msa_dtype t, const void *base, int64_t r, int w, float *out)
{
    if (t == MSA_DT_BF16) { /* the common case, ~10x faster than the generic loader: a bf16 is a float's top half */
        const uint16_t *src = (const uint16_t *)base + (size_t)r * (size_t)w;
        for (int i = 0; i < w; i++) {
            uint32_t u = (uint32_t)src[i] << 16;
            memcpy(&out[i], &u, sizeof u);
        }
        return;
    }
    for (int i = 0; i < w; i++) out[i] = (float)msa_dtype_load(t, base, (size_t)r * (size_t)w + (size_t)i);
}

/* Mass and scores of the query rows of sequence b: keys gathered in logical order. */
static int gpu_sequence(recall_gpu *g, const msa_case *c, int b, int nB, const int *B, const int *nblk,
                        double **mass, double **scores, msa_err *e)
{
    int Lq = msa_case_lq(c, b), Lk = msa_case_lk(c, b), t0 = c->cu_q[b], G = c->Hq / c->Hkv;
    if (Lq == 0) return MSA_OK;
    if (Lk == 0) { /* nothing visible: mass 0 (as allocated), every block score -inf */
        for (int bi = 0; bi < nB; bi++)
            for (int gg = 0; gg < c->Hkv; gg++)
                for (size_t x = 0; x < (size_t)Lq * (size_t)nblk[bi]; x++)
                    scores[bi][((size_t)gg * (size_t)c->Tq + (size_t)t0) * (size_t)nblk[bi] + x] = -INFINITY;
        return MSA_OK;
    }
    size_t hd = (size_t)c->Hkv * (size_t)c->D, qd = (size_t)c->Hq * (size_t)c->D, id = (size_t)c->HI * (size_t)c->DI;
    float *kf = malloc(sizeof *kf * (size_t)Lk * hd), *ikf = malloc(sizeof *ikf * (size_t)Lk * (size_t)c->DI);
    float *qf = malloc(sizeof *qf * (size_t)Lq * qd), *iqf = malloc(sizeof *iqf * (size_t)Lq * id);
    int *nk = malloc(sizeof *nk * (size_t)Lq);
    int rc = MSA_OK;
    if (!kf || !ikf || !qf || !iqf || !nk) rc = msa_fail(e, MSA_ENOMEM, "%s: recall: out of memory for the GPU inputs", c->label);
    for (int j = 0; !rc && j < Lk; j++) {
        int64_t row = msa_case_kv_row(c, b, j);
        row_to_float(c->dtype, c->k, row, (int)hd, kf + (size_t)j * hd);
        row_to_float(c->index_dtype, c->index_k, row, c->DI, ikf + (size_t)j * (size_t)c->DI);
    }
    for (int i = 0; !rc && i < Lq; i++) {
        row_to_float(c->dtype, c->q, t0 + i, (int)qd, qf + (size_t)i * qd);
        row_to_float(c->index_dtype, c->index_q, t0 + i, (int)id, iqf + (size_t)i * id);
        nk[i] = msa_case_qinfo(c, t0 + i).nkeys;
    }
    double *mp[8], *sp[8];
    for (int bi = 0; bi < nB; bi++) {
        mp[bi] = mass[bi] + (size_t)t0 * (size_t)nblk[bi];
        sp[bi] = scores[bi] + (size_t)t0 * (size_t)nblk[bi];
    }
    char err[256] = "";
    if (!rc && g->fn(Lk, Lq, c->Hkv, G, c->D, c->DI, kf, qf, ikf, iqf, nk, c->softmax_scale, c->index_scale, nB, B,
                     nblk, mp, sp, c->Tq, err, sizeof err))
        rc = msa_fail(e, MSA_EBACKEND, "%s: recall: GPU: %s", c->label, err);
    free(kf); free(ikf); free(qf); free(iqf); free(nk);
    return rc;
}

static int gpu_inputs(recall_gpu *g, const msa_case *c, int nB, const int *B, const int *nblk, double **mass,
                      double **scores, msa_err *e)
{
    if (nB > 8) return msa_fail(e, MSA_EINPUT, "recall: at most 8 block sizes");
    int rc = MSA_OK;
    for (int b = 0; b < c->batch && !rc; b++) rc = gpu_sequence(g, c, b, nB, B, nblk, mass, scores, e);
    return rc;
}

int msa_recall_gpu_inputs(const msa_case *c, int nB, const int *B, const int *nblk, double **mass, double **scores,
                          msa_err *e)
{
    recall_gpu g;
    char dev[192];
    int rc = gpu_open(&g, dev, sizeof dev, e);
    if (!rc) rc = gpu_inputs(&g, c, nB, B, nblk, mass, scores, e);
    gpu_close(&g);
    return rc;
}

/* ---------------------------------------------------------------- the driver */

static int cell_alloc(msa_recall_cell *cl, long cap, int Hkv, int nb)
{
    cl->v_block = malloc(sizeof(double) * (size_t)cap);
    cl->v_mass = malloc(sizeof(double) * (size_t)cap);
    cl->v_free = malloc(sizeof(double) * (size_t)cap);
    cl->v_forced = malloc(sizeof(double) * (size_t)cap);
    cl->v_group = malloc(sizeof(int) * (size_t)cap);
    cl->v_bucket = malloc(sizeof(int) * (size_t)cap);
    cl->per_group = calloc((size_t)Hkv, sizeof *cl->per_group);
    cl->per_bucket = calloc((size_t)nb, sizeof *cl->per_bucket);
    cl->per_bucket_block = calloc((size_t)nb, sizeof *cl->per_bucket_block);
    return cl->v_block && cl->v_mass && cl->v_free && cl->v_forced && cl->v_group && cl->v_bucket &&
           cl->per_group && cl->per_bucket && cl->per_bucket_block;
}

/* Distributions of one cell, including the per-group and per-bucket splits. */
static int cell_stats(msa_recall_cell *cl, int Hkv, int nb)
{
    long n = cl->n;
    double *tmp = malloc(sizeof *tmp * (size_t)(n ? n : 1));
    if (!tmp) return 0;
    memcpy(tmp, cl->v_block, sizeof *tmp * (size_t)n);
    msa_dist_compute(tmp, n, &cl->block_recall);
    memcpy(tmp, cl->v_mass, sizeof *tmp * (size_t)n);
    msa_dist_compute(tmp, n, &cl->mass_recall);
    memcpy(tmp, cl->v_free, sizeof *tmp * (size_t)n);
    msa_dist_compute(tmp, n, &cl->free_recall);
    memcpy(tmp, cl->v_forced, sizeof *tmp * (size_t)n);
    msa_dist_compute(tmp, n, &cl->forced_mass);
    for (int g = 0; g < Hkv; g++) {
        long m = 0;
        for (long i = 0; i < n; i++)
            if (cl->v_group[i] == g) tmp[m++] = cl->v_mass[i];
        msa_dist_compute(tmp, m, &cl->per_group[g]);
    }
    for (int q = 0; q < nb; q++) {
        long m = 0;
        for (long i = 0; i < n; i++)
            if (cl->v_bucket[i] == q) tmp[m++] = cl->v_mass[i];
        msa_dist_compute(tmp, m, &cl->per_bucket[q]);
        m = 0;
        for (long i = 0; i < n; i++)
            if (cl->v_bucket[i] == q) tmp[m++] = cl->v_block[i];
        msa_dist_compute(tmp, m, &cl->per_bucket_block[q]);
    }
    free(tmp);
    return 1;
}

/* Fills the cells of one (record, B): one msa_ref_select, then every k. */
/* Block scores at a multiple B = r * B0 of a block size already scored: the max over a
 * block is the max of its sub-blocks' maxima (invisible keys are -inf in both), so this is
 * exactly what the reference returns at B, without scoring every token again. */
static void coarsen(const double *fine, int nfine, double *coarse, int ncoarse, int ratio, size_t rows)
{
    for (size_t r = 0; r < rows; r++)
        for (int b = 0; b < ncoarse; b++) {
            double m = -INFINITY;
            for (int s = b * ratio; s < (b + 1) * ratio && s < nfine; s++)
                if (fine[r * (size_t)nfine + (size_t)s] > m) m = fine[r * (size_t)nfine + (size_t)s];
            coarse[r * (size_t)ncoarse + (size_t)b] = m;
        }
}

static int max_k(const msa_case *c, const msa_recall_opts *o)
{
    int maxk = 1;
    for (int ki = 0; ki < o->ntopk; ki++)
        if (o->topk[ki] > maxk) maxk = o->topk[ki];
    return c->init_blocks + c->local_blocks > maxk ? c->init_blocks + c->local_blocks : maxk;
}

static int record_block(const msa_trace *t, int ri, int bi, const msa_recall_opts *o, const double *mass,
                        const double *scores, int nblk, msa_recall_result *r, msa_err *e)
{
    const msa_case *c = &t->rec[ri].c;
    int B = o->block[bi];
    int rc = MSA_OK;
    unsigned char *m1 = malloc((size_t)nblk), *m2 = malloc((size_t)nblk);
    int *buf = malloc(sizeof *buf * (size_t)max_k(c, o));
    if (!m1 || !m2 || !buf) rc = msa_fail(e, MSA_ENOMEM, "%s: recall: out of memory", c->label);
    for (int ki = 0; !rc && ki < o->ntopk; ki++) {
        int k = o->topk[ki];
        msa_recall_cell *cl = &r->cell[r->ncell];
        memset(cl, 0, sizeof *cl);
        cl->rec = ri; cl->layer = t->rec[ri].layer; cl->B = B; cl->k = k;
        if (!cell_alloc(cl, (long)c->Hkv * c->Tq + 1, c->Hkv, o->buckets)) {
            r->ncell++;
            rc = msa_fail(e, MSA_ENOMEM, "%s: recall: out of memory", c->label);
            break;
        }
        r->ncell++;
        int init = k >= c->init_blocks + c->local_blocks ? c->init_blocks : 0;
        int local = k >= c->init_blocks + c->local_blocks ? c->local_blocks : 0;
        for (int g = 0; g < c->Hkv; g++)
            for (int tq = 0; tq < c->Tq; tq++) {
                msa_qinfo qi = msa_case_qinfo(c, tq);
                qi.nvis = (qi.nkeys + B - 1) / B; /* at this block size */
                size_t off = ((size_t)g * (size_t)c->Tq + (size_t)tq) * (size_t)nblk;
                double v[4];
                if (!row_metrics(scores + off, mass + off, qi.nvis, k, init, local, m1, m2, buf, v)) {
                    cl->trivial++;
                    continue;
                }
                long pos = qi.nkeys > 0 ? qi.nkeys - 1 : 0;
                int bk = r->maxpos > 0 ? (int)((double)pos * o->buckets / (double)(r->maxpos + 1)) : 0;
                cl->v_block[cl->n] = v[0]; cl->v_mass[cl->n] = v[1];
                cl->v_free[cl->n] = v[2]; cl->v_forced[cl->n] = v[3];
                cl->v_group[cl->n] = g; cl->v_bucket[cl->n] = bk < o->buckets ? bk : o->buckets - 1;
                cl->n++;
            }
        if (!cell_stats(cl, c->Hkv, o->buckets)) rc = msa_fail(e, MSA_ENOMEM, "recall: out of memory");
    }
    free(m1); free(m2); free(buf);
    return rc;
}

static int record_all(const msa_trace *t, int ri, const msa_recall_opts *o, msa_recall_result *r,
                      recall_gpu *gpu, msa_err *e)
{
    const msa_case *c = &t->rec[ri].c;
    if (c->HI != c->Hkv) return msa_fail(e, MSA_EINPUT, "%s: recall: HI != Hkv", c->label);
    int nblk[8];
    double *mass[8] = {0}, *scores[8] = {0};
    int rc = MSA_OK;
    for (int bi = 0; bi < o->nblock && !rc; bi++) {
        nblk[bi] = blocks_for(c, o->block[bi]);
        size_t n = (size_t)c->Hkv * (size_t)c->Tq * (size_t)nblk[bi];
        mass[bi] = calloc(n ? n : 1, sizeof(double));
        scores[bi] = calloc(n ? n : 1, sizeof(double));
        if (!mass[bi] || !scores[bi]) rc = msa_fail(e, MSA_ENOMEM, "%s: recall: out of memory", c->label);
    }
    if (!rc && gpu->open) rc = gpu_inputs(gpu, c, o->nblock, o->block, nblk, mass, scores, e);
    else if (!rc) rc = block_mass_multi(c, o->nblock, o->block, nblk, mass, o->threads, e);
    /* reference scores: once per block size that is not a multiple of one already scored */
    for (int bi = 0; bi < o->nblock && !rc && !gpu->open; bi++) {
        int from = -1;
        for (int j = 0; j < bi && from < 0; j++)
            if (o->block[bi] % o->block[j] == 0) from = j;
        if (from >= 0)
            coarsen(scores[from], nblk[from], scores[bi], nblk[bi], o->block[bi] / o->block[from],
                    (size_t)c->HI * (size_t)c->Tq);
        else rc = ref_scores(c, o->block[bi], max_k(c, o), nblk[bi], scores[bi], e);
    }
    for (int bi = 0; bi < o->nblock && !rc; bi++)
        rc = record_block(t, ri, bi, o, mass[bi], scores[bi], nblk[bi], r, e);
    for (int bi = 0; bi < o->nblock; bi++) {
        free(mass[bi]);
        free(scores[bi]);
    }
    return rc;
}

int msa_recall_run(msa_trace *t, const msa_recall_opts *o, msa_recall_result *r, msa_err *e)
{
    memset(r, 0, sizeof *r);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (o->ntopk < 1 || o->ntopk > 8 || o->nblock < 1 || o->nblock > 8 || o->buckets < 1 || o->buckets > 64)
        return msa_fail(e, MSA_EINPUT, "recall: options: 1-8 values of k and of B, 1-64 buckets");
    for (int i = 0; i < o->ntopk; i++)
        if (o->topk[i] < 1) return msa_fail(e, MSA_EINPUT, "recall: --topk: values must be >= 1");
    for (int i = 0; i < o->nblock; i++)
        if (o->block[i] < 1) return msa_fail(e, MSA_EINPUT, "recall: --block: values must be >= 1");
    r->cell = calloc((size_t)t->nrec * (size_t)o->ntopk * (size_t)o->nblock + 1, sizeof *r->cell);
    if (!r->cell) return msa_fail(e, MSA_ENOMEM, "recall: out of memory");
    r->buckets = o->buckets;
    int rc = MSA_OK;
    for (int i = 0; i < t->nrec && !rc; i++) { /* shapes first: buckets need the longest sequence */
        rc = msa_trace_load_record(t, i, e);
        const msa_case *c = &t->rec[i].c;
        if (!rc && c->Hkv > r->Hkv) r->Hkv = c->Hkv;
        for (int b = 0; !rc && b < c->batch; b++)
            if (msa_case_lk(c, b) - 1 > r->maxpos) r->maxpos = msa_case_lk(c, b) - 1;
        if (!rc && i == 0) r->init_blocks = c->init_blocks, r->local_blocks = c->local_blocks;
        if (rc || t->nrec > 1) msa_trace_unload_record(t, i); /* one record: keep it for the work */
    }
    msa_ref_set_threads(nthreads(o->threads));
    recall_gpu gpu;
    memset(&gpu, 0, sizeof gpu);
    int long_layer = r->maxpos + 1 >= MSA_RECALL_GPU_MIN_KEYS;
    char why[160] = "";
    if (!rc && (o->device == MSA_RECALL_GPU || (o->device == MSA_RECALL_AUTO && long_layer))) {
        msa_err ge = {{0}};
        if (gpu_open(&gpu, r->device, sizeof r->device, &ge)) {
            if (o->device == MSA_RECALL_GPU) rc = msa_fail(e, MSA_EUNSUPPORTED, "recall: --device gpu: %s", ge.msg);
            else snprintf(why, sizeof why, "; GPU not used: %.120s", ge.msg);
        }
    }
    if (!gpu.open)
        snprintf(r->device, sizeof r->device, "cpu (%d threads%s%s)", nthreads(o->threads), why,
                 o->device == MSA_RECALL_AUTO && !long_layer && !why[0] ? "; auto: no sequence reaches 16384 keys" : "");
    r->gpu = gpu.open;
    for (int i = 0; i < t->nrec && !rc; i++) {
        rc = msa_trace_load_record(t, i, e);
        if (!rc) rc = record_all(t, i, o, r, &gpu, e);
        msa_trace_unload_record(t, i);
    }
    gpu_close(&gpu);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc) msa_recall_result_free(r);
    return rc;
}

void msa_recall_result_free(msa_recall_result *r)
{
    for (int i = 0; i < r->ncell; i++) {
        msa_recall_cell *c = &r->cell[i];
        free(c->per_group); free(c->per_bucket); free(c->per_bucket_block);
        free(c->v_block); free(c->v_mass); free(c->v_free); free(c->v_forced);
        free(c->v_group); free(c->v_bucket);
    }
    free(r->cell);
    memset(r, 0, sizeof *r);
}
