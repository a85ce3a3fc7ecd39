/* verify_checks.c - the checks `msa verify` runs besides formats: reference fast vs
 * exact, the oracle's self-test on planted defects, the mutant kill check, corpus and
 * fuzz campaigns per kernel, device extras (graph replay, CUDA mutants), a baseline
 * comparison, traces (replay and recall) and the GPU benchmark table.  Each fills one
 * msa_vcheck and may append a markdown section to the report. */
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/numfmt.h"
#include "../common/rng.h"
#include "../fuzz/fuzz.h"
#include "../traces/traces.h"
#include "verify.h"

/* Folder of the running executable (for build/mutants, build/msa_bench_gpu). */
static void exe_dir(char *buf, size_t n)
{
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0) {
        snprintf(buf, n, ".");
        return;
    }
    buf[len] = 0;
    char *slash = strrchr(buf, '/');
    if (slash) *slash = 0;
}

static double tier_pick(const msa_vctx *x, double quick, double full)
{
    return x->tier == MSA_TIER_QUICK ? quick : full;
}

/* ---------------------------------------------------------------- reference */

/* Random small case number i of the verify stream: shapes drawn from the counter RNG,
 * finite data through msa_case_generate (the fuzzer's generator adds non-finite padding
 * and probes; these checks want plain data).  topk_all: k covers every visible block. */
static int small_case(const msa_vctx *x, uint64_t i, int topk_all, msa_case *c, msa_err *e)
{
    static const int ratios[] = {1, 2, 3, 4, 8}, dims[] = {16, 32, 64}, blocks[] = {4, 8, 16, 32};
    msa_rng r;
    msa_rng_init(&r, x->seed, 0x7e51f1ull + i);
    int batch = (int)msa_rng_next_range(&r, 1, 3), lq[3], lk[3];
    int B = blocks[msa_rng_next_range(&r, 0, 3)];
    for (int b = 0; b < batch; b++) {
        lk[b] = (int)msa_rng_next_range(&r, 0, 96);
        lq[b] = msa_rng_next_range(&r, 0, 2) ? lk[b] : (int)msa_rng_next_range(&r, 0, lk[b] < 16 ? lk[b] : 16);
    }
    int Hkv = (int)msa_rng_next_range(&r, 1, 2), k = (int)msa_rng_next_range(&r, 1, 6);
    int local = (int)msa_rng_next_range(&r, 0, k > 1 ? 1 : k), init = (int)msa_rng_next_range(&r, 0, k - local > 1 ? 1 : k - local);
    msa_case_params p = {.batch = batch, .lq = lq, .lk = lk, .Hq = Hkv * ratios[msa_rng_next_range(&r, 0, 4)], .Hkv = Hkv,
                         .D = dims[msa_rng_next_range(&r, 0, 2)], .DI = dims[msa_rng_next_range(&r, 0, 2)],
                         .block_size = B, .topk = topk_all ? 1000 : k, .init_blocks = topk_all ? 0 : init,
                         .local_blocks = topk_all ? 0 : local, .dtype = msa_rng_next_range(&r, 0, 3) ? MSA_DT_BF16 : MSA_DT_FP16,
                         .causal = msa_rng_next_range(&r, 0, 7) != 0, .paged = (int)msa_rng_next_range(&r, 0, 2),
                         .dist = (msa_dist)msa_rng_next_range(&r, 0, 3), .index_dist = (msa_dist)msa_rng_next_range(&r, 0, 2),
                         .q_scale = 1.0 + 2.0 * msa_rng_next_uniform(&r), .seed = x->seed + i};
    p.index_dtype = p.dtype;
    return msa_case_generate(&p, c, e);
}

