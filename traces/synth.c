/* synth.c - a synthetic one-layer trace of a long sequence (`msa gen --trace`), so that
 * `msa recall` can be run on a 1M-token layer on a machine reached with a few MiB of
 * files: the trace is generated there from a seed instead of being shipped.
 *
 * Layout (docs/TRACES.md section 5): one record "L00" (layer 0, step 0) whose case is a
 * batch of `windows` sequences over ONE hash-generated sequence of `tokens` tokens:
 * window w holds the `window_len` query rows ending at position
 * floor((w+1) * tokens / windows) - 1, over that position's key prefix, stored as pooled
 * K/V (docs/TRACES.md 1.1) exactly like `msa record` windows.  Every element is a pure
 * function of (seed, tensor, position, head, dim) through the counter RNG (common/rng.h),
 * rounded once to bf16, so the same options give the same bytes anywhere:
 *   k, v [t][g][d]  = N(0,1)                      (streams SYN_K, SYN_V)
 *   q [t][h][d]     = q_scale * N(0,1)            (stream SYN_Q, keyed by the position)
 *   index           = the "oracle index" of `msa record`: index_q[t,g] is the mean of
 *                     group g's (bf16) query heads, rounded to bf16, in slice g of an
 *                     Hkv*D vector (zero elsewhere); index_k[t] = token t's keys of all
 *                     groups concatenated (DI = Hkv * D)
 * The recorded topk_indices (ascending, -1 tail) are the reference's selection (fast
 * mode) at the trace's block size and k, unless disabled.  The meta says "synthetic".
 * It is not a model: the statistics describe random attention, the point is scale. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/numfmt.h"
#include "../common/rng.h"
#include "../reference/ref.h"
#include "traces.h"

enum { SYN_Q = 11, SYN_K = 12, SYN_V = 13 };
#define SYN_MAX_THREADS 64

/* ---------------------------------------------------------------- parallel fill */

typedef struct {
    uint16_t *dst;
    size_t n;
    uint64_t seed, stream;
    int nt, id;
} fill_job;

static void *fill_part(void *arg)
{
    fill_job *j = arg;
    size_t lo = j->n * (size_t)j->id / (size_t)j->nt, hi = j->n * (size_t)(j->id + 1) / (size_t)j->nt;
    for (size_t i = lo; i < hi; i++) j->dst[i] = msa_double_to_bf16(msa_rng_normal(j->seed, j->stream, i));
    return NULL;
}

/* dst[i] = bf16(N(0,1) of (seed, stream, i)) for i < n, on every core. */
static void fill_normal(uint16_t *dst, size_t n, uint64_t seed, uint64_t stream)
{
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = nc < 1 ? 1 : nc > SYN_MAX_THREADS ? SYN_MAX_THREADS : (int)nc;
    fill_job jobs[SYN_MAX_THREADS];
    pthread_t th[SYN_MAX_THREADS];
    int started[SYN_MAX_THREADS] = {0};
    for (int i = 0; i < nt; i++) {
        jobs[i] = (fill_job){dst, n, seed, stream, nt, i};
        started[i] = pthread_create(&th[i], NULL, fill_part, &jobs[i]) == 0;
        if (!started[i]) fill_part(&jobs[i]);
    }
    for (int i = 0; i < nt; i++)
        if (started[i]) pthread_join(th[i], NULL);
}

/* ---------------------------------------------------------------- the record */

