/* index.cu - the index branch (MSA.md 4; design steps 1-2): block scores over causally
 * visible keys with tensor-core dot products, then the exp-free top-k per (group, query).
 *
 * Block scores: one CTA per (tile of <= 64 queries of one sequence, index head, range of
 * key blocks); s = index_scale * fp32 dot, S = max over the block's visible keys, -inf
 * when none.  bf16 and fp16 keys go to the MMA as they are; fp8 e4m3 keys (and queries)
 * are widened to bf16 in shared memory, which is exact (e4m3 has 3 mantissa bits and a
 * subset of bf16's exponent range), so the products and fp32 sums are as declared.
 * The scores of a query chunk go to a workspace [HI][rows][nblk]: O(rows * N / B), bounded
 * by the chunk size the host picks, never O(N^2).
 * Top-k: one CTA per (group, query): exact radix select of the (k - forced)-th largest fp32
 * score among the non-forced visible blocks, then an ordered compaction that keeps every
 * score above it and the lowest ids among those equal to it (ties -> lower id), emitting
 * ascending ids and a -1 tail.  No exp, no softmax.
 * bf16/fp16 keys at DI 64/128/256 are scored by msa_cu_bscore_wg below (issue 8's v5,
 * sm_90a wgmma; decoupled warpgroups unless $MSA_CUDA_WGPIPE=0) where the device runs
 * the sm_90a code (unless $MSA_CUDA_WGMMA=0), else
 * by msa_cu_bscore_pipe (v4);
 * e4m3 keys and other DI by msa_cu_bscore; rows of nblk <= 16384 blocks are selected
 * by decode.cu's register top-k (longer rows by the radix select here). */
#include "attn_core.cuh"
#include "wgmma.cuh"

#define MSA_CU_TOPK_MAX_THREADS 1024

__device__ __forceinline__ uint16_t msa_cu_e4m3_to_bf16(uint8_t x)
{
    int s = x >> 7, e = (x >> 3) & 15, m = x & 7;
    float v;
    if (e == 15 && m == 7) v = CUDART_NAN_F;
    else if (e == 0) v = ldexpf((float)m, -9); /* subnormal: m * 2^-3 * 2^-6 */
    else v = ldexpf(1.f + m / 8.f, e - 7);
    v = s ? -v : v;
    return (uint16_t)(__float_as_uint(v) >> 16); /* exact: fits bf16 */
}

/* Row r of an index tensor (DI wide) into a padded bf16/fp16 shared row; src < 0: zeros. */
__device__ __forceinline__ void msa_cu_index_tile(uint16_t *dst, int rows, const msa_cu_prob &p,
                                                  const void *base, const int64_t *src_rows)
{
    const int ld = p.DI + MSA_CU_PAD;
    if (p.idx_kind == MSA_CU_IDX_E4M3) {
        for (int x = threadIdx.x; x < rows * p.DI; x += blockDim.x) {
            int r = x / p.DI, d = x % p.DI;
            int64_t s = src_rows[r];
            dst[r * ld + d] = s < 0 ? 0 : msa_cu_e4m3_to_bf16(((const uint8_t *)base)[s * p.DI + d]);
        }
    } else {
        const int vec = p.DI / 8;
        for (int x = threadIdx.x; x < rows * vec; x += blockDim.x) {
            int r = x / vec, c = x % vec;
            int64_t s = src_rows[r];
            uint4 v = make_uint4(0, 0, 0, 0);
            if (s >= 0) v = reinterpret_cast<const uint4 *>((const uint16_t *)base + s * p.DI)[c];
            *reinterpret_cast<uint4 *>(dst + r * ld + c * 8) = v;
        }
    }
}

/* MMA rows are (query, index head) pairs, 64 / HI queries per tile, so each index-key
 * block is loaded once for every head (the index keys are shared by the groups). */
