/* ref.h - the CPU reference for dense causal GQA and MSA (../shared/MSA.md 3-5).
 *
 * Exact mode: dot products of the (dyadic) inputs are accumulated exactly; exp, log and
 * division go through MPFR interval arithmetic whose precision is raised until both ends
 * of the interval round to the same double, so every returned double is the correctly
 * rounded value of the exact mathematical result (ties in selection compared exactly).
 * Fast mode: double precision with compensated sums, multithreaded; its measured error
 * against exact mode is documented in docs/NUMERICS.md.
 *
 * Layouts (all row-major):
 *   topk          int32  [HI][Tq][topk]   ascending ids, -1 tail
 *   block_scores  double [HI][Tq][nblk]   index_scale * max visible token score, -inf
 *                                         for blocks with no visible key; nblk =
 *                                         msa_case_max_blocks()
 *   out           double [Tq][Hq][D];  lse double [Tq][Hq]  (natural log)
 * An empty row (no selected visible key) gives out = 0 and lse = -inf. */
#ifndef MSA_REF_H
#define MSA_REF_H

#include "../common/case.h"

typedef enum { MSA_REF_EXACT = 0, MSA_REF_FAST = 1 } msa_ref_mode;

/* Index branch: block scores and selection (canonical tie rule: lower block id wins).
 * Either output pointer may be NULL. */
int msa_ref_select(const msa_case *c, msa_ref_mode mode, int32_t *topk, double *block_scores,
                   msa_err *e);

/* Main branch over a given selection (layout of topk above; ids may be in any order,
 * -1 slots and ids >= nvis ignored, duplicates counted once).  topk == NULL gives
 * dense causal GQA. */
int msa_ref_attend(const msa_case *c, msa_ref_mode mode, const int32_t *topk, double *out,
                   double *lse, msa_err *e);

typedef struct {
    int nblk;
    int32_t *topk;
    double *block_scores;
    double *out, *lse;             /* MSA */
    double *dense_out, *dense_lse; /* dense causal GQA */
} msa_ref_result;

/* Everything at once (allocates the result). */
int msa_ref_run(const msa_case *c, msa_ref_mode mode, msa_ref_result *r, msa_err *e);
void msa_ref_result_free(msa_ref_result *r);
/* Writes the result as an NPZ (topk_indices, out, lse, dense_out, dense_lse, block_scores). */
int msa_ref_result_save(const char *path, const msa_case *c, const msa_ref_result *r, msa_err *e);

/* Threads for both modes (default: online CPUs). */
void msa_ref_set_threads(int n);

#endif
