/* decode.cu - the decode path of the CUDA backend (issue 8): few query rows per sequence
 * (Lq <= 16) over a long context.  backend.cu picks it per plan (cu_decode_ok there says
 * when); the prefill kernels (index.cu, sparse.cu) serve everything else.
 *
 * Four kernels, each with a grid fixed by the plan (graph-capturable, no host sync):
 *  1. msa_cu_dscan: the index scan.  One CTA per (sequence slice of a chunk, range of key
 *     blocks), one warp per key block at a time.  Index keys are streamed straight from
 *     global memory into mma.sync B fragments with 16-byte loads, the next U n-tiles (8
 *     keys each) in flight while the current ones are multiplied; the (query, index head)
 *     rows (<= 64) sit in shared memory, already in A-fragment order.  The reduction dim
 *     is permuted identically in A and B (lane c of a key reads its 16-byte pieces 4L+c),
 *     which changes no product and no fp32 sum's term set.  bf16 keys use the bf16 MMA;
 *     fp16 and fp8 e4m3 use the fp16 MMA (e4m3 -> fp16 is exact: 3 mantissa bits,
 *     exponents 2^-9..2^8), so s = index_scale * fp32 dot exactly as index.cu declares.
 *     Block score = max over the block's keys j < nkeys(row) (mask before the max), -inf
 *     when none; written to the same [HI][rows][nblk] workspace as index.cu.
 *  2. msa_cu_dtopk: one CTA per (query row, group); the row's scores (<= 16 per thread,
 *     contiguous ids) stay in registers; the (k - forced)-th largest ordered fp32 key is
 *     found exactly by a 2-bit-per-step search (16 block reductions of 3 counts), then
 *     one packed scan counts keys above it and equal to it, and a second scan places the
 *     forced blocks, the keys above, and the lowest-id keys equal to it: ascending ids,
 *     -1 tail, exact ties to the lower id, i.e. the KEY_FP32 / ASCENDING declaration.
 *     A fast path runs first: one warp finds a lower bound of the threshold from each
 *     thread's largest key, and the few keys at or above it (<= MSA_CU_DTOPK_FEW) are
 *     ranked by (key desc, id asc) directly: the same set, without the 16 block-wide steps
 *     (which remain for rows with more keys at the bound than threads; $MSA_CUDA_TOPK=0:
 *     the search only); the bound's own search is cut short where that is exact (below;
 *     $MSA_CUDA_TOPK=1: its 32 steps).  Its first form lost picks where candidates outnumbered threads
 *     (bench/NOTES.md 2026-12-07); this form takes it only where every candidate has a thread.
 *  3. msa_cu_dattn: split-K attention, one CTA per (query row, KV group, selected slot):
 *     the block's K/V and the group's G query heads in shared memory (cp.async), the same warp
 *     helpers as the KV-outer kernel (attn_core.cuh), so each partial is computed exactly
 *     as the declared per-block partial (ex2.approx, P rounded to V's type, O/l, LSE).
 *  4. msa_cu_dmerge: the LSE merge of the <= k partials of each (row, head), as sparse.cu.
 * Not here: rows of more than 64 (query, index head) pairs per sequence, index rows whose
 * bytes are not 64/128/256/512, rows of more than 16384 blocks (backend.cu routes those
 * to the prefill kernels). */
#include <cuda_fp8.h>

#include "attn_core.cuh"

#define MSA_CU_DEC_WARPS 4    /* warps per scan CTA */
#define MSA_CU_DEC_MAXT 4     /* row tiles of 16 (query, index head) rows in a scan CTA */
#define MSA_CU_DTOPK_VPT 16   /* block scores per top-k thread (x 1024 = MSA_CU_TOPK_REGS_MAX) */
#define MSA_CU_DTOPK_FEW 256  /* the top-k's fast path: at most this many keys >= its bound */
#define MSA_CU_MAXD 256       /* largest head dim (the merge keeps D / 32 sums per lane) */

/* ---- 1. the index scan ---- */

__device__ __forceinline__ uint16_t msa_cu_e4m3_f16(uint8_t x)
{
    __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)x, __NV_E4M3);
    return h.x;
}

__device__ __forceinline__ uint32_t msa_cu_e4m3x2_f16x2(uint16_t x)
{
    __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)x, __NV_E4M3);
    return (uint32_t)h.x | ((uint32_t)h.y << 16); /* low byte -> low half (lower k) */
}

/* One 16-bit index-query value in the MMA's type (e4m3 widened to fp16). */
template <int KIND>
__device__ __forceinline__ uint16_t msa_cu_dq(const msa_cu_prob &p, int64_t elem)
{
    if (KIND == MSA_CU_IDX_E4M3) return msa_cu_e4m3_f16(((const uint8_t *)p.iq)[elem]);
    return ((const uint16_t *)p.iq)[elem];
}