template <bool F16>
__global__ void __launch_bounds__(MSA_CU_THREADS)
    msa_cu_bscore(msa_cu_prob p, msa_cu_chunk c, float *S, int ldS, int bpc)
{
    extern __shared__ __align__(16) uint16_t sm[];
    __shared__ int64_t srow[MSA_CU_MAXB > MSA_CU_ROWS ? MSA_CU_MAXB : MSA_CU_ROWS];
    const int ld = p.DI + MSA_CU_PAD, B = p.B, HI = p.HI;
    uint16_t *sq = sm, *sk = sm + MSA_CU_ROWS * ld;
    const int4 tile = c.qtiles[blockIdx.x];
    const int b = tile.x, tq0 = p.cu_q[b] + tile.y, n = tile.z, nrow = n * HI;
    const int blk0 = blockIdx.z * bpc, blk1 = min(blk0 + bpc, p.nblk);
    if (blk0 >= blk1) return;
    const int Lk = p.cu_k[b + 1] - p.cu_k[b];
    const int jmax = msa_cu_row_of(p, tq0 + n - 1).nkeys; /* the tile's last query sees most */
    const int maxnvis = msa_cu_nvis(p, jmax);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    /* S of (query r / HI, head r % HI) */
    auto sdst = [&](int r) -> float * {
        return S + ((int64_t)(r % HI) * c.nrows + (tq0 + r / HI - c.t0)) * ldS;
    };
    if (blk0 >= maxnvis) { /* nothing visible here: -inf for every row */
        for (int x = threadIdx.x; x < nrow * (blk1 - blk0); x += blockDim.x)
            sdst(x / (blk1 - blk0))[blk0 + x % (blk1 - blk0)] = -CUDART_INF_F;
        return;
    }
    for (int r = threadIdx.x; r < MSA_CU_ROWS; r += blockDim.x)
        srow[r] = r < nrow ? ((int64_t)(tq0 + r / HI) * HI + r % HI) : -1;
    __syncthreads();
    msa_cu_index_tile(sq, MSA_CU_ROWS, p, p.iq, srow);
    int nk[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        int r = warp * 16 + (lane >> 2) + 8 * h;
        nk[h] = r < nrow ? msa_cu_row_of(p, tq0 + r / HI).nkeys : 0;
    }
    for (int blk = blk0; blk < blk1; ++blk) {
        if (blk >= maxnvis) {
            for (int r = threadIdx.x; r < nrow; r += blockDim.x) sdst(r)[blk] = -CUDART_INF_F;
            continue;
        }
        __syncthreads(); /* previous block's rows consumed */
        for (int r = threadIdx.x; r < B; r += blockDim.x) {
            int j = blk * B + r;
            srow[r] = (j < jmax && j < Lk) ? msa_cu_kv_row(p, b, j) : -1;
        }
        __syncthreads();
        msa_cu_index_tile(sk, B, p, p.ik, srow);
        __syncthreads();
        if (warp * 16 >= nrow) continue;
        float Sc[MSA_CU_NT][4], mx[2];
        msa_cu_warp_scores<F16>(sq + warp * 16 * ld, sk, ld, p.DI, B / 8, Sc);
        msa_cu_scale_mask(Sc, B / 8, min(max(nk[0] - blk * B, 0), B), min(max(nk[1] - blk * B, 0), B),
                          p.iscale, mx);
        if ((lane & 3) == 0) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                int r = warp * 16 + (lane >> 2) + 8 * h;
                if (r < nrow) sdst(r)[blk] = mx[h];
            }
        }
    }
}

/* ---- the pipelined scorer (issue 8: bf16/fp16 index keys, DI 64/128/256) ----
 * One CTA of 8 warps per (tile of <= 128 (query, index head) rows, range of 4096 keys):
 * each warp holds its 16 rows' A fragments in registers for the whole CTA (loaded once
 * with ldmatrix), and the key tiles (128 keys, i.e. 128 / B blocks) stream through
 * MSA_CU_IS_STAGES shared-memory stages by cp.async, the next stages in flight while the
 * current one is multiplied; B fragments come by ldmatrix.x4 (two k-steps of one n-tile
 * per instruction).  v3's scorer (msa_cu_bscore above) loaded one block synchronously
 * per step, 64 rows a CTA, two 32-bit shared loads per MMA: 11% of the GEMM rate, issue
 * bound (bench/NOTES.md).  The arithmetic is unchanged: for each (row, key) the same
 * k-steps in the same order into one fp32 accumulator, s = iscale * dot, masked to
 * -inf at or past the row's key limit, block score = max over the block. */
#define MSA_CU_IS_WARPS 8
#define MSA_CU_IS_ROWS (16 * MSA_CU_IS_WARPS)
#define MSA_CU_IS_KEYS 128 /* keys per shared stage */
#define MSA_CU_IS_STAGES 3
#define MSA_CU_IS_SPAN 4096 /* keys per CTA */

int msa_cu_bscore_rows(int DI, int idx_kind, int wg)
{
    if (idx_kind == MSA_CU_IDX_E4M3 || (DI != 64 && DI != 128 && DI != 256)) return MSA_CU_ROWS;
    if (wg) return DI <= 128 ? 256 : 128; /* msa_cu_ws_cfg<DI / 16>::ROWS */
    return MSA_CU_IS_ROWS;
}

static size_t msa_cu_is_smem(int DI)
{
    return (size_t)MSA_CU_IS_STAGES * MSA_CU_IS_KEYS * (DI + MSA_CU_PAD) * sizeof(uint16_t);
}

