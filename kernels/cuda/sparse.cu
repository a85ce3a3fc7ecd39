/* sparse.cu - the KV-outer main branch (MSA.md 5; design steps 3-5): the k2q CSR build,
 * the block-sparse attention kernel that loads each (KV head, KV block) once and attends
 * every (query, head) row that selected it, and the LSE merge of the partials.
 *
 * Every launch has a grid fixed by the plan (never by data), no host synchronisation
 * happens here, so the whole chain can be captured into a CUDA graph; decode (1-16 query
 * tokens per sequence) is the same chain: split-K over the selected blocks plus merge.
 * CSR entries are filled with atomics, so their order varies run to run; each MMA row is
 * independent of the other rows of its tile, so results are bitwise deterministic anyway.
 * P is rounded once to V's type (fp16 for fp16 inputs, bf16 otherwise), as declared
 * (p_dtype "follows the input"); an earlier version rounded to bf16 and then converted to
 * fp16, whose undeclared 2^-25 absolute error per small P the fuzzer caught on an H200.
 * The partials are merged by decode.cu's vector merge (msa_cu_merge_partials). */
#include "attn_core.cuh"

/* ---- CSR: count, scan, fill ---- */
__global__ void msa_cu_csr_count(msa_cu_prob p, int t0, int nrows, const int32_t *topk,
                                 const int *blk_off, int NB, int *cnt, int *cur, int *ent, int fill)
{
    int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t total = (int64_t)nrows * p.Hkv * p.topk;
    if (x >= total) return;
    int s = (int)(x % p.topk), g = (int)((x / p.topk) % p.Hkv), tl = (int)(x / p.topk / p.Hkv);
    int t = t0 + tl;
    msa_cu_row r = msa_cu_row_of(p, t);
    int id = msa_cu_sel_block(p, topk[((int64_t)g * p.total_q + t) * p.topk + s],
                              msa_cu_nvis(p, r.nkeys));
    if (id < 0) return;
    int cell = g * NB + blk_off[r.b] + id;
    if (!fill) {
        atomicAdd(&cnt[cell], 1);
    } else {
        int at = atomicAdd(&cur[cell], 1);
        ent[at] = tl * p.topk + s;
    }
}

/* Exclusive scan of n counts by one CTA of 1024 threads: off[0..n], cur = off; and, when
 * ord is given, the cells ordered by entry count, largest first (by floor(log2(count)),
 * a counting sort): the KV-outer grid takes its cells in that order, so a cell that many
 * rows selected (the diagonal block under causal masking, the initial blocks) starts in
 * the first wave instead of the last (issue 8: largest rows first).  The order within a
 * class is whatever the atomics give: each cell's CTA computes the same thing wherever it
 * runs, so the results do not depend on it. */
__device__ __forceinline__ int msa_cu_cnt_class(int c) { return c > 0 ? 32 - __clz(c) : 0; } /* 0..31 */

