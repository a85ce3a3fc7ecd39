/* test_cuda.c - suite "cuda": the CUDA backend (build/libmsa_cuda.so) judged by the oracle
 * on the GPU, through the same harness every backend goes through.
 *
 * Registered only when the plugin loads and finds a device; otherwise it prints
 * "cuda suite: no GPU (NotVerified)" and adds nothing (CI has no GPU).  With a GPU:
 * M3's configuration and 20+ others (GQA 1-16, D 64/128/256, B 16-128, k 1-32, init/local
 * combinations, nvis < k, decode 1-16 tokens, chunked prefill, paged with shuffled pages,
 * e4m3/fp16 index keys, ties, empty rows, contexts 1 to 128k) judged by msa_judge_forward
 * with the backend's declared arith; poisoned ATTEND runs (rows no query may read are
 * NaN) judged again and compared bitwise; dense judged against the dense reference;
 * forward under CUDA-graph replay (100 replays) bitwise equal to plain forward; and every
 * deliberately broken CUDA variant rejected; the cuBLAS fp64 GPU reference
 * (kernels/cuda/gpuref.cu) checked against the exact CPU reference, then used to judge
 * M3 at 8k tokens and M3 decode at 64k (16 tokens, e4m3 index, paged) and 200k keys.
 * Decode cases (T_DECODE) must take the decode path (kernels/cuda/decode.cu), checked
 * through msa_cuda_decode_path, and the mutants are also run on decode cases.
 * Expected values come from the references, never from the kernels. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>
#include <time.h>

#include "../common/case.h"
#include "../common/numfmt.h"
#include "../fuzz/fuzz_int.h"
#include "../kernels/harness.h"
#include "../oracle/oracle.h"
#include "../reference/ref.h"

#define CU_SEED 90210u
/* cases whose reference work (Tq * Hq * D * keys per row) exceeds this use the fast
 * (double, compensated) reference mode: exact MPFR mode would take minutes */
#define CU_EXACT_WORK 2e7

/* T_DECODE: the case must take the decode path (kernels/cuda/decode.cu); cases without it
 * must not (msa_cuda_decode_path says which, from host fields), so a change of the
 * criterion cannot silently move the decode cases back onto the prefill kernels. */
enum { T_DENSE = 1, T_REPLAY = 2, T_POISON = 4, T_DECODE = 8 };

typedef struct {
    const char *label;
    int batch, lq[4], lk[4], Hq, Hkv, D, DI, B, topk, init, local, causal, paged;
    msa_dtype dt, idt;
    msa_dist idist;
    double q_scale;
    int tests;
} cu_spec;

