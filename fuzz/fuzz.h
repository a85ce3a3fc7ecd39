/* fuzz.h - the differential fuzzer: `msa fuzz` and the library calls behind it.
 *
 * A campaign draws cases from a deterministic stream (a case is a pure function of the
 * seed, its 64-bit id and the generator limits), runs every one in an isolated worker
 * process (FORWARD, ATTEND over the reference selection with poison, DENSE when the
 * backend has it), judges the results with the oracle under the backend's declared
 * arithmetic, shrinks each new failure to a small case that fails the same way, keeps
 * it in a corpus that is replayed first next time, counts boundary classes and steers
 * generation toward those not yet seen.  The mutant check runs short campaigns against
 * deliberately broken and legal variants to show the campaign can fail.
 *
 * It never computes attention itself: the reference does, the oracle judges, the
 * harness runs the backend.  It holds no global state beyond what the process's
 * registered backends hold, so two campaigns may run side by side. */
#ifndef MSA_FUZZ_H
#define MSA_FUZZ_H

#include <stdint.h>
#include <stdio.h>

#include "../common/case.h"
#include "../kernels/harness.h"

/* ---- boundary classes (coverage) ---- */
typedef enum {
    MSA_COV_PREFILL = 0, MSA_COV_CHUNKED, MSA_COV_DECODE, MSA_COV_NONCAUSAL,
    MSA_COV_RAGGED_BATCH, MSA_COV_ZERO_LEN, MSA_COV_ONE_TOKEN, MSA_COV_EMPTY_ROW,
    MSA_COV_PARTIAL_LAST, MSA_COV_DIAG_PARTIAL, MSA_COV_DIAG_BLOCK_END,
    MSA_COV_NVIS_LT_K, MSA_COV_NVIS_EQ_K, MSA_COV_NVIS_GT_K,
    MSA_COV_INIT_FORCED, MSA_COV_LOCAL_FORCED, MSA_COV_FORCED_WEIGHS, MSA_COV_NO_FREE_SLOT,
    MSA_COV_PAGED_SHUFFLED, MSA_COV_PAGE_GAPS, MSA_COV_GQA_SHARING, MSA_COV_GROUPS_DIFFER,
    MSA_COV_TIE_EXACT_K, MSA_COV_TIE_TOTAL, MSA_COV_NEAR_TIE_K, MSA_COV_SENTINEL,
    MSA_COV_NONFINITE_UNUSED, MSA_COV_SUBNORMAL, MSA_COV_LARGE_LOGITS,
    MSA_COV_DT_BF16, MSA_COV_DT_FP16, MSA_COV_DT_FP32, MSA_COV_DT_E4M3, MSA_COV_IDX_E4M3,
    MSA_COV_D64, MSA_COV_D128, MSA_COV_D256,
    MSA_COV_RATIO1, MSA_COV_RATIO2, MSA_COV_RATIO3, MSA_COV_RATIO4, MSA_COV_RATIO8,
    MSA_COV_RATIO16,
    MSA_COV_B16, MSA_COV_B32, MSA_COV_B64, MSA_COV_B128,
    MSA_COV_PROBE_DIAG, MSA_COV_PROBE_PAST_DIAG, MSA_COV_PROBE_BLOCK_FIRST,
    MSA_COV_PROBE_BLOCK_LAST, MSA_COV_PROBE_KTH, MSA_COV_PROBE_GROUP_ONLY,
    MSA_COV_N
} msa_cov_class;
const char *msa_cov_name(int cls);

/* ---- generation ---- */
typedef struct {
    int max_context; /* cap on any Lk (and Lq); 0: MSA_FUZZ_DEFAULT_MAX_CONTEXT */
    int max_batch;   /* 0: 8 */
} msa_fuzz_gen_cfg;
#define MSA_FUZZ_DEFAULT_MAX_CONTEXT 512