__global__ void msa_cu_csr_scan(const int *cnt, int n, int *off, int *cur, int *ord)
{
    __shared__ int part[1024];
    __shared__ int cls[32], at[32];
    int seg = (n + 1023) / 1024, a = threadIdx.x * seg, z = min(a + seg, n);
    int s = 0;
    for (int i = a; i < z; ++i) s += cnt[i];
    part[threadIdx.x] = s;
    if (threadIdx.x < 32) cls[threadIdx.x] = 0;
    __syncthreads();
    for (int d = 1; d < 1024; d <<= 1) { /* Hillis-Steele inclusive scan */
        int v = threadIdx.x >= d ? part[threadIdx.x - d] : 0;
        __syncthreads();
        part[threadIdx.x] += v;
        __syncthreads();
    }
    int run = part[threadIdx.x] - s;
    for (int i = a; i < z; ++i) {
        off[i] = run;
        cur[i] = run;
        run += cnt[i];
    }
    if (threadIdx.x == 1023) off[n] = part[1023];
    if (!ord) return;
    /* class histogram, one shared atomic per (warp, class) present */
    const int lane = threadIdx.x & 31, base0 = threadIdx.x & ~31;
    for (int b0 = base0; b0 < n; b0 += 1024) {
        const int i = b0 + lane, c = i < n ? msa_cu_cnt_class(cnt[i]) : -1;
        const unsigned same = __match_any_sync(0xffffffffu, c);
        if (c >= 0 && lane == __ffs(same) - 1) atomicAdd(&cls[c], __popc(same));
    }
    __syncthreads();
    if (threadIdx.x == 0) { /* class starts, largest class first */
        int o = 0;
        for (int k = 31; k >= 0; --k) { at[k] = o; o += cls[k]; }
    }
    __syncthreads();
    for (int b0 = base0; b0 < n; b0 += 1024) {
        const int i = b0 + lane, c = i < n ? msa_cu_cnt_class(cnt[i]) : -1;
        const unsigned same = __match_any_sync(0xffffffffu, c);
        const int leader = __ffs(same) - 1;
        int pos = 0;
        if (c >= 0 && lane == leader) pos = atomicAdd(&at[c], __popc(same));
        pos = __shfl_sync(0xffffffffu, pos, leader);
        if (c >= 0) ord[pos + __popc(same & ((1u << lane) - 1u))] = i;
    }
}

/* ---- attention: one CTA per (global KV block, KV head) ----
 * The K/V tile and the Q tiles come by cp.async, Q in two alternating buffers so the next
 * pass's rows are copied while this pass multiplies, and the MMA fragments by ldmatrix.x4
 * (attn_core.cuh's _x4 helpers; issue 8's v4). */
