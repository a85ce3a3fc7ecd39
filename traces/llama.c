/* llama.c - the Llama decoder of llama.h in fp32: weights dequantised once from GGUF,
 * matrix products tiled 4 tokens x 4 output rows with 4-wide vector accumulators
 * (GCC/Clang vector extensions: SSE on x86-64, NEON on aarch64), attention one query
 * row at a time, all parallelised over rows with POSIX threads.
 * GGUF's Q and K weights are stored permuted for llama.cpp's interleaved RoPE (pairs
 * 2i, 2i+1); rotating those pairs is the same computation as Hugging Face's rotate-half
 * on the un-permuted weights, so the hook un-permutes q and k (GGUF dim 2i+p is HF dim
 * p*hd/2 + i) before the recorder sees them. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llama.h"

typedef float v4f __attribute__((vector_size(16)));

static v4f ld4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static float hsum(v4f v) { return (v[0] + v[1]) + (v[2] + v[3]); }

/* ---------------------------------------------------------------- threads */

typedef void (*task_fn)(void *ctx, int i);
typedef struct {
    task_fn f;
    void *ctx;
    int n;
    atomic_int next;
} pool_job;

static void *pool_worker(void *arg)
{
    pool_job *j = arg;
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) j->f(j->ctx, i);
    return NULL;
}

/* Runs f(ctx, i) for i in [0, n) on `threads` threads, dynamically scheduled. */
static void par_for(int n, int threads, task_fn f, void *ctx)
{
    pool_job j = {.f = f, .ctx = ctx, .n = n};
    atomic_init(&j.next, 0);
    pthread_t th[64];
    int started = 0;
    for (int t = 1; t < threads && t < 64; t++)
        if (pthread_create(&th[started], NULL, pool_worker, &j) == 0) started++;
    pool_worker(&j);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}

/* ---------------------------------------------------------------- matmul */

typedef struct {
    const float *x, *w;
    float *y;
    int T, in, out;
    int ldx, ldw;   /* row strides of x and w (>= in) */
    int ldy;        /* row stride of y (>= out) */
    int accumulate; /* y += x W^T instead of y = */
} mm_job;

#define MM_ROWS 32 /* tokens per task: x rows stay in L1/L2 while W streams */

static void store(const mm_job *J, int t, int o, float v)
{
    float *y = J->y + (size_t)t * (size_t)J->ldy + (size_t)o;
    *y = J->accumulate ? *y + v : v;
}

