/* harness_run.c - msa_kernel_run: builds the msa_problem for a case in the backend's
 * memory, wraps every output buffer in guard bands and pre-fills it with a poison
 * pattern (so overruns and unwritten elements are visible), optionally fills the K/V rows
 * an ATTEND run must not read with NaN (in a private copy of the case), calls the entry,
 * times it, checks the guards and brings results back to the host decoded to double.
 * It judges nothing: a poisoned or unwritten value simply comes back for the oracle. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

/* Guard band on each side of every output buffer: one page, enough to catch the usual
 * off-by-one-row overruns (a row is at most Hq*D*4 bytes = 32 KiB only for fp32 M3
 * outputs; larger overruns still land in the band's first bytes). */
#define HARNESS_GUARD_BYTES 4096
#define HARNESS_GUARD_BYTE 0xA5
/* Output pre-fill: quiet NaNs with a distinctive payload, and an id no selection uses. */
#define HARNESS_POISON_F32 0x7FD5A5A5u
#define HARNESS_POISON_BF16 0x7FD5u
#define HARNESS_POISON_FP16 0x7ED5u
#define HARNESS_POISON_ID 0x7FFFFFA5
/* NaN codes for poisoned inputs (e4m3: OCP spec, 0x7F is NaN). */
#define HARNESS_NAN_BF16 0x7FC0u
#define HARNESS_NAN_FP16 0x7E00u
#define HARNESS_NAN_F32 0x7FC00000u
#define HARNESS_NAN_E4M3 0x7Fu

/* The stored output dtype (docs/ABI.md "out_dtype"): a declared BF16 / FP16 / FP32 is
 * what the backend always stores; MSA_DT_INVALID (0) declares "follows the input":
 * bf16 for bf16 inputs, fp16 for fp16, fp32 for fp32 and e4m3 (the oracle's rule too). */
static msa_dtype out_dtype_for(msa_dtype declared, msa_dtype input)
{
    if (declared != MSA_DT_INVALID) return declared;
    return input == MSA_DT_BF16 || input == MSA_DT_FP16 ? input : MSA_DT_FP32;
}

/* ---- nearest fp32 of a scale ---- */

/* The float nearest to 1/sqrt(n): x > m  <=>  m*m*n < 1 for a midpoint m between floats;
 * m has <= 25 significant bits so m*m is exact, and fma rounds m*m*n - 1 once, which
 * keeps its sign. */
static float nearest_f32_rsqrt(int n)
{
    float f = (float)(1.0 / sqrt((double)n));
    for (int it = 0; it < 2; it++) {
        float up = nextafterf(f, INFINITY), dn = nextafterf(f, 0.0f);
        double mu = ((double)f + up) / 2, md = ((double)f + dn) / 2;
        double su = fma(mu * mu, (double)n, -1.0), sd = fma(md * md, (double)n, -1.0);
        if (su < 0) f = up;      /* x above the upper midpoint */
        else if (sd > 0) f = dn; /* x below the lower midpoint */
    }
    return f;
}

static float scale_f32(double s, int is_default, int dim)
{
    return is_default ? nearest_f32_rsqrt(dim) : (float)s; /* a double rounds once to float */
}

/* ---- buffers in backend memory ---- */
typedef struct {
    unsigned char *host; /* guard + payload + guard */
    void *dev;           /* device base (device backends) */
    size_t bytes;        /* payload */
    void *ptr;           /* what the backend gets */
} gbuf;

static void fill_pattern(unsigned char *p, size_t bytes, uint32_t pat, size_t esz)
{
    for (size_t i = 0; i + esz <= bytes; i += esz) {
        if (esz == 4) memcpy(p + i, &pat, 4);
        else {
            uint16_t h = (uint16_t)pat;
            memcpy(p + i, &h, 2);
        }
    }
}

