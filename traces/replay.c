/* replay.c - `msa replay TRACE [--kernel K] [--mode auto|exact|fast] [--recorded-arith P]`:
 * re-runs every record of a trace through a backend (kernels/harness) and prints one
 * verdict line per record:
 *   backend   the oracle judges the backend's selection and attention (msa_judge_forward,
 *             with the arithmetic the backend declares);
 *   recorded  the oracle judges what the recorded run produced (topk_indices, out, lse)
 *             the same way, with the arithmetic the trace declares (meta "arith");
 *   agree     how often backend and recording chose the same block set, and the largest
 *             output difference on rows where they did (information, not a verdict).
 * Exit 0 when every judged stage passed, 1 when any is Incorrect or Crashed, 2 on bad
 * input.  It computes no attention itself. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/json.h"
#include "../kernels/harness.h"
#include "../oracle/oracle.h"
#include "../reference/ref.h"
#include "traces.h"

/* Above this many (query, key, head) score terms the exact (MPFR) reference takes
 * minutes, so "auto" uses the fast reference (its error is far below every bound the
 * oracle applies, docs/NUMERICS.md). */
#define EXACT_WORK_LIMIT 2.0e7
#define DEFAULT_RECORDED_ARITH "fp32"

typedef struct {
    const char *kernel, *mode, *rec_arith, *path;
} replay_opts;

static double case_work(const msa_case *c)
{
    double w = 0;
    for (int t = 0; t < c->Tq; t++) w += (double)msa_case_qinfo(c, t).nkeys;
    return w * c->Hq;
}

static msa_ref_mode pick_mode(const msa_case *c, const char *mode)
{
    if (!strcmp(mode, "exact")) return MSA_REF_EXACT;
    if (!strcmp(mode, "fast")) return MSA_REF_FAST;
    return case_work(c) <= EXACT_WORK_LIMIT ? MSA_REF_EXACT : MSA_REF_FAST;
}

static int worst(int a, int b)
{
    /* Incorrect/Crashed dominate, then NotSupported/NotVerified, then Passed */
    static const int rank[] = {[MSA_V_PASSED] = 0, [MSA_V_NOTVERIFIED] = 1, [MSA_V_NOTSUPPORTED] = 1,
                               [MSA_V_TIMEOUT] = 2, [MSA_V_INCORRECT] = 3, [MSA_V_CRASHED] = 3};
    return rank[a] >= rank[b] ? a : b;
}

static int same_set(const int32_t *a, const int32_t *b, int k)
{
    for (int i = 0; i < k; i++) {
        if (a[i] < 0) continue;
        int found = 0;
        for (int j = 0; j < k; j++) found |= b[j] == a[i];
        if (!found) return 0;
    }
    for (int j = 0; j < k; j++) {
        if (b[j] < 0) continue;
        int found = 0;
        for (int i = 0; i < k; i++) found |= a[i] == b[j];
        if (!found) return 0;
    }
    return 1;
}

/* Agreement between backend and recording: rows with equal sets, max |out diff| there. */
static void agreement(const msa_trace_record *r, const msa_kernel_result *kr, double *frac, double *maxd)
{
    const msa_case *c = &r->c;
    long same = 0, rows = (long)c->HI * c->Tq;
    *maxd = 0;
    *frac = NAN;
    if (!r->topk || !kr->topk) return;
    int G = c->Hq / c->Hkv;
    for (int g = 0; g < c->HI; g++)
        for (int t = 0; t < c->Tq; t++) {
            size_t o = ((size_t)g * (size_t)c->Tq + (size_t)t) * (size_t)c->topk;
            if (!same_set(r->topk + o, kr->topk + o, c->topk)) continue;
            same++;
            if (!r->out || !kr->out) continue;
            for (int h = g * G; h < (g + 1) * G; h++)
                for (int d = 0; d < c->D; d++) {
                    size_t i = ((size_t)t * (size_t)c->Hq + (size_t)h) * (size_t)c->D + (size_t)d;
                    double x = fabs(r->out[i] - kr->out[i]);
                    if (x > *maxd || isnan(x)) *maxd = x;
                }
        }
    *frac = rows ? (double)same / (double)rows : 1.0;
}

