/* test_fuzz.c - the "fuzz" suite: the generator is deterministic and its cases are
 * valid, shards partition the stream, coverage counts what a hand-built case has, a
 * planted bug is found and shrinks to a few blocks that still tell it from cpu-sim, a
 * crashing and a hanging backend become Crashed and Timeout without stopping the
 * campaign, reports and merge agree with the campaign, and the mutant check kills bugs
 * and passes legal variants on a reduced set.  Campaigns here use small contexts so the
 * suite stays well under a minute.  Every test prints its seed. */
#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/fsutil.h"
#include "../common/json.h"
#include "../fuzz/fuzz.h"
#include "../fuzz/fuzz_int.h"
#include "../kernels/cpusim.h"
#include "../oracle/oracle.h"
#include "../reference/ref.h"

#define SEED 20261122u
#define SMALL_CONTEXT 96 /* tokens: keeps every test campaign's cases cheap */

static void init_opts(msa_fuzz_opts *o, const char *kernel, long cases)
{
    msa_fuzz_opts_init(o);
    o->kernel = kernel;
    o->seed = SEED;
    o->max_cases = cases;
    o->gen.max_context = SMALL_CONTEXT;
    o->quiet = 1;
    o->shrink = 0;
    o->steer = 0;
}

/* ---- generator ---- */
static void test_generator_deterministic(void)
{
    printf("[seed %u] ", SEED);
    msa_fuzz_gen_cfg g = {SMALL_CONTEXT, 0};
    int distinct = 0;
    uint64_t prev = 0;
    for (uint64_t id = 0; id < 60; id++) {
        msa_case a, b;
        msa_err e;
        CU_ASSERT_FATAL(msa_fuzz_generate(&g, SEED, id, &a, &e) == 0);
        CU_ASSERT_FATAL(msa_fuzz_generate(&g, SEED, id, &b, &e) == 0);
        CU_ASSERT_EQUAL(fz_hash_case(&a), fz_hash_case(&b));
        CU_ASSERT_STRING_EQUAL(a.label, b.label);
        CU_ASSERT(msa_case_validate(&a, 1, &e) == 0);
        distinct += fz_hash_case(&a) != prev;
        prev = fz_hash_case(&a);
        msa_case_free(&a);
        msa_case_free(&b);
    }
    CU_ASSERT(distinct == 60); /* consecutive ids never repeat a case */
    msa_case a, b;
    msa_err e;
    CU_ASSERT_FATAL(msa_fuzz_generate(&g, SEED, 5, &a, &e) == 0);
    CU_ASSERT_FATAL(msa_fuzz_generate(&g, SEED + 1, 5, &b, &e) == 0);
    CU_ASSERT(fz_hash_case(&a) != fz_hash_case(&b)); /* the seed matters */
    msa_case_free(&a);
    msa_case_free(&b);
}

/* Every steered recipe builds a valid case, and the structural ones hit their class. */
static void test_steered_cases_hit(void)
{
    static const int must[] = {MSA_COV_PREFILL, MSA_COV_DECODE, MSA_COV_NONCAUSAL, MSA_COV_ZERO_LEN,
                               MSA_COV_EMPTY_ROW, MSA_COV_PARTIAL_LAST, MSA_COV_PAGE_GAPS, MSA_COV_NVIS_GT_K,
                               MSA_COV_RATIO16, MSA_COV_D256, MSA_COV_B128, MSA_COV_DT_E4M3,
                               MSA_COV_PROBE_DIAG, MSA_COV_PROBE_KTH, MSA_COV_NO_FREE_SLOT};
    msa_fuzz_gen_cfg g = {256, 0};
    for (int c = 0; c < MSA_COV_N; c++) {
        msa_case k;
        msa_err e;
        uint64_t id = MSA_FUZZ_STEER_BIT | ((uint64_t)c << 32);
        CU_ASSERT_FATAL(msa_fuzz_generate(&g, SEED, id, &k, &e) == 0);
        CU_ASSERT(msa_case_validate(&k, 1, &e) == 0);
        uint64_t bits = msa_fuzz_coverage(&k, NULL, NULL);
        for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
            if (must[i] == c && !((bits >> c) & 1)) {
                printf("steered class %s missed: %s\n", msa_cov_name(c), k.label);
                CU_FAIL("steered case misses its class");
            }
        msa_case_free(&k);
    }
}