void msa_verify_reference(msa_vctx *x, msa_vcheck *c)
{
    int ncases = (int)tier_pick(x, 24, 200);
    double worst = 0;
    char worst_desc[200] = "";
    msa_err e = {{0}};
    for (int i = 0; i < ncases; i++) {
        msa_case cs;
        int all = i % 4 == 3;
        if (small_case(x, (uint64_t)i, all, &cs, &e)) goto fail;
        msa_ref_result ex, fa;
        memset(&ex, 0, sizeof ex);
        memset(&fa, 0, sizeof fa);
        int st = msa_ref_run(&cs, MSA_REF_EXACT, &ex, &e);
        if (!st) st = msa_ref_run(&cs, MSA_REF_FAST, &fa, &e);
        if (st) {
            msa_case_free(&cs);
            msa_ref_result_free(&ex);
            msa_ref_result_free(&fa);
            goto fail;
        }
        size_t nrow = (size_t)cs.Tq * cs.Hq;
        const char *bad = NULL;
        /* fast mode's derived bound (docs/NUMERICS.md, R5), per row: with S >= max_j |c s_j|
         * and Vmax >= max |v| over the row's keys, |out err| <= (2u(7S+2) + 7u) Vmax and
         * |lse err| <= u(10S + 4 + |lse|).  S and Vmax are taken over the whole sequence
         * (an upper bound of the visible set's). */
        const double u = 0x1p-53;
        for (size_t r = 0; r < nrow && !bad; r++) {
            int t = (int)(r / cs.Hq), h = (int)(r % cs.Hq), g = h / (cs.Hq / cs.Hkv);
            msa_qinfo qi = msa_case_qinfo(&cs, t);
            double S = 0, vmax = 0;
            for (int j = 0; j < msa_case_lk(&cs, qi.b); j++) {
                int64_t row = msa_case_kv_row(&cs, qi.b, j);
                double dot = 0;
                for (int d = 0; d < cs.D; d++) {
                    dot += msa_case_q(&cs, t, h, d) * msa_case_k(&cs, row, g, d);
                    vmax = fmax(vmax, fabs(msa_case_v(&cs, row, g, d)));
                }
                S = fmax(S, fabs(dot * cs.softmax_scale) * (1 + 0x1p-40)); /* slack for this estimate */
            }
            double bo = (2 * u * (7 * S + 2) + 7 * u) * vmax;
            for (int d = 0; d < cs.D; d++) {
                double f = fa.out[r * cs.D + d], x0 = ex.out[r * cs.D + d], err = fabs(f - x0);
                if (isnan(f) != isnan(x0)) bad = "NaN in fast out where exact is a number";
                else if (bo > 0 && err / bo > worst) worst = err / bo, msa_case_describe(&cs, worst_desc, sizeof worst_desc);
                if (err > bo) bad = "fast out beyond its derived bound (NUMERICS.md R5)";
            }
            double bl = u * (10 * S + 4 + fabs(ex.lse[r]));
            if (isinf(ex.lse[r]) ? fa.lse[r] != ex.lse[r] : fabs(fa.lse[r] - ex.lse[r]) > bl)
                bad = "fast lse beyond its derived bound (NUMERICS.md R5)";
        }
        if (!bad && all) { /* metamorphic: every block selected => MSA == dense, bitwise */
            for (size_t j = 0; j < nrow * cs.D && !bad; j++)
                if (memcmp(&ex.out[j], &ex.dense_out[j], sizeof(double))) bad = "exact MSA with every block selected differs from exact dense";
            for (size_t j = 0; j < nrow && !bad; j++)
                if (memcmp(&ex.lse[j], &ex.dense_lse[j], sizeof(double))) bad = "exact MSA lse with every block selected differs from dense";
        }
        if (bad) {
            c->disp = MSA_V_INCORRECT;
            snprintf(c->summary, sizeof c->summary, "%s", bad);
            msa_case_describe(&cs, c->detail, sizeof c->detail);
            snprintf(c->repro, sizeof c->repro, "msa verify --seed %llu (reference case %d)", (unsigned long long)x->seed, i);
        }
        msa_case_free(&cs);
        msa_ref_result_free(&ex);
        msa_ref_result_free(&fa);
        if (bad) return;
        msa_vprogress(x, "reference", "%d/%d cases", i + 1, ncases);
    }
    c->disp = MSA_V_PASSED;
    snprintf(c->summary, sizeof c->summary,
             "%d random cases: fast within its derived bound (worst observed/bound %.3g: %s); every-block MSA == dense bitwise",
             ncases, worst, worst_desc);
    return;
fail:
    c->disp = MSA_V_CRASHED;
    snprintf(c->summary, sizeof c->summary, "reference error: %s", e.msg);
}

/* ---------------------------------------------------------------- oracle self-test */

/* One planted defect applied to exact results; `legal` ones must pass. */
typedef struct {
    const char *name;
    int legal;
} planted;

static const planted plants[] = {
    {"exact rounded to bf16", 1}, {"exact rounded to fp32", 1}, {"lse in log2", 0},
    {"one element NaN", 0},       {"one element unwritten (0)", 0}, {"heads of two groups swapped", 0},
    {"duplicate id", 0},          {"one selected block dropped", 0},
};