template <bool F16, int KT>
__global__ void __launch_bounds__(MSA_CU_IS_WARPS * 32, 1)
    msa_cu_bscore_pipe(msa_cu_prob p, msa_cu_chunk c, float *S, int ldS, int bpc)
{
    constexpr int DI = KT * 16, ld = DI + MSA_CU_PAD, CPR = DI / 8; /* 16-byte chunks per row */
    constexpr int NT = MSA_CU_IS_KEYS / 8, NTH = MSA_CU_IS_WARPS * 32;
    static_assert(MSA_CU_IS_ROWS <= MSA_CU_IS_KEYS, "the rows are staged through stage 0");
    static_assert(MSA_CU_IS_KEYS * CPR % NTH == 0 && KT % 2 == 0, "whole copy rounds; k-step pairs");
    extern __shared__ __align__(16) uint16_t sm[];
    const int B = p.B, HI = p.HI, SB = MSA_CU_IS_KEYS / B; /* blocks per stage */
    const int4 tile = c.qtiles[blockIdx.x];
    const int b = tile.x, tq0 = p.cu_q[b] + tile.y, n = tile.z, nrow = n * HI;
    const int blk0 = blockIdx.z * bpc, blk1 = min(blk0 + bpc, p.nblk);
    if (blk0 >= blk1) return;
    const int Lk = p.cu_k[b + 1] - p.cu_k[b];
    const int jmax = msa_cu_row_of(p, tq0 + n - 1).nkeys; /* the tile's last query sees most */
    const int vis1 = min(blk1, msa_cu_nvis(p, jmax));      /* blocks [blk0, vis1) have keys */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    auto sdst = [&](int r) -> float * {
        return S + ((int64_t)(r % HI) * c.nrows + (tq0 + r / HI - c.t0)) * ldS;
    };
    for (int x = threadIdx.x; x < nrow * max(blk1 - max(vis1, blk0), 0); x += NTH) {
        const int w = blk1 - max(vis1, blk0);
        sdst(x / w)[max(vis1, blk0) + x % w] = -CUDART_INF_F;
    }
    if (blk0 >= vis1) return;
    const int ntiles = (vis1 - blk0 + SB - 1) / SB;
    const uint16_t *ik = (const uint16_t *)p.ik, *iq = (const uint16_t *)p.iq;

    /* A fragments: the rows through stage 0, then registers */
    msa_cu_load_tile(sm, MSA_CU_IS_ROWS, DI, [&](int r) -> const uint16_t * {
        return r < nrow ? iq + ((int64_t)(tq0 + r / HI) * HI + r % HI) * DI : nullptr;
    });
    __syncthreads();
    uint32_t a[KT][4];
#pragma unroll
    for (int kt = 0; kt < KT; ++kt)
        msa_cu_ldsm_x4(a[kt], sm + (warp * 16 + (lane & 15)) * ld + kt * 16 + (lane >> 4) * 8);
    int nk[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int r = warp * 16 + (lane >> 2) + 8 * h;
        nk[h] = r < nrow ? msa_cu_row_of(p, tq0 + r / HI).nkeys : 0;
    }
    const int nkmin = min(__reduce_min_sync(0xffffffffu, (unsigned)nk[0]), __reduce_min_sync(0xffffffffu, (unsigned)nk[1]));
    __syncthreads(); /* stage 0 free for the key tiles */

    auto issue = [&](int ti) {
        if (ti < ntiles) {
            uint16_t *dst = sm + (ti % MSA_CU_IS_STAGES) * MSA_CU_IS_KEYS * ld;
            const int key0 = (blk0 + ti * SB) * B;
#pragma unroll
            for (int u = 0; u < MSA_CU_IS_KEYS * CPR / NTH; ++u) {
                const int x = threadIdx.x + u * NTH, r = x / CPR, cc = x % CPR, j = key0 + r;
                const bool ok = j < jmax && j < Lk;
                const uint16_t *src = ok ? ik + msa_cu_kv_row(p, b, j) * DI + cc * 8 : ik;
                msa_cu_cp16(dst + r * ld + cc * 8, src, ok);
            }
        }
        msa_cu_cp_commit(); /* empty groups keep the wait count uniform */
    };
#pragma unroll
    for (int s = 0; s < MSA_CU_IS_STAGES - 1; ++s) issue(s);
    for (int ti = 0; ti < ntiles; ++ti) {
        msa_cu_cp_wait<MSA_CU_IS_STAGES - 2>();
        __syncthreads(); /* tile ti landed for every thread; tile ti-1's stage is free */
        issue(ti + MSA_CU_IS_STAGES - 1);
        if (warp * 16 >= nrow) continue;
        const uint16_t *sk = sm + (ti % MSA_CU_IS_STAGES) * MSA_CU_IS_KEYS * ld;
        float acc[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
#pragma unroll
        for (int kp = 0; kp < KT / 2; ++kp) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                uint32_t r4[4];
                msa_cu_ldsm_x4(r4, sk + (nt * 8 + (lane & 7)) * ld + kp * 32 + (lane >> 3) * 8);
                msa_cu_mma<F16>(acc[nt], a[2 * kp], r4);
                msa_cu_mma<F16>(acc[nt], a[2 * kp + 1], r4 + 2);
            }
        }
        /* scale, mask (only where some row's limit falls inside this tile), block maxima */
        const int key0 = (blk0 + ti * SB) * B;
        const bool full = key0 + MSA_CU_IS_KEYS <= nkmin;
        const int lim0 = min(max(nk[0] - key0, 0), MSA_CU_IS_KEYS), lim1 = min(max(nk[1] - key0, 0), MSA_CU_IS_KEYS);
        const int ntb = B / 8;
        for (int bi = 0; bi < SB; ++bi) {
            const int blk = blk0 + ti * SB + bi;
            float mx[2] = {-CUDART_INF_F, -CUDART_INF_F};
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                if (nt / ntb != bi) continue;
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int col = nt * 8 + (lane & 3) * 2 + (e & 1);
                    const float x = (full || col < (e < 2 ? lim0 : lim1)) ? acc[nt][e] * p.iscale : -CUDART_INF_F;
                    mx[e >> 1] = fmaxf(mx[e >> 1], x);
                }
            }
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
            }
            if ((lane & 3) == 0 && blk < vis1) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = warp * 16 + (lane >> 2) + 8 * h;
                    if (r < nrow) sdst(r)[blk] = mx[h];
                }
            }
        }
    }
    msa_cu_cp_wait<0>(); /* no copy outlives the CTA */
}

