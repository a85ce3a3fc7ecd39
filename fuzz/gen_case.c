/* gen_case.c - builds an msa_case from a fuzz spec: packed or paged layout (shuffled
 * page tables, optionally with unused pages), q/k/v data in the spec's pattern, the
 * index block pattern, then the probe (gen_probe.c) and NaN/inf in storage rows that no
 * sequence owns.  Every value is a pure function of (seed, id, element). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/numfmt.h"
#include "../common/rng.h"
#include "fuzz_int.h"
#include "gen_int.h"

enum { ST_LAYOUT = 2, ST_Q, ST_K, ST_V, ST_IQ, ST_IK };

/* Heavy tails: a normal over a uniform clipped away from zero (a slash distribution);
 * the clip keeps values below HEAVY_MAX so that fp32 accumulation cannot overflow. */
#define HEAVY_FLOOR 0.02
#define HEAVY_MAX 64.0
/* "large": q, k ~ N(0,1) * LARGE_SCALE gives logits with a standard deviation of about
 * LARGE_SCALE^2 (~900): exp overflows fp32 beyond 88, so a kernel without max
 * subtraction fails while every sum stays far below the fp32 range. */
#define LARGE_SCALE 30.0

/* bf16 by way of fp32 (round to fp32, then to bf16, both to nearest even): a double
 * rounding, but a deterministic one, and several times faster than the exact encoder;
 * the stored value is what every backend and the reference then read. */