static int apply_plant(const msa_case *cs, int p, int32_t *topk, double *out, float *lse, msa_arith *a)
{
    size_t nrow = (size_t)cs->Tq * cs->Hq, n = nrow * cs->D;
    int ok = 1;
    switch (p) {
    case 0: a->out_dtype = MSA_DT_BF16; for (size_t i = 0; i < n; i++) out[i] = msa_round_bf16(out[i]); break;
    case 1: a->out_dtype = MSA_DT_FP32; for (size_t i = 0; i < n; i++) out[i] = msa_round_fp32(out[i]); break;
    case 2: for (size_t i = 0; i < nrow; i++) lse[i] = (float)(lse[i] / log(2.0)); break;
    case 3: out[n / 2] = NAN; break;
    case 4: { size_t i = n / 2; while (i < n && out[i] == 0) i++; ok = i < n; if (ok) out[i] = 0; } break;
    case 5: { ok = cs->Hkv > 1; if (!ok) break;
        int h2 = cs->Hq - 1;
        for (int t = 0; t < cs->Tq; t++)
            for (int d = 0; d < cs->D; d++) {
                double *x0 = &out[((size_t)t * cs->Hq) * cs->D + d], *x1 = &out[((size_t)t * cs->Hq + h2) * cs->D + d];
                double tmp = *x0; *x0 = *x1; *x1 = tmp;
            }
        } break;
    case 6: case 7: { ok = 0;
        for (size_t r = 0; r < (size_t)cs->HI * cs->Tq && !ok; r++) {
            int32_t *s = &topk[r * cs->topk];
            if (cs->topk >= 2 && s[0] >= 0 && s[1] >= 0) {
                if (p == 6) s[1] = s[0];
                else { for (int j = 0; j + 1 < cs->topk; j++) s[j] = s[j + 1]; s[cs->topk - 1] = -1; }
                ok = 1;
            }
        }
        } break;
    }
    return ok;
}

void msa_verify_oracle(msa_vctx *x, msa_vcheck *c)
{
    int ncases = (int)tier_pick(x, 6, 30), np = (int)(sizeof plants / sizeof plants[0]);
    long tried = 0, caught = 0, legal_ok = 0, legal_n = 0;
    msa_err e = {{0}};
    for (int i = 0; i < ncases; i++) {
        msa_case cs;
        if (small_case(x, 1000u + (uint64_t)i, 0, &cs, &e)) goto fail;
        msa_ref_result ex;
        memset(&ex, 0, sizeof ex);
        if (msa_ref_run(&cs, MSA_REF_EXACT, &ex, &e)) { msa_case_free(&cs); goto fail; }
        size_t nrow = (size_t)cs.Tq * cs.Hq, n = nrow * cs.D, nt = (size_t)cs.HI * cs.Tq * cs.topk;
        double *out = malloc(n * sizeof *out + 8);
        float *lse = malloc(nrow * sizeof *lse + 8);
        int32_t *topk = malloc(nt * sizeof *topk + 8);
        for (int p = 0; p < np && out && lse && topk; p++) {
            msa_arith a;
            msa_arith_profile("fp32", &a, &e);
            memcpy(out, ex.out, n * sizeof *out);
            memcpy(topk, ex.topk, nt * sizeof *topk);
            for (size_t r = 0; r < nrow; r++) lse[r] = (float)ex.lse[r];
            if (!apply_plant(&cs, p, topk, out, lse, &a)) continue;
            msa_verdict vs, va;
            if (msa_judge_forward(&cs, &a, topk, out, lse, MSA_REF_EXACT, &vs, &va, &e)) break;
            int passed = vs.disp == MSA_V_PASSED && va.disp == MSA_V_PASSED;
            if (plants[p].legal) {
                legal_n++, legal_ok += passed;
                if (!passed && c->disp != MSA_V_INCORRECT) {
                    c->disp = MSA_V_INCORRECT;
                    snprintf(c->detail, sizeof c->detail, "legal '%s' rejected on %s: %s %s", plants[p].name, cs.label,
                             vs.disp != MSA_V_PASSED ? vs.stage : va.stage, vs.disp != MSA_V_PASSED ? vs.detail : va.detail);
                }
            } else {
                tried++, caught += !passed;
                if (passed && c->disp != MSA_V_INCORRECT) {
                    c->disp = MSA_V_INCORRECT;
                    snprintf(c->detail, sizeof c->detail, "planted '%s' accepted on %s", plants[p].name, cs.label);
                }
            }
        }
        free(out), free(lse), free(topk);
        msa_ref_result_free(&ex);
        msa_case_free(&cs);
        if (e.msg[0]) goto fail;
    }
    if (c->disp != MSA_V_INCORRECT) c->disp = MSA_V_PASSED;
    snprintf(c->summary, sizeof c->summary, "%ld/%ld planted defects rejected, %ld/%ld legal variants accepted (%d cases)",
             caught, tried, legal_ok, legal_n, ncases);
    if (c->disp == MSA_V_INCORRECT) snprintf(c->repro, sizeof c->repro, "msa verify --seed %llu", (unsigned long long)x->seed);
    return;
fail:
    c->disp = MSA_V_CRASHED;
    snprintf(c->summary, sizeof c->summary, "reference/oracle error: %s", e.msg);
}

