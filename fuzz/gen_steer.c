/* gen_steer.c - steered cases: a steered id (MSA_FUZZ_STEER_BIT | class << 32 | n) draws
 * an ordinary spec and then overrides the few choices that make the case hit its
 * boundary class.  The overrides are recipes, not guarantees: coverage is measured on
 * the built case (coverage.c), never assumed from the recipe. */
#include "fuzz_int.h"


static int imin(int a, int b) { return a < b ? a : b; }

/* Sequence 0 gets nvis = nb blocks at its last query, with a partial last block when
 * partial != 0. */
static void seq0_blocks(fz_spec *s, int nb, int partial, int cap)
{
    int lk = nb * s->B - (partial ? s->B / 2 : 0);
    if (lk > cap) { /* fall back to the smallest block size */
        s->B = 16;
        lk = imin(nb * s->B - (partial ? s->B / 2 : 0), cap);
    }
    s->lk[0] = lk > 0 ? lk : 1;
    if (s->lq[0] < 1 || s->lq[0] > s->lk[0]) s->lq[0] = 1;
}

static void steer_shape(fz_spec *s, int cls, int cap)
{
    switch (cls) {
    case MSA_COV_PREFILL: s->lq[0] = imin(s->lk[0] > 0 ? s->lk[0] : 1, 256); s->lk[0] = s->lq[0]; break;
    case MSA_COV_CHUNKED: seq0_blocks(s, 4, 1, cap); s->lq[0] = s->lk[0] > 17 ? 17 : 1; break;
    case MSA_COV_DECODE: s->lq[0] = 4; if (s->lk[0] < 8) s->lk[0] = imin(cap, 3 * s->B); break;
    case MSA_COV_NONCAUSAL: s->causal = 0; break;
    case MSA_COV_RAGGED_BATCH: s->batch = 3; s->lk[1] = s->lk[0] / 2 + 1; s->lq[1] = 1;
        s->lk[2] = imin(cap, s->lk[0] + 5); s->lq[2] = imin(s->lk[2], 7); break;
    case MSA_COV_ZERO_LEN: s->batch = 2; s->lq[1] = 0; s->lk[1] = 0; break;
    case MSA_COV_ONE_TOKEN: s->lq[0] = 1; s->lk[0] = 1; break;
    case MSA_COV_EMPTY_ROW: s->batch = 2; s->lk[1] = 0; s->lq[1] = 2; break;
    case MSA_COV_PARTIAL_LAST: seq0_blocks(s, 3, 1, cap); break;
    case MSA_COV_DIAG_PARTIAL: seq0_blocks(s, 2, 1, cap); s->lq[0] = s->lk[0]; break;
    case MSA_COV_DIAG_BLOCK_END: seq0_blocks(s, 3, 0, cap); s->lq[0] = s->B + 1; break;
    case MSA_COV_NVIS_LT_K: if (s->topk < 2) s->topk = 4; seq0_blocks(s, s->topk - 1, 1, cap); break;
    case MSA_COV_NVIS_EQ_K: seq0_blocks(s, s->topk, 1, cap); break;
    default: break;
    }
}