/* ---- coverage of a hand-built case ---- */
static void tiny_case(msa_case *c, int batch, const int *lq, const int *lk, int B, int topk)
{
    memset(c, 0, sizeof *c);
    c->dtype = c->index_dtype = MSA_DT_BF16;
    c->block_size = B, c->topk = topk, c->causal = 1;
    c->softmax_scale = c->index_scale = 0.125;
    c->batch = batch, c->Hq = 2, c->Hkv = c->HI = 1, c->D = 8, c->DI = 8;
    c->cu_q = msa_calloc((size_t)batch + 1, sizeof(int32_t));
    c->cu_k = msa_calloc((size_t)batch + 1, sizeof(int32_t));
    for (int b = 0; b < batch; b++) c->cu_q[b + 1] = c->cu_q[b] + lq[b], c->cu_k[b + 1] = c->cu_k[b] + lk[b];
    c->Tq = c->cu_q[batch], c->Tk = c->cu_k[batch];
    c->q = msa_calloc((size_t)c->Tq * 16, 2);
    c->index_q = msa_calloc((size_t)c->Tq * 8, 2);
    c->k = msa_calloc((size_t)c->Tk * 8, 2);
    c->v = msa_calloc((size_t)c->Tk * 8, 2);
    c->index_k = msa_calloc((size_t)c->Tk * 8, 2);
    snprintf(c->label, sizeof c->label, "tiny probe=diag");
}

static void test_coverage_hand_case(void)
{
    /* sequence 0: 2 queries over 20 keys (decode, partial last block, queries at pos 18
     * and 19 see 19 and 20 keys: diagonal mid-block, nvis 2 > k 1); sequence 1: empty */
    int lq[2] = {2, 0}, lk[2] = {20, 0};
    msa_case c;
    msa_err e;
    tiny_case(&c, 2, lq, lk, 16, 1);
    CU_ASSERT_FATAL(msa_case_validate(&c, 0, &e) == 0);
    uint64_t b = msa_fuzz_coverage(&c, NULL, NULL);
#define HAS(x) (((b) >> (x)) & 1)
    CU_ASSERT(HAS(MSA_COV_DECODE) && HAS(MSA_COV_ZERO_LEN) && HAS(MSA_COV_PARTIAL_LAST));
    CU_ASSERT(HAS(MSA_COV_DIAG_PARTIAL) && HAS(MSA_COV_NVIS_GT_K) && HAS(MSA_COV_RAGGED_BATCH));
    CU_ASSERT(HAS(MSA_COV_GQA_SHARING) && HAS(MSA_COV_RATIO2) && HAS(MSA_COV_PROBE_DIAG) && HAS(MSA_COV_B16));
    CU_ASSERT(!HAS(MSA_COV_PREFILL) && !HAS(MSA_COV_NONCAUSAL) && !HAS(MSA_COV_EMPTY_ROW) && !HAS(MSA_COV_NVIS_LT_K));
    CU_ASSERT(!HAS(MSA_COV_PAGED_SHUFFLED) && !HAS(MSA_COV_DIAG_BLOCK_END) && !HAS(MSA_COV_DT_FP16));
    msa_case_free(&c);
    /* 3 queries over 1 key: two rows see nothing (empty rows); nvis 1 < k 2 */
    int lq2[1] = {3}, lk2[1] = {1};
    tiny_case(&c, 1, lq2, lk2, 16, 2);
    b = msa_fuzz_coverage(&c, NULL, NULL);
    CU_ASSERT(HAS(MSA_COV_EMPTY_ROW) && HAS(MSA_COV_ONE_TOKEN) && HAS(MSA_COV_NVIS_LT_K) && !HAS(MSA_COV_ZERO_LEN));
#undef HAS
    msa_case_free(&c);
}

