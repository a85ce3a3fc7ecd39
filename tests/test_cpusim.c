/* test_cpusim.c - suite "cpusim": the cpu-sim backend on hand-checkable cases (one key,
 * all-equal keys, ties, nvis <= k equals dense), decode / chunked rows equal the same
 * rows of a full prefill, paged equals packed, every variant visibly changes the output
 * of a probe built to expose it, and a loose smoke test against the reference.
 * It does not judge correctness within bounds: that is the oracle's job (tests/test_oracle.c). */
#include <CUnit/CUnit.h>

#include "../kernels/cpusim.h"
#include "../reference/ref.h"
#include "test_kcpu.h"

#define SEED 20261122u

/* ---- hand-checkable cases ---- */

/* One query, one key: P = exp2(0) = 1 exactly, so out = v bit for bit and
 * lse = c * q.k = 0.5 * 2.5 = 1.25 up to the fp32 roundings of x*log2e and x*ln2. */
static void test_one_key(void)
{
    tk_spec s = {.batch = 1, .lq = {1}, .lk = {1}, .Hq = 1, .Hkv = 1, .D = 4, .DI = 4, .B = 2, .topk = 1,
                 .local = 1, .causal = 1, .dt = MSA_DT_FP32, .seed = SEED};
    msa_case c;
    tk_make(&s, &c);
    const double q[4] = {1, 0.5, -1, 2}, k[4] = {2, 1, 0.5, 0.25}, v[4] = {3, -1, 0.5, 7};
    for (int d = 0; d < 4; d++) tk_store(c.dtype, c.q, d, q[d]), tk_store(c.dtype, c.k, d, k[d]), tk_store(c.dtype, c.v, d, v[d]);
    msa_kernel_result r;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, MSA_RUN_FORWARD, NULL, 0, &r), 0);
    for (int d = 0; d < 4; d++) CU_ASSERT_EQUAL(r.out[d], v[d]);
    CU_ASSERT(fabs(r.lse[0] - 1.25) <= 1e-6);
    CU_ASSERT_EQUAL(r.topk[0], 0);
    CU_ASSERT(r.guard_ok);
    msa_kernel_result_free(&r);
    tk_free(&c);
}

/* Every key equal: softmax is uniform over the visible keys, so query i of a causal
 * prefill gets the mean of v[0..i] and lse = c*q.k + ln(i+1).  Blocks of 2 keys make
 * queries 2 and 3 merge two partials (query 2: weights 1 and 1/2). */
static void test_equal_keys(void)
{
    tk_spec s = {.batch = 1, .lq = {4}, .lk = {4}, .Hq = 1, .Hkv = 1, .D = 2, .DI = 2, .B = 2, .topk = 2,
                 .local = 1, .causal = 1, .dt = MSA_DT_FP32, .seed = SEED};
    msa_case c;
    tk_make(&s, &c);
    for (int j = 0; j < 4; j++)
        for (int d = 0; d < 2; d++) {
            tk_store(c.dtype, c.q, (size_t)j * 2 + d, 1.0);
            tk_store(c.dtype, c.k, (size_t)j * 2 + d, 1.0);
            tk_store(c.dtype, c.v, (size_t)j * 2 + d, (j + 1) * (d ? 10.0 : 1.0));
        }
    msa_kernel_result r;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, MSA_RUN_FORWARD, NULL, 0, &r), 0);
    const double mean[4] = {1, 1.5, 2, 2.5};
    for (int i = 0; i < 4; i++) {
        /* fp32 merge weights: a few ulps of 2^-24 relative */
        CU_ASSERT(fabs(r.out[i * 2] - mean[i]) <= 1e-6 * mean[i]);
        CU_ASSERT(fabs(r.out[i * 2 + 1] - 10 * mean[i]) <= 1e-5 * mean[i]);
        CU_ASSERT(fabs(r.lse[i] - (sqrt(2.0) + log(i + 1.0))) <= 1e-6);
    }
    msa_kernel_result_free(&r);
    tk_free(&c);
}