#define BF MSA_DT_BF16
#define FH MSA_DT_FP16
#define E4 MSA_DT_E4M3
#define NRM MSA_DIST_NORMAL
static const cu_spec CASES[] = {
    {"M3 prefill 2600", 1, {2600}, {2600}, 64, 4, 128, 128, 128, 16, 0, 1, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"M3 decode 1/4/16 tok paged", 3, {1, 4, 16}, {2500, 4000, 3100}, 64, 4, 128, 128, 128, 16, 0, 1, 1, 1, BF, BF, NRM, 1, T_POISON | T_REPLAY | T_DENSE | T_DECODE},
    {"gqa1 D64 B16 k4 i1 l1", 1, {300}, {300}, 4, 4, 64, 64, 16, 4, 1, 1, 1, 0, BF, BF, NRM, 1, T_POISON | T_DENSE},
    {"gqa2 D128 B32 k8 fp16", 1, {500}, {500}, 4, 2, 128, 64, 32, 8, 0, 0, 1, 0, FH, FH, NRM, 1, T_POISON | T_DENSE},
    {"gqa3 D64 B64 k3 i1 l1", 1, {700}, {700}, 6, 2, 64, 64, 64, 3, 1, 1, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"gqa8 D256 B128 k4 l1", 1, {700}, {700}, 16, 2, 256, 128, 128, 4, 0, 1, 1, 0, BF, BF, NRM, 1, T_POISON | T_DENSE},
    {"gqa16 D128 B64 k32 nvis<k", 1, {1100}, {1100}, 32, 2, 128, 128, 64, 32, 0, 1, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"k1 local1", 1, {200}, {200}, 8, 1, 64, 64, 16, 1, 0, 1, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"k1 init1", 1, {200}, {200}, 8, 1, 64, 64, 16, 1, 1, 0, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"k1 no forcing", 1, {200}, {200}, 8, 1, 64, 64, 16, 1, 0, 0, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"varlen chunked+decode paged", 3, {17, 100, 1}, {17, 300, 129}, 8, 2, 64, 64, 32, 4, 0, 1, 1, 1, BF, BF, NRM, 1, T_POISON | T_REPLAY | T_DENSE},
    {"chunked prefill k8 i1 l2", 1, {256}, {2048}, 8, 2, 128, 64, 64, 8, 1, 2, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"e4m3 index keys", 1, {600}, {600}, 8, 2, 128, 64, 64, 4, 0, 1, 1, 0, BF, E4, NRM, 1, T_POISON},
    {"fp16 index, bf16 main", 1, {400}, {400}, 8, 2, 64, 128, 32, 6, 1, 1, 1, 0, BF, FH, NRM, 1, T_POISON},
    {"small-int index ties", 1, {400}, {400}, 4, 2, 64, 32, 16, 5, 0, 1, 1, 0, BF, BF, MSA_DIST_SMALLINT, 1, T_POISON},
    {"constant index (all tie)", 1, {300}, {300}, 4, 2, 64, 32, 16, 5, 1, 1, 1, 1, BF, BF, MSA_DIST_CONST, 1, T_POISON},
    {"non-causal", 1, {100}, {700}, 8, 2, 64, 64, 64, 4, 0, 1, 0, 0, BF, BF, NRM, 1, T_POISON | T_DENSE},
    {"nvis<k everywhere", 2, {100, 7}, {100, 300}, 8, 2, 64, 64, 64, 8, 1, 1, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"D256 fp16 paged decode", 2, {16, 1}, {1000, 4000}, 16, 4, 256, 64, 64, 5, 0, 1, 1, 1, FH, FH, NRM, 1, T_POISON | T_REPLAY | T_DENSE | T_DECODE},
    {"sharp softmax (q x8)", 1, {500}, {500}, 8, 2, 128, 64, 32, 6, 0, 1, 1, 0, BF, BF, NRM, 8, T_POISON},
    {"Lk%B!=0 B128 k4 i2 l1", 1, {1000}, {1000}, 8, 2, 128, 64, 128, 4, 2, 1, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"gqa16 D64 B16 k16 i1 l2", 1, {900}, {900}, 16, 1, 64, 64, 16, 16, 1, 2, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"tiny contexts 1..129", 4, {1, 1, 1, 1}, {1, 17, 128, 129}, 8, 2, 64, 64, 16, 2, 0, 1, 1, 1, BF, BF, NRM, 1, T_POISON | T_REPLAY | T_DECODE},
    {"empty rows (Lq > Lk)", 1, {40}, {20}, 8, 2, 64, 64, 16, 2, 0, 1, 1, 0, BF, BF, NRM, 1, T_POISON | T_DENSE},
    {"M3 decode 128k paged", 1, {2}, {131072}, 64, 4, 128, 128, 128, 16, 0, 1, 1, 1, BF, BF, NRM, 1, T_REPLAY | T_DECODE},
    /* decode path (decode.cu) */
    {"decode Lq1 e4m3 i1 l2 Lk%B paged", 2, {1, 1}, {5000, 3333}, 16, 2, 128, 128, 64, 8, 1, 2, 1, 1, BF, E4, NRM, 1, T_POISON | T_REPLAY | T_DENSE | T_DECODE},
    {"decode fp16 e4m3 varlen Lq16 nvis<=k", 4, {16, 1, 3, 2}, {40, 100, 1000, 2049}, 8, 2, 64, 64, 32, 6, 1, 1, 1, 1, FH, E4, NRM, 1, T_POISON | T_REPLAY | T_DENSE | T_DECODE},
    {"decode fp16 DI32 B16 D256 Lq16", 2, {16, 4}, {777, 129}, 16, 2, 256, 32, 16, 5, 0, 2, 1, 0, FH, FH, NRM, 1, T_POISON | T_DENSE | T_DECODE},
    {"decode Lq16 > Lk (empty rows)", 2, {16, 1}, {5, 300}, 8, 2, 64, 64, 16, 2, 0, 1, 1, 0, BF, BF, NRM, 1, T_POISON | T_DENSE | T_DECODE},
    {"decode small-int index ties k7", 2, {16, 1}, {3000, 2500}, 8, 2, 64, 64, 32, 7, 2, 1, 1, 1, BF, BF, MSA_DIST_SMALLINT, 1, T_POISON | T_DECODE},
    {"M3 decode varlen batch 4 x Lq1", 4, {1, 1, 1, 1}, {9000, 1, 65, 20000}, 64, 4, 128, 128, 128, 16, 0, 1, 1, 1, BF, BF, NRM, 1, T_REPLAY | T_DECODE},
    {"HI8 x Lq16 = 128 rows: prefill kernels", 1, {16}, {3000}, 8, 8, 64, 64, 64, 4, 0, 1, 1, 0, BF, BF, NRM, 1, T_POISON},
    /* more than MSA_CU_TOPK_REGS_MAX (16384) blocks: the radix top-k of index.cu */
    {"2 rows x 300k keys B16: 18750 blocks", 1, {2}, {300000}, 4, 1, 64, 64, 16, 4, 0, 1, 1, 0, BF, BF, NRM, 1, 0},
    /* the pipelined scorer at DI 256 (fp16 MMA), 4 blocks per 128-key stage */
    {"DI256 fp16 index B32 paged", 1, {700}, {700}, 8, 2, 64, 256, 32, 6, 1, 1, 1, 1, BF, FH, NRM, 1, T_POISON},

};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

static msa_kernel g_k;
static const char *suite_kernel(void);

/* ---- the cuBLAS fp64 GPU reference (kernels/cuda/gpuref.cu), reached through the plugin ---- */
typedef int (*gpuref_fn)(const msa_problem *, const int32_t *, double *, double *, char *, size_t);

typedef struct {
    msa_problem p;
    void *buf[8];
} dev_case;

static void *dev_put(const void *src, size_t n, void **slot)
{
    *slot = g_k.be->dev_alloc(g_k.ctx, n ? n : 4);
    if (*slot && n && g_k.be->copy_to_dev(g_k.ctx, *slot, src, n)) return NULL;
    return *slot;
}

/* The case's problem description, host fields only (no device pointers). */
static void host_problem(const msa_case *c, msa_problem *p)
{
    memset(p, 0, sizeof *p);
    p->abi_version = MSA_ABI_VERSION; p->batch = c->batch; p->total_q = c->Tq; p->kv_rows = c->Tk;
    p->Hq = c->Hq; p->Hkv = c->Hkv; p->D = c->D; p->HI = c->HI; p->DI = c->DI;
    p->block_size = c->block_size; p->topk = c->topk; p->init_blocks = c->init_blocks;
    p->local_blocks = c->local_blocks; p->causal = c->causal; p->nblk = msa_case_max_blocks(c);
    p->max_blocks = c->page_table ? c->max_blocks : 0; p->num_pages = c->page_table ? c->num_pages : 0;
    p->softmax_scale_f64 = c->softmax_scale; p->softmax_scale = (float)c->softmax_scale;
    p->index_scale_f64 = c->index_scale; p->index_scale = (float)c->index_scale;
    p->dtype = c->dtype; p->index_dtype = c->index_dtype;
    p->cu_seqlens_q_host = c->cu_q; p->cu_seqlens_k_host = c->cu_k; p->page_table_host = c->page_table;
}