static int gbuf_alloc(msa_kernel *k, gbuf *g, size_t bytes, uint32_t pat, size_t esz)
{
    memset(g, 0, sizeof *g);
    size_t total = bytes + 2 * (size_t)HARNESS_GUARD_BYTES;
    if (total < bytes || !(g->host = malloc(total))) return MSA_ENOMEM;
    g->bytes = bytes;
    memset(g->host, HARNESS_GUARD_BYTE, total);
    fill_pattern(g->host + HARNESS_GUARD_BYTES, bytes, pat, esz);
    if (k->be->mem == MSA_MEM_HOST) {
        g->ptr = g->host + HARNESS_GUARD_BYTES;
        return 0;
    }
    if (!(g->dev = k->be->dev_alloc(k->ctx, total))) return MSA_ENOMEM;
    g->ptr = (unsigned char *)g->dev + HARNESS_GUARD_BYTES;
    return k->be->copy_to_dev(k->ctx, g->dev, g->host, total) ? MSA_EBACKEND : 0;
}

/* Device input without guards (inputs are only read). */
static int dev_input(msa_kernel *k, const void *src, size_t bytes, void **dst, void **keep)
{
    if (k->be->mem == MSA_MEM_HOST || !src) {
        *dst = (void *)src;
        return 0;
    }
    void *d = k->be->dev_alloc(k->ctx, bytes ? bytes : 1);
    if (!d) return MSA_ENOMEM;
    *keep = d;
    *dst = d;
    return bytes && k->be->copy_to_dev(k->ctx, d, src, bytes) ? MSA_EBACKEND : 0;
}

static int gbuf_fetch(msa_kernel *k, gbuf *g)
{
    if (!g->host || k->be->mem == MSA_MEM_HOST) return 0;
    return k->be->copy_to_host(k->ctx, g->host, g->dev, g->bytes + 2 * (size_t)HARNESS_GUARD_BYTES)
               ? MSA_EBACKEND : 0;
}

static void gbuf_free(msa_kernel *k, gbuf *g)
{
    if (g->dev) k->be->dev_free(k->ctx, g->dev);
    free(g->host);
    memset(g, 0, sizeof *g);
}

/* Appends to r->guard_msg the first touched byte of either band. */
static void gbuf_check(const gbuf *g, const char *what, msa_kernel_result *r)
{
    if (!g->host) return;
    const unsigned char *lo = g->host, *hi = g->host + HARNESS_GUARD_BYTES + g->bytes;
    long first_lo = -1, first_hi = -1, n = 0;
    for (long i = 0; i < HARNESS_GUARD_BYTES; i++) {
        if (lo[i] != HARNESS_GUARD_BYTE) {
            first_lo = first_lo < 0 ? HARNESS_GUARD_BYTES - i : first_lo;
            n++;
        }
        if (hi[i] != HARNESS_GUARD_BYTE) {
            if (first_hi < 0) first_hi = i;
            n++;
        }
    }
    if (!n) return;
    size_t len = strlen(r->guard_msg);
    snprintf(r->guard_msg + len, sizeof r->guard_msg - len, "%s%s: %ld guard bytes changed (%s%ld)",
             len ? "; " : "", what, n, first_hi >= 0 ? "after the end at +" : "before the start at -",
             first_hi >= 0 ? first_hi : first_lo);
    r->guard_ok = 0;
}

/* ---- poison (opts->poison, ATTEND runs) ---- */

static int64_t kv_row(const msa_case *c, int b, int j)
{
    int B = c->block_size;
    if (c->page_table) return (int64_t)c->page_table[(size_t)b * c->max_blocks + j / B] * B + j % B;
    return (int64_t)c->cu_k[b] + j;
}

/* Marks keep[row * Hkv + g] for every row of a block some query of group g in the row's
 * sequence selected.  Everything else (unselected blocks, rows of a page past Lk,
 * unused pages) is left 0: a correct kernel never reads it. */