template <int KIND, int NL>
__global__ void __launch_bounds__(MSA_CU_DEC_WARPS * 32, 4)
    msa_cu_dscan(msa_cu_prob p, int t0, int nrows, const int4 *tasks, int bpc, float *S, int ldS)
{
    constexpr bool F16 = KIND != MSA_CU_IDX_BF16;
    constexpr int VPL = KIND == MSA_CU_IDX_E4M3 ? 16 : 8; /* dims per 16-byte load */
    constexpr int KS = NL * VPL / 4;                      /* k-steps of 16: DI / 16 */
    constexpr int U = NL >= 8 ? 1 : 8 / NL;               /* n-tiles per pipeline step */
    extern __shared__ uint4 sa[];                         /* [tile][KS][32 lanes] A fragments */
    const int4 tk = tasks[blockIdx.x];
    const int b = tk.x, n = tk.z, HI = p.HI, B = p.B, R = n * HI, ntiles = (R + 15) / 16;
    const int tq0 = p.cu_q[b] + tk.y;
    const int jmax = msa_cu_row_of(p, tq0 + n - 1).nkeys; /* the slice's last row sees most */
    const int blk0 = tk.w * bpc, blk1 = min(blk0 + bpc, msa_cu_nvis(p, jmax));
    if (blk0 >= blk1) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, c = lane & 3;
    /* keys each of the lane's rows sees; running block maxima of its rows */
    int nk[MSA_CU_DEC_MAXT][2];
    float run[MSA_CU_DEC_MAXT][2];
#pragma unroll
    for (int t = 0; t < MSA_CU_DEC_MAXT; ++t)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = t * 16 + (lane >> 2) + 8 * h;
            nk[t][h] = row < R ? msa_cu_row_of(p, tq0 + row / HI).nkeys : 0;
            run[t][h] = -CUDART_INF_F;
        }

    /* this warp's blocks: blk0 + warp + NW*m; its n-tiles f = m * ntb + nt, flattened */
    const int ntb = B / 8;
    const int nbw = blk1 - blk0 > warp ? (blk1 - blk0 - warp + MSA_CU_DEC_WARPS - 1) / MSA_CU_DEC_WARPS : 0;
    const int nf = nbw * ntb;
    auto blk_of = [&](int f) { return blk0 + warp + MSA_CU_DEC_WARPS * (f / ntb); };
    auto load = [&](int f, uint4 (&dst)[NL]) {
        const int j = blk_of(f) * B + (f % ntb) * 8 + (lane >> 2);
        if (f < nf && j < jmax) { /* keys no row sees are never read */
            const uint4 *src = (const uint4 *)p.ik + msa_cu_kv_row(p, b, j) * (NL * 4) + c;
#pragma unroll
            for (int L = 0; L < NL; ++L) dst[L] = __ldg(src + 4 * L);
        } else {
#pragma unroll
            for (int L = 0; L < NL; ++L) dst[L] = make_uint4(0, 0, 0, 0);
        }
    };
    auto compute = [&](int f, const uint4 (&raw)[NL]) {
        uint32_t kb[2 * KS];
#pragma unroll
        for (int L = 0; L < NL; ++L) {
            const uint32_t w4[4] = {raw[L].x, raw[L].y, raw[L].z, raw[L].w};
            if (KIND == MSA_CU_IDX_E4M3) {
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    kb[8 * L + 2 * q] = msa_cu_e4m3x2_f16x2((uint16_t)(w4[q] & 0xffffu));
                    kb[8 * L + 2 * q + 1] = msa_cu_e4m3x2_f16x2((uint16_t)(w4[q] >> 16));
                }
            } else {
#pragma unroll
                for (int q = 0; q < 4; ++q) kb[4 * L + q] = w4[q];
            }
        }
        const int blk = blk_of(f), nt = f % ntb;
        const int j0 = blk * B + nt * 8 + 2 * c;
#pragma unroll
        for (int t = 0; t < MSA_CU_DEC_MAXT; ++t) {
            if (t >= ntiles) break;
            float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int s = 0; s < KS; ++s) {
                const uint4 a4 = sa[(t * KS + s) * 32 + lane];
                const uint32_t a[4] = {a4.x, a4.y, a4.z, a4.w}, bb[2] = {kb[2 * s], kb[2 * s + 1]};
                msa_cu_mma<F16>(acc, a, bb);
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float x = j0 + (e & 1) < nk[t][e >> 1] ? acc[e] * p.iscale : -CUDART_INF_F;
                run[t][e >> 1] = fmaxf(run[t][e >> 1], x);
            }
        }
        if (nt == ntb - 1) { /* block done: quad max, store, reset */
#pragma unroll
            for (int t = 0; t < MSA_CU_DEC_MAXT; ++t) {
                if (t >= ntiles) break;
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    float m = run[t][h];
                    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
                    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
                    const int row = t * 16 + (lane >> 2) + 8 * h;
                    if (c == 0 && row < R)
                        S[((int64_t)(row % HI) * nrows + (tq0 + row / HI - t0)) * ldS + blk] = m;
                    run[t][h] = -CUDART_INF_F;
                }
            }
        }
    };
    /* the first keys are in flight while the queries are staged */
    uint4 cur[U][NL], nxt[U][NL];
#pragma unroll
    for (int u = 0; u < U; ++u) load(u, cur[u]);
    /* A fragments: value i of lane c is dim d(c,i) = 4*VPL*(i/VPL) + VPL*c + i%VPL, the
     * same dim the B side holds in that slot (see load: lane c reads 16-byte piece 4L+c) */
    for (int x = threadIdx.x; x < ntiles * KS * 32; x += blockDim.x) {
        const int ln = x & 31, s = (x >> 5) % KS, tile = x / (32 * KS), lc = ln & 3;
        uint32_t v[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int row = tile * 16 + (ln >> 2) + 8 * (e & 1), i = 4 * s + 2 * (e >> 1);
            const int d = 4 * VPL * (i / VPL) + VPL * lc + i % VPL; /* i even: d+1 is value i+1 */
            uint16_t lo = 0, hi = 0;
            if (row < R) {
                int64_t el = ((int64_t)(tq0 + row / HI) * HI + row % HI) * p.DI + d;
                lo = msa_cu_dq<KIND>(p, el);
                hi = msa_cu_dq<KIND>(p, el + 1);
            }
            v[e] = msa_cu_pack(lo, hi);
        }
        sa[x] = make_uint4(v[0], v[1], v[2], v[3]);
    }
    __syncthreads();

    for (int f = 0; f < nf; f += U) {
#pragma unroll
        for (int u = 0; u < U; ++u) load(f + U + u, nxt[u]); /* next step in flight */
#pragma unroll
        for (int u = 0; u < U; ++u)
            if (f + u < nf) compute(f + u, cur[u]);
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int L = 0; L < NL; ++L) cur[u][L] = nxt[u][L];
    }
}

