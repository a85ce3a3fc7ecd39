/* ref_data.c - the reference's plumbing: decodes a case to doubles and per-query geometry
 * (MSA.md 3: bottom-right alignment, causal visibility, paged rows), runs work items on
 * a pthread pool, and provides the two exact dot products and the certified dd exp that
 * the exact engine builds on.  It computes no attention itself. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ref_internal.h"

/* ---------------------------------------------------------------- decoding */

static int exact_dtype_ok(msa_dtype t)
{
    /* products of two values of these formats have <= 48 significant bits and exponents
     * in [-298, 256]: exact in double.  fp64 inputs would not be. */
    return t == MSA_DT_BF16 || t == MSA_DT_FP16 || t == MSA_DT_FP32 || t == MSA_DT_E4M3 ||
           t == MSA_DT_E5M2;
}

/* Decoding runs on the worker pool in chunks (a long trace's K/V are tens of millions of
 * values, decoded once per reference call); the first non-finite element is reported. */
#define DECODE_CHUNK ((size_t)1 << 18)

typedef struct {
    msa_dtype t;
    const void *src;
    double *out;
    size_t n;
    _Atomic size_t first_bad; /* n when every value is finite */
} decode_job;

static int decode_chunk(void *ctx, long item, int worker)
{
    (void)worker;
    decode_job *j = ctx;
    size_t lo = (size_t)item * DECODE_CHUNK, hi = lo + DECODE_CHUNK < j->n ? lo + DECODE_CHUNK : j->n;
    for (size_t i = lo; i < hi; i++) {
        j->out[i] = msa_dtype_load(j->t, j->src, i);
        if (!isfinite(j->out[i])) {
            size_t cur = atomic_load(&j->first_bad);
            while (i < cur && !atomic_compare_exchange_weak(&j->first_bad, &cur, i)) {}
            break;
        }
    }
    return 0;
}

static double *decode(const msa_case *c, msa_dtype t, const void *src, size_t n,
                      const char *name, int *bad, msa_err *e)
{
    double *out = msa_calloc(n ? n : 1, sizeof *out);
    if (!out) return NULL;
    decode_job j = {.t = t, .src = src, .out = out, .n = n};
    atomic_init(&j.first_bad, n);
    long chunks = (long)((n + DECODE_CHUNK - 1) / DECODE_CHUNK);
    int nw = msa_ref_threads();
    msa_ref_parallel(chunks, nw < chunks ? nw : (int)chunks, decode_chunk, &j);
    size_t fb = atomic_load(&j.first_bad);
    if (fb < n) {
        *bad = 1;
        msa_fail(e, MSA_EINPUT, "%s: %s: non-finite value at element %zu", c->label, name, fb);
    }
    return out;
}

static int geometry(const msa_case *c, msa_ref_data *dd, msa_err *e)
{
    dd->qb = msa_calloc((size_t)c->Tq + 1, sizeof(int));
    dd->qnkeys = msa_calloc((size_t)c->Tq + 1, sizeof(int));
    dd->qnvis = msa_calloc((size_t)c->Tq + 1, sizeof(int));
    dd->rows = msa_calloc((size_t)c->batch + 1, sizeof(int64_t *));
    if (!dd->qb || !dd->qnkeys || !dd->qnvis || !dd->rows) return MSA_ENOMEM;
    if (c->cu_q[0] != 0 || c->cu_k[0] != 0 || c->cu_q[c->batch] != c->Tq)
        return msa_fail(e, MSA_EINPUT, "%s: cu_seqlens: inconsistent with the tensors", c->label);
    for (int b = 0; b < c->batch; b++) {
        int lq = msa_case_lq(c, b), lk = msa_case_lk(c, b);
        if (lq < 0 || lk < 0)
            return msa_fail(e, MSA_EINPUT, "%s: cu_seqlens: decreasing at %d", c->label, b);
        int nb = (lk + dd->B - 1) / dd->B;
        if (nb > dd->nblk) dd->nblk = nb;
        if (lk > dd->max_lk) dd->max_lk = lk;
        dd->rows[b] = msa_calloc((size_t)lk + 1, sizeof(int64_t));
        if (!dd->rows[b]) return MSA_ENOMEM;
        for (int j = 0; j < lk; j++) {
            int64_t row = (int64_t)c->cu_k[b] + j;
            if (c->page_table) {
                if (j / dd->B >= c->max_blocks)
                    return msa_fail(e, MSA_EINPUT, "%s: page_table: too few columns", c->label);
                row = (int64_t)c->page_table[(size_t)b * c->max_blocks + j / dd->B] * dd->B +
                      j % dd->B;
            }
            if (row < 0 || row >= c->Tk)
                return msa_fail(e, MSA_EINPUT, "%s: %s: row %lld of token %d (seq %d) out of range",
                                c->label, c->page_table ? "page_table" : "cu_seqlens_k",
                                (long long)row, j, b);
            dd->rows[b][j] = row;
        }
        for (int i = 0; i < lq; i++) {
            int t = c->cu_q[b] + i;
            long pos = (long)lk - lq + i;
            long nk = c->causal ? pos + 1 : lk;
            if (nk < 0) nk = 0;
            if (nk > lk) nk = lk;
            dd->qb[t] = b;
            dd->qnkeys[t] = (int)nk;
            dd->qnvis[t] = (int)((nk + dd->B - 1) / dd->B);
        }
    }
    return MSA_OK;
}