static void mark_selected(const msa_case *c, const int32_t *topk, unsigned char *keep, unsigned char *sel)
{
    int B = c->block_size, K = c->topk;
    for (int b = 0; b < c->batch; b++) {
        int lk = c->cu_k[b + 1] - c->cu_k[b], nb = (lk + B - 1) / B;
        for (int g = 0; g < c->Hkv; g++) {
            memset(sel, 0, (size_t)nb + 1);
            for (int t = c->cu_q[b]; t < c->cu_q[b + 1]; t++)
                for (int s = 0; s < K; s++) {
                    int id = topk[((size_t)g * c->Tq + t) * K + s];
                    if (id >= 0 && id < nb) sel[id] = 1;
                }
            for (int blk = 0; blk < nb; blk++)
                for (int j = blk * B; sel[blk] && j < lk && j < (blk + 1) * B; j++) {
                    int64_t row = kv_row(c, b, j);
                    if (row >= 0 && row < c->Tk) keep[row * c->Hkv + g] = 1;
                }
        }
    }
}

static void nan_fill(unsigned char *p, size_t n, msa_dtype t)
{
    uint32_t f = HARNESS_NAN_F32;
    uint16_t h = t == MSA_DT_FP16 ? HARNESS_NAN_FP16 : HARNESS_NAN_BF16;
    for (size_t i = 0; i < n; i++) {
        if (t == MSA_DT_FP32) memcpy(p + 4 * i, &f, 4);
        else if (t == MSA_DT_E4M3) p[i] = HARNESS_NAN_E4M3;
        else memcpy(p + 2 * i, &h, 2);
    }
}

/* cp becomes a shallow copy of c whose k and v (owned by the caller through cp) are
 * private copies with the unreadable rows set to NaN. */
static int poison_case(const msa_case *c, const int32_t *topk, msa_case *cp)
{
    size_t esz = msa_dtype_size(c->dtype), rowg = (size_t)c->D * esz;
    size_t nslice = (size_t)c->Tk * c->Hkv, bytes = nslice * rowg;
    int maxnb = 1;
    for (int b = 0; b < c->batch; b++) {
        int nb = (c->cu_k[b + 1] - c->cu_k[b] + c->block_size - 1) / c->block_size;
        if (nb > maxnb) maxnb = nb;
    }
    *cp = *c;
    cp->k = malloc(bytes ? bytes : 1);
    cp->v = malloc(bytes ? bytes : 1);
    unsigned char *keep = calloc(nslice + 1, 1), *sel = calloc((size_t)maxnb + 1, 1);
    if (!cp->k || !cp->v || !keep || !sel) {
        free(cp->k), free(cp->v), free(keep), free(sel);
        cp->k = cp->v = NULL;
        return MSA_ENOMEM;
    }
    memcpy(cp->k, c->k, bytes);
    memcpy(cp->v, c->v, bytes);
    mark_selected(c, topk, keep, sel);
    for (size_t i = 0; i < nslice; i++)
        if (!keep[i]) {
            nan_fill((unsigned char *)cp->k + i * rowg, (size_t)c->D, c->dtype);
            nan_fill((unsigned char *)cp->v + i * rowg, (size_t)c->D, c->dtype);
        }
    free(keep), free(sel);
    return 0;
}

/* ---- the problem ---- */
typedef struct {
    msa_problem p;
    int32_t *cuq, *cuk, *pt;  /* host copies: a backend cannot alter the case */
    void *dev[9];             /* device inputs to free */
    gbuf topk, scores, out, lse;
    int32_t *given;           /* host copy of the given selection */
} run_state;

static void shape_fields(const msa_case *c, msa_problem *p)
{
    p->abi_version = MSA_ABI_VERSION;
    p->batch = c->batch, p->total_q = c->Tq, p->kv_rows = c->Tk;
    p->Hq = c->Hq, p->Hkv = c->Hkv, p->D = c->D, p->HI = c->HI, p->DI = c->DI;
    p->block_size = c->block_size, p->topk = c->topk;
    p->init_blocks = c->init_blocks, p->local_blocks = c->local_blocks, p->causal = c->causal;
    for (int b = 0; b < c->batch; b++) {
        int lq = c->cu_q[b + 1] - c->cu_q[b], lk = c->cu_k[b + 1] - c->cu_k[b];
        int nb = (lk + c->block_size - 1) / c->block_size;
        if (lq > p->max_lq) p->max_lq = lq;
        if (lk > p->max_lk) p->max_lk = lk;
        if (nb > p->nblk) p->nblk = nb;
    }
    if (c->page_table) p->max_blocks = c->max_blocks, p->num_pages = c->num_pages;
    p->softmax_scale = scale_f32(c->softmax_scale, c->softmax_scale_is_default, c->D);
    p->index_scale = scale_f32(c->index_scale, c->index_scale_is_default, c->DI);
    p->softmax_scale_f64 = c->softmax_scale, p->index_scale_f64 = c->index_scale;
    p->dtype = c->dtype, p->index_dtype = c->index_dtype;
}

