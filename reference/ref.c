/* ref.c - the public face of the reference (ref.h): decodes the case once, runs the index
 * branch, MSA attention and dense causal GQA, and saves the result as an NPZ.  The
 * arithmetic lives in ref_select.c and ref_attend.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_internal.h"

int msa_ref_select(const msa_case *c, msa_ref_mode mode, int32_t *topk, double *block_scores,
                   msa_err *e)
{
    msa_ref_data dd;
    int rc = msa_ref_data_init(c, mode == MSA_REF_EXACT, &dd, e);
    if (!rc) rc = msa_ref_select_impl(&dd, mode == MSA_REF_EXACT, topk, block_scores, e);
    msa_ref_data_free(&dd);
    return rc;
}

int msa_ref_attend(const msa_case *c, msa_ref_mode mode, const int32_t *topk, double *out,
                   double *lse, msa_err *e)
{
    msa_ref_data dd;
    int rc = msa_ref_data_init(c, mode == MSA_REF_EXACT, &dd, e);
    double *tmp = NULL;
    if (!rc && !out) { /* the engine always writes out; the caller may only want lse */
        tmp = msa_calloc((size_t)dd.Tq * dd.Hq * dd.D + 1, sizeof *tmp);
        if (!tmp) rc = msa_fail(e, MSA_ENOMEM, "%s: reference: out of memory", c->label);
    }
    if (!rc) rc = msa_ref_attend_impl(&dd, mode == MSA_REF_EXACT, topk, out ? out : tmp, lse, e);
    free(tmp);
    msa_ref_data_free(&dd);
    return rc;
}

void msa_ref_result_free(msa_ref_result *r)
{
    if (!r) return;
    free(r->topk), free(r->block_scores), free(r->out), free(r->lse);
    free(r->dense_out), free(r->dense_lse);
    memset(r, 0, sizeof *r);
}

int msa_ref_run(const msa_case *c, msa_ref_mode mode, msa_ref_result *r, msa_err *e)
{
    msa_ref_data dd;
    int exact = mode == MSA_REF_EXACT;
    memset(r, 0, sizeof *r);
    int rc = msa_ref_data_init(c, exact, &dd, e);
    if (rc) {
        msa_ref_data_free(&dd);
        return rc;
    }
    size_t nt = (size_t)dd.Tq, no = nt * dd.Hq * dd.D + 1, nl = nt * dd.Hq + 1;
    r->nblk = dd.nblk;
    r->topk = msa_calloc((size_t)dd.HI * nt * dd.topk + 1, sizeof *r->topk);
    r->block_scores = msa_calloc((size_t)dd.HI * nt * dd.nblk + 1, sizeof *r->block_scores);
    r->out = msa_calloc(no, sizeof(double)), r->dense_out = msa_calloc(no, sizeof(double));
    r->lse = msa_calloc(nl, sizeof(double)), r->dense_lse = msa_calloc(nl, sizeof(double));
    if (!r->topk || !r->block_scores || !r->out || !r->dense_out || !r->lse || !r->dense_lse)
        rc = msa_fail(e, MSA_ENOMEM, "%s: reference: out of memory", c->label);
    if (!rc) rc = msa_ref_select_impl(&dd, exact, r->topk, r->block_scores, e);
    if (!rc) rc = msa_ref_attend_impl(&dd, exact, r->topk, r->out, r->lse, e);
    if (!rc) rc = msa_ref_attend_impl(&dd, exact, NULL, r->dense_out, r->dense_lse, e);
    msa_ref_data_free(&dd);
    if (rc) msa_ref_result_free(r);
    return rc;
}

int msa_ref_result_save(const char *path, const msa_case *c, const msa_ref_result *r, msa_err *e)
{
    msa_npz z = {0, 0, NULL};
    int64_t sk[3] = {c->HI, c->Tq, c->topk}, sb[3] = {c->HI, c->Tq, r->nblk};
    int64_t so[3] = {c->Tq, c->Hq, c->D}, sl[2] = {c->Tq, c->Hq};
    int rc = msa_npz_add(&z, "topk_indices", MSA_DT_I32, 3, sk, r->topk, e);
    if (!rc) rc = msa_npz_add(&z, "out", MSA_DT_FP64, 3, so, r->out, e);
    if (!rc) rc = msa_npz_add(&z, "lse", MSA_DT_FP64, 2, sl, r->lse, e);
    if (!rc) rc = msa_npz_add(&z, "dense_out", MSA_DT_FP64, 3, so, r->dense_out, e);
    if (!rc) rc = msa_npz_add(&z, "dense_lse", MSA_DT_FP64, 2, sl, r->dense_lse, e);
    if (!rc) rc = msa_npz_add(&z, "block_scores", MSA_DT_FP64, 3, sb, r->block_scores, e);
    if (!rc) rc = msa_npz_write(path, &z, 0, e);
    msa_npz_free(&z);
    return rc;
}
