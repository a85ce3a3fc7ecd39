/* plugin_example.c - a complete, minimal MSA backend plugin: plain fp32 C on the host,
 * written against kernels/msa_abi.h alone (docs/ABI.md walks through it).
 *
 *   cc -O2 -shared -fPIC -o build/plugin_example.so examples/plugin_example.c
 *   build/msa verify --kernel build/plugin_example.so
 *
 * What it computes (MSA.md sections 3-5): index block scores (max over causally visible
 * keys of c_I * <iq, ik>), top-k with init/local forcing and ties to the lower id, and
 * softmax attention over the selected blocks in one pass per row (max, then sum of expf,
 * fp32 throughout, output fp32).  What it is not: fast, threaded, or clever.  It links
 * nothing from the suite, so it decodes bf16/fp16/e4m3 itself. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/msa_abi.h"

/* ---- element decoding (exact) ---- */
static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float load(msa_dtype t, const void *base, size_t i)
{
    const unsigned char *p = base;
    uint16_t h;
    switch (t) {
    case MSA_DT_FP32: return from_bits((uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24);
    case MSA_DT_BF16: memcpy(&h, p + 2 * i, 2); return from_bits((uint32_t)h << 16);
    case MSA_DT_FP16: {
        memcpy(&h, p + 2 * i, 2);
        int e = (h >> 10) & 31, m = h & 1023;
        float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
        return h & 0x8000 ? -v : v;
    }
    case MSA_DT_E4M3: { /* OCP e4m3: bias 7, no infinities, 0x7F / 0xFF are NaN */
        int e = (p[i] >> 3) & 15, m = p[i] & 7;
        float v = (e == 15 && m == 7) ? NAN : e == 0 ? ldexpf((float)m, -9) : ldexpf((float)(m | 8), e - 10);
        return p[i] & 0x80 ? -v : v;
    }
    default: return NAN;
    }
}

/* ---- positions ---- */
typedef struct {
    int b, nkeys, nvis;
} row_info;

static row_info info(const msa_problem *p, int t)
{
    row_info r = {0, 0, 0};
    while (r.b + 1 < p->batch && p->cu_seqlens_q_host[r.b + 1] <= t) r.b++;
    int lq = p->cu_seqlens_q_host[r.b + 1] - p->cu_seqlens_q_host[r.b];
    int lk = p->cu_seqlens_k_host[r.b + 1] - p->cu_seqlens_k_host[r.b];
    int pos = lk - lq + (t - p->cu_seqlens_q_host[r.b]); /* bottom-right aligned */
    r.nkeys = !p->causal ? lk : pos + 1 < 0 ? 0 : pos + 1 > lk ? lk : pos + 1;
    r.nvis = (r.nkeys + p->block_size - 1) / p->block_size;
    return r;
}

static int64_t kv_row(const msa_problem *p, int b, int j)
{
    int B = p->block_size;
    if (p->page_table_host) return (int64_t)p->page_table_host[(size_t)b * p->max_blocks + j / B] * B + j % B;
    return (int64_t)p->cu_seqlens_k_host[b] + j;
}

/* ---- entries ---- */
static const char *last_error(void *ctx) { return "plugin_example: unsupported problem"; }

static int supports(void *ctx, const msa_problem *p)
{
    int ok = p->abi_version == MSA_ABI_VERSION && p->HI == p->Hkv && p->Hkv > 0 && p->Hq % p->Hkv == 0;
    for (int i = 0; i < 2; i++) {
        msa_dtype t = i ? p->index_dtype : p->dtype;
        ok = ok && (t == MSA_DT_BF16 || t == MSA_DT_FP16 || t == MSA_DT_FP32 || t == MSA_DT_E4M3);
    }
    return ok ? 0 : MSA_EUNSUPPORTED;
}

static float block_score(const msa_problem *p, int t, int g, int blk, row_info r)
{
    float best = -INFINITY;
    for (int j = blk * p->block_size; j < (blk + 1) * p->block_size && j < r.nkeys; j++) {
        int64_t row = kv_row(p, r.b, j);
        float acc = 0.0f;
        for (int d = 0; d < p->DI; d++)
            acc += load(p->index_dtype, p->index_q, ((size_t)t * p->HI + g) * p->DI + d) *
                   load(p->index_dtype, p->index_k, (size_t)row * p->DI + d);
        if (p->index_scale * acc > best) best = p->index_scale * acc;
    }
    return best;
}

static int index_scores(void *ctx, const msa_problem *p, float *out)
{
    for (int g = 0; g < p->HI; g++)
        for (int t = 0; t < p->total_q; t++) {
            row_info r = info(p, t);
            for (int blk = 0; blk < p->nblk; blk++)
                out[((size_t)g * p->total_q + t) * p->nblk + blk] = blk < r.nvis ? block_score(p, t, g, blk, r) : -INFINITY;
        }
    return 0;
}

/* Forced init/local blocks, then the best of the rest (ties: lower id), ascending. */
static int select_blocks(void *ctx, const msa_problem *p, int32_t *topk)
{
    int K = p->topk;
    float *S = malloc(sizeof *S * (size_t)(p->nblk + 1));
    char *taken = malloc((size_t)p->nblk + 1);
    if (!S || !taken) return free(S), free(taken), MSA_ENOMEM;
    for (int g = 0; g < p->HI; g++)
        for (int t = 0; t < p->total_q; t++) {
            row_info r = info(p, t);
            int32_t *row = topk + ((size_t)g * p->total_q + t) * K;
            memset(taken, 0, (size_t)p->nblk + 1);
            if (r.nvis <= K) {
                for (int i = 0; i < r.nvis; i++) taken[i] = 1;
            } else {
                for (int i = 0; i < r.nvis; i++) S[i] = block_score(p, t, g, i, r);
                for (int i = 0; i < p->init_blocks; i++) taken[i] = 1;
                for (int i = r.nvis - p->local_blocks; i < r.nvis; i++) taken[i] = 1;
                for (int n = p->init_blocks + p->local_blocks; n < K; n++) {
                    int best = -1;
                    for (int i = 0; i < r.nvis; i++)
                        if (!taken[i] && (best < 0 || S[i] > S[best])) best = i;
                    taken[best] = 1;
                }
            }
            int n = 0;
            for (int i = 0; i < r.nvis; i++)
                if (taken[i]) row[n++] = i;
            while (n < K) row[n++] = -1;
        }
    free(S), free(taken);
    return 0;
}

/* Softmax over the keys of the chosen blocks (chosen[blk] != 0) for one (t, h). */
static void attend_row(const msa_problem *p, int t, int h, const char *chosen, float *s, float *o, float *lse)
{
    row_info r = info(p, t);
    int g = h / (p->Hq / p->Hkv), n = 0;
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j < r.nkeys; j++) {
        if (!chosen[j / p->block_size]) continue;
        int64_t row = kv_row(p, r.b, j);
        float acc = 0.0f;
        for (int d = 0; d < p->D; d++)
            acc += load(p->dtype, p->q, ((size_t)t * p->Hq + h) * p->D + d) * load(p->dtype, p->k, ((size_t)row * p->Hkv + g) * p->D + d);
        s[j] = acc * p->softmax_scale;
        m = s[j] > m ? s[j] : m;
        n++;
    }
    memset(o, 0, sizeof *o * (size_t)p->D);
    *lse = -INFINITY;
    if (!n) return; /* no visible key: out = 0, lse = -inf */
    for (int j = 0; j < r.nkeys; j++) {
        if (!chosen[j / p->block_size]) continue;
        int64_t row = kv_row(p, r.b, j);
        float w = expf(s[j] - m);
        l += w;
        for (int d = 0; d < p->D; d++) o[d] += w * load(p->dtype, p->v, ((size_t)row * p->Hkv + g) * p->D + d);
    }
    for (int d = 0; d < p->D; d++) o[d] /= l;
    *lse = m + logf(l);
}