/* All index scores equal: the selection is the lowest free ids plus the local block
 * (tie rule: lower id); tie-high takes the highest free ids instead. */
static void test_ties(void)
{
    tk_spec s = {.batch = 1, .lq = {8}, .lk = {8}, .Hq = 2, .Hkv = 1, .D = 4, .DI = 4, .B = 2, .topk = 2,
                 .local = 1, .causal = 1, .dt = MSA_DT_BF16, .const_index = 1, .seed = SEED};
    msa_case c;
    tk_make(&s, &c);
    msa_kernel_result lo, hi;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, MSA_RUN_SELECT, NULL, 0, &lo), 0);
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim:tie-high", &c, MSA_RUN_SELECT, NULL, 0, &hi), 0);
    for (int t = 0; t < 8; t++) {
        int nvis = t / 2 + 1;
        int e0 = 0, e1 = nvis == 1 ? -1 : nvis - 1;
        int h0 = nvis <= 2 ? 0 : nvis - 2;
        CU_ASSERT_EQUAL(lo.topk[t * 2], e0);
        CU_ASSERT_EQUAL(lo.topk[t * 2 + 1], e1);
        CU_ASSERT_EQUAL(hi.topk[t * 2], h0);
        CU_ASSERT_EQUAL(hi.topk[t * 2 + 1], e1);
        /* block scores: 4 dims of 1*1 times c_I = 1/2 -> 2, -inf past nvis */
        for (int b = 0; b < 4; b++) CU_ASSERT_EQUAL(lo.block_scores[t * 4 + b], b < nvis ? 2.0f : -INFINITY);
    }
    msa_kernel_result_free(&lo);
    msa_kernel_result_free(&hi);
    tk_free(&c);
}

/* When every visible block fits in k, MSA is dense causal GQA: same partials, same merge
 * order, so the outputs are bitwise equal, and the selection is 0..nvis-1. */
static void test_nvis_le_k_is_dense(void)
{
    tk_spec s = {.batch = 2, .lq = {13, 5}, .lk = {13, 29}, .Hq = 4, .Hkv = 2, .D = 16, .DI = 8, .B = 8,
                 .topk = 4, .local = 1, .causal = 1, .dt = MSA_DT_BF16, .seed = SEED};
    printf("\n  seed %u\n", SEED);
    msa_case c;
    tk_make(&s, &c);
    msa_kernel_result f, d;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, MSA_RUN_FORWARD, NULL, 0, &f), 0);
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, MSA_RUN_DENSE, NULL, 0, &d), 0);
    size_t n = (size_t)c.Tq * c.Hq * c.D;
    CU_ASSERT_FALSE(tk_bytes_differ(f.out_raw, d.out_raw, n * 2));
    CU_ASSERT_FALSE(tk_bytes_differ(f.lse, d.lse, (size_t)c.Tq * c.Hq * 4));
    for (int g = 0; g < 2; g++)
        for (int t = 0; t < c.Tq; t++) {
            int b = t >= 13, i = t - (b ? 13 : 0), pos = s.lk[b] - s.lq[b] + i, nvis = pos / 8 + 1;
            for (int sl = 0; sl < 4; sl++) CU_ASSERT_EQUAL(f.topk[(g * c.Tq + t) * 4 + sl], sl < nvis ? sl : -1);
        }
    msa_kernel_result_free(&f);
    msa_kernel_result_free(&d);
    tk_free(&c);
}

/* Decode (Lq = 1) and chunked prefill (Lq = 3) rows are bitwise the last rows of the full
 * prefill over the same keys: bottom-right alignment, and decode uses the same path. */
