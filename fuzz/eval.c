/* eval.c - runs one case through every entry of a backend and judges each run with the
 * oracle under the backend's declared arithmetic: FORWARD (selection stage, then the
 * attention over the kernel's own selection), ATTEND over the reference selection with
 * the unselected K/V poisoned, and DENSE when the backend has it; guard bands are checked
 * after each run.  Large cases are judged on a deterministic sample of query rows cut out
 * as a sub-case (subcase.c), so the exact reference stays affordable; the result says how
 * many rows were judged.  Process isolation is the caller's business (worker.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../oracle/oracle.h"
#include "../reference/ref.h"
#include "fuzz_int.h"

/* Exact-reference work (roughly multiply-adds of the main branch, dense included) above
 * which query rows are sampled.  Measured: the exact reference does ~1e7 of these per
 * second on the development machine, so this keeps one case under ~0.1 s. */
#define EXACT_WORK_MAX 1.5e6
/* DENSE (every visible key of every row) costs the kernel and the reference far more
 * than FORWARD does on long rows: it runs on every case whose dense work (multiply-adds
 * of q.k and p.v) is below DENSE_ALWAYS_MAX and on one in DENSE_ONE_IN of the others
 * (chosen by the case hash, so the choice is deterministic). */
#define DENSE_ALWAYS_MAX 2e6
#define DENSE_ONE_IN 4
/* Rows judged when sampling: the last and first rows of each sequence plus random ones. */
#define SAMPLE_ROWS 24

typedef struct {
    const msa_case *full;
    msa_case sub;      /* the judged case (a copy of the full one when not sampled) */
    int sampled;
    int *row_map;      /* judged row -> full row */
    int nblk_sub;
    int32_t *ref_topk; /* on sub */
    double *ref_bs;
    /* the exact attention over the last selection judged (FORWARD's own selection is
     * usually the reference's, so ATTEND reuses it) */
    int32_t *ex_sel;
    double *ex_out, *ex_lse;
} eval_ctx;

static double row_work(const msa_case *c, int nk);

static double exact_work(const msa_case *c)
{
    double w = 0;
    for (int t = 0; t < c->Tq; t++) w += row_work(c, fz_row_nkeys(c, t, NULL));
    return w;
}

static double row_work(const msa_case *c, int nk)
{
    int span = c->topk * c->block_size;
    return ((double)(nk < span ? nk : span) + nk) * c->Hq * c->D + (double)nk * c->HI * c->DI;
}

/* Picks rows (as one-row runs of the view) deterministically from the case hash: the
 * last and first row of each sequence, then random rows, while the exact work stays
 * within EXACT_WORK_MAX (at least one row; at most SAMPLE_ROWS random ones). */
static int sample_view(const msa_case *c, fz_view *v)
{
    fz_view_identity(c, v);
    int max = (int)(sizeof v->seq / sizeof v->seq[0]), n = 0, ncand = 0;
    int *cand = malloc(sizeof(int) * (size_t)(2 * c->batch + SAMPLE_ROWS + 1));
    char *pick = calloc((size_t)c->Tq + 1, 1);
    if (!pick || !cand) { free(pick), free(cand); return MSA_ENOMEM; }
    for (int b = 0; b < c->batch; b++)
        if (msa_case_lq(c, b) > 0) cand[ncand++] = c->cu_q[b + 1] - 1, cand[ncand++] = c->cu_q[b];
    uint64_t h = fz_hash_case(c);
    for (int i = 0; i < SAMPLE_ROWS; i++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull; /* Knuth's MMIX LCG */
        cand[ncand++] = (int)((h >> 33) % (uint64_t)c->Tq);
    }
    double work = 0;
    for (int i = 0, taken = 0; i < ncand && taken < max; i++) {
        int t = cand[i];
        double w = row_work(c, fz_row_nkeys(c, t, NULL));
        if (pick[t] || (taken > 0 && work + w > EXACT_WORK_MAX)) continue;
        pick[t] = 1, work += w, taken++;
    }
    for (int t = 0; t < c->Tq && n < max; t++) { /* in row order, as the view wants */
        if (!pick[t]) continue;
        int b, nk = fz_row_nkeys(c, t, &b);
        v->seq[n].src_b = b;
        v->seq[n].q0 = t - c->cu_q[b];
        v->seq[n].nq = 1;
        v->seq[n].lk = c->causal ? nk : msa_case_lk(c, b);
        n++;
    }
    v->nseq = n;
    free(pick);
    free(cand);
    return 0;
}

