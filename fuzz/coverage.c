/* coverage.c - which boundary classes a case hits (SQLite's testcase() idea: a campaign
 * proves each boundary was seen).  Classes come from the case itself (shapes, layout,
 * types), from its label (the generator's data and probe patterns) and, for selection
 * classes (ties, forced blocks that matter, groups that differ), from the exact
 * reference's block scores and selection.  It never judges a kernel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_int.h"

static const char *const g_names[MSA_COV_N] = {
    "prefill", "chunked-prefill", "decode", "non-causal", "ragged-batch", "zero-length-seq",
    "one-token-seq", "empty-row", "partial-last-block", "diagonal-mid-block",
    "diagonal-at-block-end", "nvis<k", "nvis==k", "nvis>k", "init-forced", "local-forced",
    "forced-block-outranked", "no-free-slot", "paged-shuffled", "page-gaps", "gqa-sharing",
    "groups-select-differently", "tie-at-kth", "tie-total", "near-tie-at-kth",
    "sentinel-scores", "nonfinite-unused-rows", "subnormals", "large-logits", "dtype-bf16",
    "dtype-fp16", "dtype-fp32", "dtype-e4m3", "index-e4m3", "D64", "D128", "D256", "ratio1",
    "ratio2", "ratio3", "ratio4", "ratio8", "ratio16", "B16", "B32", "B64", "B128",
    "probe-diagonal", "probe-past-diagonal", "probe-block-first", "probe-block-last",
    "probe-kth", "probe-group-only"};

const char *msa_cov_name(int cls) { return cls >= 0 && cls < MSA_COV_N ? g_names[cls] : "?"; }

/* A near tie: scores differ by less than 2^-10 relative, far inside what fp16 or 16-bit
 * row-quantised keys can resolve (MSA.md 4.4) yet not equal. */
#define NEAR_TIE_REL 0x1p-10
/* |score| at or above this is in the sentinel range (+-1e20, +-1e29 marks). */
#define SENTINEL_MIN 1e19

#define SET(cls) (bits |= UINT64_C(1) << (cls))

static uint64_t shape_classes(const msa_case *c)
{
    uint64_t bits = 0;
    int B = c->block_size, lq0 = -1, lk0 = -1, ragged = 0;
    for (int b = 0; b < c->batch; b++) {
        int lq = msa_case_lq(c, b), lk = msa_case_lk(c, b);
        if (lq0 < 0) lq0 = lq, lk0 = lk;
        else if (lq != lq0 || lk != lk0) ragged = 1;
        if (lq > 0 && lq == lk) SET(MSA_COV_PREFILL);
        if (lq > 16 && lq < lk) SET(MSA_COV_CHUNKED);
        if (lq >= 1 && lq <= 16 && lq < lk) SET(MSA_COV_DECODE);
        if (lq == 0 || lk == 0) SET(MSA_COV_ZERO_LEN);
        if (lk == 1) SET(MSA_COV_ONE_TOKEN);
        if (lk > 0 && lk % B) SET(MSA_COV_PARTIAL_LAST);
    }
    if (ragged && c->batch > 1) SET(MSA_COV_RAGGED_BATCH);
    if (!c->causal) SET(MSA_COV_NONCAUSAL);
    for (int t = 0; t < c->Tq; t++) {
        int b, nk = fz_row_nkeys(c, t, &b), nvis = (nk + B - 1) / B;
        if (nk == 0) { SET(MSA_COV_EMPTY_ROW); continue; }
        if (c->causal && nk % B) SET(MSA_COV_DIAG_PARTIAL);
        if (c->causal && nk % B == 0 && nk < msa_case_lk(c, b)) SET(MSA_COV_DIAG_BLOCK_END);
        if (nvis < c->topk) SET(MSA_COV_NVIS_LT_K);
        else if (nvis == c->topk) SET(MSA_COV_NVIS_EQ_K);
        else {
            SET(MSA_COV_NVIS_GT_K);
            if (c->init_blocks) SET(MSA_COV_INIT_FORCED);
            if (c->local_blocks) SET(MSA_COV_LOCAL_FORCED);
            if (c->init_blocks + c->local_blocks == c->topk) SET(MSA_COV_NO_FREE_SLOT);
        }
    }
    return bits;
}

