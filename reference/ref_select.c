/* ref_select.c - the MSA index branch (MSA.md 4): token scores, block scores (max over
 * the visible keys only, -inf for blocks without one), and the selection with init/local
 * forcing and the canonical tie rule (lower block id wins), ascending ids, -1 tail.
 *
 * Exact mode ranks the exact real scores: each token score is an exact dot product (a dd
 * when it fits, MPFR at MSA_REF_DOT_PREC otherwise), index_scale > 0 does not change the
 * order, and the returned block score is the correctly rounded product scale * max
 * (Ziv loop over an MPFR interval of the scale).  Fast mode ranks doubles. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_internal.h"

typedef struct {
    msa_dd *bm;      /* per block: exact max (dd) */
    double *bmf;     /* fast mode: per block max */
    mpfr_t *bmp;     /* slow exact path: per block max */
    mpfr_t s, tmp;
    int *cand;       /* ranked candidates */
    int slow;        /* this row uses bmp */
} sel_scratch;

typedef struct {
    const msa_ref_data *dd;
    int exact;
    int32_t *topk;
    double *scores;
    sel_scratch *ws;
    msa_dd iscale;
} sel_ctx;

/* Block maxima of row (g, t) over the nk visible keys. */
static int block_max(sel_ctx *x, sel_scratch *w, int g, int t, int nk)
{
    const msa_ref_data *dd = x->dd;
    const double *qi = dd->iq + ((size_t)t * dd->HI + g) * dd->DI;
    const int64_t *rows = dd->rows[dd->qb[t]];
    w->slow = 0;
    for (int j = 0; j < nk; j++) {
        const double *ki = dd->ik + (size_t)rows[j] * dd->DI;
        int blk = j / dd->B;
        if (!x->exact) {
            double s = msa_ref_dot_fast(qi, ki, dd->DI);
            if (j % dd->B == 0 || s > w->bmf[blk]) w->bmf[blk] = s;
            continue;
        }
        msa_dd s;
        if (!msa_ref_dot_dd(qi, ki, dd->DI, &s)) {
            w->slow = 1;
            break;
        }
        if (j % dd->B == 0 || dd_cmp(s, w->bm[blk]) > 0) w->bm[blk] = s;
    }
    if (!w->slow) return MSA_OK;
    for (int j = 0; j < nk; j++) { /* rare: some dot does not fit a dd */
        const double *ki = dd->ik + (size_t)rows[j] * dd->DI;
        int blk = j / dd->B;
        if (msa_ref_dot_mpfr(qi, ki, dd->DI, w->s, w->tmp)) return MSA_EINTERNAL;
        if (j % dd->B == 0 || mpfr_cmp(w->s, w->bmp[blk]) > 0) mpfr_set(w->bmp[blk], w->s, MPFR_RNDN);
    }
    return MSA_OK;
}

