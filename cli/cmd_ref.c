/* cmd_ref.c - `msa ref`: load a case, compute the reference (exact or fast), write the
 * result NPZ (topk_indices, out, lse, dense_out, dense_lse, block_scores). */
#include <stdio.h>
#include <string.h>

#include "../reference/ref.h"
#include "cli.h"

static const char *ref_help =
    "usage: msa ref CASE.npz -o RESULT.npz [--mode exact|fast] [--threads N]\n"
    "\n"
    "Computes, for the case file (docs/FORMATS.md), the MSA index branch (block scores and the\n"
    "top-k selection: ascending ids, -1 tail, lower id wins exact ties), MSA attention over the\n"
    "selected blocks and dense causal GQA, and writes RESULT.npz with\n"
    "  topk_indices int32 [HI,Tq,k], out float64 [Tq,Hq,D], lse float64 [Tq,Hq] (natural log),\n"
    "  dense_out, dense_lse, block_scores float64 [HI,Tq,nblk].\n"
    "--mode exact (default): every fp64 value is the correctly rounded exact result (exact dot\n"
    "  products, MPFR-certified exp/log/division).  --mode fast: double with compensated sums,\n"
    "  its error is documented in docs/NUMERICS.md.\n";

int msa_cmd_ref(int argc, char **argv)
{
    const char *in = NULL, *outp = NULL;
    msa_ref_mode mode = MSA_REF_EXACT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(ref_help, stdout);
            return MSA_EXIT_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(outp = msa_cli_value("ref", argc, argv, &i))) return MSA_EXIT_USAGE;
        } else if (!strcmp(a, "--mode")) {
            const char *m = msa_cli_value("ref", argc, argv, &i);
            if (!m) return MSA_EXIT_USAGE;
            if (!strcmp(m, "exact")) mode = MSA_REF_EXACT;
            else if (!strcmp(m, "fast")) mode = MSA_REF_FAST;
            else return msa_cli_usage_error("ref", "--mode: '%s' is not exact or fast", m);
        } else if (!strcmp(a, "--threads")) {
            const char *v = msa_cli_value("ref", argc, argv, &i);
            long n;
            if (!v || msa_cli_int("ref", "--threads", v, 1, 1024, &n)) return MSA_EXIT_USAGE;
            msa_ref_set_threads((int)n);
        } else if (a[0] == '-' && a[1]) {
            return msa_cli_usage_error("ref", "unknown option '%s' (msa ref --help)", a);
        } else if (!in) {
            in = a;
        } else {
            return msa_cli_usage_error("ref", "unexpected argument '%s'", a);
        }
    }
    if (!in) return msa_cli_usage_error("ref", "missing CASE.npz (msa ref --help)");
    if (!outp) return msa_cli_usage_error("ref", "missing -o RESULT.npz");

    msa_err e = {{0}};
    msa_case c;
    int st = msa_case_load(in, &c, &e);
    if (st) return msa_cli_status_exit("ref", st, &e);
    msa_ref_result r;
    memset(&r, 0, sizeof r);
    st = msa_ref_run(&c, mode, &r, &e);
    if (!st) st = msa_ref_result_save(outp, &c, &r, &e);
    msa_ref_result_free(&r);
    msa_case_free(&c);
    return msa_cli_status_exit("ref", st, &e);
}