/* ---- 2. the top-k ---- */

__device__ __forceinline__ uint32_t msa_cu_dord(float f) /* float -> key of the same order */
{
    uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Block-wide exclusive prefix sum of v (blockDim a multiple of 32); *tot gets the total.
 * sm: 32 ints; safe to call back to back (it synchronises before reusing sm). */
__device__ __forceinline__ int msa_cu_dscan_sum(int v, int *tot, int *sm)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int x = v;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
        int y = __shfl_up_sync(0xffffffffu, x, d);
        if (lane >= d) x += y;
    }
    __syncthreads();
    if (lane == 31) sm[warp] = x;
    __syncthreads();
    /* lane w reads warp w's total: two warp reductions instead of a serial walk of nw
     * shared loads (integer sums: exact in any order) */
    const int sw = lane < nw ? sm[lane] : 0;
    *tot = (int)__reduce_add_sync(0xffffffffu, (unsigned)sw);
    const int off = (int)__reduce_add_sync(0xffffffffu, (unsigned)(lane < warp ? sw : 0));
    return off + x - v;
}

__global__ void __launch_bounds__(1024)
    msa_cu_dtopk(msa_cu_prob p, int t0, int nrows, const float *S, int ldS, int32_t *topk)
{
    __shared__ int red[2][3][32], ssum[32];
    __shared__ uint32_t sh_mt[1024], sh_ck[MSA_CU_DTOPK_FEW], sh_T0;
    __shared__ int sh_cid[MSA_CU_DTOPK_FEW];
    const int tl = blockIdx.x, g = blockIdx.y, t = t0 + tl, K = p.topk;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int gs = (p.bugs & MSA_CU_BUG_SHARED_SEL) ? 0 : g;
    const float *row = S + ((int64_t)gs * nrows + tl) * ldS;
    int32_t *out = topk + ((int64_t)g * p.total_q + t) * K;
    const int nvis = msa_cu_nvis(p, msa_cu_row_of(p, t).nkeys);
    if (nvis <= K) {
        for (int s = threadIdx.x; s < K; s += blockDim.x) out[s] = s < nvis ? s : -1;
        return;
    }
    const int c0 = p.init, c1 = nvis - p.local, kk = K - p.init - p.local;
    const int id0 = threadIdx.x * MSA_CU_DTOPK_VPT;
    uint32_t key[MSA_CU_DTOPK_VPT];
    unsigned cand = 0; /* bit v: id0 + v is a (non-forced, visible) candidate */
    if ((ldS & 3) == 0 && (reinterpret_cast<uintptr_t>(S) & 15) == 0) {
        /* 16-byte loads (4 per thread, not 16 scalar ones striding 64 bytes across the
         * warp): the same scores; a quad is read only where it holds a candidate, and
         * id < c1 <= ldS with ldS % 4 == 0 keeps all four inside the row */
#pragma unroll
        for (int j = 0; j < MSA_CU_DTOPK_VPT / 4; ++j) {
            const int id = id0 + 4 * j;
            float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
            if (id + 3 >= c0 && id < c1) x = *reinterpret_cast<const float4 *>(row + id);
            const float xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const bool cv = id + u >= c0 && id + u < c1;
                key[4 * j + u] = cv ? msa_cu_dord(xs[u]) : 0u;
                cand |= (unsigned)cv << (4 * j + u);
            }
        }
    } else {
#pragma unroll
        for (int v = 0; v < MSA_CU_DTOPK_VPT; ++v) {
            const int id = id0 + v;
            const bool cv = id >= c0 && id < c1;
            key[v] = cv ? msa_cu_dord(row[id]) : 0u;
            cand |= (unsigned)cv << v;
        }
    }
    /* Fast path: a lower bound T0 of the kk-th largest key from one key per thread (its
     * largest candidate), then the exact choice among the few keys >= T0.  With at least kk
     * of the per-thread maxima (of groups of threads past 512) >= T0 (or T0 = 0: every
     * candidate), at least kk keys are >= T0, so the kk-th largest key T >= T0 and every
     * key a selection can take (> T, or == T) is among those >= T0: choosing among them by
     * (key desc, id asc) picks exactly the set the search below picks, and they are placed
     * in ascending id order. */
    if (kk > 0 && !p.topk_search) {
        uint32_t mt = 0; /* 0 also for threads without candidates: T0 >= 1 never counts them */
#pragma unroll
        for (int v = 0; v < MSA_CU_DTOPK_VPT; ++v)
            if ((cand >> v) & 1u) mt = max(mt, key[v]);
        sh_mt[threadIdx.x] = mt;
        __syncthreads();
        if (warp == 0) { /* a T0 with #(slot >= T0) >= kk, one bit a step, one warp */
            uint32_t m[MSA_CU_DTOPK_VPT];
#pragma unroll
            for (int i = 0; i < MSA_CU_DTOPK_VPT; ++i) {
                m[i] = 0;
                for (int j = lane + 32 * i; j < (int)blockDim.x; j += 32 * MSA_CU_DTOPK_VPT) m[i] = max(m[i], sh_mt[j]);
            }
            /* The search keeps #(slot >= T0) >= kk at every step, so it may start and stop
             * anywhere that holds (any such T0 is a bound the selection below is exact for):
             * where at least kk slots are nonzero it starts from the leading bits all nonzero
             * slots share (each of them is >= that prefix), and it stops once exactly kk slots
             * are >= T0 (the remaining bits could only drop keys of those kk slots' threads
             * from the candidates, never a slot).  At 1M the maxima share their sign and
             * exponent bits and the kk-th and (kk+1)-th part within some 10 bits: ~10 steps
             * instead of 32 while the CTA's other warps wait at the barrier (default since
             * its H100 run, gpu-run20; $MSA_CUDA_TOPK=1: all 32 bits). */
            const bool quick = p.topk_quick != 0;
            unsigned nz = 0;
            uint32_t an = 0xffffffffu, orv = 0u;
#pragma unroll
            for (int i = 0; i < MSA_CU_DTOPK_VPT; ++i)
                if (m[i]) { ++nz; an &= m[i]; orv |= m[i]; }
            nz = __reduce_add_sync(0xffffffffu, nz);
            an = __reduce_and_sync(0xffffffffu, an);
            orv = __reduce_or_sync(0xffffffffu, orv);
            uint32_t T0 = 0;
            int b = 31, nT0 = -1; /* nT0: #(slot >= T0) where known (-1: T0 = 0, zero slots too) */
            if (!quick) {
                /* the full search: from bit 31, every bit */
            } else if ((int)nz >= kk) {
                const uint32_t diff = an ^ orv;
                b = diff ? 31 - __clz(diff) : -1;
                T0 = diff ? an & ~((2u << b) - 1u) : an; /* b = 31: 2u << 31 is 0, no prefix */
                nT0 = (int)nz;
            } else {
                b = -1; /* fewer than kk nonzero slots: no tb >= 1 is taken, T0 stays 0 (every candidate) */
            }
            for (; b >= 0 && (!quick || nT0 != kk); --b) {
                const uint32_t tb = T0 | (1u << b);
                unsigned n = 0;
#pragma unroll
                for (int i = 0; i < MSA_CU_DTOPK_VPT; ++i) n += m[i] >= tb;
                const int N = (int)__reduce_add_sync(0xffffffffu, n);
                if (N >= kk) { T0 = tb; nT0 = N; }
            }
            if (lane == 0) sh_T0 = T0;
        }
        __syncthreads();
        const uint32_t T0 = sh_T0;
        int nc = 0;
#pragma unroll
        for (int v = 0; v < MSA_CU_DTOPK_VPT; ++v) nc += ((cand >> v) & 1u) && key[v] >= T0;
        int C;
        int at = msa_cu_dscan_sum(nc, &C, ssum);
        if (C <= MSA_CU_DTOPK_FEW && C <= (int)blockDim.x) { /* block-uniform; one candidate per thread */
#pragma unroll
            for (int v = 0; v < MSA_CU_DTOPK_VPT; ++v)
                if (((cand >> v) & 1u) && key[v] >= T0) {
                    sh_ck[at] = key[v];
                    sh_cid[at] = id0 + v;
                    ++at;
                }
            __syncthreads();
            /* candidate x (in id order) is taken when fewer than kk candidates come
             * before it by (key desc, id asc) */
            bool sel = false;
            if ((int)threadIdx.x < C) {
                const uint32_t kx = sh_ck[threadIdx.x];
                int rank = 0;
                for (int j = 0; j < C; ++j) {
                    const uint32_t kj = sh_ck[j];
                    rank += kj > kx || (kj == kx && j < (int)threadIdx.x);
                }
                sel = rank < kk;
            }
            int nsel;
            const int ps = msa_cu_dscan_sum(sel, &nsel, ssum);
            if (sel) out[c0 + ps] = sh_cid[threadIdx.x];
            /* the forced blocks: [0, c0) first, [c1, nvis) after the kk chosen */
            for (int s = threadIdx.x; s < c0; s += blockDim.x) out[s] = s;
            for (int s = c1 + threadIdx.x; s < nvis; s += blockDim.x) out[c0 + kk + (s - c1)] = s;
            return;
        }
    }
    /* T = the kk-th largest key: the largest T with #(key >= T) >= kk, two bits a step */
    uint32_t T = 0;
    if (kk > 0) {
        for (int shift = 30, it = 0; shift >= 0; shift -= 2, ++it) {
            const uint32_t b1 = T | (1u << shift), b2 = T | (2u << shift), b3 = T | (3u << shift);
            unsigned n1 = 0, n2 = 0, n3 = 0;
#pragma unroll
            for (int v = 0; v < MSA_CU_DTOPK_VPT; ++v)
                if ((cand >> v) & 1u) {
                    n1 += key[v] >= b1;
                    n2 += key[v] >= b2;
                    n3 += key[v] >= b3;
                }
            n1 = __reduce_add_sync(0xffffffffu, n1);
            n2 = __reduce_add_sync(0xffffffffu, n2);
            n3 = __reduce_add_sync(0xffffffffu, n3);
            int (*r)[32] = red[it & 1]; /* double buffered: one barrier per step */
            if (lane == 0) { r[0][warp] = (int)n1; r[1][warp] = (int)n2; r[2][warp] = (int)n3; }
            __syncthreads();
            /* lane w reads warp w's counts (integer sums: exact in any order) */
            const int N1 = (int)__reduce_add_sync(0xffffffffu, lane < nw ? (unsigned)r[0][lane] : 0u);
            const int N2 = (int)__reduce_add_sync(0xffffffffu, lane < nw ? (unsigned)r[1][lane] : 0u);
            const int N3 = (int)__reduce_add_sync(0xffffffffu, lane < nw ? (unsigned)r[2][lane] : 0u);
            const uint32_t d = N3 >= kk ? 3u : N2 >= kk ? 2u : N1 >= kk ? 1u : 0u;
            T |= d << shift;
        }
    }
    /* keys above T and equal to T (counts <= 16384: packed 16 + 16 bits) */
    int ngt = 0, neq = 0;