/* ---------------------------------------------------------------- mutants */

static void mutant_section(msa_vctx *x, const char *title, const msa_mutant_row *rows, int n)
{
    msa_sb_printf(&x->sections, "## %s\n\n| variant | kind | result | cases to detection | time to detection | caught by |\n|---|---|---|---:|---:|---|\n", title);
    for (int i = 0; i < n; i++) {
        const msa_mutant_row *r = &rows[i];
        int good = r->legal ? !r->killed : r->killed;
        msa_sb_printf(&x->sections, "| %s | %s | %s%s | %ld | %.2f s | %s |\n", r->name, r->legal ? "legal" : "bug",
                      r->killed ? "killed" : "passed", good ? "" : " **(WRONG)**", r->cases_to_detection,
                      r->seconds_to_detection, r->stage);
    }
    msa_sb_printf(&x->sections, "\n");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void mutant_check(msa_vctx *x, msa_vcheck *c, msa_mutant_opts *o, const char *title)
{
    msa_mutant_row *rows = NULL;
    int n = 0;
    msa_err e = {{0}};
    if (msa_fuzz_mutant_check(o, &rows, &n, &e)) {
        c->disp = MSA_V_CRASHED;
        snprintf(c->summary, sizeof c->summary, "mutant check error: %s", e.msg);
        return;
    }
    int ok = msa_fuzz_mutant_table(NULL, rows, n);
    int bugs = 0, killed = 0, legal = 0, legal_pass = 0;
    double *t = malloc(sizeof(double) * (size_t)(n + 1));
    int nt = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].legal) legal++, legal_pass += !rows[i].killed;
        else {
            bugs++, killed += rows[i].killed;
            if (rows[i].killed && t) t[nt++] = rows[i].seconds_to_detection;
        }
        if ((rows[i].legal ? rows[i].killed : !rows[i].killed) && !c->detail[0])
            snprintf(c->detail, sizeof c->detail, "%s variant '%s' was %s", rows[i].legal ? "legal" : "bug",
                     rows[i].name, rows[i].killed ? "rejected" : "not killed");
    }
    double med = 0;
    if (nt) {
        qsort(t, (size_t)nt, sizeof *t, cmp_double);
        med = t[nt / 2];
    }
    free(t);
    c->disp = ok ? MSA_V_PASSED : MSA_V_INCORRECT;
    snprintf(c->summary, sizeof c->summary, "%d/%d bug variants killed, %d/%d legal variants passed; median time to detection %.2f s",
             killed, bugs, legal_pass, legal, med);
    mutant_section(x, title, rows, n);
    free(rows);
}

void msa_verify_mutants(msa_vctx *x, msa_vcheck *c)
{
    char dir[PATH_MAX], pdir[PATH_MAX + 16];
    exe_dir(dir, sizeof dir);
    snprintf(pdir, sizeof pdir, "%s/mutants", dir);
    struct stat sb;
    msa_mutant_opts o;
    memset(&o, 0, sizeof o);
    o.plugin_dir = stat(pdir, &sb) == 0 ? pdir : NULL; /* real plugins when `make mutants` built them */
    o.seed = x->seed;
    o.cases = (long)tier_pick(x, 40, 120);
    o.gen.max_context = (int)tier_pick(x, 256, 512);
    mutant_check(x, c, &o, o.plugin_dir ? "Mutants (cpu-sim variants as plugins, build/mutants)" : "Mutants (cpu-sim variants)");
}

/* ---------------------------------------------------------------- campaigns */