int msa_ref_data_init(const msa_case *c, int exact, msa_ref_data *dd, msa_err *e)
{
    memset(dd, 0, sizeof *dd);
    dd->c = c;
    if (!c || c->Tq < 0 || c->Tk < 0 || c->Hkv <= 0 || c->Hq <= 0 || c->Hq % c->Hkv ||
        c->HI != c->Hkv || c->D <= 0 || c->DI <= 0 || c->block_size <= 0 || c->topk < 1 ||
        c->batch < 0 || !c->cu_q || !c->cu_k)
        return msa_fail(e, MSA_EINPUT, "%s: shape: invalid case (validate it first)",
                        c ? c->label : "case");
    if (exact && (!exact_dtype_ok(c->dtype) || !exact_dtype_ok(c->index_dtype)))
        return msa_fail(e, MSA_EUNSUPPORTED, "%s: dtype: exact mode needs bf16/fp16/fp32/e4m3/e5m2",
                        c->label);
    dd->Tq = c->Tq, dd->Hq = c->Hq, dd->Hkv = c->Hkv, dd->D = c->D, dd->HI = c->HI;
    dd->DI = c->DI, dd->B = c->block_size, dd->topk = c->topk, dd->group = c->Hq / c->Hkv;
    dd->init = c->init_blocks < 0 ? 0 : c->init_blocks;
    dd->local = c->local_blocks < 0 ? 0 : c->local_blocks;
    int rc = geometry(c, dd, e);
    if (rc) return rc;
    int bad = 0;
    size_t nq = (size_t)c->Tq * c->Hq * c->D, nk = (size_t)c->Tk * c->Hkv * c->D;
    dd->q = decode(c, c->dtype, c->q, nq, "q", &bad, e);
    if (!bad) dd->k = decode(c, c->dtype, c->k, nk, "k", &bad, e);
    if (!bad) dd->v = decode(c, c->dtype, c->v, nk, "v", &bad, e);
    if (!bad) dd->iq = decode(c, c->index_dtype, c->index_q, (size_t)c->Tq * c->HI * c->DI, "index_q", &bad, e);
    if (!bad) dd->ik = decode(c, c->index_dtype, c->index_k, (size_t)c->Tk * c->DI, "index_k", &bad, e);
    if (bad) return MSA_EINPUT;
    if (!dd->q || !dd->k || !dd->v || !dd->iq || !dd->ik) return MSA_ENOMEM;
    return MSA_OK;
}

void msa_ref_data_free(msa_ref_data *dd)
{
    free(dd->q), free(dd->k), free(dd->v), free(dd->iq), free(dd->ik);
    free(dd->qb), free(dd->qnkeys), free(dd->qnvis);
    if (dd->rows && dd->c)
        for (int b = 0; b < dd->c->batch; b++) free(dd->rows[b]);
    free(dd->rows);
    memset(dd, 0, sizeof *dd);
}

/* ---------------------------------------------------------------- threads */

static atomic_int g_threads;

void msa_ref_set_threads(int n) { atomic_store(&g_threads, n > 0 ? n : 0); }

int msa_ref_threads(void)
{
    int n = atomic_load(&g_threads);
    if (n > 0) return n;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)(c < 256 ? c : 256) : 1;
}

typedef struct {
    long n;
    atomic_long next;
    atomic_int status;
    msa_ref_task fn;
    void *ctx;
} pool;

