/* ref_attend.c - the main branch (MSA.md 5): softmax attention of each (query row, head)
 * over the visible tokens of the selected blocks, or over all visible tokens (dense
 * causal GQA) when no selection is given.  Empty rows give out = +0, lse = -inf.
 *
 * Fast mode: doubles, Neumaier-compensated sums.
 * Exact mode, Ziv's strategy, per row:
 *  1. certified dd path: exact dd scores, dd exp and sums with a rigorous error bound;
 *     every output is returned only if the bound proves its rounding to double
 *     (docs/NUMERICS.md (section 11) derives each constant below);
 *  2. otherwise the MPFR path: exact scores, tokens grouped by equal exact score, MPFR
 *     interval arithmetic (RNDD/RNDU) at doubling precision until both ends round to the
 *     same double.  Grouping makes exact zeros and exact rationals collapse the interval;
 *     every other value is transcendental (Lindemann-Weierstrass), so the loop ends. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ref_internal.h"

#define X_CUT (-600.0)       /* dd path: exp(x) for x < X_CUT is dropped, exp(-600) < 2^-865 */
#define CUT_VAL 0x1p-865
#define EPS_E 0x1p-89        /* dd exp (2^-90) + argument error 600 * 2^-102 < 2^-92.7 */
#define EPS_ADD 0x1p-103     /* per dd_add / dd_mul_d step, generous over 3u^2 and 2u^2 */
#define EPS_DIV 0x1p-101     /* dd_div: 15u^2 + 56u^3 < 2^-102 */
#define UNDERFLOW_SLACK 0x1p-1040 /* per term: products e*v may lose bits below 2^-1074 */
#define TINY_Q 0x1p-900      /* below this the dd quotient may have underflowed: use MPFR */
#define MAX_PREC (1L << 16)  /* Ziv's loop gives up here: see row_mpfr */

typedef struct {
    int *toks;               /* storage rows of J */
    double *eh, *el;         /* dd path: weights */
    msa_dd *s;               /* dd path: exact scores */
    double *acc, *comp, *absacc; /* per-d sums (fast: value + compensation; dd: hi, lo, sum |.|) */
    char *mark;              /* selected blocks */
    int *order, *tmp;        /* MPFR path: tokens sorted by score */
    int *gstart, *gcount;    /* MPFR path: groups of equal score */
    mpfr_t *sp;              /* MPFR path: exact scores (lazy) */
    mpfr_t *elo, *ehi;       /* MPFR path: interval weights per group (lazy) */
    int mp_ready;
    char *done;
    mpfr_t a, b, x, y, lo, hi, clo, chi, Llo, Lhi, Nlo, Nhi, C, M;
    mpfr_t Rlo, Rhi, wlo, whi, arglo, arghi; /* mp_out relative to its top group */
    mpfr_t Bv, Dv, Plo, Phi;                 /* boundary cases: see mp_side */
} att_scratch;

typedef struct {
    const msa_ref_data *dd;
    int exact;
    const int32_t *topk;
    double *out, *lse;
    att_scratch *ws;
    msa_dd cdd;
    double c_relerr;
} att_ctx;

/* ------------------------------------------------------------------ the token set J */

static int gather(const att_ctx *x, att_scratch *w, int t, int g)
{
    const msa_ref_data *dd = x->dd;
    int nk = dd->qnkeys[t], nvis = dd->qnvis[t], n = 0;
    const int64_t *rows = dd->rows[dd->qb[t]];
    if (x->topk) {
        const int32_t *sel = x->topk + ((size_t)g * dd->Tq + t) * dd->topk;
        for (int i = 0; i < dd->topk; i++)
            if (sel[i] >= 0 && sel[i] < nvis) w->mark[sel[i]] = 1;
    }
    for (int b = 0; b < nvis; b++) {
        if (x->topk && !w->mark[b]) continue;
        w->mark[b] = 0;
        int end = (b + 1) * dd->B < nk ? (b + 1) * dd->B : nk;
        for (int j = b * dd->B; j < end; j++) w->toks[n++] = (int)rows[j];
    }
    return n;
}

/* ------------------------------------------------------------------ fast mode */

static void neumaier(double *s, double *c, double v)
{
    double t = *s + v;
    *c += fabs(*s) >= fabs(v) ? (*s - t) + v : (v - t) + *s;
    *s = t;
}

