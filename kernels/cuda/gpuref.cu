/* gpuref.cu - a GPU reference for contexts the CPU reference cannot reach in time:
 * attention of every query over a given selection (or dense causal), with the scores and
 * P.V as cuBLAS fp64 GEMMs on the inputs widened to double.
 *
 * Accuracy (why it can stand in for the exact reference): bf16/fp16 inputs are exact in
 * double, so every product is exact; a D-term fp64 dot has relative error below
 * D * 2^-53 of sum |q||k| (about 1e-14 for D <= 256); exp and log are CUDA's double
 * functions (at most 1-2 ulp); sums of up to 2^20 terms add at most 2^20 * 2^-53 ~ 1e-10
 * relative.  So out and lse are within ~1e-9 of the exact values, far below any bound the
 * oracle derives for fp32/bf16 kernels (~1e-3); tests/test_cuda.c checks it against the
 * exact CPU reference on overlapping sizes (measured on an H200, 2026-11-22: max |diff|
 * 8.9e-16 in out and lse over 4 cases, selection and dense).  Dense causal rows cost O(Lk) per query here,
 * so it suits decode and selections at any length, dense prefill up to ~128k.
 * Also msa_cuda_block_mass (end of file): the per-block dense softmax mass and index block
 * scores that `msa recall --device gpu` needs, same fp64 cuBLAS arithmetic, 1M+ keys.
 * Not a kernel under test: nothing here is tuned or declared in msa_arith. */
#include <cublas_v2.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <vector>

#include "msa_cuda.cuh"
extern "C" {
#include "../msa_abi.h"
}

#define GR_SCORE_BYTES ((size_t)1 << 31) /* score block [rows][Lk] doubles: 2 GiB */
#define GR_MAX_BLOCKS 16384                /* blocks of one sequence (2M keys at B 128) */

__device__ __forceinline__ double gr_ld(const uint16_t *x, int64_t i, int fp16)
{
    uint16_t b = x[i];
    if (fp16) return (double)__half2float(*reinterpret_cast<const __half *>(&b));
    return (double)__uint_as_float((uint32_t)b << 16);
}

/* K and V rows of (sequence b, head g) widened to double, contiguous [Lk][D]. */
__global__ void gr_widen_kv(msa_cu_prob p, int b, int g, int Lk, double *kd, double *vd)
{
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < (int64_t)Lk * p.D;
         x += (int64_t)gridDim.x * blockDim.x) {
        int j = (int)(x / p.D), d = (int)(x % p.D);
        int64_t src = (msa_cu_kv_row(p, b, j) * p.Hkv + g) * p.D + d;
        kd[x] = gr_ld(p.k, src, p.fp16);
        vd[x] = gr_ld(p.v, src, p.fp16);
    }
}

/* Q rows (query q0 + r / G, head g*G + r % G) widened, [R][D]. */
__global__ void gr_widen_q(msa_cu_prob p, int t0, int R, int g, double *qd)
{
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < (int64_t)R * p.D;
         x += (int64_t)gridDim.x * blockDim.x) {
        int r = (int)(x / p.D), d = (int)(x % p.D);
        qd[x] = gr_ld(p.q, ((int64_t)(t0 + r / p.G) * p.Hq + g * p.G + r % p.G) * p.D + d, p.fp16);
    }
}

/* One row per CTA: keep the allowed keys (visible, and in a selected block unless dense;
 * a block selected twice counts once), P = exp(scale*s - max) in place (0 elsewhere),
 * l and lse.  lse = -inf and l = 0 for an empty row. */
