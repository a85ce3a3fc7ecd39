/* test_badinput.c - the bad-input table (issue 9): every malformed input given to the
 * `msa` command must produce exactly one line on stderr naming the file (or option) and
 * the field, exit code 2, no crash, and no output file.  The malformed files are made
 * here from a valid generated case by changing one thing each.  The msa binary is the
 * one next to this test binary (build/msa). */
#include <CUnit/CUnit.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/case.h"
#include "../common/fsutil.h"
#include "../common/npz.h"

static char bi_dir[PATH_MAX], bi_msa[PATH_MAX + 8];

static int bi_init(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(bi_msa, sizeof bi_msa, "%s/msa", exe);
    snprintf(bi_dir, sizeof bi_dir, "/tmp/msa-badinput-XXXXXX");
    return mkdtemp(bi_dir) ? 0 : -1;
}

static int bi_clean(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", bi_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A small valid case as an NPZ in memory. */
static void valid_npz(msa_npz *z, int paged)
{
    int lq[2] = {5, 3}, lk[2] = {40, 20};
    msa_case_params p = {.batch = 2, .lq = lq, .lk = lk, .Hq = 4, .Hkv = 2, .D = 16, .DI = 16, .block_size = 8,
                         .topk = 2, .local_blocks = 1, .dtype = MSA_DT_BF16, .index_dtype = MSA_DT_BF16,
                         .causal = 1, .paged = paged, .q_scale = 1.0, .seed = 5};
    msa_case c;
    msa_err e = {{0}};
    CU_ASSERT_FATAL(msa_case_generate(&p, &c, &e) == 0);
    memset(z, 0, sizeof *z);
    CU_ASSERT_FATAL(msa_case_to_npz(&c, z, &e) == 0);
    msa_case_free(&c);
}

static void put_config(msa_npz *z, const char *json)
{
    int64_t n = (int64_t)strlen(json);
    msa_err e = {{0}};
    CU_ASSERT_FATAL(msa_npz_add(z, "config", MSA_DT_U8, 1, &n, json, &e) == 0);
}

static void put_i32(msa_npz *z, const char *name, const int32_t *v, int n)
{
    int64_t s = n;
    msa_err e = {{0}};
    CU_ASSERT_FATAL(msa_npz_add(z, name, MSA_DT_I32, 1, &s, v, &e) == 0);
}

static void write_npz(const msa_npz *z, const char *path)
{
    msa_err e = {{0}};
    CU_ASSERT_FATAL(msa_npz_write(path, z, 0, &e) == 0);
}

/* Runs msa with args (space-separated, no quoting needed); returns exit code, stderr text. */
static int run_msa(const char *args, char *err, size_t n)
{
    char cmd[4096], errf[PATH_MAX + 16];
    snprintf(errf, sizeof errf, "%s/stderr.txt", bi_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>'%s'", bi_msa, args, errf);
    int st = system(cmd);
    FILE *f = fopen(errf, "r");
    size_t len = f ? fread(err, 1, n - 1, f) : 0;
    err[len] = 0;
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* The contract: exit 2, one line, naming `must_name`, containing `must_say`, no output. */
static void expect_bad(const char *what, const char *args, const char *must_name, const char *must_say)
{
    char err[4096], outp[PATH_MAX + 16];
    snprintf(outp, sizeof outp, "%s/out.npz", bi_dir);
    unlink(outp);
    int rc = run_msa(args, err, sizeof err);
    int ok = rc == 2 && count_lines(err) == 1 && strstr(err, must_name) && (!must_say || strstr(err, must_say)) &&
             access(outp, F_OK) != 0;
    if (!ok)
        fprintf(stderr, "\nbad-input row '%s': exit %d, stderr: %s(wanted exit 2, one line naming '%s'%s%s)\n", what, rc,
                err, must_name, must_say ? " and saying " : "", must_say ? must_say : "");
    CU_ASSERT(ok);
}

static void case_row(const char *what, msa_npz *z, const char *must_say)
{
    char path[PATH_MAX + 32], args[2 * PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/bad.npz", bi_dir);
    write_npz(z, path);
    snprintf(args, sizeof args, "ref %s -o %s/out.npz", path, bi_dir);
    expect_bad(what, args, "bad.npz", must_say);
    msa_npz_free(z);
}

static void test_malformed_case_files(void)
{
    msa_npz z;
    static const char *cfgs[][2] = {
        {"{\"dtype\":\"bf16\",\"block_size\":8,\"topk\":0,\"init_blocks\":0,\"local_blocks\":1}", "topk"},
        {"{\"dtype\":\"bf16\",\"block_size\":0,\"topk\":2,\"init_blocks\":0,\"local_blocks\":1}", "block_size"},
        {"{\"dtype\":\"bf17\",\"block_size\":8,\"topk\":2,\"init_blocks\":0,\"local_blocks\":1}", "dtype"},
        {"{\"dtype\":\"bf16\",\"block_size\":8,\"topk\":2,\"init_blocks\":2,\"local_blocks\":1}", "init"},
        {"{\"dtype\":\"bf16\",\"block_size\":8,\"topk\":2,\"init_blocks\":0,\"local_blocks\":1,\"causal\":3}", "causal"},
        {"{\"dtype\":\"bf16\",\"block_size\":8,\"topk\":2,\"init_blocks\":0,\"local_blocks\":1,\"softmax_scale\":-1}", "softmax_scale"},
        {"{\"dtype\":\"bf16\",\"block_size\":8,", "config"},
        {"[1,2,3]", "config"},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        valid_npz(&z, 0);
        put_config(&z, cfgs[i][0]);
        case_row(cfgs[i][1], &z, cfgs[i][1]);
    }
    int32_t neg[3] = {0, -2, 8}, nonmono[3] = {0, 6, 5}, badend[3] = {0, 5, 9};
    valid_npz(&z, 0), put_i32(&z, "cu_seqlens_q", neg, 3), case_row("negative cu_seqlens", &z, "cu_seqlens_q");
    valid_npz(&z, 0), put_i32(&z, "cu_seqlens_q", nonmono, 3), case_row("non-monotone cu_seqlens", &z, "cu_seqlens_q");
    valid_npz(&z, 0), put_i32(&z, "cu_seqlens_q", badend, 3), case_row("cu_seqlens end", &z, "cu_seqlens_q");
    valid_npz(&z, 0), put_i32(&z, "cu_seqlens_k", nonmono, 2), case_row("cu_seqlens batch mismatch", &z, "cu_seqlens");
    /* page table out of range */
    valid_npz(&z, 1);
    {
        const msa_tensor *pt = msa_npz_find(&z, "page_table");
        CU_ASSERT_FATAL(pt != NULL);
        int32_t *v = (int32_t *)pt->data;
        v[0] = 1000;
    }
    case_row("page table out of range", &z, "page_table");
    /* shapes that disagree: drop a row of v */
    valid_npz(&z, 0);
    {
        const msa_tensor *v = msa_npz_find(&z, "v");
        int64_t sh[3] = {v->shape[0] - 1, v->shape[1], v->shape[2]};
        msa_dtype dt = v->dtype;
        void *copy = malloc(v->nbytes);
        CU_ASSERT_FATAL(copy != NULL);
        memcpy(copy, v->data, v->nbytes);
        msa_err e = {{0}};
        CU_ASSERT_FATAL(msa_npz_add(&z, "v", dt, 3, sh, copy, &e) == 0);
        free(copy);
    }
    case_row("shape mismatch", &z, "v");
    /* NaN in q (bf16 NaN code 0x7FC0) */
    valid_npz(&z, 0);
    ((uint16_t *)msa_npz_find(&z, "q")->data)[3] = 0x7FC0;
    case_row("NaN in q", &z, "q");
    /* missing tensor */
    valid_npz(&z, 0);
    {
        msa_npz z2 = {0};
        msa_err e = {{0}};
        for (int i = 0; i < z.n; i++)
            if (strcmp(z.t[i].name, "index_k"))
                msa_npz_add(&z2, z.t[i].name, z.t[i].dtype, z.t[i].ndim, z.t[i].shape, z.t[i].data, &e);
        msa_npz_free(&z);
        case_row("missing index_k", &z2, "index_k");
    }
    /* wrong dtype: q stored as float64 */
    valid_npz(&z, 0);
    {
        const msa_tensor *q = msa_npz_find(&z, "q");
        double *d = calloc(q->count, sizeof *d);
        msa_err e = {{0}};
        int64_t sh[3] = {q->shape[0], q->shape[1], q->shape[2]};
        CU_ASSERT_FATAL(msa_npz_add(&z, "q", MSA_DT_FP64, 3, sh, d, &e) == 0);
        free(d);
    }
    case_row("wrong storage dtype", &z, "q");
}

static void test_malformed_containers(void)
{
    msa_npz z;
    valid_npz(&z, 0);
    void *buf;
    size_t len;
    msa_err e = {{0}};
    CU_ASSERT_FATAL(msa_npz_serialize(&z, 1, &buf, &len, &e) == 0);
    msa_npz_free(&z);
    char path[PATH_MAX + 32], args[2 * PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/broken.npz", bi_dir);
    snprintf(args, sizeof args, "ref %s -o %s/out.npz", path, bi_dir);
    size_t cuts[] = {0, 3, 30, len / 3, len / 2, len - 30, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CU_ASSERT_FATAL(msa_write_atomic(path, buf, cuts[i], &e) == 0);
        expect_bad("truncated", args, "broken.npz", NULL);
    }
    unsigned char *b = buf;
    b[0] ^= 0xFF; /* wrong zip magic */
    CU_ASSERT_FATAL(msa_write_atomic(path, b, len, &e) == 0);
    expect_bad("bad magic", args, "broken.npz", NULL);
    b[0] ^= 0xFF;
    b[len / 2] ^= 0x55; /* damage inside a deflate stream or its CRC */
    CU_ASSERT_FATAL(msa_write_atomic(path, b, len, &e) == 0);
    expect_bad("bad deflate / CRC", args, "broken.npz", NULL);
    free(buf);
    /* not a file at all */
    snprintf(args, sizeof args, "ref %s/missing.npz -o %s/out.npz", bi_dir, bi_dir);
    expect_bad("missing file", args, "missing.npz", NULL);
    snprintf(args, sizeof args, "ref %s -o %s/out.npz", bi_dir, bi_dir);
    expect_bad("a folder", args, bi_dir, NULL);
}

static void test_bad_arguments(void)
{
    char args[PATH_MAX + 64];
    expect_bad("unknown command", "frobnicate", "frobnicate", NULL);
    expect_bad("unknown option", "ref --bogus", "--bogus", NULL);
    expect_bad("missing value", "gen --hq", "--hq", NULL);
    expect_bad("bad integer", "gen --hq 3x -o /nonexistent/x.npz", "--hq", NULL);
    expect_bad("out of range", "gen --block 0 -o /nonexistent/x.npz", "--block", NULL);
    expect_bad("bad mode", "ref a.npz -o b.npz --mode approximate", "--mode", NULL);
    expect_bad("bad tier", "verify --tier medium", "--tier", NULL);
    expect_bad("bench list with a shell word", "verify --bench-prefill '8192;true'", "--bench-prefill", NULL);
    expect_bad("bench list, empty item", "verify --bench-decode 8192,,16", "--bench-decode", NULL);
    expect_bad("bench list, trailing comma", "verify --bench-decode 8192,", "--bench-decode", NULL);
    expect_bad("bench list, zero", "verify --bench-prefill 0", "--bench-prefill", NULL);
    expect_bad("bench list, too long", "verify --bench-prefill 99999999999", "--bench-prefill", NULL);
    { /* the valid lists, an empty one included, pass the parser (--help then stops it) */
        char err[4096];
        CU_ASSERT(run_msa("verify --bench-prefill 8192,1048576 --bench-decode '' --help", err, sizeof err) == 0);
    }
    expect_bad("bad dtype", "gen --dtype bf17 -o /nonexistent/x.npz", "--dtype", NULL);
    snprintf(args, sizeof args, "gen --topk 0 -o %s/out.npz", bi_dir);
    expect_bad("k = 0", args, "--topk", NULL);
    expect_bad("unknown profile", "judge a.npz b.npz --arith no-such-profile", "no-such-profile", NULL);
}

static void test_bad_plugins(void)
{
    char args[PATH_MAX * 2 + 64], src[PATH_MAX + 16], so[PATH_MAX + 16], cmd[PATH_MAX * 3];
    /* a shared library without the entry point */
    snprintf(src, sizeof src, "%s/nosym.c", bi_dir);
    snprintf(so, sizeof so, "%s/nosym.so", bi_dir);
    FILE *f = fopen(src, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("int msa_not_a_backend(void) { return 1; }\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -o '%s' '%s' 2>/dev/null", so, src);
    if (system(cmd) != 0) {
        fprintf(stderr, "\nbadinput: no C compiler, plugin rows skipped\n");
        return;
    }
    snprintf(args, sizeof args, "fuzz --kernel %s --cases 1", so);
    expect_bad("plugin without msa_backend_v1", args, "nosym.so", "msa_backend_v1");
    /* a plugin declaring another ABI version */
    snprintf(src, sizeof src, "%s/badabi.c", bi_dir);
    snprintf(so, sizeof so, "%s/badabi.so", bi_dir);
    f = fopen(src, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("#include <stdint.h>\nstruct b { uint32_t abi_version; const char *name; };\n"
          "static const struct b be = { 999u, \"future\" };\n"
          "const void *msa_backend_v1(void) { return &be; }\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -o '%s' '%s' 2>/dev/null", so, src);
    CU_ASSERT_FATAL(system(cmd) == 0);
    snprintf(args, sizeof args, "fuzz --kernel %s --cases 1", so);
    expect_bad("plugin with a wrong ABI version", args, "badabi.so", "999");
    snprintf(args, sizeof args, "fuzz --kernel %s/no-such-lib.so --cases 1", bi_dir);
    expect_bad("missing plugin", args, "no-such-lib.so", NULL);
}

int msa_suite_badinput(void)
{
    CU_pSuite s = CU_add_suite("badinput", bi_init, bi_clean);
    if (!s) return -1;
    if (!CU_add_test(s, "malformed case files: exit 2, one line, file and field named", test_malformed_case_files) ||
        !CU_add_test(s, "truncated, corrupt and missing containers", test_malformed_containers) ||
        !CU_add_test(s, "bad command-line arguments", test_bad_arguments) ||
        !CU_add_test(s, "plugins with a missing symbol or wrong ABI version", test_bad_plugins))
        return -1;
    return 0;
}