/* Portable tile: 4 tokens x 4 outputs, 4-wide vectors (SSE / NEON). */
static void mm_tile_generic(const mm_job *J, int t0, int nt, int o0, int no)
{
    v4f acc[4][4] = {{{0}}};
    const float *xr[4], *wr[4];
    for (int a = 0; a < 4; a++) xr[a] = J->x + (size_t)(t0 + (a < nt ? a : 0)) * (size_t)J->ldx;
    for (int b = 0; b < 4; b++) wr[b] = J->w + (size_t)(o0 + (b < no ? b : 0)) * (size_t)J->ldw;
    for (int i = 0; i < J->in; i += 4) {
        v4f xv[4] = {ld4(xr[0] + i), ld4(xr[1] + i), ld4(xr[2] + i), ld4(xr[3] + i)};
        for (int b = 0; b < 4; b++) {
            v4f wv = ld4(wr[b] + i);
            for (int a = 0; a < 4; a++) acc[a][b] += xv[a] * wv;
        }
    }
    for (int a = 0; a < nt; a++)
        for (int b = 0; b < no; b++) store(J, t0 + a, o0 + b, hsum(acc[a][b]));
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
/* AVX2+FMA tile: 4 tokens x 2 outputs, 8 accumulators of 8 floats; in % 8 == 0. */
__attribute__((target("avx2,fma"))) static void mm_tile_avx2(const mm_job *J, int t0, int nt, int o0, int no)
{
    __m256 acc[4][2];
    const float *xr[4], *wr[2];
    for (int a = 0; a < 4; a++) {
        xr[a] = J->x + (size_t)(t0 + (a < nt ? a : 0)) * (size_t)J->ldx;
        acc[a][0] = acc[a][1] = _mm256_setzero_ps();
    }
    for (int b = 0; b < 2; b++) wr[b] = J->w + (size_t)(o0 + (b < no ? b : 0)) * (size_t)J->ldw;
    for (int i = 0; i < J->in; i += 8) {
        __m256 w0 = _mm256_loadu_ps(wr[0] + i), w1 = _mm256_loadu_ps(wr[1] + i);
        for (int a = 0; a < 4; a++) {
            __m256 xv = _mm256_loadu_ps(xr[a] + i);
            acc[a][0] = _mm256_fmadd_ps(xv, w0, acc[a][0]);
            acc[a][1] = _mm256_fmadd_ps(xv, w1, acc[a][1]);
        }
    }
    for (int a = 0; a < nt; a++)
        for (int b = 0; b < no; b++) {
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[a][b]), _mm256_extractf128_ps(acc[a][b], 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
            store(J, t0 + a, o0 + b, _mm_cvtss_f32(h));
        }
}
#endif

static int use_avx2(void)
{
#ifdef HAVE_AVX2_PATH
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return cached;
#else
    return 0;
#endif
}

/* Rows [t0, t1) of one job on the calling thread. */
static void mm_rows(const mm_job *J, int t0, int t1)
{
#ifdef HAVE_AVX2_PATH
    if (use_avx2() && J->in % 8 == 0) {
        for (int o = 0; o < J->out; o += 2)
            for (int t = t0; t < t1; t += 4)
                mm_tile_avx2(J, t, t1 - t < 4 ? t1 - t : 4, o, J->out - o < 2 ? J->out - o : 2);
        return;
    }
#endif
    for (int o = 0; o < J->out; o += 4)
        for (int t = t0; t < t1; t += 4)
            mm_tile_generic(J, t, t1 - t < 4 ? t1 - t : 4, o, J->out - o < 4 ? J->out - o : 4);
}

static void mm_task(void *ctx, int i)
{
    const mm_job *J = ctx;
    int t0 = i * MM_ROWS, t1 = t0 + MM_ROWS < J->T ? t0 + MM_ROWS : J->T;
    mm_rows(J, t0, t1);
}

/* y[T][out] (=|+=) x[T][in] . w[out][in]^T; in must be a multiple of 4. */
static void matmul(const msa_llama *m, const float *x, const float *w, float *y, int T, int in, int out, int acc)
{
    mm_job J = {.x = x, .w = w, .y = y, .T = T, .in = in, .out = out, .ldx = in, .ldw = in, .ldy = out, .accumulate = acc};
    par_for((T + MM_ROWS - 1) / MM_ROWS, m->threads, mm_task, &J);
}

/* ---------------------------------------------------------------- pieces */

static void rmsnorm(const float *x, const float *g, float *y, int T, int d, double eps)
{
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)x[(size_t)t * d + i] * x[(size_t)t * d + i];
        float r = (float)(1.0 / sqrt(ss / d + eps));
        for (int i = 0; i < d; i++) y[(size_t)t * d + i] = x[(size_t)t * d + i] * r * g[i];
    }
}

/* Interleaved RoPE on GGUF-ordered heads: pair (2i, 2i+1) turns by pos * theta^(-2i/hd). */
static void rope(float *x, int T, int nh, int hd, double theta)
{
    for (int t = 0; t < T; t++)
        for (int i = 0; i < hd / 2; i++) {
            double a = t * pow(theta, -2.0 * i / hd);
            float c = (float)cos(a), s = (float)sin(a);
            for (int h = 0; h < nh; h++) {
                float *p = x + ((size_t)t * nh + h) * hd + 2 * i;
                float x0 = p[0], x1 = p[1];
                p[0] = x0 * c - x1 * s;
                p[1] = x0 * s + x1 * c;
            }
        }
}

/* GGUF head-dim order -> Hugging Face order. */
static void unpermute(const float *src, float *dst, int rows, int hd)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < hd / 2; i++)
            for (int p = 0; p < 2; p++) dst[(size_t)r * hd + p * hd / 2 + i] = src[(size_t)r * hd + 2 * i + p];
}