#pragma unroll
    for (int v = 0; v < MSA_CU_DTOPK_VPT; ++v)
        if (kk > 0 && ((cand >> v) & 1u)) {
            ngt += key[v] > T;
            neq += key[v] == T;
        }
    int tot;
    const int pre = msa_cu_dscan_sum((neq << 16) | ngt, &tot, ssum);
    const int rem = kk - (tot & 0xffff); /* equal keys to take, lowest ids first */
    int eqi = pre >> 16, ntake = 0;
    unsigned take = 0;
#pragma unroll
    for (int v = 0; v < MSA_CU_DTOPK_VPT; ++v) {
        const int id = id0 + v;
        const bool cv = (cand >> v) & 1u, forced = id < nvis && !cv;
        bool tv = forced;
        if (cv && kk > 0) tv = key[v] > T || (key[v] == T && eqi < rem);
        if (cv && kk > 0 && key[v] == T) ++eqi;
        take |= (unsigned)tv << v;
        ntake += tv;
    }
    int ptot;
    int pos = msa_cu_dscan_sum(ntake, &ptot, ssum);
#pragma unroll
    for (int v = 0; v < MSA_CU_DTOPK_VPT; ++v)
        if ((take >> v) & 1u) {
            if (pos < K) out[pos] = id0 + v;
            ++pos;
        }
    for (int s = ptot + threadIdx.x; s < K; s += blockDim.x) out[s] = -1;
}

