/* fuzz_int.h - private pieces shared by the fuzzer's source files: the case specification the
 * generator draws before building tensors, the worker protocol between a campaign and
 * its isolated worker processes, and small helpers.  Not installed, not an API. */
#ifndef MSA_FUZZ_INT_H
#define MSA_FUZZ_INT_H

#include "fuzz.h"

#define FZ_MAX_BATCH 8

/* data patterns of q, k, v */
enum { FZ_D_NORMAL = 0, FZ_D_UNIFORM, FZ_D_HEAVY, FZ_D_SMALLINT, FZ_D_EQUALKEYS, FZ_D_LARGE,
       FZ_D_SUBNORMAL, FZ_D_N };
/* index (block-pattern) patterns of index_q, index_k */
enum { FZ_I_RANDOM = 0, FZ_I_FEWLEVEL, FZ_I_EQUAL, FZ_I_LEVELS, FZ_I_JITTER, FZ_I_SENTINEL,
       FZ_I_GROUPS, FZ_I_N };
/* probes: inputs that make one masking decision carry weight */
enum { FZ_P_NONE = 0, FZ_P_DIAG, FZ_P_PAST_DIAG, FZ_P_BLOCK_FIRST, FZ_P_BLOCK_LAST, FZ_P_KTH,
       FZ_P_GROUP_ONLY, FZ_P_N };

extern const char *const fz_data_names[FZ_D_N];
extern const char *const fz_index_names[FZ_I_N];
extern const char *const fz_probe_names[FZ_P_N];

typedef struct {
    int batch, lq[FZ_MAX_BATCH], lk[FZ_MAX_BATCH];
    int Hq, Hkv, D, DI, B, topk, init, local, causal;
    msa_dtype dt, idt;
    int paged;        /* 0 packed, 1 shuffled pages, 2 shuffled with unused pages */
    int data, index, probe;
    int nonfinite;    /* NaN/inf in storage rows no sequence owns (paged only) */
    int index_scale_one;
} fz_spec;

/* The unsteered draw, the fix-ups every spec gets (probe needs, limits), and the
 * full draw of case id (steered ids aim at their class). */
void fz_draw_spec_base(const msa_fuzz_gen_cfg *g, uint64_t seed, uint64_t id, fz_spec *s);
void fz_spec_fixup(fz_spec *s, int cap);
void fz_draw_spec(const msa_fuzz_gen_cfg *g, uint64_t seed, uint64_t id, fz_spec *s);
int fz_build_case(const fz_spec *s, uint64_t seed, uint64_t id, msa_case *c, msa_err *e);

/* Storage row of token j of sequence b (paged or packed). */
int64_t fz_kv_row(const msa_case *c, int b, int j);
/* keys visible to packed query row t, and its sequence */
int fz_row_nkeys(const msa_case *c, int t, int *seq);

/* ---- sub-cases (row sampling and shrinking) ---- */
/* One kept query row of the source: its source row and the keys it keeps. */
typedef struct {
    int src_b;           /* source sequence */
    int q0, nq;          /* source query rows [q0, q0+nq) of that sequence */
    int k0, lk;          /* keys kept: [k0, k0 + lk) of the source sequence, k0 a multiple
                          * of the block size (the last kept query stays bottom-right) */
} fz_seqsel;
typedef struct {
    int nseq;
    fz_seqsel seq[FZ_MAX_BATCH * 4];
    int ngroups, group[64];  /* kept KV groups (and their index heads) */
    int ratio;               /* kept query heads per group (first `ratio` of each group) */
    int D, DI, topk, init, local;
    int unpage;              /* 1: write a packed case even if the source is paged */
} fz_view;
void fz_view_identity(const msa_case *c, fz_view *v);
/* Builds the sub-case; query rows of the result map to source rows in order
 * (row_map[t'] = t when row_map != NULL, sized for the result's Tq). */
int fz_subcase(const msa_case *src, const fz_view *v, msa_case *dst, int *row_map, msa_err *e);

/* ---- worker protocol ---- */
enum { FZ_JOB_ID = 1, FZ_JOB_FILE = 2, FZ_JOB_QUIT = 3 };
typedef struct {
    int kind;
    uint64_t id;
    char path[1024];
} fz_job;

typedef struct {
    const char *kernel;
    uint64_t seed;
    msa_fuzz_gen_cfg gen;
} fz_worker_cfg;

/* The worker loop: reads jobs from in_fd, writes one msa_fuzz_result per job to out_fd. */
int fz_worker_loop(const fz_worker_cfg *w, int in_fd, int out_fd);

/* A pool of isolated workers (fork, or exec under compute-sanitizer). */
typedef struct fz_pool fz_pool;
typedef struct {
    fz_worker_cfg w;
    int nworkers, gpu_workers;
    double timeout_s;
    const char *sanitize, *self_exe;
} fz_pool_cfg;
int fz_pool_open(const fz_pool_cfg *cfg, fz_pool **p, msa_err *e);
/* Runs one job on a free worker and waits for it (crash -> Crashed, hang -> Timeout). */
int fz_pool_run1(fz_pool *p, const fz_job *j, msa_fuzz_result *r);
/* Asynchronous use: submit on a free worker (returns the worker's slot or -1 when all
 * are busy), then collect one finished job. */
int fz_pool_submit(fz_pool *p, const fz_job *j, long tag);
int fz_pool_collect(fz_pool *p, msa_fuzz_result *r, long *tag);
int fz_pool_busy(const fz_pool *p);
void fz_pool_close(fz_pool *p);

/* `msa fuzz merge`: joins summaries and corpora of DIRS into OUT (merge.c); returns 0
 * (with the merged failure count) or an error code. */
int fz_merge(const char *out, char **dirs, int n, FILE *log, long *failures, msa_err *e);

/* helpers */
/* Loads a case file; NaN/inf are allowed (storage rows no sequence owns may hold them). */
int fz_load_case(const char *path, msa_case *c, msa_err *e);
double fz_now(void);
int fz_is_failure(int disp);
uint64_t fz_hash_case(const msa_case *c);

#endif