static void test_decode_matches_prefill(void)
{
    tk_spec s = {.batch = 1, .lq = {40}, .lk = {40}, .Hq = 4, .Hkv = 2, .D = 16, .DI = 16, .B = 8, .topk = 2,
                 .local = 1, .causal = 1, .dt = MSA_DT_BF16, .seed = SEED + 1};
    printf("\n  seed %u\n", SEED + 1);
    msa_case full;
    tk_make(&s, &full);
    msa_kernel_result rf;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &full, MSA_RUN_FORWARD, NULL, 0, &rf), 0);
    const int lqs[2] = {1, 3};
    for (int x = 0; x < 2; x++) {
        tk_spec s2 = s;
        s2.lq[0] = lqs[x];
        msa_case part;
        tk_make(&s2, &part);
        int first = 40 - lqs[x];
        size_t qrow = (size_t)4 * 16 * 2, irow = (size_t)2 * 16 * 2;
        memcpy(part.q, (char *)full.q + first * qrow, lqs[x] * qrow);
        memcpy(part.index_q, (char *)full.index_q + first * irow, lqs[x] * irow);
        msa_kernel_result rp;
        CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &part, MSA_RUN_FORWARD, NULL, 0, &rp), 0);
        CU_ASSERT_FALSE(tk_bytes_differ(rp.out_raw, (char *)rf.out_raw + first * (size_t)4 * 16 * 2, lqs[x] * (size_t)4 * 16 * 2));
        CU_ASSERT_FALSE(tk_bytes_differ(rp.lse, rf.lse + first * 4, lqs[x] * (size_t)4 * 4));
        for (int g = 0; g < 2; g++)
            CU_ASSERT_FALSE(tk_bytes_differ(rp.topk + g * lqs[x] * 2, rf.topk + (g * 40 + first) * 2, lqs[x] * (size_t)2 * 4));
        msa_kernel_result_free(&rp);
        tk_free(&part);
    }
    msa_kernel_result_free(&rf);
    tk_free(&full);
}

/* Paged KV (pages in reverse order, one unused page) gives bitwise the packed results. */
static void test_paged_equals_packed(void)
{
    tk_spec s = {.batch = 2, .lq = {21, 2}, .lk = {21, 35}, .Hq = 2, .Hkv = 1, .D = 16, .DI = 16, .B = 8,
                 .topk = 2, .local = 1, .causal = 1, .dt = MSA_DT_BF16, .seed = SEED + 2};
    printf("\n  seed %u\n", SEED + 2);
    msa_case a, b;
    tk_make(&s, &a);
    s.paged = 1;
    tk_make(&s, &b);
    msa_kernel_result ra, rb;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &a, MSA_RUN_FORWARD, NULL, 0, &ra), 0);
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &b, MSA_RUN_FORWARD, NULL, 0, &rb), 0);
    CU_ASSERT_FALSE(tk_bytes_differ(ra.out_raw, rb.out_raw, (size_t)a.Tq * 2 * 16 * 2));
    CU_ASSERT_FALSE(tk_bytes_differ(ra.lse, rb.lse, (size_t)a.Tq * 2 * 4));
    CU_ASSERT_FALSE(tk_bytes_differ(ra.topk, rb.topk, (size_t)a.Tq * 2 * 4));
    /* and the poisoned paged run (unselected blocks, the tail of the last page and the
     * unused page all NaN) still gives the same bits: cpu-sim never reads them */
    msa_kernel_result rp;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &b, MSA_RUN_ATTEND, rb.topk, 1, &rp), 0);
    CU_ASSERT_FALSE(tk_bytes_differ(rp.out_raw, rb.out_raw, (size_t)a.Tq * 2 * 16 * 2));
    msa_kernel_result_free(&rp);
    msa_kernel_result_free(&ra);
    msa_kernel_result_free(&rb);
    tk_free(&a);
    tk_free(&b);
}

/* ---- variants ---- */

/* The probe: seq 0 a causal prefill of 37 keys (5 blocks of 8, the last partial, rows
 * with nvis < k and > k), seq 1 three queries over one key (two empty rows); 2 KV groups
 * of 2 heads.  "hot" scales q so that scores overflow exp2 without max subtraction;
 * "ties" makes every index score equal. */