static int nblk_of(const msa_case *c)
{
    int n = 0;
    for (int b = 0; b < c->batch; b++) {
        int x = (msa_case_lk(c, b) + c->block_size - 1) / c->block_size;
        if (x > n) n = x;
    }
    return n;
}

static int ctx_open(eval_ctx *x, const msa_case *c, msa_err *e)
{
    memset(x, 0, sizeof *x);
    x->full = c;
    fz_view v;
    int rc;
    x->sampled = exact_work(c) > EXACT_WORK_MAX;
    if (x->sampled) rc = sample_view(c, &v);
    else fz_view_identity(c, &v), rc = 0;
    if (rc) return msa_fail(e, rc, "fuzz: out of memory");
    x->row_map = malloc(sizeof(int) * (size_t)(c->Tq + 1));
    if (!x->row_map) return msa_fail(e, MSA_ENOMEM, "fuzz: out of memory");
    if (v.nseq == 0) { /* more sequences than a view holds: judge sampled rows instead */
        if ((rc = sample_view(c, &v))) return msa_fail(e, rc, "fuzz: out of memory");
        x->sampled = 1;
    }
    if ((rc = fz_subcase(c, &v, &x->sub, x->row_map, e))) return rc;
    snprintf(x->sub.label, sizeof x->sub.label, "%s", c->label);
    x->nblk_sub = nblk_of(&x->sub);
    size_t nsel = (size_t)x->sub.HI * x->sub.Tq;
    x->ref_topk = msa_calloc(nsel * x->sub.topk, sizeof(int32_t));
    x->ref_bs = msa_calloc(nsel * (x->nblk_sub ? x->nblk_sub : 1), sizeof(double));
    if (!x->ref_topk || !x->ref_bs) return msa_fail(e, MSA_ENOMEM, "fuzz: out of memory");
    return msa_ref_select(&x->sub, MSA_REF_EXACT, x->ref_topk, x->ref_bs, e);
}

static void ctx_close(eval_ctx *x)
{
    msa_case_free(&x->sub);
    free(x->row_map);
    free(x->ref_topk);
    free(x->ref_bs);
    free(x->ex_sel);
    free(x->ex_out);
    free(x->ex_lse);
}

/* Kernel outputs of the judged rows ([HI][Tq][k], [Tq][Hq][D], [Tq][Hq]). */
typedef struct {
    int32_t *topk;
    double *out;
    float *lse;
} rows_out;

static int extract(const eval_ctx *x, const msa_kernel_result *kr, rows_out *o)
{
    const msa_case *f = x->full, *s = &x->sub;
    memset(o, 0, sizeof *o);
    o->topk = kr->topk ? msa_calloc((size_t)s->HI * s->Tq * s->topk, sizeof(int32_t)) : NULL;
    o->out = kr->out ? msa_calloc((size_t)s->Tq * s->Hq * s->D, sizeof(double)) : NULL;
    o->lse = kr->lse ? msa_calloc((size_t)s->Tq * s->Hq, sizeof(float)) : NULL;
    if ((kr->topk && !o->topk) || (kr->out && !o->out) || (kr->lse && !o->lse)) return MSA_ENOMEM;
    for (int t = 0; t < s->Tq; t++) {
        int ft = x->row_map[t];
        for (int g = 0; o->topk && g < s->HI; g++)
            memcpy(o->topk + ((size_t)g * s->Tq + t) * s->topk, kr->topk + ((size_t)g * f->Tq + ft) * f->topk,
                   sizeof(int32_t) * s->topk);
        if (o->out) memcpy(o->out + (size_t)t * s->Hq * s->D, kr->out + (size_t)ft * f->Hq * f->D, sizeof(double) * s->Hq * s->D);
        if (o->lse) memcpy(o->lse + (size_t)t * s->Hq, kr->lse + (size_t)ft * f->Hq, sizeof(float) * s->Hq);
    }
    return 0;
}

