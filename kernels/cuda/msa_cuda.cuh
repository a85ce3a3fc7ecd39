/* msa_cuda.cuh - shared pieces of the CUDA backend: the device view of a problem, the
 * per-row causal geometry, tensor-core (mma.sync m16n8k16) helpers and the launchers
 * each .cu file provides to backend.cu.
 *
 * Arithmetic follows docs/DESIGN.md (the "cuda" declaration): fp32 accumulation in the
 * MMAs, x = s * fp32(scale*log2e), ex2.approx.ftz.f32, P rounded to bf16 before P.V,
 * per-block partials merged by LSE.  This header holds no host orchestration (backend.cu)
 * and no policy on which problems are supported (backend.cu's supports()). */
#ifndef MSA_CUDA_CUH
#define MSA_CUDA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>
#include <stdint.h>

#define MSA_CU_THREADS 128 /* 4 warps per CTA */
#define MSA_CU_ROWS 64     /* MMA rows per CTA: 4 warps x 16 rows (m16n8k16) */
#define MSA_CU_PAD 8       /* 16-byte row padding in shared tiles: conflict-free fragment loads */
#define MSA_CU_MAXB 128    /* largest block size (register tile of 16 n-tiles of 8 keys) */
#define MSA_CU_LN2 0.6931471805599453f

/* Deliberate bugs of the mutant variants (msa_backend_variant_v1). */
enum {
    MSA_CU_BUG_DIAG_DROP = 1,     /* attention masks j < pos instead of j <= pos */
    MSA_CU_BUG_NONCAUSAL = 2,     /* causal flag ignored everywhere */
    MSA_CU_BUG_SHARED_SEL = 4,    /* every group gets group 0's selection */
    MSA_CU_BUG_MERGE_NAN = 8,     /* merge folds -1 slots in as LSE -inf partials */
    MSA_CU_BUG_UNMASKED_TAIL = 16, /* keys past pos in the last block not masked */
    MSA_CU_BUG_MINUS_ONE = 32     /* a -1 slot used as an index: wraps to the last block */
};

enum { MSA_CU_IDX_BF16 = 0, MSA_CU_IDX_FP16 = 1, MSA_CU_IDX_E4M3 = 2 };

/* Everything a kernel needs, passed by value. */
struct msa_cu_prob {
    int batch, total_q, Hq, Hkv, D, HI, DI, B, topk, init, local, causal, nblk, max_blocks;
    int G;            /* Hq / Hkv */
    float c2;         /* fp32(softmax_scale_f32 * log2(e)) */
    float iscale;     /* index_scale as fp32 */
    int fp16;         /* main dtype fp16 (else bf16) */
    int idx_kind;     /* MSA_CU_IDX_* */
    int bugs;         /* MSA_CU_BUG_* */
    int merge_v4;     /* the vector merge (decode.cu; default where D % 4 == 0, off: $MSA_CUDA_MERGE=1) */
    int topk_search;  /* the register top-k without its fast path ($MSA_CUDA_TOPK=0) */
    int topk_quick;   /* its fast path's bound search shortened (default; $MSA_CUDA_TOPK=1: not) */
    const int32_t *cu_q, *cu_k, *page_table;
    const uint16_t *q, *k, *v;
    const void *iq, *ik;
};

struct msa_cu_row {
    int b, i, Lq, Lk, nkeys;
};

__device__ __forceinline__ int msa_cu_seq_of(const msa_cu_prob &p, int t)
{
    int lo = 0, hi = p.batch - 1; /* last b with cu_q[b] <= t (skipping empty sequences) */
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (p.cu_q[mid] <= t) lo = mid; else hi = mid - 1;
    }
    return lo;
}

/* The keys row t sees (MSA.md 3: bottom-right aligned, j <= pos when causal). */
__device__ __forceinline__ msa_cu_row msa_cu_row_of(const msa_cu_prob &p, int t)
{
    msa_cu_row r;
    r.b = msa_cu_seq_of(p, t);
    r.Lq = p.cu_q[r.b + 1] - p.cu_q[r.b];
    r.Lk = p.cu_k[r.b + 1] - p.cu_k[r.b];
    r.i = t - p.cu_q[r.b];
    int nk = r.Lk;
    if (p.causal && !(p.bugs & MSA_CU_BUG_NONCAUSAL)) {
        int pos = r.Lk - r.Lq + r.i;
        nk = pos + 1 < 0 ? 0 : (pos + 1 > r.Lk ? r.Lk : pos + 1);
    }
    r.nkeys = nk;
    return r;
}

__device__ __forceinline__ int msa_cu_nvis(const msa_cu_prob &p, int nkeys)
{
    return (nkeys + p.B - 1) / p.B;
}

