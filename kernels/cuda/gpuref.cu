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