/* The case's inputs in device memory (what the harness does privately for a run). */
static int dev_case_make(const msa_case *c, dev_case *d)
{
    memset(d, 0, sizeof *d);
    msa_problem *p = &d->p;
    size_t es = msa_dtype_size(c->dtype), ei = msa_dtype_size(c->index_dtype);
    host_problem(c, p);
    int ok = dev_put(c->cu_q, sizeof(int32_t) * (c->batch + 1), &d->buf[0]) &&
             dev_put(c->cu_k, sizeof(int32_t) * (c->batch + 1), &d->buf[1]) &&
             dev_put(c->q, (size_t)c->Tq * c->Hq * c->D * es, &d->buf[2]) &&
             dev_put(c->k, (size_t)c->Tk * c->Hkv * c->D * es, &d->buf[3]) &&
             dev_put(c->v, (size_t)c->Tk * c->Hkv * c->D * es, &d->buf[4]) &&
             dev_put(c->index_q, (size_t)c->Tq * c->HI * c->DI * ei, &d->buf[5]) &&
             dev_put(c->index_k, (size_t)c->Tk * c->DI * ei, &d->buf[6]) &&
             (!c->page_table || dev_put(c->page_table, sizeof(int32_t) * c->batch * c->max_blocks, &d->buf[7]));
    p->cu_seqlens_q = d->buf[0]; p->cu_seqlens_k = d->buf[1]; p->q = d->buf[2]; p->k = d->buf[3];
    p->v = d->buf[4]; p->index_q = d->buf[5]; p->index_k = d->buf[6]; p->page_table = d->buf[7];
    return ok ? 0 : -1;
}

static void dev_case_free(dev_case *d)
{
    for (int i = 0; i < 8; i++) if (d->buf[i]) g_k.be->dev_free(g_k.ctx, d->buf[i]);
}

/* GPU reference over topk (host, or NULL: dense) into out/lse (host doubles). */
static int gpuref_run(const msa_case *c, const int32_t *topk, double *out, double *lse)
{
    gpuref_fn fn = g_k.dl ? (gpuref_fn)dlsym(g_k.dl, "msa_cuda_gpuref") : NULL;
    if (!fn) { printf("\n    gpuref: msa_cuda_gpuref not exported by the plugin\n"); return -1; }
    dev_case d;
    void *tk = NULL;
    int rc = dev_case_make(c, &d);
    if (!rc && topk) rc = dev_put(topk, sizeof(int32_t) * c->HI * c->Tq * c->topk, &tk) ? 0 : -1;
    char err[256] = "";
    if (!rc) rc = fn(&d.p, tk, out, lse, err, sizeof err);
    if (rc) printf("\n    gpuref: rc %d %s\n", rc, err);
    if (tk) g_k.be->dev_free(g_k.ctx, tk);
    dev_case_free(&d);
    return rc;
}

/* Which path the backend takes for the case: 1 decode (decode.cu), 0 prefill kernels,
 * -1 unknown (symbol missing). */
typedef int (*decode_path_fn)(const msa_problem *);
static int decode_path(const msa_case *c)
{
    decode_path_fn fn = g_k.dl ? (decode_path_fn)dlsym(g_k.dl, "msa_cuda_decode_path") : NULL;
    if (!fn) return -1;
    msa_problem p;
    host_problem(c, &p);
    return fn(&p);
}

/* The path check: a case marked T_DECODE must take the decode path and no other case
 * may ($MSA_CUDA_DECODE=0 turns the decode path off on purpose: then only reported). */
static void check_path(const msa_case *c, int want_decode)
{
    int got = decode_path(c);
    const char *env = getenv("MSA_CUDA_DECODE");
    int off = env && *env == '0';
    printf("    path: %s (expected %s)%s\n", got < 0 ? "unknown" : got ? "decode" : "prefill kernels",
           want_decode ? "decode" : "prefill kernels", off ? " [MSA_CUDA_DECODE=0]" : "");
    if (!off) CU_ASSERT_EQUAL(got, want_decode ? 1 : 0);
}

static int make_case(int i, msa_case *c)
{
    const cu_spec *s = &CASES[i];
    msa_case_params p;
    memset(&p, 0, sizeof p);
    p.batch = s->batch; p.lq = s->lq; p.lk = s->lk; p.Hq = s->Hq; p.Hkv = s->Hkv; p.D = s->D;
    p.DI = s->DI; p.block_size = s->B; p.topk = s->topk; p.init_blocks = s->init;
    p.local_blocks = s->local; p.dtype = s->dt; p.index_dtype = s->idt; p.causal = s->causal;
    p.paged = s->paged; p.dist = NRM; p.index_dist = s->idist; p.q_scale = s->q_scale;
    p.seed = CU_SEED + (uint64_t)i;
    msa_err e = {{0}};
    int rc = msa_case_generate(&p, c, &e);
    if (rc) printf("\n  cuda: case %s: generate: %s\n", s->label, e.msg);
    return rc;
}

static msa_ref_mode ref_mode(const msa_case *c)
{
    double keys = 0;
    for (int b = 0; b < c->batch; b++) keys = fmax(keys, msa_case_lk(c, b));
    keys = fmin(keys, (double)c->topk * c->block_size);
    return (double)c->Tq * c->Hq * c->D * keys > CU_EXACT_WORK ? MSA_REF_FAST : MSA_REF_EXACT;
}

static size_t out_bytes(const msa_case *c) { return (size_t)c->Tq * c->Hq * c->D * 2; }

static void print_verdict(const char *what, const msa_verdict *v)
{
    printf("    %-10s %-13s worst %.3g lse %.3g checked %ld failed %ld %s\n", what,
           msa_disposition_name(v->disp), v->worst_ratio, v->worst_lse_ratio, v->checked, v->failed,
           v->disp == MSA_V_PASSED ? "" : v->detail);
}