__global__ void gr_softmax_rows(msa_cu_prob p, int t0, int grp, int Lk, const int32_t *topk, double scale,
                                double *S, double *l_out, double *lse_out)
{
    __shared__ double red[256];
    __shared__ char allow[GR_MAX_BLOCKS]; /* per block of the sequence: selected? */
    const int r = blockIdx.x, t = t0 + r / p.G;
    msa_cu_row row = msa_cu_row_of(p, t);
    const int nvis = msa_cu_nvis(p, row.nkeys), nb = (Lk + p.B - 1) / p.B;
    for (int i = threadIdx.x; i < nb; i += blockDim.x) allow[i] = topk ? 0 : 1;
    __syncthreads();
    if (topk && threadIdx.x == 0)
        for (int s = 0; s < p.topk; ++s) {
            int id = topk[((int64_t)grp * p.total_q + t) * p.topk + s];
            if (id >= 0 && id < nvis) allow[id] = 1;
        }
    __syncthreads();
    double *Sr = S + (int64_t)r * Lk;
    double m = -INFINITY;
    for (int j = threadIdx.x; j < Lk; j += blockDim.x)
        if (j < row.nkeys && allow[j / p.B]) m = fmax(m, Sr[j] * scale);
    red[threadIdx.x] = m;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + w]);
        __syncthreads();
    }
    m = red[0];
    __syncthreads();
    double l = 0;
    for (int j = threadIdx.x; j < Lk; j += blockDim.x) {
        double e = (m > -INFINITY && j < row.nkeys && allow[j / p.B]) ? exp(Sr[j] * scale - m) : 0.0;
        Sr[j] = e;
        l += e;
    }
    red[threadIdx.x] = l;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        l_out[r] = red[0];
        lse_out[r] = red[0] > 0 ? m + log(red[0]) : -INFINITY;
    }
}

__global__ void gr_normalise(int R, int D, const double *l, double *O)
{
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < (int64_t)R * D;
         x += (int64_t)gridDim.x * blockDim.x)
        O[x] = l[x / D] > 0 ? O[x] / l[x / D] : 0.0;
}

#define GR_CHECK(call, what)                                                                   \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            snprintf(err, errlen, "cuda gpuref: %s: %s", what, cudaGetErrorString(e_));        \
            rc = MSA_EBACKEND;                                                                 \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)
#define GR_BLAS(call, what)                                                                    \
    do {                                                                                       \
        cublasStatus_t s_ = (call);                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                     \
            snprintf(err, errlen, "cuda gpuref: %s: cuBLAS status %d", what, (int)s_);         \
            rc = MSA_EBACKEND;                                                                 \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)

/* The reference over `topk` (device, [HI][Tq][topk]; NULL: dense causal GQA) for problem
 * p (device inputs, bf16 or fp16).  out_host double [Tq][Hq][D], lse_host double
 * [Tq][Hq] (natural log), both on the host.  Returns 0 or an msa_status, with a message
 * in err.  Synchronous. */
