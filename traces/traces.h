/* traces.h - trace files (MSA cases recorded from real model runs, one per layer and
 * step, plus what the model computed), the `msa replay`, `msa recall` and `msa record`
 * commands, and the pieces they are built from (SHA-256, GGUF reader, byte-level BPE
 * tokenizer, a small Llama forward pass).
 *
 * A trace is an NPZ archive (numpy.load reads it): a `meta` JSON entry, per record
 * "NAME." + the case entries of common/case.h (NAME.q, NAME.k, ...), the recorded
 * NAME.topk_indices / NAME.block_scores / NAME.out / NAME.lse, and a `checksum` entry
 * (SHA-256 over every other entry, docs/TRACES.md gives the exact byte order), so a
 * corrupted trace is caught even when someone recomputed the zip CRCs.
 * This header does no attention arithmetic of its own beyond recall's dense softmax
 * mass; selection and exact attention come from the reference. */
#ifndef MSA_TRACES_H
#define MSA_TRACES_H

#include <stdint.h>

#include "../common/case.h"
#include "../common/fsutil.h"
#include "../common/npz.h"

#define MSA_TRACE_FORMAT "msa-trace"
#define MSA_TRACE_VERSION 1
#define MSA_TRACE_NAME_MAX 32

/* ---- SHA-256 (FIPS 180-4) ---- */
typedef struct {
    uint32_t h[8];
    uint64_t nbytes;
    uint8_t buf[64];
    size_t nbuf;
} msa_sha256_ctx;
void msa_sha256_init(msa_sha256_ctx *s);
void msa_sha256_update(msa_sha256_ctx *s, const void *data, size_t len);
void msa_sha256_final(msa_sha256_ctx *s, uint8_t out[32]);
void msa_sha256_hex(const uint8_t d[32], char hex[65]);
/* SHA-256 of a file, as 64 lowercase hex digits. */
int msa_sha256_file(const char *path, char hex[65], msa_err *e);

/* ---- one record: a case plus what the recorded run produced ---- */
typedef struct {
    char name[MSA_TRACE_NAME_MAX]; /* entry prefix, e.g. "L07" or "L07.s3" */
    int layer, step;
    int loaded;
    msa_case c;
    int32_t *topk;       /* recorded selection [HI][Tq][topk] (ids in recorded order), or NULL */
    float *block_scores; /* [HI][Tq][nblk] or NULL */
    int nblk;
    double *out;         /* recorded output [Tq][Hq][D] decoded, or NULL */
    float *lse;          /* [Tq][Hq] natural log, or NULL */
} msa_trace_record;

typedef struct {
    msa_npz z;              /* the archive, kept: records are materialised on demand */
    char label[256];
    char *meta_text;        /* the meta JSON as stored */
    char model[128];
    char weights_sha256[65];
    char index_kind[16];    /* "oracle" or "trained" */
    char order[16];         /* order of recorded topk ids: "ascending", "score-desc", "any" */
    int nrec;
    msa_trace_record *rec;
} msa_trace;

/* Verifies the checksum, parses meta, and loads, validates and releases every record's
 * case and recorded arrays (shapes checked against the case), so that any defect ->
 * MSA_EINPUT before work starts.  Records are then materialised one at a time (a trace of
 * a 30-layer model does not fit in memory expanded): rec[i].c and its arrays are valid
 * between msa_trace_load_record and msa_trace_unload_record.
 * msa_trace_from_npz takes ownership of *z (and clears it). */
int msa_trace_read(const char *path, msa_trace *t, msa_err *e);
int msa_trace_from_npz(msa_npz *z, const char *label, msa_trace *t, msa_err *e);
int msa_trace_load_record(msa_trace *t, int i, msa_err *e);
void msa_trace_unload_record(msa_trace *t, int i);
void msa_trace_free(msa_trace *t);

/* Checksum over every entry except "checksum", in byte order of the entry names. */
int msa_trace_checksum(const msa_npz *z, uint8_t out[32], msa_err *e);

/* Writing: records are appended one at a time (the case is copied), then meta (a JSON
 * object text WITHOUT the "records" key, which the writer adds) and the checksum. */
typedef struct {
    msa_npz z;
    char *records_json; /* growing JSON array text */
    size_t rj_len, rj_cap;
    int nrec;
} msa_trace_writer;
void msa_trace_writer_init(msa_trace_writer *w);
int msa_trace_add(msa_trace_writer *w, const char *name, int layer, int step, const msa_case *c,
                  const int32_t *topk, const float *block_scores, const float *out,
                  const float *lse, msa_err *e);
