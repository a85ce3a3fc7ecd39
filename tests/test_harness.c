/* test_harness.c - suite "harness": backend names and plugin loading (every error is
 * MSA_EINPUT naming the library and the problem), guard bands catch overruns of a
 * deliberately broken private backend, unwritten outputs keep the poison pre-fill, the
 * K/V poison lands exactly on the rows a run must not read, the device-memory path,
 * nearest-fp32 scales, backend errors, and examples/plugin_example.c built and run.
 * Plugins are compiled with cc at test time; without cc those tests say so and skip. */
#include <CUnit/CUnit.h>
#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include "../kernels/cpusim.h"
#include "test_kcpu.h"

#define SEED 7350u

/* ---- private in-process backends ---- */
static const char *tb_err(void *ctx) { return "boom: private test backend failed on purpose"; }
static int tb_ok(void *ctx, const msa_problem *p) { return 0; }
static int tb_select(void *ctx, const msa_problem *p, int32_t *topk) { return 0; }
static int tb_attend(void *ctx, const msa_problem *p, const int32_t *topk, void *out, float *lse) { return 0; }

/* Writes every output correctly-sized, then one bf16 element past (or before) out. */
static int g_over_dir;
static int tb_overrun(void *ctx, const msa_problem *p, int32_t *topk, void *out, float *lse)
{
    size_t n = (size_t)p->total_q * p->Hq * p->D;
    memset(out, 0, n * 2);
    memset(topk, 0xff, (size_t)p->HI * p->total_q * p->topk * 4);
    memset(lse, 0, (size_t)p->total_q * p->Hq * 4);
    uint16_t one = 0x3F80;
    char *at = g_over_dir > 0 ? (char *)out + 2 * n : (char *)out - 2;
    memcpy(at, &one, 2);
    return 0;
}
static int tb_lazy(void *ctx, const msa_problem *p, int32_t *topk, void *out, float *lse) { return 0; }
static int tb_fail(void *ctx, const msa_problem *p, int32_t *topk, void *out, float *lse) { return MSA_EINTERNAL; }

/* The spy records the problem and copies the k/v it is given (poison checks). */
static msa_problem g_seen;
static unsigned char *g_seen_k, *g_seen_v;
static int tb_spy(void *ctx, const msa_problem *p, const int32_t *topk, void *out, float *lse)
{
    size_t n = (size_t)p->kv_rows * p->Hkv * p->D * msa_dtype_size(p->dtype);
    g_seen = *p;
    free(g_seen_k), free(g_seen_v);
    g_seen_k = malloc(n + 1), g_seen_v = malloc(n + 1);
    memcpy(g_seen_k, p->k, n), memcpy(g_seen_v, p->v, n);
    return tb_attend(ctx, p, topk, out, lse);
}

static msa_backend tb_table(const char *name, int (*fwd)(void *, const msa_problem *, int32_t *, void *, float *))
{
    msa_backend b = {.abi_version = MSA_ABI_VERSION, .name = name, .description = "test", .mem = MSA_MEM_HOST,
                     .last_error = tb_err, .supports = tb_ok, .select = tb_select, .attend = tb_attend, .forward = fwd};
    b.arith = msa_cpusim_backend()->arith;
    return b;
}

static msa_case small_case(int paged)
{
    tk_spec s = {.batch = 2, .lq = {5, 2}, .lk = {18, 9}, .Hq = 2, .Hkv = 2, .D = 4, .DI = 4, .B = 4,
                 .topk = 2, .local = 1, .causal = 1, .dt = MSA_DT_BF16, .paged = paged, .seed = SEED};
    msa_case c;
    tk_make(&s, &c);
    return c;
}

/* ---- names ---- */
static void expect_input_error(const char *name, const char *needle)
{
    msa_kernel k;
    msa_err e = {{0}};
    int rc = msa_kernel_open(name, &k, &e);
    CU_ASSERT_EQUAL(rc, MSA_EINPUT);
    if (!strstr(e.msg, needle)) printf("\n  open(%s): '%s' lacks '%s'\n", name, e.msg, needle);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, needle));
    CU_ASSERT_PTR_NULL(strchr(e.msg, '\n'));
}