/* forward judged; optional dense, poisoned attend and replay on the same case */
static void run_case(int i)
{
    const cu_spec *s = &CASES[i];
    msa_case c;
    if (make_case(i, &c)) { CU_FAIL("case generation"); return; }
    struct timespec t_start, t_end;
    clock_gettime(CLOCK_MONOTONIC, &t_start);
    msa_ref_mode mode = ref_mode(&c);
    printf("\n  cuda case %d '%s' seed %u ref %s\n", i, s->label, CU_SEED + i, mode == MSA_REF_EXACT ? "exact" : "fast");
    check_path(&c, (s->tests & T_DECODE) != 0);
    msa_err e = {{0}};
    msa_run_opts o = {0, 0};
    msa_kernel_result r, r2;
    memset(&r, 0, sizeof r);
    memset(&r2, 0, sizeof r2);
    int rc = msa_kernel_run(&g_k, &c, MSA_RUN_FORWARD, NULL, &o, &r, &e);
    if (rc) printf("    forward: %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(r.guard_ok);
    msa_verdict sel, att;
    rc = msa_judge_forward(&c, &g_k.be->arith, r.topk, r.out, r.lse, mode, &sel, &att, &e);
    CU_ASSERT_EQUAL(rc, 0);
    print_verdict("selection", &sel);
    print_verdict("forward", &att);
    CU_ASSERT_EQUAL(sel.disp, MSA_V_PASSED);
    CU_ASSERT_EQUAL(att.disp, MSA_V_PASSED);
    if (s->tests & T_POISON) { /* attend over the kernel's own selection, unread rows NaN */
        o.poison = 1;
        rc = msa_kernel_run(&g_k, &c, MSA_RUN_ATTEND, r.topk, &o, &r2, &e);
        CU_ASSERT_EQUAL(rc, 0);
        if (!rc) {
            CU_ASSERT(r2.guard_ok);
            int same = !memcmp(r.out_raw, r2.out_raw, out_bytes(&c)) &&
                       !memcmp(r.lse, r2.lse, sizeof(float) * c.Tq * c.Hq);
            printf("    poisoned attend: %s\n", same ? "bitwise equal to forward" : "DIFFERS from forward");
            CU_ASSERT(same);
        }
        msa_kernel_result_free(&r2);
        o.poison = 0;
    }
    if (s->tests & T_REPLAY) {
        o.replays = 100;
        rc = msa_kernel_run(&g_k, &c, MSA_RUN_REPLAY, NULL, &o, &r2, &e);
        if (rc) printf("    replay: %s\n", e.msg);
        CU_ASSERT_EQUAL(rc, 0);
        if (!rc) {
            size_t ntk = (size_t)c.HI * c.Tq * c.topk * sizeof(int32_t);
            int same = !memcmp(r.topk, r2.topk, ntk) && !memcmp(r.out_raw, r2.out_raw, out_bytes(&c)) &&
                       !memcmp(r.lse, r2.lse, sizeof(float) * c.Tq * c.Hq);
            printf("    graph replay x100: %s\n", same ? "bitwise equal to forward" : "DIFFERS from forward");
            CU_ASSERT(same);
        }
        msa_kernel_result_free(&r2);
    }
    if (s->tests & T_DENSE) {
        rc = msa_kernel_run(&g_k, &c, MSA_RUN_DENSE, NULL, &o, &r2, &e);
        CU_ASSERT_EQUAL(rc, 0);
        size_t n = (size_t)c.Tq * c.Hq;
        double *ro = calloc(n * c.D + 1, sizeof(double)), *rl = calloc(n + 1, sizeof(double));
        if (!rc && ro && rl && !msa_ref_attend(&c, mode, NULL, ro, rl, &e)) {
            msa_verdict dv;
            CU_ASSERT_EQUAL(msa_judge_attention(&c, &g_k.be->arith, NULL, r2.out, r2.lse, ro, rl, &dv, &e), 0);
            print_verdict("dense", &dv);
            CU_ASSERT_EQUAL(dv.disp, MSA_V_PASSED);
        } else {
            CU_FAIL("dense run or dense reference");
        }
        free(ro);
        free(rl);
        msa_kernel_result_free(&r2);
    }
    msa_kernel_result_free(&r);
    msa_case_free(&c);
    clock_gettime(CLOCK_MONOTONIC, &t_end);
    printf("    (%.1f s wall)\n", (double)(t_end.tv_sec - t_start.tv_sec) + 1e-9 * (double)(t_end.tv_nsec - t_start.tv_nsec));
}

#define CASE_LIST(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) \
    X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23) X(24) X(25) X(26) X(27) X(28) \
    X(29) X(30) X(31) X(32) X(33)
#define CASE_FN(n) static void test_case_##n(void) { run_case(n); }
CASE_LIST(CASE_FN)
#undef CASE_FN

/* Each broken variant, on a case where its bug shows, must be rejected by the oracle. */
static const struct { const char *variant; int case_idx; } MUTANTS[] = {
    {"diag-drop", 2}, {"noncausal", 2}, {"shared-selection", 4}, {"merge-nan", 23},
    {"unmasked-tail", 2}, {"minus-one-index", 2},
    /* the same bugs on the decode path (decode.cu) */
    {"diag-drop", 26}, {"noncausal", 26}, {"shared-selection", 25}, {"merge-nan", 28},
    {"unmasked-tail", 26}, {"minus-one-index", 26},
};