extern "C" int msa_cuda_gpuref(const msa_problem *p, const int32_t *topk, double *out_host,
                               double *lse_host, char *err, size_t errlen)
{
    int rc = 0;
    cublasHandle_t h = nullptr;
    double *kd = nullptr, *vd = nullptr, *qd = nullptr, *S = nullptr, *O = nullptr, *l = nullptr, *ls = nullptr;
    std::vector<double> ob, lb;
    if (p->dtype != MSA_DT_BF16 && p->dtype != MSA_DT_FP16) {
        snprintf(err, errlen, "cuda gpuref: dtype: only bf16 and fp16");
        return MSA_EUNSUPPORTED;
    }
    msa_cu_prob d;
    memset(&d, 0, sizeof d);
    d.batch = p->batch; d.total_q = p->total_q; d.Hq = p->Hq; d.Hkv = p->Hkv; d.D = p->D; d.HI = p->HI;
    d.B = p->block_size; d.topk = p->topk; d.causal = p->causal; d.max_blocks = p->max_blocks;
    d.G = p->Hq / p->Hkv; d.fp16 = p->dtype == MSA_DT_FP16;
    d.cu_q = p->cu_seqlens_q; d.cu_k = p->cu_seqlens_k; d.page_table = p->num_pages > 0 ? p->page_table : nullptr;
    d.q = (const uint16_t *)p->q; d.k = (const uint16_t *)p->k; d.v = (const uint16_t *)p->v;
    const int D = p->D, G = d.G;
    int maxlk = 1;
    for (int b = 0; b < p->batch; ++b) {
        int lk = p->cu_seqlens_k_host[b + 1] - p->cu_seqlens_k_host[b];
        maxlk = lk > maxlk ? lk : maxlk;
    }
    if ((maxlk + d.B - 1) / d.B > GR_MAX_BLOCKS) {
        snprintf(err, errlen, "cuda gpuref: a sequence has more than %d blocks", GR_MAX_BLOCKS);
        return MSA_EUNSUPPORTED;
    }
    /* rows (query, head of the group) per GEMM: the score block fits GR_SCORE_BYTES */
    int R = (int)(GR_SCORE_BYTES / ((size_t)maxlk * sizeof(double)));
    R = R / G * G;
    if (R < G) R = G;
    if (R > 4096 * G) R = 4096 * G;
    const double one = 1.0, zero = 0.0;
    GR_BLAS(cublasCreate(&h), "cublasCreate");
    GR_BLAS(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    GR_CHECK(cudaMalloc(&kd, sizeof(double) * (size_t)maxlk * D), "cudaMalloc");
    GR_CHECK(cudaMalloc(&vd, sizeof(double) * (size_t)maxlk * D), "cudaMalloc");
    GR_CHECK(cudaMalloc(&qd, sizeof(double) * (size_t)R * D), "cudaMalloc");
    GR_CHECK(cudaMalloc(&O, sizeof(double) * (size_t)R * D), "cudaMalloc");
    GR_CHECK(cudaMalloc(&S, sizeof(double) * (size_t)R * maxlk), "cudaMalloc");
    GR_CHECK(cudaMalloc(&l, sizeof(double) * R), "cudaMalloc");
    GR_CHECK(cudaMalloc(&ls, sizeof(double) * R), "cudaMalloc");
    ob.resize((size_t)R * D);
    lb.resize(R);
    for (int b = 0; b < p->batch; ++b) {
        int q0 = p->cu_seqlens_q_host[b], Lq = p->cu_seqlens_q_host[b + 1] - q0;
        int Lk = p->cu_seqlens_k_host[b + 1] - p->cu_seqlens_k_host[b];
        for (int g = 0; g < p->Hkv && Lq > 0; ++g) {
            if (Lk > 0) {
                gr_widen_kv<<<1024, 256>>>(d, b, g, Lk, kd, vd);
                GR_CHECK(cudaGetLastError(), "widen K/V");
            }
            for (int i0 = 0; i0 < Lq; i0 += R / G) {
                int nq = Lq - i0 < R / G ? Lq - i0 : R / G, rows = nq * G;
                gr_widen_q<<<1024, 256>>>(d, q0 + i0, rows, g, qd);
                GR_CHECK(cudaGetLastError(), "widen Q");
                if (Lk > 0) /* S[rows][Lk] = Q K^T (row-major = column-major S^T = K Q^T) */
                    GR_BLAS(cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, Lk, rows, D, &one, kd, D, qd, D, &zero, S, Lk), "scores");
                gr_softmax_rows<<<rows, 256>>>(d, q0 + i0, g, Lk, topk, p->softmax_scale_f64, S, l, ls);
                GR_CHECK(cudaGetLastError(), "softmax rows");
                if (Lk > 0) /* O[rows][D] = P V (column-major O^T = V^T P^T) */
                    GR_BLAS(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, D, rows, Lk, &one, vd, D, S, Lk, &zero, O, D), "P.V");
                else
                    GR_CHECK(cudaMemset(O, 0, sizeof(double) * (size_t)rows * D), "memset");
                gr_normalise<<<256, 256>>>(rows, D, l, O);
                GR_CHECK(cudaGetLastError(), "normalise");
                GR_CHECK(cudaMemcpy(ob.data(), O, sizeof(double) * (size_t)rows * D, cudaMemcpyDeviceToHost), "download");
                GR_CHECK(cudaMemcpy(lb.data(), ls, sizeof(double) * rows, cudaMemcpyDeviceToHost), "download");
                for (int r = 0; r < rows; ++r) {
                    int64_t row = (int64_t)(q0 + i0 + r / G) * p->Hq + g * G + r % G;
                    memcpy(out_host + row * D, ob.data() + (size_t)r * D, sizeof(double) * D);
                    lse_host[row] = lb[r];
                }
            }
        }
    }
done:
    if (h) cublasDestroy(h);
    double *all[] = {kd, vd, qd, S, O, l, ls};
    for (double *x : all) if (x) cudaFree(x);
    return rc;
}