static void row_fast(const att_ctx *x, att_scratch *w, const double *q, int g, int n,
                     double *out, double *lse)
{
    const msa_ref_data *dd = x->dd;
    int D = dd->D;
    double c = x->cdd.hi, M = -INFINITY, L = 0, Lc = 0; /* RN(scale), even if the case's double is not */
    for (int i = 0; i < n; i++) {
        const double *kr = dd->k + ((size_t)w->toks[i] * dd->Hkv + g) * D;
        w->eh[i] = c * msa_ref_dot_fast(q, kr, D);
        if (w->eh[i] > M) M = w->eh[i];
    }
    for (int d = 0; d < D; d++) w->acc[d] = w->comp[d] = 0;
    for (int i = 0; i < n; i++) {
        double p = exp(w->eh[i] - M);
        const double *vr = dd->v + ((size_t)w->toks[i] * dd->Hkv + g) * D;
        neumaier(&L, &Lc, p);
        for (int d = 0; d < D; d++) neumaier(&w->acc[d], &w->comp[d], p * vr[d]);
    }
    L += Lc;
    for (int d = 0; d < D; d++) out[d] = (w->acc[d] + w->comp[d]) / L;
    *lse = M + log(L);
}

/* ------------------------------------------------------------------ exact: dd path */

/* Is RN(q.hi + q.lo + delta) == q.hi for every |delta| <= bound? */
static int certify(msa_dd q, double bound)
{
    double up = nextafter(q.hi, INFINITY) - q.hi, dn = q.hi - nextafter(q.hi, -INFINITY);
    double half = (up < dn ? up : dn) / 2;
    return (fabs(q.lo) + bound) * (1 + 0x1p-50) < half;
}

/* lse = c*M + log(L) from the dd L (relative error epsL) by MPFR intervals. */
static int lse_interval(const att_ctx *x, att_scratch *w, msa_dd M, msa_dd L, double epsL,
                        double *lse)
{
    const msa_case *c = x->dd->c;
    mpfr_set_prec(w->lo, 128), mpfr_set_prec(w->hi, 128);
    mpfr_set_prec(w->clo, 128), mpfr_set_prec(w->chi, 128);
    mpfr_set_d(w->lo, L.hi, MPFR_RNDD), mpfr_add_d(w->lo, w->lo, L.lo, MPFR_RNDD);
    mpfr_set_d(w->hi, L.hi, MPFR_RNDU), mpfr_add_d(w->hi, w->hi, L.lo, MPFR_RNDU);
    /* widen by the relative error of L (1 - epsL is not a double when epsL < 2^-53) */
    mpfr_mul_d(w->a, w->lo, epsL, MPFR_RNDU), mpfr_sub(w->lo, w->lo, w->a, MPFR_RNDD);
    mpfr_mul_d(w->b, w->hi, epsL, MPFR_RNDU), mpfr_add(w->hi, w->hi, w->b, MPFR_RNDU);
    mpfr_log(w->lo, w->lo, MPFR_RNDD), mpfr_log(w->hi, w->hi, MPFR_RNDU);
    mpfr_set_d(w->M, M.hi, MPFR_RNDN), mpfr_add_d(w->M, w->M, M.lo, MPFR_RNDN); /* exact */
    msa_ref_scale_interval(c->softmax_scale_is_default, c->softmax_scale, x->dd->D, w->clo, w->chi);
    int neg = mpfr_sgn(w->M) < 0;
    mpfr_mul(w->a, w->M, neg ? w->chi : w->clo, MPFR_RNDD);
    mpfr_mul(w->b, w->M, neg ? w->clo : w->chi, MPFR_RNDU);
    mpfr_add(w->lo, w->lo, w->a, MPFR_RNDD), mpfr_add(w->hi, w->hi, w->b, MPFR_RNDU);
    double a = mpfr_get_d(w->lo, MPFR_RNDN), b = mpfr_get_d(w->hi, MPFR_RNDN);
    *lse = a;
    return a == b && signbit(a) == signbit(b);
}