static void rows_free(rows_out *o)
{
    free(o->topk);
    free(o->out);
    free(o->lse);
}

static void note_verdict(msa_fuzz_result *r, const msa_verdict *v, const char *run)
{
    double w = fmax(v->worst_ratio, v->worst_lse_ratio);
    if (w > r->worst_ratio) r->worst_ratio = w;
    if (v->disp != MSA_V_PASSED && r->disp == MSA_V_PASSED) {
        r->disp = v->disp;
        snprintf(r->stage, sizeof r->stage, "%s/%s", run, v->stage);
        snprintf(r->detail, sizeof r->detail, "%s", v->detail);
    }
}

static void fail_result(msa_fuzz_result *r, int disp, const char *stage, const char *detail)
{
    if (r->disp != MSA_V_PASSED) return;
    r->disp = disp;
    snprintf(r->stage, sizeof r->stage, "%s", stage);
    snprintf(r->detail, sizeof r->detail, "%s", detail);
}

/* Judges attention of kernel output `o` over selection sel (NULL: dense) on the sub-case. */
static int judge_att(eval_ctx *x, const msa_arith *a, const int32_t *sel, const rows_out *o,
                     msa_fuzz_result *r, const char *run, msa_err *e)
{
    const msa_case *s = &x->sub;
    size_t n = (size_t)s->Tq * s->Hq, nsel = (size_t)s->HI * s->Tq * s->topk;
    int cached = sel && x->ex_sel && !memcmp(sel, x->ex_sel, sizeof(int32_t) * nsel);
    double *eo = cached ? x->ex_out : msa_calloc(n * s->D, sizeof(double));
    double *el = cached ? x->ex_lse : msa_calloc(n, sizeof(double));
    int rc = eo && el ? 0 : msa_fail(e, MSA_ENOMEM, "fuzz: out of memory");
    if (!rc && !cached) rc = msa_ref_attend(s, MSA_REF_EXACT, sel, eo, el, e);
    msa_verdict v;
    memset(&v, 0, sizeof v);
    if (!rc) rc = msa_judge_attention(s, a, sel, o->out, o->lse, eo, el, &v, e);
    if (!rc) note_verdict(r, &v, run);
    if (!cached && sel && !rc && (x->ex_sel || (x->ex_sel = malloc(sizeof(int32_t) * nsel)))) {
        memcpy(x->ex_sel, sel, sizeof(int32_t) * nsel);
        free(x->ex_out), free(x->ex_lse);
        x->ex_out = eo, x->ex_lse = el;
    } else if (!cached) {
        free(eo), free(el);
    }
    return rc;
}

static int fz_eval_forward(msa_kernel *k, eval_ctx *x, msa_fuzz_result *r, msa_err *e)
{
    msa_kernel_result kr;
    msa_err ke;
    memset(&kr, 0, sizeof kr);
    int rc = msa_kernel_run(k, x->full, MSA_RUN_FORWARD, NULL, NULL, &kr, &ke);
    if (rc == MSA_EUNSUPPORTED) {
        r->disp = MSA_V_NOTSUPPORTED;
        snprintf(r->stage, sizeof r->stage, "forward/supports");
        snprintf(r->detail, sizeof r->detail, "%s", ke.msg);
        return 0;
    }
    if (rc) {
        fail_result(r, MSA_V_INCORRECT, "forward/error", ke.msg);
        return 0;
    }
    if (!kr.guard_ok) fail_result(r, MSA_V_INCORRECT, "forward/guard", kr.guard_msg);
    rows_out o;
    rc = extract(x, &kr, &o);
    if (rc) rc = msa_fail(e, MSA_ENOMEM, "fuzz: out of memory");
    const msa_arith *a = &k->be->arith;
    msa_verdict v;
    memset(&v, 0, sizeof v);
    if (!rc && o.topk) rc = msa_judge_selection(&x->sub, a, o.topk, x->ref_bs, &v, e);
    if (!rc && o.topk) note_verdict(r, &v, "forward");
    if (!rc && !o.topk) fail_result(r, MSA_V_INCORRECT, "forward/structure", "no top-k output");
    if (!rc && o.topk) rc = judge_att(x, a, o.topk, &o, r, "forward", e);
    rows_free(&o);
    msa_kernel_result_free(&kr);
    return rc;
}