static int build_problem(msa_kernel *k, const msa_case *c, run_state *s)
{
    msa_problem *p = &s->p;
    shape_fields(c, p);
    size_t nb1 = (size_t)c->batch + 1, npt = c->page_table ? (size_t)c->batch * c->max_blocks : 0;
    s->cuq = malloc(nb1 * 4), s->cuk = malloc(nb1 * 4), s->pt = malloc((npt ? npt : 1) * 4);
    if (!s->cuq || !s->cuk || !s->pt) return MSA_ENOMEM;
    memcpy(s->cuq, c->cu_q, nb1 * 4), memcpy(s->cuk, c->cu_k, nb1 * 4);
    if (npt) memcpy(s->pt, c->page_table, npt * 4);
    p->cu_seqlens_q_host = s->cuq, p->cu_seqlens_k_host = s->cuk;
    p->page_table_host = npt ? s->pt : NULL;
    size_t e = msa_dtype_size(c->dtype), ei = msa_dtype_size(c->index_dtype);
    size_t qn = (size_t)c->Tq * c->Hq * c->D * e, kn = (size_t)c->Tk * c->Hkv * c->D * e;
    size_t iqn = (size_t)c->Tq * c->HI * c->DI * ei, ikn = (size_t)c->Tk * c->DI * ei;
    const void *src[8] = {s->cuq, s->cuk, npt ? s->pt : NULL, c->q, c->k, c->v, c->index_q, c->index_k};
    size_t len[8] = {nb1 * 4, nb1 * 4, npt * 4, qn, kn, kn, iqn, ikn};
    void *dst[8];
    for (int i = 0; i < 8; i++) {
        int rc = dev_input(k, src[i], len[i], &dst[i], &s->dev[i]);
        if (rc) return rc;
    }
    p->cu_seqlens_q = dst[0], p->cu_seqlens_k = dst[1], p->page_table = dst[2];
    p->q = dst[3], p->k = dst[4], p->v = dst[5], p->index_q = dst[6], p->index_k = dst[7];
    return 0;
}

static void free_state(msa_kernel *k, run_state *s)
{
    for (int i = 0; i < 9; i++)
        if (s->dev[i]) k->be->dev_free(k->ctx, s->dev[i]);
    gbuf_free(k, &s->topk), gbuf_free(k, &s->scores), gbuf_free(k, &s->out), gbuf_free(k, &s->lse);
    free(s->cuq), free(s->cuk), free(s->pt), free(s->given);
}

/* ---- running ---- */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int alloc_outputs(msa_kernel *k, const msa_case *c, msa_run_kind kind, run_state *s)
{
    const msa_problem *p = &s->p;
    size_t rows = (size_t)c->HI * c->Tq, nout = (size_t)c->Tq * c->Hq * c->D;
    msa_dtype od = out_dtype_for(k->be->arith.out_dtype, c->dtype);
    uint32_t opat = od == MSA_DT_BF16 ? HARNESS_POISON_BF16 : od == MSA_DT_FP16 ? HARNESS_POISON_FP16
                                                                                : HARNESS_POISON_F32;
    int rc = 0, sel = kind == MSA_RUN_FORWARD || kind == MSA_RUN_SELECT || kind == MSA_RUN_REPLAY;
    if (sel) rc = gbuf_alloc(k, &s->topk, rows * (size_t)c->topk * 4, HARNESS_POISON_ID, 4);
    if (!rc && kind == MSA_RUN_SELECT && k->be->index_scores)
        rc = gbuf_alloc(k, &s->scores, rows * (size_t)p->nblk * 4, HARNESS_POISON_F32, 4);
    if (!rc && kind != MSA_RUN_SELECT) {
        rc = gbuf_alloc(k, &s->out, nout * msa_dtype_size(od), opat, msa_dtype_size(od));
        if (!rc) rc = gbuf_alloc(k, &s->lse, (size_t)c->Tq * c->Hq * 4, HARNESS_POISON_F32, 4);
    }
    return rc;
}

