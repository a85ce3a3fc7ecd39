/* judge_sel.c - stage 1 of the oracle: a kernel's top-k block selection.
 *
 * Per (group g, query t): the structural contract (count = min(nvis, k), -1 tail, distinct
 * ids in [0, nvis), forced init and local blocks when nvis > k, declared order), then the
 * tie-aware semantic check.  Each visible block b gets an interval [lo_b, hi_b] in exact
 * score units that surely holds the key the kernel ranked it by (docs/NUMERICS.md 7):
 * a non-forced block is "certainly in" when fewer than r = k - forced other candidates could
 * rank at or above it, "certainly out" when at least r candidates surely rank above it.
 * Certainly-in blocks must be chosen, certainly-out ones must not; the rest is legal.
 * It does not rank anything itself beyond that and never demands bit-equal ids. */
#include "oracle_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_REL 0x1p-51          /* exact block scores are correctly rounded doubles */
#define FP16_MAX 65504.0         /* IEEE binary16 largest finite value */
#define FP16_SUB_ABS 0x1p-25     /* half the fp16 subnormal spacing */
#define Q16_LEVELS 65535.0       /* 16-bit row-quantised keys: (max - min) / 65535 */
#define Q16_TIE_QUANTA 1.5       /* MiniMax's tie gate for the 16-bit-key top-k (MSA.md 7) */
#define FP32_SUB_EXP (-149)      /* fp32 subnormal spacing 2^-149 */

typedef struct {
    const msa_case *c;
    const msa_arith *a;
    const double *bs;
    msa_verdict *v;
    int nblk;
    double *lo, *hi, *iq, *slo, *shi;
    unsigned char *chosen;
    int *forced;
} sel_ctx;

/* Absolute error of the kernel's fp32 block score of every visible block (NUMERICS.md 7.1),
 * then the widening of the declared key kind (7.2-7.4): fills lo/hi for b < nvis. */
static void intervals(sel_ctx *x, int t, int g, msa_qinfo qi, const double *S)
{
    const msa_case *c = x->c;
    const msa_arith *a = x->a;
    double u = msa_or_unit(a->index_accum_bits > 0 ? a->index_accum_bits : 24);
    double gDI = msa_or_gamma(c->DI, u), ci = fabs(c->index_scale), dmax = 0;
    double smin = INFINITY, smax = -INFINITY, quantum = 0;
    int b, j, d;
    for (d = 0; d < c->DI; d++) x->iq[d] = msa_case_iq(c, t, g, d);
    for (b = 0; b < qi.nvis; b++) {
        double amax = 0, dotmax = 0, del;
        for (j = b * c->block_size; j < (b + 1) * c->block_size && j < qi.nkeys; j++) {
            int64_t row = msa_case_kv_row(c, qi.b, j);
            double dot = 0, am = 0;
            for (d = 0; d < c->DI; d++) {
                double p = x->iq[d] * msa_case_ik(c, row, d);
                dot += p;
                am += fabs(p);
            }
            amax = fmax(amax, am);
            dotmax = fmax(dotmax, fabs(dot));
        }
        del = ci * (gDI * amax * (1 + 2 * u) + u * dotmax) * (1 + 2 * u) + REF_REL * fabs(S[b]);
        x->lo[b] = S[b] - del;
        x->hi[b] = S[b] + del;
        dmax = fmax(dmax, del);
        smin = fmin(smin, S[b]);
        smax = fmax(smax, S[b]);
    }
    if (a->key_kind == MSA_KEY_Q16ROW && qi.nvis > 0)
        quantum = (smax - smin + 2 * dmax) / Q16_LEVELS;
    for (b = 0; b < qi.nvis; b++) {
        double mag = fmax(fabs(x->lo[b]), fabs(x->hi[b])), w = 0;
        if (a->key_kind == MSA_KEY_FP16) {
            w = 0x1p-11 * mag + FP16_SUB_ABS * fmax(1, ci);
            if (mag + w >= FP16_MAX * fmin(1, ci)) { /* may overflow to +-inf: ties */
                if (S[b] > 0) x->hi[b] = INFINITY;
                else x->lo[b] = -INFINITY;
            }
        } else if (a->key_kind == MSA_KEY_Q16ROW) {
            w = Q16_TIE_QUANTA / 2 * quantum;
        } else if (a->key_kind == MSA_KEY_RADIX) {
            w = ldexp(mag, a->key_drop_bits - 23) +
                ldexp(fmax(1, ci), a->key_drop_bits + FP32_SUB_EXP);
        }
        x->lo[b] -= w;
        x->hi[b] += w;
    }
}

