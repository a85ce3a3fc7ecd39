/* ref_internal.h - what the reference's source files share and nobody else sees: the case
 * decoded to doubles, the per-query geometry, the thread pool, and the entry points of
 * the fast and exact engines.  Not a public interface (use ref.h). */
#ifndef MSA_REF_INTERNAL_H
#define MSA_REF_INTERNAL_H

#include <mpfr.h>

#include "ref.h"
#include "ref_dd.h"

/* The case decoded once (exactly: every stored value is a double). */
typedef struct {
    const msa_case *c;
    int Tq, Hq, Hkv, D, HI, DI, B, topk, init, local, group; /* group = Hq / Hkv */
    int nblk;                                                 /* max blocks of any sequence */
    int max_lk;
    double *q, *k, *v, *iq, *ik;   /* q[t][h][d], k/v[row][g][d], iq[t][g][d], ik[row][d] */
    int *qb, *qnkeys, *qnvis;      /* per query row: sequence, visible keys, visible blocks */
    int64_t **rows;                /* rows[b][j]: storage row of token j of sequence b */
} msa_ref_data;

int msa_ref_data_init(const msa_case *c, int exact, msa_ref_data *dd, msa_err *e);
void msa_ref_data_free(msa_ref_data *dd);

/* Parallel for over [0, n): fn(ctx, item, worker) on msa_ref_threads() threads.  Each
 * worker has an id in [0, nworkers).  Returns the first nonzero status of fn. */
typedef int (*msa_ref_task)(void *ctx, long item, int worker);
int msa_ref_parallel(long n, int nworkers, msa_ref_task fn, void *ctx);
int msa_ref_threads(void);

/* Exact dot product of two double vectors whose pairwise products are exact: returns 1
 * and the normalised dd (hi = RN(sum)) when the dd holds the exact sum, 0 otherwise. */
int msa_ref_dot_dd(const double *a, const double *b, int n, msa_dd *out);
/* Neumaier-compensated dot product in double (fast mode), four independent lanes. */
double msa_ref_dot_fast(const double *a, const double *b, int n);
/* Exact dot product into r (precision MSA_REF_DOT_PREC, always exact). */
#define MSA_REF_DOT_PREC 800 /* products are multiples of 2^-298 below 2^273: 571 bits */
#define MSA_REF_SUM_PREC 512 /* sums of <= 2^31 inputs: multiples of 2^-149 below 2^159 */
int msa_ref_dot_mpfr(const double *a, const double *b, int n, mpfr_t r, mpfr_t tmp);

/* Certified dd exp for -600 <= x <= 0 (x with relative error handled by the caller):
 * returns exp(x) with relative error < MSA_REF_EXP_ERR. */
msa_dd msa_ref_dd_exp(msa_dd x);
#define MSA_REF_EXP_ERR 0x1p-90
/* The scale constants as dd and as exact-or-interval MPFR (lazy, thread-safe). */
void msa_ref_consts_init(void);

/* Softmax / index scale: dd value and relative error of that dd (0 when exact). */
msa_dd msa_ref_scale_dd(int is_default, double given, int dim, double *relerr);
/* Interval [lo, hi] of the scale at the precision of lo/hi. */
void msa_ref_scale_interval(int is_default, double given, int dim, mpfr_t lo, mpfr_t hi);

/* Test and benchmark hook: when nonzero, exact mode skips the certified dd path and
 * computes every row through MPFR (results must be identical, bit for bit). */
extern int msa_ref_debug_force_mpfr;
/* Rows finished by the certified dd path / by the MPFR path (exact mode, since start). */
long msa_ref_debug_rows(int mpfr_path);

/* Engines. */
int msa_ref_select_impl(const msa_ref_data *dd, int exact, int32_t *topk, double *scores,
                        msa_err *e);
int msa_ref_attend_impl(const msa_ref_data *dd, int exact, const int32_t *topk, double *out,
                        double *lse, msa_err *e);

#endif
