/* test_recall_gpu.c - suite "recallgpu": `msa recall` on the GPU (msa_cuda_block_mass in
 * kernels/cuda/gpuref.cu, reached through the CUDA plugin) against the CPU path, and the
 * synthetic long-layer trace of `msa gen --trace` (traces/synth.c).
 *
 * Without a GPU (CI) the GPU comparisons print "recallgpu: no GPU (NotVerified): why" and
 * check nothing; the synthetic-trace tests always run: the generator's trace is read back
 * and accepted by recall, and bad options exit 2 with one line naming the option. */
#include <CUnit/CUnit.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/case.h"
#include "../common/numfmt.h"
#include "../reference/ref.h"
#include "../traces/traces.h"

#define RG_SEED 4242u
/* GPU and CPU compute the same doubles in other summation orders (gpuref.cu): ~1e-15. */
#define RG_MASS_TOL 1e-12
#define RG_SCORE_REL 1e-12

static char rg_dir[PATH_MAX], rg_msa[PATH_MAX + 8], rg_trace[PATH_MAX + 32];

static int rg_init(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(rg_msa, sizeof rg_msa, "%s/msa", exe);
    snprintf(rg_dir, sizeof rg_dir, "/tmp/msa-recallgpu-XXXXXX");
    if (!mkdtemp(rg_dir)) return -1;
    snprintf(rg_trace, sizeof rg_trace, "%s/syn.npz", rg_dir);
    return 0;
}