/* Returns 1 when every output of the row is certified, 0 to fall back to MPFR. */
static int row_dd(const att_ctx *x, att_scratch *w, const double *q, int g, int n,
                  double *out, double *lse)
{
    const msa_ref_data *dd = x->dd;
    int D = dd->D, M_at = 0, ncut = 0;
    for (int i = 0; i < n; i++) {
        const double *kr = dd->k + ((size_t)w->toks[i] * dd->Hkv + g) * D;
        if (!msa_ref_dot_dd(q, kr, D, &w->s[i])) return 0;
        if (dd_cmp(w->s[i], w->s[M_at]) > 0) M_at = i;
    }
    msa_dd M = w->s[M_at], L = {0, 0};
    double cutv = 0;
    for (int i = 0; i < n; i++) {
        msa_dd xi = dd_mul(x->cdd, dd_add(w->s[i], dd_neg(M)));
        if (xi.hi < X_CUT) {
            w->eh[i] = w->el[i] = 0, ncut++;
            const double *vr = dd->v + ((size_t)w->toks[i] * dd->Hkv + g) * D;
            for (int d = 0; d < D; d++) cutv = fmax(cutv, fabs(vr[d]));
            continue;
        }
        msa_dd e = msa_ref_dd_exp(xi);
        w->eh[i] = e.hi, w->el[i] = e.lo;
        L = dd_add(L, e);
    }
    double epsL = EPS_E + n * EPS_ADD + ncut * CUT_VAL;
    double epsN = EPS_E + (n + 2) * EPS_ADD;
    double *Nh = w->acc, *Nl = w->comp, *A = w->absacc;
    for (int d = 0; d < D; d++) Nh[d] = Nl[d] = A[d] = 0;
    for (int i = 0; i < n; i++) { /* token-outer: the D column sums are independent */
        const double *vr = dd->v + ((size_t)w->toks[i] * dd->Hkv + g) * D;
        msa_dd e = {w->eh[i], w->el[i]};
        if (e.hi == 0) continue; /* cut token, accounted for in EN */
        for (int d = 0; d < D; d++) {
            msa_dd N = dd_add((msa_dd){Nh[d], Nl[d]}, dd_mul_d(e, vr[d]));
            Nh[d] = N.hi, Nl[d] = N.lo;
            A[d] += e.hi * fabs(vr[d]);
        }
    }
    for (int d = 0; d < D; d++) {
        msa_dd N = {Nh[d], Nl[d]};
        double Aup = A[d] * (1 + (n + 2) * 0x1p-52) + n * 0x1p-1074;
        double EN = epsN * Aup + ncut * CUT_VAL * cutv + (A[d] > 0 ? (n + 1) * UNDERFLOW_SLACK : 0);
        msa_dd qd = dd_div(N, L);
        if (qd.hi == 0) {
            if (EN != 0) return 0;
            out[d] = 0.0;
            continue;
        }
        if (fabs(qd.hi) < TINY_Q) return 0;
        double bound = (EN / L.hi + fabs(qd.hi) * (epsL + EPS_DIV)) * (1 + 0x1p-40);
        if (!certify(qd, bound)) return 0;
        out[d] = qd.hi;
    }
    return lse_interval(x, w, M, L, epsL, lse);
}

/* ------------------------------------------------------------------ exact: MPFR path */

static void msort(att_scratch *w, int lo, int hi) /* sorts w->order[lo, hi) by score */
{
    if (hi - lo < 2) return;
    int mid = (lo + hi) / 2, i = lo, j = mid, k = lo;
    msort(w, lo, mid), msort(w, mid, hi);
    while (i < mid || j < hi) {
        if (j >= hi || (i < mid && mpfr_cmp(w->sp[w->order[i]], w->sp[w->order[j]]) <= 0))
            w->tmp[k++] = w->order[i++];
        else w->tmp[k++] = w->order[j++];
    }
    memcpy(w->order + lo, w->tmp + lo, (size_t)(hi - lo) * sizeof *w->order);
}

static int mp_prepare(const att_ctx *x, att_scratch *w)
{
    if (w->mp_ready) return MSA_OK;
    size_t n = (size_t)x->dd->max_lk + 1;
    w->sp = msa_calloc(n, sizeof *w->sp);
    w->elo = msa_calloc(n, sizeof *w->elo);
    w->ehi = msa_calloc(n, sizeof *w->ehi);
    if (!w->sp || !w->elo || !w->ehi) return MSA_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        mpfr_init2(w->sp[i], MSA_REF_DOT_PREC);
        mpfr_inits2(64, w->elo[i], w->ehi[i], (mpfr_ptr)0);
    }
    w->mp_ready = 1;
    return MSA_OK;
}

