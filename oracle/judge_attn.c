/* judge_attn.c - stage 2 of the oracle: a kernel's out and lse, element by element,
 * against the exact attention over the kernel's own selection.
 *
 * For every row the selected visible keys are gathered exactly as the reference does
 * (ids -1 or >= nvis ignored, duplicates once), the row's per-element bounds come from
 * bounds.c, and |kernel - exact| <= bound is demanded for each out element and for lse.
 * Empty rows must give out == 0 and lse == -inf; a NaN or infinity where the exact value
 * is finite fails.  It does not compute the exact reference (the caller passes it). */
#include "oracle_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const msa_case *c;
    const msa_arith *a;
    msa_or_acc acc;
    msa_verdict *v;
    double worst; /* worst ratio so far (out and lse) */
    int nblk;
    /* scratch sized for the longest row */
    int *keys;                       /* token index j of each gathered key */
    unsigned char *seen;             /* [nblk] */
    double *K, *V, *q, *s, *A, *coef, *w;
    const msa_arith *ref_a; /* non-NULL: the reference is the fast mode, with this error */
    double *coef2, *w2;
    /* the worker's share: units u = t * Hkv + g in [u0, u1), and what it was given */
    long u0, u1, notverified;
    const int32_t *topk;
    const double *out, *exact_out, *exact_lse;
    const float *lse;
    msa_verdict vw; /* the worker's own verdict (x->v points here) */
    int rc;         /* ctx_alloc's result */
    msa_err err;
} att_ctx;

static void ctx_free(att_ctx *x)
{
    free(x->keys); free(x->seen); free(x->K); free(x->V); free(x->q);
    free(x->s); free(x->A); free(x->coef); free(x->w); free(x->coef2); free(x->w2);
}

static int ctx_alloc(att_ctx *x, msa_err *e)
{
    const msa_case *c = x->c;
    size_t maxk = (size_t)x->nblk * (size_t)c->block_size;
    if (maxk == 0) maxk = 1;
    x->keys = malloc(maxk * sizeof *x->keys);
    x->seen = calloc((size_t)x->nblk + 1, 1);
    x->K = msa_calloc(maxk * (size_t)c->D, sizeof(double));
    x->V = msa_calloc(maxk * (size_t)c->D, sizeof(double));
    x->q = malloc((size_t)c->D * sizeof(double));
    x->s = malloc(maxk * sizeof(double));
    x->A = malloc(maxk * sizeof(double));
    x->coef = msa_calloc(maxk * (MSA_BUD_N + 1), sizeof(double));
    x->w = malloc(maxk * sizeof(double));
    if (x->ref_a) {
        x->coef2 = msa_calloc(maxk * (MSA_BUD_N + 1), sizeof(double));
        x->w2 = malloc(maxk * sizeof(double));
        if (!x->coef2 || !x->w2) return msa_fail(e, MSA_ENOMEM, "oracle: attention: out of memory");
    }
    if (!x->keys || !x->seen || !x->K || !x->V || !x->q || !x->s || !x->A || !x->coef || !x->w)
        return msa_fail(e, MSA_ENOMEM, "oracle: attention: out of memory for %zu keys", maxk);
    return MSA_OK;
}

/* Gathers the selected visible keys of row (t, g): returns n, sets *nparts. */
static int gather_keys(att_ctx *x, const int32_t *topk, int t, int g, msa_qinfo qi, int *nparts)
{
    const msa_case *c = x->c;
    int B = c->block_size, n = 0, s, b, j, d;
    memset(x->seen, 0, (size_t)x->nblk + 1);
    *nparts = 0;
    for (s = 0; s < (topk ? c->topk : qi.nvis); s++) {
        b = topk ? topk[((size_t)g * c->Tq + t) * c->topk + s] : s;
        if (b < 0 || b >= qi.nvis || b >= x->nblk || x->seen[b]) continue;
        x->seen[b] = 1;
        (*nparts)++;
        for (j = b * B; j < (b + 1) * B && j < qi.nkeys; j++) {
            int64_t row = msa_case_kv_row(c, qi.b, j);
            for (d = 0; d < c->D; d++) {
                x->K[(size_t)n * c->D + d] = msa_case_k(c, row, g, d);
                x->V[(size_t)n * c->D + d] = msa_case_v(c, row, g, d);
            }
            x->keys[n++] = j;
        }
    }
    return n;
}

static void describe(att_ctx *x, msa_qinfo qi, int h, int d, double kern, double exact,
                     double bound, double ratio)
{
    char where[64];
    if (d >= 0) snprintf(where, sizeof where, "out[b=%d i=%d h=%d d=%d]", qi.b, qi.i, h, d);
    else snprintf(where, sizeof where, "lse[b=%d i=%d h=%d]", qi.b, qi.i, h);
    snprintf(x->v->detail, sizeof x->v->detail,
             "%s kernel %.9g exact %.9g |diff| %.3g bound %.3g ratio %.3g (case %s)", where, kern,
             exact, fabs(kern - exact), bound, ratio, x->c->label);
}