static int cmp_dbl(const void *p, const void *q)
{
    double a = *(const double *)p, b = *(const double *)q;
    return a < b ? -1 : a > b;
}

/* Number of entries of sorted[n] >= v (strict: > v). */
static int count_ge(const double *sorted, int n, double v, int strict)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (strict ? sorted[mid] <= v : sorted[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return n - lo;
}

/* Structural contract of one row; marks chosen[]; returns the number of valid ids or -1
 * with msg set. */
static int structure(sel_ctx *x, const int32_t *ids, msa_qinfo qi, char *msg, size_t len)
{
    const msa_case *c = x->c;
    int k = c->topk, expect = qi.nvis < k ? qi.nvis : k, cnt = 0, tail = 0, s, b;
    memset(x->chosen, 0, (size_t)x->nblk + 1);
    for (s = 0; s < k; s++) {
        int id = ids[s];
        if (id == -1) {
            tail = 1;
            continue;
        }
        if (tail) return snprintf(msg, len, "id %d in slot %d after a -1 slot", id, s), -1;
        if (id < 0 || id >= qi.nvis)
            return snprintf(msg, len, "id %d in slot %d outside [0, nvis=%d)", id, s, qi.nvis), -1;
        if (x->chosen[id]) return snprintf(msg, len, "duplicate id %d in slot %d", id, s), -1;
        x->chosen[id] = 1;
        cnt++;
    }
    if (cnt != expect)
        return snprintf(msg, len, "%d valid ids, expected min(nvis=%d, k=%d) = %d", cnt, qi.nvis,
                        k, expect), -1;
    if (qi.nvis > k)
        for (b = 0; b < qi.nvis; b++)
            if (x->forced[b] && !x->chosen[b])
                return snprintf(msg, len, "forced %s block %d missing",
                                b < c->init_blocks ? "init" : "local", b), -1;
    if (x->a->order == MSA_ORDER_ASCENDING)
        for (s = 1; s < cnt; s++)
            if (ids[s] <= ids[s - 1])
                return snprintf(msg, len, "ids not ascending at slot %d (%d after %d)", s, ids[s],
                                ids[s - 1]), -1;
    if (x->a->order == MSA_ORDER_LOCAL_LAST && cnt > 0 &&
        (qi.nvis <= k || c->local_blocks > 0) && ids[cnt - 1] != qi.nvis - 1)
        return snprintf(msg, len, "own block %d not in the last valid slot %d (holds %d)",
                        qi.nvis - 1, cnt - 1, ids[cnt - 1]), -1;
    return cnt;
}

/* Score-descending order within the band: a block may precede another only if it could
 * have scored at least as high.  Blocks in forced positions (init, local) are exempt even
 * when nvis <= k: implementations force them with sentinel scores whatever nvis is
 * (Hugging Face's MiniMax-M3 puts the local block first in rows with nvis <= k, seen on a
 * recorded trace), so their place in a score-ordered list is a convention, not a score. */
static int order_desc(sel_ctx *x, const int32_t *ids, int cnt, int nvis, char *msg, size_t len)
{
    int s, prev = -1;
    for (s = 0; s < cnt; s++) {
        int id = ids[s];
        if (x->forced[id] || id < x->c->init_blocks || id >= nvis - x->c->local_blocks) continue;
        if (prev >= 0 && x->hi[prev] < x->lo[id])
            return snprintf(msg, len, "ids not score-descending: %d (score <= %.9g) before %d "
                            "(score >= %.9g)", prev, x->hi[prev], id, x->lo[id]), -1;
        prev = id;
    }
    return 0;
}

/* The tie-aware check of the non-forced choice (nvis > k).  Returns -1 with msg on a
 * violation; *ambiguous says whether the band left any block undecided; *ties counts
 * chosen blocks outside the canonical exact top-r (lower id wins exact ties). */
static int semantic(sel_ctx *x, const double *S, msa_qinfo qi, int *ambiguous, long *ties,
                    char *msg, size_t len)
{
    int k = x->c->topk, ncand = 0, nforced = 0, r, b, cb;
    double *sS = x->slo + x->nblk; /* third scratch row */
    for (b = 0; b < qi.nvis; b++) {
        if (x->forced[b]) {
            nforced++;
            continue;
        }
        x->slo[ncand] = x->lo[b];
        x->shi[ncand] = x->hi[b];
        sS[ncand++] = S[b];
    }
    r = k - nforced;
    *ambiguous = 0;
    if (r <= 0 || ncand == 0) return 0;
    qsort(x->slo, (size_t)ncand, sizeof(double), cmp_dbl);
    qsort(x->shi, (size_t)ncand, sizeof(double), cmp_dbl);
    qsort(sS, (size_t)ncand, sizeof(double), cmp_dbl);
    for (b = 0; b < qi.nvis; b++) {
        int could, sure, in, out;
        if (x->forced[b]) continue;
        could = count_ge(x->shi, ncand, x->lo[b], 0) - 1; /* others that may rank >= b */
        sure = count_ge(x->slo, ncand, x->hi[b], 1);      /* others surely above b */
        in = could < r;
        out = sure >= r;
        if (in && !x->chosen[b])
            return snprintf(msg, len, "block %d (exact score %.9g) is certainly in the top %d "
                            "(k-th exact score %.9g) but not chosen", b, S[b], r,
                            sS[ncand - r]), -1;
        if (out && x->chosen[b])
            return snprintf(msg, len, "block %d (exact score %.9g) chosen but certainly below "
                            "the top %d (k-th exact score %.9g)", b, S[b], r, sS[ncand - r]), -1;
        if (!in && !out) *ambiguous = 1;
        if (x->chosen[b]) { /* canonical rank: higher score, or equal score and lower id */
            int above = count_ge(sS, ncand, S[b], 1);
            for (cb = 0; cb < b; cb++)
                if (!x->forced[cb] && S[cb] == S[b]) above++;
            if (above >= r) (*ties)++;
        }
    }
    return 0;
}

static void row_fail(sel_ctx *x, const char *stage, msa_qinfo qi, int g, const char *msg)
{
    x->v->failed++;
    if (x->v->disp == MSA_V_PASSED) {
        x->v->disp = MSA_V_INCORRECT;
        snprintf(x->v->stage, sizeof x->v->stage, "%s", stage);
        snprintf(x->v->detail, sizeof x->v->detail, "topk[b=%d i=%d g=%d] nvis %d: %s (case %s)",
                 qi.b, qi.i, g, qi.nvis, msg, x->c->label);
    }
}

static void judge_row(sel_ctx *x, const int32_t *topk, int t, int g)
{
    const msa_case *c = x->c;
    msa_qinfo qi = msa_case_qinfo(c, t);
    const int32_t *ids = topk + ((size_t)g * c->Tq + t) * c->topk;
    const double *S = x->bs + ((size_t)g * c->Tq + t) * x->nblk;
    char msg[400];
    int b, cnt, amb = 0;
    for (b = 0; b < qi.nvis; b++)
        x->forced[b] = qi.nvis > c->topk &&
                       (b < c->init_blocks || b >= qi.nvis - c->local_blocks);
    x->v->checked++;
    x->v->sel_rows++;
    if ((cnt = structure(x, ids, qi, msg, sizeof msg)) < 0) {
        row_fail(x, "structure", qi, g, msg);
        return;
    }
    if (qi.nvis <= c->topk && x->a->order != MSA_ORDER_SCORE_DESC) return;
    intervals(x, t, g, qi, S);
    if (x->a->order == MSA_ORDER_SCORE_DESC && order_desc(x, ids, cnt, qi.nvis, msg, sizeof msg) < 0) {
        row_fail(x, "structure", qi, g, msg);
        return;
    }
    if (qi.nvis > c->topk) {
        if (semantic(x, S, qi, &amb, &x->v->sel_tie_choices, msg, sizeof msg) < 0)
            row_fail(x, "selection", qi, g, msg);
        x->v->sel_ambiguous_rows += amb;
    }
}

/* Rows are judged in parallel: each worker owns a contiguous range of (g, t) rows, its own
 * scratch buffers and its own verdict; the verdicts are merged in row order, so the result
 * (counts and the first failing row) is exactly the serial one. */
typedef struct {
    sel_ctx x;
    msa_verdict v;
    const int32_t *topk;
    long r0, r1; /* rows g * Tq + t in [r0, r1) */
    int ok;
} sel_work;

static void *sel_worker(void *arg)
{
    sel_work *w = arg;
    size_t nb = (size_t)w->x.nblk + 1;
    const msa_case *c = w->x.c;
    w->x.v = &w->v;
    w->x.lo = malloc(nb * sizeof(double));
    w->x.hi = malloc(nb * sizeof(double));
    w->x.slo = malloc(3 * nb * sizeof(double));
    w->x.shi = malloc(nb * sizeof(double));
    w->x.iq = malloc(((size_t)c->DI + 1) * sizeof(double));
    w->x.chosen = calloc(nb, 1);
    w->x.forced = calloc(nb, sizeof(int));
    w->ok = w->x.lo && w->x.hi && w->x.slo && w->x.shi && w->x.iq && w->x.chosen && w->x.forced;
    if (w->ok)
        for (long r = w->r0; r < w->r1; r++) judge_row(&w->x, w->topk, (int)(r % c->Tq), (int)(r / c->Tq));
    free(w->x.lo); free(w->x.hi); free(w->x.slo); free(w->x.shi); free(w->x.iq); free(w->x.chosen);
    free(w->x.forced);
    return NULL;
}

int msa_judge_selection(const msa_case *c, const msa_arith *a, const int32_t *topk,
                        const double *exact_block_scores, msa_verdict *v, msa_err *e)
{
    msa_or_acc acc;
    if (!c || !a || !topk || !exact_block_scores || !v)
        return msa_fail(e, MSA_EINPUT, "oracle: selection: missing argument");
    if (msa_or_check_case(c, e)) return MSA_EINPUT;
    if (a->key_kind == MSA_KEY_RADIX && (a->key_drop_bits < 0 || a->key_drop_bits > 22))
        return msa_fail(e, MSA_EINPUT, "oracle: arith: key_drop_bits %d outside 0..22",
                        a->key_drop_bits);
    msa_or_acc_init(&acc, v, "selection");
    long rows = (long)c->HI * c->Tq;
    int nw = msa_or_workers(rows, 0), ok = 1;
    sel_work *w = calloc((size_t)nw, sizeof *w);
    if (!w) return msa_fail(e, MSA_ENOMEM, "oracle: selection: out of memory");
    for (int i = 0; i < nw; i++) {
        w[i].x.c = c, w[i].x.a = a, w[i].x.bs = exact_block_scores, w[i].x.nblk = msa_case_max_blocks(c);
        w[i].topk = topk, w[i].r0 = rows * i / nw, w[i].r1 = rows * (i + 1) / nw;
        w[i].v.disp = MSA_V_PASSED;
    }
    msa_or_run_workers(w, sizeof *w, nw, sel_worker);
    for (int i = 0; i < nw; i++) {
        ok &= w[i].ok;
        v->checked += w[i].v.checked, v->failed += w[i].v.failed, v->sel_rows += w[i].v.sel_rows;
        v->sel_ambiguous_rows += w[i].v.sel_ambiguous_rows, v->sel_tie_choices += w[i].v.sel_tie_choices;
        if (v->disp == MSA_V_PASSED && w[i].v.disp != MSA_V_PASSED) {
            v->disp = w[i].v.disp;
            snprintf(v->stage, sizeof v->stage, "%s", w[i].v.stage);
            snprintf(v->detail, sizeof v->detail, "%s", w[i].v.detail);
        }
    }
    int nblk = w[0].x.nblk;
    free(w);
    if (!ok || v->sel_rows != rows)
        return msa_fail(e, MSA_ENOMEM, "oracle: selection: out of memory (%d blocks)", nblk);
    if (v->disp == MSA_V_PASSED)
        snprintf(v->detail, sizeof v->detail, "%ld rows, %ld ambiguous, %ld tie choices",
                 v->sel_rows, v->sel_ambiguous_rows, v->sel_tie_choices);
    return MSA_OK;
}
