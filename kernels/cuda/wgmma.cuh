/* wgmma.cuh - the Hopper warpgroup MMA (PTX wgmma.mma_async, sm_90a only) used by the
 * index scorer (index.cu): m64n128k16, A (64 rows x 16) and B (128 keys x 16) both from
 * shared memory through matrix descriptors (K-major rows of 128 bytes, 128-byte swizzle).
 * The accumulator layout is mma.sync's C layout repeated over 16 n-tiles of 8 keys:
 * d[4 nt + e] = row (lane / 4) + 8 (e / 2) of the warp's slice, key 8 nt + 2 (lane % 4) + e % 2.
 * Everything here compiles to nothing outside sm_90a (MSA_CU_HAVE_WGMMA undefined); the
 * host asks msa_cu_wgmma_available() before it picks a kernel that uses it. */
#ifndef MSA_CU_WGMMA_CUH
#define MSA_CU_WGMMA_CUH

#include <stdint.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MSA_CU_HAVE_WGMMA 1
#endif

/* Descriptor of a K-major tile whose rows are 128 bytes (64 16-bit values) in 8-row
 * atoms of 1024 bytes, 16-byte chunk c of row r stored at chunk c ^ (r % 8): start address
 * (bits 0-13, in 16-byte units), leading byte offset 1 (unused for swizzled K-major
 * layouts), stride byte offset 1024 (8 rows to the next 8; bits 32-45, 16-byte units),
 * base offset 0 (atoms 1024-byte aligned), layout 1 = 128-byte swizzle (bits 62-63). */
__device__ __forceinline__ uint64_t msa_cu_wg_desc(const void *smem)
{
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

#ifdef MSA_CU_HAVE_WGMMA
__device__ __forceinline__ void msa_cu_wg_fence(void) { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void msa_cu_wg_commit(void) { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void msa_cu_wg_wait(void) { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
/* After a wait: the accumulators are read by later code only (no hoisting above it). */
__device__ __forceinline__ void msa_cu_wg_pin(float (&d)[64])
{
#pragma unroll
    for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
/* Shared memory written by the generic proxy (st.shared, cp.async) made visible to wgmma. */
__device__ __forceinline__ void msa_cu_fence_async_smem(void) { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/* mbarriers in shared memory (the decoupled scorer's stage handshakes): init with an
 * arrival count; arrive (release); an arrival when all of this thread's earlier cp.async
 * copies have landed, without raising the pending count (so `count` such arrivals, one
 * per thread, complete a phase); wait for the phase of the given parity (acquire). */
__device__ __forceinline__ uint32_t msa_cu_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void msa_cu_mbar_init(uint64_t *b, unsigned count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(msa_cu_smem_addr(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void msa_cu_mbar_arrive(uint64_t *b)
{
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(msa_cu_smem_addr(b)) : "memory");
}
__device__ __forceinline__ void msa_cu_mbar_cp_arrive(uint64_t *b)
{
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(msa_cu_smem_addr(b)) : "memory");
}
__device__ __forceinline__ void msa_cu_mbar_wait(uint64_t *b, unsigned parity)
{
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred q;\nmbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2;\nselp.u32 %0, 1, 0, q;\n}\n"
                     : "=r"(done) : "r"(msa_cu_smem_addr(b)), "r"(parity) : "memory");
    } while (!done);
}

/* d (+)= A (64 x 16) * B (16 x 128), both from shared memory through descriptors;
 * scale_d 0 overwrites d.  One statement text per input type (TY: f16 or bf16). */
#define MSA_CU_WG_MMA_TEXT(TY)                                                                         \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                      \
    "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " "                                      \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "  \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, " \
    "%64, %65, p, 1, 1, 0, 0;\n}\n"
#define MSA_CU_WG_MMA_OUT(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
    "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
template <bool F16>
__device__ __forceinline__ void msa_cu_wg_mma(float (&d)[64], uint64_t adesc, uint64_t bdesc, int scale_d)
{
    if (F16)
        asm volatile(MSA_CU_WG_MMA_TEXT("f16") : MSA_CU_WG_MMA_OUT(d) : "l"(adesc), "l"(bdesc), "r"(scale_d));
    else
        asm volatile(MSA_CU_WG_MMA_TEXT("bf16") : MSA_CU_WG_MMA_OUT(d) : "l"(adesc), "l"(bdesc), "r"(scale_d));
}
#endif

#endif