/* ---- 3. split-K attention: one CTA per (row, group, slot) ---- */

template <int D, bool F16>
__global__ void __launch_bounds__(MSA_CU_THREADS)
    msa_cu_dattn(msa_cu_prob p, int t0, const int32_t *topk, float *pO, float *pL)
{
    extern __shared__ __align__(16) uint16_t sm[];
    const int tl = blockIdx.x, g = blockIdx.y, s = blockIdx.z, t = t0 + tl, K = p.topk;
    const int B = p.B, G = p.G, ld = D + MSA_CU_PAD, nkt = B / 8;
    const msa_cu_row r = msa_cu_row_of(p, t);
    const int lb = msa_cu_sel_block(p, topk[((int64_t)g * p.total_q + t) * K + s], msa_cu_nvis(p, r.nkeys));
    if (lb < 0) return; /* the merge skips this slot */
    uint16_t *sk = sm, *sv = sm + B * ld, *sq = sm + 2 * B * ld;
    /* keys past what the row sees are never loaded (the harness poisons them) */
    const int jmax = (p.bugs & MSA_CU_BUG_UNMASKED_TAIL) ? r.Lk : r.nkeys;
    int nk = jmax;
    if ((p.bugs & MSA_CU_BUG_DIAG_DROP) && nk == r.nkeys && nk > 0 && p.causal) nk -= 1;
    const int lim = min(max(nk - lb * B, 0), B);
    /* K, V and Q by cp.async, one group: every copy of the CTA in flight at once (the
     * register-staged msa_cu_load_tile took 5 dependent round trips here) */
    msa_cu_load_tile_async(sk, B, D, p.k, [&](int rr) -> const uint16_t * {
        int j = lb * B + rr;
        return j < jmax ? p.k + (msa_cu_kv_row(p, r.b, j) * p.Hkv + g) * D : nullptr;
    });
    msa_cu_load_tile_async(sv, B, D, p.v, [&](int rr) -> const uint16_t * {
        int j = lb * B + rr;
        return j < jmax ? p.v + (msa_cu_kv_row(p, r.b, j) * p.Hkv + g) * D : nullptr;
    });
    const int RT = (G + 15) / 16;
    msa_cu_load_tile_async(sq, RT * 16, D, p.q, [&](int rr) -> const uint16_t * {
        return rr < G ? p.q + ((int64_t)t * p.Hq + g * G + rr) * D : nullptr;
    });
    msa_cu_cp_commit();
    msa_cu_cp_wait<0>();
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ndc = D / 32;
    /* work items (row tile, 32 output dims); each recomputes its tile's scores (cheap) */
    for (int it = warp; it < RT * ndc; it += MSA_CU_THREADS / 32) {
        const int rt = it / ndc, dc = it % ndc;
        float Sc[MSA_CU_NT][4], mx[2], l[2];
        msa_cu_warp_scores<F16>(sq + rt * 16 * ld, sk, ld, D, nkt, Sc);
        msa_cu_scale_mask(Sc, nkt, lim, lim, p.c2, mx);
        const float m[2] = {mx[0] == -CUDART_INF_F ? 0.f : mx[0], mx[1] == -CUDART_INF_F ? 0.f : mx[1]};
        uint32_t P[MSA_CU_NT / 2][4];
        msa_cu_exp_pack<F16>(Sc, m, P, l);
        float O[4][4];
#pragma unroll
        for (int nd = 0; nd < 4; ++nd) O[nd][0] = O[nd][1] = O[nd][2] = O[nd][3] = 0.f;
        msa_cu_warp_pv<F16, 4>(P, nkt, sv, ld, dc * 32, O);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int hh = rt * 16 + (lane >> 2) + 8 * h;
            if (hh >= G) continue;
            const int64_t slot = ((int64_t)tl * K + s) * p.Hq + g * G + hh;
            const float inv = l[h] > 0.f ? 1.f / l[h] : 0.f;
            float *dst = pO + slot * D;
#pragma unroll
            for (int nd = 0; nd < 4; ++nd) {
                const int d = dc * 32 + nd * 8 + (lane & 3) * 2;
                *reinterpret_cast<float2 *>(dst + d) = make_float2(O[nd][2 * h] * inv, O[nd][2 * h + 1] * inv);
            }
            if (dc == 0 && (lane & 3) == 0)
                pL[slot] = l[h] > 0.f ? (mx[h] + log2f(l[h])) * MSA_CU_LN2 : -CUDART_INF_F;
        }
    }
}