static void test_mutants(void)
{
    for (size_t m = 0; m < sizeof MUTANTS / sizeof MUTANTS[0]; m++) {
        char name[64];
        if (!strcmp(suite_kernel(), "cuda")) snprintf(name, sizeof name, "cuda:%s", MUTANTS[m].variant);
        else snprintf(name, sizeof name, "%s+%s", suite_kernel(), MUTANTS[m].variant);
        msa_kernel mk;
        msa_err e = {{0}};
        int rc = msa_kernel_open(name, &mk, &e);
        if (rc) printf("\n  %s: %s\n", name, e.msg);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        msa_case c;
        CU_ASSERT_EQUAL_FATAL(make_case(MUTANTS[m].case_idx, &c), 0);
        msa_kernel_result r;
        memset(&r, 0, sizeof r);
        msa_run_opts o = {0, 0};
        msa_verdict sel, att;
        rc = msa_kernel_run(&mk, &c, MSA_RUN_FORWARD, NULL, &o, &r, &e);
        int killed = rc != 0;
        if (!rc && !msa_judge_forward(&c, &mk.be->arith, r.topk, r.out, r.lse, ref_mode(&c), &sel, &att, &e))
            killed = sel.disp != MSA_V_PASSED || att.disp != MSA_V_PASSED;
        printf("\n  mutant %-18s on '%s' (seed %u): %s (selection %s, attention %s)", name,
               CASES[MUTANTS[m].case_idx].label, CU_SEED + MUTANTS[m].case_idx, killed ? "killed" : "SURVIVED",
               rc ? "-" : msa_disposition_name(sel.disp), rc ? "-" : msa_disposition_name(att.disp));
        CU_ASSERT(killed);
        msa_kernel_result_free(&r);
        msa_case_free(&c);
        msa_kernel_close(&mk);
    }
}

/* The GPU reference agrees with the exact CPU reference (selection and dense) on cases
 * both can run: its derived error is ~1e-9 (kernels/cuda/gpuref.cu); 1e-8 leaves 10x. */
#define GPUREF_TOL 1e-8
static const int GPUREF_CASES[] = {2, 3, 10, 23};

static void max_diff(const msa_case *c, const double *a, const double *al, const double *b, const double *bl,
                     double *dout, double *dlse)
{
    size_t n = (size_t)c->Tq * c->Hq;
    *dout = *dlse = 0;
    for (size_t i = 0; i < n * c->D; i++) *dout = fmax(*dout, fabs(a[i] - b[i]));
    for (size_t i = 0; i < n; i++) {
        if (isinf(al[i]) || isinf(bl[i])) *dlse = fmax(*dlse, al[i] == bl[i] ? 0 : INFINITY);
        else *dlse = fmax(*dlse, fabs(al[i] - bl[i]));
    }
}

static void test_gpuref_vs_exact(void)
{
    for (size_t k = 0; k < sizeof GPUREF_CASES / sizeof GPUREF_CASES[0]; k++) {
        int i = GPUREF_CASES[k];
        msa_case c;
        CU_ASSERT_EQUAL_FATAL(make_case(i, &c), 0);
        msa_err e = {{0}};
        msa_run_opts o = {0, 0};
        msa_kernel_result r;
        memset(&r, 0, sizeof r);
        CU_ASSERT_EQUAL_FATAL(msa_kernel_run(&g_k, &c, MSA_RUN_FORWARD, NULL, &o, &r, &e), 0);
        size_t n = (size_t)c.Tq * c.Hq;
        double *eo = calloc(n * c.D + 1, 8), *el = calloc(n + 1, 8), *go = calloc(n * c.D + 1, 8), *gl = calloc(n + 1, 8);
        for (int dense = 0; dense < 2; dense++) {
            const int32_t *sel = dense ? NULL : r.topk;
            CU_ASSERT_EQUAL(msa_ref_attend(&c, MSA_REF_EXACT, sel, eo, el, &e), 0);
            int rc = gpuref_run(&c, sel, go, gl);
            CU_ASSERT_EQUAL(rc, 0);
            double dout = INFINITY, dlse = INFINITY;
            if (!rc) max_diff(&c, go, gl, eo, el, &dout, &dlse);
            printf("\n  gpuref vs exact reference, case %d '%s' (seed %u) %s: max |out diff| %.3g, max |lse diff| %.3g",
                   i, CASES[i].label, CU_SEED + i, dense ? "dense" : "kernel's selection", dout, dlse);
            CU_ASSERT(dout <= GPUREF_TOL && dlse <= GPUREF_TOL);
        }
        free(eo); free(el); free(go); free(gl);
        msa_kernel_result_free(&r);
        msa_case_free(&c);
    }
}

/* Long contexts: selection judged against the fast CPU reference, attention (sparse and
 * dense) against the GPU reference (the exact CPU reference would take many minutes).
 * M3 prefill at 8k (prefill kernels) and M3 decode at 64k+ / 200k (decode path). */
static void long_case(const char *label, int lq, int lk, msa_dtype idt, int paged, unsigned seed, int want_decode)
{
    msa_case_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1; p.lq = &lq; p.lk = &lk; p.Hq = 64; p.Hkv = 4; p.D = 128; p.DI = 128; p.block_size = 128;
    p.topk = 16; p.local_blocks = 1; p.dtype = BF; p.index_dtype = idt; p.causal = 1; p.dist = NRM;
    p.index_dist = NRM; p.q_scale = 1; p.seed = seed; p.paged = paged;
    msa_case c;
    msa_err e = {{0}};
    CU_ASSERT_EQUAL_FATAL(msa_case_generate(&p, &c, &e), 0);
    printf("\n  %s (seed %u), attention judged against the GPU reference\n", label, seed);
    check_path(&c, want_decode);
    msa_run_opts o = {0, 0};
    msa_kernel_result r, rd;
    memset(&r, 0, sizeof r);
    memset(&rd, 0, sizeof rd);
    CU_ASSERT_EQUAL_FATAL(msa_kernel_run(&g_k, &c, MSA_RUN_FORWARD, NULL, &o, &r, &e), 0);
    CU_ASSERT_EQUAL_FATAL(msa_kernel_run(&g_k, &c, MSA_RUN_DENSE, NULL, &o, &rd, &e), 0);
    size_t n = (size_t)c.Tq * c.Hq, nb = (size_t)msa_case_max_blocks(&c);
    double *bs = calloc((size_t)c.HI * c.Tq * nb + 1, 8), *go = calloc(n * c.D + 1, 8), *gl = calloc(n + 1, 8);
    msa_verdict v;
    CU_ASSERT_EQUAL(msa_ref_select(&c, MSA_REF_FAST, NULL, bs, &e), 0);
    CU_ASSERT_EQUAL(msa_judge_selection(&c, &g_k.be->arith, r.topk, bs, &v, &e), 0);
    print_verdict("selection", &v);
    CU_ASSERT_EQUAL(v.disp, MSA_V_PASSED);
    for (int dense = 0; dense < 2; dense++) {
        msa_kernel_result *x = dense ? &rd : &r;
        int rc = gpuref_run(&c, dense ? NULL : r.topk, go, gl);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) continue;
        CU_ASSERT_EQUAL(msa_judge_attention(&c, &g_k.be->arith, dense ? NULL : r.topk, x->out, x->lse, go, gl, &v, &e), 0);
        print_verdict(dense ? "dense" : "forward", &v);
        CU_ASSERT_EQUAL(v.disp, MSA_V_PASSED);
    }
    free(bs); free(go); free(gl);
    msa_kernel_result_free(&r);
    msa_kernel_result_free(&rd);
    msa_case_free(&c);
}