static void campaign(msa_vctx *x, msa_vcheck *c, const char *kernel, int corpus_only)
{
    msa_fuzz_opts o;
    msa_fuzz_opts_init(&o);
    o.kernel = kernel;
    o.seed = x->seed;
    o.corpus_dir = x->corpus_dir;
    o.quiet = 1;
    o.gen.max_context = !strncmp(kernel, "cpu-sim", 7) ? (int)tier_pick(x, 512, 1024) : (int)tier_pick(x, 2048, 8192);
    /* full tier: sized to fit, with everything else, in about 8 minutes of one H100/H200
     * machine (16 cores); the CPU-side exact reference is the bottleneck, so cases run in
     * parallel workers (several processes may share the GPU). */
    int is_cpu = !strncmp(kernel, "cpu-sim", 7);
    o.budget_s = corpus_only ? 0 : tier_pick(x, 25, is_cpu ? 60 : 150) * (x->budget_scale > 1 ? 1e6 : 1);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.workers = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu;
    o.no_stream = corpus_only;
    o.shrink = 1;
    o.stop_after = 3;
    msa_fuzz_summary s;
    memset(&s, 0, sizeof s);
    msa_err e = {{0}};
    int st = msa_fuzz_campaign(&o, &s, &e);
    if (st) {
        c->disp = st == MSA_EINPUT || st == MSA_EUNSUPPORTED || st == MSA_EBACKEND ? MSA_V_NOTVERIFIED : MSA_V_CRASHED;
        snprintf(c->summary, sizeof c->summary, "%s", e.msg);
        return;
    }
    if (s.by_disp[MSA_V_CRASHED]) c->disp = MSA_V_CRASHED;
    else if (s.by_disp[MSA_V_TIMEOUT]) c->disp = MSA_V_TIMEOUT;
    else if (s.by_disp[MSA_V_INCORRECT]) c->disp = MSA_V_INCORRECT;
    else if (s.cases == 0 && corpus_only) c->disp = MSA_V_PASSED;
    else if (s.cases == s.by_disp[MSA_V_NOTSUPPORTED]) c->disp = MSA_V_NOTSUPPORTED;
    else c->disp = MSA_V_PASSED;
    snprintf(c->summary, sizeof c->summary, "%ld cases (%ld corpus, %ld sampled rows), %ld passed, %ld not supported, "
             "%ld failed; worst observed/bound %.3g; %.1f cases/s",
             s.cases, s.corpus_cases, s.sampled_cases, s.by_disp[MSA_V_PASSED], s.by_disp[MSA_V_NOTSUPPORTED],
             s.failures, s.worst_ratio, s.cases_per_s);
    if (s.failures) {
        snprintf(c->detail, sizeof c->detail, "%s%s%s", s.first_fail_what,
                 s.first_fail_case[0] ? "\nshrunk case: " : "", s.first_fail_case);
        snprintf(c->repro, sizeof c->repro, "%s", s.first_fail_repro);
    }
    if (corpus_only) return;
    msa_sb_printf(&x->sections, "## Fuzz campaign: %s\n\n%ld cases in %.1f s (%.1f cases/s), seed %llu; worst observed/bound %.3g.\n\n"
                  "| boundary class | cases |\n|---|---:|\n", kernel, s.cases, s.seconds, s.cases_per_s,
                  (unsigned long long)x->seed, s.worst_ratio);
    for (int i = 0; i < MSA_COV_N; i++) msa_sb_printf(&x->sections, "| %s | %ld%s |\n", msa_cov_name(i), s.cov[i], s.cov[i] ? "" : " (not hit)");
    msa_sb_printf(&x->sections, "\n");
}

void msa_verify_corpus(msa_vctx *x, msa_vcheck *c, const char *kernel) { campaign(x, c, kernel, 1); }
void msa_verify_fuzz(msa_vctx *x, msa_vcheck *c, const char *kernel) { campaign(x, c, kernel, 0); }

/* ---------------------------------------------------------------- device extras */

/* The CUDA kernels' own mutants (variants the plugin exports), checked by short campaigns
 * whose workers are forked: it must run before this process touches CUDA itself. */
static void cuda_mutants(msa_vctx *x, msa_vcheck *m)
{
    static const char *const names[] = {"diag-drop", "noncausal", "shared-selection", "merge-nan", "unmasked-tail", "minus-one-index"};
    msa_mutant_opts o;
    memset(&o, 0, sizeof o);
    o.lib = "cuda";
    o.names = names;
    o.n_names = 6;
    o.seed = x->seed;
    o.cases = 100;
    o.gen.max_context = 2048;
    mutant_check(x, m, &o, "Mutants of the CUDA kernels");
}