/* Storage row of token j of sequence b (page table: logical block -> physical page). */
__device__ __forceinline__ int64_t msa_cu_kv_row(const msa_cu_prob &p, int b, int j)
{
    if (p.page_table)
        return (int64_t)p.page_table[(int64_t)b * p.max_blocks + j / p.B] * p.B + j % p.B;
    return (int64_t)p.cu_k[b] + j;
}

/* A selected id as the attention uses it: -1 when the slot contributes nothing. */
__device__ __forceinline__ int msa_cu_sel_block(const msa_cu_prob &p, int id, int nvis)
{
    if ((p.bugs & MSA_CU_BUG_MINUS_ONE) && id < 0) id = nvis - 1;
    return (id >= 0 && id < nvis) ? id : -1;
}

/* ---- tensor-core helpers (PTX ISA: mma.sync.aligned.m16n8k16, ldmatrix) ---- */
template <bool F16>
__device__ __forceinline__ void msa_cu_mma(float c[4], const uint32_t a[4], const uint32_t b[2])
{
    if (F16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void msa_cu_ldsm_x2_trans(uint32_t b[2], const void *smem)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                 : "=r"(b[0]), "=r"(b[1])
                 : "r"(a));
}

__device__ __forceinline__ void msa_cu_ldsm_x4_trans(uint32_t r[4], const void *smem)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

/* Four 8x8 b16 matrices (lanes 8i..8i+7 give the row addresses of matrix i). */
__device__ __forceinline__ void msa_cu_ldsm_x4(uint32_t r[4], const void *smem)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

/* 16-byte asynchronous global -> shared copy (PTX cp.async.cg); ok == 0 zero-fills the
 * destination and reads nothing (src-size 0), so masked rows are never loaded. */
