/* bench_ref.c - benchmark of the CPU reference (issue 2 item 8): exact mode vs fast mode
 * vs a NAIVE MPFR implementation written below, on a fixed set of shapes, printed as a
 * markdown table.  Not a test: it asserts nothing but agreement of the naive results
 * with exact mode (reported, as a sanity check that the naive code computes the same
 * thing).  Goal: exact <= 4x fast and >= 100x faster than naive.
 * Usage: bench_ref [--threads N] [--quick] [--naive-prec BITS] */
#include <math.h>
#include <mpfr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/numfmt.h"
#include "../common/rng.h"
#include "../reference/ref.h"
#include "../reference/ref_internal.h"

typedef struct {
    const char *name;
    int lq, lk, Hq, Hkv, D, DI, B, k, init, local;
    msa_dtype dt;
} shape;

static const shape SHAPES[] = {
    {"prefill-128 bf16", 128, 128, 4, 1, 64, 64, 16, 4, 0, 1, MSA_DT_BF16},
    {"prefill-128 fp32", 128, 128, 4, 1, 64, 64, 16, 4, 0, 1, MSA_DT_FP32},
    {"prefill-512 bf16 D128", 512, 512, 4, 2, 128, 128, 64, 4, 0, 1, MSA_DT_BF16},
    {"decode-4 Lk8192 bf16 M3-like", 4, 8192, 16, 1, 128, 128, 128, 16, 0, 1, MSA_DT_BF16},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ------------------------------------------------------------------ case */

static void put(msa_dtype dt, void *base, size_t i, double x)
{
    if (dt == MSA_DT_BF16) ((uint16_t *)base)[i] = msa_double_to_bf16(x);
    else ((float *)base)[i] = (float)x;
}

static msa_case *make_case(const shape *s, uint64_t seed)
{
    msa_case *c = calloc(1, sizeof *c);
    c->dtype = c->index_dtype = s->dt;
    c->block_size = s->B, c->topk = s->k, c->init_blocks = s->init, c->local_blocks = s->local;
    c->causal = 1, c->softmax_scale_is_default = c->index_scale_is_default = 1;
    c->softmax_scale = 1 / sqrt((double)s->D), c->index_scale = 1 / sqrt((double)s->DI);
    c->batch = 1, c->Hq = s->Hq, c->Hkv = c->HI = s->Hkv, c->D = s->D, c->DI = s->DI;
    c->cu_q = calloc(2, sizeof(int32_t)), c->cu_k = calloc(2, sizeof(int32_t));
    c->cu_q[1] = c->Tq = s->lq, c->cu_k[1] = c->Tk = s->lk;
    c->max_blocks = (s->lk + s->B - 1) / s->B;
    size_t es = msa_dtype_size(s->dt), nq = (size_t)s->lq * s->Hq * s->D, nk = (size_t)s->lk * s->Hkv * s->D;
    size_t niq = (size_t)s->lq * s->Hkv * s->DI, nik = (size_t)s->lk * s->DI;
    c->q = calloc(nq, es), c->k = calloc(nk, es), c->v = calloc(nk, es);
    c->index_q = calloc(niq, es), c->index_k = calloc(nik, es);
    void *bufs[5] = {c->q, c->k, c->v, c->index_q, c->index_k};
    size_t ns[5] = {nq, nk, nk, niq, nik};
    for (int b = 0; b < 5; b++)
        for (size_t i = 0; i < ns[b]; i++) put(s->dt, bufs[b], i, msa_rng_normal(seed, (uint64_t)b, i));
    snprintf(c->label, sizeof c->label, "%s", s->name);
    return c;
}

static void free_case(msa_case *c)
{
    free(c->cu_q), free(c->cu_k), free(c->q), free(c->k), free(c->v), free(c->index_q), free(c->index_k);
    free(c);
}

/* ------------------------------------------------------------------ NAIVE MPFR
 * The straightforward way to be "exact enough": every operation in MPFR at a fixed high
 * precision (NAIVE_PREC bits), no exactness argument, no certificate, one thread.  It is
 * here only to measure what the exact engine saves. */
static mpfr_prec_t NAIVE_PREC = 256; /* --naive-prec; 800 makes every dot exact for fp32 */

typedef struct {
    mpfr_t acc, p, m, l, e, x, c, ci;
    mpfr_t *s, *n; /* scores per token, numerators per d */
} naive_ws;

static void naive_dot(naive_ws *w, msa_dtype dt, const void *a, size_t ia, const void *b, size_t ib, int n)
{
    mpfr_set_zero(w->acc, 1);
    for (int d = 0; d < n; d++) {
        mpfr_set_d(w->p, msa_dtype_load(dt, a, ia + d), MPFR_RNDN);
        mpfr_mul_d(w->p, w->p, msa_dtype_load(dt, b, ib + d), MPFR_RNDN);
        mpfr_add(w->acc, w->acc, w->p, MPFR_RNDN);
    }
}

/* Attention of row (t, h) over keys [0, nk) whose block is selected (sel == NULL: all). */
static void naive_row(naive_ws *w, const msa_case *c, int t, int h, int nk, const int32_t *sel,
                      double *out, double *lse)
{
    int g = h / (c->Hq / c->Hkv), n = 0, B = c->block_size;
    mpfr_set_inf(w->m, -1);
    for (int j = 0; j < nk; j++) {
        int ok = !sel;
        for (int i = 0; sel && i < c->topk; i++) ok |= sel[i] == j / B;
        if (!ok) continue;
        naive_dot(w, c->dtype, c->q, ((size_t)t * c->Hq + h) * c->D, c->k, ((size_t)j * c->Hkv + g) * c->D, c->D);
        mpfr_mul(w->s[j], w->acc, w->c, MPFR_RNDN);
        if (mpfr_cmp(w->s[j], w->m) > 0) mpfr_set(w->m, w->s[j], MPFR_RNDN);
        n++;
    }
    for (int d = 0; d < c->D; d++) mpfr_set_zero(w->n[d], 1);
    mpfr_set_zero(w->l, 1);
    for (int j = 0; j < nk && n; j++) {
        int ok = !sel;
        for (int i = 0; sel && i < c->topk; i++) ok |= sel[i] == j / B;
        if (!ok) continue;
        mpfr_sub(w->x, w->s[j], w->m, MPFR_RNDN);
        mpfr_exp(w->e, w->x, MPFR_RNDN);
        mpfr_add(w->l, w->l, w->e, MPFR_RNDN);
        for (int d = 0; d < c->D; d++) {
            mpfr_mul_d(w->p, w->e, msa_dtype_load(c->dtype, c->v, ((size_t)j * c->Hkv + g) * c->D + d), MPFR_RNDN);
            mpfr_add(w->n[d], w->n[d], w->p, MPFR_RNDN);
        }
    }
    for (int d = 0; d < c->D; d++) {
        if (n) mpfr_div(w->n[d], w->n[d], w->l, MPFR_RNDN);
        out[d] = n ? mpfr_get_d(w->n[d], MPFR_RNDN) : 0.0;
    }
    if (n) {
        mpfr_log(w->l, w->l, MPFR_RNDN);
        mpfr_add(w->l, w->l, w->m, MPFR_RNDN);
    }
    *lse = n ? mpfr_get_d(w->l, MPFR_RNDN) : -INFINITY;
}

/* Naive index branch for row (g, t): block maxima in MPFR, then k rounds of "take the
 * best unselected block" (forcing init/local first). */
static void naive_select(naive_ws *w, const msa_case *c, int g, int t, int nk, int32_t *sel)
{
    int B = c->block_size, nvis = (nk + B - 1) / B, k = c->topk, n = 0;
    for (int j = 0; j < nk; j++) {
        naive_dot(w, c->index_dtype, c->index_q, ((size_t)t * c->HI + g) * c->DI, c->index_k, (size_t)j * c->DI, c->DI);
        mpfr_mul(w->acc, w->acc, w->ci, MPFR_RNDN);
        if (j % B == 0 || mpfr_cmp(w->acc, w->s[j / B]) > 0) mpfr_set(w->s[j / B], w->acc, MPFR_RNDN);
    }
    char taken[1024] = {0};
    for (int b = 0; b < nvis; b++)
        if (nvis <= k || b < c->init_blocks || b >= nvis - c->local_blocks) taken[b] = 1, sel[n++] = b;
    while (n < k && n < nvis) {
        int best = -1;
        for (int b = 0; b < nvis; b++)
            if (!taken[b] && (best < 0 || mpfr_cmp(w->s[b], w->s[best]) > 0)) best = b;
        taken[best] = 1, sel[n++] = best;
    }
    while (n < k) sel[n++] = -1;
}

static double naive_run(const msa_case *c, double *out, double *lse, double *dout, double *dlse)
{
    naive_ws w;
    mpfr_inits2(NAIVE_PREC, w.acc, w.p, w.m, w.l, w.e, w.x, w.c, w.ci, (mpfr_ptr)0);
    w.s = malloc((size_t)c->Tk * sizeof *w.s), w.n = malloc((size_t)c->D * sizeof *w.n);
    for (int j = 0; j < c->Tk; j++) mpfr_init2(w.s[j], NAIVE_PREC);
    for (int d = 0; d < c->D; d++) mpfr_init2(w.n[d], NAIVE_PREC);
    mpfr_set_ui(w.c, (unsigned long)c->D, MPFR_RNDN), mpfr_rec_sqrt(w.c, w.c, MPFR_RNDN);
    mpfr_set_ui(w.ci, (unsigned long)c->DI, MPFR_RNDN), mpfr_rec_sqrt(w.ci, w.ci, MPFR_RNDN);
    int32_t *sel = malloc((size_t)c->topk * sizeof *sel);
    double t0 = now();
    for (int t = 0; t < c->Tq; t++) {
        int nk = c->Tk - c->Tq + t + 1;
        for (int g = 0; g < c->Hkv; g++) {
            naive_select(&w, c, g, t, nk, sel);
            for (int h = g * (c->Hq / c->Hkv); h < (g + 1) * (c->Hq / c->Hkv); h++) {
                size_t r = (size_t)t * c->Hq + h;
                naive_row(&w, c, t, h, nk, sel, out + r * c->D, lse + r);
                naive_row(&w, c, t, h, nk, NULL, dout + r * c->D, dlse + r);
            }
        }
    }
    double el = now() - t0;
    for (int j = 0; j < c->Tk; j++) mpfr_clear(w.s[j]);
    for (int d = 0; d < c->D; d++) mpfr_clear(w.n[d]);
    mpfr_clears(w.acc, w.p, w.m, w.l, w.e, w.x, w.c, w.ci, (mpfr_ptr)0);
    free(w.s), free(w.n), free(sel);
    mpfr_free_cache();
    return el;
}

/* ------------------------------------------------------------------ driver */

static double time_ref(const msa_case *c, msa_ref_mode m, int reps, msa_ref_result *keep)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        msa_ref_result res;
        msa_err e;
        double t0 = now();
        if (msa_ref_run(c, m, &res, &e)) {
            fprintf(stderr, "bench_ref: %s\n", e.msg);
            exit(1);
        }
        double el = now() - t0;
        if (el < best) best = el;
        if (keep && r == 0) *keep = res;
        else msa_ref_result_free(&res);
    }
    return best;
}