/* ---- row sampling: a one-row sub-case keeps the row's position and visible keys ---- */
static void test_subcase_rows_exact(void)
{
    printf("[seed %u] ", SEED);
    msa_fuzz_gen_cfg g = {64, 3};
    int checked = 0;
    for (uint64_t id = 0; id < 12; id++) {
        msa_case c, sub;
        msa_err e;
        CU_ASSERT_FATAL(msa_fuzz_generate(&g, SEED, id, &c, &e) == 0);
        if (strstr(c.label, "nonfinite") || c.Tq == 0) { msa_case_free(&c); continue; }
        fz_view v;
        fz_view_identity(&c, &v);
        int t = c.Tq - 1, b, nk = fz_row_nkeys(&c, t, &b);
        v.nseq = 1;
        v.seq[0].src_b = b, v.seq[0].q0 = t - c.cu_q[b], v.seq[0].nq = 1;
        v.seq[0].k0 = 0, v.seq[0].lk = c.causal ? nk : msa_case_lk(&c, b);
        int map[1];
        CU_ASSERT_FATAL(fz_subcase(&c, &v, &sub, map, &e) == 0);
        CU_ASSERT_EQUAL(map[0], t);
        size_t n = (size_t)c.Tq * c.Hq;
        double *o = calloc(n * c.D, sizeof(double)), *l = calloc(n, sizeof(double));
        double *so = calloc((size_t)c.Hq * c.D, sizeof(double)), *sl = calloc((size_t)c.Hq, sizeof(double));
        CU_ASSERT_FATAL(o && l && so && sl);
        CU_ASSERT_FATAL(msa_ref_attend(&c, MSA_REF_EXACT, NULL, o, l, &e) == 0);
        CU_ASSERT_FATAL(msa_ref_attend(&sub, MSA_REF_EXACT, NULL, so, sl, &e) == 0);
        CU_ASSERT(memcmp(o + (size_t)t * c.Hq * c.D, so, sizeof(double) * c.Hq * c.D) == 0);
        for (int h = 0; h < c.Hq; h++) /* -inf == -inf for empty rows */
            CU_ASSERT(l[(size_t)t * c.Hq + h] == sl[h]);
        free(o), free(l), free(so), free(sl);
        msa_case_free(&sub);
        msa_case_free(&c);
        checked++;
    }
    CU_ASSERT(checked >= 6);
}

/* ---- sharding ---- */
typedef struct {
    uint64_t ids[256];
    int n;
} id_list;

static void collect(void *user, const msa_fuzz_result *r)
{
    id_list *l = user;
    if (l->n < 256) l->ids[l->n++] = r->id;
}

static int has_id(const id_list *l, uint64_t id)
{
    for (int i = 0; i < l->n; i++) if (l->ids[i] == id) return 1;
    return 0;
}

static void test_shards_partition(void)
{
    printf("[seed %u] ", SEED);
    msa_fuzz_opts o;
    msa_fuzz_summary s;
    msa_err e;
    id_list all = {{0}, 0}, part[3];
    init_opts(&o, "cpu-sim", 9);
    o.gen.max_context = 48;
    o.on_result = collect, o.user = &all;
    CU_ASSERT_FATAL(msa_fuzz_campaign(&o, &s, &e) == 0);
    CU_ASSERT_EQUAL(all.n, 9);
    int total = 0;
    for (int i = 0; i < 3; i++) {
        memset(&part[i], 0, sizeof part[i]);
        o.shard_i = i, o.shard_n = 3, o.max_cases = 3, o.user = &part[i];
        CU_ASSERT_FATAL(msa_fuzz_campaign(&o, &s, &e) == 0);
        total += part[i].n;
        for (int j = 0; j < part[i].n; j++) {
            CU_ASSERT(part[i].ids[j] % 3 == (uint64_t)i);
            CU_ASSERT(has_id(&all, part[i].ids[j]));
            for (int m = 0; m < i; m++) CU_ASSERT(!has_id(&part[m], part[i].ids[j]));
        }
    }
    CU_ASSERT_EQUAL(total, 9);
}

