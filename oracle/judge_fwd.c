/* judge_fwd.c - both stages of the oracle on one forward result, computing the references.
 *
 * Stage 1 judges the selection against the exact block scores; stage 2 judges out/lse
 * against the exact attention over the kernel's OWN selection, so a legal tie choice never
 * fails the output check.  When every row sees at most k blocks (k >= nvis everywhere),
 * MSA must equal dense causal GQA: the output is then also judged against the dense
 * reference (stage "dense-identity").  With the fast reference (large cases) each bound
 * also carries the fast mode's declared error (profile exact-fp64).  It does not run
 * kernels. */
#include "oracle_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int all_rows_dense(const msa_case *c)
{
    int t;
    for (t = 0; t < c->Tq; t++)
        if (msa_case_qinfo(c, t).nvis > c->topk) return 0;
    return 1;
}

/* The metamorphic identity: judged like stage 2 but against dense attention. */
static int dense_identity(const msa_case *c, const msa_arith *a, const msa_arith *ref_a,
                          const double *out, const float *lse, msa_ref_mode mode, double *ro,
                          double *rl, msa_verdict *att, msa_err *e)
{
    msa_verdict dv;
    int rc = msa_ref_attend(c, mode, NULL, ro, rl, e);
    if (rc) return rc;
    if ((rc = msa_or_judge_attention(c, a, ref_a, NULL, out, lse, ro, rl, &dv, e))) return rc;
    if (dv.disp == MSA_V_INCORRECT && att->disp != MSA_V_INCORRECT) {
        *att = dv;
        snprintf(att->stage, sizeof att->stage, "dense-identity");
    }
    return MSA_OK;
}

int msa_judge_forward(const msa_case *c, const msa_arith *a, const int32_t *topk, const double *out,
                      const float *lse, msa_ref_mode mode, msa_verdict *sel, msa_verdict *att,
                      msa_err *e)
{
    size_t nblk, nrow, nout;
    double *bs = NULL, *ro = NULL, *rl = NULL;
    msa_arith fast;
    const msa_arith *ref_a;
    int rc = MSA_OK;
    if (!c || !a || !sel || !att) return msa_fail(e, MSA_EINPUT, "oracle: forward: missing argument");
    if (msa_or_check_case(c, e)) return MSA_EINPUT;
    nblk = (size_t)msa_case_max_blocks(c);
    nrow = (size_t)c->Tq * c->Hq;
    nout = nrow * c->D;
    bs = msa_calloc((size_t)c->HI * c->Tq * (nblk ? nblk : 1), sizeof(double));
    ro = msa_calloc(nout ? nout : 1, sizeof(double));
    rl = msa_calloc(nrow ? nrow : 1, sizeof(double));
    if (!bs || !ro || !rl) {
        rc = msa_fail(e, MSA_ENOMEM, "oracle: forward: out of memory");
        goto done;
    }
    memset(sel, 0, sizeof *sel);
    if (topk) {
        if ((rc = msa_ref_select(c, mode, NULL, bs, e))) goto done;
        if ((rc = msa_judge_selection(c, a, topk, bs, sel, e))) goto done;
    } else {
        sel->disp = MSA_V_NOTVERIFIED;
        snprintf(sel->stage, sizeof sel->stage, "selection");
        snprintf(sel->detail, sizeof sel->detail, "no selection given: judged as dense");
    }
    if (mode == MSA_REF_FAST && (rc = msa_arith_profile("exact-fp64", &fast, e))) goto done;
    ref_a = mode == MSA_REF_FAST ? &fast : NULL;
    if ((rc = msa_ref_attend(c, mode, topk, ro, rl, e))) goto done;
    if ((rc = msa_or_judge_attention(c, a, ref_a, topk, out, lse, ro, rl, att, e))) goto done;
    if (topk && all_rows_dense(c))
        rc = dense_identity(c, a, ref_a, out, lse, mode, ro, rl, att, e);
done:
    free(bs);
    free(ro);
    free(rl);
    return rc;
}
