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
 * M3 at 8k tokens.  Expected values come from the references, never from the kernels. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <time.h>

#include "../common/case.h"
#include "../kernels/harness.h"
#include "../oracle/oracle.h"
#include "../reference/ref.h"

#define CU_SEED 90210u
/* cases whose reference work (Tq * Hq * D * keys per row) exceeds this use the fast
 * (double, compensated) reference mode: exact MPFR mode would take minutes */
#define CU_EXACT_WORK 2e7

enum { T_DENSE = 1, T_REPLAY = 2, T_POISON = 4 };

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
    {"M3 decode 1/4/16 tok paged", 3, {1, 4, 16}, {2500, 4000, 3100}, 64, 4, 128, 128, 128, 16, 0, 1, 1, 1, BF, BF, NRM, 1, T_POISON | T_REPLAY | T_DENSE},
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
    {"D256 fp16 paged decode", 2, {16, 1}, {1000, 4000}, 16, 4, 256, 64, 64, 5, 0, 1, 1, 1, FH, FH, NRM, 1, T_POISON | T_REPLAY | T_DENSE},
    {"sharp softmax (q x8)", 1, {500}, {500}, 8, 2, 128, 64, 32, 6, 0, 1, 1, 0, BF, BF, NRM, 8, T_POISON},
    {"Lk%B!=0 B128 k4 i2 l1", 1, {1000}, {1000}, 8, 2, 128, 64, 128, 4, 2, 1, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"gqa16 D64 B16 k16 i1 l2", 1, {900}, {900}, 16, 1, 64, 64, 16, 16, 1, 2, 1, 0, BF, BF, NRM, 1, T_POISON},
    {"tiny contexts 1..129", 4, {1, 1, 1, 1}, {1, 17, 128, 129}, 8, 2, 64, 64, 16, 2, 0, 1, 1, 1, BF, BF, NRM, 1, T_POISON | T_REPLAY},
    {"empty rows (Lq > Lk)", 1, {40}, {20}, 8, 2, 64, 64, 16, 2, 0, 1, 1, 0, BF, BF, NRM, 1, T_POISON | T_DENSE},
    {"M3 decode 128k paged", 1, {2}, {131072}, 64, 4, 128, 128, 128, 16, 0, 1, 1, 1, BF, BF, NRM, 1, T_REPLAY},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

static msa_kernel g_k;

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

/* The case's inputs in device memory (what the harness does privately for a run). */
static int dev_case_make(const msa_case *c, dev_case *d)
{
    memset(d, 0, sizeof *d);
    msa_problem *p = &d->p;
    size_t es = msa_dtype_size(c->dtype), ei = msa_dtype_size(c->index_dtype);
    p->abi_version = MSA_ABI_VERSION; p->batch = c->batch; p->total_q = c->Tq; p->kv_rows = c->Tk;
    p->Hq = c->Hq; p->Hkv = c->Hkv; p->D = c->D; p->HI = c->HI; p->DI = c->DI;
    p->block_size = c->block_size; p->topk = c->topk; p->init_blocks = c->init_blocks;
    p->local_blocks = c->local_blocks; p->causal = c->causal; p->nblk = msa_case_max_blocks(c);
    p->max_blocks = c->page_table ? c->max_blocks : 0; p->num_pages = c->page_table ? c->num_pages : 0;
    p->softmax_scale_f64 = c->softmax_scale; p->softmax_scale = (float)c->softmax_scale;
    p->index_scale_f64 = c->index_scale; p->index_scale = (float)c->index_scale;
    p->dtype = c->dtype; p->index_dtype = c->index_dtype;
    p->cu_seqlens_q_host = c->cu_q; p->cu_seqlens_k_host = c->cu_k; p->page_table_host = c->page_table;
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
    X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23) X(24)
#define CASE_FN(n) static void test_case_##n(void) { run_case(n); }
CASE_LIST(CASE_FN)
#undef CASE_FN

/* Each broken variant, on a case where its bug shows, must be rejected by the oracle. */
static const struct { const char *variant; int case_idx; } MUTANTS[] = {
    {"diag-drop", 2}, {"noncausal", 2}, {"shared-selection", 4}, {"merge-nan", 23},
    {"unmasked-tail", 2}, {"minus-one-index", 2},
};

static void test_mutants(void)
{
    for (size_t m = 0; m < sizeof MUTANTS / sizeof MUTANTS[0]; m++) {
        char name[64];
        snprintf(name, sizeof name, "cuda:%s", MUTANTS[m].variant);
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

/* M3 at 8k tokens: selection judged against the fast CPU reference, attention (sparse
 * and dense) against the GPU reference (the exact CPU reference would take many minutes:
 * 8k x 64 heads x up to 8k keys).  The same code serves 128k+ where nothing else can. */
static void test_long_context(void)
{
    int lq = 8192, lk = 8192;
    msa_case_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1; p.lq = &lq; p.lk = &lk; p.Hq = 64; p.Hkv = 4; p.D = 128; p.DI = 128; p.block_size = 128;
    p.topk = 16; p.local_blocks = 1; p.dtype = BF; p.index_dtype = BF; p.causal = 1; p.dist = NRM;
    p.index_dist = NRM; p.q_scale = 1; p.seed = CU_SEED + 1000;
    msa_case c;
    msa_err e = {{0}};
    CU_ASSERT_EQUAL_FATAL(msa_case_generate(&p, &c, &e), 0);
    printf("\n  M3 prefill 8k (seed %u), attention judged against the GPU reference", CU_SEED + 1000);
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

static int cuda_clean(void)
{
    msa_kernel_close(&g_k);
    return 0;
}

int msa_suite_cuda(void)
{
    msa_err e = {{0}};
    if (msa_kernel_open("cuda", &g_k, &e)) {
        printf("cuda suite: no GPU (NotVerified): %s\n", e.msg);
        return 0;
    }
    const char *dev = g_k.be->device_name ? g_k.be->device_name(g_k.ctx) : "?";
    printf("cuda suite: %s on %s\n", g_k.be->name, dev);
    CU_pSuite s = CU_add_suite("cuda", NULL, cuda_clean);
    if (!s) return -1;
    char name[128];
    if (!CU_add_test(s, "mutant variants rejected", test_mutants)) return -1;
    if (!CU_add_test(s, "GPU reference = exact reference", test_gpuref_vs_exact)) return -1;
    /* MSA_CUDA_QUICK=1: leave out case 0 (M3 prefill 2600, ~3 min of CPU reference) */
    const char *quick = getenv("MSA_CUDA_QUICK");
    if (quick && *quick == '1') printf("cuda suite: MSA_CUDA_QUICK=1: case 0 (%s) not registered\n", CASES[0].label);
#define CASE_ADD(n)                                                        \
    snprintf(name, sizeof name, "oracle: %s", CASES[n].label);             \
    if (!(n == 0 && quick && *quick == '1') && !CU_add_test(s, name, test_case_##n)) return -1;
    CASE_LIST(CASE_ADD)
#undef CASE_ADD
    if (!CU_add_test(s, "M3 8k judged with the GPU reference", test_long_context)) return -1;
    return 0;
}
