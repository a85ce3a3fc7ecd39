/* llama.h - private to traces/: a Llama-layout decoder (RMSNorm, RoPE, GQA attention,
 * SwiGLU MLP, tied or untied LM head) loaded from a GGUF file, run in fp32 on the CPU with
 * threads.  Enough to run SmolLM2-135M and to hand each layer's post-RoPE q/k/v to a
 * recorder.  It does not do KV caching across calls: every call is one prefill. */
#ifndef MSA_TRACES_LLAMA_H
#define MSA_TRACES_LLAMA_H

#include "traces.h"

typedef struct {
    float *attn_norm, *ffn_norm;
    float *wq, *wk, *wv, *wo;  /* [out][in] */
    float *wg, *wu, *wd;
} msa_llama_layer;

typedef struct {
    int n_layer, d, n_head, n_kv, hd, d_ff, vocab, ctx;
    double rope_theta, eps;
    float *emb;       /* [vocab][d] */
    float *lm_head;   /* [vocab][d] (== emb when tied) */
    float *out_norm;
    msa_llama_layer *L;
    int threads;
} msa_llama;

int msa_llama_load(const msa_gguf *g, msa_llama *m, msa_err *e);
void msa_llama_free(msa_llama *m);

/* Called after RoPE in each layer with q [T][n_head][hd], k, v [T][n_kv][hd] in Hugging
 * Face's head-dim order (rotate-half layout, un-permuted from GGUF's interleaved one). */
typedef int (*msa_llama_hook)(void *ctx, int layer, int T, const float *q, const float *k, const float *v);

/* One prefill over tokens[0..T).  logits_cb (may be NULL) receives, chunk by chunk, the
 * logits of rows logits_from..T-1:
 * logits [n][vocab] of rows t0..t0+n-1. */
typedef int (*msa_llama_logits_cb)(void *ctx, int t0, int n, const float *logits);
int msa_llama_forward(const msa_llama *m, const int32_t *tokens, int T, msa_llama_hook hook, void *hctx, int logits_from,
                      msa_llama_logits_cb cb, void *cctx, msa_err *e);

#endif