template <int D, bool F16>
__global__ void __launch_bounds__(MSA_CU_THREADS)
    msa_cu_sparse_attn(msa_cu_prob p, int t0, msa_cu_sparse_ws w)
{
    static_assert(D % 32 == 0, "the _x4 helpers take k-steps in pairs");
    extern __shared__ __align__(16) uint16_t sm[];
    const int ld = D + MSA_CU_PAD, B = p.B, nkt = B / 8;
    const int x = blockIdx.y * w.NB + blockIdx.x, cell = w.ord ? w.ord[x] : x, gb = cell % w.NB, g = cell / w.NB;
    const int e0 = w.off[cell], ne = w.off[cell + 1] - e0;
    if (ne == 0) return;
    uint16_t *sk = sm, *sv = sm + B * ld, *sq = sm + 2 * B * ld;
    __shared__ int s_jmax;
    const int b = w.blk_seq[gb], lb = w.blk_lb[gb], Lk = p.cu_k[b + 1] - p.cu_k[b];
    if (threadIdx.x == 0) s_jmax = 0;
    __syncthreads();
    /* Keys no row of this CTA sees are never loaded (the harness poisons them). */
    for (int e = threadIdx.x; e < ne; e += blockDim.x) {
        int nk = msa_cu_row_of(p, t0 + w.ent[e0 + e] / p.topk).nkeys;
        atomicMax(&s_jmax, (p.bugs & MSA_CU_BUG_UNMASKED_TAIL) ? Lk : nk);
    }
    __syncthreads();
    const int jmax = s_jmax;
    auto krow_k = [&](int r) -> const uint16_t * {
        int j = lb * B + r;
        return j < jmax ? p.k + (msa_cu_kv_row(p, b, j) * p.Hkv + g) * D : nullptr;
    };
    auto krow_v = [&](int r) -> const uint16_t * {
        int j = lb * B + r;
        return j < jmax ? p.v + (msa_cu_kv_row(p, b, j) * p.Hkv + g) * D : nullptr;
    };

    const int per = MSA_CU_ROWS / p.G; /* entries (queries) per pass */
    /* Q row r of the pass starting at entry e_pass, of nrow rows (nullptr: a zero row) */
    auto qrow = [&](int e_pass, int nrow, int r) -> const uint16_t * {
        if (r >= nrow) return nullptr;
        int t = t0 + w.ent[e0 + e_pass + r / p.G] / p.topk;
        return p.q + ((int64_t)t * p.Hq + g * p.G + r % p.G) * D;
    };
    auto qbuf = [&](int e_pass) { return sq + ((e_pass / per) & 1) * MSA_CU_ROWS * ld; };
    msa_cu_load_tile_async(sk, B, D, p.k, krow_k);
    msa_cu_load_tile_async(sv, B, D, p.v, krow_v);
    msa_cu_load_tile_async(qbuf(0), MSA_CU_ROWS, D, p.q, [&](int r) { return qrow(0, min(per, ne) * p.G, r); });
    msa_cu_cp_commit();

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int e_pass = 0; e_pass < ne; e_pass += per) {
        const int nrow = min(per, ne - e_pass) * p.G;
        if (e_pass + per < ne) /* the next pass's Q into the other buffer */
            msa_cu_load_tile_async(qbuf(e_pass + per), MSA_CU_ROWS, D, p.q,
                                   [&](int r) { return qrow(e_pass + per, min(per, ne - e_pass - per) * p.G, r); });
        msa_cu_cp_commit();
        msa_cu_cp_wait<1>();
        __syncthreads(); /* this pass's Q (and K/V) landed for every thread */
        const uint16_t *sqp = qbuf(e_pass);
        if (warp * 16 < nrow) {
            int lim[2], ent_of[2];
            #pragma unroll
            for (int h = 0; h < 2; ++h) {
                int r = warp * 16 + (lane >> 2) + 8 * h;
                lim[h] = 0;
                ent_of[h] = -1;
                if (r < nrow) {
                    ent_of[h] = w.ent[e0 + e_pass + r / p.G];
                    msa_cu_row rr = msa_cu_row_of(p, t0 + ent_of[h] / p.topk);
                    int nk = (p.bugs & MSA_CU_BUG_UNMASKED_TAIL) ? rr.Lk : rr.nkeys;
                    if ((p.bugs & MSA_CU_BUG_DIAG_DROP) && nk == rr.nkeys && nk > 0 && p.causal) nk -= 1;
                    lim[h] = min(max(nk - lb * B, 0), B);
                }
            }
            float S[MSA_CU_NT][4], mx[2], l[2];
            msa_cu_warp_scores_x4<F16>(sqp + warp * 16 * ld, sk, ld, D, nkt, S);
            msa_cu_scale_mask(S, nkt, lim[0], lim[1], p.c2, mx);
            float m[2] = {mx[0] == -CUDART_INF_F ? 0.f : mx[0], mx[1] == -CUDART_INF_F ? 0.f : mx[1]};
            uint32_t P[MSA_CU_NT / 2][4];
            msa_cu_exp_pack<F16>(S, m, P, l);
            float *dst[2] = {nullptr, nullptr};
            #pragma unroll
            for (int h = 0; h < 2; ++h) {
                if (ent_of[h] < 0) continue;
                int r = warp * 16 + (lane >> 2) + 8 * h;
                int64_t slot = ((int64_t)(ent_of[h] / p.topk) * p.topk + ent_of[h] % p.topk) * p.Hq +
                               g * p.G + r % p.G;
                dst[h] = w.pO + slot * D;
                if ((lane & 3) == 0)
                    w.pL[slot] = l[h] > 0.f ? (mx[h] + log2f(l[h])) * MSA_CU_LN2 : -CUDART_INF_F;
            }
            float inv[2] = {l[0] > 0.f ? 1.f / l[0] : 0.f, l[1] > 0.f ? 1.f / l[1] : 0.f};
    #pragma unroll
            for (int d0 = 0; d0 < D; d0 += 64) { /* 64 dims at a time bounds the registers */
                float O[8][4];
    #pragma unroll
                for (int nd = 0; nd < 8; ++nd) O[nd][0] = O[nd][1] = O[nd][2] = O[nd][3] = 0.f;
                msa_cu_warp_pv_x4<F16, 8>(P, nkt, sv, ld, d0, O);
    #pragma unroll
                for (int nd = 0; nd < 8; ++nd) {
                    int d = d0 + nd * 8 + (lane & 3) * 2;
                    #pragma unroll
                    for (int h = 0; h < 2; ++h)
                        if (dst[h])
                            *reinterpret_cast<float2 *>(dst[h] + d) =
                                make_float2(O[nd][2 * h] * inv[h], O[nd][2 * h + 1] * inv[h]);
                }
            }
        }
        __syncthreads(); /* every warp done with this Q buffer before its refill */
    }
    msa_cu_cp_wait<0>();
}

