/* dense.cu - flash-style dense causal GQA (design step 6): the baseline for the
 * benchmarks and the path for M3's dense layers.
 *
 * One CTA holds 64 MMA rows = (query, head) pairs of one sequence and one KV group (the
 * group's heads packed into the rows, so each K/V tile is loaded once for all of them)
 * and walks key tiles of block_size keys with online rescaling: per tile m' = max(m,
 * tile max), alpha = ex2(m - m'), P = ex2(x - m') rounded to V's type, l = alpha*l + sum P,
 * O = alpha*O + P.V; the declared "partials" per row are its visible blocks.  It does
 * not select anything and has no split-K (each CTA walks its rows' whole key range). */
#include "attn_core.cuh"

template <int D, bool F16>
__global__ void __launch_bounds__(MSA_CU_THREADS)
    msa_cu_dense_attn(msa_cu_prob p, const int4 *tiles, void *out, float *lse)
{
    extern __shared__ __align__(16) uint16_t sm[];
    constexpr int ND = D / 8;
    const int ld = D + MSA_CU_PAD, B = p.B, nkt = B / 8, g = blockIdx.y;
    const int4 tile = tiles[blockIdx.x]; /* (sequence, first query, queries) */
    const int b = tile.x, q0 = p.cu_q[b] + tile.y, nrow = tile.z * p.G;
    uint16_t *sk = sm, *sv = sm + B * ld, *sq = sm + 2 * B * ld;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int jmax = msa_cu_row_of(p, q0 + tile.z - 1).nkeys; /* the last query sees most */

    msa_cu_load_tile(sq, MSA_CU_ROWS, D, [&](int r) -> const uint16_t * {
        if (r >= nrow) return nullptr;
        return p.q + ((int64_t)(q0 + r / p.G) * p.Hq + g * p.G + r % p.G) * D;
    });
    int nk[2];
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        int r = warp * 16 + (lane >> 2) + 8 * h;
        nk[h] = r < nrow ? msa_cu_row_of(p, q0 + r / p.G).nkeys : 0;
    }
    float O[ND][4], m[2] = {-CUDART_INF_F, -CUDART_INF_F}, l[2] = {0.f, 0.f};
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) O[nd][0] = O[nd][1] = O[nd][2] = O[nd][3] = 0.f;

    for (int j0 = 0; j0 < jmax; j0 += B) {
        __syncthreads(); /* previous tile consumed */
        auto row_k = [&](int r) -> const uint16_t * {
            int j = j0 + r;
            return j < jmax ? p.k + (msa_cu_kv_row(p, b, j) * p.Hkv + g) * D : nullptr;
        };
        auto row_v = [&](int r) -> const uint16_t * {
            int j = j0 + r;
            return j < jmax ? p.v + (msa_cu_kv_row(p, b, j) * p.Hkv + g) * D : nullptr;
        };
        msa_cu_load_tile(sk, B, D, row_k);
        msa_cu_load_tile(sv, B, D, row_v);
        __syncthreads();
        if (warp * 16 >= nrow) continue;
        float S[MSA_CU_NT][4], mx[2], ls[2], mu[2];
        msa_cu_warp_scores<F16>(sq + warp * 16 * ld, sk, ld, D, nkt, S);
        msa_cu_scale_mask(S, nkt, min(max(nk[0] - j0, 0), B), min(max(nk[1] - j0, 0), B), p.c2, mx);
        float alpha[2];
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            float mn = fmaxf(m[h], mx[h]);
            mu[h] = mn == -CUDART_INF_F ? 0.f : mn;
            alpha[h] = msa_cu_ex2(m[h] - mu[h]); /* 0 while m is -inf: O and l are 0 then */
            m[h] = mn;
        }
        uint32_t P[MSA_CU_NT / 2][4];
        msa_cu_exp_pack<F16>(S, mu, P, ls);
        for (int h = 0; h < 2; ++h) l[h] = l[h] * alpha[h] + ls[h];
#pragma unroll
        for (int nd = 0; nd < ND; ++nd) {
            O[nd][0] *= alpha[0]; O[nd][1] *= alpha[0];
            O[nd][2] *= alpha[1]; O[nd][3] *= alpha[1];
        }
        msa_cu_warp_pv<F16, ND>(P, nkt, sv, ld, 0, O);
    }
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        int r = warp * 16 + (lane >> 2) + 8 * h;
        if (r >= nrow) continue;
        int64_t row = (int64_t)(q0 + r / p.G) * p.Hq + g * p.G + r % p.G;
        float inv = l[h] > 0.f ? 1.f / l[h] : 0.f;
#pragma unroll
        for (int nd = 0; nd < ND; ++nd) {
            int d = nd * 8 + (lane & 3) * 2;
            msa_cu_store_out(out, row * D + d, O[nd][2 * h] * inv, p.fp16);
            msa_cu_store_out(out, row * D + d + 1, O[nd][2 * h + 1] * inv, p.fp16);
        }
        if ((lane & 3) == 0)
            lse[row] = l[h] > 0.f ? (m[h] + log2f(l[h])) * MSA_CU_LN2 : -CUDART_INF_F;
    }
}

template <int D>
static size_t msa_cu_dense_smem(int B)
{
    return (size_t)(2 * B + MSA_CU_ROWS) * (D + MSA_CU_PAD) * sizeof(uint16_t);
}

template <int D, bool F16>
static cudaError_t msa_cu_dense_launch(const msa_cu_prob &p, const int4 *tiles, int n, void *out,
                                       float *lse, cudaStream_t st)
{
    dim3 grid(n, p.Hkv);
    msa_cu_dense_attn<D, F16><<<grid, MSA_CU_THREADS, msa_cu_dense_smem<D>(p.B), st>>>(p, tiles, out, lse);
    return cudaGetLastError();
}

cudaError_t msa_cu_dense(const msa_cu_prob &p, const int4 *tiles, int n, void *out, float *lse,
                         cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    bool h = p.fp16 != 0;
    if (p.D == 64) return h ? msa_cu_dense_launch<64, true>(p, tiles, n, out, lse, st) : msa_cu_dense_launch<64, false>(p, tiles, n, out, lse, st);
    if (p.D == 128) return h ? msa_cu_dense_launch<128, true>(p, tiles, n, out, lse, st) : msa_cu_dense_launch<128, false>(p, tiles, n, out, lse, st);
    return h ? msa_cu_dense_launch<256, true>(p, tiles, n, out, lse, st) : msa_cu_dense_launch<256, false>(p, tiles, n, out, lse, st);
}

template <int D, bool F16>
static cudaError_t msa_cu_dense_attr(void)
{
    return cudaFuncSetAttribute(msa_cu_dense_attn<D, F16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)msa_cu_dense_smem<D>(MSA_CU_MAXB));
}

cudaError_t msa_cu_dense_set_attributes(void)
{
    cudaError_t e;
    if ((e = msa_cu_dense_attr<64, false>()) || (e = msa_cu_dense_attr<64, true>()) ||
        (e = msa_cu_dense_attr<128, false>()) || (e = msa_cu_dense_attr<128, true>()) ||
        (e = msa_cu_dense_attr<256, false>()) || (e = msa_cu_dense_attr<256, true>()))
        return e;
    return cudaSuccess;
}
