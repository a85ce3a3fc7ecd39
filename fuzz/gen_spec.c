/* gen_spec.c - draws the shape, configuration and pattern choices of one fuzz case
 * (fz_spec) from (seed, id) alone, so a case is the same on every machine and in every
 * shard.  Steered ids override the draw so that the case hits one boundary class.
 * Building tensors from a spec is gen_case.c's job; judging is not done here. */
#include <math.h>
#include <string.h>

#include "../common/rng.h"
#include "fuzz_int.h"

const char *const fz_data_names[FZ_D_N] = {"normal", "uniform", "heavy", "smallint",
                                           "equal-keys", "large", "subnormal"};
const char *const fz_index_names[FZ_I_N] = {"random", "few-level", "all-equal", "levels",
                                            "jitter", "sentinel", "groups"};
const char *const fz_probe_names[FZ_P_N] = {"none", "diag", "past-diag", "block-first",
                                            "block-last", "kth", "group-only"};

/* Sub-streams of one case id (distinct rng streams, bits 56..59 of the stream key). */
enum { ST_SHAPE = 1 };

static const int k_ratios[] = {1, 2, 3, 4, 8, 16};
/* Hkv * D of a drawn case (steered cases may exceed it to reach D 256 or ratio 16). */
#define KV_WIDTH_MAX 256
/* Prefill (Lq = Lk) and chunks are at most this many queries: the kernel and the dense
 * run cost Lq * Lk, and long contexts come from decode and chunked prefill. */
#define CHUNK_MAX 128
/* Size tiers: most bugs show in a few blocks, and the exact reference costs about as
 * much per element as the kernel under test costs per case, so 75% of the cases stay
 * under SMALL_CONTEXT tokens, 20% under MEDIUM_CONTEXT, 5% use the whole cap. */
#define SMALL_CONTEXT 160
#define MEDIUM_CONTEXT 640
#define LONG_HEADS_MAX 4
static const int k_dims[] = {64, 128, 256};

static int pick(msa_rng *r, const int *v, int n) { return v[msa_rng_next_range(r, 0, n - 1)]; }
static int chance(msa_rng *r, double p) { return msa_rng_next_uniform(r) < p; }
static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* A key count that puts the last query's nvis below, at or above k, or lands on and
 * around block boundaries; log-uniform up to the cap so large contexts stay rare. */
static int draw_lk(msa_rng *r, const fz_spec *s, int cap)
{
    int B = s->B, nb;
    double u = msa_rng_next_uniform(r);
    if (u < 0.45) nb = s->topk + (int)msa_rng_next_range(r, -2, 2);     /* around k */
    else if (u < 0.75) nb = (int)msa_rng_next_range(r, 1, 6);            /* a few blocks */
    else nb = (int)exp(msa_rng_next_uniform(r) * log((double)cap / B + 1.0)); /* log-uniform */
    nb = imax(nb, 1);
    int delta;
    switch ((int)msa_rng_next_range(r, 0, 4)) {
    case 0: delta = 0; break;
    case 1: delta = -1; break;
    case 2: delta = 1; break;
    default: delta = (int)msa_rng_next_range(r, -B + 1, 0); break;
    }
    return imin(imax(nb * B + delta, 1), cap);
}

/* Queries of a sequence with lk keys: prefill, chunked prefill, decode, or an edge. */
static int draw_lq(msa_rng *r, int lk, int cap)
{
    double u = msa_rng_next_uniform(r);
    /* Prefill of the whole context is the costliest shape (Lq * Lk): keep it short. */
    const int chunk_cap = imin(cap, CHUNK_MAX);
    if (u < 0.30) return imin(lk, chunk_cap);                            /* prefill (or tail chunk) */
    if (u < 0.55) return (int)msa_rng_next_range(r, 1, imin(16, imax(lk, 1))); /* decode */
    if (u < 0.85) return (int)msa_rng_next_range(r, 1, imax(1, imin(lk, chunk_cap))); /* chunked */
    if (u < 0.93) return 1;
    return (int)msa_rng_next_range(r, 0, 3); /* 0..3: zero-length or more queries than keys */
}