typedef struct {
    pool *p;
    int id;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *w = arg;
    pool *p = w->p;
    /* The widest exponent range MPFR offers (per thread: MPFR is built with TLS), so that
     * exp of score gaps up to ~2^61 neither underflows nor overflows in the MPFR path;
     * restored at the end because worker 0 is the caller's own thread. */
    mpfr_exp_t emin = mpfr_get_emin(), emax = mpfr_get_emax();
    mpfr_set_emin(mpfr_get_emin_min()), mpfr_set_emax(mpfr_get_emax_max());
    for (;;) {
        if (atomic_load(&p->status)) break;
        long i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) break;
        int rc = p->fn(p->ctx, i, w->id);
        if (rc) {
            int zero = 0;
            atomic_compare_exchange_strong(&p->status, &zero, rc);
        }
    }
    mpfr_set_emin(emin), mpfr_set_emax(emax);
    mpfr_free_cache2(MPFR_FREE_LOCAL_CACHE); /* MPFR's per-thread constant caches */
    return NULL;
}

int msa_ref_parallel(long n, int nworkers, msa_ref_task fn, void *ctx)
{
    pool p;
    p.n = n, p.fn = fn, p.ctx = ctx;
    atomic_init(&p.next, 0);
    atomic_init(&p.status, 0);
    if (nworkers < 1) nworkers = 1;
    pthread_t th[256];
    worker_arg args[256];
    int started = 0;
    for (int i = 1; i < nworkers && i < 256; i++) {
        args[i].p = &p, args[i].id = i;
        if (pthread_create(&th[i], NULL, worker, &args[i]) != 0) break;
        started = i;
    }
    args[0].p = &p, args[0].id = 0;
    worker(&args[0]);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    return atomic_load(&p.status);
}

/* ---------------------------------------------------------------- exact dots */

#define DOT_LANES 4 /* independent accumulators: the TwoSum chains are latency bound */

/* One level-1 + level-2 cascaded TwoSum step: s + c + (lost level-2 errors) stays the
 * exact running sum; lost accumulates |f| so that lost == 0 proves s + c exact. */
static inline void cascade(double *s, double *c, double *lost, double p)
{
    double s1 = *s + p, bb = s1 - *s, e1 = (*s - (s1 - bb)) + (p - bb);
    double c1 = *c + e1, cc = c1 - *c, f = (*c - (c1 - cc)) + (e1 - cc);
    *s = s1, *c = c1, *lost += fabs(f);
}

int msa_ref_dot_dd(const double *a, const double *b, int n, msa_dd *out)
{
    /* Products are exact; each lane keeps its exact partial sum as s + c while its lost
     * stays 0.  The lanes' 2 * DOT_LANES doubles are then summed by the same cascade,
     * and one final TwoSum gives the normalised dd with hi = RN(exact). */
    double s[DOT_LANES] = {0}, c[DOT_LANES] = {0}, lost[DOT_LANES] = {0};
    int i = 0;
    for (; i + DOT_LANES <= n; i += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++) cascade(&s[l], &c[l], &lost[l], a[i + l] * b[i + l]);
    for (; i < n; i++) cascade(&s[0], &c[0], &lost[0], a[i] * b[i]);
    double S = s[0], C = c[0], L = lost[0];
    for (int l = 1; l < DOT_LANES; l++) cascade(&S, &C, &L, s[l]), L += lost[l];
    for (int l = 1; l < DOT_LANES; l++) cascade(&S, &C, &L, c[l]);
    *out = dd_two_sum(S, C);
    return L == 0;
}

static inline void neumaier(double *s, double *c, double v)
{
    double t = *s + v;
    *c += fabs(*s) >= fabs(v) ? (*s - t) + v : (v - t) + *s;
    *s = t;
}

double msa_ref_dot_fast(const double *a, const double *b, int n)
{
    double s[DOT_LANES] = {0}, c[DOT_LANES] = {0};
    int i = 0;
    for (; i + DOT_LANES <= n; i += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++) neumaier(&s[l], &c[l], a[i + l] * b[i + l]);
    for (; i < n; i++) neumaier(&s[0], &c[0], a[i] * b[i]);
    double S = 0, C = 0;
    for (int l = 0; l < DOT_LANES; l++) neumaier(&S, &C, s[l]), C += c[l];
    return S + C;
}

int msa_ref_dot_mpfr(const double *a, const double *b, int n, mpfr_t r, mpfr_t tmp)
{
    (void)tmp;
    mpfr_set_zero(r, 1);
    int inexact = 0;
    for (int i = 0; i < n; i++) inexact |= mpfr_add_d(r, r, a[i] * b[i], MPFR_RNDN);
    return inexact ? MSA_EINTERNAL : MSA_OK;
}