static void test_names(void)
{
    expect_input_error("no-such-backend", "no-such-backend: no such backend");
    expect_input_error("cpu-sim:bogus", "unknown cpu-sim variant 'bogus'");
    expect_input_error("", "empty");
    setenv("MSA_CUDA_LIB", "/nonexistent/libmsa_cuda.so", 1);
    expect_input_error("cuda", "/nonexistent/libmsa_cuda.so: not found");
    unsetenv("MSA_CUDA_LIB");
    msa_kernel k;
    msa_err e;
    CU_ASSERT_EQUAL_FATAL(msa_kernel_open("cpu-sim:split2", &k, &e), 0);
    CU_ASSERT_STRING_EQUAL(k.be->name, "cpu-sim:split2");
    CU_ASSERT_EQUAL(k.be->arith.max_partials, -2);
    msa_kernel_close(&k);
    CU_ASSERT_EQUAL_FATAL(msa_kernel_open("cpu-sim:order-desc", &k, &e), 0);
    CU_ASSERT_EQUAL(k.be->arith.order, MSA_ORDER_SCORE_DESC);
    msa_kernel_close(&k);
    /* a table with a NULL required entry is refused at registration */
    static msa_backend bad;
    bad = tb_table("test-bad", tb_lazy);
    bad.select = NULL;
    CU_ASSERT_EQUAL(msa_kernel_register("test-bad", &bad), MSA_EINPUT);
}

/* The CUDA plugin's variant table (no GPU needed: the tables are looked up, never
 * initialised): the planted bugs, and unknown names (among them the retired "v4",
 * whose kernels are now the default) refused.  Skipped (with a line saying so) where the plugin is not built. */