static void test_long_context(void)
{
    long_case("M3 prefill 8k", 8192, 8192, BF, 0, CU_SEED + 1000, 0);
}

/* 16 speculative tokens, Lk not a multiple of B, e4m3 index keys, shuffled pages */
static void test_long_decode_e4m3(void)
{
    long_case("M3 decode 16 tok at 65636 keys, e4m3 index, paged", 16, 65536 + 100, E4, 1, CU_SEED + 1001, 1);
}

static void test_long_decode_bf16(void)
{
    long_case("M3 decode 1 tok at 200003 keys, bf16 index", 1, 200003, BF, 0, CU_SEED + 1002, 1);
}

/* ---- the benchmark's sizes (bench/bench_gpu.cu), judged by the oracle on sampled rows ----
 * Issue 8 asks that the oracle pass every kernel at every size benchmarked, up to 1M
 * tokens.  msa_case_generate (tens of ns per element, one thread) and the harness (double
 * copies of every output) do not scale to a 1M-token prefill (8.6e9 query elements), so
 * these cases are built here: the benchmark's data (a hashed sum of four uniforms, about
 * N(0,1), rounded to bf16 or e4m3; never zeros), filled on every core, the M3 layer shape,
 * packed KV; the backend's forward runs on the whole problem through the ABI; then only
 * the judged rows come back: per sequence its last rows (and, for prefill, rows in the
 * middle and the first two, where nvis <= k), cut out with fz_subcase together with each
 * run's key prefix.  Selection is judged against the fast CPU reference's block scores,
 * attention against the cuBLAS fp64 GPU reference over the kernel's own selection, as in
 * long_case above.  Expected values come from the references only. */
#define BIG_MAX_THREADS 64

typedef struct {
    void *x;
    size_t lo, hi;
    uint64_t seed;
    int e4m3;
} big_fill_job;

/* bench_gpu.cu's fill_bf16 / fill_e4m3 value for element i (scale 1) */
static double big_value(size_t i, uint64_t seed)
{
    uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 29;
    double u = ((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48)) / 65536.0 - 2.0;
    return u * 1.7320508;
}