__device__ __forceinline__ void msa_cu_cp16(void *smem, const void *gmem, bool ok)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(a), "l"(gmem), "r"(ok ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void msa_cu_cp_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void msa_cu_cp_wait(void) { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

__device__ __forceinline__ float msa_cu_ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t msa_cu_ld32(const uint16_t *p)
{
    return *reinterpret_cast<const uint32_t *>(p);
}

/* P rounded once to V's 16-bit type (the declared p_dtype "follows the input": fp16 for
 * fp16 inputs, bf16 otherwise); returned as the rounded value (summed into l, so the
 * normalisation uses exactly the weights the P.V MMA multiplies) and as the MMA operand. */
template <bool F16>
__device__ __forceinline__ float msa_cu_round_p(float p, uint16_t *bits)
{
    if (F16) {
        __half h = __float2half_rn(p);
        *bits = *reinterpret_cast<uint16_t *>(&h);
        return __half2float(h);
    }
    __nv_bfloat16 b = __float2bfloat16_rn(p);
    *bits = *reinterpret_cast<uint16_t *>(&b);
    return __bfloat162float(b);
}

__device__ __forceinline__ uint32_t msa_cu_pack(uint16_t lo, uint16_t hi)
{
    return (uint32_t)lo | ((uint32_t)hi << 16);
}

/* Copies `rows` rows of D 16-bit values into a padded shared tile with 16-byte loads;
 * src_row(r) < 0 zero-fills row r (masked or absent rows are never read from memory).
 * Each thread issues MSA_CU_TILE_U loads (and their row lookups) before its first store,
 * so that many loads are in flight per thread: with one load, one store, one load... a
 * 64 KB K/V tile took ~20 us (32 memory round trips per thread, Nsight Compute on an H200,
 * bench/NOTES.md v3).  Pure data movement: the tile's contents are unchanged. */
#define MSA_CU_TILE_U 8
template <typename RowFn>
__device__ __forceinline__ void msa_cu_load_tile(uint16_t *dst, int rows, int D, RowFn src_row)
{
    const int vec = D / 8, ld = D + MSA_CU_PAD, n = rows * vec;
    for (int x0 = threadIdx.x; x0 < n; x0 += MSA_CU_TILE_U * blockDim.x) {
        uint4 val[MSA_CU_TILE_U];
#pragma unroll
        for (int u = 0; u < MSA_CU_TILE_U; ++u) {
            const int x = x0 + u * (int)blockDim.x;
            val[u] = make_uint4(0, 0, 0, 0);
            if (x < n) {
                const uint16_t *s = src_row(x / vec);
                if (s) val[u] = reinterpret_cast<const uint4 *>(s)[x % vec];
            }
        }
#pragma unroll
        for (int u = 0; u < MSA_CU_TILE_U; ++u) {
            const int x = x0 + u * (int)blockDim.x;
            if (x < n) *reinterpret_cast<uint4 *>(dst + (x / vec) * ld + (x % vec) * 8) = val[u];
        }
    }
}

/* msa_cu_load_tile by cp.async (the caller commits and waits): the same tile, the same
 * zero rows (src_row(r) null: zero-filled, nothing read; `any` is a valid address the
 * zero-size copies name). */
template <typename RowFn>
__device__ __forceinline__ void msa_cu_load_tile_async(uint16_t *dst, int rows, int D, const void *any,
                                                       RowFn src_row)
{
    const int vec = D / 8, ld = D + MSA_CU_PAD, n = rows * vec;
    for (int x = threadIdx.x; x < n; x += blockDim.x) {
        const uint16_t *s = src_row(x / vec);
        msa_cu_cp16(dst + (x / vec) * ld + (x % vec) * 8, s ? (const void *)(s + (x % vec) * 8) : any, s != nullptr);
    }
}

/* ---- launchers (return cudaError_t of the launch) ---- */
struct msa_cu_chunk {
    int t0, nrows;    /* packed query rows [t0, t0 + nrows) */
    const int4 *qtiles; int nqtiles; /* (b, i0, n, 0): up to msa_cu_bscore_rows rows (128; 64 for e4m3 keys) of one sequence */
    /* decode path only (decode.cu): scan tasks (b, i0, n, j): rows [i0, i0+n) of sequence b
     * against key blocks [j*dbpc, (j+1)*dbpc) */
    const int4 *dtasks; int ndtasks, dbpc;
};

/* wg: the sm_90a warpgroup scorer (the plan's tiles then hold msa_cu_bscore_rows(.., 1) rows). */
cudaError_t msa_cu_block_scores(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS, int wg,
                                cudaStream_t st);
/* The LSE merge of the per-slot partials (decode.cu's msa_cu_dmerge; both chains). */
cudaError_t msa_cu_merge_partials(const msa_cu_prob &p, int t0, int nrows, const int32_t *topk, const float *pO,
                                  const float *pL, void *out, float *lse, cudaStream_t st);
/* Register top-k (decode.cu's msa_cu_dtopk): rows of at most this many blocks. */
#define MSA_CU_TOPK_REGS_MAX (16 * 1024)
cudaError_t msa_cu_topk_regs(const msa_cu_prob &p, int t0, int nrows, const float *S, int ldS, int32_t *topk,
                             cudaStream_t st);
/* MMA rows per index-score tile for this index shape (the plan's tiles hold this many);
 * wg: the warpgroup scorer is used. */
int msa_cu_bscore_rows(int DI, int idx_kind, int wg);
/* 1 when the sm_90a (wgmma) code runs on this device, 0 when not, < 0 on a CUDA error. */
int msa_cu_wgmma_available(void);
cudaError_t msa_cu_topk(const msa_cu_prob &p, const msa_cu_chunk &c, const float *S, int ldS,
                        int32_t *topk, cudaStream_t st);
/* KV-outer sparse attention over a chunk: CSR build, partials, merge. */
struct msa_cu_sparse_ws {
    int NB;                      /* blocks of all sequences */
    const int *blk_off;          /* [batch+1] first global block of each sequence */
    const int *blk_seq, *blk_lb; /* [NB] sequence and logical block of a global block */
    int *cnt, *off, *cur;        /* [Hkv*NB (+1)] */
    int *ord;                    /* [Hkv*NB] cells by entry count, largest first (default; nullptr: grid order, $MSA_CUDA_ORDER=0) */
    int *ent;                    /* CSR entries (row - t0) * topk + slot */
    float *pO, *pL;              /* partials [nrows][topk][Hq][D], [nrows][topk][Hq] */
};
cudaError_t msa_cu_sparse(const msa_cu_prob &p, const msa_cu_chunk &c, const int32_t *topk,
                          const msa_cu_sparse_ws &w, void *out, float *lse, cudaStream_t st);
cudaError_t msa_cu_dense(const msa_cu_prob &p, const int4 *dtiles, int ndtiles, void *out,
                         float *lse, cudaStream_t st);
/* The decode path (decode.cu): index scan + top-k, split-K attention + merge.
 * msa_cu_decode_shape_ok: whether its kernels cover the shape (host). */
#define MSA_CU_DEC_MAXQ 16 /* most query rows of one sequence on the decode path */
int msa_cu_decode_shape_ok(int DI, int idx_kind, int max_lq, int HI, int nblk);
cudaError_t msa_cu_decode_select(const msa_cu_prob &p, const msa_cu_chunk &c, float *S, int ldS,
                                 int32_t *topk, cudaStream_t st);
cudaError_t msa_cu_decode_attend(const msa_cu_prob &p, const msa_cu_chunk &c, const int32_t *topk, float *pO,
                                 float *pL, void *out, float *lse, cudaStream_t st);
cudaError_t msa_cu_decode_set_attributes(void);
/* Raise the dynamic shared-memory limits once (outside any graph capture). */
cudaError_t msa_cu_sparse_set_attributes(void);
cudaError_t msa_cu_dense_set_attributes(void);
cudaError_t msa_cu_index_set_attributes(void);

#endif