static void test_cuda_variants(void)
{
    char lib[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", lib, sizeof lib - 32);
    CU_ASSERT_FATAL(n > 0);
    lib[n] = 0;
    char *sl = strrchr(lib, '/');
    snprintf(sl ? sl + 1 : lib, 32, "libmsa_cuda.so");
    void *dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        printf("\n  %s not built (no nvcc): CUDA variant table not checked\n", lib);
        return;
    }
    void *sym = dlsym(dl, MSA_BACKEND_VARIANT_SYMBOL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sym);
    msa_backend_variant_fn vf;
    memcpy(&vf, &sym, sizeof vf);
    static const char *const ok[][2] = {{"none", "cuda"}, {"diag-drop", "cuda:diag-drop"}, {"minus-one-index", "cuda:minus-one-index"}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        const msa_backend *b = vf(ok[i][0]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        CU_ASSERT_STRING_EQUAL(b->name, ok[i][1]);
        /* the bug tables say BUG, the real one does not */
        CU_ASSERT_EQUAL(strncmp(b->description, "BUG:", 4) == 0, strcmp(ok[i][0], "none") != 0);
    }
    static const char *const bad[] = {"bogus", "v4", "v4+diag-drop", "cuda", "diag-drop ", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CU_ASSERT_PTR_NULL(vf(bad[i]));
    dlclose(dl);
}

/* ---- guards, pre-fill, errors ---- */
static void test_guards(void)
{
    static msa_backend over, lazy, fail;
    over = tb_table("test-overrun", tb_overrun);
    lazy = tb_table("test-lazy", tb_lazy);
    fail = tb_table("test-fail", tb_fail);
    CU_ASSERT_EQUAL_FATAL(msa_kernel_register("test-overrun", &over), 0);
    CU_ASSERT_EQUAL_FATAL(msa_kernel_register("test-lazy", &lazy), 0);
    CU_ASSERT_EQUAL_FATAL(msa_kernel_register("test-fail", &fail), 0);
    msa_case c = small_case(0);
    msa_kernel_result r;
    for (g_over_dir = 1; g_over_dir >= -1; g_over_dir -= 2) {
        CU_ASSERT_EQUAL_FATAL(tk_run("test-overrun", &c, MSA_RUN_FORWARD, NULL, 0, &r), 0);
        CU_ASSERT_EQUAL(r.guard_ok, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.guard_msg, g_over_dir > 0 ? "out: 2 guard bytes changed (after the end at +0)"
                                                                    : "out: 2 guard bytes changed (before the start at -2)"));
        printf("\n  guard: %s", r.guard_msg);
        msa_kernel_result_free(&r);
    }
    /* nothing written: every output keeps its distinctive pre-fill */
    CU_ASSERT_EQUAL_FATAL(tk_run("test-lazy", &c, MSA_RUN_FORWARD, NULL, 0, &r), 0);
    CU_ASSERT(r.guard_ok);
    uint32_t lbits;
    uint16_t obits;
    memcpy(&lbits, r.lse, 4), memcpy(&obits, r.out_raw, 2);
    CU_ASSERT_EQUAL(r.topk[0], 0x7FFFFFA5);
    CU_ASSERT_EQUAL(lbits, 0x7FD5A5A5u);
    CU_ASSERT_EQUAL(obits, 0x7FD5);
    CU_ASSERT(isnan(r.out[c.Tq * c.Hq * c.D - 1]));
    msa_kernel_result_free(&r);
    /* a failing entry: MSA_EBACKEND with the name and the backend's own message */
    msa_kernel k;
    msa_err e = {{0}};
    CU_ASSERT_EQUAL_FATAL(msa_kernel_open("test-fail", &k, &e), 0);
    CU_ASSERT_EQUAL(msa_kernel_run(&k, &c, MSA_RUN_FORWARD, NULL, NULL, &r, &e), MSA_EBACKEND);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "test-fail: forward failed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "boom"));
    CU_ASSERT_EQUAL(msa_kernel_run(&k, &c, MSA_RUN_DENSE, NULL, NULL, &r, &e), MSA_EUNSUPPORTED);
    CU_ASSERT_EQUAL(msa_kernel_run(&k, &c, MSA_RUN_REPLAY, NULL, NULL, &r, &e), MSA_EUNSUPPORTED);
    msa_kernel_close(&k);
    tk_free(&c);
}

/* ---- poison ---- */
static int is_nan_slice(const unsigned char *buf, const msa_case *c, int64_t row, int g)
{
    for (int d = 0; d < c->D; d++)
        if (!isnan(tk_get(c->dtype, buf, ((size_t)row * c->Hkv + g) * c->D + d))) return 0;
    return 1;
}

/* Hand-made selection: sequence 0 (18 keys, blocks 0-4, block 4 holds keys 16-17):
 * group 0 reads blocks {1, 4}, group 1 reads {0}; sequence 1 (9 keys, blocks 0-2):
 * group 0 reads {2}, group 1 nothing.  Expected readable rows are listed by hand. */
static void check_poison(int paged)
{
    static msa_backend spy;
    spy = tb_table("test-spy", tb_lazy);
    spy.attend = tb_spy;
    CU_ASSERT_EQUAL_FATAL(msa_kernel_register("test-spy", &spy), 0);
    msa_case c = small_case(paged);
    int32_t sel[2 * 7 * 2];
    for (int i = 0; i < 28; i++) sel[i] = -1;
    sel[0] = 1, sel[1] = 4;        /* g0, t0 */
    sel[2 * 3] = 1;                /* g0, t3: block 1 again */
    sel[2 * 6] = 2;                /* g0, t6 (sequence 1) */
    sel[2 * 7 + 2 * 1 + 1] = 0;    /* g1, t1 */
    msa_kernel_result r;
    CU_ASSERT_EQUAL_FATAL(tk_run("test-spy", &c, MSA_RUN_ATTEND, sel, 1, &r), 0);
    msa_kernel_result_free(&r);
    int bad = 0, nan_rows = 0;
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < (b ? 9 : 18); j++)
            for (int g = 0; g < 2; g++) {
                int blk = j / 4, keep;
                if (b == 0) keep = g == 0 ? (blk == 1 || blk == 4) : blk == 0;
                else keep = g == 0 && blk == 2;
                int64_t row = tk_row(&c, b, j);
                int nk = is_nan_slice(g_seen_k, &c, row, g), nv = is_nan_slice(g_seen_v, &c, row, g);
                bad += keep ? (nk || nv) : !(nk && nv);
                nan_rows += nk;
                /* the case itself is untouched */
                bad += is_nan_slice(c.k, &c, row, g);
            }
    if (paged) { /* the unused page 0, and the tails past Lk of each last page */
        for (int x = 0; x < c.block_size; x++)
            for (int g = 0; g < 2; g++) bad += !is_nan_slice(g_seen_k, &c, x, g);
        bad += !is_nan_slice(g_seen_k, &c, tk_row(&c, 0, 16) + 2, 0); /* key 18 of page for block 4 */
        bad += !is_nan_slice(g_seen_v, &c, tk_row(&c, 1, 8) + 1, 1);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(nan_rows > 0);
    free(g_seen_k), free(g_seen_v);
    g_seen_k = g_seen_v = NULL;
    tk_free(&c);
}

static void test_poison_packed(void) { check_poison(0); }
static void test_poison_paged(void) { check_poison(1); }

/* ---- scales ---- */
static void test_scales(void)
{
    const int dims[] = {64, 80, 96, 128, 192, 256, 3};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
        tk_spec s = {.batch = 1, .lq = {1}, .lk = {1}, .Hq = 1, .Hkv = 1, .D = dims[i], .DI = dims[i], .B = 2,
                     .topk = 1, .causal = 1, .dt = MSA_DT_BF16, .seed = SEED};
        msa_case c;
        tk_make(&s, &c);
        static msa_backend spy;
        spy = tb_table("test-spy", tb_lazy);
        spy.attend = tb_spy;
        msa_kernel_register("test-spy", &spy);
        int32_t sel[1] = {0};
        msa_kernel_result r;
        CU_ASSERT_EQUAL_FATAL(tk_run("test-spy", &c, MSA_RUN_ATTEND, sel, 0, &r), 0);
        msa_kernel_result_free(&r);
        /* nearest float to 1/sqrt(D), checked in long double against both neighbours */
        long double x = 1.0L / sqrtl((long double)dims[i]), f = g_seen.softmax_scale;
        long double up = nextafterf(g_seen.softmax_scale, 1.0f), dn = nextafterf(g_seen.softmax_scale, 0.0f);
        CU_ASSERT(fabsl(f - x) <= fabsl(up - x) && fabsl(f - x) <= fabsl(dn - x));
        CU_ASSERT_EQUAL(g_seen.index_scale, g_seen.softmax_scale);
        CU_ASSERT_EQUAL(g_seen.softmax_scale_f64, 1.0 / sqrt((double)dims[i]));
        free(g_seen_k), free(g_seen_v);
        g_seen_k = g_seen_v = NULL;
        tk_free(&c);
    }
}