/* Records one comparison with its ratio; the verdict keeps the element of largest ratio
 * (a failure always outranks a pass since its ratio exceeds 1). */
static void record_ratio(att_ctx *x, msa_qinfo qi, int h, int d, double kern, double exact,
                         double bound, double ratio, const double *budget, const char *stage)
{
    int bad;
    if (isnan(ratio)) ratio = INFINITY;
    bad = !(ratio <= 1.0);
    x->v->checked++;
    msa_or_acc_ratio(&x->acc, ratio);
    if (bad) x->v->failed++;
    if (d < 0 && ratio > x->v->worst_lse_ratio) x->v->worst_lse_ratio = ratio;
    if (ratio > x->worst || x->v->checked == 1) {
        x->worst = x->v->worst_ratio = ratio;
        describe(x, qi, h, d, kern, exact, bound, ratio);
        if (budget) memcpy(x->v->budget, budget, sizeof x->v->budget);
        else memset(x->v->budget, 0, sizeof x->v->budget);
        snprintf(x->v->stage, sizeof x->v->stage, "%s", stage);
    }
    if (bad) x->v->disp = MSA_V_INCORRECT;
}

static void record(att_ctx *x, msa_qinfo qi, int h, int d, double kern, double exact,
                   double bound, const double *budget, const char *stage)
{
    double diff = fabs(kern - exact);
    double ratio = isfinite(kern) ? (diff == 0 ? 0 : diff / bound) : INFINITY;
    record_ratio(x, qi, h, d, kern, exact, bound, ratio, budget, stage);
}

/* An empty row: out exactly 0 and lse -inf, nothing else (a NaN fails). */
static void judge_empty(att_ctx *x, msa_qinfo qi, int t, int h, const double *out,
                        const float *lse)
{
    const msa_case *c = x->c;
    int d;
    if (out)
        for (d = 0; d < c->D; d++) {
            double k = out[((size_t)t * c->Hq + h) * c->D + d];
            record(x, qi, h, d, k, 0.0, 0.0, NULL, "empty-row");
        }
    if (lse) {
        double k = lse[(size_t)t * c->Hq + h];
        record_ratio(x, qi, h, -1, k, -INFINITY, 0, k == -INFINITY ? 0 : INFINITY, NULL,
                     "empty-row");
    }
}

/* One (t, h) row with n gathered keys (x->K, x->V): scores, bounds, comparisons.  Returns 1
 * when the row cannot be judged (NUMERICS.md 6). */
static int judge_row(att_ctx *x, msa_qinfo qi, int t, int h, int n, int nparts,
                     const double *out, const float *lse, const double *exact_out,
                     const double *exact_lse)
{
    const msa_case *c = x->c;
    size_t row = (size_t)t * c->Hq + h;
    double cs = c->softmax_scale, budget[MSA_BUD_N];
    msa_or_row r;
    msa_or_rowbound rb, rb2;
    int j, d;
    for (d = 0; d < c->D; d++) x->q[d] = msa_case_q(c, t, h, d);
    for (j = 0; j < n; j++) {
        double dot = 0, aq = 0;
        const double *kj = x->K + (size_t)j * c->D;
        for (d = 0; d < c->D; d++) {
            dot += x->q[d] * kj[d];
            aq += fabs(x->q[d] * kj[d]);
        }
        x->s[j] = cs * dot;
        x->A[j] = fabs(cs) * aq;
    }
    r.n = n; r.nparts = nparts; r.D = c->D; r.lse = exact_lse[row];
    r.s = x->s; r.A = x->A; r.V = x->V; r.O = exact_out + row * c->D;
    rb.coef = x->coef;
    rb.w = x->w;
    msa_or_row_prepare(c, x->a, &r, &rb);
    if (x->ref_a) { /* NUMERICS.md 8: a fast reference adds its own declared error */
        rb2.coef = x->coef2;
        rb2.w = x->w2;
        msa_or_row_prepare(c, x->ref_a, &r, &rb2);
        rb.lse_bound += rb2.lse_bound;
        rb.lse_budget[MSA_BUD_INPUT] += rb2.lse_bound;
    }
    if (rb.unbounded || (x->ref_a && rb2.unbounded)) return 1;
    if (out)
        for (d = 0; d < c->D; d++) {
            double k = out[row * c->D + d], bnd = msa_or_elem_bound(&r, &rb, d, NULL);
            double rbnd = x->ref_a ? msa_or_elem_bound(&r, &rb2, d, NULL) : 0;
            double diff = fabs(k - r.O[d]);
            double ratio;
            bnd += rbnd;
            ratio = isfinite(k) ? (diff == 0 ? 0 : diff / bnd) : INFINITY;
            const double *bud = NULL;
            if (!(ratio <= x->worst) || x->v->checked == 0) { /* a new worst: its budget */
                msa_or_elem_bound(&r, &rb, d, budget);
                budget[MSA_BUD_INPUT] += rbnd;
                bud = budget;
            }
            record_ratio(x, qi, h, d, k, r.O[d], bnd, ratio, bud, "output");
        }
    if (lse) record(x, qi, h, -1, lse[row], r.lse, rb.lse_bound, rb.lse_budget, "lse");
    return 0;
}

