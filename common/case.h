/* case.h - one MSA problem instance ("case"): configuration, packed varlen shapes,
 * optional page table, and the input tensors in their storage format (raw bits).
 *
 * Semantics (../shared/MSA.md sections 3-5, fixed in docs/FORMATS.md):
 *  - q [Tq, Hq, D], index_q [Tq, HI, DI] are packed over the batch by cu_q.
 *  - Without a page table, k, v [Tk, Hkv, D] and index_k [Tk, DI] are packed by cu_k.
 *  - With a page table [batch, max_blocks] (int32), k/v/index_k rows are a pool of
 *    num_pages pages of block_size rows; token j of sequence b lives in row
 *    page_table[b][j / B] * B + j % B.  cu_k still gives the logical lengths Lk.
 *  - Query i of a sequence with Lq queries over Lk keys sits at pos = Lk - Lq + i
 *    (bottom-right aligned) and, when causal, sees keys j <= pos; otherwise all Lk keys.
 *  - HI == Hkv (index head g serves KV group g); Hq % Hkv == 0.
 * This module validates all of that and computes the derived quantities; it does no
 * attention arithmetic. */
#ifndef MSA_CASE_H
#define MSA_CASE_H

#include "msa_common.h"
#include "npz.h"

typedef struct {
    /* configuration (the "config" JSON) */
    msa_dtype dtype;       /* q/k/v: BF16, FP16, FP32 or E4M3 */
    msa_dtype index_dtype; /* index_q/index_k: BF16, FP16, FP32 or E4M3 ("index_dtype", default dtype) */
    int block_size, topk, init_blocks, local_blocks;
    int causal;
    /* softmax_scale: when softmax_scale_is_default the scale is exactly 1/sqrt(D) (a real
     * number; fast paths use the double nearest to it, stored in softmax_scale).
     * Otherwise softmax_scale is the exact value.  Same for the index scale and DI. */
    double softmax_scale;
    int softmax_scale_is_default;
    double index_scale;
    int index_scale_is_default;

    /* shapes */
    int batch;
    int Tq, Tk; /* rows of q and of k/v/index_k storage (Tk = num_pages*B when paged) */
    int Hq, Hkv, D, HI, DI;
    int32_t *cu_q, *cu_k; /* [batch+1], owned */
    int32_t *page_table;  /* [batch * max_blocks] or NULL, owned */
    int max_blocks, num_pages;

    /* tensors in storage format (2 bytes per bf16/fp16, 1 per fp8, 4 per fp32), owned */
    void *q, *k, *v, *index_q, *index_k;

    char label[256]; /* where the case came from (file name or generator string) */
} msa_case;

/* ---- derived quantities ---- */
static inline int msa_case_lq(const msa_case *c, int b) { return c->cu_q[b + 1] - c->cu_q[b]; }
static inline int msa_case_lk(const msa_case *c, int b) { return c->cu_k[b + 1] - c->cu_k[b]; }
/* Blocks of the longest sequence: the row length of block-score arrays. */
int msa_case_max_blocks(const msa_case *c);
/* For a packed query row t: its sequence, its index inside it, and the number of keys it
 * sees (0..Lk); nvis = ceil(nkeys / B) blocks. */
typedef struct {
    int b, i, nkeys, nvis;
} msa_qinfo;
msa_qinfo msa_case_qinfo(const msa_case *c, int t);
/* Storage row of token j (0 <= j < Lk) of sequence b in k, v and index_k. */
int64_t msa_case_kv_row(const msa_case *c, int b, int j);

/* Element loaders (exact, to double). */
double msa_case_q(const msa_case *c, int t, int h, int d);
double msa_case_k(const msa_case *c, int64_t row, int g, int d);
double msa_case_v(const msa_case *c, int64_t row, int g, int d);
double msa_case_iq(const msa_case *c, int t, int g, int d);
double msa_case_ik(const msa_case *c, int64_t row, int d);

/* ---- life cycle ---- */
/* Checks every invariant above; message names the label, the field and the problem.
 * Also rejects NaN/inf in inputs unless allow_nonfinite. */
int msa_case_validate(const msa_case *c, int allow_nonfinite, msa_err *e);
int msa_case_load(const char *path, msa_case *c, msa_err *e);
int msa_case_from_npz(const msa_npz *z, const char *label, msa_case *c, msa_err *e);
int msa_case_to_npz(const msa_case *c, msa_npz *z, msa_err *e);
int msa_case_save(const char *path, const msa_case *c, msa_err *e);
int msa_case_clone(const msa_case *src, msa_case *dst, msa_err *e);
void msa_case_free(msa_case *c);
/* The config JSON text for a case (malloc'ed). */
char *msa_case_config_json(const msa_case *c);
/* A short one-line description, also usable as a test name, e.g.
 * "b2 q[5,129] k[5,300] Hq8 Hkv2 D64 DI64 B16 k4 i0 l1 bf16 paged". */
void msa_case_describe(const msa_case *c, char *buf, size_t n);

/* ---- generation ---- */
typedef enum {
    MSA_DIST_NORMAL = 0, /* N(0,1) rounded to the storage dtype */
    MSA_DIST_UNIFORM,    /* U(-1,1) */
    MSA_DIST_SMALLINT,   /* integers in [-4,4]: exactly representable, many ties */
    MSA_DIST_HEAVY,      /* Student-t like heavy tails */
    MSA_DIST_CONST       /* every element 1: total ties */
} msa_dist;

typedef struct {
    int batch;
    const int *lq, *lk; /* per-sequence lengths [batch] */
    int Hq, Hkv, D, DI;
    int block_size, topk, init_blocks, local_blocks;
    msa_dtype dtype, index_dtype;
    int causal;
    int paged;          /* 0: packed, 1: shuffled pages, 2: shuffled pages with gaps (unused pages) */
    msa_dist dist;      /* for q, k, v */
    msa_dist index_dist;
    double q_scale;     /* multiplies q before rounding (1.0 default if 0) */
    uint64_t seed;
} msa_case_params;

int msa_case_generate(const msa_case_params *p, msa_case *c, msa_err *e);

#endif