/* ---- device-memory path: cpu-sim behind fake device callbacks ---- */
static long g_dev_live;
static void *fd_alloc(void *ctx, size_t n)
{
    g_dev_live++;
    return malloc(n);
}
static void fd_free(void *ctx, void *p)
{
    g_dev_live -= p != NULL;
    free(p);
}
static int fd_copy(void *ctx, void *d, const void *s, size_t n)
{
    memcpy(d, s, n);
    return 0;
}
static int fd_sync(void *ctx) { return 0; }

static void test_device_path(void)
{
    static msa_backend fd;
    fd = *msa_cpusim_backend();
    fd.name = "test-fakedev";
    fd.mem = MSA_MEM_DEVICE;
    CU_ASSERT_EQUAL(msa_kernel_register("test-fakedev", &fd), MSA_EINPUT); /* no callbacks yet */
    fd.dev_alloc = fd_alloc, fd.dev_free = fd_free, fd.copy_to_dev = fd_copy, fd.copy_to_host = fd_copy;
    fd.sync = fd_sync;
    CU_ASSERT_EQUAL_FATAL(msa_kernel_register("test-fakedev", &fd), 0);
    msa_case c = small_case(1);
    msa_kernel_result a, b;
    for (int kind = MSA_RUN_FORWARD; kind <= MSA_RUN_REPLAY; kind++) {
        int32_t *given = NULL;
        msa_kernel_result sel;
        if (kind == MSA_RUN_ATTEND) {
            CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, MSA_RUN_SELECT, NULL, 0, &sel), 0);
            given = sel.topk;
        }
        /* replay is checked against plain forward: the bits must not change */
        CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, kind == MSA_RUN_REPLAY ? MSA_RUN_FORWARD : kind, given, 1, &a), 0);
        CU_ASSERT_EQUAL_FATAL(tk_run("test-fakedev", &c, kind, given, 1, &b), 0);
        CU_ASSERT(b.guard_ok);
        CU_ASSERT_EQUAL(g_dev_live, 0);
        CU_ASSERT_FALSE(tk_bytes_differ(a.out_raw, b.out_raw, (size_t)c.Tq * c.Hq * c.D * 2));
        CU_ASSERT_FALSE(tk_bytes_differ(a.topk, b.topk, (size_t)c.HI * c.Tq * c.topk * 4));
        CU_ASSERT_FALSE(tk_bytes_differ(a.block_scores, b.block_scores, (size_t)c.HI * c.Tq * 5 * 4));
        msa_kernel_result_free(&a), msa_kernel_result_free(&b);
        if (given) msa_kernel_result_free(&sel);
    }
    tk_free(&c);
}