enum { PROBE_MAIN, PROBE_HOT, PROBE_TIES, PROBE_NOLOCAL, PROBE_N };
static void probe_case(int which, msa_case *c)
{
    tk_spec s = {.batch = 2, .lq = {37, 3}, .lk = {37, 1}, .Hq = 4, .Hkv = 2, .D = 16, .DI = 16, .B = 8,
                 .topk = 3, .local = 1, .causal = 1, .dt = MSA_DT_BF16, .seed = SEED + 7};
    if (which == PROBE_HOT) s.q_scale = 256.0;
    if (which == PROBE_TIES) s.const_index = 1;
    if (which == PROBE_NOLOCAL) s.local = 0; /* the diagonal block competes on its score */
    tk_make(&s, c);
}

typedef struct {
    msa_kernel_result fwd, sel;
    int ok;
} probe_out;

static void probe_run(const char *name, const msa_case *c, probe_out *o)
{
    o->ok = tk_run(name, c, MSA_RUN_FORWARD, NULL, 0, &o->fwd) == 0;
    o->ok = o->ok && tk_run(name, c, MSA_RUN_SELECT, NULL, 0, &o->sel) == 0;
}

static void probe_free(probe_out *o)
{
    msa_kernel_result_free(&o->fwd);
    msa_kernel_result_free(&o->sel);
}

/* Which result parts differ (bit patterns): 1 topk, 2 out, 4 lse, 8 block scores. */
static int probe_diff(const msa_case *c, const probe_out *a, const probe_out *b)
{
    size_t rows = (size_t)c->HI * c->Tq, nblk = 5;
    int m = 0;
    m |= tk_bytes_differ(a->fwd.topk, b->fwd.topk, rows * c->topk * 4) ? 1 : 0;
    m |= tk_bytes_differ(a->fwd.out_raw, b->fwd.out_raw, (size_t)c->Tq * c->Hq * c->D * 2) ? 2 : 0;
    m |= tk_bytes_differ(a->fwd.lse, b->fwd.lse, (size_t)c->Tq * c->Hq * 4) ? 4 : 0;
    m |= tk_bytes_differ(a->sel.block_scores, b->sel.block_scores, rows * nblk * 4) ? 8 : 0;
    m |= tk_bytes_differ(a->sel.topk, b->sel.topk, rows * c->topk * 4) ? 1 : 0;
    return m;
}

/* The selected ids of every row as a set equal those of the plain backend. */
static int same_sets(const msa_case *c, const int32_t *a, const int32_t *b)
{
    for (size_t r = 0; r < (size_t)c->HI * c->Tq; r++) {
        unsigned long long ma = 0, mb = 0; /* probe: at most 5 blocks */
        for (int s = 0; s < c->topk; s++) {
            if (a[r * c->topk + s] >= 0) ma |= 1ull << a[r * c->topk + s];
            if (b[r * c->topk + s] >= 0) mb |= 1ull << b[r * c->topk + s];
        }
        if (ma != mb) return 0;
    }
    return 1;
}