/* ---- 4. merge: one warp per (row, head); the arithmetic of sparse.cu's merge ----
 * V4 (the default where D % 4 == 0; $MSA_CUDA_MERGE=1 keeps the scalar form): 16-byte
 * loads of the partials, 8 slots in flight per lane (Nsight Compute, H200, v4 prefill 32k:
 * the scalar form read its partials at 23% of DRAM peak; V4 at 73%, H100, 1M, 2026-12-07). */
template <bool V4>
__global__ void msa_cu_dmerge(msa_cu_prob p, int t0, int nrows, const int32_t *topk, const float *pO,
                              const float *pL, void *out, float *lse)
{
    const int wid = (int)(((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (wid >= nrows * p.Hq) return;
    const int tl = wid / p.Hq, h = wid % p.Hq, t = t0 + tl, g = h / p.G;
    const int nvis = msa_cu_nvis(p, msa_cu_row_of(p, t).nkeys);
    const int32_t *sel = topk + ((int64_t)g * p.total_q + t) * p.topk;
    const bool nan_bug = (p.bugs & MSA_CU_BUG_MERGE_NAN) != 0;
    const int K = p.topk;
    const int64_t ob = ((int64_t)t * p.Hq + h) * p.D;
    /* Lane j holds slot s0 + j's validity and partial LSE, so the loads of a row are issued
     * together instead of one round trip per slot (Nsight Compute, H200: the serial form
     * took 37 us at 1M); the arithmetic and its order per output element are unchanged:
     * M = max over valid slots, sw = sum of expf(L_s - M) in slot order, then
     * out[d] = sum over slots in order of (expf(L_s - M) / sw) * O_s[d]. */
    /* slot s0 + lane: valid, and its partial LSE (-inf when not); the first 32 slots (all
     * of them where K <= 32) are read once and kept, not re-read by each of the three
     * passes below (two dependent round trips, selection then LSE, saved per pass) */
    auto slot = [&](int s0, bool &ok, float &L) {
        const int s = s0 + lane;
        ok = s < K && msa_cu_sel_block(p, sel[s], nvis) >= 0;
        L = ok ? pL[((int64_t)tl * K + s) * p.Hq + h] : -CUDART_INF_F;
    };
    bool ok0;
    float L0;
    slot(0, ok0, L0);
    auto slot_c = [&](int s0, bool &ok, float &L) {
        if (s0 == 0) { ok = ok0; L = L0; }
        else slot(s0, ok, L);
    };
    float M = -CUDART_INF_F;
    for (int s0 = 0; s0 < K; s0 += 32) {
        bool ok;
        float L;
        slot_c(s0, ok, L);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) L = fmaxf(L, __shfl_xor_sync(0xffffffffu, L, o));
        M = fmaxf(M, L);
    }
    if (M == -CUDART_INF_F && !nan_bug) { /* empty row: out 0, lse -inf, never NaN */
        for (int d = lane; d < p.D; d += 32) msa_cu_store_out(out, ob + d, 0.f, p.fp16);
        if (lane == 0) lse[(int64_t)t * p.Hq + h] = -CUDART_INF_F;
        return;
    }
    float sw = 0.f;
    for (int s0 = 0; s0 < K; s0 += 32) {
        const int s = s0 + lane;
        bool ok;
        float L;
        slot_c(s0, ok, L);
        const float e = (ok || (nan_bug && s < K)) ? expf(L - M) : 0.f;
        const int n = K - s0 < 32 ? K - s0 : 32;
        for (int j = 0; j < n; ++j) { /* in slot order, as the serial sum */
            const float ej = __shfl_sync(0xffffffffu, e, j);
            const bool uj = __shfl_sync(0xffffffffu, (int)(ok || nan_bug), j) != 0;
            if (uj) sw += ej;
        }
    }
    if constexpr (V4) {
        /* lane owns dims 4 lane + 128 i .. + 3: one 16-byte load per (slot, i), the loads of
         * 8 slots issued before their sums; each element's terms, weights and order as below */
        constexpr int NI = MSA_CU_MAXD / 128;
        float4 acc[NI];
#pragma unroll
        for (int i = 0; i < NI; ++i) acc[i] = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int s0 = 0; s0 < K; s0 += 32) {
            bool ok;
            float L;
            slot_c(s0, ok, L);
            const int n = K - s0 < 32 ? K - s0 : 32;
            for (int j0 = 0; j0 < n; j0 += 8) { /* j0 <= 24: every j below is < 32 */
                float wj[8];
                bool uj[8];
                float4 x[8][NI];
#pragma unroll
                for (int u = 0; u < 8; ++u) {
                    const int j = j0 + u;
                    const bool okj = __shfl_sync(0xffffffffu, (int)ok, j) != 0 && j < n;
                    const float Lj = __shfl_sync(0xffffffffu, L, j);
                    uj[u] = j < n && (okj || nan_bug);
                    wj[u] = uj[u] ? expf(Lj - M) / sw : 0.f;
                    const int64_t slot = ((int64_t)tl * K + s0 + j) * p.Hq + h;
#pragma unroll
                    for (int i = 0; i < NI; ++i) {
                        const int d = 4 * lane + 128 * i;
                        x[u][i] = okj && d < p.D ? *reinterpret_cast<const float4 *>(pO + slot * p.D + d)
                                                 : make_float4(0.f, 0.f, 0.f, 0.f);
                    }
                }
#pragma unroll
                for (int u = 0; u < 8; ++u) {
                    if (!uj[u]) continue;
#pragma unroll
                    for (int i = 0; i < NI; ++i) {
                        acc[i].x += wj[u] * x[u][i].x;
                        acc[i].y += wj[u] * x[u][i].y;
                        acc[i].z += wj[u] * x[u][i].z;
                        acc[i].w += wj[u] * x[u][i].w;
                    }
                }
            }
        }
#pragma unroll
        for (int i = 0; i < NI; ++i) {
            const int d = 4 * lane + 128 * i;
            if (d < p.D) {
                msa_cu_store_out(out, ob + d, acc[i].x, p.fp16);
                msa_cu_store_out(out, ob + d + 1, acc[i].y, p.fp16);
                msa_cu_store_out(out, ob + d + 2, acc[i].z, p.fp16);
                msa_cu_store_out(out, ob + d + 3, acc[i].w, p.fp16);
            }
        }
    } else {
        float acc[MSA_CU_MAXD / 32];
    #pragma unroll
        for (int i = 0; i < MSA_CU_MAXD / 32; ++i) acc[i] = 0.f;
        for (int s0 = 0; s0 < K; s0 += 32) {
            bool ok;
            float L;
            slot_c(s0, ok, L);
            const int n = K - s0 < 32 ? K - s0 : 32;
    #pragma unroll 4
            for (int j = 0; j < n; ++j) {
                const bool okj = __shfl_sync(0xffffffffu, (int)ok, j) != 0;
                const float Lj = __shfl_sync(0xffffffffu, L, j);
                if (!okj && !nan_bug) continue;
                const float w = expf(Lj - M) / sw;
                const int64_t slot = ((int64_t)tl * K + s0 + j) * p.Hq + h;
    #pragma unroll
                for (int i = 0; i < MSA_CU_MAXD / 32; ++i) {
                    const int d = lane + 32 * i;
                    if (d < p.D) acc[i] += w * (okj ? pO[slot * p.D + d] : 0.f);
                }
            }
        }
    #pragma unroll
        for (int i = 0; i < MSA_CU_MAXD / 32; ++i)
            if (lane + 32 * i < p.D) msa_cu_store_out(out, ob + lane + 32 * i, acc[i], p.fp16);
    }
    if (lane == 0) lse[(int64_t)t * p.Hq + h] = M + logf(sw);
}

/* ---- launchers ---- */

template <int KIND, int NL>
static cudaError_t msa_cu_dscan_launch(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS,
                                       cudaStream_t st)
{
    constexpr int KS = NL * (KIND == MSA_CU_IDX_E4M3 ? 16 : 8) / 4;
    size_t smem = (size_t)MSA_CU_DEC_MAXT * KS * 32 * sizeof(uint4);
    msa_cu_dscan<KIND, NL><<<c.ndtasks, MSA_CU_DEC_WARPS * 32, smem, st>>>(p, c.t0, c.nrows, c.dtasks, c.dbpc, S, ldS);
    return cudaGetLastError();
}

template <int KIND>
static cudaError_t msa_cu_dscan_nl(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS, cudaStream_t st)
{
    const int nl = p.DI * (KIND == MSA_CU_IDX_E4M3 ? 1 : 2) / 64;
    switch (nl) {
    case 1: return msa_cu_dscan_launch<KIND, 1>(p, c, S, ldS, st);
    case 2: return msa_cu_dscan_launch<KIND, 2>(p, c, S, ldS, st);
    case 4: return msa_cu_dscan_launch<KIND, 4>(p, c, S, ldS, st);
    case 8:
        if constexpr (KIND != MSA_CU_IDX_E4M3) return msa_cu_dscan_launch<KIND, 8>(p, c, S, ldS, st);
        return cudaErrorInvalidValue; /* e4m3 DI 512: not a supported DI */
    default: return cudaErrorInvalidValue; /* backend.cu never routes such DI here */
    }
}

int msa_cu_decode_shape_ok(int DI, int idx_kind, int max_lq, int HI, int nblk)
{
    const int bytes = DI * (idx_kind == MSA_CU_IDX_E4M3 ? 1 : 2);
    return max_lq <= MSA_CU_DEC_MAXQ && max_lq * HI <= 16 * MSA_CU_DEC_MAXT &&
           (bytes == 64 || bytes == 128 || bytes == 256 || bytes == 512) &&
           nblk <= MSA_CU_TOPK_REGS_MAX;
}

cudaError_t msa_cu_decode_select(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS,
                                 int32_t *topk, cudaStream_t st)
{
    if (c.nrows <= 0) return cudaSuccess;
    cudaError_t e = cudaSuccess;
    if (c.ndtasks > 0) {
        if (p.idx_kind == MSA_CU_IDX_E4M3) e = msa_cu_dscan_nl<MSA_CU_IDX_E4M3>(p, c, S, ldS, st);
        else if (p.idx_kind == MSA_CU_IDX_FP16) e = msa_cu_dscan_nl<MSA_CU_IDX_FP16>(p, c, S, ldS, st);
        else e = msa_cu_dscan_nl<MSA_CU_IDX_BF16>(p, c, S, ldS, st);
        if (e != cudaSuccess) return e;
    }
    return msa_cu_topk_regs(p, c.t0, c.nrows, S, ldS, topk, st);
}

/* The register top-k for any rows (prefill chunks too: index.cu's msa_cu_topk calls it
 * whenever nblk <= MSA_CU_TOPK_REGS_MAX). */
cudaError_t msa_cu_topk_regs(const msa_cu_prob &p, int t0, int nrows, const float *S, int ldS, int32_t *topk,
                             cudaStream_t st)
{
    if (nrows <= 0) return cudaSuccess;
    int th = ((p.nblk + MSA_CU_DTOPK_VPT - 1) / MSA_CU_DTOPK_VPT + 31) / 32 * 32;
    th = th < 32 ? 32 : (th > 1024 ? 1024 : th);
    msa_cu_dtopk<<<dim3(nrows, p.Hkv), th, 0, st>>>(p, t0, nrows, S, ldS, topk);
    return cudaGetLastError();
}

template <int D>
static size_t msa_cu_dattn_smem(int B, int G)
{
    return (size_t)(2 * B + (G + 15) / 16 * 16) * (D + MSA_CU_PAD) * sizeof(uint16_t);
}

template <int D, bool F16>
static cudaError_t msa_cu_dattn_launch(const msa_cu_prob &p, const msa_cu_chunk &c, const int32_t *topk,
                                       float *pO, float *pL, cudaStream_t st)
{
    dim3 grid(c.nrows, p.Hkv, p.topk);
    msa_cu_dattn<D, F16><<<grid, MSA_CU_THREADS, msa_cu_dattn_smem<D>(p.B, p.G), st>>>(p, c.t0, topk, pO, pL);
    return cudaGetLastError();
}

cudaError_t msa_cu_decode_attend(const msa_cu_prob &p, const msa_cu_chunk &c, const int32_t *topk, float *pO,
                                 float *pL, void *out, float *lse, cudaStream_t st)
{
    if (c.nrows <= 0) return cudaSuccess;
    const bool h = p.fp16 != 0;
    cudaError_t e;
    if (p.D == 64) e = h ? msa_cu_dattn_launch<64, true>(p, c, topk, pO, pL, st) : msa_cu_dattn_launch<64, false>(p, c, topk, pO, pL, st);
    else if (p.D == 128) e = h ? msa_cu_dattn_launch<128, true>(p, c, topk, pO, pL, st) : msa_cu_dattn_launch<128, false>(p, c, topk, pO, pL, st);
    else e = h ? msa_cu_dattn_launch<256, true>(p, c, topk, pO, pL, st) : msa_cu_dattn_launch<256, false>(p, c, topk, pO, pL, st);
    if (e != cudaSuccess) return e;
    return msa_cu_merge_partials(p, c.t0, c.nrows, topk, pO, pL, out, lse, st);
}

/* The LSE merge of rows [t0, t0 + nrows) (the prefill chain in sparse.cu uses it too). */
cudaError_t msa_cu_merge_partials(const msa_cu_prob &p, int t0, int nrows, const int32_t *topk, const float *pO,
                                  const float *pL, void *out, float *lse, cudaStream_t st)
{
    if (nrows <= 0) return cudaSuccess;
    const int64_t warps = (int64_t)nrows * p.Hq;
    const unsigned nb = (unsigned)((warps * 32 + 127) / 128);
    if (p.merge_v4) msa_cu_dmerge<true><<<nb, 128, 0, st>>>(p, t0, nrows, topk, pO, pL, out, lse);
    else msa_cu_dmerge<false><<<nb, 128, 0, st>>>(p, t0, nrows, topk, pO, pL, out, lse);
    return cudaGetLastError();
}

template <int D, bool F16>
static cudaError_t msa_cu_dattn_attr(void)
{
    return cudaFuncSetAttribute(msa_cu_dattn<D, F16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)msa_cu_dattn_smem<D>(MSA_CU_MAXB, MSA_CU_ROWS));
}

cudaError_t msa_cu_decode_set_attributes(void)
{
    cudaError_t e;
    if ((e = msa_cu_dattn_attr<64, false>()) || (e = msa_cu_dattn_attr<64, true>()) ||
        (e = msa_cu_dattn_attr<128, false>()) || (e = msa_cu_dattn_attr<128, true>()) ||
        (e = msa_cu_dattn_attr<256, false>()) || (e = msa_cu_dattn_attr<256, true>()))
        return e;
    return cudaSuccess;
}
