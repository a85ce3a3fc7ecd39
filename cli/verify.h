/* verify.h - the pieces of `msa verify`: one check = one disposition with a one-line
 * summary, details and a repro command; checks may append markdown sections to the
 * report.  verify.c runs them by tier and writes REPORT.md and JUnit XML. */
#ifndef MSA_VERIFY_H
#define MSA_VERIFY_H

#include "../common/fsutil.h"
#include "../oracle/oracle.h"

typedef enum { MSA_TIER_QUICK = 0, MSA_TIER_FULL, MSA_TIER_SOAK } msa_tier;

typedef struct {
    char name[64];
    msa_disposition disp;
    double seconds;
    char summary[512];
    char detail[1536];
    char repro[768];
} msa_vcheck;

#define MSA_VERIFY_MAX_KERNELS 8
#define MSA_VERIFY_BENCH_MAX (1 << 22) /* longest context a --bench-* list may name */

typedef struct {
    msa_tier tier;
    const char *kernels[MSA_VERIFY_MAX_KERNELS];
    int nkernels;
    const char *baseline;
    const char *bench_prefill, *bench_decode; /* token counts for the bench check, or NULL: the tier's */
    const char *trace_dirs[MSA_VERIFY_MAX_KERNELS]; /* folders of traces, or trace files */
    int ntrace_dirs;
    char plot_dir[1024];  /* recall plots: a folder beside the report ... */
    char plot_link[1024]; /* ... and how the report links it */
    const char *corpus_dir;
    uint64_t seed;
    double budget_scale; /* multiplies per-check budgets (soak: large) */
    int tty;
    msa_sbuf sections;   /* markdown appended after the summary table */
    char gpu[256];       /* GPU name when a device backend opened, else "" */
    int current, total;
    double t0;
} msa_vctx;

double msa_vnow(void);
/* Progress: one line per check when not a terminal; a live line on a terminal. */
void msa_vprogress(msa_vctx *x, const char *what, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

void msa_verify_formats(msa_vctx *x, msa_vcheck *c);
void msa_verify_reference(msa_vctx *x, msa_vcheck *c);
void msa_verify_oracle(msa_vctx *x, msa_vcheck *c);
void msa_verify_mutants(msa_vctx *x, msa_vcheck *c);
void msa_verify_corpus(msa_vctx *x, msa_vcheck *c, const char *kernel);
void msa_verify_fuzz(msa_vctx *x, msa_vcheck *c, const char *kernel);
void msa_verify_kernel_extras(msa_vctx *x, msa_vcheck *c, const char *kernel);
void msa_verify_traces(msa_vctx *x, msa_vcheck *c);
void msa_verify_baseline(msa_vctx *x, msa_vcheck *c, const char *kernel);
void msa_verify_bench(msa_vctx *x, msa_vcheck *c);

#endif