/* ---- the warpgroup scorer (issue 8's v5: sm_90a wgmma; bf16/fp16 keys, DI 64/128/256) ----
 * One CTA of 2 warpgroups per (tile of <= 256 (query, index head) rows (128 at DI 256),
 * range of 8192 keys).  Each warpgroup owns MT m-tiles of 64 rows.  The rows sit in
 * shared memory once, and 128-key tiles stream through STAGES shared stages by cp.async,
 * both in the 128-byte-swizzled K-major layout the wgmma descriptors name (wgmma.cuh):
 * one m64n128k16 per k-step multiplies a 64 x 128 block with both operands read by the
 * tensor cores from shared memory (v4 reloaded each key tile 8 times by ldmatrix, so its
 * shared bandwidth capped it at the mma.sync rate, 17% of the GEMM, bench/NOTES.md).  The
 * next tile's copies are issued while the multiplies run, m-tile 0's block maxima are
 * taken while m-tile 1 is still multiplied, and a full tile (every row sees all 128 keys)
 * costs one max per score.  The arithmetic per (row, key) is the declared one: the same
 * k-steps in the same order into one fp32 accumulator, s = iscale * dot, -inf at or past
 * the row's key limit, max over the block (for a finite iscale > 0 the maximum of the
 * dots is scaled instead of each dot: rounding is monotone, so fl(c max x) = max fl(c x)
 * exactly, NaN and -inf included). */
#define MSA_CU_WS_KEYS 128 /* keys per stage: the wgmma N */
#define MSA_CU_WS_SPAN 8192 /* keys per CTA */
#define MSA_CU_WS_THREADS 256 /* two warpgroups */

template <int KT>
struct msa_cu_ws_cfg {
    static constexpr int DI = KT * 16, MT = DI <= 128 ? 2 : 1, ROWS = 2 * MT * 64;
    static constexpr int REGION = MSA_CU_WS_KEYS * 128;   /* bytes of 64 columns of a stage */
    static constexpr int STAGE = (DI / 64) * REGION;      /* bytes of a 128-key stage */
    static constexpr int STAGES = DI <= 128 ? 4 : 2;
    static constexpr size_t SMEM = (size_t)STAGES * STAGE + (size_t)ROWS * DI * 2 + 1024; /* + A, alignment slack */
};

/* Running maxima over this thread's accumulators of block bi (ntb n-tiles of 8 keys;
 * ALL: the whole 128-key tile is one block), per accumulator row half h = e / 2, of
 * d * scale, -inf at columns at or past the row's limit (MASK). */
template <bool MASK, bool ALL>
__device__ __forceinline__ void msa_cu_wg_blockmax(const float (&d)[64], float (&mx)[2], int bi, int ntb, int lane,
                                                   int lim0, int lim1, float scale)
{
#pragma unroll
    for (int nt = 0; nt < MSA_CU_WS_KEYS / 8; ++nt) {
        if (!ALL && nt / ntb != bi) continue;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            if (MASK) {
                const int col = nt * 8 + (lane & 3) * 2 + (e & 1);
                mx[e >> 1] = fmaxf(mx[e >> 1], col < (e < 2 ? lim0 : lim1) ? d[nt * 4 + e] * scale : -CUDART_INF_F);
            } else {
                mx[e >> 1] = fmaxf(mx[e >> 1], d[nt * 4 + e]);
            }
        }
    }
}