static void draw_lengths(msa_rng *r, fz_spec *s, int cap, int max_batch)
{
    double u = msa_rng_next_uniform(r);
    s->batch = u < 0.5 ? 1 : u < 0.88 ? (int)msa_rng_next_range(r, 2, 3)
                                      : (int)msa_rng_next_range(r, 4, max_batch);
    s->batch = imin(s->batch, max_batch);
    /* many sequences share one context budget, so a batch costs about one long sequence */
    if (s->batch > 2) cap = imax(2 * s->B, 2 * cap / s->batch);
    int same = chance(r, 0.2);
    for (int b = 0; b < s->batch; b++) {
        if (same && b > 0) {
            s->lk[b] = s->lk[0];
            s->lq[b] = s->lq[0];
            continue;
        }
        int lk = draw_lk(r, s, cap);
        if (chance(r, 0.05)) lk = chance(r, 0.5) ? 0 : 1; /* zero-length and one-token */
        s->lk[b] = lk;
        s->lq[b] = imin(draw_lq(r, lk, cap), cap);
        if (chance(r, 0.04)) { /* more queries than keys: the first rows see nothing */
            s->lk[b] = (int)msa_rng_next_range(r, 0, 3);
            s->lq[b] = s->lk[b] + (int)msa_rng_next_range(r, 1, 3);
        }
    }
}

static void draw_types(msa_rng *r, fz_spec *s)
{
    double u = msa_rng_next_uniform(r);
    s->dt = u < 0.7 ? MSA_DT_BF16 : u < 0.85 ? MSA_DT_FP16 : u < 0.95 ? MSA_DT_FP32 : MSA_DT_E4M3;
    u = msa_rng_next_uniform(r);
    s->idt = u < 0.8 ? s->dt : u < 0.9 ? MSA_DT_E4M3 : MSA_DT_BF16;
}

static void draw_patterns(msa_rng *r, fz_spec *s)
{
    static const double dw[FZ_D_N] = {0.42, 0.12, 0.12, 0.14, 0.06, 0.10, 0.04};
    static const double iw[FZ_I_N] = {0.35, 0.15, 0.05, 0.15, 0.12, 0.06, 0.12};
    static const double pw[FZ_P_N] = {0.40, 0.12, 0.12, 0.08, 0.08, 0.12, 0.08};
    double u = msa_rng_next_uniform(r), acc = 0;
    s->data = FZ_D_N - 1;
    for (int i = 0; i < FZ_D_N; i++) if (u < (acc += dw[i])) { s->data = i; break; }
    u = msa_rng_next_uniform(r), acc = 0;
    s->index = FZ_I_N - 1;
    for (int i = 0; i < FZ_I_N; i++) if (u < (acc += iw[i])) { s->index = i; break; }
    u = msa_rng_next_uniform(r), acc = 0;
    s->probe = FZ_P_N - 1;
    for (int i = 0; i < FZ_P_N; i++) if (u < (acc += pw[i])) { s->probe = i; break; }
}

/* Probes that rank blocks need nvis > k on their sequence. */
static void ensure_gt_k(fz_spec *s, int cap)
{
    int need = (s->topk + 2) * s->B + s->B / 2;
    if (need > cap) { /* shrink k and B to fit the cap */
        s->B = 16;
        s->topk = imax(1, imin(s->topk, cap / s->B - 3));
        s->init = imin(s->init, s->topk / 2);
        s->local = imin(s->local, s->topk - s->init);
        need = imin((s->topk + 2) * s->B + s->B / 2, cap);
    }
    s->lk[0] = imax(s->lk[0], need);
    if (s->lq[0] < 1) s->lq[0] = 1;
}

void fz_spec_fixup(fz_spec *s, int cap)
{
    if (s->topk < 1) s->topk = 1;
    if (s->init + s->local > s->topk) { s->init = 0; s->local = imin(s->local, s->topk); }
    if (s->probe == FZ_P_KTH) s->index = FZ_I_LEVELS;
    if (s->probe == FZ_P_GROUP_ONLY) {
        s->index = FZ_I_GROUPS;
        if (s->Hkv < 2) { s->Hkv = 2; s->Hq = 2 * imin(s->Hq, 8); }
    }
    if (s->probe == FZ_P_KTH || s->probe == FZ_P_GROUP_ONLY) ensure_gt_k(s, cap);
    if (s->probe != FZ_P_NONE && s->lk[0] < 2) { s->lk[0] = imin(cap, 2 + s->B); s->lq[0] = s->lk[0]; }
    if (s->index == FZ_I_SENTINEL && (s->idt == MSA_DT_FP16 || s->idt == MSA_DT_E4M3))
        s->idt = MSA_DT_BF16; /* +-1e20 needs the fp32 exponent range */
    if (s->index == FZ_I_GROUPS && s->DI < s->Hkv) s->DI = 64;
    for (int b = 0; b < s->batch; b++) {
        s->lk[b] = imin(imax(s->lk[b], 0), cap);
        s->lq[b] = imin(imax(s->lq[b], 0), cap);
    }
}