static int rg_clean(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", rg_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static msa_synth_opts small_synth(void)
{
    msa_synth_opts o = {.tokens = 3000, .windows = 4, .window_len = 6, .Hq = 6, .Hkv = 2, .D = 32,
                        .block_size = 16, .topk = 4, .init_blocks = 1, .local_blocks = 1, .q_scale = 3.0,
                        .seed = RG_SEED, .record_topk = 1};
    return o;
}

/* ---- the synthetic trace ---- */

static void test_synth_roundtrip(void)
{
    msa_synth_opts o = small_synth();
    msa_err e = {{0}};
    int rc = msa_trace_synthetic(&o, rg_trace, 0, &e);
    if (rc) printf("\n  synthetic: %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    msa_trace t;
    rc = msa_trace_read(rg_trace, &t, &e);
    if (rc) printf("\n  read: %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(t.nrec, 1);
    CU_ASSERT(strstr(t.meta_text, "\"synthetic\": true") != NULL);
    CU_ASSERT_STRING_EQUAL(t.index_kind, "oracle");
    CU_ASSERT_EQUAL_FATAL(msa_trace_load_record(&t, 0, &e), 0);
    const msa_case *c = &t.rec[0].c;
    CU_ASSERT_EQUAL(c->batch, 4);
    CU_ASSERT_EQUAL(c->Tq, 24);
    CU_ASSERT_EQUAL(c->DI, 64);
    CU_ASSERT_EQUAL(msa_case_lk(c, 3), 3000);
    CU_ASSERT_EQUAL(msa_case_lk(c, 0), 750);
    CU_ASSERT_PTR_NOT_NULL(t.rec[0].topk);
    /* the recorded selection is the reference's on the same case */
    int32_t *ref = calloc((size_t)c->HI * c->Tq * c->topk, sizeof *ref);
    CU_ASSERT_EQUAL(msa_ref_select(c, MSA_REF_FAST, ref, NULL, &e), 0);
    CU_ASSERT(!memcmp(ref, t.rec[0].topk, sizeof *ref * (size_t)c->HI * c->Tq * c->topk));
    /* the oracle index: <iq[t,g], ik[j]> is the group's mean query against k[j,g] */
    int t0 = 5, j = 100, g = 1, G = c->Hq / c->Hkv;
    double s = 0, want = 0;
    for (int d = 0; d < c->DI; d++) s += msa_case_iq(c, t0, g, d) * msa_case_ik(c, msa_case_kv_row(c, 0, j), d);
    for (int d = 0; d < c->D; d++) {
        double m = 0;
        for (int h = g * G; h < (g + 1) * G; h++) m += msa_case_q(c, t0, h, d);
        want += msa_round_bf16(m / G) * msa_case_k(c, msa_case_kv_row(c, 0, j), g, d);
    }
    CU_ASSERT_DOUBLE_EQUAL(s, want, 1e-9);
    free(ref);
    msa_trace_unload_record(&t, 0);
    /* recall accepts it (CPU) */
    msa_recall_opts ro = {.ntopk = 2, .topk = {4, 8}, .nblock = 2, .block = {16, 32}, .buckets = 2, .threads = 2,
                          .device = MSA_RECALL_CPU};
    msa_recall_result r;
    rc = msa_recall_run(&t, &ro, &r, &e);
    if (rc) printf("\n  recall: %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(r.ncell, 4);
    CU_ASSERT(r.cell[0].n > 0);
    CU_ASSERT(strncmp(r.device, "cpu", 3) == 0);
    msa_recall_result_free(&r);
    msa_trace_free(&t);
}

/* Runs the msa binary; returns its exit status and the number of stderr lines, the
 * first of which lands in first[]. */
static int run_msa(const char *args, int *lines, char *first, size_t n)
{
    char cmd[PATH_MAX * 2 + 512], errf[PATH_MAX + 16];
    snprintf(errf, sizeof errf, "%s/stderr.txt", rg_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>'%s'", rg_msa, args, errf);
    int st = system(cmd);
    *lines = 0;
    first[0] = 0;
    FILE *f = fopen(errf, "r");
    char buf[1024];
    while (f && fgets(buf, sizeof buf, f)) {
        if (*lines == 0) snprintf(first, n, "%s", buf);
        (*lines)++;
    }
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_synth_cli(void)
{
    if (access(rg_msa, X_OK)) {
        printf("\n  %s not built: CLI checks skipped\n", rg_msa);
        return;
    }
    static const struct { const char *args, *field; } BAD[] = {
        {"gen --trace X.npz --lk 0", "--lk"},
        {"gen --trace X.npz --lk 100 --windows 4 --window-len 64", "--window-len"},
        {"gen --trace X.npz --topk 4 --init 4", "--init"},
        {"gen --trace X.npz --shape llama", "--shape"},
        {"gen --trace X.npz --q-scale -1", "--q-scale"},
        {"gen --trace X.npz --lk 16777216 --windows 4096 --window-len 1", "--windows"},
        {"gen --trace X.npz --paged 1", "--paged"},
        {"gen --trace", "--trace"},
    };
    char first[1024];
    int lines;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        int st = run_msa(BAD[i].args, &lines, first, sizeof first);
        printf("\n  msa %s -> exit %d: %s", BAD[i].args, st, first);
        CU_ASSERT_EQUAL(st, 2);
        CU_ASSERT_EQUAL(lines, 1);
        CU_ASSERT(strstr(first, BAD[i].field) != NULL);
    }
    char args[PATH_MAX + 128];
    snprintf(args, sizeof args, "gen --trace '%s/cli.npz' --lk 2048 --windows 2 --window-len 4 --block 32 --topk 4",
             rg_dir);
    CU_ASSERT_EQUAL(run_msa(args, &lines, first, sizeof first), 0);
    snprintf(args, sizeof args, "recall '%s/cli.npz' --topk 4 --block 32 --device cpu", rg_dir);
    CU_ASSERT_EQUAL(run_msa(args, &lines, first, sizeof first), 0);
    snprintf(args, sizeof args, "recall '%s/cli.npz' --device tpu", rg_dir);
    CU_ASSERT_EQUAL(run_msa(args, &lines, first, sizeof first), 2);
    CU_ASSERT(strstr(first, "--device") != NULL);
}

/* ---- GPU against CPU ---- */

static int no_gpu(const char *why)
{
    printf("\n  recallgpu: no GPU (NotVerified): %s", why);
    return 1;
}

/* Block mass and block scores of a varlen, paged case with empty rows, both paths. */
static void test_gpu_inputs(void)
{
    int lq[3] = {5, 40, 17}, lk[3] = {300, 20, 17};
    msa_case_params p = {.batch = 3, .lq = lq, .lk = lk, .Hq = 6, .Hkv = 2, .D = 64, .DI = 32, .block_size = 16,
                         .topk = 4, .local_blocks = 1, .dtype = MSA_DT_BF16, .index_dtype = MSA_DT_BF16, .causal = 1,
                         .paged = 2, .q_scale = 2, .seed = RG_SEED};
    msa_case c;
    msa_err e = {{0}};
    CU_ASSERT_EQUAL_FATAL(msa_case_generate(&p, &c, &e), 0);
    int B = c.block_size, nblk = msa_case_max_blocks(&c);
    size_t n = (size_t)c.Hkv * c.Tq * nblk;
    double *gm = calloc(n, 8), *gs = calloc(n, 8), *cm = calloc(n, 8), *cs = calloc(n, 8);
    int rc = msa_recall_gpu_inputs(&c, 1, &B, &nblk, &gm, &gs, &e);
    if (rc == MSA_EUNSUPPORTED) {
        no_gpu(e.msg);
    } else {
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(msa_recall_block_mass(&c, B, nblk, cm, 2, &e), 0);
        CU_ASSERT_EQUAL(msa_ref_select(&c, MSA_REF_FAST, NULL, cs, &e), 0);
        double dm = 0, ds = 0;
        long inf_mismatch = 0;
        for (size_t i = 0; i < n; i++) {
            dm = fmax(dm, fabs(gm[i] - cm[i]));
            if (isinf(gs[i]) || isinf(cs[i])) inf_mismatch += gs[i] != cs[i];
            else ds = fmax(ds, fabs(gs[i] - cs[i]) / fmax(1e-300, fabs(cs[i])));
        }
        printf("\n  recall GPU vs CPU inputs (seed %u): max |mass diff| %.3g, max rel score diff %.3g, "
               "-inf mismatches %ld", RG_SEED, dm, ds, inf_mismatch);
        CU_ASSERT(dm <= RG_MASS_TOL);
        CU_ASSERT(ds <= RG_SCORE_REL);
        CU_ASSERT_EQUAL(inf_mismatch, 0);
    }
    free(gm); free(gs); free(cm); free(cs);
    msa_case_free(&c);
}

/* The whole recall on the synthetic trace: same rows, same recalls, masses within tolerance. */
static void test_gpu_recall_equals_cpu(void)
{
    msa_synth_opts so = small_synth();
    msa_err e = {{0}};
    if (access(rg_trace, R_OK)) CU_ASSERT_EQUAL_FATAL(msa_trace_synthetic(&so, rg_trace, 0, &e), 0);
    msa_trace t;
    CU_ASSERT_EQUAL_FATAL(msa_trace_read(rg_trace, &t, &e), 0);
    msa_recall_opts o = {.ntopk = 3, .topk = {2, 4, 8}, .nblock = 3, .block = {16, 32, 48}, .buckets = 4,
                         .threads = 2, .device = MSA_RECALL_GPU};
    msa_recall_result rg, rcpu;
    int rc = msa_recall_run(&t, &o, &rg, &e);
    if (rc == MSA_EUNSUPPORTED) {
        no_gpu(e.msg);
        msa_trace_free(&t);
        return;
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    o.device = MSA_RECALL_CPU;
    CU_ASSERT_EQUAL_FATAL(msa_recall_run(&t, &o, &rcpu, &e), 0);
    printf("\n  recall on %s: %s %.2f s, %s %.2f s", rg_trace, rg.device, rg.seconds, rcpu.device, rcpu.seconds);
    CU_ASSERT_EQUAL_FATAL(rg.ncell, rcpu.ncell);
    long differ = 0;
    double dm = 0;
    for (int i = 0; i < rg.ncell; i++) {
        const msa_recall_cell *a = &rg.cell[i], *b = &rcpu.cell[i];
        CU_ASSERT(a->n == b->n && a->trivial == b->trivial && a->B == b->B && a->k == b->k);
        for (long j = 0; j < a->n && a->n == b->n; j++) {
            differ += a->v_block[j] != b->v_block[j] || a->v_free[j] != b->v_free[j];
            dm = fmax(dm, fmax(fabs(a->v_mass[j] - b->v_mass[j]), fabs(a->v_forced[j] - b->v_forced[j])));
        }
    }
    printf("\n  GPU vs CPU recall: %ld rows with another block/free recall, max |mass diff| %.3g", differ, dm);
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT(dm <= RG_MASS_TOL);
    msa_recall_result_free(&rg);
    msa_recall_result_free(&rcpu);
    msa_trace_free(&t);
}

int msa_suite_recallgpu(void)
{
    CU_pSuite s = CU_add_suite("recallgpu", rg_init, rg_clean);
    if (!s) return -1;
    if (!CU_add_test(s, "synthetic trace: read back, reference selection, recall accepts it", test_synth_roundtrip) ||
        !CU_add_test(s, "synthetic trace CLI: bad options exit 2 naming the field", test_synth_cli) ||
        !CU_add_test(s, "GPU block mass and scores = CPU (or NotVerified)", test_gpu_inputs) ||
        !CU_add_test(s, "GPU recall = CPU recall (or NotVerified)", test_gpu_recall_equals_cpu))
        return -1;
    return 0;
}
