/* oracle.h - judging a backend's results against the exact reference.
 *
 * Two stages (docs/NUMERICS.md derives every bound used here):
 *  1. selection: structural checks (count = min(nvis, k), distinct, ids < nvis, -1 tail,
 *     forced init/local blocks, declared order) and the tie-aware semantic check: blocks
 *     certainly above the k-th exact block score must be chosen, blocks certainly below
 *     must not; the ambiguous band comes from the declared key arithmetic.
 *  2. attention: out and lse against the exact attention over the kernel's OWN selection,
 *     element by element against a per-element bound derived from the declared
 *     arithmetic and the data.  Empty rows must give out = 0, lse = -inf.
 * The oracle never sees a kernel's internals, only results and the msa_arith declaration. */
#ifndef MSA_ORACLE_H
#define MSA_ORACLE_H

#include "../common/case.h"
#include "../kernels/msa_abi.h"
#include "../reference/ref.h"

typedef enum {
    MSA_V_PASSED = 0,
    MSA_V_INCORRECT,
    MSA_V_NOTSUPPORTED,
    MSA_V_NOTVERIFIED,
    MSA_V_CRASHED,
    MSA_V_TIMEOUT
} msa_disposition;
const char *msa_disposition_name(msa_disposition d);

/* Error-budget components of one element's bound. */
enum {
    MSA_BUD_INPUT = 0, /* rounding of inputs the kernel made (e.g. q scaled before rounding) */
    MSA_BUD_ACCUM,     /* score and P.V accumulation */
    MSA_BUD_EXP,       /* exp evaluation and its argument rounding */
    MSA_BUD_RESCALE,   /* online-softmax rescaling / partial merge */
    MSA_BUD_PROUND,    /* rounding P to bf16/fp16 */
    MSA_BUD_OUTPUT,    /* final rounding to out_dtype */
    MSA_BUD_N
};

typedef struct {
    msa_disposition disp;
    char stage[32];     /* "selection", "structure", "output", "lse", "empty-row", "dense-identity", ... */
    char detail[640];   /* worst offending element: (batch, query, head, dim, kernel, exact, bound) */
    long checked, failed;
    double worst_ratio; /* max over elements of |kernel - exact| / bound (output and lse) */
    double worst_lse_ratio;
    double ratio_p50, ratio_p99;
    double budget[MSA_BUD_N]; /* breakdown of the bound at the worst element */
    /* selection statistics */
    long sel_rows, sel_ambiguous_rows, sel_tie_choices;
} msa_verdict;

/* Named arithmetic profiles: "exact-fp64", "fp32", "bf16-out", "bf16-p-bf16-out",
 * "cpu-sim", "cuda", "fp16-keys", "q16-keys", ... (msa_arith_profile_names lists them). */
int msa_arith_profile(const char *name, msa_arith *a, msa_err *e);
const char *const *msa_arith_profile_names(void);

/* Stage 1 (exact_block_scores from msa_ref_select, exact mode). */
int msa_judge_selection(const msa_case *c, const msa_arith *a, const int32_t *topk,
                        const double *exact_block_scores, msa_verdict *v, msa_err *e);
/* Stage 2: exact_out/exact_lse must be the reference over the same selection topk
 * (topk == NULL: dense). out may be NULL to judge lse only; lse may be NULL. */
int msa_judge_attention(const msa_case *c, const msa_arith *a, const int32_t *topk,
                        const double *out, const float *lse, const double *exact_out,
                        const double *exact_lse, msa_verdict *v, msa_err *e);
/* Both stages, computing the references itself (mode: exact unless the case is too large). */
int msa_judge_forward(const msa_case *c, const msa_arith *a, const int32_t *topk, const double *out,
                      const float *lse, msa_ref_mode mode, msa_verdict *sel, msa_verdict *att,
                      msa_err *e);

#endif