/* ---------------------------------------------------------------- dd exp */

#define EXP_TAYLOR_DEG 9 /* |r'| <= 3.4e-4: truncation r'^10/10! < 2^-137 */
#define EXP_SQUARINGS 10 /* r' = r / 2^10 */

static msa_dd g_ln2, g_invfact[EXP_TAYLOR_DEG + 1];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static msa_dd mpfr_to_dd(mpfr_t x, mpfr_t tmp)
{
    msa_dd r;
    r.hi = mpfr_get_d(x, MPFR_RNDN);
    mpfr_sub_d(tmp, x, r.hi, MPFR_RNDN);
    r.lo = mpfr_get_d(tmp, MPFR_RNDN);
    return r;
}

static void consts_once(void)
{
    mpfr_t x, t;
    mpfr_inits2(256, x, t, (mpfr_ptr)0);
    mpfr_const_log2(x, MPFR_RNDN);
    g_ln2 = mpfr_to_dd(x, t);
    for (int n = 0; n <= EXP_TAYLOR_DEG; n++) {
        mpfr_set_ui(x, 1, MPFR_RNDN);
        for (int m = 2; m <= n; m++) mpfr_div_ui(x, x, (unsigned long)m, MPFR_RNDN);
        g_invfact[n] = mpfr_to_dd(x, t);
    }
    mpfr_clears(x, t, (mpfr_ptr)0);
    mpfr_free_cache2(MPFR_FREE_LOCAL_CACHE);
}

void msa_ref_consts_init(void) { pthread_once(&g_once, consts_once); }

/* exp(x) for -600 <= x <= 0.  Error budget (docs/NUMERICS.md (section 11), "dd exp"):
 * reduction r = x - k ln2 has absolute error < 2^-96.3 (ln2 as dd, k*ln2.lo rounded);
 * Horner on r' = r/2^10 gives relative error < 2^-104.3 (3u^2 per step, damped by r');
 * ten dd squarings multiply it by 2^10 and add 1023 * 5u^2: < 2^-92.85 in all, well
 * below MSA_REF_EXP_ERR = 2^-90. */
msa_dd msa_ref_dd_exp(msa_dd x)
{
    double k = nearbyint(x.hi / g_ln2.hi);
    msa_dd p = dd_two_prod(k, g_ln2.hi);
    msa_dd kl = dd_fast_two_sum(p.hi, p.lo + k * g_ln2.lo);
    msa_dd r = dd_add(x, dd_neg(kl));
    r.hi = ldexp(r.hi, -EXP_SQUARINGS), r.lo = ldexp(r.lo, -EXP_SQUARINGS);
    msa_dd t = g_invfact[EXP_TAYLOR_DEG];
    for (int n = EXP_TAYLOR_DEG - 1; n >= 0; n--) t = dd_add(dd_mul(t, r), g_invfact[n]);
    for (int i = 0; i < EXP_SQUARINGS; i++) t = dd_mul(t, t);
    t.hi = ldexp(t.hi, (int)k), t.lo = ldexp(t.lo, (int)k);
    return t;
}

/* ---------------------------------------------------------------- scales */

msa_dd msa_ref_scale_dd(int is_default, double given, int dim, double *relerr)
{
    msa_dd r = {given, 0};
    *relerr = 0;
    if (!is_default) return r;
    mpfr_t x, t;
    mpfr_inits2(256, x, t, (mpfr_ptr)0);
    mpfr_set_ui(t, (unsigned long)dim, MPFR_RNDN);
    mpfr_rec_sqrt(x, t, MPFR_RNDN);
    r = mpfr_to_dd(x, t);
    mpfr_clears(x, t, (mpfr_ptr)0);
    *relerr = 0x1p-104; /* |lo| rounding <= 2^-107 |c|, plus 256-bit rounding: generous */
    return r;
}

void msa_ref_scale_interval(int is_default, double given, int dim, mpfr_t lo, mpfr_t hi)
{
    if (!is_default) {
        mpfr_set_d(lo, given, MPFR_RNDN); /* exact: precision >= 53 */
        mpfr_set_d(hi, given, MPFR_RNDN);
        return;
    }
    mpfr_set_ui(hi, (unsigned long)dim, MPFR_RNDN); /* exact: dim < 2^31 <= precision */
    mpfr_rec_sqrt(lo, hi, MPFR_RNDD);
    mpfr_set_ui(hi, (unsigned long)dim, MPFR_RNDN);
    mpfr_rec_sqrt(hi, hi, MPFR_RNDU);
}
