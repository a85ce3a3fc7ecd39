/* bench_gpu.cu - GPU benchmark of the cuda backend (issue 8): MSA prefill and decode and
 * our dense kernel at MiniMax-M3's shape (Hq 64, Hkv 4, D 128, HI 4, DI 128, B 128, k 16,
 * local 1), plus the measured ceilings (device-to-device copy, cuBLAS bf16 GEMM).
 *
 * Timing: the backend's launch chain is captured into a CUDA graph once per input set
 * (msa_cuda_time in kernels/cuda/backend.cu), launched `warm` times, then timed launch by
 * launch with CUDA events; medians are printed.  Inputs: fresh pseudo-random bf16 data
 * (never zeros), two input sets used in rotation where they fit in memory.  It prints one
 * markdown table per part.  It does not judge correctness: tests/test_cuda.c does.
 * Decode runs `--decode-batch` sequences of `--decode-lq` query tokens each (default 1 x 1),
 * with bf16 or fp8 e4m3 index keys and queries (`--index-dtype`); $MSA_CUDA_DECODE=0 makes
 * the backend use its prefill kernels for decode too (A/B against kernels/cuda/decode.cu).
 * Usage: msa_bench_gpu [--lib PATH] [--prefill 8192,16384,...] [--decode 8192,...] [--reps R]
 *        [--dense-max N] [--index-dtype bf16|e4m3] [--decode-batch NB] [--decode-lq Q]
 *        [--variant V]   (V: a variant of the plugin, e.g. diag-drop) */
#include <algorithm>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vector>

extern "C" {
#include "../kernels/msa_abi.h"
}

typedef int (*time_fn)(void *, const msa_problem *const *, int, int, int32_t *const *, void *const *,
                       float *const *, int, int, float *, size_t *);

#define CK(x)                                                                                  \
    do {                                                                                       \
        cudaError_t e_ = (x);                                                                  \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* M3 (MSA.md section 2) */
enum { HQ = 64, HKV = 4, D = 128, DI = 128, BS = 128, TOPK = 16, LOCAL = 1 };

__global__ void fill_bf16(__nv_bfloat16 *x, size_t n, uint64_t seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 29;
        /* sum of 4 uniforms: roughly normal, mean 0, variance 1/3 * 4 / 4 */
        float u = ((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48)) / 65536.f - 2.f;
        x[i] = __float2bfloat16(u * 1.7320508f * scale);
    }
}

/* the same pseudo-normal values, rounded to fp8 e4m3 (saturating; index tensors) */
__global__ void fill_e4m3(uint8_t *x, size_t n, uint64_t seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 29;
        float u = ((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48)) / 65536.f - 2.f;
        x[i] = (uint8_t)__nv_cvt_float_to_fp8(u * 1.7320508f * scale, __NV_SATFINITE, __NV_E4M3);
    }
}

static msa_dtype g_idt = MSA_DT_BF16; /* index q/k dtype (--index-dtype) */

static void fill_index(void *x, size_t n, uint64_t seed)
{
    if (g_idt == MSA_DT_E4M3) fill_e4m3<<<1024, 256>>>((uint8_t *)x, n, seed, 1.f);
    else fill_bf16<<<1024, 256>>>((__nv_bfloat16 *)x, n, seed, 1.f);
}

static float median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.f : v[v.size() / 2];
}

struct inputs {
    void *q, *k, *v, *iq, *ik, *out;
    float *lse;
    int32_t *topk, *cq, *ck;
    std::vector<int32_t> hq, hk;
    msa_problem p;
};

static void *dalloc(size_t n)
{
    void *p = nullptr;
    CK(cudaMalloc(&p, n ? n : 16));
    return p;
}