static int check_args(const msa_case *c, const msa_arith *a, const double *out, const float *lse,
                      const double *exact_out, const double *exact_lse, msa_verdict *v,
                      msa_err *e)
{
    if (!c || !a || !v) return msa_fail(e, MSA_EINPUT, "oracle: attention: missing argument");
    if (msa_or_check_case(c, e)) return MSA_EINPUT;
    if (!exact_out || !exact_lse)
        return msa_fail(e, MSA_EINPUT, "oracle: attention: missing exact reference");
    if (!out && !lse) return msa_fail(e, MSA_EINPUT, "oracle: attention: nothing to judge");
    if (a->accum_bits < 2 || a->accum_bits > 64 || a->exp_rel_err < 0 || a->exp_rel_err >= 1)
        return msa_fail(e, MSA_EINPUT, "oracle: arith: accum_bits %d / exp_rel_err %g invalid",
                        a->accum_bits, a->exp_rel_err);
    return MSA_OK;
}

int msa_judge_attention(const msa_case *c, const msa_arith *a, const int32_t *topk,
                        const double *out, const float *lse, const double *exact_out,
                        const double *exact_lse, msa_verdict *v, msa_err *e)
{
    return msa_or_judge_attention(c, a, NULL, topk, out, lse, exact_out, exact_lse, v, e);
}

/* One worker: its (t, g) units in order, with its own scratch, accumulator and verdict. */
static void *att_worker(void *arg)
{
    att_ctx *x = arg;
    const msa_case *c = x->c;
    int gs = c->Hq / c->Hkv;
    x->v = &x->vw;
    msa_or_acc_init(&x->acc, x->v, "output");
    if ((x->rc = ctx_alloc(x, &x->err)) == MSA_OK)
        for (long u = x->u0; u < x->u1; u++) {
            int t = (int)(u / c->Hkv), g = (int)(u % c->Hkv), nparts;
            msa_qinfo qi = msa_case_qinfo(c, t);
            int n = gather_keys(x, x->topk, t, g, qi, &nparts);
            for (int h = g * gs; h < (g + 1) * gs; h++) {
                double el = x->exact_lse[(size_t)t * c->Hq + h];
                if (n == 0 || el == -INFINITY) judge_empty(x, qi, t, h, x->out, x->lse);
                else if (!isfinite(el)) x->notverified++;
                else
                    x->notverified += judge_row(x, qi, t, h, n, nparts, x->out, x->lse,
                                                x->exact_out, x->exact_lse);
            }
        }
    ctx_free(x);
    return NULL;
}

/* Rows (t, g) are split into contiguous ranges, one per worker (workers.c); the verdicts
 * are merged in row order, so the result is the serial one. */
int msa_or_judge_attention(const msa_case *c, const msa_arith *a, const msa_arith *ref_a,
                           const int32_t *topk, const double *out, const float *lse,
                           const double *exact_out, const double *exact_lse, msa_verdict *v,
                           msa_err *e)
{
    msa_or_acc acc;
    long notverified = 0, units;
    int rc, nw, i, nblk;
    size_t maxk, bytes;
    if ((rc = check_args(c, a, out, lse, exact_out, exact_lse, v, e))) return rc;
    nblk = msa_case_max_blocks(c);
    maxk = (size_t)nblk * (size_t)c->block_size + 1;
    bytes = maxk * sizeof(double) * (2 * (size_t)c->D + 4 + 2 * (MSA_BUD_N + 1));
    units = (long)c->Tq * c->Hkv;
    nw = msa_or_workers(units, bytes);
    att_ctx *x = calloc((size_t)nw, sizeof *x);
    if (!x) return msa_fail(e, MSA_ENOMEM, "oracle: attention: out of memory");
    for (i = 0; i < nw; i++) {
        x[i].c = c; x[i].a = a; x[i].ref_a = ref_a; x[i].nblk = nblk;
        x[i].u0 = units * i / nw; x[i].u1 = units * (i + 1) / nw;
        x[i].topk = topk; x[i].out = out; x[i].lse = lse;
        x[i].exact_out = exact_out; x[i].exact_lse = exact_lse;
    }
    msa_or_run_workers(x, sizeof *x, nw, att_worker);
    msa_or_acc_init(&acc, v, "output");
    for (i = 0; i < nw; i++) {
        if (x[i].rc) {
            rc = x[i].rc;
            if (e) *e = x[i].err;
            break;
        }
        msa_or_acc_merge(&acc, &x[i].acc);
        notverified += x[i].notverified;
    }
    free(x);
    if (rc) return rc;
    msa_or_acc_finish(&acc);
    if (v->disp == MSA_V_PASSED && notverified) {
        v->disp = MSA_V_NOTVERIFIED;
        snprintf(v->detail, sizeof v->detail,
                 "%ld rows not judged: non-finite exact lse, or score errors the declaration "
                 "cannot bound (NUMERICS.md 4.2)", notverified);
    }
    return MSA_OK;
}