template <bool F16, int KT, bool DEC>
__global__ void __launch_bounds__(MSA_CU_WS_THREADS, 1)
    msa_cu_bscore_wg(msa_cu_prob p, msa_cu_chunk c, float *S, int ldS, int bpc)
{
#ifdef MSA_CU_HAVE_WGMMA
    __shared__ uint64_t bar_full[4], bar_empty[4]; /* DEC: per stage, tile landed / tile read by both warpgroups */
    using C = msa_cu_ws_cfg<KT>;
    constexpr int DI = C::DI, MT = C::MT, ROWS = C::ROWS, CPR = DI / 8;
    constexpr int ST = C::STAGES, NTH = MSA_CU_WS_THREADS;
    static_assert(MSA_CU_WS_KEYS * CPR % NTH == 0, "whole copy rounds");
    extern __shared__ __align__(16) unsigned char wsm_raw[];
    unsigned char *sm = wsm_raw + ((1024u - ((uint32_t)__cvta_generic_to_shared(wsm_raw) & 1023u)) & 1023u);
    const int B = p.B, HI = p.HI, SB = MSA_CU_WS_KEYS / B; /* blocks per stage */
    const int4 tile = c.qtiles[blockIdx.x];
    const int b = tile.x, tq0 = p.cu_q[b] + tile.y, n = tile.z, nrow = n * HI;
    const int blk0 = blockIdx.z * bpc, blk1 = min(blk0 + bpc, p.nblk);
    if (blk0 >= blk1) return;
    const int Lk = p.cu_k[b + 1] - p.cu_k[b];
    const int jmax = msa_cu_row_of(p, tq0 + n - 1).nkeys; /* the tile's last query sees most */
    const int vis1 = min(blk1, msa_cu_nvis(p, jmax));      /* blocks [blk0, vis1) have keys */
    const int wg = threadIdx.x >> 7, wl = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    const int row0 = wg * MT * 64; /* this warpgroup's first row */
    auto sdst = [&](int r) -> float * {
        return S + ((int64_t)(r % HI) * c.nrows + (tq0 + r / HI - c.t0)) * ldS;
    };
    for (int x = threadIdx.x; x < nrow * max(blk1 - max(vis1, blk0), 0); x += NTH) {
        const int w = blk1 - max(vis1, blk0);
        sdst(x / w)[max(vis1, blk0) + x % w] = -CUDART_INF_F;
    }
    if (blk0 >= vis1) return;
    const int ntiles = (vis1 - blk0 + SB - 1) / SB;
    const uint16_t *ik = (const uint16_t *)p.ik, *iq = (const uint16_t *)p.iq;
    const bool spos = p.iscale > 0.f && p.iscale < CUDART_INF_F;
    if (DEC) {
        static_assert(C::STAGES <= 4, "barrier arrays");
        if (threadIdx.x == 0)
            for (int s = 0; s < ST; ++s) {
                msa_cu_mbar_init(&bar_full[s], NTH);  /* one cp.async arrival per thread */
                msa_cu_mbar_init(&bar_empty[s], NTH); /* one arrival per thread after its multiplies */
            }
        __syncthreads();
    }

    /* the tile's rows (zeros past nrow), once, into the A region in the same swizzled
     * layout as the key stages: row r of 64-column region g at g * ROWS * 128 + 128 r */
    unsigned char *sa = sm + ST * C::STAGE;
    for (int x = threadIdx.x; x < ROWS * CPR; x += NTH) {
        const int r = x / CPR, cc = x % CPR;
        const uint16_t *src = r < nrow ? iq + ((int64_t)(tq0 + r / HI) * HI + r % HI) * DI + cc * 8 : iq;
        msa_cu_cp16(sa + (cc >> 3) * (ROWS * 128) + r * 128 + (((cc & 7) ^ (r & 7)) << 4), src, r < nrow);
    }
    msa_cu_cp_commit();
    int nk[MT][2], nkmin[MT];
#pragma unroll
    for (int m = 0; m < MT; ++m) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = row0 + m * 64 + wl * 16 + (lane >> 2) + 8 * h;
            nk[m][h] = r < nrow ? msa_cu_row_of(p, tq0 + r / HI).nkeys : 0;
        }
        nkmin[m] = min(__reduce_min_sync(0xffffffffu, (unsigned)nk[m][0]), __reduce_min_sync(0xffffffffu, (unsigned)nk[m][1]));
    }
    /* this thread's 2 MT score rows, as S offsets in rows of ldS (no division per store) */
    int so[MT][2];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = row0 + m * 64 + wl * 16 + (lane >> 2) + 8 * h;
            so[m][h] = r < nrow ? (r % HI) * c.nrows + (tq0 + r / HI - c.t0) : -1;
        }
    const bool active = row0 < nrow; /* uniform per warpgroup */
    const int64_t kb = p.cu_k[b];     /* unpaged storage row of the sequence's key 0 */

    /* key r of a tile, 16-byte chunk cc: region cc / 8 (64 columns), row r at 128 r,
     * chunk position (cc % 8) ^ (r % 8): the 128-byte swizzle of the descriptor */
    auto issue = [&](int ti) {
        if (ti < ntiles) {
            unsigned char *dst = sm + (ti % ST) * C::STAGE;
            const int key0 = (blk0 + ti * SB) * B;
#pragma unroll
            for (int u = 0; u < MSA_CU_WS_KEYS * CPR / NTH; ++u) {
                const int x = threadIdx.x + u * NTH, r = x / CPR, cc = x % CPR, j = key0 + r;
                const bool ok = j < jmax && j < Lk;
                /* (the page table is read only for keys that exist: past them it ends) */
                const uint16_t *src = ok ? ik + (p.page_table ? msa_cu_kv_row(p, b, j) : kb + j) * DI + cc * 8 : ik;
                msa_cu_cp16(dst + (cc >> 3) * C::REGION + r * 128 + (((cc & 7) ^ (r & 7)) << 4), src, ok);
            }
            if (DEC) msa_cu_mbar_cp_arrive(&bar_full[ti % ST]); /* (tile 0's also covers the rows) */
        }
        if (!DEC) msa_cu_cp_commit(); /* empty groups keep the wait count uniform */
    };
    /* block maxima of one m-tile's accumulators for the key tile at key0, stored */
    auto epilogue = [&](const float (&d)[64], int m, int ti) {
        const int key0 = (blk0 + ti * SB) * B;
        const bool full = key0 + MSA_CU_WS_KEYS <= nkmin[m]; /* warp-uniform */
        const int lim0 = min(max(nk[m][0] - key0, 0), MSA_CU_WS_KEYS), lim1 = min(max(nk[m][1] - key0, 0), MSA_CU_WS_KEYS);
        for (int bi = 0; bi < SB; ++bi) {
            const int blk = blk0 + ti * SB + bi;
            float mx[2] = {-CUDART_INF_F, -CUDART_INF_F};
            if (SB == 1 && full && spos) /* the common case: a plain maximum, scaled once */
                msa_cu_wg_blockmax<false, true>(d, mx, 0, 0, lane, 0, 0, 1.f);
            else if (full && spos)
                msa_cu_wg_blockmax<false, false>(d, mx, bi, B / 8, lane, 0, 0, 1.f);
            else
                msa_cu_wg_blockmax<true, false>(d, mx, bi, B / 8, lane, lim0, lim1, spos ? 1.f : p.iscale);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
                if (spos) mx[h] *= p.iscale;
            }
            if ((lane & 3) == 0 && blk < vis1) {
#pragma unroll
                for (int h = 0; h < 2; ++h)
                    if (so[m][h] >= 0) S[(int64_t)so[m][h] * ldS + blk] = mx[h];
            }
        }
    };
    float acc[MT][64];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[m][i] = 0.f;
    /* m-tile m times key tile ti: KT k-steps (k-step kt: region kt / 4, 32 bytes each) */
    auto mma = [&](int m, int ti) {
        const uint64_t a0 = msa_cu_wg_desc(sa + (row0 + m * 64) * 128), d0 = msa_cu_wg_desc(sm + (ti % ST) * C::STAGE);
#pragma unroll
        for (int kt = 0; kt < KT; ++kt)
            msa_cu_wg_mma<F16>(acc[m], a0 + (uint64_t)((kt >> 2) * (ROWS * 128 >> 4) + (kt & 3) * 2),
                               d0 + (uint64_t)((kt >> 2) * (C::REGION >> 4) + (kt & 3) * 2), kt);
        msa_cu_wg_commit();
    };
    for (int s = 0; s < ST - 1; ++s) issue(s);
    if constexpr (DEC) {
        /* Decoupled: the warpgroups meet only through the stage barriers, so one can
         * multiply while the other takes its block maxima (in lock step both reduce at
         * once and the tensor cores idle).  Tile ti: wait until its copies landed (every
         * thread's cp.async arrival), multiply; then the stage of tile ti - 1, which tile
         * ti + ST - 1 reuses, once both warpgroups finished reading it, gets the copies;
         * after its own multiplies each thread marks tile ti's stage read.  A warpgroup
         * runs at most one tile ahead of the other, so no barrier is waited on two phases
         * behind (the parities stay unambiguous). */
        for (int ti = 0; ti < ntiles; ++ti) {
            const int s = ti % ST;
            msa_cu_mbar_wait(&bar_full[s], (ti / ST) & 1);
            msa_cu_fence_async_smem(); /* the copies seen by the async proxy */
            const bool refill = ti + ST - 1 < ntiles;
            if (!active) { /* (a tail tile's idle warpgroup: copies and handshakes only) */
                if (refill) {
                    if (ti >= 1) msa_cu_mbar_wait(&bar_empty[(ti - 1) % ST], ((ti - 1) / ST) & 1);
                    issue(ti + ST - 1);
                }
                msa_cu_mbar_arrive(&bar_empty[s]);
                continue;
            }
            msa_cu_wg_fence();
#pragma unroll
            for (int m = 0; m < MT; ++m) mma(m, ti);
            if (refill) {
                if (ti >= 1) msa_cu_mbar_wait(&bar_empty[(ti - 1) % ST], ((ti - 1) / ST) & 1);
                issue(ti + ST - 1);
            }
            if (MT == 2) {
                msa_cu_wg_wait<1>();
                msa_cu_wg_pin(acc[0]);
                epilogue(acc[0], 0, ti);
            }
            msa_cu_wg_wait<0>();
            msa_cu_wg_pin(acc[MT - 1]);
            msa_cu_mbar_arrive(&bar_empty[s]); /* this thread's multiplies of tile ti are done */
            epilogue(acc[MT - 1], MT - 1, ti);
        }
        /* (every copy issued was waited for through bar_full) */
    } else {
        for (int ti = 0; ti < ntiles; ++ti) {
            msa_cu_cp_wait<ST - 2>();
            msa_cu_fence_async_smem(); /* this thread's copies, seen by the async proxy */
            __syncthreads();           /* tile ti landed; tile ti-1's stage read by every warpgroup */
            if (!active) {             /* (a tail tile's idle warpgroup: copies only) */
                issue(ti + ST - 1);
                continue;
            }
            msa_cu_wg_fence();
#pragma unroll
            for (int m = 0; m < MT; ++m) mma(m, ti);
            issue(ti + ST - 1); /* into tile ti-1's stage: its multiplies all waited for */
            if (MT == 2) {
                msa_cu_wg_wait<1>();
                msa_cu_wg_pin(acc[0]);
                epilogue(acc[0], 0, ti); /* while m-tile 1 is multiplied */
            }
            msa_cu_wg_wait<0>();
            msa_cu_wg_pin(acc[MT - 1]);
            epilogue(acc[MT - 1], MT - 1, ti);
        }
        msa_cu_cp_wait<0>(); /* no copy outlives the CTA */
    }