/* Case ids: the main stream uses 0..2^40; a steered case (aimed at one class) is
 * MSA_FUZZ_STEER_BIT | cls << 32 | n. */
#define MSA_FUZZ_STEER_BIT (1ull << 62)
/* Draws case `id` of the stream of `seed`.  The label records seed, id and the data and
 * probe patterns used ("fuzz s=1 id=7 data=heavy probe=diag ..."). */
int msa_fuzz_generate(const msa_fuzz_gen_cfg *g, uint64_t seed, uint64_t id, msa_case *c,
                      msa_err *e);
/* Boundary classes a case hits (bit i = class i).  ref_topk / ref_bs come from
 * msa_ref_select (exact) on the same case; either may be NULL (then the classes that
 * need the selection are not counted). */
uint64_t msa_fuzz_coverage(const msa_case *c, const int32_t *ref_topk, const double *ref_bs);

/* ---- one case, judged ---- */
typedef struct {
    uint64_t id;        /* stream id, or UINT64_MAX for a case file */
    int disp;           /* msa_disposition */
    char stage[48];     /* "forward/selection", "attend-poison/output", "forward/guard", ... */
    char detail[640];
    char desc[200];     /* msa_case_describe of the case */
    double worst_ratio; /* worst |err| / bound over the judged elements */
    double seconds;     /* whole evaluation, reference included */
    uint64_t cov;       /* msa_fuzz_coverage bits */
    int rows_judged, rows_total; /* rows_judged < rows_total: query rows were sampled */
} msa_fuzz_result;

/* Runs every entry of an open backend on a case and judges it (in this process: the
 * campaign calls it inside a worker).  Returns 0 with r filled, or an error when the
 * suite itself failed (reference or oracle error). */
int msa_fuzz_eval(msa_kernel *k, const msa_case *c, msa_fuzz_result *r, msa_err *e);

/* ---- campaigns ---- */
typedef struct {
    const char *kernel;   /* "cpu-sim", "cpu-sim:VARIANT", "cuda", a plugin path, LIB:VARIANT */
    uint64_t seed;
    double budget_s;      /* stop after this wall time (0: none) */
    long max_cases;       /* stop after this many stream cases (0: none; both 0: 200) */
    int shard_i, shard_n; /* this shard runs ids i with i % shard_n == shard_i */
    msa_fuzz_gen_cfg gen;
    const char *corpus_dir;   /* replayed first; new shrunk failures go there (NULL: none) */
    const char *junit_path;   /* NULL: none */
    const char *summary_path; /* JSON summary (NULL: none) */
    const char *sanitize;     /* NULL, "memcheck" or "racecheck": workers run under compute-sanitizer */
    const char *self_exe;     /* executable for sanitizer workers and repro lines (NULL: "msa") */
    int workers;              /* parallel workers (each gets CUDA_VISIBLE_DEVICES=i for cuda); 0: 1 */
    int gpu_workers;          /* 1: set CUDA_VISIBLE_DEVICES per worker */
    double case_timeout_s;    /* 0: MSA_FUZZ_DEFAULT_TIMEOUT */
    int shrink;               /* shrink new failures */
    int steer;                /* steer toward unhit classes (default on via msa_fuzz_opts_init) */
    int stop_after;           /* stop after this many failing cases (0: never) */
    int quiet;                /* 0: progress lines and the table on log */
    FILE *log;                /* NULL: stderr */
    const char *const *case_files; /* explicit case files run (after the corpus, before the stream) */
    int n_case_files;
    const uint64_t *ids;      /* explicit ids to run instead of the stream (n_ids > 0) */
    int n_ids;
    int no_stream;            /* 1: only the corpus and case files */
    /* called in the campaign process for every judged case (NULL: none) */
    void (*on_result)(void *user, const msa_fuzz_result *r);
    void *user;
} msa_fuzz_opts;
#define MSA_FUZZ_DEFAULT_TIMEOUT 30.0
void msa_fuzz_opts_init(msa_fuzz_opts *o);