static void print_verdict(const char *who, const msa_verdict *s, const msa_verdict *a)
{
    printf("  %-8s selection %-12s attention %-12s worst ratio %.3g%s%s%s%s\n", who, msa_disposition_name(s->disp),
           msa_disposition_name(a->disp), a->worst_ratio, s->disp == MSA_V_INCORRECT ? "  [" : "",
           s->disp == MSA_V_INCORRECT ? s->detail : "", a->disp == MSA_V_INCORRECT ? "  [" : "",
           a->disp == MSA_V_INCORRECT ? a->detail : "");
}

static int judge_recorded(const msa_trace_record *r, const msa_arith *a, msa_ref_mode mode, msa_verdict *vs,
                          msa_verdict *va, msa_err *e)
{
    const msa_case *c = &r->c;
    memset(vs, 0, sizeof *vs);
    memset(va, 0, sizeof *va);
    vs->disp = va->disp = MSA_V_NOTVERIFIED;
    if (!r->topk) return MSA_OK;
    size_t nb = (size_t)c->HI * (size_t)c->Tq * (size_t)r->nblk;
    size_t no = (size_t)c->Tq * (size_t)c->Hq * (size_t)c->D, nl = (size_t)c->Tq * (size_t)c->Hq;
    double *scores = malloc(sizeof *scores * (nb ? nb : 1));
    double *eo = malloc(sizeof *eo * (no ? no : 1)), *el = malloc(sizeof *el * (nl ? nl : 1));
    int rc = scores && eo && el ? MSA_OK : msa_fail(e, MSA_ENOMEM, "%s: replay: out of memory", c->label);
    if (!rc) rc = msa_ref_select(c, mode, NULL, scores, e);
    if (!rc) rc = msa_judge_selection(c, a, r->topk, scores, vs, e);
    if (!rc && (r->out || r->lse)) {
        rc = msa_ref_attend(c, mode, r->topk, eo, el, e);
        if (!rc) rc = msa_judge_attention(c, a, r->topk, r->out, r->lse, eo, el, va, e);
    }
    free(scores);
    free(eo);
    free(el);
    return rc;
}

static int judge_backend(msa_kernel *k, const msa_trace_record *r, msa_ref_mode mode, msa_verdict *vs,
                         msa_verdict *va, msa_kernel_result *kr, msa_err *e)
{
    memset(vs, 0, sizeof *vs);
    memset(va, 0, sizeof *va);
    int rc = msa_kernel_run(k, &r->c, MSA_RUN_FORWARD, NULL, NULL, kr, e);
    if (rc == MSA_EUNSUPPORTED) {
        vs->disp = va->disp = MSA_V_NOTSUPPORTED;
        return MSA_OK;
    }
    if (rc == MSA_EBACKEND) {
        vs->disp = va->disp = MSA_V_CRASHED;
        snprintf(va->detail, sizeof va->detail, "%s", e->msg);
        return MSA_OK;
    }
    if (rc) return rc;
    rc = msa_judge_forward(&r->c, &k->be->arith, kr->topk, kr->out, kr->lse, mode, vs, va, e);
    if (!rc && !kr->guard_ok) {
        va->disp = MSA_V_INCORRECT;
        snprintf(va->detail, sizeof va->detail, "guard band: %s", kr->guard_msg);
    }
    return rc;
}

static int recorded_arith(const msa_trace *t, const char *override, msa_arith *a, msa_err *e)
{
    char name[64] = DEFAULT_RECORDED_ARITH;
    msa_json j;
    if (t->meta_text && msa_json_parse(t->meta_text, strlen(t->meta_text), "meta", &j, e) == MSA_OK) {
        const msa_json *x = msa_json_get(&j, "arith");
        if (x && x->type == MSA_JSON_STR) snprintf(name, sizeof name, "%s", x->str);
        msa_json_free(&j);
    }
    if (override) snprintf(name, sizeof name, "%s", override);
    int rc = msa_arith_profile(name, a, e);
    if (rc) return rc;
    if (!strcmp(t->order, "ascending")) a->order = MSA_ORDER_ASCENDING;
    else if (!strcmp(t->order, "score-desc")) a->order = MSA_ORDER_SCORE_DESC;
    else if (!strcmp(t->order, "local-last")) a->order = MSA_ORDER_LOCAL_LAST;
    else a->order = MSA_ORDER_ANY;
    return MSA_OK;
}

