/* cs_internal.h - private pieces shared by the cpu-sim files (cpusim.c: tables, entry
 * points, selection; cpusim_attn.c: KV-outer partials, merge, dense).  Not part of the
 * ABI: nothing outside kernels/cpusim*.c includes it.  It sees only common/ and the ABI. */
#ifndef MSA_CS_INTERNAL_H
#define MSA_CS_INTERNAL_H

#include "msa_abi.h"

/* The variant list: X(ENUM, "name", legal, "what").  Each is one small switch in the code
 * (grep for CS_V_<ENUM>), never a copy of the backend. */
#define CS_VARIANTS(X)                                                                                \
    X(NONE, "none", 1, "the plain cpu-sim backend (docs/DESIGN.md, docs/ABI.md)")                     \
    X(SHARED_SEL, "shared-selection", 0, "group 0's selection used for every KV group")               \
    X(MERGE_NAN, "merge-nan", 0, "merge has no guard for -inf - -inf: padded/empty rows give NaN")    \
    X(UNINIT_PARTIAL, "uninit-partial", 0, "merge reads one slot past the row's valid partials")      \
    X(UNMASKED_TAIL, "unmasked-tail", 0, "the sequence's partial last block is read unmasked to its end") \
    X(TOPK_LAYOUT, "topk-layout", 0, "attention reads the head-major top-k buffer as token-major")   \
    X(MINUS_ONE_INDEX, "minus-one-index", 0, "a -1 slot used as a block index, wrapping to the last block") \
    X(NONCAUSAL, "noncausal", 0, "the causal flag is ignored (every key visible)")                   \
    X(DIAG_DROP, "diag-drop", 0, "off-by-one at the diagonal: keys j < pos instead of j <= pos")     \
    X(DIAG_EXTRA, "diag-extra", 0, "off-by-one at the diagonal: key pos+1 is visible too")          \
    X(TOP_LEFT, "top-left-align", 0, "queries aligned top-left (pos = i, not Lk - Lq + i)")          \
    X(NO_MAX_SUB, "no-max-sub", 0, "exp2 without max subtraction: large scores overflow")           \
    X(ACCUM_BF16, "accum-bf16", 0, "P.V accumulated in bf16 instead of fp32")                        \
    X(MERGE_WEIGHTS, "merge-weights", 0, "partials merged with equal weights instead of exp(LSE_s-LSE)") \
    X(LSE_LOG2, "lse-log2", 0, "LSE reported in log2 units instead of natural log")                 \
    X(WRONG_SCALE, "wrong-scale", 0, "softmax scale 1/D instead of the problem's scale")            \
    X(MASK_AFTER_MAX, "index-mask-after-max", 0, "index block max over the whole block, causal mask applied after") \
    X(MISSING_LOCAL, "missing-local", 0, "the local (trailing) blocks are not forced")              \
    X(K_MINUS_ONE, "k-minus-one", 0, "selects k-1 blocks when more than k are visible")             \
    X(K_PLUS_ONE, "k-plus-one", 0, "attention uses k+1 blocks (the top-k output shows k)")          \
    X(DUPLICATE_ID, "duplicate-id", 0, "the last selected id repeats the one before it")            \
    X(GROUP_MAP, "group-map", 0, "query head h mapped to KV group h % Hkv instead of h / (Hq/Hkv)") \
    X(UNWRITTEN, "unwritten", 0, "the last output element is never written")                        \
    X(EMPTY_ROW_NAN, "empty-row-nan", 0, "rows with no visible key give out = 0/0 = NaN")          \
    X(INDEX_HALF_DIMS, "index-half-dims", 0, "index scores over the first DI/2 dims only")          \
    X(ORDER_UNDECLARED, "order-undeclared", 0, "returns score-descending order while declaring ascending") \
    X(TIE_HIGH, "tie-high", 1, "exact index-score ties go to the higher block id")                   \
    X(ORDER_DESC, "order-desc", 1, "score-descending order (declared MSA_ORDER_SCORE_DESC)")         \
    X(ORDER_LOCAL_LAST, "order-local-last", 1, "others by descending score, the local block last (declared MSA_ORDER_LOCAL_LAST)") \
    X(INDEX_SCALE_ONE, "index-scale-one", 1, "index scale 1 instead of 1/sqrt(DI) (ranking unchanged)") \
    X(REVERSE_SUM, "reverse-sum", 1, "every accumulation (dots, P.V, l, merge) in reverse order")   \
    X(SPLIT2, "split2", 1, "each block split into two half-block partials (declared max_partials -2: 2 per block)") \
    X(P_FP32, "p-fp32", 1, "P not rounded to bf16 (declared p_dtype FP32)")

enum {
#define CS_ENUM(e, n, l, w) CS_V_##e,
    CS_VARIANTS(CS_ENUM)
#undef CS_ENUM
    CS_V_COUNT
};

/* One call's view of the problem: inputs decoded to fp32 (every bf16/fp16/e4m3 value is
 * an fp32 value, so this is exact) and per-query positions with the variant applied. */
typedef struct {
    const msa_problem *p;
    int v;        /* CS_V_* */
    int Tq, S;    /* S: slots per top-k row as consumed by attention */
    float *q, *k, *vv, *iq, *ik;
    int *seq, *nkeys, *nvis; /* per query row */
    int *nblocks;            /* per sequence: ceil(Lk / B) */
    int *blk_base;           /* per sequence: first global block (prefix sum of nblocks) */
    int total_blocks;
} cs_run;

int cs_run_prepare(cs_run *r, const msa_problem *p, int variant, int need_main, int need_index,
                   char *err, size_t errn);
void cs_run_free(cs_run *r);
/* Storage row of token j of sequence b (paged or packed). */
int64_t cs_kv_row(const cs_run *r, int b, int j);
/* Head h's KV group, with the group-map variant applied. */
int cs_group(const cs_run *r, int h);

/* Attention over ids [HI][Tq][stride] (the consumer side: KV-outer partials + merge). */
int cs_attend(cs_run *r, const int32_t *ids, int stride, void *out, float *lse, char *err,
              size_t errn);
/* Dense causal GQA: every visible block, same partials and merge. */
int cs_dense(cs_run *r, void *out, float *lse, char *err, size_t errn);
/* The stored output dtype: the declared one, or for MSA_DT_INVALID the input's rule
 * (bf16 -> bf16, fp16 -> fp16, else fp32; docs/ABI.md "out_dtype"). */
msa_dtype cs_out_dtype(msa_dtype declared, msa_dtype input);

#endif