#else
    (void)p; (void)c; (void)S; (void)ldS; (void)bpc;
    __trap(); /* never launched: the host checks msa_cu_wgmma_available() */
#endif
}

template <bool F16, int KT>
static cudaError_t msa_cu_bscore_wg_launch(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS,
                                           int dec, cudaStream_t st)
{
    const int bpc = MSA_CU_WS_SPAN / p.B;
    dim3 grid(c.nqtiles, 1, (p.nblk + bpc - 1) / bpc);
    if (dec)
        msa_cu_bscore_wg<F16, KT, true><<<grid, MSA_CU_WS_THREADS, msa_cu_ws_cfg<KT>::SMEM, st>>>(p, c, S, ldS, bpc);
    else
        msa_cu_bscore_wg<F16, KT, false><<<grid, MSA_CU_WS_THREADS, msa_cu_ws_cfg<KT>::SMEM, st>>>(p, c, S, ldS, bpc);
    return cudaGetLastError();
}

template <bool F16>
static cudaError_t msa_cu_bscore_wg_di(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS,
                                       int dec, cudaStream_t st)
{
    switch (p.DI) {
    case 64: return msa_cu_bscore_wg_launch<F16, 4>(p, c, S, ldS, dec, st);
    case 128: return msa_cu_bscore_wg_launch<F16, 8>(p, c, S, ldS, dec, st);
    default: return msa_cu_bscore_wg_launch<F16, 16>(p, c, S, ldS, dec, st);
    }
}