/* The entry call itself; returns the backend's code. */
static int call_entry(msa_kernel *k, msa_run_kind kind, int replays, run_state *s, const int32_t *topk_dev)
{
    const msa_backend *be = k->be;
    const msa_problem *p = &s->p;
    int rc;
    switch (kind) {
    case MSA_RUN_SELECT:
        rc = be->index_scores ? be->index_scores(k->ctx, p, s->scores.ptr) : 0;
        return rc ? rc : be->select(k->ctx, p, s->topk.ptr);
    case MSA_RUN_ATTEND: return be->attend(k->ctx, p, topk_dev, s->out.ptr, s->lse.ptr);
    case MSA_RUN_DENSE: return be->dense(k->ctx, p, s->out.ptr, s->lse.ptr);
    case MSA_RUN_REPLAY: return be->forward_replay(k->ctx, p, replays, s->topk.ptr, s->out.ptr, s->lse.ptr);
    default: return be->forward(k->ctx, p, s->topk.ptr, s->out.ptr, s->lse.ptr);
    }
}

static int fetch_results(msa_kernel *k, const msa_case *c, run_state *s, msa_kernel_result *r)
{
    gbuf *all[4] = {&s->topk, &s->scores, &s->out, &s->lse};
    const char *names[4] = {"topk", "block_scores", "out", "lse"};
    for (int i = 0; i < 4; i++) {
        if (gbuf_fetch(k, all[i])) return MSA_EBACKEND;
        gbuf_check(all[i], names[i], r);
    }
    void **dst[4] = {(void **)&r->topk, (void **)&r->block_scores, &r->out_raw, (void **)&r->lse};
    for (int i = 0; i < 4; i++) {
        if (!all[i]->host) continue;
        if (!(*dst[i] = malloc(all[i]->bytes ? all[i]->bytes : 1))) return MSA_ENOMEM;
        memcpy(*dst[i], all[i]->host + HARNESS_GUARD_BYTES, all[i]->bytes);
    }
    if (s->out.host) {
        msa_dtype od = out_dtype_for(k->be->arith.out_dtype, c->dtype);
        size_t n = (size_t)c->Tq * c->Hq * c->D;
        if (!(r->out = malloc((n ? n : 1) * sizeof *r->out))) return MSA_ENOMEM;
        for (size_t i = 0; i < n; i++) r->out[i] = msa_dtype_load(od, r->out_raw, i);
    }
    return 0;
}

static int backend_fail(msa_kernel *k, int rc, const char *what, msa_err *e)
{
    const char *why = k->be->last_error ? k->be->last_error(k->ctx) : NULL;
    if (rc == MSA_EUNSUPPORTED)
        return msa_fail(e, MSA_EUNSUPPORTED, "%s: %s: unsupported: %s", k->name, what, why && *why ? why : "-");
    return msa_fail(e, MSA_EBACKEND, "%s: %s failed (%s): %s", k->name, what, msa_status_name(rc),
                    why && *why ? why : "-");
}

static const char *kind_name(msa_run_kind kind)
{
    static const char *n[] = {"forward", "select", "attend", "dense", "forward_replay"};
    return kind >= MSA_RUN_FORWARD && kind <= MSA_RUN_REPLAY ? n[kind] : "?";
}