/* ======================================================================== recall's input
 * msa_cuda_block_mass: what traces/recall.c needs from dense attention and from the index
 * branch, for the query rows of ONE sequence, so that `msa recall` reaches 1M-token layers:
 *
 *   mass[bi][(g*row_stride + r)*nblk[bi] + b]
 *       = sum over keys j of block b (size B[bi]), j < nkeys[r], of
 *         sum over the G heads h of group g of  P[h][j] / G,
 *     P = the dense causal softmax of scale * q[r,h].k[j,g] over j < nkeys[r];
 *   scores[bi][(g*row_stride + r)*nblk[bi] + b]   (when scores != NULL)
 *       = iscale * max { iq[r,g].ik[j] : j in block b, j < nkeys[r] },
 *         -inf for b >= ceil(nkeys[r] / B[bi]).
 * Both exactly as recall.c computes them on the CPU (its row_mass adds p/z/G over the heads
 * in order, then the blocks' keys in order; the block kernel below adds in the same order).
 *
 * Inputs are host float arrays (every storage dtype of a case - bf16, fp16, e4m3, fp32 -
 * is exact in float): k [Lk][Hkv][D], q [nrows][Hkv*G][D], ik [Lk][DI], iq [nrows][Hkv][DI],
 * keys in logical order (the caller resolves pages / pools).  Scores are cuBLAS DGEMMs on
 * the inputs widened to double: every product of two float-exact inputs with at most 24-bit
 * significands is exact in double, a D-term sum errs by at most D * 2^-53 relative to
 * sum |q||k|, and exp is CUDA's double exp (1 ulp).  Against the CPU path (the same double
 * arithmetic in another summation order) each mass differs by ~1e-15 relative; a ranking can
 * only change where two blocks' masses or index scores agree to ~1e-15 (measured on the GPU
 * by tests/test_recall_gpu.c: identical tables on the test trace).  Workspace is bounded:
 * K/V widened per group (Lk x max(D, DI) doubles) and one score tile of at most
 * GR_SCORE_BYTES, so 1M+ keys work with a few GB of GPU memory; no Lk^2 anything. */

/* Column g of k (float [Lk][Hkv][D]) widened to double [Lk][D]. */
__global__ void gr_bm_widen_k(const float *k, int Lk, int Hkv, int g, int D, double *kd)
{
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < (int64_t)Lk * D;
         x += (int64_t)gridDim.x * blockDim.x)
        kd[x] = (double)k[((x / D) * Hkv + g) * D + x % D];
}

/* Rows of query i0.. (heads g*G..g*G+G-1, or the one index head g when G == 1 and
 * src has Hsrc = Hkv heads) widened: out[r][D], r = query * G + head. */
__global__ void gr_bm_widen_rows(const float *src, int i0, int R, int Hsrc, int h0, int G, int D, double *out)
{
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < (int64_t)R * D;
         x += (int64_t)gridDim.x * blockDim.x) {
        int r = (int)(x / D), d = (int)(x % D);
        out[x] = (double)src[((int64_t)(i0 + r / G) * Hsrc + h0 + r % G) * D + d];
    }
}

/* One CTA per row r (query i0 + r/G): S[r][j] <- exp(scale*S - max) / z for j < nkeys, else 0. */
__global__ void gr_bm_softmax(double *S, int Lk, int G, int i0, const int *nkeys, double scale)
{
    __shared__ double red[256];
    const int r = blockIdx.x, nk = nkeys[i0 + r / G];
    double *Sr = S + (int64_t)r * Lk;
    double m = -INFINITY;
    for (int j = threadIdx.x; j < nk; j += blockDim.x) m = fmax(m, scale * Sr[j]);
    red[threadIdx.x] = m;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + w]);
        __syncthreads();
    }
    m = red[0];
    __syncthreads();
    double z = 0;
    for (int j = threadIdx.x; j < nk; j += blockDim.x) z += exp(scale * Sr[j] - m);
    red[threadIdx.x] = z;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    z = red[0];
    for (int j = threadIdx.x; j < Lk; j += blockDim.x) Sr[j] = j < nk ? exp(scale * Sr[j] - m) / z : 0.0;
}