/* The same, with k, v and index_k stored once as pools: the case's row r of k, v and
 * index_k is row kv_rows[r] (r < c->Tk) of k_pool, v_pool, index_k_pool (pool_rows rows,
 * storage format of the case's dtypes).  Saves the prefix copies of windowed records. */
int msa_trace_add_pooled(msa_trace_writer *w, const char *name, int layer, int step, const msa_case *c,
                         const int32_t *kv_rows, int pool_rows, const void *k_pool, const void *v_pool,
                         const void *index_k_pool, const int32_t *topk, const float *block_scores,
                         const float *out, const float *lse, msa_err *e);
/* Serialises to an NPZ in memory (meta + checksum added) / writes it atomically. */
int msa_trace_finish_npz(msa_trace_writer *w, const char *meta_json_obj, msa_err *e);
int msa_trace_write(msa_trace_writer *w, const char *path, const char *meta_json_obj, int compress,
                    msa_err *e);
void msa_trace_writer_free(msa_trace_writer *w);

/* ---- recall (MSA.md section 8) ---- */
/* Where dense mass and index block scores are computed: the CPU (recall.c, double), or the
 * cuBLAS fp64 GPU path of the CUDA plugin (msa_cuda_block_mass in kernels/cuda/gpuref.cu,
 * reached by dlopen: the CPU binary never links CUDA).  AUTO takes the GPU when the plugin
 * loads, finds a device, and some sequence has at least MSA_RECALL_GPU_MIN_KEYS keys. */
typedef enum { MSA_RECALL_AUTO = 0, MSA_RECALL_CPU = 1, MSA_RECALL_GPU = 2 } msa_recall_device;
#define MSA_RECALL_GPU_MIN_KEYS 16384

typedef struct {
    int ntopk, nblock;
    int topk[8], block[8];
    int buckets;      /* query-position buckets (default 4) */
    int threads;      /* 0: online CPUs */
    msa_recall_device device;
} msa_recall_opts;

/* One distribution of per-(query, group) values. */
typedef struct {
    long n;
    double mean, min, p5, p50, p95;
} msa_dist_stats;

/* Per (record, block size, k): block recall@k, mass recall, and the forced blocks apart. */
typedef struct {
    int rec, layer, B, k;
    msa_dist_stats block_recall, mass_recall, free_recall, forced_mass;
    msa_dist_stats *per_group;   /* [Hkv] mass recall */
    msa_dist_stats *per_bucket;  /* [buckets] mass recall */
    msa_dist_stats *per_bucket_block; /* [buckets] block recall */
    long trivial;                /* rows with nvis <= k (everything selected, recall 1) */
    /* the raw samples, kept so that callers can pool cells (e.g. over layers) */
    long n;
    double *v_block, *v_mass, *v_free, *v_forced;
    int *v_group, *v_bucket;
} msa_recall_cell;

typedef struct {
    int ncell, Hkv, buckets;
    int64_t maxpos;  /* positions bucketed over [0, maxpos] */
    int init_blocks, local_blocks; /* forced blocks of the first record (as recorded) */
    msa_recall_cell *cell;
    double seconds;
    int gpu;                       /* 1: mass and scores came from the GPU path */
    char device[192];              /* "cpu (N threads)" or "gpu (device name)" */
} msa_recall_result;

int msa_recall_run(msa_trace *t, const msa_recall_opts *o, msa_recall_result *r, msa_err *e);
void msa_recall_result_free(msa_recall_result *r);
/* Lower-level pieces, exposed for the tests.
 *  dense block mass: mass[g][t][b] = mean over g's query heads of the dense causal softmax
 *  probability of block b (block size B) for query row t; nblk blocks per row. */
int msa_recall_block_mass(const msa_case *c, int B, int nblk, double *mass, int threads, msa_err *e);
/* Selection from block scores with MSA's rule (ties -> lower id), ascending ids, -1 tail:
 * the rule of MSA.md 4.3, applied to scores the reference computed. */
void msa_recall_select_row(const double *scores, int nvis, int k, int init, int local,
                           int32_t *sel);
/* The GPU path's inputs for the same quantities (block mass as above and block scores as
 * msa_ref_select returns them, fast mode), all block sizes at once, on the CUDA plugin;
 * MSA_EUNSUPPORTED (with the reason) when no plugin or no GPU.  For the tests. */
int msa_recall_gpu_inputs(const msa_case *c, int nB, const int *B, const int *nblk, double **mass,
                          double **scores, msa_err *e);
/* Statistics of n values (sorted in place). */
void msa_dist_compute(double *v, long n, msa_dist_stats *s);