static void test_variants_visible(void)
{
    printf("\n  seed %u\n", SEED + 7);
    msa_case cs[PROBE_N];
    probe_out base[PROBE_N];
    for (int p = 0; p < PROBE_N; p++) {
        probe_case(p, &cs[p]);
        probe_run("cpu-sim", &cs[p], &base[p]);
        CU_ASSERT_FATAL(base[p].ok);
    }
    const msa_cpusim_variant_info *v = msa_cpusim_variants();
    CU_ASSERT_STRING_EQUAL(v[0].name, "none");
    int n = 0;
    for (int i = 1; v[i].name; i++, n++) {
        int p = !strcmp(v[i].name, "no-max-sub") ? PROBE_HOT : !strcmp(v[i].name, "tie-high") ? PROBE_TIES
                : !strcmp(v[i].name, "index-mask-after-max") ? PROBE_NOLOCAL : PROBE_MAIN;
        char name[96];
        snprintf(name, sizeof name, "cpu-sim:%s", v[i].name);
        const msa_backend *be = msa_cpusim_variant(v[i].name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(be);
        CU_ASSERT_STRING_EQUAL(be->name, name);
        CU_ASSERT(v[i].what && strlen(v[i].what) > 10);
        probe_out o;
        probe_run(name, &cs[p], &o);
        CU_ASSERT_FATAL(o.ok);
        int d = probe_diff(&cs[p], &base[p], &o);
        printf("\n  %-20s changes:%s%s%s%s", v[i].name, d & 1 ? " topk" : "", d & 2 ? " out" : "",
               d & 4 ? " lse" : "", d & 8 ? " block_scores" : "");
        CU_ASSERT(d != 0);
        /* a legal variant keeps the selection (as a set) except where ties decide */
        if (v[i].legal && strcmp(v[i].name, "tie-high")) CU_ASSERT(same_sets(&cs[p], base[p].fwd.topk, o.fwd.topk));
        /* selection bugs must show in the selection itself, not only in block scores */
        if (p == PROBE_NOLOCAL) CU_ASSERT(d & 1);
        probe_free(&o);
    }
    CU_ASSERT(n >= 32); /* the list in the brief: 25 bugs + 7 legal */
    for (int p = 0; p < PROBE_N; p++) probe_free(&base[p]), tk_free(&cs[p]);
    CU_ASSERT_PTR_NULL(msa_cpusim_variant("no-such-variant"));
}

/* Rows 37 and 38 of the probe see no key (pos < 0). */
static void test_variant_specifics(void)
{
    msa_case c;
    probe_case(PROBE_MAIN, &c);
    msa_kernel_result r0, rn, re, ru, rl;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, MSA_RUN_FORWARD, NULL, 0, &r0), 0);
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim:merge-nan", &c, MSA_RUN_FORWARD, NULL, 0, &rn), 0);
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim:empty-row-nan", &c, MSA_RUN_FORWARD, NULL, 0, &re), 0);
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim:unwritten", &c, MSA_RUN_FORWARD, NULL, 0, &ru), 0);
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim:lse-log2", &c, MSA_RUN_FORWARD, NULL, 0, &rl), 0);
    size_t HD = (size_t)c.Hq * c.D;
    for (int t = 37; t <= 38; t++)
        for (int h = 0; h < c.Hq; h++) {
            CU_ASSERT_EQUAL(r0.out[t * HD + h * c.D], 0.0);
            CU_ASSERT(isinf(r0.lse[t * c.Hq + h]) && r0.lse[t * c.Hq + h] < 0);
            CU_ASSERT(isnan(rn.out[t * HD + h * c.D]) && isnan(rn.lse[t * c.Hq + h]));
            CU_ASSERT(isnan(re.out[t * HD + h * c.D]) && isinf(re.lse[t * c.Hq + h]));
        }
    /* the unwritten element keeps the harness's pre-fill (bf16 0x7FD5) */
    size_t last = (size_t)c.Tq * HD - 1;
    uint16_t bits;
    memcpy(&bits, (char *)ru.out_raw + 2 * last, 2);
    CU_ASSERT_EQUAL(bits, 0x7FD5);
    CU_ASSERT(isnan(ru.out[last]) && !isnan(r0.out[last]));
    /* log2 units: lse2 = lse / ln 2 up to one fp32 rounding each */
    for (int i = 0; i < 37 * c.Hq; i++)
        CU_ASSERT(fabs(rl.lse[i] - r0.lse[i] / log(2.0)) <= 1e-6 * (1 + fabs(rl.lse[i])));
    msa_kernel_result_free(&r0), msa_kernel_result_free(&rn), msa_kernel_result_free(&re);
    msa_kernel_result_free(&ru), msa_kernel_result_free(&rl);
    tk_free(&c);
}

/* ---- against the reference (a smoke test; the oracle judges properly) ---- */