/* Interval weights exp(c * (score_G - M)) of every group at precision p; returns L. */
static void mp_weights(const att_ctx *x, att_scratch *w, int ng, mpfr_prec_t p)
{
    const msa_case *c = x->dd->c;
    mpfr_t *M = &w->sp[w->order[w->gstart[ng - 1]]];
    mpfr_set_prec(w->clo, p), mpfr_set_prec(w->chi, p), mpfr_set_prec(w->lo, p), mpfr_set_prec(w->hi, p);
    mpfr_set_prec(w->Llo, p), mpfr_set_prec(w->Lhi, p);
    msa_ref_scale_interval(c->softmax_scale_is_default, c->softmax_scale, x->dd->D, w->clo, w->chi);
    mpfr_set_zero(w->Llo, 1), mpfr_set_zero(w->Lhi, 1);
    for (int G = 0; G < ng; G++) {
        mpfr_set_prec(w->elo[G], p), mpfr_set_prec(w->ehi[G], p);
        mpfr_sub(w->a, w->sp[w->order[w->gstart[G]]], *M, MPFR_RNDN); /* exact, <= 0 */
        mpfr_mul(w->lo, w->a, w->chi, MPFR_RNDD), mpfr_mul(w->hi, w->a, w->clo, MPFR_RNDU);
        mpfr_exp(w->elo[G], w->lo, MPFR_RNDD), mpfr_exp(w->ehi[G], w->hi, MPFR_RNDU);
        mpfr_mul_ui(w->lo, w->elo[G], (unsigned long)w->gcount[G], MPFR_RNDD);
        mpfr_mul_ui(w->hi, w->ehi[G], (unsigned long)w->gcount[G], MPFR_RNDU);
        mpfr_add(w->Llo, w->Llo, w->lo, MPFR_RNDD), mpfr_add(w->Lhi, w->Lhi, w->hi, MPFR_RNDU);
    }
}

/* w->C = exact sum of column d of v over group G. */
static void group_sum(const att_ctx *x, att_scratch *w, int g, int G, int d)
{
    const msa_ref_data *dd = x->dd;
    mpfr_set_zero(w->C, 1);
    for (int m = 0; m < w->gcount[G]; m++) {
        int tok = w->toks[w->order[w->gstart[G] + m]];
        mpfr_add_d(w->C, w->C, dd->v[((size_t)tok * dd->Hkv + g) * dd->D + d], MPFR_RNDN);
    }
}

/* [wlo, whi] encloses exp(c * (score_G - ref)), either sign of the difference. */
static void rel_weight(att_scratch *w, int G, mpfr_t ref)
{
    mpfr_sub(w->a, w->sp[w->order[w->gstart[G]]], ref, MPFR_RNDN); /* exact */
    int neg = mpfr_sgn(w->a) < 0;
    mpfr_mul(w->arglo, w->a, neg ? w->chi : w->clo, MPFR_RNDD);
    mpfr_mul(w->arghi, w->a, neg ? w->clo : w->chi, MPFR_RNDU);
    mpfr_exp(w->wlo, w->arglo, MPFR_RNDD), mpfr_exp(w->whi, w->arghi, MPFR_RNDU);
}

/* Is x exactly halfway between two consecutive doubles? */
static int is_midpoint(mpfr_t x, mpfr_t tmp)
{
    double d1 = mpfr_get_d(x, MPFR_RNDD), d2 = mpfr_get_d(x, MPFR_RNDU);
    if (d1 == d2 || !isfinite(d1) || !isfinite(d2)) return 0;
    mpfr_set_d(tmp, d1, MPFR_RNDN);
    mpfr_add_d(tmp, tmp, d2, MPFR_RNDN); /* exact: tmp has >= 800 bits */
    mpfr_div_2ui(tmp, tmp, 1, MPFR_RNDN);
    return mpfr_equal_p(tmp, x);
}

/* Boundary case of mp_out (only reachable when weights are far below the working
 * precision, i.e. score gaps of hundreds of thousands or more): out = B + P / L with
 * B = C_top / n_top exactly a midpoint of doubles and P = sum over lower groups of
 * (C_G - B n_G) e_G.  Interval arithmetic then keeps B inside [lo, hi] forever, but only
 * the sign of P matters: relative to the highest lower group with a nonzero coefficient,
 * P' = D_G2 + (terms with weights <= 1), whose sign is certain.  Returns +1 / -1, 0 when
 * P = 0 exactly (out = B), 2 when undecided at this precision or B is not a midpoint. */