/* ---- plugins built with cc at test time ---- */

/* One source, defects chosen by -D: NOSYM (no entry symbol), ABI=n, SEL=NULL,
 * MEM=MSA_MEM_DEVICE (without callbacks). */
static const char *PLUGIN_SRC =
    "#include \"msa_abi.h\"\n"
    "#ifndef ABI\n#define ABI MSA_ABI_VERSION\n#endif\n"
    "#ifndef SEL\n#define SEL sel\n#endif\n"
    "#ifndef MEM\n#define MEM MSA_MEM_HOST\n#endif\n"
    "static const char *err(void *c) { return \"x\"; }\n"
    "static int sup(void *c, const msa_problem *p) { return 0; }\n"
    "static int sel(void *c, const msa_problem *p, int32_t *t) { return 0; }\n"
    "static int att(void *c, const msa_problem *p, const int32_t *t, void *o, float *l) { return 0; }\n"
    "static int fwd(void *c, const msa_problem *p, int32_t *t, void *o, float *l) { return 0; }\n"
    "static const msa_backend be = {ABI, \"p\", \"p\", MEM, {MSA_DT_BF16, 24, MSA_DT_BF16}, 0, 0, err, sup, 0, SEL, att, fwd};\n"
    "#ifdef NOSYM\nconst msa_backend *something_else(void) { return &be; }\n"
    "#else\nconst msa_backend *msa_backend_v1(void) { return &be; }\n#endif\n";

static char g_dir[64];

/* 0 when cc built the plugin; prints why and returns -1 otherwise. */
static int build_plugin(const char *src_path, const char *so, const char *defs)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -Ikernels %s -o %s %s 2>%s/cc.log", defs, so, src_path, g_dir);
    if (system(cmd) != 0) {
        printf("\n  SKIPPED: could not build a plugin (%s)\n", cmd);
        return -1;
    }
    return 0;
}

static int have_tools(void)
{
    if (access("kernels/msa_abi.h", R_OK) || system("cc --version >/dev/null 2>&1")) {
        printf("\n  SKIPPED: needs cc and the source tree (run from the repository root)\n");
        return 0;
    }
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/msa_test_harness_XXXXXX");
        if (!mkdtemp(g_dir)) return g_dir[0] = 0, 0;
    }
    return 1;
}

