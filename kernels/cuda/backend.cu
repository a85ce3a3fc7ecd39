/* backend.cu - the "cuda" backend table (kernels/msa_abi.h): context, supports(), the
 * host plan (tiles, chunks, workspace), the entry points, CUDA-graph replay and the
 * deliberately broken variants used by the mutant kill check.
 *
 * Every CUDA call is checked; a failure returns MSA_EBACKEND with "cuda: WHAT: error"
 * in last_error, never exits.  The plan is built on the host from the problem's host
 * copies of cu_seqlens and uploaded before any launch, so the launch chain itself has no
 * host synchronisation and a fixed grid (it is what forward_replay captures).  Workspace:
 * per query chunk O(rows * (k*Hq*D + HI*nblk)), the chunk size bounded by a byte budget,
 * so it grows with N*k (+ N*N/B per chunk row, bounded), never with N^2.
 * Decode path (decode.cu): a plan whose sequences all have Lq <= 16 (and max Lq * HI <=
 * 64, index rows of 64/128/256/512 bytes, nblk <= 16384; cu_decode_ok) runs the
 * bandwidth-bound index scan, the register top-k, split-K attention over the selected
 * blocks and the merge instead of the prefill kernels; same declared arithmetic (the
 * per-block partials and the merge are the same computation).  $MSA_CUDA_DECODE=0 turns
 * it off (benchmark A/B).
 * Prefill kernels (issue 8's v4, docs/DESIGN.md): pipelined index scorer with 128-row tiles,
 * register top-k, pipelined attention, vector merge.
 * Not here: fp32 or e4m3 Q/K/V, fp32 index tensors, D outside {64,128,256}, B outside
 * {16,32,64,128} (supports() says MSA_EUNSUPPORTED). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "msa_cuda.cuh"
extern "C" {
#include "../msa_abi.h"
}

#define MSA_CU_WS_BUDGET ((size_t)1 << 30) /* partials + scores per chunk: 1 GiB */

/* 1 when the switch $name is set to exactly val (the MSA_CUDA_* comparison switches). */
static int cu_env_is(const char *name, const char *val)
{
    const char *e = getenv(name);
    return e && !strcmp(e, val);
}

/* $name as an integer in [lo, hi], or def when unset or not such an integer. */
static int cu_env_int(const char *name, int def, int lo, int hi)
{
    const char *e = getenv(name);
    char *end = nullptr;
    long v = e ? strtol(e, &end, 10) : 0;
    return e && *e && end && !*end && v >= lo && v <= hi ? (int)v : def;
}

/* The workspace budget: 1 GiB, or $MSA_CUDA_WS_MB (benchmarks raise it for larger chunks). */
static size_t cu_ws_budget(void)
{
    const char *s = getenv("MSA_CUDA_WS_MB");
    long mb = s ? atol(s) : 0;
    return mb > 0 ? (size_t)mb << 20 : MSA_CU_WS_BUDGET;
}
/* exp: the PTX ISA ("ex2" in Floating-Point Instructions) states for ex2.approx.f32 a
 * maximum relative error of about 2^-22 over the full range (the ftz form flushes
 * subnormal results to zero, an absolute error below 2^-126); the merge uses expf/logf
 * (CUDA C Programming Guide, Mathematical Functions: 2 and 1 ulp, i.e. <= 2^-22).  We
 * declare 2^-21, twice that, the oracle's "cuda" profile value. */
#define MSA_CU_EX2_REL_ERR 4.76837158203125e-07 /* 2^-21 */
/* mma.sync fp32 accumulation is not IEEE round-to-nearest (the products are aligned and
 * truncated): we declare 23 significant bits (unit roundoff 2^-23), as the oracle's
 * "cuda" profile does, for both the attention and the index scores. */
#define MSA_CU_TC_ACCUM_BITS 23

struct msa_cu_ctx {
    char err[512];
    char devname[400];
    int bugs;
    int wg;           /* the sm_90a warpgroup index scorer runs here (off: $MSA_CUDA_WGMMA=0; 2: decoupled) */
    cudaStream_t cap; /* non-blocking stream used for graph capture */
    void *ws;
    size_t ws_size;
};

static int cu_fail(msa_cu_ctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

#define CU_CHECK(ctx, call, what)                                                             \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess)                                                                \
            return cu_fail(ctx, MSA_EBACKEND, "cuda: %s: %s", what, cudaGetErrorString(e_));  \
    } while (0)

/* ---- context ---- */
static char cu_init_err[512]; /* why the last init failed (last_error(NULL) returns it) */