/* ---- a planted bug: found, shrunk, stored, replayable ---- */
static void rm_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static void test_planted_bug_shrinks(void)
{
    printf("[seed %u] ", SEED);
    char dir[] = "/tmp/msa-test-fuzz-XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    msa_fuzz_opts o;
    msa_fuzz_summary s;
    msa_err e;
    init_opts(&o, "cpu-sim:diag-drop", 40);
    o.corpus_dir = dir, o.shrink = 1, o.stop_after = 1;
    CU_ASSERT_FATAL(msa_fuzz_campaign(&o, &s, &e) == 0);
    CU_ASSERT(s.failures == 1);
    CU_ASSERT(s.first_fail_repro[0] != 0);
    CU_ASSERT_FATAL(s.first_fail_case[0] != 0);
    msa_case c;
    CU_ASSERT_FATAL(fz_load_case(s.first_fail_case, &c, &e) == 0);
    int blocks = 0;
    for (int b = 0; b < c.batch; b++) blocks += (msa_case_lk(&c, b) + c.block_size - 1) / c.block_size;
    printf("shrunk to %s (%d blocks) ", s.first_fail_shrunk_desc, blocks);
    CU_ASSERT(c.batch == 1 && blocks <= 3 && c.Hkv == 1 && c.Hq == 1);
    msa_case_free(&c);
    /* the stored case still kills diag-drop and passes plain cpu-sim */
    char path[512];
    snprintf(path, sizeof path, "%s", s.first_fail_case);
    const char *files[1] = {path};
    msa_fuzz_opts r;
    init_opts(&r, "cpu-sim:diag-drop", 0);
    r.case_files = files, r.n_case_files = 1, r.no_stream = 1;
    CU_ASSERT(msa_fuzz_campaign(&r, &s, &e) == 0 && s.cases == 1 && s.failures == 1);
    r.kernel = "cpu-sim";
    CU_ASSERT(msa_fuzz_campaign(&r, &s, &e) == 0 && s.cases == 1 && s.by_disp[MSA_V_PASSED] == 1);
    /* and the next campaign replays the corpus first */
    init_opts(&r, "cpu-sim:diag-drop", 1);
    r.corpus_dir = dir;
    CU_ASSERT(msa_fuzz_campaign(&r, &s, &e) == 0 && s.corpus_cases == 1 && s.first_fail_ordinal == 1);
    rm_tree(dir);
}

/* ---- a backend that crashes on some cases and hangs on others ---- */
static msa_backend g_bad;

