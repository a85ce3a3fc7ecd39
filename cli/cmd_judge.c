/* cmd_judge.c - `msa judge`: judges outputs that a kernel produced anywhere (PyTorch,
 * vLLM, FlashInfer, our own backends) and dumped to an NPZ (topk_indices, out, lse),
 * against the exact reference, with the bounds of a declared arithmetic profile. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/numfmt.h"
#include "../oracle/oracle.h"
#include "cli.h"

static const char *judge_help =
    "usage: msa judge CASE.npz OUT.npz --arith PROFILE [--order ascending|score-desc|local-last|any]\n"
    "                 [--out-dtype bf16|fp16|fp32|fp64] [--mode exact|fast] [--dense]\n"
    "\n"
    "OUT.npz holds what the kernel produced (docs/FORMATS.md): topk_indices int32 [HI,Tq,k]\n"
    "(optional), out [Tq,Hq,D] as <u2 bf16/fp16 bits, <f2, <f4 or <f8, lse [Tq,Hq] <f4/<f8\n"
    "(optional, natural log).  The selection is judged tie-aware against the exact block\n"
    "scores; out and lse against the exact attention over the kernel's OWN selection.\n"
    "Without topk_indices the reference's selection is used; --dense judges against dense GQA.\n"
    "Profiles: see the list printed by --arith help.  Exit 0 Passed, 1 Incorrect, 2 bad input.\n";

static int parse_order(const char *s, msa_order *o)
{
    static const char *names[] = {"ascending", "score-desc", "local-last", "any"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            *o = (msa_order)i;
            return 0;
        }
    return -1;
}

/* Checks a tensor's shape against the expected one; message names file and entry. */
static int check_shape(const char *file, const msa_tensor *t, int ndim, const int64_t *shape, msa_err *e)
{
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 0;
    char want[96] = "", got[96] = "";
    for (int i = 0; i < ndim; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)shape[i]);
    for (int i = 0; i < t->ndim; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
    return msa_fail(e, MSA_EINPUT, "%s: %s: shape [%s], expected [%s]", file, t->name, got, want);
}

/* Decodes `out` to double according to its storage and the declared/overridden dtype. */
static int load_out(const char *file, const msa_tensor *t, msa_dtype bits_as, double **out, msa_err *e)
{
    *out = malloc(t->count * sizeof(double) + 1);
    if (!*out) return msa_fail(e, MSA_ENOMEM, "%s: out: cannot allocate", file);
    msa_dtype as = t->dtype;
    if (as == MSA_DT_U16) {
        if (bits_as != MSA_DT_BF16 && bits_as != MSA_DT_FP16) {
            free(*out);
            return msa_fail(e, MSA_EINPUT, "%s: out: <u2 bits need --out-dtype bf16 or fp16", file);
        }
        as = bits_as;
    }
    if (as != MSA_DT_BF16 && as != MSA_DT_FP16 && as != MSA_DT_FP32 && as != MSA_DT_FP64) {
        free(*out);
        return msa_fail(e, MSA_EINPUT, "%s: out: dtype %s is not a float type", file, msa_dtype_name(t->dtype));
    }
    for (size_t i = 0; i < t->count; i++) (*out)[i] = msa_dtype_load(as, t->data, i);
    return 0;
}

static void print_verdict(const char *what, const msa_verdict *v)
{
    printf("  %-10s %-12s checked %ld, failed %ld", what, msa_disposition_name(v->disp), v->checked, v->failed);
    if (v->worst_ratio > 0 || v->worst_lse_ratio > 0)
        printf(", worst observed/bound %.3g (lse %.3g), p50 %.3g, p99 %.3g", v->worst_ratio,
               v->worst_lse_ratio, v->ratio_p50, v->ratio_p99);
    if (v->sel_rows) printf(", rows %ld, ambiguous %ld, tie choices %ld", v->sel_rows, v->sel_ambiguous_rows, v->sel_tie_choices);
    printf("\n");
    if (v->disp != MSA_V_PASSED && v->detail[0]) printf("    %s: %s\n", v->stage, v->detail);
}