/* Attention as two small matrix products per (head, block of ATT_QB queries):
 * S = Q K^T over the visible keys, causal mask and softmax in fp32, O = P V. */
#define ATT_QB 32

typedef struct {
    const msa_llama *m;
    const float *q;
    const float *kg; /* [n_kv][T][hd] contiguous keys per group */
    const float *vt; /* [n_kv][hd][Tp] transposed values, zero padded */
    float *o;
    int T, Tp;
    atomic_int failed;
} att_job;

static void att_task(void *ctx, int i)
{
    att_job *J = ctx;
    const msa_llama *m = J->m;
    int nqb = (J->T + ATT_QB - 1) / ATT_QB, h = i / nqb, qb = i % nqb, hd = m->hd;
    int g = h / (m->n_head / m->n_kv), t0 = qb * ATT_QB, nq = J->T - t0 < ATT_QB ? J->T - t0 : ATT_QB;
    int nk = t0 + nq, nkp = (nk + 7) / 8 * 8;
    float *qb_rows = malloc(sizeof(float) * (size_t)ATT_QB * hd), *S = calloc((size_t)ATT_QB * nkp, sizeof(float));
    if (!qb_rows || !S) {
        free(qb_rows); free(S);
        atomic_store(&J->failed, 1);
        return;
    }
    for (int a = 0; a < nq; a++)
        memcpy(qb_rows + (size_t)a * hd, J->q + ((size_t)(t0 + a) * m->n_head + h) * hd, sizeof(float) * hd);
    mm_job s = {.x = qb_rows, .w = J->kg + (size_t)g * J->T * hd, .y = S, .T = nq, .in = hd, .out = nk,
                .ldx = hd, .ldw = hd, .ldy = nkp};
    mm_rows(&s, 0, nq);
    float scale = 1.0f / sqrtf((float)hd);
    for (int a = 0; a < nq; a++) {
        float *r = S + (size_t)a * nkp, mx = -INFINITY, z = 0;
        int vis = t0 + a + 1;
        for (int j = 0; j < vis; j++) mx = fmaxf(mx, r[j] *= scale);
        for (int j = 0; j < vis; j++) z += (r[j] = expf(r[j] - mx));
        for (int j = 0; j < vis; j++) r[j] /= z;
        for (int j = vis; j < nkp; j++) r[j] = 0;
    }
    mm_job o = {.x = S, .w = J->vt + (size_t)g * hd * J->Tp, .y = J->o + ((size_t)t0 * m->n_head + h) * hd, .T = nq,
                .in = nkp, .out = hd, .ldx = nkp, .ldw = J->Tp, .ldy = m->n_head * hd};
    mm_rows(&o, 0, nq);
    free(qb_rows);
    free(S);
}

static int attention(const msa_llama *m, int T, const float *q, const float *k, const float *v, float *o, msa_err *e)
{
    int hd = m->hd, Tp = (T + 7) / 8 * 8;
    float *kg = malloc(sizeof(float) * (size_t)m->n_kv * T * hd), *vt = calloc((size_t)m->n_kv * hd * Tp, sizeof(float));
    if (!kg || !vt) {
        free(kg); free(vt);
        return msa_fail(e, MSA_ENOMEM, "llama: attention: out of memory");
    }
    for (int g = 0; g < m->n_kv; g++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < hd; d++) {
                size_t src = ((size_t)t * m->n_kv + g) * hd + d;
                kg[((size_t)g * T + t) * hd + d] = k[src];
                vt[((size_t)g * hd + d) * Tp + t] = v[src];
            }
    att_job J = {.m = m, .q = q, .kg = kg, .vt = vt, .o = o, .T = T, .Tp = Tp};
    atomic_init(&J.failed, 0);
    par_for(m->n_head * ((T + ATT_QB - 1) / ATT_QB), m->threads, att_task, &J);
    free(kg);
    free(vt);
    return atomic_load(&J.failed) ? msa_fail(e, MSA_ENOMEM, "llama: attention: out of memory") : MSA_OK;
}