void fz_draw_spec_base(const msa_fuzz_gen_cfg *g, uint64_t seed, uint64_t id, fz_spec *s)
{
    int full = g && g->max_context > 0 ? g->max_context : MSA_FUZZ_DEFAULT_MAX_CONTEXT;
    int maxb = g && g->max_batch > 0 ? imin(g->max_batch, FZ_MAX_BATCH) : FZ_MAX_BATCH;
    msa_rng r;
    msa_rng_init(&r, seed, id ^ ((uint64_t)ST_SHAPE << 56));
    memset(s, 0, sizeof *s);
    double tier = msa_rng_next_uniform(&r);
    int cap = tier < 0.75 ? imin(full, SMALL_CONTEXT) : tier < 0.95 ? imin(full, MEDIUM_CONTEXT) : full;
    int ratio = pick(&r, k_ratios, 6);
    /* Cost is linear in Hkv * D (every backend call and reference call decodes all of K
     * and V), and the masking logic does not depend on D: D 64 dominates and Hkv * D
     * stays <= KV_WIDTH_MAX. */
    double u0 = msa_rng_next_uniform(&r);
    s->D = u0 < 0.75 ? 64 : u0 < 0.9 ? 128 : 256;
    int hkv_max = imax(1, imin(ratio >= 8 ? 2 : 4, KV_WIDTH_MAX / s->D));
    s->Hkv = (int)msa_rng_next_range(&r, 1, hkv_max);
    s->Hq = s->Hkv * ratio;
    /* Long contexts cost Lq * Lk * Hq * D in every run: above the small tier, query heads
     * stay <= LONG_HEADS_MAX and D at 64 (head and group logic is covered by small cases). */
    if (cap > SMALL_CONTEXT && s->Hq > LONG_HEADS_MAX) {
        s->Hkv = s->Hkv > 1 && ratio <= LONG_HEADS_MAX / 2 ? 2 : 1;
        s->Hq = s->Hkv * imin(ratio, LONG_HEADS_MAX / s->Hkv);
    }
    if (cap > SMALL_CONTEXT && u0 < 0.9) s->D = 64;
    /* DI: mostly 64/128; multiples of 16 (what tensor-core kernels take), rarely of 8 */
    double ud = msa_rng_next_uniform(&r);
    s->DI = ud < 0.85 ? pick(&r, k_dims, 2) : ud < 0.95 ? (int)msa_rng_next_range(&r, 1, 16) * 16
                                                        : (int)msa_rng_next_range(&r, 1, 8) * 8;
    double ub = msa_rng_next_uniform(&r);
    s->B = ub < 0.4 ? 16 : ub < 0.7 ? 32 : ub < 0.9 ? 64 : 128;
    s->topk = chance(&r, 0.75) ? (int)msa_rng_next_range(&r, 1, 6) : (int)msa_rng_next_range(&r, 1, 32);
    s->init = chance(&r, 0.4) ? (int)msa_rng_next_range(&r, 0, imin(2, s->topk)) : 0;
    s->local = chance(&r, 0.6) ? (int)msa_rng_next_range(&r, 0, imin(2, s->topk - s->init)) : 0;
    /* nvis around k must fit under the cap: smaller blocks for large k */
    while (s->B > 16 && (s->topk + 2) * s->B > cap) s->B /= 2;
    s->causal = !chance(&r, 0.08);
    draw_types(&r, s);
    double u = msa_rng_next_uniform(&r);
    s->paged = u < 0.6 ? 0 : u < 0.85 ? 1 : 2;
    s->index_scale_one = chance(&r, 0.15);
    /* Keep B <= cap so that several blocks fit under small caps. */
    while (s->B > 16 && s->B * 4 > cap) s->B /= 2;
    draw_lengths(&r, s, cap, maxb);
    draw_patterns(&r, s);
    s->nonfinite = s->paged && chance(&r, 0.3);
    fz_spec_fixup(s, full);
}