/* Thread per (query row q of the tile, block b): the block's mass, heads averaged per key. */
__global__ void gr_bm_blocksum(const double *P, int Lk, int G, int nq, int i0, const int *nkeys, int B, int nblk,
                               double *out)
{
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < (int64_t)nq * nblk;
         x += (int64_t)gridDim.x * blockDim.x) {
        int q = (int)(x / nblk), b = (int)(x % nblk), nk = nkeys[i0 + q];
        int64_t j0 = (int64_t)b * B, j1 = j0 + B < nk ? j0 + B : nk;
        double acc = 0;
        for (int64_t j = j0; j < j1; ++j) {
            double pb = 0;
            for (int h = 0; h < G; ++h) pb += P[((int64_t)q * G + h) * Lk + j] / G;
            acc += pb;
        }
        out[x] = acc;
    }
}

/* Thread per (query row q, block b): iscale * max visible token score, -inf past nvis. */
__global__ void gr_bm_blockmax(const double *S, int Lk, int nq, int i0, const int *nkeys, int B, int nblk,
                               double iscale, double *out)
{
    for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < (int64_t)nq * nblk;
         x += (int64_t)gridDim.x * blockDim.x) {
        int q = (int)(x / nblk), b = (int)(x % nblk), nk = nkeys[i0 + q];
        int64_t j0 = (int64_t)b * B, j1 = j0 + B < nk ? j0 + B : nk;
        double m = -INFINITY;
        for (int64_t j = j0; j < j1; ++j) m = fmax(m, S[(int64_t)q * Lk + j]);
        out[x] = j0 < nk ? iscale * m : -INFINITY;
    }
}

#define GR_BM_MAXB 8 /* block sizes per call (recall's --block takes at most 8) */