static uint16_t fast_bf16(double x)
{
    float f = (float)x;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void fz_put(msa_dtype t, void *base, size_t i, double x)
{
    switch (t) {
    case MSA_DT_BF16: ((uint16_t *)base)[i] = fast_bf16(x); break;
    case MSA_DT_FP16: ((uint16_t *)base)[i] = msa_double_to_fp16(x); break;
    case MSA_DT_FP32: ((float *)base)[i] = (float)x; break;
    case MSA_DT_E4M3: ((uint8_t *)base)[i] = msa_double_to_e4m3(x, 1); break;
    default: break;
    }
}

/* Smallest positive normal of a storage type (subnormals lie below it). */
static double min_normal(msa_dtype t)
{
    switch (t) {
    case MSA_DT_FP16: return 0x1p-14;
    case MSA_DT_E4M3: return 0x1p-6;
    default: return 0x1p-126; /* bf16 and fp32 share the fp32 exponent range */
    }
}

/* An approximately standard normal value: the Irwin-Hall sum of four 16-bit uniforms
 * of one counter draw, centred and scaled to unit variance (tails end at +-3.46; the
 * heavy pattern supplies tails).  Integer arithmetic and one exact scaling, so it is the
 * same on every machine, and it needs no libm (Box-Muller's log and cos made generation
 * a fifth of a campaign's time). */
double fz_normal(uint64_t seed, uint64_t stream, uint64_t i)
{
    uint64_t u = msa_rng_u64(seed, stream, i);
    uint32_t sum = (uint32_t)(u & 0xffff) + (uint32_t)((u >> 16) & 0xffff) + (uint32_t)((u >> 32) & 0xffff) +
                   (uint32_t)(u >> 48);
    /* each (x + 0.5) / 65536 is uniform on (0, 1) with mean 1/2: the sum has mean 2 */
    double s = ((double)sum + 2.0) * 0x1p-16 - 2.0;
    return s * 1.7320508075688772; /* sqrt(3): the variance of the sum is 4/12 */
}

static double draw_value(int pattern, msa_dtype t, uint64_t seed, uint64_t stream, uint64_t i,
                         int is_key)
{
    double n = fz_normal(seed, stream, i);
    switch (pattern) {
    case FZ_D_UNIFORM: return 2.0 * msa_rng_uniform(seed, stream, i) - 1.0;
    case FZ_D_HEAVY: {
        double u = msa_rng_uniform(seed, stream ^ 0x5bd1e995u, i);
        double x = n / (u < HEAVY_FLOOR ? HEAVY_FLOOR : u);
        return x > HEAVY_MAX ? HEAVY_MAX : x < -HEAVY_MAX ? -HEAVY_MAX : x;
    }
    case FZ_D_SMALLINT: return (double)msa_rng_range(seed, stream, i, -4, 4);
    case FZ_D_EQUALKEYS: return is_key ? 1.0 : n;
    case FZ_D_LARGE: return n * LARGE_SCALE;
    case FZ_D_SUBNORMAL: /* one element in eight subnormal in the storage type */
        if ((msa_rng_u64(seed, stream ^ 0x27d4eb2du, i) & 7) == 0)
            return min_normal(t) * msa_rng_uniform(seed, stream, i) * (n < 0 ? -1 : 1);
        return n;
    default: return n;
    }
}

static int alloc_layout(const fz_spec *s, uint64_t seed, uint64_t id, msa_case *c)
{
    c->batch = s->batch;
    c->cu_q = msa_calloc((size_t)s->batch + 1, sizeof(int32_t));
    c->cu_k = msa_calloc((size_t)s->batch + 1, sizeof(int32_t));
    if (!c->cu_q || !c->cu_k) return MSA_ENOMEM;
    int used = 0, maxb = 0;
    for (int b = 0; b < s->batch; b++) {
        c->cu_q[b + 1] = c->cu_q[b] + s->lq[b];
        c->cu_k[b + 1] = c->cu_k[b] + s->lk[b];
        int nb = (s->lk[b] + s->B - 1) / s->B;
        used += nb;
        if (nb > maxb) maxb = nb;
    }
    c->Tq = c->cu_q[s->batch];
    if (!s->paged) {
        c->Tk = c->cu_k[s->batch];
        return 0;
    }
    msa_rng r;
    msa_rng_init(&r, seed, id ^ ((uint64_t)ST_LAYOUT << 56));
    int gaps = s->paged == 2 ? 1 + (int)msa_rng_next_range(&r, 0, used / 2 + 1) : 0;
    c->num_pages = used + gaps;
    c->max_blocks = maxb > 0 ? maxb : 1;
    c->Tk = c->num_pages * s->B;
    c->page_table = msa_calloc((size_t)s->batch * c->max_blocks, sizeof(int32_t));
    int *perm = msa_calloc((size_t)c->num_pages, sizeof(int));
    if (!c->page_table || !perm) { free(perm); return MSA_ENOMEM; }
    for (int i = 0; i < c->num_pages; i++) perm[i] = i;
    for (int i = c->num_pages - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)msa_rng_next_range(&r, 0, i), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int next = 0;
    for (int b = 0; b < s->batch; b++) {
        int nb = (s->lk[b] + s->B - 1) / s->B;
        for (int i = 0; i < c->max_blocks; i++)
            c->page_table[(size_t)b * c->max_blocks + i] = i < nb ? perm[next++] : 0;
    }
    free(perm);
    return 0;
}

static int alloc_tensors(msa_case *c)
{
    size_t es = msa_dtype_size(c->dtype), ies = msa_dtype_size(c->index_dtype);
    c->q = msa_calloc((size_t)c->Tq * c->Hq * c->D, es);
    c->k = msa_calloc((size_t)c->Tk * c->Hkv * c->D, es);
    c->v = msa_calloc((size_t)c->Tk * c->Hkv * c->D, es);
    c->index_q = msa_calloc((size_t)c->Tq * c->HI * c->DI, ies);
    c->index_k = msa_calloc((size_t)c->Tk * c->DI, ies);
    return c->q && c->k && c->v && c->index_q && c->index_k ? 0 : MSA_ENOMEM;
}

static void fill_main(const fz_spec *s, uint64_t seed, uint64_t id, msa_case *c)
{
    size_t nq = (size_t)c->Tq * c->Hq * c->D, nk = (size_t)c->Tk * c->Hkv * c->D;
    uint64_t sq = id ^ ((uint64_t)ST_Q << 56), sk = id ^ ((uint64_t)ST_K << 56);
    uint64_t sv = id ^ ((uint64_t)ST_V << 56);
    int vpat = s->data == FZ_D_LARGE || s->data == FZ_D_EQUALKEYS ? FZ_D_NORMAL : s->data;
    /* Subnormals only in v: arithmetic on subnormal operands takes a microcode assist on
     * x86 (~100x slower) in the kernel under test and in the reference alike, and in q or
     * k it would reach every score; in v they still meet every P.V flush-to-zero path. */
    int kpat = s->data == FZ_D_SUBNORMAL ? FZ_D_NORMAL : s->data;
    int qpat = kpat;
    for (size_t i = 0; i < nq; i++) fz_put(c->dtype, c->q, i, draw_value(qpat, c->dtype, seed, sq, i, 0));
    for (size_t i = 0; i < nk; i++) fz_put(c->dtype, c->k, i, draw_value(kpat, c->dtype, seed, sk, i, 1));
    for (size_t i = 0; i < nk; i++) fz_put(c->dtype, c->v, i, draw_value(vpat, c->dtype, seed, sv, i, 0));
}

/* NaN / inf in every storage row of k, v, index_k that no sequence owns (unused pages
 * and the tail of each sequence's last page): the contract says they are never read. */
static void fill_unused_nonfinite(msa_case *c)
{
    int B = c->block_size;
    char *owned = calloc((size_t)c->Tk ? (size_t)c->Tk : 1, 1);
    if (!owned) return;
    for (int b = 0; b < c->batch; b++)
        for (int j = 0; j < msa_case_lk(c, b); j++) owned[fz_kv_row(c, b, j)] = 1;
    for (int64_t row = 0; row < c->Tk; row++) {
        if (owned[row]) continue;
        double bad = (row / B) % 2 ? NAN : INFINITY;
        for (int i = 0; i < c->Hkv * c->D; i++) {
            fz_put(c->dtype, c->k, (size_t)row * c->Hkv * c->D + i, bad);
            fz_put(c->dtype, c->v, (size_t)row * c->Hkv * c->D + i, NAN);
        }
        for (int d = 0; d < c->DI; d++) fz_put(c->index_dtype, c->index_k, (size_t)row * c->DI + d, bad);
    }
    free(owned);
}

static void set_config(const fz_spec *s, msa_case *c)
{
    c->dtype = s->dt;
    c->index_dtype = s->idt;
    c->block_size = s->B;
    c->topk = s->topk;
    c->init_blocks = s->init;
    c->local_blocks = s->local;
    c->causal = s->causal;
    c->Hq = s->Hq, c->Hkv = s->Hkv, c->HI = s->Hkv, c->D = s->D, c->DI = s->DI;
    c->softmax_scale = 1.0 / sqrt((double)s->D);
    c->softmax_scale_is_default = 1;
    c->index_scale = s->index_scale_one ? 1.0 : 1.0 / sqrt((double)s->DI);
    c->index_scale_is_default = !s->index_scale_one;
}

int fz_build_case(const fz_spec *s0, uint64_t seed, uint64_t id, msa_case *c, msa_err *e)
{
    fz_spec s = *s0;
    int tq = 0, tk = 0;
    for (int b = 0; b < s.batch; b++) tq += s.lq[b], tk += s.lk[b];
    if (tq == 0) s.lq[0] = 1;      /* at least one query row to judge */
    if (tk == 0) s.lk[s.batch - 1] = 1; /* and one key row */
    memset(c, 0, sizeof *c);
    set_config(&s, c);
    int rc = alloc_layout(&s, seed, id, c);
    if (!rc) rc = alloc_tensors(c);
    if (rc) {
        msa_case_free(c);
        return msa_fail(e, MSA_ENOMEM, "fuzz: case %llu: out of memory", (unsigned long long)id);
    }
    fill_main(&s, seed, id, c);
    fz_fill_index(&s, seed, id ^ ((uint64_t)ST_IQ << 56), c);
    fz_apply_probe(&s, seed, id, c);
    if (s.nonfinite) fill_unused_nonfinite(c);
    snprintf(c->label, sizeof c->label, "fuzz s=%llu id=%llu data=%s index=%s probe=%s%s",
             (unsigned long long)seed, (unsigned long long)id, fz_data_names[s.data],
             fz_index_names[s.index], fz_probe_names[s.probe], s.nonfinite ? " nonfinite" : "");
    return 0;
}

int msa_fuzz_generate(const msa_fuzz_gen_cfg *g, uint64_t seed, uint64_t id, msa_case *c,
                      msa_err *e)
{
    fz_spec s;
    fz_draw_spec(g, seed, id, &s);
    return fz_build_case(&s, seed, id, c, e);
}

int64_t fz_kv_row(const msa_case *c, int b, int j)
{
    if (!c->page_table) return (int64_t)c->cu_k[b] + j;
    int B = c->block_size;
    return (int64_t)c->page_table[(size_t)b * c->max_blocks + j / B] * B + j % B;
}

int fz_row_nkeys(const msa_case *c, int t, int *seq)
{
    int b = 0;
    while (b + 1 < c->batch && t >= c->cu_q[b + 1]) b++;
    if (seq) *seq = b;
    int lq = msa_case_lq(c, b), lk = msa_case_lk(c, b), i = t - c->cu_q[b];
    if (!c->causal) return lk;
    int pos = lk - lq + i;
    return pos < 0 ? 0 : pos + 1 > lk ? lk : pos + 1;
}