/* cpu-sim vs msa_ref_attend (fast) over cpu-sim's own selection.  Loose bound: P rounded
 * to bf16 (relative 2^-9 each, so the normalised sum moves by <= 2 * 2^-9 * max|v|) plus
 * the bf16 output rounding (2^-9 relative) and fp32 noise: 4 * 2^-8 * max|v| covers it
 * with margin.  Selections must agree as sets (normal data: no near-ties at this size). */
static void test_reference_smoke(void)
{
    tk_spec s = {.batch = 2, .lq = {50, 4}, .lk = {50, 77}, .Hq = 4, .Hkv = 2, .D = 32, .DI = 16, .B = 16,
                 .topk = 2, .local = 1, .causal = 1, .dt = MSA_DT_BF16, .seed = SEED + 3};
    printf("\n  seed %u\n", SEED + 3);
    msa_case c;
    tk_make(&s, &c);
    msa_kernel_result r;
    CU_ASSERT_EQUAL_FATAL(tk_run("cpu-sim", &c, MSA_RUN_FORWARD, NULL, 0, &r), 0);
    size_t n = (size_t)c.Tq * c.Hq * c.D, rows = (size_t)c.HI * c.Tq * c.topk;
    double *out = calloc(n, sizeof *out), *lse = calloc((size_t)c.Tq * c.Hq, sizeof *lse);
    int32_t *sel = calloc(rows, sizeof *sel);
    msa_err e = {{0}};
    CU_ASSERT_EQUAL_FATAL(msa_ref_attend(&c, MSA_REF_FAST, r.topk, out, lse, &e), 0);
    CU_ASSERT_EQUAL_FATAL(msa_ref_select(&c, MSA_REF_FAST, sel, NULL, &e), 0);
    double vmax = 0, worst = 0, worst_lse = 0;
    for (size_t i = 0; i < (size_t)c.Tk * c.Hkv * c.D; i++) vmax = fmax(vmax, fabs(tk_get(c.dtype, c.v, i)));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(r.out[i] - out[i]));
    for (size_t i = 0; i < (size_t)c.Tq * c.Hq; i++) worst_lse = fmax(worst_lse, fabs(r.lse[i] - lse[i]));
    printf("  max |out - ref| = %.3g (bound %.3g), max |lse - ref| = %.3g\n", worst, 4 * 0x1p-8 * vmax, worst_lse);
    CU_ASSERT(worst <= 4 * 0x1p-8 * vmax);
    /* lse: P rounded to bf16 moves l = sum P by <= 2^-9 relative, so log l by <= 2^-9;
     * 2^-8 leaves room for the fp32 logs and sums */
    CU_ASSERT(worst_lse <= 0x1p-8);
    CU_ASSERT(same_sets(&c, r.topk, sel));
    free(out), free(lse), free(sel);
    msa_kernel_result_free(&r);
    tk_free(&c);
}

int msa_suite_cpusim(void)
{
    CU_pSuite s = CU_add_suite("cpusim", NULL, NULL);
    if (!s) return 1;
    if (!CU_add_test(s, "one key: out = v, lse = c q.k", test_one_key) ||
        !CU_add_test(s, "all-equal keys: mean of v, merged partials", test_equal_keys) ||
        !CU_add_test(s, "exact ties: lower id (tie-high: higher)", test_ties) ||
        !CU_add_test(s, "nvis <= k: bitwise dense", test_nvis_le_k_is_dense) ||
        !CU_add_test(s, "decode and chunked rows = prefill rows", test_decode_matches_prefill) ||
        !CU_add_test(s, "paged = packed, poison not read", test_paged_equals_packed) ||
        !CU_add_test(s, "every variant changes its probe", test_variants_visible) ||
        !CU_add_test(s, "variant specifics (NaN rows, unwritten, log2)", test_variant_specifics) ||
        !CU_add_test(s, "smoke: cpu-sim vs reference fast", test_reference_smoke))
        return 1;
    return 0;
}