void msa_verify_kernel_extras(msa_vctx *x, msa_vcheck *c, const char *kernel)
{
    msa_vcheck m;
    memset(&m, 0, sizeof m);
    int with_mutants = x->tier != MSA_TIER_QUICK && !strcmp(kernel, "cuda");
    if (with_mutants) cuda_mutants(x, &m);
    msa_kernel k;
    msa_err e = {{0}};
    if (msa_kernel_open(kernel, &k, &e)) {
        c->disp = MSA_V_NOTVERIFIED;
        snprintf(c->summary, sizeof c->summary, "%s", e.msg);
        return;
    }
    if (!k.be->forward_replay) {
        c->disp = MSA_V_NOTSUPPORTED;
        snprintf(c->summary, sizeof c->summary, "the backend has no forward_replay entry: replay determinism not checked");
        msa_kernel_close(&k);
        return;
    }
    msa_mem k_mem = k.be->mem;
    if (k_mem == MSA_MEM_DEVICE && k.be->device_name && !x->gpu[0]) snprintf(x->gpu, sizeof x->gpu, "%s", k.be->device_name(k.ctx));
    /* Replay: decode with speculative tokens, 100 replays (a CUDA graph on the GPU),
     * bitwise equal to a plain forward. */
    int lq[3] = {1, 7, 16}, lk[3] = {700, 2000, 1500};
    msa_case_params p = {.batch = 3, .lq = lq, .lk = lk, .Hq = 16, .Hkv = 2, .D = 128, .DI = 128, .block_size = 64,
                         .topk = 8, .init_blocks = 1, .local_blocks = 1, .dtype = MSA_DT_BF16,
                         .index_dtype = MSA_DT_BF16, .causal = 1, .paged = 1, .q_scale = 1.0, .seed = x->seed};
    msa_case cs;
    int st = msa_case_generate(&p, &cs, &e), have_case = st == 0;
    msa_kernel_result a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    msa_run_opts ro = {.poison = 0, .replays = 100};
    if (!st) st = msa_kernel_run(&k, &cs, MSA_RUN_FORWARD, NULL, &ro, &a, &e);
    if (!st) st = msa_kernel_run(&k, &cs, MSA_RUN_REPLAY, NULL, &ro, &b, &e);
    if (st) {
        c->disp = st == MSA_EUNSUPPORTED ? MSA_V_NOTSUPPORTED : MSA_V_INCORRECT;
        snprintf(c->summary, sizeof c->summary, "graph replay: %s", e.msg);
    } else {
        /* decoded outputs compared bit for bit: equal exactly when the stored bits are */
        size_t no = (size_t)cs.Tq * cs.Hq * cs.D * sizeof(double);
        size_t nt = (size_t)cs.HI * cs.Tq * cs.topk * sizeof(int32_t), nl = (size_t)cs.Tq * cs.Hq * sizeof(float);
        int same = a.out && b.out && a.topk && b.topk && a.lse && b.lse && !memcmp(a.out, b.out, no) &&
                   !memcmp(a.topk, b.topk, nt) && !memcmp(a.lse, b.lse, nl);
        c->disp = same ? MSA_V_PASSED : MSA_V_INCORRECT;
        snprintf(c->summary, sizeof c->summary, "decode, 100 replays (%s): %s (%s)",
                 k_mem == MSA_MEM_DEVICE ? "CUDA-graph capture" : "repeated host runs",
                 same ? "bitwise identical to plain forward" : "DIFFERS from plain forward", cs.label);
        if (!same) snprintf(c->repro, sizeof c->repro, "msa verify --kernel %s --seed %llu", kernel, (unsigned long long)x->seed);
    }
    msa_kernel_result_free(&a);
    msa_kernel_result_free(&b);
    if (have_case) msa_case_free(&cs);
    msa_kernel_close(&k);
    if (!with_mutants) return;
    if (m.disp != MSA_V_PASSED && c->disp == MSA_V_PASSED) {
        c->disp = m.disp;
        snprintf(c->detail, sizeof c->detail, "%s", m.detail);
    }
    size_t l = strlen(c->summary);
    snprintf(c->summary + l, sizeof c->summary - l, "; CUDA mutants: %s", m.summary);
}

/* ---------------------------------------------------------------- baseline */