/* ---- a synthetic long layer (traces/synth.c, `msa gen --trace`, docs/TRACES.md 5) ---- */
#define MSA_SYNTH_MAX_TOKENS (1 << 24)
typedef struct {
    int64_t tokens;            /* keys of the one sequence (--lk) */
    int windows, window_len;   /* query rows: window_len rows ending at floor((w+1)T/W)-1 */
    int Hq, Hkv, D;            /* DI = Hkv * D (oracle index) */
    int block_size, topk, init_blocks, local_blocks;
    double q_scale;            /* q = q_scale * N(0,1): sharper softmax for larger values */
    uint64_t seed;
    int record_topk;           /* 1: record the reference's selection (fast mode) */
} msa_synth_opts;
/* Writes the trace atomically; bad options -> MSA_EINPUT naming the option. */
int msa_trace_synthetic(const msa_synth_opts *o, const char *path, int compress, msa_err *e);

/* ---- GGUF (the subset llama.cpp model files use) ---- */
typedef enum {
    MSA_GGUF_F32 = 0, MSA_GGUF_F16 = 1, MSA_GGUF_Q4_0 = 2, MSA_GGUF_Q4_1 = 3,
    MSA_GGUF_Q8_0 = 8, MSA_GGUF_BF16 = 30
} msa_gguf_type;

typedef struct {
    char *key;
    uint32_t type;  /* GGUF value type */
    uint32_t arr_type;
    uint64_t n;     /* array length (1 for scalars) */
    double num;     /* numeric scalar */
    char *str;      /* string scalar */
    char **strs;    /* string array */
    const uint8_t *arr; /* numeric array payload inside the file image */
} msa_gguf_kv;

typedef struct {
    char *name;
    uint32_t ndim;
    uint64_t dims[4]; /* dims[0] is the contiguous (row length) dimension */
    uint32_t type;
    uint64_t offset;  /* relative to the data section */
    uint64_t nelem, nbytes;
    const uint8_t *data;
} msa_gguf_tensor;

typedef struct {
    uint8_t *img;
    size_t len;
    uint32_t version;
    uint64_t nkv, ntensor;
    msa_gguf_kv *kv;
    msa_gguf_tensor *t;
    uint64_t alignment;
} msa_gguf;

int msa_gguf_parse(uint8_t *img, size_t len, const char *label, msa_gguf *g, msa_err *e); /* takes img */
int msa_gguf_load(const char *path, msa_gguf *g, msa_err *e);
void msa_gguf_free(msa_gguf *g);
const msa_gguf_kv *msa_gguf_find_kv(const msa_gguf *g, const char *key);
const msa_gguf_tensor *msa_gguf_find_tensor(const msa_gguf *g, const char *name);
/* Dequantises row r (dims[0] elements) of a 2-D tensor to float. */
int msa_gguf_row(const msa_gguf_tensor *t, uint64_t r, float *out);

/* ---- byte-level BPE tokenizer (GPT-2 style, digits split one by one) ---- */
typedef struct {
    int nvocab;
    char **tok;           /* token text in GPT-2's byte-to-unicode alphabet */
    int *special;         /* token type 3 (control) */
    void *map;            /* hash: token text -> id */
    void *ranks;          /* hash: "left right" -> merge rank */
    int nmerge;
} msa_bpe;

int msa_bpe_init(msa_bpe *b, char **tokens, const int *types, int ntok, char **merges, int nmerge,
                 msa_err *e);
void msa_bpe_free(msa_bpe *b);
/* Encodes text (special tokens are not parsed); returns count or -1 (ids too small). */
int msa_bpe_encode(const msa_bpe *b, const char *text, size_t len, int32_t *ids, int max_ids);
/* Appends the bytes of token id to buf (returns bytes written, truncating at n). */
int msa_bpe_decode(const msa_bpe *b, int32_t id, char *buf, size_t n);
int msa_bpe_find(const msa_bpe *b, const char *token_text);

/* ---- CLI entries (argv[0] is the subcommand name); exit codes 0 / 1 / 2 ---- */
int msa_replay_main(int argc, char **argv);
/* The markdown of `msa recall` (tables) and its plots (msa_recall_plots: data, gnuplot
 * scripts and, with gnuplot installed, PNGs in DIR, linked as LINK/...), for REPORT.md. */
void msa_recall_report(msa_sbuf *b, const char *path, const msa_trace *t, const msa_recall_result *r,
                       const msa_recall_opts *o);
int msa_recall_plots(const char *dir, const char *link, const msa_trace *t, const msa_recall_result *r,
                     const msa_recall_opts *o, msa_sbuf *md, msa_err *e);
int msa_recall_main(int argc, char **argv);
int msa_record_main(int argc, char **argv);

#endif