__global__ void msa_cu_wg_probe(int *out)
{
#ifdef MSA_CU_HAVE_WGMMA
    *out = 1;
#else
    *out = 0;
#endif
}

/* 1 when the device runs the sm_90a code of this plugin (wgmma), 0 when not, < 0 on a
 * CUDA error; the driver picks the sm_90a or the sm_90 cubin, so ask the code itself. */
int msa_cu_wgmma_available(void)
{
    int *d = nullptr, h = 0;
    if (cudaMalloc(&d, sizeof(int)) != cudaSuccess) return -1;
    msa_cu_wg_probe<<<1, 1>>>(d);
    cudaError_t e = cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost);
    cudaFree(d);
    return e == cudaSuccess ? h : -1;
}

template <bool F16, int KT>
static cudaError_t msa_cu_bscore_pipe_launch(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS,
                                             cudaStream_t st)
{
    const int bpc = MSA_CU_IS_SPAN / p.B;
    dim3 grid(c.nqtiles, 1, (p.nblk + bpc - 1) / bpc);
    msa_cu_bscore_pipe<F16, KT><<<grid, MSA_CU_IS_WARPS * 32, msa_cu_is_smem(KT * 16), st>>>(p, c, S, ldS, bpc);
    return cudaGetLastError();
}

template <bool F16>
static cudaError_t msa_cu_bscore_pipe_di(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS,
                                         cudaStream_t st)
{
    switch (p.DI) {
    case 64: return msa_cu_bscore_pipe_launch<F16, 4>(p, c, S, ldS, st);
    case 128: return msa_cu_bscore_pipe_launch<F16, 8>(p, c, S, ldS, st);
    default: return msa_cu_bscore_pipe_launch<F16, 16>(p, c, S, ldS, st);
    }
}

/* float -> unsigned key with the same order (non-NaN). */
__device__ __forceinline__ uint32_t msa_cu_ord(float f)
{
    uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Block-wide exclusive prefix count of `flag` (blockDim a multiple of 32); returns the total. */
__device__ __forceinline__ int msa_cu_scan_flags(bool flag, int *before, int *wsum)
{
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    unsigned bal = __ballot_sync(0xffffffffu, flag);
    __syncthreads();
    if (lane == 0) wsum[warp] = __popc(bal);
    __syncthreads();
    int off = 0, tot = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) {
        off += w < warp ? wsum[w] : 0;
        tot += wsum[w];
    }
    *before = off + __popc(bal & ((1u << lane) - 1u));
    return tot;
}

__global__ void __launch_bounds__(MSA_CU_TOPK_MAX_THREADS)
    msa_cu_topk_kernel(msa_cu_prob p, int t0, int nrows, const float *S, int ldS, int32_t *topk)
{
    __shared__ int hist[256], wsum[MSA_CU_TOPK_MAX_THREADS / 32], s_dig, s_rem;
    const int tl = blockIdx.x, g = blockIdx.y, t = t0 + tl, K = p.topk;
    const int gs = (p.bugs & MSA_CU_BUG_SHARED_SEL) ? 0 : g;
    const float *row = S + ((int64_t)gs * nrows + tl) * ldS;
    int32_t *out = topk + ((int64_t)g * p.total_q + t) * K;
    const int nvis = msa_cu_nvis(p, msa_cu_row_of(p, t).nkeys);
    if (nvis <= K) {
        for (int s = threadIdx.x; s < K; s += blockDim.x) out[s] = s < nvis ? s : -1;
        return;
    }
    const int c0 = p.init, c1 = nvis - p.local, kk = K - p.init - p.local;
    uint32_t prefix = 0, mask = 0;
    int rem = kk; /* how many of the keys equal to the threshold to take, once found */
    if (kk > 0) {
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
            __syncthreads();
            for (int bb = c0 + threadIdx.x; bb < c1; bb += blockDim.x) {
                uint32_t u = msa_cu_ord(row[bb]);
                if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255], 1);
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                int cum = 0, d = 255;
                for (; d > 0 && cum + hist[d] < rem; --d) cum += hist[d];
                s_dig = d;
                s_rem = rem - cum;
            }
            __syncthreads();
            prefix |= (uint32_t)s_dig << shift;
            mask |= 255u << shift;
            rem = s_rem;
            __syncthreads();
        }
    }
    /* ascending compaction: forced blocks, keys above the threshold, first `rem` equal */
    int base = 0, eq_seen = 0;
    for (int a = 0; a < nvis; a += blockDim.x) {
        int bb = a + threadIdx.x;
        bool in = bb < nvis, forced = in && (bb < c0 || bb >= c1);
        uint32_t u = (in && !forced) ? msa_cu_ord(row[bb]) : 0;
        bool cand = in && !forced && kk > 0;
        bool eq = cand && u == prefix, gt = cand && u > prefix;
        int eq_before, take_before;
        int eq_tot = msa_cu_scan_flags(eq, &eq_before, wsum);
        bool take = forced || gt || (eq && eq_seen + eq_before < rem);
        int take_tot = msa_cu_scan_flags(take, &take_before, wsum);
        if (take && base + take_before < K) out[base + take_before] = bb;
        base += take_tot;
        eq_seen += eq_tot;
    }
    for (int s = base + threadIdx.x; s < K; s += blockDim.x) out[s] = -1;
}

