/* attn_core.cuh - the warp-level pieces shared by the sparse (KV-outer) and dense
 * attention kernels: 16 query rows of one warp against one tile of keys in shared memory.
 *
 * Fragment layouts are those of mma.sync.m16n8k16 (PTX ISA, "Matrix fragments for
 * mma.m16n8k16"): a lane holds rows lane/4 and lane/4+8, columns 2*(lane%4)+{0,1} of each
 * 8-wide n-tile.  Scores S = Q.K^T and O += P.V accumulate in fp32 in the tensor cores.
 * Nothing here decides which keys are visible: callers pass per-row key limits. */
#ifndef MSA_ATTN_CORE_CUH
#define MSA_ATTN_CORE_CUH

#include "msa_cuda.cuh"

#define MSA_CU_NT (MSA_CU_MAXB / 8) /* n-tiles of a key tile held in registers */

/* S[nt] = Q(16 x dim, rows of sq) . K(nkt*8 keys of sk)^T, fp32. ld = row pitch. */
template <bool F16>
__device__ __forceinline__ void msa_cu_warp_scores(const uint16_t *sq, const uint16_t *sk, int ld,
                                                   int dim, int nkt, float S[MSA_CU_NT][4])
{
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int nt = 0; nt < MSA_CU_NT; ++nt) S[nt][0] = S[nt][1] = S[nt][2] = S[nt][3] = 0.f;
    for (int kt = 0; kt < dim / 16; ++kt) {
        const uint16_t *qa = sq + (lane >> 2) * ld + kt * 16 + (lane & 3) * 2;
        uint32_t a[4] = {msa_cu_ld32(qa), msa_cu_ld32(qa + 8 * ld), msa_cu_ld32(qa + 8),
                         msa_cu_ld32(qa + 8 * ld + 8)};
#pragma unroll
        for (int nt = 0; nt < MSA_CU_NT; ++nt) {
            if (nt < nkt) {
                const uint16_t *kb = sk + (nt * 8 + (lane >> 2)) * ld + kt * 16 + (lane & 3) * 2;
                uint32_t b[2] = {msa_cu_ld32(kb), msa_cu_ld32(kb + 8)};
                msa_cu_mma<F16>(S[nt], a, b);
            }
        }
    }
}

/* x = S * c2 with keys at or past each row's limit set to -inf; returns the row maxima
 * (both rows of the lane, reduced over the quad that shares them). */
__device__ __forceinline__ void msa_cu_scale_mask(float S[MSA_CU_NT][4], int nkt, int lim0,
                                                  int lim1, float c2, float mx[2])
{
    const int lane = threadIdx.x & 31;
    mx[0] = mx[1] = -CUDART_INF_F;
#pragma unroll
    for (int nt = 0; nt < MSA_CU_NT; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            int col = nt * 8 + (lane & 3) * 2 + (e & 1);
            int lim = e < 2 ? lim0 : lim1;
            float x = (nt < nkt && col < lim) ? S[nt][e] * c2 : -CUDART_INF_F;
            S[nt][e] = x;
            mx[e >> 1] = fmaxf(mx[e >> 1], x);
        }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    }
}

/* P = ex2(x - m) rounded to V's type (bf16, or fp16 for fp16 inputs; design step 3), packed as the A operand of P.V;
 * lsum gets the fp32 sum of the rounded P of each row (quad-reduced).  m must be finite
 * (callers use 0 for rows with no visible key, so every P is then exactly 0). */
template <bool F16>
__device__ __forceinline__ void msa_cu_exp_pack(const float S[MSA_CU_NT][4], const float m[2],
                                                uint32_t P[MSA_CU_NT / 2][4], float lsum[2])
{
    lsum[0] = lsum[1] = 0.f;
#pragma unroll
    for (int ks = 0; ks < MSA_CU_NT / 2; ++ks) {
        uint16_t h[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            int nt = 2 * ks + (e >> 2), ee = e & 3;
            float r = msa_cu_round_p<F16>(msa_cu_ex2(S[nt][ee] - m[ee >> 1]), &h[e]);
            lsum[ee >> 1] += r;
        }
        P[ks][0] = msa_cu_pack(h[0], h[1]); /* row lane/4,   keys 16ks + 2(lane%4) */
        P[ks][1] = msa_cu_pack(h[2], h[3]); /* row lane/4+8 */
        P[ks][2] = msa_cu_pack(h[4], h[5]); /* row lane/4,   keys 16ks + 8 + 2(lane%4) */
        P[ks][3] = msa_cu_pack(h[6], h[7]);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        lsum[r] += __shfl_xor_sync(0xffffffffu, lsum[r], 1);
        lsum[r] += __shfl_xor_sync(0xffffffffu, lsum[r], 2);
    }
}