/* nb sequences of lq queries over lk keys each (contiguous KV) */
static void make_inputs(inputs *in, int lq, int lk, uint64_t seed, int nb = 1)
{
    size_t tq = (size_t)nb * lq, tk = (size_t)nb * lk, ie = g_idt == MSA_DT_E4M3 ? 1 : 2;
    size_t nq = tq * HQ * D, nk = tk * HKV * D;
    in->q = dalloc(nq * 2); in->out = dalloc(nq * 2); in->k = dalloc(nk * 2); in->v = dalloc(nk * 2);
    in->iq = dalloc(tq * HKV * DI * ie); in->ik = dalloc(tk * DI * ie);
    in->lse = (float *)dalloc(tq * HQ * 4); in->topk = (int32_t *)dalloc((size_t)HKV * tq * TOPK * 4);
    in->cq = (int32_t *)dalloc(4 * (nb + 1)); in->ck = (int32_t *)dalloc(4 * (nb + 1));
    fill_bf16<<<1024, 256>>>((__nv_bfloat16 *)in->q, nq, seed + 1, 1.f);
    fill_bf16<<<1024, 256>>>((__nv_bfloat16 *)in->k, nk, seed + 2, 1.f);
    fill_bf16<<<1024, 256>>>((__nv_bfloat16 *)in->v, nk, seed + 3, 1.f);
    fill_index(in->iq, tq * HKV * DI, seed + 4);
    fill_index(in->ik, tk * DI, seed + 5);
    CK(cudaGetLastError());
    in->hq.assign(nb + 1, 0); in->hk.assign(nb + 1, 0);
    for (int b = 0; b < nb; ++b) { in->hq[b + 1] = (b + 1) * lq; in->hk[b + 1] = (b + 1) * lk; }
    CK(cudaMemcpy(in->cq, in->hq.data(), 4 * (nb + 1), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(in->ck, in->hk.data(), 4 * (nb + 1), cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());
    msa_problem *p = &in->p;
    memset(p, 0, sizeof *p);
    p->abi_version = MSA_ABI_VERSION; p->batch = nb; p->total_q = (int)tq; p->kv_rows = (int)tk;
    p->Hq = HQ; p->Hkv = HKV; p->D = D; p->HI = HKV; p->DI = DI; p->block_size = BS; p->topk = TOPK;
    p->init_blocks = 0; p->local_blocks = LOCAL; p->causal = 1; p->nblk = (lk + BS - 1) / BS;
    p->max_lq = lq; p->max_lk = lk;
    p->softmax_scale_f64 = 1 / sqrt((double)D); p->softmax_scale = (float)p->softmax_scale_f64;
    p->index_scale_f64 = 1 / sqrt((double)DI); p->index_scale = (float)p->index_scale_f64;
    p->dtype = MSA_DT_BF16; p->index_dtype = g_idt;
    p->cu_seqlens_q = in->cq; p->cu_seqlens_k = in->ck;
    p->cu_seqlens_q_host = in->hq.data(); p->cu_seqlens_k_host = in->hk.data();
    p->q = in->q; p->k = in->k; p->v = in->v; p->index_q = in->iq; p->index_k = in->ik;
}

static void free_inputs(inputs *in)
{
    void *all[] = {in->q, in->k, in->v, in->iq, in->ik, in->out, in->lse, in->topk, in->cq, in->ck};
    for (void *x : all) cudaFree(x);
}

/* ---- ceilings ---- */
static double copy_ceiling_gbs(void)
{
    size_t n = (size_t)2 << 30;
    void *a = dalloc(n), *b = dalloc(n);
    fill_bf16<<<1024, 256>>>((__nv_bfloat16 *)a, n / 2, 7, 1.f);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
    std::vector<float> t;
    for (int i = 0; i < 13; ++i) {
        CK(cudaEventRecord(e0));
        CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 3) t.push_back(ms);
    }
    cudaFree(a); cudaFree(b);
    return 2.0 * n / (median(t) * 1e-3) / 1e9; /* bytes read + written */
}

static double gemm_ceiling_tflops(void)
{
    const int n = 8192;
    void *a = dalloc((size_t)n * n * 2), *b = dalloc((size_t)n * n * 2), *c = dalloc((size_t)n * n * 2);
    fill_bf16<<<1024, 256>>>((__nv_bfloat16 *)a, (size_t)n * n, 11, 1.f);
    fill_bf16<<<1024, 256>>>((__nv_bfloat16 *)b, (size_t)n * n, 12, 1.f);
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cublasCreate failed\n"); exit(1); }
    float one = 1.f, zero = 0.f;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
    std::vector<float> t;
    for (int i = 0; i < 13; ++i) {
        CK(cudaEventRecord(e0));
        cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n,
                                        &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cublasGemmEx failed %d\n", (int)s); exit(1); }
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 3) t.push_back(ms);
    }
    cublasDestroy(h);
    cudaFree(a); cudaFree(b); cudaFree(c);
    return 2.0 * n * n * (double)n / (median(t) * 1e-3) / 1e12;
}

/* ---- timing through the backend ---- */
static const msa_backend *g_be;
static void *g_ctx;
static time_fn g_time;