/* ---------------------------------------------------------------- loading */

static int num_kv(const msa_gguf *g, const char *key, double *v, msa_err *e)
{
    const msa_gguf_kv *kv = msa_gguf_find_kv(g, key);
    if (!kv || kv->str || kv->strs || kv->arr) return msa_fail(e, MSA_EINPUT, "gguf: %s: missing or not a number", key);
    *v = kv->num;
    return MSA_OK;
}

/* Dequantises a 2-D tensor [rows][cols] (cols = dims[0]) into a new float array. */
static int dequant(const msa_gguf *g, const char *name, uint64_t cols, uint64_t rows, float **out, msa_err *e)
{
    const msa_gguf_tensor *t = msa_gguf_find_tensor(g, name);
    if (!t) return msa_fail(e, MSA_EINPUT, "gguf: %s: tensor missing", name);
    if (t->dims[0] != cols || t->nelem != cols * rows)
        return msa_fail(e, MSA_EINPUT, "gguf: %s: shape [%llu, %llu], expected [%llu, %llu]", name,
                        (unsigned long long)t->dims[0], (unsigned long long)(t->nelem / t->dims[0]),
                        (unsigned long long)cols, (unsigned long long)rows);
    *out = malloc(sizeof **out * (size_t)(cols * rows));
    if (!*out) return msa_fail(e, MSA_ENOMEM, "gguf: %s: out of memory", name);
    for (uint64_t r = 0; r < rows; r++)
        if (msa_gguf_row(t, r, *out + r * cols)) return msa_fail(e, MSA_EINPUT, "gguf: %s: cannot decode", name);
    return MSA_OK;
}

static int load_layer(const msa_gguf *g, msa_llama *m, int l, msa_err *e)
{
    msa_llama_layer *L = &m->L[l];
    char n[64];
    int rc = MSA_OK;
    uint64_t d = (uint64_t)m->d, qd = (uint64_t)m->n_head * (uint64_t)m->hd, kd = (uint64_t)m->n_kv * (uint64_t)m->hd;
    uint64_t f = (uint64_t)m->d_ff;
#define LOAD(field, suffix, cols, rows) \
    if (!rc) { snprintf(n, sizeof n, "blk.%d.%s.weight", l, suffix); rc = dequant(g, n, cols, rows, &L->field, e); }
    LOAD(attn_norm, "attn_norm", d, 1)
    LOAD(ffn_norm, "ffn_norm", d, 1)
    LOAD(wq, "attn_q", d, qd)
    LOAD(wk, "attn_k", d, kd)
    LOAD(wv, "attn_v", d, kd)
    LOAD(wo, "attn_output", qd, d)
    LOAD(wg, "ffn_gate", d, f)
    LOAD(wu, "ffn_up", d, f)
    LOAD(wd, "ffn_down", f, d)
#undef LOAD
    return rc;
}