static int replay_record(msa_kernel *k, const msa_trace_record *r, const msa_arith *ra, const replay_opts *o,
                         int *overall, msa_err *e)
{
    msa_ref_mode mode = pick_mode(&r->c, o->mode);
    msa_verdict bs, ba, rs, rv;
    msa_kernel_result kr;
    memset(&kr, 0, sizeof kr);
    char desc[256];
    msa_case_describe(&r->c, desc, sizeof desc);
    printf("%s (layer %d, step %d): %s, %s reference\n", r->name, r->layer, r->step, desc,
           mode == MSA_REF_EXACT ? "exact" : "fast");
    int rc = judge_backend(k, r, mode, &bs, &ba, &kr, e);
    if (!rc) rc = judge_recorded(r, ra, mode, &rs, &rv, e);
    if (!rc) {
        print_verdict(k->name, &bs, &ba);
        if (r->topk) print_verdict("recorded", &rs, &rv);
        else printf("  recorded (no selection recorded: nothing to judge)\n");
        double frac, maxd;
        agreement(r, &kr, &frac, &maxd);
        if (!isnan(frac)) printf("  agree    same block set in %.2f%% of rows; max |out diff| there %.3g\n", 100 * frac, maxd);
        int v = worst(bs.disp, ba.disp);
        if (r->topk) v = worst(v, worst(rs.disp, r->out || r->lse ? rv.disp : MSA_V_PASSED));
        *overall = worst(*overall, v);
        printf("  verdict  %s\n", msa_disposition_name((msa_disposition)v));
        if (v == MSA_V_INCORRECT || v == MSA_V_CRASHED)
            printf("  repro    msa replay %s --kernel %s --layers %d --mode %s\n", o->path, o->kernel, r->layer,
                   mode == MSA_REF_EXACT ? "exact" : "fast");
    }
    msa_kernel_result_free(&kr);
    fflush(stdout);
    return rc;
}

static int replay_usage(void)
{
    fprintf(stderr, "usage: msa replay TRACE [--kernel cpu-sim|cuda|PLUGIN.so] [--mode auto|exact|fast] "
                    "[--recorded-arith PROFILE] [--layers A-B]\n");
    return 2;
}

int msa_replay_main(int argc, char **argv)
{
    replay_opts o = {.kernel = "cpu-sim", .mode = "auto", .rec_arith = NULL};
    const char *path = NULL;
    int lo = 0, hi = 1 << 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--kernel") && v) o.kernel = v, i++;
        else if (!strcmp(a, "--mode") && v && (!strcmp(v, "auto") || !strcmp(v, "exact") || !strcmp(v, "fast"))) o.mode = v, i++;
        else if (!strcmp(a, "--recorded-arith") && v) o.rec_arith = v, i++;
        else if (!strcmp(a, "--layers") && v) {
            if (sscanf(v, "%d-%d", &lo, &hi) != 2 && sscanf(v, "%d", &lo) == 1) hi = lo;
            i++;
        } else if (a[0] != '-' && !path) path = a;
        else return replay_usage();
    }
    if (!path) return replay_usage();
    o.path = path;
    msa_err e = {{0}};
    msa_trace t;
    if (msa_trace_read(path, &t, &e)) {
        fprintf(stderr, "msa replay: %s\n", e.msg);
        return 2;
    }
    msa_arith ra;
    msa_kernel k;
    int rc = recorded_arith(&t, o.rec_arith, &ra, &e);
    if (!rc) rc = msa_kernel_open(o.kernel, &k, &e);
    if (rc) {
        fprintf(stderr, "msa replay: %s\n", e.msg);
        msa_trace_free(&t);
        return 2;
    }
    printf("trace %s: model %s, index %s, %d records; backend %s\n", path, t.model[0] ? t.model : "?",
           t.index_kind[0] ? t.index_kind : "?", t.nrec, k.name);
    int overall = MSA_V_PASSED, ran = 0;
    for (int i = 0; i < t.nrec && !rc; i++) {
        if (t.rec[i].layer < lo || t.rec[i].layer > hi) continue;
        rc = msa_trace_load_record(&t, i, &e);
        if (!rc) rc = replay_record(&k, &t.rec[i], &ra, &o, &overall, &e);
        msa_trace_unload_record(&t, i);
        ran++;
    }
    msa_kernel_close(&k);
    msa_trace_free(&t);
    if (rc) {
        fprintf(stderr, "msa replay: %s\n", e.msg);
        return 2;
    }
    printf("replay: %d records, overall %s\n", ran, msa_disposition_name((msa_disposition)overall));
    return overall == MSA_V_INCORRECT || overall == MSA_V_CRASHED || overall == MSA_V_TIMEOUT ? 1 : 0;
}