static int mp_side(const att_ctx *x, att_scratch *w, int g, int ng, int d, mpfr_prec_t p)
{
    group_sum(x, w, g, ng - 1, d);
    if (mpfr_div_ui(w->Bv, w->C, (unsigned long)w->gcount[ng - 1], MPFR_RNDN) != 0) return 2;
    if (!is_midpoint(w->Bv, w->Dv)) return 2;
    int G2 = ng - 2;
    for (; G2 >= 0; G2--) {
        group_sum(x, w, g, G2, d);
        mpfr_mul_ui(w->Dv, w->Bv, (unsigned long)w->gcount[G2], MPFR_RNDN); /* exact */
        mpfr_sub(w->Dv, w->C, w->Dv, MPFR_RNDN);                          /* exact */
        if (mpfr_sgn(w->Dv) != 0) break;
    }
    if (G2 < 0) return 0;
    mpfr_t *ref = &w->sp[w->order[w->gstart[G2]]];
    mpfr_set_prec(w->Plo, p), mpfr_set_prec(w->Phi, p);
    mpfr_set_zero(w->Plo, 1), mpfr_set_zero(w->Phi, 1);
    for (int G = 0; G <= G2; G++) {
        group_sum(x, w, g, G, d);
        mpfr_mul_ui(w->Dv, w->Bv, (unsigned long)w->gcount[G], MPFR_RNDN);
        mpfr_sub(w->Dv, w->C, w->Dv, MPFR_RNDN);
        int sg = mpfr_sgn(w->Dv);
        if (sg == 0) continue;
        rel_weight(w, G, *ref);
        mpfr_mul(w->lo, w->Dv, sg > 0 ? w->wlo : w->whi, MPFR_RNDD);
        mpfr_mul(w->hi, w->Dv, sg > 0 ? w->whi : w->wlo, MPFR_RNDU);
        mpfr_add(w->Plo, w->Plo, w->lo, MPFR_RNDD), mpfr_add(w->Phi, w->Phi, w->hi, MPFR_RNDU);
    }
    return mpfr_sgn(w->Plo) > 0 ? 1 : mpfr_sgn(w->Phi) < 0 ? -1 : 2;
}

/* One output column d at precision p: 1 when certified (value in *res).
 * N = sum_G C_G e_G is computed relative to the highest-scoring group G1 with C != 0:
 * N / L = N' / L' with weights exp(c (score - score_G1)).  Then N' = C_G1 + (smaller
 * terms), so even when every weight of a nonzero C underflows relative to the max,
 * the sign of N' is certain and a result below the double range rounds to the right
 * signed zero (otherwise the interval would straddle 0 forever). */