/* Checks that the requested entry exists and that the call is well formed. */
static int check_request(msa_kernel *k, const msa_case *c, msa_run_kind kind, const int32_t *given,
                         msa_err *e)
{
    if (!k || !k->be) return msa_fail(e, MSA_EINTERNAL, "msa_kernel_run: kernel not open");
    if (!c) return msa_fail(e, MSA_EINTERNAL, "msa_kernel_run: no case");
    if (kind < MSA_RUN_FORWARD || kind > MSA_RUN_REPLAY)
        return msa_fail(e, MSA_EINTERNAL, "msa_kernel_run: unknown run kind %d", (int)kind);
    if (kind == MSA_RUN_ATTEND && !given)
        return msa_fail(e, MSA_EINTERNAL, "msa_kernel_run: attend needs a selection");
    if (kind == MSA_RUN_DENSE && !k->be->dense)
        return msa_fail(e, MSA_EUNSUPPORTED, "%s: dense: the backend has no dense entry", k->name);
    if (kind == MSA_RUN_REPLAY && !k->be->forward_replay)
        return msa_fail(e, MSA_EUNSUPPORTED, "%s: forward_replay: the backend has no replay entry", k->name);
    return 0;
}

static int run_prepared(msa_kernel *k, const msa_case *c, msa_run_kind kind, const int32_t *given,
                        const msa_run_opts *opts, run_state *s, msa_kernel_result *r, msa_err *e)
{
    int rc = build_problem(k, c, s);
    if (!rc) rc = alloc_outputs(k, c, kind, s);
    void *topk_dev = NULL;
    if (!rc && kind == MSA_RUN_ATTEND) {
        size_t n = (size_t)c->HI * c->Tq * c->topk * 4;
        if (!(s->given = malloc(n ? n : 1))) rc = MSA_ENOMEM;
        else memcpy(s->given, given, n), rc = dev_input(k, s->given, n, &topk_dev, &s->dev[8]);
    }
    if (rc == MSA_ENOMEM) return msa_fail(e, rc, "%s: out of memory preparing the run", k->name);
    if (rc) return backend_fail(k, rc, "copy to device", e);
    rc = k->be->supports(k->ctx, &s->p);
    if (rc) return backend_fail(k, rc, "supports", e);
    int replays = opts && opts->replays > 0 ? opts->replays : 1;
    double t0 = now_s();
    rc = call_entry(k, kind, replays, s, topk_dev);
    if (!rc && k->be->mem == MSA_MEM_DEVICE) rc = k->be->sync(k->ctx);
    r->seconds = now_s() - t0;
    if (rc) return backend_fail(k, rc, kind_name(kind), e);
    rc = fetch_results(k, c, s, r);
    if (rc == MSA_ENOMEM) return msa_fail(e, rc, "%s: out of memory fetching results", k->name);
    return rc ? backend_fail(k, rc, "copy to host", e) : 0;
}

int msa_kernel_run(msa_kernel *k, const msa_case *c, msa_run_kind kind, const int32_t *given_topk,
                   const msa_run_opts *opts, msa_kernel_result *r, msa_err *e)
{
    if (!r) return msa_fail(e, MSA_EINTERNAL, "msa_kernel_run: no result struct");
    memset(r, 0, sizeof *r);
    r->guard_ok = 1;
    int rc = check_request(k, c, kind, given_topk, e);
    if (rc) return rc;
    msa_case pc;
    const msa_case *use = c;
    if (opts && opts->poison && kind == MSA_RUN_ATTEND) {
        if (poison_case(c, given_topk, &pc)) return msa_fail(e, MSA_ENOMEM, "%s: out of memory poisoning", k->name);
        use = &pc;
    }
    run_state s;
    memset(&s, 0, sizeof s);
    rc = run_prepared(k, use, kind, given_topk, opts, &s, r, e);
    free_state(k, &s);
    if (use != c) free(pc.k), free(pc.v);
    if (rc) msa_kernel_result_free(r);
    return rc;
}

void msa_kernel_result_free(msa_kernel_result *r)
{
    if (!r) return;
    free(r->topk), free(r->block_scores), free(r->out), free(r->out_raw), free(r->lse);
    r->topk = NULL, r->block_scores = NULL, r->out = NULL, r->out_raw = NULL, r->lse = NULL;
}