int msa_llama_load(const msa_gguf *g, msa_llama *m, msa_err *e)
{
    memset(m, 0, sizeof *m);
    const msa_gguf_kv *arch = msa_gguf_find_kv(g, "general.architecture");
    if (!arch || !arch->str || strcmp(arch->str, "llama"))
        return msa_fail(e, MSA_EINPUT, "gguf: general.architecture: expected \"llama\"");
    double v[9];
    static const char *const keys[9] = {"llama.block_count", "llama.embedding_length", "llama.attention.head_count",
                                        "llama.attention.head_count_kv", "llama.feed_forward_length",
                                        "llama.context_length", "llama.rope.freq_base",
                                        "llama.attention.layer_norm_rms_epsilon", "llama.rope.dimension_count"};
    for (int i = 0; i < 9; i++) {
        int rc = num_kv(g, keys[i], &v[i], e);
        if (rc) return rc;
    }
    m->n_layer = (int)v[0]; m->d = (int)v[1]; m->n_head = (int)v[2]; m->n_kv = (int)v[3];
    m->d_ff = (int)v[4]; m->ctx = (int)v[5]; m->rope_theta = v[6]; m->eps = v[7];
    if (m->n_layer < 1 || m->n_layer > 1000 || m->n_head < 1 || m->n_kv < 1 || m->n_head % m->n_kv ||
        m->d % m->n_head || m->d % 4 || m->d_ff % 4 || m->d_ff < 1)
        return msa_fail(e, MSA_EINPUT, "gguf: llama.*: inconsistent shapes");
    m->hd = m->d / m->n_head;
    if (m->hd % 4 || m->hd > 128 || (int)v[8] != m->hd)
        return msa_fail(e, MSA_EINPUT, "gguf: head dim %d: needs full rotary, a multiple of 4, <= 128", m->hd);
    const msa_gguf_tensor *te = msa_gguf_find_tensor(g, "token_embd.weight");
    if (!te || te->dims[0] != (uint64_t)m->d) return msa_fail(e, MSA_EINPUT, "gguf: token_embd.weight: missing or wrong width");
    m->vocab = (int)(te->nelem / te->dims[0]);
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    m->threads = nproc < 1 ? 1 : nproc > 64 ? 64 : (int)nproc;
    m->L = calloc((size_t)m->n_layer, sizeof *m->L);
    if (!m->L) return msa_fail(e, MSA_ENOMEM, "llama: out of memory");
    int rc = dequant(g, "token_embd.weight", (uint64_t)m->d, (uint64_t)m->vocab, &m->emb, e);
    if (!rc) rc = dequant(g, "output_norm.weight", (uint64_t)m->d, 1, &m->out_norm, e);
    if (!rc && msa_gguf_find_tensor(g, "output.weight"))
        rc = dequant(g, "output.weight", (uint64_t)m->d, (uint64_t)m->vocab, &m->lm_head, e);
    else m->lm_head = m->emb; /* tied embeddings (SmolLM2) */
    for (int l = 0; l < m->n_layer && !rc; l++) rc = load_layer(g, m, l, e);
    if (rc) msa_llama_free(m);
    return rc;
}