static int mp_out(const att_ctx *x, att_scratch *w, int g, int ng, int d, mpfr_prec_t p, double *res)
{
    int G1 = ng - 1;
    for (; G1 >= 0; G1--) {
        group_sum(x, w, g, G1, d);
        if (mpfr_sgn(w->C) != 0) break;
    }
    if (G1 < 0) { /* exactly zero: every group's v sums to 0 */
        *res = 0.0;
        return 1;
    }
    mpfr_ptr Llo = w->Llo, Lhi = w->Lhi;
    mpfr_t *ref = &w->sp[w->order[w->gstart[G1]]];
    mpfr_set_prec(w->Nlo, p), mpfr_set_prec(w->Nhi, p), mpfr_set_prec(w->lo, p), mpfr_set_prec(w->hi, p);
    mpfr_set_prec(w->wlo, p), mpfr_set_prec(w->whi, p), mpfr_set_prec(w->arglo, p), mpfr_set_prec(w->arghi, p);
    mpfr_set_zero(w->Nlo, 1), mpfr_set_zero(w->Nhi, 1);
    if (G1 < ng - 1) { /* L' relative to G1 (weights above G1 may exceed 1, even overflow) */
        mpfr_set_prec(w->Rlo, p), mpfr_set_prec(w->Rhi, p);
        mpfr_set_zero(w->Rlo, 1), mpfr_set_zero(w->Rhi, 1);
        for (int G = 0; G < ng; G++) {
            rel_weight(w, G, *ref);
            mpfr_mul_ui(w->lo, w->wlo, (unsigned long)w->gcount[G], MPFR_RNDD);
            mpfr_mul_ui(w->hi, w->whi, (unsigned long)w->gcount[G], MPFR_RNDU);
            mpfr_add(w->Rlo, w->Rlo, w->lo, MPFR_RNDD), mpfr_add(w->Rhi, w->Rhi, w->hi, MPFR_RNDU);
        }
        Llo = w->Rlo, Lhi = w->Rhi;
    }
    for (int G = 0; G <= G1; G++) {
        group_sum(x, w, g, G, d);
        int sg = mpfr_sgn(w->C);
        if (sg == 0) continue;
        if (G1 < ng - 1) rel_weight(w, G, *ref);
        else mpfr_set(w->wlo, w->elo[G], MPFR_RNDD), mpfr_set(w->whi, w->ehi[G], MPFR_RNDU);
        mpfr_mul(w->lo, w->C, sg > 0 ? w->wlo : w->whi, MPFR_RNDD);
        mpfr_mul(w->hi, w->C, sg > 0 ? w->whi : w->wlo, MPFR_RNDU);
        mpfr_add(w->Nlo, w->Nlo, w->lo, MPFR_RNDD), mpfr_add(w->Nhi, w->Nhi, w->hi, MPFR_RNDU);
    }
    int pos = mpfr_sgn(w->Nlo) > 0, neg = mpfr_sgn(w->Nhi) < 0;
    if (pos) mpfr_div(w->lo, w->Nlo, Lhi, MPFR_RNDD), mpfr_div(w->hi, w->Nhi, Llo, MPFR_RNDU);
    else if (neg) mpfr_div(w->lo, w->Nlo, Llo, MPFR_RNDD), mpfr_div(w->hi, w->Nhi, Lhi, MPFR_RNDU);
    else return 0;
    double a = mpfr_get_d(w->lo, MPFR_RNDN), b = mpfr_get_d(w->hi, MPFR_RNDN);
    if (a == 0 && b == 0) { /* |out| < 2^-1075: RN is the zero of N's (certain) sign */
        *res = pos ? 0.0 : -0.0;
        return 1;
    }
    *res = a;
    if (a == b && signbit(a) == signbit(b)) return 1;
    if (G1 < ng - 1) return 0;
    /* out sits on a midpoint B up to weights below the precision: decide by P's sign */
    mpfr_t lo2, hi2;
    mpfr_init2(lo2, p), mpfr_init2(hi2, p);
    mpfr_set(lo2, w->lo, MPFR_RNDD), mpfr_set(hi2, w->hi, MPFR_RNDU); /* mp_side reuses lo, hi */
    int side = mp_side(x, w, g, ng, d, p), ok = 0;
    if (side == 0) *res = mpfr_get_d(w->Bv, MPFR_RNDN), ok = 1; /* exactly the midpoint */
    else if (side == 1) *res = mpfr_get_d(w->Bv, MPFR_RNDU), ok = *res == mpfr_get_d(hi2, MPFR_RNDN);
    else if (side == -1) *res = mpfr_get_d(w->Bv, MPFR_RNDD), ok = *res == mpfr_get_d(lo2, MPFR_RNDN);
    mpfr_clears(lo2, hi2, (mpfr_ptr)0);
    return ok;
}

/* lse = c M + log L.  With more than one token L > 1, so lse > c M strictly; when every
 * other weight is below the precision, the lower end stays exactly c M, and if that is a
 * midpoint of doubles the values just above it round up (not to even). */