/* topk == NULL: dense (every visible block). */
static int attend_impl(const msa_problem *p, const int32_t *topk, float *out, float *lse)
{
    float *s = malloc(sizeof *s * (size_t)(p->max_lk + 1));
    char *chosen = malloc((size_t)p->nblk + 1);
    if (!s || !chosen) return free(s), free(chosen), MSA_ENOMEM;
    for (int t = 0; t < p->total_q; t++)
        for (int h = 0; h < p->Hq; h++) {
            int g = h / (p->Hq / p->Hkv);
            memset(chosen, topk ? 0 : 1, (size_t)p->nblk + 1);
            for (int i = 0; topk && i < p->topk; i++) {
                int id = topk[((size_t)g * p->total_q + t) * p->topk + i];
                if (id >= 0 && id < p->nblk) chosen[id] = 1;
            }
            attend_row(p, t, h, chosen, s, out + ((size_t)t * p->Hq + h) * p->D, lse + (size_t)t * p->Hq + h);
        }
    free(s), free(chosen);
    return 0;
}

static int attend(void *ctx, const msa_problem *p, const int32_t *topk, void *out, float *lse)
{
    return attend_impl(p, topk, out, lse);
}

static int forward(void *ctx, const msa_problem *p, int32_t *topk, void *out, float *lse)
{
    int rc = select_blocks(ctx, p, topk);
    return rc ? rc : attend_impl(p, topk, out, lse);
}

static int dense(void *ctx, const msa_problem *p, void *out, float *lse) { return attend_impl(p, NULL, out, lse); }

static const msa_backend example = {
    .abi_version = MSA_ABI_VERSION,
    .name = "plugin-example",
    .description = "examples/plugin_example.c: plain fp32 C on the host",
    .mem = MSA_MEM_HOST,
    .arith = {.out_dtype = MSA_DT_FP32, .accum_bits = 24, .p_dtype = MSA_DT_FP32, .exp_kind = MSA_EXP_EXACT,
              .exp_rel_err = 0x1p-22, /* glibc expf/logf: < 1 ulp = 2^-23 relative; margin 2x */
              .merge = MSA_MERGE_NONE, .max_partials = 0, .key_kind = MSA_KEY_FP32,
              .order = MSA_ORDER_ASCENDING, .index_accum_bits = 24},
    .last_error = last_error,
    .supports = supports,
    .index_scores = index_scores,
    .select = select_blocks,
    .attend = attend,
    .forward = forward,
    .dense = dense,
};

const msa_backend *msa_backend_v1(void) { return &example; }