static float time_entry(inputs *ins, int nin, int what, int warm, int reps, size_t *ws)
{
    std::vector<const msa_problem *> ps;
    std::vector<int32_t *> tk;
    std::vector<void *> out;
    std::vector<float *> lse;
    for (int i = 0; i < nin; ++i) {
        ps.push_back(&ins[i].p); tk.push_back(ins[i].topk); out.push_back(ins[i].out); lse.push_back(ins[i].lse);
    }
    std::vector<float> ms(reps);
    if (g_time(g_ctx, ps.data(), nin, what, tk.data(), out.data(), lse.data(), warm, reps, ms.data(), ws)) {
        printf("timing failed: %s\n", g_be->last_error(g_ctx));
        exit(1);
    }
    return median(ms);
}

static std::vector<int> parse_list(const char *s)
{
    std::vector<int> v;
    while (s && *s) {
        v.push_back(atoi(s));
        s = strchr(s, ',');
        if (s) ++s;
    }
    return v;
}

static double main_flops(int lq, int lk)
{
    double s = 0; /* 4 flops per (query head, key, dim): QK^T and PV */
    for (int i = 0; i < lq; ++i) s += std::min(lk - lq + i + 1, TOPK * BS);
    return 4.0 * HQ * D * s;
}

int main(int argc, char **argv)
{
    char lib[4096] = "";
    const char *variant = nullptr;
    const char *pre = "8192,16384,32768,65536,131072", *dec = "8192,32768,131072,524288,1048576";
    int reps = 7, dense_max = 131072, dec_nb = 1, dec_lq = 1, ceilings = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--lib")) snprintf(lib, sizeof lib, "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "--prefill")) pre = argv[i + 1];
        else if (!strcmp(argv[i], "--decode")) dec = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--variant")) variant = argv[i + 1];
        else if (!strcmp(argv[i], "--dense-max")) dense_max = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode-batch")) dec_nb = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode-lq")) dec_lq = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ceilings")) ceilings = atoi(argv[i + 1]); /* 0: skip (sanitizer runs) */
        else if (!strcmp(argv[i], "--index-dtype")) {
            if (!strcmp(argv[i + 1], "e4m3")) g_idt = MSA_DT_E4M3;
            else if (!strcmp(argv[i + 1], "bf16")) g_idt = MSA_DT_BF16;
            else { printf("--index-dtype: bf16 or e4m3, not %s\n", argv[i + 1]); return 2; }
        }
    }
    if (dec_nb < 1 || dec_lq < 1) { printf("--decode-batch and --decode-lq must be >= 1\n"); return 2; }
    if (!*lib) { /* next to the executable */
        ssize_t n = readlink("/proc/self/exe", lib, sizeof lib - 32);
        lib[n > 0 ? n : 0] = 0;
        char *sl = strrchr(lib, '/');
        snprintf(sl ? sl + 1 : lib, 32, "libmsa_cuda.so");
    }
    void *dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!dl) { printf("cannot load %s: %s\n", lib, dlerror()); return 1; }
    if (variant) {
        msa_backend_variant_fn vf = (msa_backend_variant_fn)dlsym(dl, MSA_BACKEND_VARIANT_SYMBOL);
        g_be = vf ? vf(variant) : nullptr;
        if (!g_be) { printf("--variant: %s: no such variant in %s\n", variant, lib); return 2; }
    } else {
        g_be = ((msa_backend_entry_fn)dlsym(dl, MSA_BACKEND_SYMBOL))();
    }
    g_time = (time_fn)dlsym(dl, "msa_cuda_time");
    typedef int (*path_fn)(const msa_problem *);
    path_fn decode_path = (path_fn)dlsym(dl, "msa_cuda_decode_path");
    if (!g_be || !g_time || g_be->init(&g_ctx)) { printf("backend init failed\n"); return 1; }
    printf("# msa_bench_gpu on %s (kernel %s)\n\n", g_be->device_name(g_ctx), g_be->name);
    double bw = ceilings ? copy_ceiling_gbs() : NAN, tf = ceilings ? gemm_ceiling_tflops() : NAN;
    printf("Ceilings: device copy %.0f GB/s (read+write, 2 GiB), cuBLAS bf16 GEMM 8192^3 %.0f TFLOP/s\n\n", bw, tf);

    printf("## Prefill (batch 1, causal, M3 shape; median of %d graph launches)\n\n", reps);
    printf("| N | MSA fwd ms | index+topk ms | attend+merge ms | dense (ours) ms | MSA vs our dense | index TFLOP/s (%% GEMM) | attend TFLOP/s (%% GEMM) | dense TFLOP/s (%% GEMM) | workspace MiB |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int N : parse_list(pre)) {
        int nin = N <= 32768 ? 2 : 1;
        inputs in[2];
        for (int i = 0; i < nin; ++i) make_inputs(&in[i], N, N, 1000 * N + 17 * i);
        size_t ws = 0;
        /* one warm-up and one timed launch from 512k on: a launch lasts seconds there */
        int r = N >= 524288 ? 1 : N >= 262144 ? 3 : reps;
        float tf_ = time_entry(in, nin, 0, N >= 524288 ? 1 : 2, r, &ws);
        float ts = time_entry(in, nin, 1, 1, r, nullptr);
        float ta = time_entry(in, nin, 2, 1, r, nullptr);
        float td = N <= dense_max ? time_entry(in, nin, 3, 1, N >= 65536 ? 3 : r, nullptr) : 0.f;
        double fi = 2.0 * DI * HKV * (double)N * (N + 1) / 2, fm = main_flops(N, N), fd = 4.0 * HQ * D * (double)N * (N + 1) / 2;
        char dense_s[64] = "-", ratio_s[64] = "-", dtf_s[64] = "-";
        if (td > 0) {
            snprintf(dense_s, sizeof dense_s, "%.3f", td);
            snprintf(ratio_s, sizeof ratio_s, "%.2fx", td / tf_);
            snprintf(dtf_s, sizeof dtf_s, "%.0f (%.0f%%)", fd / td / 1e9, 100 * fd / td / 1e9 / tf);
        }
        printf("| %d | %.3f | %.3f | %.3f | %s | %s | %.0f (%.0f%%) | %.0f (%.0f%%) | %s | %.0f |\n", N, tf_, ts, ta, dense_s,
               ratio_s, fi / ts / 1e9, 100 * fi / ts / 1e9 / tf, fm / ta / 1e9, 100 * fm / ta / 1e9 / tf, dtf_s, ws / 1048576.0);
        fflush(stdout);
        for (int i = 0; i < nin; ++i) free_inputs(&in[i]);
    }

    const char *idn = g_idt == MSA_DT_E4M3 ? "e4m3" : "bf16";
    printf("\n## Decode (batch %d, %d query token%s each, %s index keys, M3 shape; median of %d graph launches)\n\n",
           dec_nb, dec_lq, dec_lq > 1 ? "s" : "", idn, reps * 3);
    printf("| N | MSA decode ms | index scan GB/s (%% copy) | dense (ours) ms | dense K/V GB/s (%% copy) | MSA vs our dense |\n");
    printf("|---|---|---|---|---|---|\n");
    const char *path = "?";
    for (int N : parse_list(dec)) {
        size_t per = (size_t)N * (2 * HKV * D * 2 + DI * 2); /* bytes of one sequence's K, V, index keys */
        int nin = per * dec_nb <= ((size_t)1 << 30) ? 2 : 1;
        inputs in[2];
        for (int i = 0; i < nin; ++i) make_inputs(&in[i], dec_lq, N, 7000 * N + 31 * i, dec_nb);
        if (decode_path) path = decode_path(&in[0].p) ? "decode.cu" : "prefill kernels";
        float tm = time_entry(in, nin, 0, 3, reps * 3, nullptr);
        float td = N <= dense_max || dec_nb * dec_lq == 1 ? time_entry(in, nin, 3, 3, reps * 3, nullptr) : 0.f;
        double bi = (double)dec_nb * N * DI * (g_idt == MSA_DT_E4M3 ? 1 : 2), bd = 2.0 * dec_nb * N * HKV * D * 2;
        if (td > 0)
            printf("| %d | %.4f | %.0f (%.0f%%) | %.4f | %.0f (%.0f%%) | %.2fx |\n", N, tm, bi / tm / 1e6,
                   100 * bi / tm / 1e6 / bw, td, bd / td / 1e6, 100 * bd / td / 1e6 / bw, td / tm);
        else
            printf("| %d | %.4f | %.0f (%.0f%%) | - | - | - |\n", N, tm, bi / tm / 1e6, 100 * bi / tm / 1e6 / bw);
        fflush(stdout);
        for (int i = 0; i < nin; ++i) free_inputs(&in[i]);
    }
    printf("\nDecode ran on the backend's %s path.\n", path);
    g_be->fini(g_ctx);
    return 0;
}