void msa_llama_free(msa_llama *m)
{
    for (int l = 0; m->L && l < m->n_layer; l++) {
        msa_llama_layer *L = &m->L[l];
        free(L->attn_norm); free(L->ffn_norm); free(L->wq); free(L->wk); free(L->wv); free(L->wo);
        free(L->wg); free(L->wu); free(L->wd);
    }
    if (m->lm_head != m->emb) free(m->lm_head);
    free(m->emb);
    free(m->out_norm);
    free(m->L);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- forward */

typedef struct {
    float *x, *h, *q, *k, *v, *att, *g, *u, *qh, *kh, *vh;
} acts;

static void acts_free(acts *a)
{
    free(a->x); free(a->h); free(a->q); free(a->k); free(a->v); free(a->att); free(a->g); free(a->u);
    free(a->qh); free(a->kh); free(a->vh);
}

static int acts_alloc(const msa_llama *m, int T, acts *a)
{
    size_t t = (size_t)T, qd = (size_t)m->n_head * m->hd, kd = (size_t)m->n_kv * m->hd;
    memset(a, 0, sizeof *a);
    a->x = malloc(sizeof(float) * t * m->d); a->h = malloc(sizeof(float) * t * m->d);
    a->q = malloc(sizeof(float) * t * qd); a->k = malloc(sizeof(float) * t * kd); a->v = malloc(sizeof(float) * t * kd);
    a->att = malloc(sizeof(float) * t * qd);
    a->g = malloc(sizeof(float) * t * m->d_ff); a->u = malloc(sizeof(float) * t * m->d_ff);
    a->qh = malloc(sizeof(float) * t * qd); a->kh = malloc(sizeof(float) * t * kd); a->vh = malloc(sizeof(float) * t * kd);
    return a->x && a->h && a->q && a->k && a->v && a->att && a->g && a->u && a->qh && a->kh && a->vh ? 0 : -1;
}

static int layer_forward(const msa_llama *m, int l, int T, acts *a, msa_llama_hook hook, void *hctx, msa_err *e)
{
    const msa_llama_layer *L = &m->L[l];
    int qd = m->n_head * m->hd, kd = m->n_kv * m->hd;
    rmsnorm(a->x, L->attn_norm, a->h, T, m->d, m->eps);
    matmul(m, a->h, L->wq, a->q, T, m->d, qd, 0);
    matmul(m, a->h, L->wk, a->k, T, m->d, kd, 0);
    matmul(m, a->h, L->wv, a->v, T, m->d, kd, 0);
    rope(a->q, T, m->n_head, m->hd, m->rope_theta);
    rope(a->k, T, m->n_kv, m->hd, m->rope_theta);
    if (hook) {
        unpermute(a->q, a->qh, T * m->n_head, m->hd);
        unpermute(a->k, a->kh, T * m->n_kv, m->hd);
        int rc = hook(hctx, l, T, a->qh, a->kh, a->v);
        if (rc) return rc;
    }
    int rc = attention(m, T, a->q, a->k, a->v, a->att, e);
    if (rc) return rc;
    matmul(m, a->att, L->wo, a->x, T, qd, m->d, 1);
    rmsnorm(a->x, L->ffn_norm, a->h, T, m->d, m->eps);
    matmul(m, a->h, L->wg, a->g, T, m->d, m->d_ff, 0);
    matmul(m, a->h, L->wu, a->u, T, m->d, m->d_ff, 0);
    for (size_t i = 0; i < (size_t)T * m->d_ff; i++) a->g[i] = a->g[i] / (1.0f + expf(-a->g[i])) * a->u[i];
    matmul(m, a->g, L->wd, a->x, T, m->d_ff, m->d, 1);
    return MSA_OK;
}

/* Rows of logits computed at once: 64 x 49152 floats = 12.6 MB. */
#define LOGIT_CHUNK 64

static int head(const msa_llama *m, int T, acts *a, int from, msa_llama_logits_cb cb, void *cctx, msa_err *e)
{
    if (!cb || from >= T) return MSA_OK;
    rmsnorm(a->x, m->out_norm, a->h, T, m->d, m->eps);
    float *lg = malloc(sizeof *lg * (size_t)LOGIT_CHUNK * (size_t)m->vocab);
    if (!lg) return msa_fail(e, MSA_ENOMEM, "llama: logits: out of memory");
    int rc = MSA_OK;
    for (int t0 = from < 0 ? 0 : from; t0 < T && !rc; t0 += LOGIT_CHUNK) {
        int n = T - t0 < LOGIT_CHUNK ? T - t0 : LOGIT_CHUNK;
        matmul(m, a->h + (size_t)t0 * m->d, m->lm_head, lg, n, m->d, m->vocab, 0);
        rc = cb(cctx, t0, n, lg);
    }
    free(lg);
    return rc;
}

int msa_llama_forward(const msa_llama *m, const int32_t *tokens, int T, msa_llama_hook hook, void *hctx, int logits_from,
                      msa_llama_logits_cb cb, void *cctx, msa_err *e)
{
    if (T < 1 || T > m->ctx) return msa_fail(e, MSA_EINPUT, "llama: %d tokens (1..%d allowed)", T, m->ctx);
    acts a;
    if (acts_alloc(m, T, &a)) {
        acts_free(&a);
        return msa_fail(e, MSA_ENOMEM, "llama: activations for %d tokens: out of memory", T);
    }
    int rc = MSA_OK;
    for (int t = 0; t < T && !rc; t++) {
        if (tokens[t] < 0 || tokens[t] >= m->vocab) rc = msa_fail(e, MSA_EINPUT, "llama: token %d out of range", tokens[t]);
        else memcpy(a.x + (size_t)t * m->d, m->emb + (size_t)tokens[t] * m->d, sizeof(float) * (size_t)m->d);
    }
    for (int l = 0; l < m->n_layer && !rc; l++) rc = layer_forward(m, l, T, &a, hook, hctx, e);
    if (!rc) rc = head(m, T, &a, logits_from, cb, cctx, e);
    acts_free(&a);
    return rc;
}