static void steer_select(fz_spec *s, int cls, int cap)
{
    switch (cls) {
    case MSA_COV_NVIS_GT_K: seq0_blocks(s, s->topk + 2, 1, cap); break;
    case MSA_COV_INIT_FORCED: if (s->topk < 2) s->topk = 3; s->init = 1; seq0_blocks(s, s->topk + 2, 1, cap); break;
    case MSA_COV_LOCAL_FORCED: if (s->topk < 2) s->topk = 3; s->local = 1; seq0_blocks(s, s->topk + 2, 1, cap); break;
    case MSA_COV_FORCED_WEIGHS: s->topk = 4; s->init = 1; s->local = 1; s->index = FZ_I_LEVELS;
        seq0_blocks(s, 9, 0, cap); break;
    case MSA_COV_NO_FREE_SLOT: s->topk = 2; s->init = 1; s->local = 1; seq0_blocks(s, 5, 1, cap); break;
    case MSA_COV_GROUPS_DIFFER: if (s->Hkv < 2) { s->Hkv = 2; s->Hq = 4; }
        s->index = FZ_I_RANDOM; seq0_blocks(s, s->topk + 3, 1, cap); break;
    case MSA_COV_TIE_EXACT_K: s->index = FZ_I_FEWLEVEL; s->DI = 16; seq0_blocks(s, s->topk + 3, 1, cap); break;
    case MSA_COV_TIE_TOTAL: s->index = FZ_I_EQUAL; seq0_blocks(s, s->topk + 3, 1, cap); break;
    case MSA_COV_NEAR_TIE_K: s->index = FZ_I_JITTER; seq0_blocks(s, s->topk + 3, 1, cap); break;
    case MSA_COV_SENTINEL: s->index = FZ_I_SENTINEL; seq0_blocks(s, s->topk + 3, 1, cap); break;
    default: break;
    }
}

static void steer_misc(fz_spec *s, int cls)
{
    static const msa_dtype dts[] = {MSA_DT_BF16, MSA_DT_FP16, MSA_DT_FP32, MSA_DT_E4M3};
    static const int ratios[] = {1, 2, 3, 4, 8, 16};
    static const int dims[] = {64, 128, 256};
    static const int blocks[] = {16, 32, 64, 128};
    if (cls >= MSA_COV_DT_BF16 && cls <= MSA_COV_DT_E4M3) s->dt = s->idt = dts[cls - MSA_COV_DT_BF16];
    else if (cls == MSA_COV_IDX_E4M3) s->idt = MSA_DT_E4M3;
    else if (cls >= MSA_COV_D64 && cls <= MSA_COV_D256) s->D = dims[cls - MSA_COV_D64];
    else if (cls >= MSA_COV_RATIO1 && cls <= MSA_COV_RATIO16) {
        int r = ratios[cls - MSA_COV_RATIO1];
        s->Hkv = r >= 8 ? 1 : 2;
        s->Hq = s->Hkv * r;
    } else if (cls >= MSA_COV_B16 && cls <= MSA_COV_B128) {
        s->B = blocks[cls - MSA_COV_B16];
        if (s->probe == FZ_P_KTH || s->probe == FZ_P_GROUP_ONLY) s->probe = FZ_P_NONE; /* they shrink B to fit */
    }
    else if (cls >= MSA_COV_PROBE_DIAG && cls <= MSA_COV_PROBE_GROUP_ONLY)
        s->probe = FZ_P_DIAG + (cls - MSA_COV_PROBE_DIAG);
    else if (cls == MSA_COV_PAGED_SHUFFLED) s->paged = 1;
    else if (cls == MSA_COV_PAGE_GAPS) s->paged = 2;
    else if (cls == MSA_COV_NONFINITE_UNUSED) { s->paged = 2; s->nonfinite = 1; }
    else if (cls == MSA_COV_GQA_SHARING && s->Hq == s->Hkv) s->Hq = 2 * s->Hkv;
    else if (cls == MSA_COV_SUBNORMAL) s->data = FZ_D_SUBNORMAL;
    else if (cls == MSA_COV_LARGE_LOGITS) s->data = FZ_D_LARGE;
}

void fz_draw_spec(const msa_fuzz_gen_cfg *g, uint64_t seed, uint64_t id, fz_spec *s)
{
    int cap = g && g->max_context > 0 ? g->max_context : MSA_FUZZ_DEFAULT_MAX_CONTEXT;
    fz_draw_spec_base(g, seed, id, s);
    if (!(id & MSA_FUZZ_STEER_BIT)) return;
    int cls = (int)((id >> 32) & 0xff);
    steer_misc(s, cls);
    steer_shape(s, cls, cap);
    steer_select(s, cls, cap);
    fz_spec_fixup(s, cap);
}