static int cu_init_body(msa_cu_ctx *c)
{
    int n = 0;
    CU_CHECK(c, cudaGetDeviceCount(&n), "cudaGetDeviceCount");
    if (n < 1) return cu_fail(c, MSA_EBACKEND, "cuda: no CUDA device");
    cudaDeviceProp pr;
    CU_CHECK(c, cudaGetDeviceProperties(&pr, 0), "cudaGetDeviceProperties");
    snprintf(c->devname, sizeof c->devname, "%s, %d SMs, cc %d.%d, %zu MiB", pr.name,
             pr.multiProcessorCount, pr.major, pr.minor, pr.totalGlobalMem >> 20);
    if (pr.major < 9) return cu_fail(c, MSA_EBACKEND, "cuda: %s is not a Hopper (sm_90) GPU", pr.name);
    CU_CHECK(c, msa_cu_sparse_set_attributes(), "cudaFuncSetAttribute(sparse)");
    CU_CHECK(c, msa_cu_dense_set_attributes(), "cudaFuncSetAttribute(dense)");
    CU_CHECK(c, msa_cu_index_set_attributes(), "cudaFuncSetAttribute(index)");
    CU_CHECK(c, msa_cu_decode_set_attributes(), "cudaFuncSetAttribute(decode)");
    CU_CHECK(c, cudaStreamCreateWithFlags(&c->cap, cudaStreamNonBlocking), "cudaStreamCreate");
    const int wg = msa_cu_wgmma_available();
    if (wg < 0) return cu_fail(c, MSA_EBACKEND, "cuda: sm_90a probe kernel failed");
    /* the default where the device runs sm_90a code (bench/NOTES.md v5); $MSA_CUDA_WGMMA=0
     * keeps the v4 mma.sync scorer (for comparisons in one run) */
    c->wg = wg && !cu_env_is("MSA_CUDA_WGMMA", "0");
    /* the decoupled form of that scorer (warpgroups meet at per-stage mbarriers, not one
     * barrier per key tile; bench/NOTES.md 2026-12-07); $MSA_CUDA_WGPIPE=0: lock step */
    if (c->wg && !cu_env_is("MSA_CUDA_WGPIPE", "0")) c->wg = 2;
    return 0;
}