static int mp_lse(const att_ctx *x, att_scratch *w, int ng, int n, double *res)
{
    mpfr_t *M = &w->sp[w->order[w->gstart[ng - 1]]];
    mpfr_log(w->lo, w->Llo, MPFR_RNDD), mpfr_log(w->hi, w->Lhi, MPFR_RNDU);
    int log0 = mpfr_zero_p(w->lo), neg = mpfr_sgn(*M) < 0;
    mpfr_set_prec(w->x, mpfr_get_prec(w->lo)), mpfr_set_prec(w->y, mpfr_get_prec(w->lo));
    int inexact = mpfr_mul(w->x, *M, neg ? w->chi : w->clo, MPFR_RNDD);
    mpfr_mul(w->y, *M, neg ? w->clo : w->chi, MPFR_RNDU);
    inexact |= mpfr_add(w->lo, w->lo, w->x, MPFR_RNDD);
    mpfr_add(w->hi, w->hi, w->y, MPFR_RNDU);
    double a = mpfr_get_d(w->lo, MPFR_RNDN), b = mpfr_get_d(w->hi, MPFR_RNDN);
    if (a != b && n > 1 && log0 && !inexact && mpfr_equal_p(w->clo, w->chi) && is_midpoint(w->lo, w->Dv))
        a = mpfr_get_d(w->lo, MPFR_RNDU); /* lse in (c M, hi] with c M exact */
    *res = a;
    return a == b && signbit(a) == signbit(b);
}

static int row_mpfr(const att_ctx *x, att_scratch *w, const double *q, int g, int n,
                    double *out, double *lse)
{
    const msa_ref_data *dd = x->dd;
    int rc = mp_prepare(x, w), ng = 0;
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        const double *kr = dd->k + ((size_t)w->toks[i] * dd->Hkv + g) * dd->D;
        if (msa_ref_dot_mpfr(q, kr, dd->D, w->sp[i], w->a)) return MSA_EINTERNAL;
        w->order[i] = i;
    }
    msort(w, 0, n);
    for (int i = 0; i < n; i++) {
        if (i == 0 || mpfr_cmp(w->sp[w->order[i]], w->sp[w->order[i - 1]]) != 0)
            w->gstart[ng] = i, w->gcount[ng++] = 0;
        w->gcount[ng - 1]++;
    }
    memset(w->done, 0, (size_t)dd->D + 1);
    int left = dd->D + 1;
    mpfr_clear_underflow(), mpfr_clear_overflow();
    for (mpfr_prec_t p = 64; left > 0; p *= 2) {
        /* Only weights far below the precision (extreme fp32 score gaps) can pin an
         * interval end to a rounding boundary in a way mp_out, mp_side and mp_lse do not
         * resolve; that needs underflow or overflow.  Say so instead of guessing. */
        if (p > MAX_PREC) return mpfr_underflow_p() || mpfr_overflow_p() ? MSA_EUNSUPPORTED : MSA_EINTERNAL;
        mp_weights(x, w, ng, p);
        for (int d = 0; d < dd->D; d++)
            if (!w->done[d] && mp_out(x, w, g, ng, d, p, &out[d])) w->done[d] = 1, left--;
        if (!w->done[dd->D] && mp_lse(x, w, ng, n, lse)) w->done[dd->D] = 1, left--;
    }
    return MSA_OK;
}

/* ------------------------------------------------------------------ driver */

int msa_ref_debug_force_mpfr;
static atomic_long g_rows[2];

long msa_ref_debug_rows(int mpfr_path) { return atomic_load(&g_rows[mpfr_path != 0]); }

static int attend_row(void *ctxp, long item, int wid)
{
    att_ctx *x = ctxp;
    const msa_ref_data *dd = x->dd;
    att_scratch *w = &x->ws[wid];
    int t = (int)(item / dd->Hq), h = (int)(item % dd->Hq), g = h / dd->group;
    double *out = x->out + ((size_t)t * dd->Hq + h) * dd->D, lse_v = 0;
    const double *q = dd->q + ((size_t)t * dd->Hq + h) * dd->D;
    int n = gather(x, w, t, g);
    if (n == 0) {
        for (int d = 0; d < dd->D; d++) out[d] = 0.0;
        lse_v = -INFINITY;
    } else if (!x->exact) {
        row_fast(x, w, q, g, n, out, &lse_v);
    } else if (msa_ref_debug_force_mpfr || !row_dd(x, w, q, g, n, out, &lse_v)) {
        int rc = row_mpfr(x, w, q, g, n, out, &lse_v);
        if (rc) return rc;
        atomic_fetch_add(&g_rows[1], 1);
    } else {
        atomic_fetch_add(&g_rows[0], 1);
    }
    if (x->lse) x->lse[(size_t)t * dd->Hq + h] = lse_v;
    return MSA_OK;
}