int msa_cmd_judge(int argc, char **argv)
{
    const char *casep = NULL, *outp = NULL, *prof = NULL;
    msa_order order = MSA_ORDER_ASCENDING;
    int have_order = 0, dense = 0;
    msa_dtype bits_as = MSA_DT_INVALID;
    msa_ref_mode mode = MSA_REF_EXACT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(judge_help, stdout);
            return MSA_EXIT_OK;
        } else if (!strcmp(a, "--dense")) {
            dense = 1;
        } else if (!strcmp(a, "--arith")) {
            if (!(prof = msa_cli_value("judge", argc, argv, &i))) return MSA_EXIT_USAGE;
        } else if (!strcmp(a, "--order")) {
            if (!(v = msa_cli_value("judge", argc, argv, &i))) return MSA_EXIT_USAGE;
            if (parse_order(v, &order)) return msa_cli_usage_error("judge", "--order: unknown '%s'", v);
            have_order = 1;
        } else if (!strcmp(a, "--out-dtype")) {
            if (!(v = msa_cli_value("judge", argc, argv, &i))) return MSA_EXIT_USAGE;
            bits_as = msa_dtype_from_name(v);
            if (bits_as != MSA_DT_BF16 && bits_as != MSA_DT_FP16 && bits_as != MSA_DT_FP32 && bits_as != MSA_DT_FP64)
                return msa_cli_usage_error("judge", "--out-dtype: '%s' is not bf16, fp16, fp32 or fp64", v);
        } else if (!strcmp(a, "--mode")) {
            if (!(v = msa_cli_value("judge", argc, argv, &i))) return MSA_EXIT_USAGE;
            if (!strcmp(v, "exact")) mode = MSA_REF_EXACT;
            else if (!strcmp(v, "fast")) mode = MSA_REF_FAST;
            else return msa_cli_usage_error("judge", "--mode: '%s' is not exact or fast", v);
        } else if (a[0] == '-' && a[1]) {
            return msa_cli_usage_error("judge", "unknown option '%s' (msa judge --help)", a);
        } else if (!casep) casep = a;
        else if (!outp) outp = a;
        else return msa_cli_usage_error("judge", "unexpected argument '%s'", a);
    }
    msa_arith arith;
    msa_err e = {{0}};
    if (!prof || !strcmp(prof, "help")) {
        fprintf(prof ? stdout : stderr, "%sprofiles:", prof ? "" : "msa judge: missing --arith PROFILE; ");
        for (const char *const *n = msa_arith_profile_names(); *n; n++) fprintf(prof ? stdout : stderr, " %s", *n);
        fprintf(prof ? stdout : stderr, "\n");
        return prof ? MSA_EXIT_OK : MSA_EXIT_USAGE;
    }
    if (!casep || !outp) return msa_cli_usage_error("judge", "need CASE.npz and OUT.npz (msa judge --help)");
    int st = msa_arith_profile(prof, &arith, &e);
    if (st) return msa_cli_status_exit("judge", st, &e);
    if (have_order) arith.order = order;

    msa_case c;
    msa_npz z = {0};
    double *out = NULL, *ex_out = NULL, *ex_lse = NULL;
    float *lse = NULL;
    int32_t *topk = NULL, *reftopk = NULL;
    int rc = MSA_EXIT_USAGE;
    if ((st = msa_case_load(casep, &c, &e))) return msa_cli_status_exit("judge", st, &e);
    if ((st = msa_npz_read(outp, &z, &e))) goto done;

    const msa_tensor *to = msa_npz_find(&z, "out"), *tl = msa_npz_find(&z, "lse"), *tt = msa_npz_find(&z, "topk_indices");
    if (!to) {
        st = msa_fail(&e, MSA_EINPUT, "%s: out: missing", outp);
        goto done;
    }
    int64_t so[3] = {c.Tq, c.Hq, c.D}, sl[2] = {c.Tq, c.Hq}, st3[3] = {c.HI, c.Tq, c.topk};
    if ((st = check_shape(outp, to, 3, so, &e))) goto done;
    if (bits_as == MSA_DT_INVALID) {
        const msa_tensor *od = msa_npz_find(&z, "out_dtype");
        char name[16] = "";
        if (od && od->dtype == MSA_DT_U8 && od->count < sizeof name) memcpy(name, od->data, od->count);
        bits_as = od ? msa_dtype_from_name(name) : arith.out_dtype;
    }
    if ((st = load_out(outp, to, bits_as, &out, &e))) goto done;
    if (tl) {
        if ((st = check_shape(outp, tl, 2, sl, &e))) goto done;
        if (tl->dtype != MSA_DT_FP32 && tl->dtype != MSA_DT_FP64) {
            st = msa_fail(&e, MSA_EINPUT, "%s: lse: dtype %s, expected <f4 or <f8", outp, msa_dtype_name(tl->dtype));
            goto done;
        }
        lse = malloc(tl->count * sizeof(float) + 1);
        if (!lse) { st = msa_fail(&e, MSA_ENOMEM, "out of memory"); goto done; }
        for (size_t i = 0; i < tl->count; i++) lse[i] = (float)msa_dtype_load(tl->dtype, tl->data, i);
    }
    if (tt && !dense) {
        if ((st = check_shape(outp, tt, 3, st3, &e))) goto done;
        if (tt->dtype != MSA_DT_I32 && tt->dtype != MSA_DT_I64) {
            st = msa_fail(&e, MSA_EINPUT, "%s: topk_indices: dtype %s, expected int32", outp, msa_dtype_name(tt->dtype));
            goto done;
        }
        topk = malloc(tt->count * sizeof(int32_t) + 1);
        if (!topk) { st = msa_fail(&e, MSA_ENOMEM, "out of memory"); goto done; }
        for (size_t i = 0; i < tt->count; i++) {
            int64_t v64;
            if (tt->dtype == MSA_DT_I32) { int32_t v32; memcpy(&v32, (char *)tt->data + 4 * i, 4); v64 = v32; }
            else memcpy(&v64, (char *)tt->data + 8 * i, 8);
            topk[i] = v64 < -1 || v64 > INT32_MAX ? INT32_MIN : (int32_t)v64;
        }
    }

    msa_verdict vs, va;
    memset(&vs, 0, sizeof vs);
    memset(&va, 0, sizeof va);
    char desc[256];
    msa_case_describe(&c, desc, sizeof desc);
    if (topk) {
        st = msa_judge_forward(&c, &arith, topk, out, lse, mode, &vs, &va, &e);
    } else {
        size_t n = (size_t)c.Tq * c.Hq;
        ex_out = malloc(n * c.D * sizeof(double) + 1), ex_lse = malloc(n * sizeof(double) + 1);
        reftopk = dense ? NULL : malloc((size_t)c.HI * c.Tq * c.topk * sizeof(int32_t) + 1);
        if (!ex_out || !ex_lse || (!dense && !reftopk)) { st = msa_fail(&e, MSA_ENOMEM, "out of memory"); goto done; }
        st = dense ? 0 : msa_ref_select(&c, mode, reftopk, NULL, &e);
        if (!st) st = msa_ref_attend(&c, mode, reftopk, ex_out, ex_lse, &e);
        if (!st) st = msa_judge_attention(&c, &arith, reftopk, out, lse, ex_out, ex_lse, &va, &e);
        vs.disp = MSA_V_NOTVERIFIED;
        snprintf(vs.stage, sizeof vs.stage, "selection");
        snprintf(vs.detail, sizeof vs.detail, "no topk_indices in %s: %s", outp,
                 dense ? "judged against dense GQA" : "attention judged over the reference's selection");
    }
    if (st) goto done;
    int pass = (vs.disp == MSA_V_PASSED || vs.disp == MSA_V_NOTVERIFIED) && va.disp == MSA_V_PASSED;
    printf("%s: %s (arith %s, %s reference) %s\n", pass ? "PASSED" : "INCORRECT", casep, prof,
           mode == MSA_REF_EXACT ? "exact" : "fast", desc);
    print_verdict("selection", &vs);
    print_verdict("attention", &va);
    rc = pass ? MSA_EXIT_OK : MSA_EXIT_FAIL;
done:
    if (st) rc = msa_cli_status_exit("judge", st, &e);
    free(out), free(lse), free(topk), free(reftopk), free(ex_out), free(ex_lse);
    msa_npz_free(&z);
    msa_case_free(&c);
    return rc;
}