static int check_opts(const msa_synth_opts *o, msa_err *e)
{
#define BAD(field, ...) return msa_fail(e, MSA_EINPUT, field ": " __VA_ARGS__)
    if (o->tokens < 1 || o->tokens > MSA_SYNTH_MAX_TOKENS) BAD("--lk", "%lld tokens, must be 1..%d", (long long)o->tokens, MSA_SYNTH_MAX_TOKENS);
    if (o->windows < 1 || o->windows > 4096) BAD("--windows", "%d, must be 1..4096", o->windows);
    if (o->window_len < 1 || o->window_len > 65536) BAD("--window-len", "%d, must be 1..65536", o->window_len);
    if ((int64_t)o->window_len > o->tokens / o->windows)
        BAD("--window-len", "%d rows do not fit in the first window (%lld tokens / %d windows)", o->window_len,
            (long long)o->tokens, o->windows);
    if (o->Hq < 1 || o->Hkv < 1 || o->Hq % o->Hkv) BAD("--shape", "Hq %d must be a multiple of Hkv %d", o->Hq, o->Hkv);
    if (o->D < 1 || o->D > 1024 || (int64_t)o->Hkv * o->D > 8192) BAD("--shape", "D %d with Hkv %d too large", o->D, o->Hkv);
    if (o->block_size < 1 || o->block_size > 4096) BAD("--block", "%d, must be 1..4096", o->block_size);
    if (o->topk < 1 || o->topk > 65536) BAD("--topk", "%d, must be 1..65536", o->topk);
    if (o->init_blocks < 0 || o->local_blocks < 0 || o->init_blocks + o->local_blocks > o->topk)
        BAD("--init/--local", "init %d + local %d must be >= 0 and <= topk %d", o->init_blocks, o->local_blocks, o->topk);
    if (!(o->q_scale > 0) || o->q_scale > 1e3) BAD("--q-scale", "%g, must be in (0, 1000]", o->q_scale);
    /* every window expands to its whole key prefix when read: the sum must fit an int */
    double rows = 0;
    for (int w = 0; w < o->windows; w++) rows += (double)((int64_t)(w + 1) * o->tokens / o->windows);
    if (rows > 2147483647.0)
        BAD("--windows", "%d windows over %lld tokens expand to %.0f key rows (more than 2^31-1)", o->windows,
            (long long)o->tokens, rows);
#undef BAD
    return MSA_OK;
}

/* Fills the case (expanded: each window's keys copied from the pools) and kv_rows. */
static int build_case(const msa_synth_opts *o, const uint16_t *kp, const uint16_t *vp, msa_case *c, int32_t **kv_rows,
                      msa_err *e)
{
    int W = o->windows, L = o->window_len, Hq = o->Hq, Hkv = o->Hkv, D = o->D, G = Hq / Hkv, DI = Hkv * D;
    memset(c, 0, sizeof *c);
    c->dtype = c->index_dtype = MSA_DT_BF16;
    c->block_size = o->block_size, c->topk = o->topk, c->init_blocks = o->init_blocks;
    c->local_blocks = o->local_blocks, c->causal = 1;
    c->batch = W, c->Hq = Hq, c->Hkv = Hkv, c->HI = Hkv, c->D = D, c->DI = DI;
    c->softmax_scale_is_default = c->index_scale_is_default = 1;
    c->softmax_scale = 1.0 / sqrt((double)D);
    c->index_scale = 1.0 / sqrt((double)DI);
    c->cu_q = malloc(sizeof(int32_t) * (size_t)(W + 1));
    c->cu_k = malloc(sizeof(int32_t) * (size_t)(W + 1));
    if (!c->cu_q || !c->cu_k) return msa_fail(e, MSA_ENOMEM, "gen --trace: out of memory");
    c->cu_q[0] = c->cu_k[0] = 0;
    for (int w = 0; w < W; w++) {
        c->cu_q[w + 1] = c->cu_q[w] + L;
        c->cu_k[w + 1] = c->cu_k[w] + (int32_t)((int64_t)(w + 1) * o->tokens / W);
    }
    c->Tq = c->cu_q[W], c->Tk = c->cu_k[W];
    size_t kvw = (size_t)Hkv * D, nq = (size_t)c->Tq * Hq * D, nk = (size_t)c->Tk * kvw;
    c->q = malloc(nq * 2 + 1);
    c->index_q = calloc((size_t)c->Tq * Hkv * DI + 1, 2);
    c->k = malloc(nk * 2 + 1);
    c->v = malloc(nk * 2 + 1);
    c->index_k = malloc(nk * 2 + 1); /* DI = Hkv * D: the same rows as k */
    *kv_rows = malloc(sizeof(int32_t) * (size_t)c->Tk + 1);
    if (!c->q || !c->index_q || !c->k || !c->v || !c->index_k || !*kv_rows)
        return msa_fail(e, MSA_ENOMEM, "gen --trace: out of memory for %d key rows", c->Tk);
    uint16_t *q = c->q, *iq = c->index_q;
    for (int w = 0; w < W; w++) {
        int lk = c->cu_k[w + 1] - c->cu_k[w];
        memcpy((uint16_t *)c->k + (size_t)c->cu_k[w] * kvw, kp, (size_t)lk * kvw * 2);
        memcpy((uint16_t *)c->v + (size_t)c->cu_k[w] * kvw, vp, (size_t)lk * kvw * 2);
        memcpy((uint16_t *)c->index_k + (size_t)c->cu_k[w] * kvw, kp, (size_t)lk * kvw * 2);
        for (int j = 0; j < lk; j++) (*kv_rows)[c->cu_k[w] + j] = j;
        for (int i = 0; i < L; i++) {
            int64_t pos = lk - L + i; /* bottom-right aligned: the window's last rows */
            size_t t = (size_t)c->cu_q[w] + (size_t)i;
            for (int hd = 0; hd < Hq * D; hd++)
                q[t * Hq * D + hd] = msa_double_to_bf16(o->q_scale * msa_rng_normal(o->seed, SYN_Q, (uint64_t)pos * (uint64_t)(Hq * D) + (uint64_t)hd));
            for (int g = 0; g < Hkv; g++)
                for (int d = 0; d < D; d++) {
                    double s = 0;
                    for (int h = g * G; h < (g + 1) * G; h++) s += msa_bf16_to_double(q[(t * Hq + h) * D + d]);
                    iq[(t * Hkv + g) * DI + (size_t)g * D + d] = msa_double_to_bf16(s / G);
                }
        }
    }
    snprintf(c->label, sizeof c->label, "synthetic seed=%llu T=%lld", (unsigned long long)o->seed, (long long)o->tokens);
    return msa_case_validate(c, 0, e);
}