void msa_verify_baseline(msa_vctx *x, msa_vcheck *c, const char *kernel)
{
    msa_kernel kn, ko;
    msa_err e = {{0}};
    if (msa_kernel_open(kernel, &kn, &e)) {
        c->disp = MSA_V_NOTVERIFIED;
        snprintf(c->summary, sizeof c->summary, "%s", e.msg);
        return;
    }
    if (msa_kernel_open(x->baseline, &ko, &e)) {
        c->disp = MSA_V_NOTVERIFIED;
        snprintf(c->summary, sizeof c->summary, "baseline: %s", e.msg);
        msa_kernel_close(&kn);
        return;
    }
    int ncases = (int)tier_pick(x, 20, 100);
    double wn = 0, wo = 0, tn = 0, to = 0;
    int judged = 0;
    for (int i = 0; i < ncases; i++) {
        msa_case cs;
        if (small_case(x, 5000u + (uint64_t)i, 0, &cs, &e)) break;
        msa_fuzz_result rn, ro;
        int okn = msa_fuzz_eval(&kn, &cs, &rn, &e) == 0, oko = msa_fuzz_eval(&ko, &cs, &ro, &e) == 0;
        if (okn && oko && rn.disp == MSA_V_PASSED && ro.disp == MSA_V_PASSED) {
            wn = fmax(wn, rn.worst_ratio), wo = fmax(wo, ro.worst_ratio), tn += rn.seconds, to += ro.seconds;
            judged++;
        } else if (okn && rn.disp != MSA_V_PASSED && rn.disp != MSA_V_NOTSUPPORTED) {
            c->disp = MSA_V_INCORRECT;
            snprintf(c->detail, sizeof c->detail, "%s: %s", rn.stage, rn.detail);
        }
        msa_case_free(&cs);
    }
    msa_kernel_close(&kn);
    msa_kernel_close(&ko);
    /* A regression: accuracy worse by more than 2x of the baseline's worst ratio (and
     * above a quarter of the bound), or the suite's end-to-end time per case 25% slower. */
    int acc_reg = wn > 2 * wo && wn > 0.25, speed_reg = to > 0 && tn > 1.25 * to;
    if (c->disp != MSA_V_INCORRECT) c->disp = judged == 0 ? MSA_V_NOTVERIFIED : (acc_reg || speed_reg) ? MSA_V_INCORRECT : MSA_V_PASSED;
    snprintf(c->summary, sizeof c->summary, "%d cases: worst observed/bound %.3g (baseline %.3g)%s; time %.3f s (baseline %.3f s)%s",
             judged, wn, wo, acc_reg ? " ACCURACY REGRESSION" : "", tn, to, speed_reg ? " SPEED REGRESSION" : "");
}

/* ---------------------------------------------------------------- traces */

/* One trace: replay through every kernel, then recall (tables and plots) into the report. */
static void verify_one_trace(msa_vctx *x, msa_vcheck *c, const char *path, char *skipped, size_t skipsz, int *bad)
{
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (int k = 0; k < x->nkernels && !*bad; k++) {
        char *argv[] = {"replay", (char *)path, "--kernel", (char *)x->kernels[k], NULL};
        msa_vprogress(x, "traces", "replay %s on %s", name, x->kernels[k]);
        int rc = msa_replay_main(4, argv);
        if (rc == 2 && !strstr(skipped, x->kernels[k])) /* could not open the kernel */
            snprintf(skipped + strlen(skipped), skipsz - strlen(skipped), " %s", x->kernels[k]);
        if (rc == 1) {
            *bad = 1;
            snprintf(c->detail, sizeof c->detail, "replay of %s through %s failed", path, x->kernels[k]);
            snprintf(c->repro, sizeof c->repro, "msa replay %s --kernel %s", path, x->kernels[k]);
        }
    }
    msa_trace t;
    msa_err e = {{0}};
    if (msa_trace_read(path, &t, &e) != 0) {
        *bad = 1;
        snprintf(c->detail, sizeof c->detail, "%s", e.msg);
        return;
    }
    msa_recall_opts ro = {.ntopk = 4, .topk = {4, 8, 16, 32}, .nblock = 3, .block = {32, 64, 128}, .buckets = 8};
    msa_recall_result rr;
    msa_vprogress(x, "traces", "recall of %s", name);
    if (msa_recall_run(&t, &ro, &rr, &e) == 0) {
        char stem[256], dir[1400], link[1400];
        snprintf(stem, sizeof stem, "%.*s", (int)(strlen(name) > 4 ? strlen(name) - 4 : strlen(name)), name);
        snprintf(dir, sizeof dir, "%s/%s", x->plot_dir, stem);
        snprintf(link, sizeof link, "%s/%s", x->plot_link, stem);
        msa_recall_report(&x->sections, path, &t, &rr, &ro);
        if (msa_recall_plots(dir, link, &t, &rr, &ro, &x->sections, &e) != 0)
            msa_sb_printf(&x->sections, "\n(plots failed: %s)\n", e.msg);
        msa_sb_printf(&x->sections, "\n");
        msa_recall_result_free(&rr);
    } else {
        msa_sb_printf(&x->sections, "## Recall: %s\n\nrecall failed: %s\n\n", name, e.msg);
    }
    msa_trace_free(&t);
}