static void *big_fill_worker(void *arg)
{
    big_fill_job *j = arg;
    for (size_t i = j->lo; i < j->hi; i++) {
        double x = big_value(i, j->seed);
        if (j->e4m3) ((uint8_t *)j->x)[i] = msa_double_to_e4m3(x, 1);
        else {
            float f = (float)x; /* bf16 by round-to-nearest-even on the float's bits (finite values) */
            uint32_t u;
            memcpy(&u, &f, 4);
            ((uint16_t *)j->x)[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
    }
    return NULL;
}

static void big_fill(void *x, size_t n, uint64_t seed, int e4m3)
{
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = nc < 1 ? 1 : nc > BIG_MAX_THREADS ? BIG_MAX_THREADS : (int)nc, ok[BIG_MAX_THREADS] = {0};
    pthread_t th[BIG_MAX_THREADS];
    big_fill_job jb[BIG_MAX_THREADS];
    for (int i = 0; i < nt; i++) jb[i] = (big_fill_job){x, n * i / nt, n * (i + 1) / nt, seed, e4m3};
    for (int i = 1; i < nt; i++) ok[i] = pthread_create(&th[i], NULL, big_fill_worker, &jb[i]) == 0;
    big_fill_worker(&jb[0]);
    for (int i = 1; i < nt; i++) /* a thread that did not start: its share runs here */
        ok[i] ? (void)pthread_join(th[i], NULL) : (void)big_fill_worker(&jb[i]);
}

/* nb sequences of lq queries over lk keys each, M3 layer shape, packed KV. */
static int big_case(msa_case *c, int nb, int lq, int lk, msa_dtype idt, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->dtype = BF; c->index_dtype = idt; c->block_size = 128; c->topk = 16; c->local_blocks = 1;
    c->causal = 1; c->softmax_scale = 1 / sqrt(128.0); c->softmax_scale_is_default = 1;
    c->index_scale = 1 / sqrt(128.0); c->index_scale_is_default = 1;
    c->batch = nb; c->Tq = nb * lq; c->Tk = nb * lk; c->Hq = 64; c->Hkv = 4; c->D = 128; c->HI = 4; c->DI = 128;
    c->cu_q = malloc(sizeof(int32_t) * (nb + 1));
    c->cu_k = malloc(sizeof(int32_t) * (nb + 1));
    size_t nq = (size_t)c->Tq * 64 * 128, nk = (size_t)c->Tk * 4 * 128, niq = (size_t)c->Tq * 4 * 128,
           nik = (size_t)c->Tk * 128, ei = idt == E4 ? 1 : 2;
    c->q = malloc(nq * 2); c->k = malloc(nk * 2); c->v = malloc(nk * 2);
    c->index_q = malloc(niq * ei); c->index_k = malloc(nik * ei);
    if (!c->cu_q || !c->cu_k || !c->q || !c->k || !c->v || !c->index_q || !c->index_k) return -1;
    for (int b = 0; b <= nb; b++) c->cu_q[b] = b * lq, c->cu_k[b] = b * lk;
    big_fill(c->q, nq, seed + 1, 0);
    big_fill(c->k, nk, seed + 2, 0);
    big_fill(c->v, nk, seed + 3, 0);
    big_fill(c->index_q, niq, seed + 4, idt == E4);
    big_fill(c->index_k, nik, seed + 5, idt == E4);
    snprintf(c->label, sizeof c->label, "bench-size seed=%llu", (unsigned long long)seed);
    return 0;
}

/* The judged rows: for each of the first and last sequence, its last min(lq, 4) rows;
 * for prefill also 4 rows in the middle and the first 2 (nvis <= k). */
static void big_view(const msa_case *c, fz_view *v)
{
    fz_view_identity(c, v);
    int n = 0;
    for (int b = 0; b < c->batch; b++) {
        if (b != 0 && b != c->batch - 1) continue;
        int lq = msa_case_lq(c, b), lk = msa_case_lk(c, b);
        int runs[3][2] = {{lq - (lq < 4 ? lq : 4), lq < 4 ? lq : 4}, {lq / 2 - 2, 4}, {0, 2}};
        for (int r = 2; r >= 0; r--) { /* in row order */
            if (r > 0 && lq < 64) continue;
            fz_seqsel *q = &v->seq[n++];
            q->src_b = b, q->q0 = runs[r][0], q->nq = runs[r][1], q->k0 = 0;
            q->lk = lk - lq + q->q0 + q->nq; /* the run's last row is bottom-right */
        }
    }
    v->nseq = n;
}

static double big_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void big_size_case(const char *label, int nb, int lq, int lk, msa_dtype idt, int prefill_kernels)
{
    const msa_backend *be = g_k.be;
    uint64_t seed = 7000ull * lk + 31;
    double t0 = big_now();
    msa_case c, sub;
    msa_err e = {{0}};
    memset(&sub, 0, sizeof sub);
    printf("\n  bench size %s: %d x (%d queries over %d keys), %s index keys, M3 shape (seed %llu)\n", label, nb, lq,
           lk, idt == E4 ? "e4m3" : "bf16", (unsigned long long)seed);
    if (big_case(&c, nb, lq, lk, idt, seed)) {
        CU_FAIL("bench-size case: out of memory");
        msa_case_free(&c);
        return;
    }
    if (prefill_kernels) setenv("MSA_CUDA_DECODE", "0", 1);
    check_path(&c, lq <= 16 && !prefill_kernels);
    dev_case d;
    void *dtk = NULL, *dout = NULL, *dlse = NULL;
    size_t nsel = (size_t)c.HI * c.Tq * c.topk, nout = (size_t)c.Tq * c.Hq * c.D, nl = (size_t)c.Tq * c.Hq;
    int rc = dev_case_make(&c, &d);
    if (!rc) {
        dtk = be->dev_alloc(g_k.ctx, nsel * 4); dout = be->dev_alloc(g_k.ctx, nout * 2); dlse = be->dev_alloc(g_k.ctx, nl * 4);
        rc = dtk && dout && dlse ? 0 : -1;
    }
    double t1 = big_now();
    if (!rc) rc = be->forward(g_k.ctx, &d.p, dtk, dout, dlse);
    if (!rc) rc = be->sync(g_k.ctx);
    double t2 = big_now();
    if (prefill_kernels) unsetenv("MSA_CUDA_DECODE");
    if (rc) printf("    forward failed: %s\n", be->last_error(g_k.ctx));
    CU_ASSERT_EQUAL(rc, 0);
    fz_view v;
    big_view(&c, &v);
    int *row_map = malloc(sizeof(int) * (size_t)(c.Tq + 1));
    if (!rc && row_map && fz_subcase(&c, &v, &sub, row_map, &e)) {
        printf("    subcase: %s\n", e.msg);
        rc = -1;
    }
    CU_ASSERT_EQUAL(rc, 0);
    int32_t *tk = NULL;
    double *out = NULL, *go = NULL, *gl = NULL, *bs = NULL;
    float *lse = NULL;
    uint16_t *row = malloc((size_t)c.Hq * c.D * 2);
    if (!rc) {
        size_t st = (size_t)sub.Tq, nb_sub = (size_t)msa_case_max_blocks(&sub);
        tk = malloc(sizeof(int32_t) * sub.HI * st * sub.topk);
        out = malloc(sizeof(double) * st * sub.Hq * sub.D);
        lse = malloc(sizeof(float) * st * sub.Hq);
        go = calloc(st * sub.Hq * sub.D + 1, 8); gl = calloc(st * sub.Hq + 1, 8);
        bs = calloc((size_t)sub.HI * st * nb_sub + 1, 8);
        rc = tk && out && lse && go && gl && bs && row ? 0 : -1;
        for (size_t t = 0; !rc && t < st; t++) { /* only the judged rows come back */
            size_t ft = (size_t)row_map[t];
            for (int g = 0; !rc && g < c.HI; g++)
                rc = be->copy_to_host(g_k.ctx, tk + ((size_t)g * st + t) * c.topk,
                                      (int32_t *)dtk + ((size_t)g * c.Tq + ft) * c.topk, sizeof(int32_t) * c.topk);
            if (!rc) rc = be->copy_to_host(g_k.ctx, row, (uint16_t *)dout + ft * c.Hq * c.D, (size_t)c.Hq * c.D * 2);
            if (!rc) rc = be->copy_to_host(g_k.ctx, lse + t * c.Hq, (float *)dlse + ft * c.Hq, sizeof(float) * c.Hq);
            for (int i = 0; !rc && i < c.Hq * c.D; i++) out[t * c.Hq * c.D + i] = msa_bf16_to_double(row[i]);
        }
    }
    if (dtk) be->dev_free(g_k.ctx, dtk);
    if (dout) be->dev_free(g_k.ctx, dout);
    if (dlse) be->dev_free(g_k.ctx, dlse);
    dev_case_free(&d);
    msa_case_free(&c); /* the judged rows live on in sub */
    CU_ASSERT_EQUAL(rc, 0);
    if (!rc) {
        msa_verdict vs, va;
        CU_ASSERT_EQUAL(msa_ref_select(&sub, MSA_REF_FAST, NULL, bs, &e), 0);
        CU_ASSERT_EQUAL(msa_judge_selection(&sub, &be->arith, tk, bs, &vs, &e), 0);
        print_verdict("selection", &vs);
        CU_ASSERT_EQUAL(vs.disp, MSA_V_PASSED);
        int grc = gpuref_run(&sub, tk, go, gl);
        CU_ASSERT_EQUAL(grc, 0);
        if (!grc) {
            CU_ASSERT_EQUAL(msa_judge_attention(&sub, &be->arith, tk, out, lse, go, gl, &va, &e), 0);
            print_verdict("forward", &va);
            CU_ASSERT_EQUAL(va.disp, MSA_V_PASSED);
        }
    }
    printf("    %d rows judged; inputs %.1f s, forward %.2f s, judging %.1f s\n", sub.Tq, t1 - t0, t2 - t1,
           big_now() - t2);
    free(row_map); free(row); free(tk); free(out); free(lse); free(go); free(gl); free(bs);
    msa_case_free(&sub);
}

#define BIG_LIST(X)                                                          \
    X(0, "prefill 32k", 1, 32768, 32768, BF, 0)                              \
    X(1, "prefill 128k", 1, 131072, 131072, BF, 0)                           \
    X(2, "prefill 1M", 1, 1 << 20, 1 << 20, BF, 0)                           \
    X(3, "decode 32k", 1, 1, 32768, BF, 0)                                   \
    X(4, "decode 128k", 1, 1, 131072, BF, 0)                                 \
    X(5, "decode 1M", 1, 1, 1 << 20, BF, 0)                                  \
    X(6, "decode 1M e4m3 index", 1, 1, 1 << 20, E4, 0)                       \
    X(7, "decode 1M, 16 tokens", 1, 16, 1 << 20, BF, 0)                      \
    X(8, "decode 1M, batch 8", 8, 1, 1 << 20, BF, 0)                         \
    X(9, "decode 1M on the prefill kernels", 1, 1, 1 << 20, BF, 1)           \
    X(10, "decode 128k e4m3 index", 1, 1, 131072, E4, 0)                     \
    X(11, "decode 128k, 16 tokens", 1, 16, 131072, BF, 0)                    \
    X(12, "decode 128k, batch 8", 8, 1, 131072, BF, 0)                         \
    X(13, "prefill 8k", 1, 8192, 8192, BF, 0)
#define BIG_FN(n, label, nb, lq, lk, idt, pk) \
    static void test_big_##n(void) { big_size_case(label, nb, lq, lk, idt, pk); }
BIG_LIST(BIG_FN)
#undef BIG_FN

static int cuda_clean(void)
{
    msa_kernel_close(&g_k);
    return 0;
}

/* $MSA_CUDA_KERNEL: the CUDA kernel the suite judges (default "cuda"; a plugin variant
 * such as "cuda:diag-drop" shows the suite failing). */
static const char *suite_kernel(void)
{
    const char *k = getenv("MSA_CUDA_KERNEL");
    return k && *k ? k : "cuda";
}

int msa_suite_cuda(void)
{
    msa_err e = {{0}};
    if (msa_kernel_open(suite_kernel(), &g_k, &e)) {
        printf("cuda suite: no GPU (NotVerified): %s\n", e.msg);
        return 0;
    }
    const char *dev = g_k.be->device_name ? g_k.be->device_name(g_k.ctx) : "?";
    printf("cuda suite: %s on %s\n", g_k.be->name, dev);
    CU_pSuite s = CU_add_suite("cuda", NULL, cuda_clean);
    if (!s) return -1;
    char name[128];
    /* MSA_CUDA_QUICK=1: leave out case 0 (M3 prefill 2600, ~3 min of CPU reference);
     * MSA_CUDA_ONLY=text: register only the tests whose name contains text;
     * MSA_CUDA_SKIP=text: leave out the tests whose name contains text */
    const char *quick = getenv("MSA_CUDA_QUICK"), *only = getenv("MSA_CUDA_ONLY"), *skip = getenv("MSA_CUDA_SKIP");
    int q = quick && *quick == '1';
    if (q) printf("cuda suite: MSA_CUDA_QUICK=1: case 0 (%s) not registered\n", CASES[0].label);
    if (only && *only) printf("cuda suite: MSA_CUDA_ONLY=%s: only tests whose name contains it\n", only);
#define ADD(nm, fn) \
    if ((!only || !*only || strstr(nm, only)) && !(skip && *skip && strstr(nm, skip)) && !CU_add_test(s, nm, fn)) return -1;
    ADD("mutant variants rejected", test_mutants)
    ADD("GPU reference = exact reference", test_gpuref_vs_exact)
#define CASE_ADD(n)                                            \
    snprintf(name, sizeof name, "oracle: %s", CASES[n].label); \
    if (!(n == 0 && q)) { ADD(name, test_case_##n) }
    CASE_LIST(CASE_ADD)
#undef CASE_ADD
    ADD("M3 8k judged with the GPU reference", test_long_context)
    ADD("M3 decode 64k e4m3 judged with the GPU reference", test_long_decode_e4m3)
    ADD("M3 decode 200k judged with the GPU reference", test_long_decode_bf16)
#define BIG_ADD(n, label, nb, lq, lk, idt, pk)                 \
    snprintf(name, sizeof name, "bench size: %s", label);      \
    ADD(name, test_big_##n)
    BIG_LIST(BIG_ADD)
#undef BIG_ADD
#undef ADD
    return 0;
}