static int bad_forward(void *ctx, const msa_problem *p, int32_t *topk, void *out, float *lse)
{
    if (p->total_q % 3 == 0) { /* die by the signal itself, past any sanitizer's handler */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    if (p->total_q % 3 == 1)
        for (;;) pause();
    return msa_cpusim_backend()->forward(ctx, p, topk, out, lse);
}

static void test_crash_and_hang_isolated(void)
{
    printf("[seed %u] ", SEED);
    g_bad = *msa_cpusim_backend();
    g_bad.name = "fuzz-test-bad";
    g_bad.forward = bad_forward;
    CU_ASSERT_FATAL(msa_kernel_register("fuzz-test-bad", &g_bad) == 0);
    msa_fuzz_opts o;
    msa_fuzz_summary s;
    msa_err e;
    init_opts(&o, "fuzz-test-bad", 12);
    o.case_timeout_s = 1.0;
    o.gen.max_context = 48;
    CU_ASSERT_FATAL(msa_fuzz_campaign(&o, &s, &e) == 0);
    printf("crashed %ld timeout %ld passed %ld ", s.by_disp[MSA_V_CRASHED], s.by_disp[MSA_V_TIMEOUT],
           s.by_disp[MSA_V_PASSED]);
    CU_ASSERT(s.cases == 12); /* the campaign went on */
    CU_ASSERT(s.by_disp[MSA_V_CRASHED] >= 1);
    CU_ASSERT(s.by_disp[MSA_V_TIMEOUT] >= 1);
    CU_ASSERT(s.by_disp[MSA_V_CRASHED] + s.by_disp[MSA_V_TIMEOUT] + s.by_disp[MSA_V_PASSED] +
                  s.by_disp[MSA_V_NOTSUPPORTED] == 12);
}

/* ---- reports and merge ---- */
static long json_num(const msa_json *j, const char *k)
{
    const msa_json *v = msa_json_get(j, k);
    return v && v->type == MSA_JSON_NUM ? (long)v->num : -1;
}

static void test_reports_and_merge(void)
{
    printf("[seed %u] ", SEED);
    char dir[] = "/tmp/msa-test-fuzz-XXXXXX", out[600], a[600], b[600], junit[600];
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    snprintf(out, sizeof out, "%s/merged", dir);
    snprintf(a, sizeof a, "%s/summary-0.json", dir);
    snprintf(b, sizeof b, "%s/summary-1.json", dir);
    snprintf(junit, sizeof junit, "%s/junit.xml", dir);
    msa_fuzz_opts o;
    msa_fuzz_summary s0, s1;
    msa_err e;
    init_opts(&o, "cpu-sim:noncausal", 4);
    o.gen.max_context = 48;
    o.summary_path = a, o.junit_path = junit, o.shard_n = 2;
    CU_ASSERT_FATAL(msa_fuzz_campaign(&o, &s0, &e) == 0);
    o.summary_path = b, o.junit_path = NULL, o.shard_i = 1;
    CU_ASSERT_FATAL(msa_fuzz_campaign(&o, &s1, &e) == 0);
    void *buf;
    size_t len;
    CU_ASSERT_FATAL(msa_read_file(junit, 1 << 20, &buf, &len, &e) == 0);
    CU_ASSERT(strstr(buf, "<testsuite name=\"msa-fuzz\"") != NULL);
    CU_ASSERT(strstr(buf, "name=\"nvis&lt;k\"") != NULL && strstr(buf, "nvis<k") == NULL); /* escaped */
    CU_ASSERT((strstr(buf, "<failure") != NULL) == (s0.failures > 0));
    if (s0.failures) CU_ASSERT(strstr(buf, "repro: ") != NULL);
    free(buf);
    char *dirs[1] = {dir};
    long mfail = -1;
    FILE *quiet = tmpfile(); /* the merged summary's printout is not this test's output */
    CU_ASSERT(fz_merge(out, dirs, 1, quiet ? quiet : stderr, &mfail, &e) == 0);
    if (quiet) fclose(quiet);
    CU_ASSERT_EQUAL(mfail, s0.failures + s1.failures);
    char mpath[700];
    snprintf(mpath, sizeof mpath, "%s/summary-merged.json", out);
    msa_json j;
    CU_ASSERT_FATAL(msa_read_file(mpath, 1 << 20, &buf, &len, &e) == 0);
    CU_ASSERT_FATAL(msa_json_parse(buf, len, mpath, &j, &e) == 0);
    CU_ASSERT_EQUAL(json_num(&j, "cases"), s0.cases + s1.cases);
    CU_ASSERT_EQUAL(json_num(&j, "failures"), s0.failures + s1.failures);
    msa_json_free(&j);
    free(buf);
    rm_tree(dir);
}

/* ---- mutant kill check on a reduced set ---- */
static void test_mutant_kill_reduced(void)
{
    printf("[seed %u] ", SEED);
    static const char *names[] = {"diag-drop", "shared-selection", "empty-row-nan", "wrong-scale", "tie-high",
                                  "order-desc", "none"};
    msa_mutant_opts m;
    memset(&m, 0, sizeof m);
    m.names = names, m.n_names = 7, m.seed = SEED, m.cases = 80;
    m.gen.max_context = SMALL_CONTEXT;
    msa_mutant_row *rows = NULL;
    int n = 0;
    msa_err e;
    CU_ASSERT_FATAL(msa_fuzz_mutant_check(&m, &rows, &n, &e) == 0);
    CU_ASSERT_EQUAL(n, 7);
    for (int i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(rows[i].legal, i >= 4); /* legality comes from cpu-sim's table */
        CU_ASSERT_EQUAL(rows[i].killed, !rows[i].legal);
    }
    CU_ASSERT(msa_fuzz_mutant_table(stdout, rows, n) == 1);
    free(rows);
}

int msa_suite_fuzz(void)
{
    CU_pSuite s = CU_add_suite("fuzz", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "generator is deterministic and valid", test_generator_deterministic) ||
        !CU_add_test(s, "steered cases hit their classes", test_steered_cases_hit) ||
        !CU_add_test(s, "coverage of a hand-built case", test_coverage_hand_case) ||
        !CU_add_test(s, "row sampling keeps a row's result", test_subcase_rows_exact) ||
        !CU_add_test(s, "shards partition the stream", test_shards_partition) ||
        !CU_add_test(s, "planted bug shrinks to a few blocks", test_planted_bug_shrinks) ||
        !CU_add_test(s, "crash and hang are isolated", test_crash_and_hang_isolated) ||
        !CU_add_test(s, "reports and merge", test_reports_and_merge) ||
        !CU_add_test(s, "mutant kill check (reduced)", test_mutant_kill_reduced))
        return -1;
    return 0;
}