cudaError_t msa_cu_block_scores(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS, int wg,
                                cudaStream_t st)
{
    if (c.nqtiles <= 0 || p.nblk <= 0) return cudaSuccess;
    const int rows = msa_cu_bscore_rows(p.DI, p.idx_kind, wg);
    if (wg && rows != MSA_CU_ROWS)
        return p.idx_kind == MSA_CU_IDX_FP16 ? msa_cu_bscore_wg_di<true>(p, c, S, ldS, wg == 2, st)
                                             : msa_cu_bscore_wg_di<false>(p, c, S, ldS, wg == 2, st);
    if (rows == MSA_CU_IS_ROWS)
        return p.idx_kind == MSA_CU_IDX_FP16 ? msa_cu_bscore_pipe_di<true>(p, c, S, ldS, st)
                                             : msa_cu_bscore_pipe_di<false>(p, c, S, ldS, st);
    int bpc = 2048 / p.B; /* about 2048 keys per CTA */
    dim3 grid(c.nqtiles, 1, (p.nblk + bpc - 1) / bpc);
    size_t smem = (size_t)(MSA_CU_ROWS + p.B) * (p.DI + MSA_CU_PAD) * sizeof(uint16_t);
    if (p.idx_kind == MSA_CU_IDX_FP16)
        msa_cu_bscore<true><<<grid, MSA_CU_THREADS, smem, st>>>(p, c, S, ldS, bpc);
    else
        msa_cu_bscore<false><<<grid, MSA_CU_THREADS, smem, st>>>(p, c, S, ldS, bpc);
    return cudaGetLastError();
}

cudaError_t msa_cu_topk(const msa_cu_prob &p, const msa_cu_chunk &c, const float *S, int ldS,
                        int32_t *topk, cudaStream_t st)
{
    if (c.nrows <= 0) return cudaSuccess;
    if (p.nblk <= MSA_CU_TOPK_REGS_MAX) return msa_cu_topk_regs(p, c.t0, c.nrows, S, ldS, topk, st);
    dim3 grid(c.nrows, p.Hkv);
    /* about 8 blocks per thread and pass: wide CTAs for long rows (decode), 128 otherwise */
    int th = ((p.nblk / 8 + 31) / 32) * 32;
    th = th < MSA_CU_THREADS ? MSA_CU_THREADS : (th > MSA_CU_TOPK_MAX_THREADS ? MSA_CU_TOPK_MAX_THREADS : th);
    msa_cu_topk_kernel<<<grid, th, 0, st>>>(p, c.t0, c.nrows, S, ldS, topk);
    return cudaGetLastError();
}

cudaError_t msa_cu_index_set_attributes(void)
{
    int smem = (MSA_CU_ROWS + MSA_CU_MAXB) * (256 + MSA_CU_PAD) * (int)sizeof(uint16_t);
    cudaError_t e = cudaFuncSetAttribute(msa_cu_bscore<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(msa_cu_bscore<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
#define MSA_CU_IS_ATTR(F, KT)                                                                          \
    if (e == cudaSuccess)                                                                              \
        e = cudaFuncSetAttribute(msa_cu_bscore_pipe<F, KT>, cudaFuncAttributeMaxDynamicSharedMemorySize, \
                                 (int)msa_cu_is_smem(KT * 16));
    MSA_CU_IS_ATTR(false, 4) MSA_CU_IS_ATTR(false, 8) MSA_CU_IS_ATTR(false, 16)
    MSA_CU_IS_ATTR(true, 4) MSA_CU_IS_ATTR(true, 8) MSA_CU_IS_ATTR(true, 16)
#undef MSA_CU_IS_ATTR
#define MSA_CU_WS_ATTR(F, KT)                                                                               \
    if (e == cudaSuccess)                                                                                   \
        e = cudaFuncSetAttribute(msa_cu_bscore_wg<F, KT, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, \
                                 (int)msa_cu_ws_cfg<KT>::SMEM);                                              \
    if (e == cudaSuccess)                                                                                   \
        e = cudaFuncSetAttribute(msa_cu_bscore_wg<F, KT, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,  \
                                 (int)msa_cu_ws_cfg<KT>::SMEM);
    MSA_CU_WS_ATTR(false, 4) MSA_CU_WS_ATTR(false, 8) MSA_CU_WS_ATTR(false, 16)
    MSA_CU_WS_ATTR(true, 4) MSA_CU_WS_ATTR(true, 8) MSA_CU_WS_ATTR(true, 16)
#undef MSA_CU_WS_ATTR
    return e;
}
