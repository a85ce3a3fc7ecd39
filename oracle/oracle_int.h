/* oracle_int.h - private pieces shared by the oracle's files (not a public interface).
 *
 * The constants below are the unit roundoffs and error terms that docs/NUMERICS.md
 * derives; every bound the oracle applies is assembled from them in bounds.c and
 * judge_sel.c.  Nothing here knows about kernels beyond the msa_arith declaration. */
#ifndef MSA_ORACLE_INT_H
#define MSA_ORACLE_INT_H

#include "oracle.h"

/* Unit roundoff (half an ulp, relative) of RNE rounding to p significant bits. */
double msa_or_unit(int bits);
/* gamma_n = n u / (1 - n u) (Higham, Accuracy and Stability, Lemma 3.1); +inf when n u >= 1. */
double msa_or_gamma(double n, double u);
/* Relative unit roundoff of rounding a result to a storage dtype (0 for FP64 = no rounding
 * declared, see NUMERICS.md section 2) and the absolute error below its normal range. */
double msa_or_dtype_unit(msa_dtype t);
double msa_or_dtype_subnormal_abs(msa_dtype t);
/* The output dtype the declaration means for this case (out_dtype INVALID: by input dtype). */
msa_dtype msa_or_out_dtype(const msa_arith *a, const msa_case *c);
/* p_dtype with MSA_DT_INVALID resolved: fp16 for fp16 inputs, bf16 otherwise. */
msa_dtype msa_or_p_dtype(const msa_arith *a, const msa_case *c);

/* Cheap shape sanity (the judges divide by Hkv, index by HI...): MSA_EINPUT when broken. */
int msa_or_check_case(const msa_case *c, msa_err *e);

/* ---- a verdict being accumulated ---- */
#define MSA_OR_HIST_BINS 640 /* log2(ratio) from -64 to +16 in 1/8 octaves */
typedef struct {
    msa_verdict *v;
    long hist[MSA_OR_HIST_BINS + 2]; /* [0]: ratio 0, last: ratio >= 2^16 or inf */
    long nratio;
    double worst_fail_ratio; /* keeps the first stage that failed worst */
} msa_or_acc;

void msa_or_acc_init(msa_or_acc *acc, msa_verdict *v, const char *stage);
void msa_or_acc_ratio(msa_or_acc *acc, double ratio);
void msa_or_acc_finish(msa_or_acc *acc);

/* ---- row parallelism (workers.c) ---- */
#define MSA_OR_MAX_WORKERS 64
#define MSA_OR_WORKER_BYTES 8e9 /* scratch all workers of one judge may hold together */
/* Workers for `units` independent rows, each worker holding bytes_per_worker of scratch:
 * the online CPUs ($MSA_ORACLE_THREADS overrides), at most units / 4, within the budget. */
int msa_or_workers(long units, size_t bytes_per_worker);
/* Runs fn on states[0..nw) (each `size` bytes), in threads; returns when all are done. */
void msa_or_run_workers(void *states, size_t size, int nw, void *(*fn)(void *));
/* Folds src (a later range of rows) into dst as if its rows had been recorded after dst's:
 * histogram, counts, the worst element (earliest among equals), disposition Incorrect. */
void msa_or_acc_merge(msa_or_acc *dst, const msa_or_acc *src);

/* msa_judge_attention with a reference that is not exact: ref_a (non-NULL) declares the
 * reference's own arithmetic and its bound is added to every element's (NUMERICS.md 8). */
int msa_or_judge_attention(const msa_case *c, const msa_arith *a, const msa_arith *ref_a,
                           const int32_t *topk, const double *out, const float *lse,
                           const double *exact_out, const double *exact_lse, msa_verdict *v,
                           msa_err *e);

/* ---- per-row attention bound (bounds.c) ---- */
typedef struct {
    int n;            /* selected visible keys of the row */
    int nparts;       /* selected visible blocks (partials) */
    int D;
    double lse;       /* exact LSE of the row (natural log) */
    const double *s;  /* [n] exact-ish scores c*q.k (double) */
    const double *A;  /* [n] |c| * sum_d |q_d k_jd| */
    const double *V;  /* [n][D] values */
    const double *O;  /* [D] exact output */
} msa_or_row;

typedef struct {
    double *coef;  /* [MSA_BUD_N + 1][n] centred coefficients per bucket, then their sum */
    double *w;     /* [n] exact weights exp(s_j - lse) */
    double lse_bound;
    double lse_budget[MSA_BUD_N];
    double unc;    /* relative factor of the uncentred terms (times Vabs_d) */
    double unc_acc, unc_resc;
    double abs_w;  /* absolute weight error term factor (times max|v_d| * n) */
    double u_out, sub_out, u_ref;
    double second; /* 1 + gamma: covers second-order products of the first-order terms */
    int unbounded; /* R_bar >= 1: the declaration cannot bound this row (not judged) */
} msa_or_rowbound;

/* Prepares the row's coefficients (rb->coef must hold (MSA_BUD_N + 1) * n
 * doubles, rb->w n doubles). */
void msa_or_row_prepare(const msa_case *c, const msa_arith *a, const msa_or_row *r,
                        msa_or_rowbound *rb);
/* Bound for element d; budget[MSA_BUD_N] filled when non-NULL (slower path, same value). */
double msa_or_elem_bound(const msa_or_row *r, const msa_or_rowbound *rb, int d, double *budget);

#endif