/* The reference selection of the full case in the backend's declared order (the order
 * an ATTEND consumer of that backend expects). */
static void reorder_row(int32_t *ids, int k, const double *bs, int nvis, msa_order order)
{
    int n = 0;
    while (n < k && ids[n] >= 0) n++;
    if (order == MSA_ORDER_SCORE_DESC) { /* insertion sort: score desc, lower id first */
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0; j--) {
                double a = bs[ids[j - 1]], b = bs[ids[j]];
                if (a > b || (a == b && ids[j - 1] < ids[j])) break;
                int32_t t = ids[j];
                ids[j] = ids[j - 1], ids[j - 1] = t;
            }
    } else if (order == MSA_ORDER_LOCAL_LAST) {
        for (int i = 0; i + 1 < n; i++)
            if (ids[i] == nvis - 1) {
                memmove(ids + i, ids + i + 1, sizeof(int32_t) * (size_t)(n - 1 - i));
                ids[n - 1] = nvis - 1;
                break;
            }
    }
}

static int full_selection(const eval_ctx *x, msa_order order, int32_t **sel, msa_err *e)
{
    const msa_case *c = x->full;
    int nblk = nblk_of(c), B = c->block_size;
    size_t rows = (size_t)c->HI * c->Tq;
    *sel = msa_calloc(rows * c->topk, sizeof(int32_t));
    double *bs = msa_calloc(rows * (nblk ? nblk : 1), sizeof(double));
    int rc = *sel && bs ? 0 : msa_fail(e, MSA_ENOMEM, "fuzz: out of memory");
    if (!rc && !x->sampled) { /* the sub-case is the full case, rows in order */
        memcpy(*sel, x->ref_topk, sizeof(int32_t) * rows * c->topk);
        memcpy(bs, x->ref_bs, sizeof(double) * rows * (size_t)x->nblk_sub);
        nblk = x->nblk_sub;
    } else if (!rc) { /* on a copy without the NaN of unowned rows (same query rows) */
        fz_view v;
        msa_case fin;
        fz_view_identity(c, &v);
        rc = fz_subcase(c, &v, &fin, NULL, e);
        if (!rc) rc = msa_ref_select(&fin, MSA_REF_FAST, *sel, bs, e), msa_case_free(&fin);
    }
    for (size_t i = 0; !rc && i < rows; i++) {
        int nvis = (fz_row_nkeys(c, (int)(i % (size_t)c->Tq), NULL) + B - 1) / B;
        reorder_row(*sel + i * c->topk, c->topk, bs + i * (size_t)nblk, nvis, order);
    }
    free(bs);
    return rc;
}