static size_t ulp_diffs(const double *a, const double *b, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !(a[i] == b[i] || (isinf(a[i]) && isinf(b[i])));
    return bad;
}

int main(int argc, char **argv)
{
    int threads = 1, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--naive-prec") && i + 1 < argc) NAIVE_PREC = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_ref [--threads N] [--quick] [--naive-prec BITS]\n");
            return 2;
        }
    }
    msa_ref_set_threads(threads);
    if (NAIVE_PREC < 64) NAIVE_PREC = 64;
    printf("threads: %d (exact and fast); naive MPFR: 1 thread, %ld-bit precision\n\n", threads, (long)NAIVE_PREC);
    printf("| shape | exact (s) | fast (s) | naive MPFR (s) | exact/fast | naive/exact | rows via MPFR | naive==exact |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    int nsh = (int)(sizeof SHAPES / sizeof SHAPES[0]);
    for (int i = 0; i < (quick ? 2 : nsh); i++) {
        msa_case *c = make_case(&SHAPES[i], 1234 + (uint64_t)i);
        msa_ref_result ex;
        long mp0 = msa_ref_debug_rows(1), dd0 = msa_ref_debug_rows(0);
        double te = time_ref(c, MSA_REF_EXACT, 3, &ex);
        long mp = (msa_ref_debug_rows(1) - mp0) / 3, rows = (msa_ref_debug_rows(0) - dd0) / 3 + mp;
        double tf = time_ref(c, MSA_REF_FAST, 3, NULL);
        size_t no = (size_t)c->Tq * c->Hq * c->D, nl = (size_t)c->Tq * c->Hq;
        double *o = malloc(no * 8), *l = malloc(nl * 8), *dout = malloc(no * 8), *dl = malloc(nl * 8);
        double tn = naive_run(c, o, l, dout, dl);
        size_t diff = ulp_diffs(o, ex.out, no) + ulp_diffs(l, ex.lse, nl) + ulp_diffs(dout, ex.dense_out, no) +
                      ulp_diffs(dl, ex.dense_lse, nl);
        printf("| %s | %.4f | %.4f | %.2f | %.2f | %.0f | %ld/%ld | %zu of %zu differ |\n", SHAPES[i].name, te,
               tf, tn, te / tf, tn / te, mp, rows, diff, 2 * (no + nl));
        fflush(stdout);
        msa_ref_result_free(&ex);
        free(o), free(l), free(dout), free(dl);
        free_case(c);
    }
    mpfr_free_cache();
    return 0;
}