static int is_npz(const char *n)
{
    size_t l = strlen(n);
    return l >= 5 && !strcmp(n + l - 4, ".npz");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void msa_verify_traces(msa_vctx *x, msa_vcheck *c)
{
    int ntr = 0, bad = 0;
    char skipped[256] = ""; /* kernels that could not be opened (e.g. cuda without a GPU) */
    char missing[512] = "";
    for (int i = 0; i < x->ntrace_dirs && !bad; i++) {
        const char *src = x->trace_dirs[i];
        struct stat st;
        if (stat(src, &st) == 0 && S_ISREG(st.st_mode) && is_npz(src)) {
            verify_one_trace(x, c, src, skipped, sizeof skipped, &bad);
            ntr++;
            continue;
        }
        DIR *d = opendir(src);
        if (!d) {
            snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " %s", src);
            continue;
        }
        /* sorted names: the report's order does not depend on the file system */
        char *names[256];
        int nn = 0;
        struct dirent *de;
        while ((de = readdir(d)) && nn < 256)
            if (is_npz(de->d_name) && (names[nn] = strdup(de->d_name))) nn++;
        closedir(d);
        qsort(names, (size_t)nn, sizeof names[0], cmp_str);
        for (int j = 0; j < nn; j++) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", src, names[j]);
            if (!bad) verify_one_trace(x, c, path, skipped, sizeof skipped, &bad), ntr++;
            free(names[j]);
        }
    }
    if (ntr == 0) {
        c->disp = MSA_V_NOTVERIFIED;
        snprintf(c->summary, sizeof c->summary, "no trace found (%s; record one: see README, `msa record`)",
                 missing[0] ? missing + 1 : "empty folder");
        return;
    }
    c->disp = bad ? MSA_V_INCORRECT : MSA_V_PASSED;
    if (bad)
        snprintf(c->summary, sizeof c->summary, "%d trace(s): a replay FAILED (details below); recall tables below", ntr);
    else
        snprintf(c->summary, sizeof c->summary, "%d trace(s) replayed and passed%s%s%s; recall tables and plots below%s%s", ntr,
                 skipped[0] ? " (not run on" : " on every kernel", skipped, skipped[0] ? ": the kernel could not be opened)" : "",
                 missing[0] ? "; not found:" : "", missing);
}

/* ---------------------------------------------------------------- bench */

void msa_verify_bench(msa_vctx *x, msa_vcheck *c)
{
    char dir[PATH_MAX], prog[PATH_MAX + 32], md[PATH_MAX + 32], cmd[4 * PATH_MAX];
    exe_dir(dir, sizeof dir);
    snprintf(prog, sizeof prog, "%s/msa_bench_gpu", dir);
    if (!x->gpu[0] || access(prog, X_OK) != 0) {
        c->disp = MSA_V_NOTVERIFIED;
        snprintf(c->summary, sizeof c->summary, "%s",
                 x->gpu[0] ? "build/msa_bench_gpu not built (make build/msa_bench_gpu)" : "no GPU: benchmarks need the Hopper GPU");
        return;
    }
    /* Sizes kept small enough for the release gate's time budget; `msa bench gpu` runs
     * the full sweep (to 1M tokens).  The PyTorch SDPA peer runs in the same run when a
     * python3 with torch is there (the GPU machine has it). */
    const char *pre = x->bench_prefill ? x->bench_prefill : x->tier == MSA_TIER_QUICK ? "8192" : "8192,32768,131072";
    const char *dec = x->bench_decode ? x->bench_decode : x->tier == MSA_TIER_QUICK ? "32768" : "32768,131072,1048576";
    snprintf(md, sizeof md, "%s/bench-verify.md", dir);
    snprintf(cmd, sizeof cmd,
             "'%s' --prefill '%s' --decode '%s' --reps 5 > '%s' 2>&1 && "
             "{ python3 -c 'import torch' 2>/dev/null && [ -f bench/sdpa_peer.py ] && "
             "printf '\\n## Peer: PyTorch scaled_dot_product_attention, same run\\n\\n' >> '%s' && "
             "python3 bench/sdpa_peer.py --prefill '%s' --decode '%s' >> '%s' 2>&1 || true; }",
             prog, pre, dec, md, md, pre, dec, md);
    msa_vprogress(x, "bench", "running the GPU benchmarks");
    int rc = system(cmd);
    void *buf = NULL;
    size_t len = 0;
    msa_err e = {{0}};
    if (msa_read_file(md, 1 << 20, &buf, &len, &e) != 0) {
        c->disp = MSA_V_CRASHED;
        snprintf(c->summary, sizeof c->summary, "benchmark run failed (exit %d), no output", rc);
        return;
    }
    msa_sb_printf(&x->sections, "## Benchmarks (%s)\n\n`%s --prefill '%s' --decode '%s' --reps 5`; "
                  "the full sweep and its history are in bench/NOTES.md.\n\n%.*s\n",
                  x->gpu, "build/msa_bench_gpu", pre, dec, (int)len, (char *)buf);
    free(buf);
    c->disp = rc == 0 ? MSA_V_PASSED : MSA_V_CRASHED;
    snprintf(c->summary, sizeof c->summary, rc == 0 ? "benchmark table below (speed is reported, never judged)"
                                                    : "benchmark program failed (exit %d); its output is below", rc);
}