static uint64_t type_classes(const msa_case *c)
{
    uint64_t bits = 0;
    static const int ratios[] = {1, 2, 3, 4, 8, 16};
    if (c->dtype == MSA_DT_BF16) SET(MSA_COV_DT_BF16);
    if (c->dtype == MSA_DT_FP16) SET(MSA_COV_DT_FP16);
    if (c->dtype == MSA_DT_FP32) SET(MSA_COV_DT_FP32);
    if (c->dtype == MSA_DT_E4M3) SET(MSA_COV_DT_E4M3);
    if (c->index_dtype == MSA_DT_E4M3) SET(MSA_COV_IDX_E4M3);
    if (c->D == 64) SET(MSA_COV_D64);
    if (c->D == 128) SET(MSA_COV_D128);
    if (c->D == 256) SET(MSA_COV_D256);
    for (int i = 0; i < 6; i++)
        if (c->Hkv > 0 && c->Hq / c->Hkv == ratios[i]) SET(MSA_COV_RATIO1 + i);
    if (c->Hq > c->Hkv) SET(MSA_COV_GQA_SHARING);
    for (int i = 0; i < 4; i++)
        if (c->block_size == 16 << i) SET(MSA_COV_B16 + i);
    if (c->page_table) {
        int used = 0, shuffled = 0, last = -1;
        for (int b = 0; b < c->batch; b++)
            for (int i = 0; i < (msa_case_lk(c, b) + c->block_size - 1) / c->block_size; i++) {
                int pg = c->page_table[(size_t)b * c->max_blocks + i];
                if (pg != last + 1) shuffled = 1;
                last = pg, used++;
            }
        if (shuffled) SET(MSA_COV_PAGED_SHUFFLED);
        if (c->num_pages > used) SET(MSA_COV_PAGE_GAPS);
    }
    return bits;
}

static uint64_t label_classes(const msa_case *c)
{
    uint64_t bits = 0;
    static const struct { const char *tag; int cls; } tags[] = {
        {"probe=diag", MSA_COV_PROBE_DIAG}, {"probe=past-diag", MSA_COV_PROBE_PAST_DIAG},
        {"probe=block-first", MSA_COV_PROBE_BLOCK_FIRST}, {"probe=block-last", MSA_COV_PROBE_BLOCK_LAST},
        {"probe=kth", MSA_COV_PROBE_KTH}, {"probe=group-only", MSA_COV_PROBE_GROUP_ONLY},
        {"data=subnormal", MSA_COV_SUBNORMAL}, {"data=large", MSA_COV_LARGE_LOGITS},
        {" nonfinite", MSA_COV_NONFINITE_UNUSED}};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (strstr(c->label, tags[i].tag)) SET(tags[i].cls);
    return bits;
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Tie, forced-block and sentinel classes of one (g, t) row with nvis > k. */
static uint64_t row_selection_classes(const msa_case *c, const double *bs, int nvis, double *tmp)
{
    uint64_t bits = 0;
    int k = c->topk, in = c->init_blocks, lo = c->local_blocks, nf = 0;
    double forced_min = INFINITY;
    for (int blk = 0; blk < nvis; blk++) {
        if (fabs(bs[blk]) >= SENTINEL_MIN && isfinite(bs[blk])) SET(MSA_COV_SENTINEL);
        if (blk < in || blk >= nvis - lo) forced_min = fmin(forced_min, bs[blk]);
        else tmp[nf++] = bs[blk];
    }
    qsort(tmp, (size_t)nf, sizeof *tmp, cmp_desc);
    int kf = k - in - lo;
    if (nf >= 2 && tmp[0] == tmp[nf - 1]) SET(MSA_COV_TIE_TOTAL);
    if (kf >= 1 && kf < nf) {
        double a = tmp[kf - 1], b = tmp[kf];
        if (a == b) SET(MSA_COV_TIE_EXACT_K);
        else if (a - b <= NEAR_TIE_REL * fmax(fabs(a), fabs(b))) SET(MSA_COV_NEAR_TIE_K);
        if (forced_min < a) SET(MSA_COV_FORCED_WEIGHS);
    } else if (kf == 0 && nf > 0 && forced_min < tmp[0]) SET(MSA_COV_FORCED_WEIGHS);
    return bits;
}

static uint64_t selection_classes(const msa_case *c, const int32_t *topk, const double *bs)
{
    uint64_t bits = 0;
    int nblk = 0, B = c->block_size, k = c->topk;
    for (int b = 0; b < c->batch; b++) {
        int nb = (msa_case_lk(c, b) + B - 1) / B;
        if (nb > nblk) nblk = nb;
    }
    double *tmp = malloc(sizeof(double) * (nblk > 0 ? nblk : 1));
    if (!tmp) return 0;
    for (int t = 0; t < c->Tq; t++) {
        int nk = fz_row_nkeys(c, t, NULL), nvis = (nk + B - 1) / B;
        for (int g = 0; g < c->HI && bs && nvis > k; g++)
            bits |= row_selection_classes(c, bs + ((size_t)g * c->Tq + t) * nblk, nvis, tmp);
        for (int g = 1; g < c->HI && topk; g++)
            if (memcmp(topk + ((size_t)g * c->Tq + t) * k, topk + (size_t)t * k, sizeof(int32_t) * k))
                SET(MSA_COV_GROUPS_DIFFER);
    }
    free(tmp);
    return bits;
}

uint64_t msa_fuzz_coverage(const msa_case *c, const int32_t *ref_topk, const double *ref_bs)
{
    uint64_t bits = shape_classes(c) | type_classes(c) | label_classes(c);
    if (ref_topk || ref_bs) bits |= selection_classes(c, ref_topk, ref_bs);
    return bits;
}