template <int D>
static size_t msa_cu_sparse_smem(int B)
{
    return (size_t)(2 * B + 2 * MSA_CU_ROWS) * (D + MSA_CU_PAD) * sizeof(uint16_t); /* K, V, two Q */
}

template <int D, bool F16>
static cudaError_t msa_cu_sparse_launch(const msa_cu_prob &p, int t0, const msa_cu_sparse_ws &w,
                                        cudaStream_t st)
{
    dim3 grid(w.NB, p.Hkv);
    msa_cu_sparse_attn<D, F16><<<grid, MSA_CU_THREADS, msa_cu_sparse_smem<D>(p.B), st>>>(p, t0, w);
    return cudaGetLastError();
}

cudaError_t msa_cu_sparse(const msa_cu_prob &p, const msa_cu_chunk &c, const int32_t *topk,
                          const msa_cu_sparse_ws &w, void *out, float *lse, cudaStream_t st)
{
    if (c.nrows <= 0) return cudaSuccess;
    cudaError_t e;
    const int ncell = p.Hkv * w.NB;
    if ((e = cudaMemsetAsync(w.cnt, 0, sizeof(int) * ncell, st)) != cudaSuccess) return e;
    int64_t total = (int64_t)c.nrows * p.Hkv * p.topk;
    unsigned nb = (unsigned)((total + 255) / 256);
    for (int fill = 0; fill < 2; ++fill) {
        msa_cu_csr_count<<<nb, 256, 0, st>>>(p, c.t0, c.nrows, topk, w.blk_off, w.NB, w.cnt, w.cur,
                                             w.ent, fill);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
        if (fill == 0) {
            msa_cu_csr_scan<<<1, 1024, 0, st>>>(w.cnt, ncell, w.off, w.cur, w.ord);
            if ((e = cudaGetLastError()) != cudaSuccess) return e;
        }
    }
    if (w.NB > 0) {
        bool h = p.fp16 != 0;
        if (p.D == 64) e = h ? msa_cu_sparse_launch<64, true>(p, c.t0, w, st) : msa_cu_sparse_launch<64, false>(p, c.t0, w, st);
        else if (p.D == 128) e = h ? msa_cu_sparse_launch<128, true>(p, c.t0, w, st) : msa_cu_sparse_launch<128, false>(p, c.t0, w, st);
        else e = h ? msa_cu_sparse_launch<256, true>(p, c.t0, w, st) : msa_cu_sparse_launch<256, false>(p, c.t0, w, st);
        if (e != cudaSuccess) return e;
    }
    return msa_cu_merge_partials(p, c.t0, c.nrows, topk, w.pO, w.pL, out, lse, st);
}

template <int D, bool F16>
static cudaError_t msa_cu_sparse_attr(void)
{
    return cudaFuncSetAttribute(msa_cu_sparse_attn<D, F16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)msa_cu_sparse_smem<D>(MSA_CU_MAXB));
}

cudaError_t msa_cu_sparse_set_attributes(void)
{
    cudaError_t e;
    if ((e = msa_cu_sparse_attr<64, false>()) || (e = msa_cu_sparse_attr<64, true>()) ||
        (e = msa_cu_sparse_attr<128, false>()) || (e = msa_cu_sparse_attr<128, true>()) ||
        (e = msa_cu_sparse_attr<256, false>()) || (e = msa_cu_sparse_attr<256, true>()))
        return e;
    return cudaSuccess;
}
