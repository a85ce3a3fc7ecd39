/* harness.h - runs a backend on a case: opens built-in or plugin backends, builds the
 * msa_problem in the backend's memory, surrounds every output buffer with guard bands,
 * optionally poisons the K/V blocks a run must not read, and brings results back as
 * host arrays.  It sees only common/ and the ABI: it never judges anything. */
#ifndef MSA_HARNESS_H
#define MSA_HARNESS_H

#include "../common/case.h"
#include "msa_abi.h"

typedef struct {
    const msa_backend *be;
    void *ctx;
    void *dl; /* dlopen handle, NULL for linked-in backends */
    char name[256];
} msa_kernel;

/* name: "cpu-sim", "cpu-sim:VARIANT", "cuda" (build/libmsa_cuda.so next to the executable,
 * or $MSA_CUDA_LIB), "cuda:VARIANT", a registered name, a path to a plugin .so, or
 * "LIB.so:VARIANT" (through the plugin's msa_backend_variant_v1).  Checks the ABI version and required entries. */
int msa_kernel_open(const char *name, msa_kernel *k, msa_err *e);
void msa_kernel_close(msa_kernel *k);
/* Registers an in-process backend under a name (used by cpu-sim and the mutants). */
int msa_kernel_register(const char *name, const msa_backend *be);

typedef enum {
    MSA_RUN_FORWARD = 0, /* select + attend in one call */
    MSA_RUN_SELECT,      /* selection only (and block scores when provided) */
    MSA_RUN_ATTEND,      /* attention over a given selection */
    MSA_RUN_DENSE,       /* dense causal GQA */
    MSA_RUN_REPLAY       /* forward under graph replay (forward_replay) */
} msa_run_kind;

typedef struct {
    int32_t *topk;       /* [HI][Tq][topk] or NULL */
    float *block_scores; /* [HI][Tq][nblk] or NULL */
    double *out;         /* [Tq][Hq][D] decoded from out_dtype, or NULL */
    void *out_raw;       /* raw out_dtype bits (for bitwise comparisons) */
    float *lse;          /* [Tq][Hq] or NULL */
    int guard_ok;        /* 1 when no guard band was touched */
    char guard_msg[256];
    double seconds;      /* wall time of the backend call */
} msa_kernel_result;

typedef struct {
    int poison;      /* fill K/V rows that no query of a group may read with NaN */
    int replays;     /* MSA_RUN_REPLAY */
} msa_run_opts;

/* Runs one entry.  given_topk ([HI][Tq][topk], host) is the selection for MSA_RUN_ATTEND
 * (and the poison pattern when opts->poison).  Returns 0, MSA_EUNSUPPORTED, or
 * MSA_EBACKEND with the backend's message. */
int msa_kernel_run(msa_kernel *k, const msa_case *c, msa_run_kind kind, const int32_t *given_topk,
                   const msa_run_opts *opts, msa_kernel_result *r, msa_err *e);
void msa_kernel_result_free(msa_kernel_result *r);

/* The cpu-sim backend table (kernels/cpusim.c). */
const msa_backend *msa_cpusim_backend(void);

#endif