typedef struct {
    long cases;                 /* judged cases (corpus + stream + steered) */
    long by_disp[8];            /* per msa_disposition */
    long corpus_cases, steered_cases, sampled_cases;
    long cov[MSA_COV_N];        /* cases that hit each class */
    double worst_ratio;         /* worst error / bound among passing and failing cases */
    long failures;              /* Incorrect + Crashed + Timeout */
    long first_fail_ordinal;    /* 1-based position of the first failing case (0: none) */
    double first_fail_seconds;  /* campaign time when it was seen */
    char first_fail_what[256];  /* disposition, stage, description */
    char first_fail_repro[1024];/* one command that reproduces it */
    char first_fail_case[512];  /* the shrunk case file, "" when not shrunk */
    char first_fail_shrunk_desc[200];
    double seconds, cases_per_s;
} msa_fuzz_summary;

int msa_fuzz_campaign(const msa_fuzz_opts *o, msa_fuzz_summary *s, msa_err *e);
/* Prints the coverage table and totals. */
void msa_fuzz_print_summary(FILE *f, const msa_fuzz_summary *s);
int msa_fuzz_summary_json(const msa_fuzz_summary *s, const char *path, msa_err *e);

/* ---- shrinking ---- */
/* A predicate: returns 1 when the candidate still fails "the same way". */
typedef int (*msa_fuzz_still_fails)(void *user, const msa_case *cand);
/* Reduces c (batch, groups, heads, lengths, D, k, paging, then values) while the
 * predicate holds; *out is the smallest case found (a copy). */
int msa_fuzz_shrink(const msa_case *c, msa_fuzz_still_fails pred, void *user, int max_steps,
                    msa_case *out, msa_err *e);

/* ---- mutants ---- */
typedef struct {
    char name[64];
    int legal;
    int killed;                /* 1: the campaign found a failure */
    long cases_to_detection;   /* 1-based; 0 when not killed */
    double seconds_to_detection;
    char stage[48];            /* how it was caught */
} msa_mutant_row;

typedef struct {
    const char *plugin_dir;  /* NULL: kernels "cpu-sim:NAME"; else PLUGIN_DIR/NAME.so */
    const char *lib;         /* a plugin exporting msa_backend_variant_v1: kernels LIB:NAME */
    const char *const *names;/* variants to check (NULL: cpu-sim's whole table); a name
                              * prefixed "legal:" is a legal variant */
    int n_names;
    uint64_t seed;
    long cases;              /* per variant (0: 300) */
    double budget_s;         /* per variant (0: none) */
    msa_fuzz_gen_cfg gen;
    double case_timeout_s;
    FILE *log;               /* NULL: quiet */
} msa_mutant_opts;

/* Runs one short campaign per variant; *rows (malloc'ed) gets one row each.  Returns 0
 * when the check ran (read the rows for the verdict). */
int msa_fuzz_mutant_check(const msa_mutant_opts *o, msa_mutant_row **rows, int *n, msa_err *e);
/* 1 when every BUG row is killed and no LEGAL row is; prints the table to f if not NULL. */
int msa_fuzz_mutant_table(FILE *f, const msa_mutant_row *rows, int n);

/* ---- the `msa fuzz` subcommand ---- */
/* msa fuzz --kernel K [--seed S] [--budget SECONDS | --cases N] [--shard I/N]
 *          [--corpus DIR] [--junit FILE] [--summary FILE] [--max-context N]
 *          [--sanitize memcheck|racecheck] [--devices all|N] [--timeout S]
 *          [--case ID] [--replay FILE] [--no-shrink]
 * msa fuzz mutants [--plugins DIR | --lib LIB --variants a,legal:b] [--cases N]
 * msa fuzz merge --out DIR DIR...
 * Exit: 0 all passed, 1 a failure was found, 2 bad usage or input. */
int msa_fuzz_main(int argc, char **argv);

#endif