int msa_trace_synthetic(const msa_synth_opts *o, const char *path, int compress, msa_err *e)
{
    int rc = check_opts(o, e);
    if (rc) return rc;
    size_t kvw = (size_t)o->Hkv * o->D, n = (size_t)o->tokens * kvw;
    uint16_t *kp = malloc(n * 2 + 1), *vp = malloc(n * 2 + 1);
    int32_t *rows = NULL, *topk = NULL;
    msa_case c;
    memset(&c, 0, sizeof c);
    msa_trace_writer w;
    msa_trace_writer_init(&w);
    if (!kp || !vp) rc = msa_fail(e, MSA_ENOMEM, "gen --trace: out of memory for %lld tokens", (long long)o->tokens);
    if (!rc) {
        fill_normal(kp, n, o->seed, SYN_K);
        fill_normal(vp, n, o->seed, SYN_V);
        rc = build_case(o, kp, vp, &c, &rows, e);
    }
    if (!rc && o->record_topk) {
        topk = malloc(sizeof *topk * (size_t)c.HI * (size_t)c.Tq * (size_t)c.topk);
        if (!topk) rc = msa_fail(e, MSA_ENOMEM, "gen --trace: out of memory");
        if (!rc) rc = msa_ref_select(&c, MSA_REF_FAST, topk, NULL, e);
    }
    if (!rc) rc = msa_trace_add_pooled(&w, "L00", 0, 0, &c, rows, (int)o->tokens, kp, vp, kp, topk, NULL, NULL, NULL, e);
    if (!rc) {
        char meta[2048];
        snprintf(meta, sizeof meta,
                 "{\"format\": \"%s\", \"version\": %d, \"synthetic\": true, "
                 "\"model\": \"synthetic (msa gen --trace, seed %llu; hash-generated, not a model)\", "
                 "\"index\": \"oracle\", \"index_definition\": \"index_q[t,g] = bf16(mean of group g's query heads) in slice g "
                 "of an Hkv*D vector, zero elsewhere; index_k[t] = concat over groups of k[t,g]\", "
                 "\"order\": \"ascending\", \"arith\": \"fp32\", \"dtype\": \"bf16\", \"layers\": [0], "
                 "\"tokens\": %lld, \"windows\": %d, \"window_len\": %d, "
                 "\"positions\": \"window w: the window_len rows ending at floor((w+1)*tokens/windows)-1\", "
                 "\"shape\": {\"Hq\": %d, \"Hkv\": %d, \"D\": %d, \"DI\": %d}, \"q_scale\": %.17g, \"seed\": %llu, "
                 "\"block_size\": %d, \"topk\": %d, \"init_blocks\": %d, \"local_blocks\": %d, "
                 "\"recorded_topk\": %s}",
                 MSA_TRACE_FORMAT, MSA_TRACE_VERSION, (unsigned long long)o->seed, (long long)o->tokens, o->windows,
                 o->window_len, o->Hq, o->Hkv, o->D, o->Hkv * o->D, o->q_scale, (unsigned long long)o->seed,
                 o->block_size, o->topk, o->init_blocks, o->local_blocks,
                 o->record_topk ? "\"reference selection, fast mode\"" : "null");
        rc = msa_trace_write(&w, path, meta, compress, e);
    }
    msa_trace_writer_free(&w);
    msa_case_free(&c);
    free(kp); free(vp); free(rows); free(topk);
    return rc;
}