/* O[nd] += P . V[:, d0 + 8nd .. +8) for ND n-tiles of dims; V rows via ldmatrix.trans. */
template <bool F16, int ND>
__device__ __forceinline__ void msa_cu_warp_pv(const uint32_t P[MSA_CU_NT / 2][4], int nkt,
                                               const uint16_t *sv, int ld, int d0, float O[ND][4])
{
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int ks = 0; ks < MSA_CU_NT / 2; ++ks) {
        if (2 * ks < nkt) {
#pragma unroll
            for (int nd = 0; nd < ND; ++nd) {
                uint32_t b[2];
                msa_cu_ldsm_x2_trans(b, sv + (ks * 16 + (lane & 15)) * ld + d0 + nd * 8);
                msa_cu_mma<F16>(O[nd], P[ks], b);
            }
        }
    }
}

/* ---- ldmatrix.x4 forms of the two MMA helpers (issue 8's v4: sparse.cu's attention) ----
 * The same products into the same accumulators in the same k order as msa_cu_warp_scores
 * and msa_cu_warp_pv, with fragments by ldmatrix: A one x4 per k-step, B one x4 per
 * n-tile and pair of k-steps, V one x4.trans per pair of dim n-tiles: one shared-memory
 * instruction per two MMAs instead of two per MMA (v3's attention kernels were issue
 * bound on them, bench/NOTES.md).  dim must be a multiple of 32 (the caller, sparse.cu's
 * attention, asserts it of D). */
template <bool F16>
__device__ __forceinline__ void msa_cu_warp_scores_x4(const uint16_t *sq, const uint16_t *sk, int ld,
                                                      int dim, int nkt, float S[MSA_CU_NT][4])
{
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int nt = 0; nt < MSA_CU_NT; ++nt) S[nt][0] = S[nt][1] = S[nt][2] = S[nt][3] = 0.f;
    const uint16_t *qa = sq + (lane & 15) * ld + (lane >> 4) * 8; /* matrices: rows 0-7|8-15 x k 0-7|8-15 */
    const uint16_t *kb = sk + (lane & 7) * ld + (lane >> 3) * 8;  /* 8 keys x k 0-7|8-15|16-23|24-31 */
    for (int kt = 0; kt + 1 < dim / 16; kt += 2) {
        uint32_t a0[4], a1[4];
        msa_cu_ldsm_x4(a0, qa + kt * 16);
        msa_cu_ldsm_x4(a1, qa + kt * 16 + 16);
#pragma unroll
        for (int nt = 0; nt < MSA_CU_NT; ++nt) {
            if (nt < nkt) {
                uint32_t b[4];
                msa_cu_ldsm_x4(b, kb + nt * 8 * ld + kt * 16);
                msa_cu_mma<F16>(S[nt], a0, b);
                msa_cu_mma<F16>(S[nt], a1, b + 2);
            }
        }
    }
}

template <bool F16, int ND>
__device__ __forceinline__ void msa_cu_warp_pv_x4(const uint32_t P[MSA_CU_NT / 2][4], int nkt,
                                                  const uint16_t *sv, int ld, int d0, float O[ND][4])
{
    static_assert(ND % 2 == 0, "pairs of dim n-tiles per ldmatrix.x4");
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int ks = 0; ks < MSA_CU_NT / 2; ++ks) {
        if (2 * ks < nkt) {
#pragma unroll
            for (int nd = 0; nd < ND; nd += 2) { /* lanes 16-31 address dim n-tile nd + 1 */
                uint32_t b[4];
                msa_cu_ldsm_x4_trans(b, sv + (ks * 16 + (lane & 15)) * ld + d0 + nd * 8 + (lane >> 4) * 8);
                msa_cu_mma<F16>(O[nd], P[ks], b);
                msa_cu_mma<F16>(O[nd + 1], P[ks], b + 2);
            }
        }
    }
}

/* Stores one value of the output dtype (bf16 or fp16, round to nearest even). */
__device__ __forceinline__ void msa_cu_store_out(void *out, int64_t i, float x, int fp16)
{
    if (fp16)
        reinterpret_cast<__half *>(out)[i] = __float2half_rn(x);
    else
        reinterpret_cast<__nv_bfloat16 *>(out)[i] = __float2bfloat16_rn(x);
}

#endif
