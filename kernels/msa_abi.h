/* msa_abi.h - the versioned C interface any MSA implementation provides to the suite.
 *
 * A backend is a table of function pointers (msa_backend) plus the declaration of the
 * arithmetic it uses (msa_arith), which the oracle turns into error bounds and selection
 * bands.  Built-in backends are "cpu-sim" (linked in) and "cuda" (build/libmsa_cuda.so,
 * loaded like any plugin); a plugin is a shared library exporting
 *     const msa_backend *msa_backend_v1(void);
 * This header depends on nothing but <stdint.h>/<stddef.h> and msa_common.h's dtype
 * enum, so a user can build a plugin against it alone.  docs/ABI.md is the manual. */
#ifndef MSA_ABI_H
#define MSA_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "../common/msa_common.h"

#define MSA_ABI_VERSION 1u
#define MSA_BACKEND_SYMBOL "msa_backend_v1"

/* ---- the arithmetic a backend declares ---- */
typedef enum {
    MSA_EXP_EXACT = 0,  /* exp(x) with relative error <= exp_rel_err (libm expf: ~1 ulp) */
    MSA_EXP_EXP2 = 1,   /* exp2(x*log2e) with x*log2e rounded to fp32; exp2 error exp_rel_err */
    MSA_EXP_EX2_APPROX = 2 /* PTX ex2.approx.ftz.f32 on x*log2e rounded to fp32 */
} msa_exp_kind;

typedef enum {
    MSA_KEY_FP32 = 0,   /* block scores accumulated in fp32, compared as fp32 */
    MSA_KEY_FP16 = 1,   /* fp32 scores rounded to fp16 before ranking */
    MSA_KEY_Q16ROW = 2, /* 16-bit keys quantised linearly over each row's [min, max] */
    MSA_KEY_RADIX = 3   /* fp32 scores with the low key_drop_bits of the ordered key ignored */
} msa_key_kind;

typedef enum {
    MSA_ORDER_ASCENDING = 0,  /* ascending ids, -1 tail (FlashInfer, TensorRT-LLM) */
    MSA_ORDER_SCORE_DESC = 1, /* descending block score, -1 tail (vLLM Triton, HF) */
    MSA_ORDER_LOCAL_LAST = 2, /* any order, the query's own (local) block in the last valid slot */
    MSA_ORDER_ANY = 3
} msa_order;

typedef enum {
    MSA_MERGE_NONE = 0, /* one online-softmax pass over the row */
    MSA_MERGE_LSE = 1   /* partials normalised within their split, merged with exp(LSE_s - LSE) */
} msa_merge_kind;

typedef struct {
    msa_dtype out_dtype;   /* BF16, FP16 or FP32: the stored output; MSA_DT_INVALID (0) means
                            * "follows the input": bf16 for bf16 inputs, fp16 for fp16, fp32 otherwise */
    int accum_bits;        /* mantissa bits (incl. implicit) of score and P.V accumulation: 24 = fp32 */
    msa_dtype p_dtype;     /* FP32: P used as is; BF16 / FP16: P rounded to it before P.V;
                            * MSA_DT_INVALID (0): follows the input, fp16 for fp16 inputs (the
                            * P.V MMA needs P in V's type), bf16 otherwise */
    msa_exp_kind exp_kind;
    double exp_rel_err;    /* bound on the relative error of one exp evaluation itself */
    msa_merge_kind merge;
    int max_partials;      /* bound on the partials merged for one row: 0 = one per selected
                            * block; -m = m per selected block (e.g. blocks split in two: -2) */
    msa_key_kind key_kind;
    int key_drop_bits;     /* MSA_KEY_RADIX only */
    msa_order order;
    int index_accum_bits;  /* mantissa bits of index score accumulation: 24 = fp32 */
    int reserved[8];
} msa_arith;