static void test_plugin_errors(void)
{
    if (!have_tools()) return;
    char src[128], so[160], name[200];
    snprintf(src, sizeof src, "%s/p.c", g_dir);
    FILE *f = fopen(src, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(PLUGIN_SRC, f);
    fclose(f);
    static const struct {
        const char *tag, *defs, *needle;
    } cases[] = {{"nosym", "-DNOSYM", "missing symbol msa_backend_v1"},
                 {"abi", "-DABI=99", "abi_version 99, this suite speaks 1"},
                 {"nullsel", "-DSEL=0", "required entry 'select' is NULL"},
                 {"dev", "-DMEM=MSA_MEM_DEVICE", "device backend (mem = MSA_MEM_DEVICE) without the memory callback 'dev_alloc'"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(so, sizeof so, "%s/%s.so", g_dir, cases[i].tag);
        if (build_plugin(src, so, cases[i].defs)) return;
        snprintf(name, sizeof name, "%s: %s", so, cases[i].needle);
        expect_input_error(so, name);
    }
    /* the good build loads; a variant it does not export, and a non-plugin file, fail */
    snprintf(so, sizeof so, "%s/good.so", g_dir);
    if (build_plugin(src, so, "")) return;
    msa_kernel k;
    msa_err e;
    CU_ASSERT_EQUAL(msa_kernel_open(so, &k, &e), 0);
    msa_kernel_close(&k);
    snprintf(name, sizeof name, "%s:fancy", so);
    expect_input_error(name, "missing symbol msa_backend_variant_v1");
    expect_input_error(src, "cannot load the plugin");
}

/* examples/plugin_example.c builds, loads and agrees with cpu-sim on the selection and,
 * loosely, on the output (cpu-sim rounds P and out to bf16: 4 * 2^-8 * max|v| as in
 * test_cpusim.c's smoke test). */
static void test_plugin_example(void)
{
    if (!have_tools()) return;
    char so[160];
    snprintf(so, sizeof so, "%s/plugin_example.so", g_dir);
    if (build_plugin("examples/plugin_example.c", so, "-O2 -std=c11")) return;
    tk_spec s = {.batch = 2, .lq = {30, 3}, .lk = {30, 45}, .Hq = 4, .Hkv = 2, .D = 16, .DI = 16, .B = 8,
                 .topk = 2, .local = 1, .causal = 1, .dt = MSA_DT_BF16, .paged = 1, .seed = SEED};
    printf("\n  seed %u\n", SEED);
    msa_case c;
    tk_make(&s, &c);
    msa_kernel_result a, b, d;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, MSA_RUN_FORWARD, NULL, 0, &a), 0);
    CU_ASSERT_EQUAL_FATAL(tk_run(so, &c, MSA_RUN_FORWARD, NULL, 0, &b), 0);
    CU_ASSERT_EQUAL_FATAL(tk_run(so, &c, MSA_RUN_ATTEND, b.topk, 1, &d), 0);
    CU_ASSERT(b.guard_ok && d.guard_ok);
    size_t n = (size_t)c.Tq * c.Hq * c.D;
    CU_ASSERT_FALSE(tk_bytes_differ(a.topk, b.topk, (size_t)c.HI * c.Tq * c.topk * 4));
    CU_ASSERT_FALSE(tk_bytes_differ(b.out_raw, d.out_raw, n * 4)); /* poison never read */
    double vmax = 0, worst = 0;
    for (size_t i = 0; i < (size_t)c.Tk * c.Hkv * c.D; i++) vmax = fmax(vmax, fabs(tk_get(c.dtype, c.v, i)));
    for (size_t i = 0; i < n; i++) worst = isnan(b.out[i]) ? INFINITY : fmax(worst, fabs(a.out[i] - b.out[i]));
    printf("  plugin vs cpu-sim: max |out diff| = %.3g (bound %.3g)\n", worst, 4 * 0x1p-8 * vmax);
    CU_ASSERT(worst <= 4 * 0x1p-8 * vmax);
    msa_kernel_result_free(&a), msa_kernel_result_free(&b), msa_kernel_result_free(&d);
    tk_free(&c);
}

static int cleanup(void)
{
    if (g_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) printf("could not remove %s\n", g_dir);
    }
    return 0;
}

int msa_suite_harness(void)
{
    CU_pSuite s = CU_add_suite("harness", NULL, cleanup);
    if (!s) return 1;
    if (!CU_add_test(s, "names and variants", test_names) ||
        !CU_add_test(s, "guard bands, pre-fill, backend errors", test_guards) ||
        !CU_add_test(s, "poison: packed", test_poison_packed) ||
        !CU_add_test(s, "poison: paged, tails and unused pages", test_poison_paged) ||
        !CU_add_test(s, "nearest-fp32 scales", test_scales) ||
        !CU_add_test(s, "device-memory path", test_device_path) ||
        !CU_add_test(s, "plugin loading errors", test_plugin_errors) ||
        !CU_add_test(s, "CUDA plugin variant table", test_cuda_variants) ||
        !CU_add_test(s, "examples/plugin_example.c", test_plugin_example))
        return 1;
    return 0;
}