extern "C" int msa_cuda_block_mass(int Lk, int nrows, int Hkv, int G, int D, int DI, const float *k,
                                   const float *q, const float *ik, const float *iq, const int *nkeys,
                                   double scale, double iscale, int nB, const int *B, const int *nblk,
                                   double *const *mass, double *const *scores, int row_stride, char *err,
                                   size_t errlen)
{
    int rc = 0;
    cublasHandle_t h = nullptr;
    float *kf = nullptr, *qf = nullptr, *ikf = nullptr, *iqf = nullptr;
    double *kd = nullptr, *qd = nullptr, *S = nullptr, *ob = nullptr;
    int *nk = nullptr;
    std::vector<double> hb;
    const double one = 1.0, zero = 0.0;
    const int Hq = Hkv * G, W = D > DI ? D : DI;
    int maxnb = 1, nq = 1;
    if (Lk < 1 || nrows < 1 || Hkv < 1 || G < 1 || D < 1 || DI < 1 || nB < 1 || nB > GR_BM_MAXB || !k || !q ||
        !nkeys || !mass || (scores && (!ik || !iq))) {
        snprintf(err, errlen, "cuda block mass: arguments: empty or invalid shape");
        return MSA_EINPUT;
    }
    for (int bi = 0; bi < nB; ++bi) {
        if (B[bi] < 1 || nblk[bi] < (Lk + B[bi] - 1) / B[bi]) {
            snprintf(err, errlen, "cuda block mass: block size %d: nblk %d too small", B[bi], nblk[bi]);
            return MSA_EINPUT;
        }
        maxnb = nblk[bi] > maxnb ? nblk[bi] : maxnb;
    }
    /* query rows per tile: G score rows each, the tile within GR_SCORE_BYTES */
    nq = (int)(GR_SCORE_BYTES / ((size_t)Lk * sizeof(double) * G));
    if (nq < 1) nq = 1;
    if (nq > nrows) nq = nrows;
    GR_BLAS(cublasCreate(&h), "cublasCreate");
    GR_BLAS(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    GR_CHECK(cudaMalloc(&kf, sizeof(float) * (size_t)Lk * Hkv * D), "cudaMalloc");
    GR_CHECK(cudaMalloc(&qf, sizeof(float) * (size_t)nrows * Hq * D), "cudaMalloc");
    GR_CHECK(cudaMalloc(&kd, sizeof(double) * (size_t)Lk * W), "cudaMalloc");
    GR_CHECK(cudaMalloc(&qd, sizeof(double) * (size_t)nq * G * W), "cudaMalloc");
    GR_CHECK(cudaMalloc(&S, sizeof(double) * (size_t)nq * G * Lk), "cudaMalloc");
    GR_CHECK(cudaMalloc(&ob, sizeof(double) * (size_t)nq * maxnb), "cudaMalloc");
    GR_CHECK(cudaMalloc(&nk, sizeof(int) * (size_t)nrows), "cudaMalloc");
    GR_CHECK(cudaMemcpy(kf, k, sizeof(float) * (size_t)Lk * Hkv * D, cudaMemcpyHostToDevice), "upload k");
    GR_CHECK(cudaMemcpy(qf, q, sizeof(float) * (size_t)nrows * Hq * D, cudaMemcpyHostToDevice), "upload q");
    GR_CHECK(cudaMemcpy(nk, nkeys, sizeof(int) * (size_t)nrows, cudaMemcpyHostToDevice), "upload nkeys");
    if (scores) {
        GR_CHECK(cudaMalloc(&ikf, sizeof(float) * (size_t)Lk * DI), "cudaMalloc");
        GR_CHECK(cudaMalloc(&iqf, sizeof(float) * (size_t)nrows * Hkv * DI), "cudaMalloc");
        GR_CHECK(cudaMemcpy(ikf, ik, sizeof(float) * (size_t)Lk * DI, cudaMemcpyHostToDevice), "upload index_k");
        GR_CHECK(cudaMemcpy(iqf, iq, sizeof(float) * (size_t)nrows * Hkv * DI, cudaMemcpyHostToDevice),
                 "upload index_q");
    }
    hb.resize((size_t)nq * maxnb);
    for (int pass = 0; pass < (scores ? 2 : 1); ++pass) {
        const int dim = pass ? DI : D, rg = pass ? 1 : G; /* score rows per query */
        double *const *dst = pass ? scores : mass;
        if (pass) { /* index keys are shared by the groups: widen once */
            gr_bm_widen_k<<<1024, 256>>>(ikf, Lk, 1, 0, DI, kd);
            GR_CHECK(cudaGetLastError(), "widen index_k");
        }
        for (int g = 0; g < Hkv; ++g) {
            if (!pass) {
                gr_bm_widen_k<<<1024, 256>>>(kf, Lk, Hkv, g, D, kd);
                GR_CHECK(cudaGetLastError(), "widen k");
            }
            for (int i0 = 0; i0 < nrows; i0 += nq) {
                int n = nrows - i0 < nq ? nrows - i0 : nq, rows = n * rg;
                if (pass) gr_bm_widen_rows<<<256, 256>>>(iqf, i0, rows, Hkv, g, 1, DI, qd);
                else gr_bm_widen_rows<<<256, 256>>>(qf, i0, rows, Hq, g * G, G, D, qd);
                GR_CHECK(cudaGetLastError(), "widen rows");
                /* S[rows][Lk] = Q K^T (row-major S = column-major S^T = K Q^T) */
                GR_BLAS(cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, Lk, rows, dim, &one, kd, dim, qd, dim, &zero, S, Lk),
                        "scores");
                if (!pass) {
                    gr_bm_softmax<<<rows, 256>>>(S, Lk, G, i0, nk, scale);
                    GR_CHECK(cudaGetLastError(), "softmax");
                }
                for (int bi = 0; bi < nB; ++bi) {
                    if (pass) gr_bm_blockmax<<<1024, 256>>>(S, Lk, n, i0, nk, B[bi], nblk[bi], iscale, ob);
                    else gr_bm_blocksum<<<1024, 256>>>(S, Lk, G, n, i0, nk, B[bi], nblk[bi], ob);
                    GR_CHECK(cudaGetLastError(), "block reduce");
                    GR_CHECK(cudaMemcpy(hb.data(), ob, sizeof(double) * (size_t)n * nblk[bi], cudaMemcpyDeviceToHost),
                             "download");
                    for (int r = 0; r < n; ++r)
                        memcpy(dst[bi] + ((size_t)g * row_stride + i0 + r) * nblk[bi], hb.data() + (size_t)r * nblk[bi],
                               sizeof(double) * nblk[bi]);
                }
            }
        }
    }
done:
    if (h) cublasDestroy(h);
    void *all[] = {kf, qf, ikf, iqf, kd, qd, S, ob, nk};
    for (void *x : all) if (x) cudaFree(x);
    return rc;
}