/* ---- one problem, in the backend's memory ---- */
typedef struct {
    uint32_t abi_version;
    int batch;
    int total_q;   /* rows of q / index_q */
    int kv_rows;   /* rows of k, v, index_k (num_pages * block_size when paged) */
    int Hq, Hkv, D, HI, DI;
    int block_size, topk, init_blocks, local_blocks, causal;
    int nblk;      /* max blocks of any sequence: the row length of block-score arrays */
    int max_lq, max_lk;
    int max_blocks, num_pages; /* page table shape [batch][max_blocks]; 0 when not paged */
    float softmax_scale, index_scale;       /* nearest fp32 */
    double softmax_scale_f64, index_scale_f64;
    msa_dtype dtype, index_dtype;           /* BF16/FP16/FP32/E4M3 */
    const int32_t *cu_seqlens_q, *cu_seqlens_k, *page_table;            /* backend memory */
    const int32_t *cu_seqlens_q_host, *cu_seqlens_k_host, *page_table_host; /* host */
    const void *q, *k, *v, *index_q, *index_k;                          /* backend memory */
    void *stream; /* cudaStream_t for device backends (NULL: default stream) */
} msa_problem;

typedef enum { MSA_MEM_HOST = 0, MSA_MEM_DEVICE = 1 } msa_mem;

/* Every entry returns 0 on success, MSA_EUNSUPPORTED for a valid problem it does not
 * handle, or another msa_status; last_error then explains.  Outputs:
 *   topk          int32 [HI][total_q][topk]  (order as declared, -1 tail)
 *   block_scores  float [HI][total_q][nblk]  (-inf where no key is visible)
 *   out           out_dtype [total_q][Hq][D];  lse float [total_q][Hq] natural log
 * All output pointers are in backend memory; optional entries may be NULL. */
typedef struct msa_backend {
    uint32_t abi_version; /* MSA_ABI_VERSION */
    const char *name;
    const char *description;
    msa_mem mem;
    msa_arith arith;
    int (*init)(void **ctx);
    void (*fini)(void *ctx);
    const char *(*last_error)(void *ctx); /* ctx NULL: why the last init failed (or NULL) */
    int (*supports)(void *ctx, const msa_problem *p); /* 0 or MSA_EUNSUPPORTED */
    int (*index_scores)(void *ctx, const msa_problem *p, float *block_scores); /* optional */
    int (*select)(void *ctx, const msa_problem *p, int32_t *topk);
    int (*attend)(void *ctx, const msa_problem *p, const int32_t *topk, void *out, float *lse);
    int (*forward)(void *ctx, const msa_problem *p, int32_t *topk, void *out, float *lse);
    int (*dense)(void *ctx, const msa_problem *p, void *out, float *lse); /* optional */
    /* optional: forward captured once into a graph and replayed `replays` times; outputs
     * are the last replay's (checked bitwise against forward). */
    int (*forward_replay)(void *ctx, const msa_problem *p, int replays, int32_t *topk, void *out,
                          float *lse);
    /* required when mem == MSA_MEM_DEVICE */
    void *(*dev_alloc)(void *ctx, size_t bytes);
    void (*dev_free)(void *ctx, void *ptr);
    int (*copy_to_dev)(void *ctx, void *dst, const void *src, size_t bytes);
    int (*copy_to_host)(void *ctx, void *dst, const void *src, size_t bytes);
    int (*sync)(void *ctx);
    /* optional: one line about the device (e.g. "NVIDIA H100 80GB HBM3, 132 SMs") */
    const char *(*device_name)(void *ctx);
} msa_backend;

typedef const msa_backend *(*msa_backend_entry_fn)(void);

/* Optional second export of a plugin: a named variant of the backend (e.g. a mutant of
 * the CUDA kernels used to show the tests can fail), selected by `--kernel LIB:VARIANT`.
 * Returns NULL for an unknown name. */
#define MSA_BACKEND_VARIANT_SYMBOL "msa_backend_variant_v1"
typedef const msa_backend *(*msa_backend_variant_fn)(const char *variant);

#endif