static int eval_attend(msa_kernel *k, eval_ctx *x, msa_fuzz_result *r, msa_err *e)
{
    int32_t *sel = NULL;
    int rc = full_selection(x, k->be->arith.order, &sel, e);
    msa_kernel_result kr, selr;
    msa_err ke;
    msa_run_opts opts = {1, 0};
    memset(&kr, 0, sizeof kr);
    memset(&selr, 0, sizeof selr);
    int krc = rc ? 0 : msa_kernel_run(k, x->full, MSA_RUN_ATTEND, sel, &opts, &kr, &ke);
    if (!rc && krc && krc != MSA_EUNSUPPORTED) fail_result(r, MSA_V_INCORRECT, "attend-poison/error", ke.msg);
    if (!rc && !krc) {
        if (!kr.guard_ok) fail_result(r, MSA_V_INCORRECT, "attend-poison/guard", kr.guard_msg);
        rows_out o, g;
        selr.topk = sel;
        if (extract(x, &kr, &o) || extract(x, &selr, &g)) rc = msa_fail(e, MSA_ENOMEM, "fuzz: out of memory");
        if (!rc && r->disp == MSA_V_PASSED) rc = judge_att(x, &k->be->arith, g.topk, &o, r, "attend-poison", e);
        rows_free(&o);
        rows_free(&g);
        msa_kernel_result_free(&kr);
    }
    free(sel);
    return rc;
}

static int eval_dense(msa_kernel *k, eval_ctx *x, msa_fuzz_result *r, msa_err *e)
{
    msa_kernel_result kr;
    msa_err ke;
    memset(&kr, 0, sizeof kr);
    int krc = msa_kernel_run(k, x->full, MSA_RUN_DENSE, NULL, NULL, &kr, &ke), rc = 0;
    if (krc == MSA_EUNSUPPORTED) return 0;
    if (krc) {
        fail_result(r, MSA_V_INCORRECT, "dense/error", ke.msg);
        return 0;
    }
    if (!kr.guard_ok) fail_result(r, MSA_V_INCORRECT, "dense/guard", kr.guard_msg);
    rows_out o;
    if (extract(x, &kr, &o)) rc = msa_fail(e, MSA_ENOMEM, "fuzz: out of memory");
    if (!rc && r->disp == MSA_V_PASSED) rc = judge_att(x, &k->be->arith, NULL, &o, r, "dense", e);
    rows_free(&o);
    msa_kernel_result_free(&kr);
    return rc;
}

static int run_dense(const msa_case *c)
{
    double w = 0;
    for (int t = 0; t < c->Tq; t++) w += 2.0 * fz_row_nkeys(c, t, NULL) * c->Hq * c->D;
    return w <= DENSE_ALWAYS_MAX || fz_hash_case(c) % DENSE_ONE_IN == 0;
}

/* Classes that need the reference selection are taken from the judged rows. */
#define SEL_CLASSES                                                                              \
    ((UINT64_C(1) << MSA_COV_TIE_EXACT_K) | (UINT64_C(1) << MSA_COV_TIE_TOTAL) |                  \
     (UINT64_C(1) << MSA_COV_NEAR_TIE_K) | (UINT64_C(1) << MSA_COV_FORCED_WEIGHS) |               \
     (UINT64_C(1) << MSA_COV_GROUPS_DIFFER) | (UINT64_C(1) << MSA_COV_SENTINEL))

int msa_fuzz_eval(msa_kernel *k, const msa_case *c, msa_fuzz_result *r, msa_err *e)
{
    uint64_t id = r->id;
    double t0 = fz_now();
    memset(r, 0, sizeof *r);
    r->id = id;
    r->disp = MSA_V_PASSED;
    msa_case_describe(c, r->desc, sizeof r->desc);
    eval_ctx x;
    int rc = ctx_open(&x, c, e);
    if (!rc) {
        r->cov = msa_fuzz_coverage(c, NULL, NULL) |
                 (msa_fuzz_coverage(&x.sub, x.ref_topk, x.ref_bs) & SEL_CLASSES);
        r->rows_judged = x.sub.Tq;
        r->rows_total = c->Tq;
        rc = fz_eval_forward(k, &x, r, e);
    }
    if (!rc && r->disp == MSA_V_PASSED) rc = eval_attend(k, &x, r, e);
    if (!rc && r->disp == MSA_V_PASSED && k->be->dense && run_dense(c)) rc = eval_dense(k, &x, r, e);
    ctx_close(&x);
    r->seconds = fz_now() - t0;
    return rc;
}