/* A failed init frees its context (the caller will not call fini) and leaves *out NULL. */
static int cu_init_bugs(void **out, int bugs)
{
    *out = nullptr;
    msa_cu_ctx *c = (msa_cu_ctx *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(cu_init_err, sizeof cu_init_err, "cuda: init: out of memory");
        return MSA_ENOMEM;
    }
    c->bugs = bugs;
    int rc = cu_init_body(c);
    if (rc) {
        snprintf(cu_init_err, sizeof cu_init_err, "%s", c->err);
        if (c->cap) cudaStreamDestroy(c->cap);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

template <int BUGS>
static int cu_init(void **ctx)
{
    return cu_init_bugs(ctx, BUGS);
}

static void cu_fini(void *ctx)
{
    msa_cu_ctx *c = (msa_cu_ctx *)ctx;
    if (!c) return;
    if (c->ws) cudaFree(c->ws);
    if (c->cap) cudaStreamDestroy(c->cap);
    free(c);
}

static const char *cu_last_error(void *ctx) { return ctx ? ((msa_cu_ctx *)ctx)->err : cu_init_err; }
static const char *cu_device_name(void *ctx) { return ctx ? ((msa_cu_ctx *)ctx)->devname : ""; }

/* dtype names without libmsa_common, so the plugin loads into any host program */
static const char *cu_dt(msa_dtype t)
{
    switch (t) {
    case MSA_DT_BF16: return "bf16";
    case MSA_DT_FP16: return "fp16";
    case MSA_DT_FP32: return "fp32";
    case MSA_DT_E4M3: return "e4m3";
    default: return "other";
    }
}

static int cu_supports(void *ctx, const msa_problem *p)
{
    msa_cu_ctx *c = (msa_cu_ctx *)ctx;
    if (p->abi_version != MSA_ABI_VERSION) return cu_fail(c, MSA_EUNSUPPORTED, "cuda: abi_version %u", p->abi_version);
    if (p->dtype != MSA_DT_BF16 && p->dtype != MSA_DT_FP16)
        return cu_fail(c, MSA_EUNSUPPORTED, "cuda: dtype %s: only bf16 and fp16 Q/K/V", cu_dt(p->dtype));
    if (p->index_dtype != MSA_DT_BF16 && p->index_dtype != MSA_DT_FP16 && p->index_dtype != MSA_DT_E4M3)
        return cu_fail(c, MSA_EUNSUPPORTED, "cuda: index_dtype %s: only bf16, fp16, e4m3", cu_dt(p->index_dtype));
    if (p->D != 64 && p->D != 128 && p->D != 256) return cu_fail(c, MSA_EUNSUPPORTED, "cuda: D %d not in {64,128,256}", p->D);
    if (p->block_size != 16 && p->block_size != 32 && p->block_size != 64 && p->block_size != 128)
        return cu_fail(c, MSA_EUNSUPPORTED, "cuda: block_size %d not in {16,32,64,128}", p->block_size);
    if (p->DI < 16 || p->DI > 256 || p->DI % 16) return cu_fail(c, MSA_EUNSUPPORTED, "cuda: DI %d not a multiple of 16 in [16,256]", p->DI);
    if (p->Hkv < 1 || p->Hq % p->Hkv || p->Hq / p->Hkv > MSA_CU_ROWS || p->HI != p->Hkv || p->HI > MSA_CU_ROWS)
        return cu_fail(c, MSA_EUNSUPPORTED, "cuda: heads Hq %d Hkv %d HI %d", p->Hq, p->Hkv, p->HI);
    if (p->topk < 1 || p->init_blocks < 0 || p->local_blocks < 0 || p->init_blocks + p->local_blocks > p->topk)
        return cu_fail(c, MSA_EUNSUPPORTED, "cuda: topk %d init %d local %d", p->topk, p->init_blocks, p->local_blocks);
    if (p->batch < 1 || !p->cu_seqlens_q_host || !p->cu_seqlens_k_host || (p->num_pages > 0 && !p->page_table_host))
        return cu_fail(c, MSA_EUNSUPPORTED, "cuda: batch %d or host copies of cu_seqlens/page_table missing", p->batch);
    return 0;
}

static int cu_idx_kind(const msa_problem *p)
{
    return p->index_dtype == MSA_DT_FP16 ? MSA_CU_IDX_FP16 : p->index_dtype == MSA_DT_E4M3 ? MSA_CU_IDX_E4M3 : MSA_CU_IDX_BF16;
}

static msa_cu_prob cu_prob(const msa_cu_ctx *c, const msa_problem *p)
{
    msa_cu_prob d;
    memset(&d, 0, sizeof d);
    d.batch = p->batch; d.total_q = p->total_q; d.Hq = p->Hq; d.Hkv = p->Hkv; d.D = p->D;
    d.HI = p->HI; d.DI = p->DI; d.B = p->block_size; d.topk = p->topk; d.init = p->init_blocks;
    d.local = p->local_blocks; d.causal = p->causal; d.nblk = p->nblk; d.max_blocks = p->max_blocks;
    d.G = p->Hq / p->Hkv;
    d.c2 = (float)((double)p->softmax_scale * 1.4426950408889634); /* fp32(scale_f32 * log2 e) */
    d.iscale = p->index_scale;
    d.fp16 = p->dtype == MSA_DT_FP16;
    d.idx_kind = cu_idx_kind(p);
    d.bugs = c->bugs;
    d.merge_v4 = !cu_env_is("MSA_CUDA_MERGE", "1") && p->D % 4 == 0; /* $MSA_CUDA_MERGE=1: the scalar merge */
    d.topk_search = cu_env_is("MSA_CUDA_TOPK", "0"); /* $MSA_CUDA_TOPK=0: no fast path, the search only */
    d.topk_quick = !cu_env_is("MSA_CUDA_TOPK", "1"); /* $MSA_CUDA_TOPK=1: the fast path's full 32-step bound search */
    d.cu_q = p->cu_seqlens_q; d.cu_k = p->cu_seqlens_k;
    d.page_table = p->num_pages > 0 ? p->page_table : nullptr;
    d.q = (const uint16_t *)p->q; d.k = (const uint16_t *)p->k; d.v = (const uint16_t *)p->v;
    d.iq = p->index_q; d.ik = p->index_k;
    return d;
}

/* ---- the decode criterion ---- */

/* Whether a problem takes the decode path: every sequence has at most MSA_CU_DEC_MAXQ
 * query rows (decode, speculative decode) and decode.cu's kernels cover the shape.  The
 * choice depends on host data only (cu_seqlens_q_host), so it is fixed per plan. */
static int cu_decode_ok(const msa_problem *p)
{
    if (cu_env_is("MSA_CUDA_DECODE", "0")) return 0;
    int max_lq = 0;
    for (int b = 0; b < p->batch; ++b) {
        int lq = p->cu_seqlens_q_host[b + 1] - p->cu_seqlens_q_host[b];
        max_lq = lq > max_lq ? lq : max_lq;
    }
    return msa_cu_decode_shape_ok(p->DI, cu_idx_kind(p), max_lq, p->HI, p->nblk);
}

/* For tests and benchmarks: 1 when the problem (host fields only) takes the decode path. */
extern "C" int msa_cuda_decode_path(const msa_problem *p)
{
    return p && p->batch >= 1 && p->cu_seqlens_q_host && cu_decode_ok(p);
}

/* ---- the plan: tiles, chunks and workspace carving ---- */
struct cu_plan {
    msa_cu_prob d;
    int decode;                    /* decode path (decode.cu) instead of the prefill kernels */
    int C;                         /* query rows per chunk */
    int wg;                        /* index scores by the sm_90a warpgroup kernel (index.cu) */
    std::vector<msa_cu_chunk> chunks;
    int ndtiles;
    const int4 *dtiles;
    msa_cu_sparse_ws w;
    float *S;                      /* [HI][C][nblk] block-score workspace */
};

static size_t cu_align(size_t x) { return (x + 255) & ~(size_t)255; }

/* Validates the host copies (lengths, nblk, page ids) and builds the plan; chunk_rows 0
 * picks the chunk from the workspace budget; may_decode 0 keeps the prefill kernels (the
 * dense and index_scores entries, which do not use the decode path).  Uploads everything
 * (synchronously). */
static int cu_plan_build(msa_cu_ctx *c, const msa_problem *p, int chunk_rows, cu_plan *pl, int may_decode = 1)
{
    int rc = cu_supports(c, p);
    if (rc) return rc;
    const void *in[5] = {p->q, p->k, p->v, p->index_q, p->index_k};
    for (int i = 0; i < 5; ++i) /* tiles are loaded with 16-byte vectors */
        if ((uintptr_t)in[i] % 16)
            return cu_fail(c, MSA_EUNSUPPORTED, "cuda: input tensor %d not 16-byte aligned", i);
    const int32_t *cq = p->cu_seqlens_q_host, *ck = p->cu_seqlens_k_host;
    const int B = p->block_size, G = p->Hq / p->Hkv;
    if (cq[0] != 0 || ck[0] != 0 || cq[p->batch] != p->total_q)
        return cu_fail(c, MSA_EINPUT, "cuda: cu_seqlens: must start at 0 and end at total_q");
    std::vector<int> blk_off(p->batch + 1, 0), blk_seq, blk_lb;
    for (int b = 0; b < p->batch; ++b) {
        int Lq = cq[b + 1] - cq[b], Lk = ck[b + 1] - ck[b], nb = (Lk + B - 1) / B;
        if (Lq < 0 || Lk < 0 || nb > p->nblk || (p->num_pages > 0 && nb > p->max_blocks) ||
            (p->num_pages == 0 && ck[b + 1] > p->kv_rows))
            return cu_fail(c, MSA_EINPUT, "cuda: cu_seqlens: sequence %d: Lq %d Lk %d does not fit nblk %d / kv_rows %d", b, Lq, Lk, p->nblk, p->kv_rows);
        for (int i = 0; p->num_pages > 0 && i < nb; ++i) {
            int pg = p->page_table_host[(int64_t)b * p->max_blocks + i];
            if (pg < 0 || pg >= p->num_pages || (int64_t)(pg + 1) * B > p->kv_rows)
                return cu_fail(c, MSA_EINPUT, "cuda: page_table: [%d][%d] = %d out of range", b, i, pg);
        }
        for (int i = 0; i < nb; ++i) { blk_seq.push_back(b); blk_lb.push_back(i); }
        blk_off[b + 1] = blk_off[b] + nb;
    }
    const int NB = blk_off[p->batch], Tq = p->total_q, K = p->topk;
    size_t per_row = ((size_t)K * p->Hq * (p->D + 1) + (size_t)p->HI * p->nblk + (size_t)p->Hkv * K) * 4;
    int C = chunk_rows > 0 ? chunk_rows : (int)(cu_ws_budget() / per_row);
    C = C < 1 ? 1 : (C > Tq ? (Tq > 0 ? Tq : 1) : C);
    pl->C = C;
    pl->wg = c->wg;
    /* tiles: per chunk, <= msa_cu_bscore_rows (256/128 with wgmma, 128 without, 64 for e4m3 keys) rows of one sequence; dense: 64/G queries */
    std::vector<int4> qt, dt;
    const int qpt = msa_cu_bscore_rows(p->DI, cu_idx_kind(p), c->wg) / p->HI;
    std::vector<int> cstart;
    for (int t0 = 0; t0 < Tq; t0 += C) {
        int t1 = t0 + C < Tq ? t0 + C : Tq;
        cstart.push_back((int)qt.size());
        for (int b = 0; b < p->batch; ++b) {
            int a = cq[b] > t0 ? cq[b] : t0, z = cq[b + 1] < t1 ? cq[b + 1] : t1;
            for (int s = a; s < z; s += qpt) /* index tiles: qpt queries x HI heads */
                qt.push_back(make_int4(b, s - cq[b], (z - s) < qpt ? z - s : qpt, 0));
        }
    }
    cstart.push_back((int)qt.size());
    /* decode scan tasks: per chunk, per sequence slice, groups of dbpc key blocks (one per
     * warp at B = 128; at least 128 keys per warp for smaller blocks; $MSA_CUDA_DBPC=n,
     * 1..64: n blocks of 128 keys per scan CTA, the benchmark's knob: each block's score is
     * computed the same way whatever the grouping, only the grid changes.  H100, decode 1M
     * (bench/NOTES.md gpu-run19/20): e4m3 keys 0.0903 ms at 4, 0.0850 at 16, so 16 for e4m3
     * (judged at every bench size in gpu-run20); bf16 best at 4) */
    const int decode = may_decode && cu_decode_ok(p);
    const int dbpc = cu_env_int("MSA_CUDA_DBPC", cu_idx_kind(p) == MSA_CU_IDX_E4M3 ? 16 : 4, 1, 64) *
                     (B >= 128 ? 1 : 128 / B);
    std::vector<int4> dtk;
    std::vector<int> dstart;
    for (int t0 = 0; decode && t0 < Tq; t0 += C) {
        int t1 = t0 + C < Tq ? t0 + C : Tq;
        dstart.push_back((int)dtk.size());
        for (int b = 0; b < p->batch; ++b) {
            int a = cq[b] > t0 ? cq[b] : t0, z = cq[b + 1] < t1 ? cq[b + 1] : t1;
            int nb = (ck[b + 1] - ck[b] + B - 1) / B;
            for (int j = 0; a < z && j * dbpc < nb; ++j) dtk.push_back(make_int4(b, a - cq[b], z - a, j));
        }
    }
    dstart.push_back((int)dtk.size());
    const int per = MSA_CU_ROWS / G;
    for (int b = 0; b < p->batch; ++b)
        for (int i = 0; i < cq[b + 1] - cq[b]; i += per)
            dt.push_back(make_int4(b, i, (cq[b + 1] - cq[b] - i) < per ? cq[b + 1] - cq[b] - i : per, 0));
    /* carve the workspace */
    size_t ncell = (size_t)p->Hkv * NB + 1, o = 0;
    size_t o_off = o; o += cu_align(sizeof(int) * (p->batch + 1));
    size_t o_seq = o; o += cu_align(sizeof(int) * (NB + 1));
    size_t o_lb = o; o += cu_align(sizeof(int) * (NB + 1));
    size_t o_qt = o; o += cu_align(sizeof(int4) * (qt.size() + 1));
    size_t o_dt = o; o += cu_align(sizeof(int4) * (dt.size() + 1));
    size_t o_dk = o; o += cu_align(sizeof(int4) * (dtk.size() + 1));
    size_t o_cnt = o; o += 4 * cu_align(sizeof(int) * ncell);
    size_t o_ent = o; o += cu_align(sizeof(int) * (size_t)C * p->Hkv * K);
    size_t o_S = o; o += cu_align(sizeof(float) * (size_t)C * p->HI * (p->nblk > 0 ? p->nblk : 1));
    size_t o_pL = o; o += cu_align(sizeof(float) * (size_t)C * K * p->Hq);
    size_t o_pO = o; o += cu_align(sizeof(float) * (size_t)C * K * p->Hq * p->D);
    if (o > c->ws_size) {
        if (c->ws) cudaFree(c->ws);
        c->ws = nullptr;
        c->ws_size = 0;
        CU_CHECK(c, cudaMalloc(&c->ws, o), "cudaMalloc(workspace)");
        c->ws_size = o;
    }
    char *ws = (char *)c->ws;
    CU_CHECK(c, cudaMemcpy(ws + o_off, blk_off.data(), sizeof(int) * blk_off.size(), cudaMemcpyHostToDevice), "upload plan");
    if (NB > 0) {
        CU_CHECK(c, cudaMemcpy(ws + o_seq, blk_seq.data(), sizeof(int) * NB, cudaMemcpyHostToDevice), "upload plan");
        CU_CHECK(c, cudaMemcpy(ws + o_lb, blk_lb.data(), sizeof(int) * NB, cudaMemcpyHostToDevice), "upload plan");
    }
    if (!qt.empty()) CU_CHECK(c, cudaMemcpy(ws + o_qt, qt.data(), sizeof(int4) * qt.size(), cudaMemcpyHostToDevice), "upload plan");
    if (!dt.empty()) CU_CHECK(c, cudaMemcpy(ws + o_dt, dt.data(), sizeof(int4) * dt.size(), cudaMemcpyHostToDevice), "upload plan");
    if (!dtk.empty()) CU_CHECK(c, cudaMemcpy(ws + o_dk, dtk.data(), sizeof(int4) * dtk.size(), cudaMemcpyHostToDevice), "upload plan");
    pl->d = cu_prob(c, p);
    pl->decode = decode;
    pl->chunks.clear();
    for (size_t i = 0; i + 1 < cstart.size(); ++i) {
        msa_cu_chunk ch;
        ch.t0 = (int)i * C;
        ch.nrows = (ch.t0 + C < Tq ? ch.t0 + C : Tq) - ch.t0;
        ch.qtiles = (const int4 *)(ws + o_qt) + cstart[i];
        ch.nqtiles = cstart[i + 1] - cstart[i];
        ch.dtasks = (const int4 *)(ws + o_dk) + (decode ? dstart[i] : 0);
        ch.ndtasks = decode ? dstart[i + 1] - dstart[i] : 0;
        ch.dbpc = dbpc;
        pl->chunks.push_back(ch);
    }
    pl->ndtiles = (int)dt.size();
    pl->dtiles = (const int4 *)(ws + o_dt);
    pl->w.NB = NB;
    pl->w.blk_off = (const int *)(ws + o_off);
    pl->w.blk_seq = (const int *)(ws + o_seq);
    pl->w.blk_lb = (const int *)(ws + o_lb);
    pl->w.cnt = (int *)(ws + o_cnt);
    pl->w.off = (int *)(ws + o_cnt + cu_align(sizeof(int) * ncell));
    pl->w.cur = (int *)(ws + o_cnt + 2 * cu_align(sizeof(int) * ncell));
    /* the KV-outer grid takes the largest cells first (bench/NOTES.md 2026-12-07);
     * $MSA_CUDA_ORDER=0: the grid order */
    pl->w.ord = cu_env_is("MSA_CUDA_ORDER", "0") ? nullptr : (int *)(ws + o_cnt + 3 * cu_align(sizeof(int) * ncell));
    pl->w.ent = (int *)(ws + o_ent);
    pl->w.pO = (float *)(ws + o_pO);
    pl->w.pL = (float *)(ws + o_pL);
    pl->S = (float *)(ws + o_S);
    return 0;
}

/* ---- launch chains (no host synchronisation inside: graph-capturable) ---- */
enum { CU_DO_SELECT = 1, CU_DO_ATTEND = 2 };

static int cu_chain(msa_cu_ctx *c, const cu_plan &pl, int what, int32_t *topk, void *out, float *lse,
                    cudaStream_t st)
{
    for (const msa_cu_chunk &ch : pl.chunks) {
        if (pl.decode) {
            if (what & CU_DO_SELECT)
                CU_CHECK(c, msa_cu_decode_select(pl.d, ch, pl.S, pl.d.nblk, topk, st), "decode select launch");
            if (what & CU_DO_ATTEND)
                CU_CHECK(c, msa_cu_decode_attend(pl.d, ch, topk, pl.w.pO, pl.w.pL, out, lse, st), "decode attention launch");
            continue;
        }
        if (what & CU_DO_SELECT) {
            CU_CHECK(c, msa_cu_block_scores(pl.d, ch, pl.S, pl.d.nblk, pl.wg, st), "block-score kernel launch");
            CU_CHECK(c, msa_cu_topk(pl.d, ch, pl.S, pl.d.nblk, topk, st), "top-k kernel launch");
        }
        if (what & CU_DO_ATTEND)
            CU_CHECK(c, msa_cu_sparse(pl.d, ch, topk, pl.w, out, lse, st), "sparse attention launch");
    }
    return 0;
}

static int cu_finish(msa_cu_ctx *c, cudaStream_t st, const char *what)
{
    cudaError_t e = cudaStreamSynchronize(st);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return cu_fail(c, MSA_EBACKEND, "cuda: %s: %s", what, cudaGetErrorString(e));
    return 0;
}

static int cu_run(void *ctx, const msa_problem *p, int what, int32_t *topk, void *out, float *lse,
                  const char *name)
{
    msa_cu_ctx *c = (msa_cu_ctx *)ctx;
    cu_plan pl;
    int rc = cu_plan_build(c, p, 0, &pl);
    if (rc) return rc;
    cudaStream_t st = (cudaStream_t)p->stream;
    if ((rc = cu_chain(c, pl, what, topk, out, lse, st))) return rc;
    return cu_finish(c, st, name);
}

static int cu_select(void *ctx, const msa_problem *p, int32_t *topk)
{
    return cu_run(ctx, p, CU_DO_SELECT, topk, nullptr, nullptr, "select");
}

static int cu_attend(void *ctx, const msa_problem *p, const int32_t *topk, void *out, float *lse)
{
    return cu_run(ctx, p, CU_DO_ATTEND, (int32_t *)topk, out, lse, "attend");
}

static int cu_forward(void *ctx, const msa_problem *p, int32_t *topk, void *out, float *lse)
{
    return cu_run(ctx, p, CU_DO_SELECT | CU_DO_ATTEND, topk, out, lse, "forward");
}

static int cu_index_scores(void *ctx, const msa_problem *p, float *block_scores)
{
    msa_cu_ctx *c = (msa_cu_ctx *)ctx;
    cu_plan pl;
    int rc = cu_plan_build(c, p, p->total_q > 0 ? p->total_q : 1, &pl, 0); /* one chunk: the output itself */
    if (rc) return rc;
    cudaStream_t st = (cudaStream_t)p->stream;
    for (const msa_cu_chunk &ch : pl.chunks)
        CU_CHECK(c, msa_cu_block_scores(pl.d, ch, block_scores, pl.d.nblk, pl.wg, st), "block-score kernel launch");
    return cu_finish(c, st, "index_scores");
}

static int cu_dense(void *ctx, const msa_problem *p, void *out, float *lse)
{
    msa_cu_ctx *c = (msa_cu_ctx *)ctx;
    cu_plan pl;
    int rc = cu_plan_build(c, p, 1, &pl, 0);
    if (rc) return rc;
    cudaStream_t st = (cudaStream_t)p->stream;
    CU_CHECK(c, msa_cu_dense(pl.d, pl.dtiles, pl.ndtiles, out, lse, st), "dense kernel launch");
    return cu_finish(c, st, "dense");
}

/* forward captured once into a graph on a private stream, replayed `replays` times. */
static int cu_forward_replay(void *ctx, const msa_problem *p, int replays, int32_t *topk, void *out,
                             float *lse)
{
    msa_cu_ctx *c = (msa_cu_ctx *)ctx;
    cu_plan pl;
    int rc = cu_plan_build(c, p, 0, &pl);
    if (rc) return rc;
    CU_CHECK(c, cudaDeviceSynchronize(), "sync before capture");
    cudaGraph_t g = nullptr;
    cudaGraphExec_t x = nullptr;
    CU_CHECK(c, cudaStreamBeginCapture(c->cap, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    rc = cu_chain(c, pl, CU_DO_SELECT | CU_DO_ATTEND, topk, out, lse, c->cap);
    cudaError_t e = cudaStreamEndCapture(c->cap, &g);
    if (rc) { if (g) cudaGraphDestroy(g); return rc; }
    CU_CHECK(c, e, "cudaStreamEndCapture");
    e = cudaGraphInstantiate(&x, g, 0);
    for (int i = 0; e == cudaSuccess && i < replays; ++i) e = cudaGraphLaunch(x, c->cap);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->cap);
    if (x) cudaGraphExecDestroy(x);
    cudaGraphDestroy(g);
    CU_CHECK(c, e, "graph replay");
    return 0;
}

/* ---- benchmarking (bench/bench_gpu.cu): the launch chain of an entry, captured once per
 * problem into a graph (plans built beforehand), replayed after `warm` launches; the
 * problems are used in rotation so repeated runs do not time a warm L2.  ms[i] gets the
 * time of launch i from CUDA events.  what: 0 forward, 1 select, 2 attend (topk given in
 * topk_in, device), 3 dense.  Returns the workspace bytes in *ws_bytes. */
extern "C" int msa_cuda_time(void *ctx, const msa_problem *const *ps, int nprob, int what,
                             int32_t *const *topk, void *const *out, float *const *lse, int warm,
                             int iters, float *ms, size_t *ws_bytes)
{
    msa_cu_ctx *c = (msa_cu_ctx *)ctx;
    std::vector<cudaGraphExec_t> ex(nprob, nullptr);
    int rc = 0;
    for (int i = 0; i < nprob && !rc; ++i) {
        cu_plan pl;
        if ((rc = cu_plan_build(c, ps[i], what == 3 ? 1 : 0, &pl, what != 3))) break;
        if (i == 0 && ws_bytes) *ws_bytes = c->ws_size;
        cudaGraph_t g = nullptr;
        CU_CHECK(c, cudaStreamBeginCapture(c->cap, cudaStreamCaptureModeThreadLocal), "capture");
        if (what == 3) {
            cudaError_t e = msa_cu_dense(pl.d, pl.dtiles, pl.ndtiles, out[i], lse[i], c->cap);
            if (e != cudaSuccess) rc = cu_fail(c, MSA_EBACKEND, "cuda: dense launch: %s", cudaGetErrorString(e));
        } else {
            int w = what == 0 ? CU_DO_SELECT | CU_DO_ATTEND : what == 1 ? CU_DO_SELECT : CU_DO_ATTEND;
            rc = cu_chain(c, pl, w, topk[i], out[i], lse[i], c->cap);
        }
        cudaError_t e = cudaStreamEndCapture(c->cap, &g);
        if (!rc && e == cudaSuccess) e = cudaGraphInstantiate(&ex[i], g, 0);
        if (g) cudaGraphDestroy(g);
        if (!rc && e != cudaSuccess) rc = cu_fail(c, MSA_EBACKEND, "cuda: capture: %s", cudaGetErrorString(e));
        /* NB: one workspace serves every problem: plans of the same shape carve it alike */
    }
    /* Warm-up, then all timed launches enqueued back to back with an event between two
     * launches, one synchronisation at the end: launch i is timed from the end of launch
     * i-1 to its own end, on the GPU, so the host's launch latency is not in the figure
     * (the GPU runs behind the host).  The SDPA peer is timed the same way. */
    std::vector<cudaEvent_t> ev;
    for (int i = 0; !rc && i <= iters; ++i) {
        cudaEvent_t x = nullptr;
        if (cudaEventCreate(&x) != cudaSuccess) rc = cu_fail(c, MSA_EBACKEND, "cuda: cudaEventCreate failed");
        else ev.push_back(x);
    }
    cudaError_t e = cudaSuccess;
    for (int i = 0; !rc && e == cudaSuccess && i < warm; ++i) e = cudaGraphLaunch(ex[i % nprob], c->cap);
    if (!rc && e == cudaSuccess) e = cudaStreamSynchronize(c->cap);
    if (!rc && e == cudaSuccess) e = cudaEventRecord(ev[0], c->cap);
    for (int i = 0; !rc && e == cudaSuccess && i < iters; ++i) {
        e = cudaGraphLaunch(ex[(warm + i) % nprob], c->cap);
        if (e == cudaSuccess) e = cudaEventRecord(ev[i + 1], c->cap);
    }
    if (!rc && e == cudaSuccess) e = cudaStreamSynchronize(c->cap);
    for (int i = 0; !rc && e == cudaSuccess && i < iters; ++i) e = cudaEventElapsedTime(&ms[i], ev[i], ev[i + 1]);
    if (!rc && e != cudaSuccess) rc = cu_fail(c, MSA_EBACKEND, "cuda: timed launch: %s", cudaGetErrorString(e));
    for (cudaEvent_t x : ev) cudaEventDestroy(x);
    for (int i = 0; i < nprob; ++i) if (ex[i]) cudaGraphExecDestroy(ex[i]);
    return rc;
}

/* ---- memory ---- */
static void *cu_dev_alloc(void *ctx, size_t bytes)
{
    void *ptr = nullptr;
    cudaError_t e = cudaMalloc(&ptr, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cu_fail((msa_cu_ctx *)ctx, MSA_ENOMEM, "cuda: cudaMalloc(%zu): %s", bytes, cudaGetErrorString(e));
        return nullptr;
    }
    return ptr;
}
static void cu_dev_free(void *ctx, void *ptr) { if (ptr) cudaFree(ptr); }
static int cu_copy_to_dev(void *ctx, void *dst, const void *src, size_t n)
{
    CU_CHECK((msa_cu_ctx *)ctx, cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "copy_to_dev");
    return 0;
}
static int cu_copy_to_host(void *ctx, void *dst, const void *src, size_t n)
{
    CU_CHECK((msa_cu_ctx *)ctx, cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "copy_to_host");
    return 0;
}
static int cu_sync(void *ctx)
{
    CU_CHECK((msa_cu_ctx *)ctx, cudaDeviceSynchronize(), "sync");
    return 0;
}

/* ---- the tables ---- */
static msa_arith cu_arith(void)
{
    msa_arith a;
    memset(&a, 0, sizeof a);
    a.out_dtype = MSA_DT_INVALID; /* follows the input: bf16 or fp16 (design step 4) */
    a.accum_bits = MSA_CU_TC_ACCUM_BITS;
    a.p_dtype = MSA_DT_INVALID; /* follows the input: fp16 for fp16 (V's MMA type), else bf16 */
    a.exp_kind = MSA_EXP_EX2_APPROX;
    a.exp_rel_err = MSA_CU_EX2_REL_ERR;
    a.merge = MSA_MERGE_LSE;
    a.max_partials = 0;
    a.key_kind = MSA_KEY_FP32;
    a.order = MSA_ORDER_ASCENDING;
    a.index_accum_bits = MSA_CU_TC_ACCUM_BITS;
    return a;
}

static msa_backend cu_table(const char *name, const char *desc, int (*init)(void **))
{
    msa_backend b;
    memset(&b, 0, sizeof b);
    b.abi_version = MSA_ABI_VERSION;
    b.name = name;
    b.description = desc;
    b.mem = MSA_MEM_DEVICE;
    b.arith = cu_arith();
    b.init = init;
    b.fini = cu_fini;
    b.last_error = cu_last_error;
    b.supports = cu_supports;
    b.index_scores = cu_index_scores;
    b.select = cu_select;
    b.attend = cu_attend;
    b.forward = cu_forward;
    b.dense = cu_dense;
    b.forward_replay = cu_forward_replay;
    b.dev_alloc = cu_dev_alloc;
    b.dev_free = cu_dev_free;
    b.copy_to_dev = cu_copy_to_dev;
    b.copy_to_host = cu_copy_to_host;
    b.sync = cu_sync;
    b.device_name = cu_device_name;
    return b;
}

struct cu_variant {
    const char *name, *desc;
    int (*init)(void **);
};
static const cu_variant cu_variants[] = {
    {"none", "CUDA kernels for Hopper (KV-outer block-sparse MSA, mma.sync)", cu_init<0>},
    {"diag-drop", "BUG: attention drops the diagonal key (j < pos)", cu_init<MSA_CU_BUG_DIAG_DROP>},
    {"noncausal", "BUG: causal flag ignored", cu_init<MSA_CU_BUG_NONCAUSAL>},
    {"shared-selection", "BUG: every group uses group 0's selection", cu_init<MSA_CU_BUG_SHARED_SEL>},
    {"merge-nan", "BUG: merge folds -1 slots in as -inf partials (NaN on empty rows)", cu_init<MSA_CU_BUG_MERGE_NAN>},
    {"unmasked-tail", "BUG: keys past pos in the query's own block not masked", cu_init<MSA_CU_BUG_UNMASKED_TAIL>},
    {"minus-one-index", "BUG: a -1 slot used as an index (wraps to the last visible block)", cu_init<MSA_CU_BUG_MINUS_ONE>},
};
#define CU_NVARIANTS (sizeof cu_variants / sizeof cu_variants[0])
static msa_backend cu_tables[CU_NVARIANTS];
static char cu_names[CU_NVARIANTS][64];

extern "C" const msa_backend *msa_backend_variant_v1(const char *variant)
{
    for (size_t i = 0; i < CU_NVARIANTS; ++i) {
        if (!variant || strcmp(variant, cu_variants[i].name)) continue;
        if (!cu_tables[i].name) { /* static tables, built on first use */
            snprintf(cu_names[i], sizeof cu_names[i], i ? "cuda:%s" : "cuda", cu_variants[i].name);
            cu_tables[i] = cu_table(cu_names[i], cu_variants[i].desc, cu_variants[i].init);
        }
        return &cu_tables[i];
    }
    return nullptr;
}

extern "C" const msa_backend *msa_backend_v1(void) { return msa_backend_variant_v1("none"); }

/* Names of the variants (for tests and `msa` listings), NULL-terminated. */
extern "C" const char *const *msa_cuda_variant_names(void)
{
    static const char *names[CU_NVARIANTS + 1];
    for (size_t i = 0; i < CU_NVARIANTS; ++i) names[i] = cu_variants[i].name;
    return names;
}