static int scratch_init(att_scratch *w, const msa_ref_data *dd)
{
    size_t n = (size_t)dd->max_lk + 1, D = (size_t)dd->D + 1;
    w->toks = msa_calloc(n, sizeof *w->toks);
    w->eh = msa_calloc(n, sizeof *w->eh), w->el = msa_calloc(n, sizeof *w->el);
    w->s = msa_calloc(n, sizeof *w->s);
    w->order = msa_calloc(n, sizeof *w->order), w->tmp = msa_calloc(n, sizeof *w->tmp);
    w->gstart = msa_calloc(n, sizeof *w->gstart), w->gcount = msa_calloc(n, sizeof *w->gcount);
    w->acc = msa_calloc(D, sizeof *w->acc), w->comp = msa_calloc(D, sizeof *w->comp);
    w->absacc = msa_calloc(D, sizeof *w->absacc);
    w->mark = msa_calloc((size_t)dd->nblk + 1, 1), w->done = msa_calloc(D, 1);
    mpfr_inits2(64, w->lo, w->hi, w->clo, w->chi, w->Llo, w->Lhi, w->Nlo, w->Nhi, w->x, w->y,
                w->Rlo, w->Rhi, w->wlo, w->whi, w->arglo, w->arghi, w->Plo, w->Phi, (mpfr_ptr)0);
    mpfr_inits2(MSA_REF_DOT_PREC + 2, w->a, w->b, w->M, (mpfr_ptr)0);
    mpfr_inits2(MSA_REF_DOT_PREC + 64, w->Bv, w->Dv, (mpfr_ptr)0);
    mpfr_init2(w->C, MSA_REF_SUM_PREC);
    if (!w->toks || !w->eh || !w->el || !w->s || !w->order || !w->tmp || !w->gstart ||
        !w->gcount || !w->acc || !w->comp || !w->absacc || !w->mark || !w->done)
        return MSA_ENOMEM;
    return MSA_OK;
}

static void scratch_free(att_scratch *w, const msa_ref_data *dd)
{
    if (w->mp_ready)
        for (int i = 0; i <= dd->max_lk; i++) mpfr_clears(w->sp[i], w->elo[i], w->ehi[i], (mpfr_ptr)0);
    free(w->sp), free(w->elo), free(w->ehi);
    mpfr_clears(w->lo, w->hi, w->clo, w->chi, w->Llo, w->Lhi, w->Nlo, w->Nhi, w->x, w->y, w->a,
                w->b, w->M, w->C, w->Rlo, w->Rhi, w->wlo, w->whi, w->arglo, w->arghi, w->Bv, w->Dv,
                w->Plo, w->Phi, (mpfr_ptr)0);
    free(w->toks), free(w->eh), free(w->el), free(w->s), free(w->order), free(w->tmp);
    free(w->gstart), free(w->gcount), free(w->acc), free(w->comp), free(w->absacc), free(w->mark), free(w->done);
}

int msa_ref_attend_impl(const msa_ref_data *dd, int exact, const int32_t *topk, double *out,
                        double *lse, msa_err *e)
{
    int nw = msa_ref_threads(), rc = MSA_OK, inited = 0;
    att_ctx x = {dd, exact, topk, out, lse, NULL, {0, 0}, 0};
    msa_ref_consts_init();
    const msa_case *c = dd->c;
    x.cdd = msa_ref_scale_dd(c->softmax_scale_is_default, c->softmax_scale, dd->D, &x.c_relerr);
    x.ws = msa_calloc((size_t)nw, sizeof *x.ws);
    if (!x.ws) return msa_fail(e, MSA_ENOMEM, "%s: reference: out of memory", c->label);
    for (; inited < nw && !rc; inited++) rc = scratch_init(&x.ws[inited], dd);
    if (!rc) rc = msa_ref_parallel((long)dd->Tq * dd->Hq, nw, attend_row, &x);
    for (int i = 0; i < inited; i++) scratch_free(&x.ws[i], dd);
    free(x.ws);
    if (rc == MSA_ENOMEM) return msa_fail(e, rc, "%s: reference: out of memory", c->label);
    if (rc == MSA_EUNSUPPORTED)
        return msa_fail(e, rc, "%s: reference: exact mode cannot certify a row whose scores are "
                        "astronomically far apart (exp underflows MPFR's exponent range)", c->label);
    if (rc) return msa_fail(e, rc, "%s: reference: internal error in attention", c->label);
    return MSA_OK;
}