/* Is block a strictly better than block b (a > b in score, or equal and a < b)? */
static int better(const sel_ctx *x, const sel_scratch *w, int a, int b)
{
    int c;
    if (!x->exact) c = w->bmf[a] > w->bmf[b] ? 1 : (w->bmf[a] < w->bmf[b] ? -1 : 0);
    else if (w->slow) c = mpfr_cmp(w->bmp[a], w->bmp[b]);
    else c = dd_cmp(w->bm[a], w->bm[b]);
    return c > 0 || (c == 0 && a < b);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Writes the selection of one row (ascending, -1 tail) into out[0..k). */
static void choose(const sel_ctx *x, sel_scratch *w, int nvis, int32_t *out)
{
    const msa_ref_data *dd = x->dd;
    int k = dd->topk, n = 0;
    if (nvis <= k) {
        for (int b = 0; b < nvis; b++) out[n++] = b;
    } else {
        int init = dd->init < k ? dd->init : k;
        int local = dd->local < k - init ? dd->local : k - init;
        int m = k - init - local, have = 0;
        for (int b = 0; b < init; b++) out[n++] = b;
        for (int b = nvis - local; b < nvis; b++) out[n++] = b;
        for (int b = init; b < nvis - local && m > 0; b++) {
            /* candidates in ascending id: an equal score never displaces an earlier id */
            if (have == m && !better(x, w, b, w->cand[m - 1])) continue;
            int pos = have < m ? have++ : m - 1;
            while (pos > 0 && better(x, w, b, w->cand[pos - 1])) {
                w->cand[pos] = w->cand[pos - 1];
                pos--;
            }
            w->cand[pos] = b;
        }
        for (int i = 0; i < have; i++) out[n++] = w->cand[i];
        qsort(out, (size_t)n, sizeof *out, cmp_int);
    }
    for (int i = n; i < k; i++) out[i] = -1;
}

/* Correctly rounded index_scale * max (Ziv: interval of the scale, doubling precision). */
static double exact_block_score(const sel_ctx *x, sel_scratch *w, int blk)
{
    const msa_case *c = x->dd->c;
    mpfr_t m, slo, shi, plo, phi;
    mpfr_init2(m, MSA_REF_DOT_PREC);
    if (w->slow) mpfr_set(m, w->bmp[blk], MPFR_RNDN);
    else {
        mpfr_set_d(m, w->bm[blk].hi, MPFR_RNDN);
        mpfr_add_d(m, m, w->bm[blk].lo, MPFR_RNDN); /* exact: 571 bits suffice */
    }
    double r = 0;
    if (mpfr_zero_p(m)) r = 0.0;
    /* The default scale of a square DI = s^2 is the rational 1/s, an interval of nonzero
     * width unless s is a power of two.  When m / s is dyadic it can be exactly a
     * rounding boundary (a midpoint of two doubles), which every interval straddles: the
     * loop below would double its precision for ever (a fuzz case at DI 144 hung it).
     * Then m / s is exact at m's precision (dividing by the odd part of s adds no bits):
     * round it once.  Otherwise, and for an irrational or explicit scale, the value is
     * no rounding boundary at all, and the loop ends once the interval is narrow enough. */
    int sq = (int)lround(sqrt((double)c->DI));
    if (c->index_scale_is_default && sq * sq == c->DI && !mpfr_zero_p(m)) {
        mpfr_t q;
        mpfr_init2(q, mpfr_get_prec(m));
        if (mpfr_div_ui(q, m, (unsigned long)sq, MPFR_RNDN) == 0) {
            r = mpfr_get_d(q, MPFR_RNDN); /* one correct rounding, ties to even */
            mpfr_clears(q, m, (mpfr_ptr)0);
            return r;
        }
        mpfr_clear(q);
    }
    for (mpfr_prec_t p = 128; !mpfr_zero_p(m); p *= 2) {
        mpfr_inits2(p, slo, shi, plo, phi, (mpfr_ptr)0);
        msa_ref_scale_interval(c->index_scale_is_default, c->index_scale, x->dd->DI, slo, shi);
        int neg = mpfr_sgn(m) < 0;
        mpfr_mul(plo, m, neg ? shi : slo, MPFR_RNDD);
        mpfr_mul(phi, m, neg ? slo : shi, MPFR_RNDU);
        double a = mpfr_get_d(plo, MPFR_RNDN), b = mpfr_get_d(phi, MPFR_RNDN);
        mpfr_clears(slo, shi, plo, phi, (mpfr_ptr)0);
        if (a == b && signbit(a) == signbit(b)) {
            r = a;
            break;
        }
    }
    mpfr_clear(m);
    return r;
}

static int select_row(void *ctxp, long item, int wid)
{
    sel_ctx *x = ctxp;
    const msa_ref_data *dd = x->dd;
    sel_scratch *w = &x->ws[wid];
    int g = (int)(item / dd->Tq), t = (int)(item % dd->Tq);
    int nk = dd->qnkeys[t], nvis = dd->qnvis[t];
    int rc = block_max(x, w, g, t, nk);
    if (rc) return rc;
    size_t row = (size_t)g * dd->Tq + t;
    if (x->topk) choose(x, w, nvis, x->topk + row * dd->topk);
    if (x->scores) {
        double *out = x->scores + row * dd->nblk;
        for (int b = 0; b < dd->nblk; b++) {
            if (b >= nvis) out[b] = -INFINITY;
            else if (!x->exact) out[b] = x->iscale.hi * w->bmf[b];
            else out[b] = exact_block_score(x, w, b);
        }
    }
    return MSA_OK;
}

int msa_ref_select_impl(const msa_ref_data *dd, int exact, int32_t *topk, double *scores,
                        msa_err *e)
{
    int nw = msa_ref_threads(), nb = dd->nblk > 0 ? dd->nblk : 1, rc = MSA_OK;
    double relerr;
    sel_ctx x = {dd, exact, topk, scores, NULL, {0, 0}};
    x.iscale = msa_ref_scale_dd(dd->c->index_scale_is_default, dd->c->index_scale, dd->DI, &relerr);
    x.ws = msa_calloc((size_t)nw, sizeof *x.ws);
    if (!x.ws) return msa_fail(e, MSA_ENOMEM, "%s: reference: out of memory", dd->c->label);
    int inited = 0;
    for (; inited < nw && !rc; inited++) {
        sel_scratch *w = &x.ws[inited];
        w->bm = msa_calloc((size_t)nb, sizeof *w->bm);
        w->bmf = msa_calloc((size_t)nb, sizeof *w->bmf);
        w->cand = msa_calloc((size_t)dd->topk + 1, sizeof *w->cand);
        w->bmp = exact ? msa_calloc((size_t)nb, sizeof *w->bmp) : NULL;
        if (!w->bm || !w->bmf || !w->cand || (exact && !w->bmp)) rc = MSA_ENOMEM;
        for (int b = 0; b < nb && w->bmp; b++) mpfr_init2(w->bmp[b], MSA_REF_DOT_PREC);
        mpfr_inits2(MSA_REF_DOT_PREC, w->s, w->tmp, (mpfr_ptr)0);
    }
    if (!rc) rc = msa_ref_parallel((long)dd->HI * dd->Tq, nw, select_row, &x);
    for (int i = 0; i < inited; i++) {
        sel_scratch *w = &x.ws[i];
        for (int b = 0; b < nb && w->bmp; b++) mpfr_clear(w->bmp[b]);
        mpfr_clears(w->s, w->tmp, (mpfr_ptr)0);
        free(w->bm), free(w->bmf), free(w->cand), free(w->bmp);
    }
    free(x.ws);
    if (rc == MSA_ENOMEM) return msa_fail(e, rc, "%s: reference: out of memory", dd->c->label);
    if (rc) return msa_fail(e, rc, "%s: reference: internal error in selection", dd->c->label);
    return MSA_OK;
}
