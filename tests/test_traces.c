/* test_traces.c - CUnit suite "traces": SHA-256 against FIPS 180-4's examples, the trace
 * format (round trip, pooled K/V, checksum catching a flipped byte after the zip CRCs were
 * recomputed, truncation -> MSA_EINPUT), the selection rule and recall on cases whose
 * answers are derived by hand, `msa replay` passing a faithful trace and failing a
 * tampered one, the GGUF reader on hand-built files (valid, every truncation, malformed
 * headers) and the BPE tokenizer on a tiny hand-built vocabulary.
 * No model download: the real-model checks (perplexity, continuation) live in the report. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/case.h"
#include "../common/fsutil.h"
#include "../common/npz.h"
#include "../common/rng.h"
#include "../reference/ref.h"
#include "../traces/llama.h"
#include "../traces/traces.h"

#define SEED 20261122u

/* ------------------------------------------------------------------ SHA-256 */

static void sha_hex(const char *msg, char hex[65])
{
    msa_sha256_ctx s;
    uint8_t d[32];
    msa_sha256_init(&s);
    /* fed in uneven pieces so the buffering path is exercised */
    size_t n = strlen(msg), i = 0, step = 1;
    while (i < n) {
        size_t take = n - i < step ? n - i : step;
        msa_sha256_update(&s, msg + i, take);
        i += take;
        step = step * 3 + 1;
    }
    msa_sha256_final(&s, d);
    msa_sha256_hex(d, hex);
}

static void test_sha256_vectors(void)
{
    /* FIPS 180-4 / NIST example values */
    char h[65];
    sha_hex("", h);
    CU_ASSERT_STRING_EQUAL(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", h);
    CU_ASSERT_STRING_EQUAL(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", h);
    CU_ASSERT_STRING_EQUAL(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *mil = malloc(1000001);
    CU_ASSERT_FATAL(mil != NULL);
    memset(mil, 'a', 1000000);
    mil[1000000] = 0;
    sha_hex(mil, h);
    CU_ASSERT_STRING_EQUAL(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(mil);
}

/* ------------------------------------------------------------------ trace helpers */

static int gen_case(msa_case *c, uint64_t seed, int lq, int lk)
{
    msa_err e;
    int lqs[2] = {lq, 3}, lks[2] = {lk, 40};
    msa_case_params p = {.batch = 2, .lq = lqs, .lk = lks, .Hq = 4, .Hkv = 2, .D = 16, .DI = 16, .block_size = 8,
                         .topk = 3, .init_blocks = 0, .local_blocks = 1, .dtype = MSA_DT_BF16,
                         .index_dtype = MSA_DT_BF16, .causal = 1, .dist = MSA_DIST_NORMAL,
                         .index_dist = MSA_DIST_NORMAL, .seed = seed};
    int rc = msa_case_generate(&p, c, &e);
    if (rc) printf("\ngen_case: %s\n", e.msg);
    return rc;
}

/* Recorded arrays from the reference (fast), as a faithful recorder would store them. */
typedef struct {
    int32_t *topk;
    float *bs, *out, *lse;
} recorded;

static int record_ref(const msa_case *c, recorded *r)
{
    msa_err e;
    msa_ref_result rr;
    memset(r, 0, sizeof *r);
    if (msa_ref_run(c, MSA_REF_FAST, &rr, &e)) {
        printf("\nref: %s\n", e.msg);
        return -1;
    }
    size_t nt = (size_t)c->HI * c->Tq * c->topk, nb = (size_t)c->HI * c->Tq * rr.nblk;
    size_t no = (size_t)c->Tq * c->Hq * c->D, nl = (size_t)c->Tq * c->Hq;
    r->topk = malloc(nt * 4);
    r->bs = malloc(nb * 4);
    r->out = malloc(no * 4);
    r->lse = malloc(nl * 4);
    if (r->topk && r->bs && r->out && r->lse) {
        memcpy(r->topk, rr.topk, nt * 4);
        for (size_t i = 0; i < nb; i++) r->bs[i] = (float)rr.block_scores[i];
        for (size_t i = 0; i < no; i++) r->out[i] = (float)rr.out[i];
        for (size_t i = 0; i < nl; i++) r->lse[i] = (float)rr.lse[i];
    }
    msa_ref_result_free(&rr);
    return r->topk && r->bs && r->out && r->lse ? 0 : -1;
}

static void recorded_free(recorded *r)
{
    free(r->topk);
    free(r->bs);
    free(r->out);
    free(r->lse);
}

static const char *META = "{\"format\": \"msa-trace\", \"version\": 1, \"model\": \"synthetic\", \"index\": \"trained\", "
                          "\"arith\": \"fp32\", \"order\": \"ascending\"}";

/* Two records: L00 plain, L01 with pooled K/V (pool = the case's own rows, reversed). */
static int build_trace(msa_trace_writer *w, msa_case *c0, msa_case *c1, recorded *r0, recorded *r1)
{
    msa_err e;
    msa_trace_writer_init(w);
    if (msa_trace_add(w, "L00", 0, 0, c0, r0->topk, r0->bs, r0->out, r0->lse, &e)) return -1;
    int Tk = c1->Tk;
    size_t kvb = (size_t)c1->Hkv * c1->D * 2, ikb = (size_t)c1->DI * 2;
    char *kp = malloc(kvb * Tk), *vp = malloc(kvb * Tk), *ip = malloc(ikb * Tk);
    int32_t *rows = malloc(sizeof *rows * Tk);
    for (int r = 0; r < Tk; r++) {
        int p = Tk - 1 - r;
        rows[r] = p;
        memcpy(kp + p * kvb, (char *)c1->k + r * kvb, kvb);
        memcpy(vp + p * kvb, (char *)c1->v + r * kvb, kvb);
        memcpy(ip + p * ikb, (char *)c1->index_k + r * ikb, ikb);
    }
    int rc = msa_trace_add_pooled(w, "L01", 1, 0, c1, rows, Tk, kp, vp, ip, r1->topk, NULL, r1->out, NULL, &e);
    free(kp); free(vp); free(ip); free(rows);
    if (!rc) rc = msa_trace_finish_npz(w, META, &e);
    if (rc) printf("\nbuild_trace: %s\n", e.msg);
    return rc;
}

static int same_bytes(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

static void test_trace_roundtrip(void)
{
    printf("\n  seed %u\n", SEED);
    msa_case c0, c1;
    recorded r0, r1;
    CU_ASSERT_FATAL(gen_case(&c0, SEED, 20, 50) == 0);
    CU_ASSERT_FATAL(gen_case(&c1, SEED + 1, 7, 33) == 0);
    CU_ASSERT_FATAL(record_ref(&c0, &r0) == 0 && record_ref(&c1, &r1) == 0);
    msa_trace_writer w;
    CU_ASSERT_FATAL(build_trace(&w, &c0, &c1, &r0, &r1) == 0);
    void *buf;
    size_t len;
    msa_err e;
    CU_ASSERT_FATAL(msa_npz_serialize(&w.z, 1, &buf, &len, &e) == 0);
    msa_npz z;
    CU_ASSERT_FATAL(msa_npz_read_mem(buf, len, "rt.npz", &z, &e) == 0);
    msa_trace t;
    int rc = msa_trace_from_npz(&z, "rt.npz", &t, &e);
    if (rc) printf("\n%s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_EQUAL(t.nrec, 2);
    CU_ASSERT_STRING_EQUAL(t.model, "synthetic");
    CU_ASSERT_STRING_EQUAL(t.index_kind, "trained");
    CU_ASSERT_FATAL(msa_trace_load_record(&t, 0, &e) == 0 && msa_trace_load_record(&t, 1, &e) == 0);
    msa_case *a = &t.rec[0].c, *b = &t.rec[1].c;
    CU_ASSERT_EQUAL(t.rec[1].layer, 1);
    CU_ASSERT(a->Tq == c0.Tq && a->Tk == c0.Tk && b->Tk == c1.Tk && b->topk == c1.topk);
    CU_ASSERT(same_bytes(a->q, c0.q, (size_t)c0.Tq * c0.Hq * c0.D * 2));
    CU_ASSERT(same_bytes(b->k, c1.k, (size_t)c1.Tk * c1.Hkv * c1.D * 2)); /* pooled rows gathered back */
    CU_ASSERT(same_bytes(b->v, c1.v, (size_t)c1.Tk * c1.Hkv * c1.D * 2));
    CU_ASSERT(same_bytes(b->index_k, c1.index_k, (size_t)c1.Tk * c1.DI * 2));
    CU_ASSERT(same_bytes(t.rec[0].topk, r0.topk, (size_t)c0.HI * c0.Tq * c0.topk * 4));
    CU_ASSERT(same_bytes(t.rec[0].lse, r0.lse, (size_t)c0.Tq * c0.Hq * 4));
    CU_ASSERT_FATAL(t.rec[0].out != NULL);
    CU_ASSERT(t.rec[0].out[5] == (double)r0.out[5]);
    CU_ASSERT(t.rec[1].block_scores == NULL && t.rec[1].lse == NULL);
    msa_trace_free(&t);
    msa_npz_free(&z);
    free(buf);
    msa_trace_writer_free(&w);
    recorded_free(&r0); recorded_free(&r1);
    msa_case_free(&c0); msa_case_free(&c1);
}

/* A finished trace of two generated records, serialised (stored). */
static int trace_bytes(void **buf, size_t *len, msa_npz *zout)
{
    msa_case c0, c1;
    recorded r0, r1;
    msa_err e;
    if (gen_case(&c0, SEED + 2, 9, 30) || gen_case(&c1, SEED + 3, 5, 27)) return -1;
    if (record_ref(&c0, &r0) || record_ref(&c1, &r1)) return -1;
    msa_trace_writer w;
    int rc = build_trace(&w, &c0, &c1, &r0, &r1);
    if (!rc) rc = msa_npz_serialize(&w.z, 0, buf, len, &e);
    if (!rc && zout) {
        *zout = w.z;
        memset(&w.z, 0, sizeof w.z);
    }
    msa_trace_writer_free(&w);
    recorded_free(&r0); recorded_free(&r1);
    msa_case_free(&c0); msa_case_free(&c1);
    return rc;
}

static void test_checksum_flipped_byte(void)
{
    void *buf;
    size_t len;
    msa_npz z;
    msa_err e;
    CU_ASSERT_FATAL(trace_bytes(&buf, &len, &z) == 0);
    free(buf);
    /* flip one bit of one data byte, then re-serialise: the zip CRCs are recomputed and
     * agree with the damaged data, so only the trace checksum can notice */
    msa_tensor *x = NULL;
    for (int i = 0; i < z.n; i++)
        if (!strcmp(z.t[i].name, "L01.k_pool")) x = &z.t[i];
    CU_ASSERT_FATAL(x != NULL && x->nbytes > 10);
    ((uint8_t *)x->data)[7] ^= 0x10;
    CU_ASSERT_FATAL(msa_npz_serialize(&z, 0, &buf, &len, &e) == 0);
    msa_npz z2;
    CU_ASSERT_FATAL(msa_npz_read_mem(buf, len, "flip.npz", &z2, &e) == 0); /* the zip layer is happy */
    msa_trace t;
    int rc = msa_trace_from_npz(&z2, "flip.npz", &t, &e);
    CU_ASSERT_EQUAL(rc, MSA_EINPUT);
    CU_ASSERT(strstr(e.msg, "checksum") != NULL);
    printf("\n  %s\n", e.msg);
    /* flipping it back restores a valid trace: the check is not failing for another reason */
    ((uint8_t *)x->data)[7] ^= 0x10;
    free(buf);
    CU_ASSERT_FATAL(msa_npz_serialize(&z, 0, &buf, &len, &e) == 0);
    CU_ASSERT_FATAL(msa_npz_read_mem(buf, len, "ok.npz", &z2, &e) == 0);
    CU_ASSERT_EQUAL(msa_trace_from_npz(&z2, "ok.npz", &t, &e), MSA_OK);
    msa_trace_free(&t);
    msa_npz_free(&z2);
    msa_npz_free(&z);
    free(buf);
}

static void test_truncated_trace(void)
{
    void *buf;
    size_t len;
    msa_err e;
    CU_ASSERT_FATAL(trace_bytes(&buf, &len, NULL) == 0);
    char path[] = "/tmp/msa_test_traces_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    /* a handful of cut points, including inside the central directory */
    size_t cuts[] = {0, 10, len / 3, len / 2, len - 100, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        CU_ASSERT_FATAL(msa_write_atomic(path, buf, cuts[i], &e) == 0);
        msa_trace t;
        int rc = msa_trace_read(path, &t, &e);
        CU_ASSERT_EQUAL(rc, MSA_EINPUT);
        if (rc == MSA_OK) msa_trace_free(&t);
        char *argv[] = {"replay", path, NULL};
        CU_ASSERT_EQUAL(msa_replay_main(2, argv), 2);
        char *argv2[] = {"recall", path, NULL};
        CU_ASSERT_EQUAL(msa_recall_main(2, argv2), 2);
    }
    /* and the complete file is accepted */
    CU_ASSERT_FATAL(msa_write_atomic(path, buf, len, &e) == 0);
    msa_trace t;
    CU_ASSERT_EQUAL(msa_trace_read(path, &t, &e), MSA_OK);
    msa_trace_free(&t);
    unlink(path);
    free(buf);
}

/* Replay: a faithful trace passes through cpu-sim (exit 0); the same trace with one
 * recorded output element moved far outside any bound fails (exit 1). */
static void test_replay_pass_and_fail(void)
{
    void *buf;
    size_t len;
    msa_npz z;
    msa_err e;
    CU_ASSERT_FATAL(trace_bytes(&buf, &len, &z) == 0);
    char path[] = "/tmp/msa_test_replay_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    CU_ASSERT_FATAL(msa_write_atomic(path, buf, len, &e) == 0);
    free(buf);
    char *argv[] = {"replay", path, "--kernel", "cpu-sim", NULL};
    CU_ASSERT_EQUAL(msa_replay_main(4, argv), 0);
    msa_tensor *x = NULL;
    for (int i = 0; i < z.n; i++)
        if (!strcmp(z.t[i].name, "L00.out")) x = &z.t[i];
    CU_ASSERT_FATAL(x != NULL);
    ((float *)x->data)[3] += 0.5f; /* outputs are convex combinations of N(0,1) values in bf16 */
    msa_tensor *cs = NULL;
    for (int i = 0; i < z.n; i++)
        if (!strcmp(z.t[i].name, "checksum")) cs = &z.t[i];
    CU_ASSERT_FATAL(cs != NULL);
    CU_ASSERT_FATAL(msa_trace_checksum(&z, cs->data, &e) == 0); /* a consistent, wrong trace */
    CU_ASSERT_FATAL(msa_npz_write(path, &z, 0, &e) == 0);
    CU_ASSERT_EQUAL(msa_replay_main(4, argv), 1);
    unlink(path);
    msa_npz_free(&z);
}

/* ------------------------------------------------------------------ selection rule and recall */

static void test_select_rule(void)
{
    /* scores by hand: best two free blocks among 0..3 are the tied 3s -> ids 1, 2;
     * block 4 is the forced local block */
    const double s[5] = {1, 3, 3, 2, 5};
    int32_t sel[4];
    msa_recall_select_row(s, 5, 3, 0, 1, sel);
    CU_ASSERT(sel[0] == 1 && sel[1] == 2 && sel[2] == 4);
    /* init 1 + local 1 forced, one free pick: the 3-3 tie goes to the lower id */
    msa_recall_select_row(s, 5, 3, 1, 1, sel);
    CU_ASSERT(sel[0] == 0 && sel[1] == 1 && sel[2] == 4);
    /* nvis <= k: every visible block, -1 tail */
    msa_recall_select_row(s, 3, 4, 0, 1, sel);
    CU_ASSERT(sel[0] == 0 && sel[1] == 1 && sel[2] == 2 && sel[3] == -1);
}

static void test_dist_stats(void)
{
    double v[20];
    for (int i = 0; i < 20; i++) v[i] = 20 - i; /* 1..20 reversed */
    msa_dist_stats s;
    msa_dist_compute(v, 20, &s);
    /* nearest rank: p5 -> rank ceil(1) = 1, p50 -> rank 10, p95 -> rank 19 */
    CU_ASSERT(s.min == 1 && s.p5 == 1 && s.p50 == 10 && s.p95 == 19 && s.mean == 10.5 && s.n == 20);
}

/* One query (pos 31, B = 4, 8 visible blocks), one head, D = DI = 4, fp32.  Keys of block 5
 * are 2*e0 and every other key is 0; the query is 2*e0.  So with softmax scale 1/2:
 * logits 2 on block 5's four tokens, 0 on the other 28; the index ranks block 5 first and
 * ties every other block at 0.
 *   k = 2, local 1: Sel = {5, 7};  Oracle_2 = {5, 0} (the tie goes to the lower id)
 *   block recall 1/2; mass recall (4E + 4) / (4E + 28), E = e^2; free recall 1;
 *   forced mass 4 / (4E + 28).   k = 8 >= nvis: the row is trivial. */
static int dominant_case(msa_case *c)
{
    memset(c, 0, sizeof *c);
    c->dtype = c->index_dtype = MSA_DT_FP32;
    c->block_size = 4; c->topk = 2; c->init_blocks = 0; c->local_blocks = 1; c->causal = 1;
    c->softmax_scale = 0.5; c->softmax_scale_is_default = 1;
    c->index_scale = 0.5; c->index_scale_is_default = 1;
    c->batch = 1; c->Tq = 1; c->Tk = 32; c->Hq = c->Hkv = c->HI = 1; c->D = c->DI = 4;
    c->cu_q = calloc(2, 4); c->cu_k = calloc(2, 4);
    c->q = calloc(4, 4); c->index_q = calloc(4, 4);
    c->k = calloc(32 * 4, 4); c->v = calloc(32 * 4, 4); c->index_k = calloc(32 * 4, 4);
    if (!c->cu_q || !c->cu_k || !c->q || !c->index_q || !c->k || !c->v || !c->index_k) return -1;
    c->cu_q[1] = 1; c->cu_k[1] = 32;
    ((float *)c->q)[0] = 2; ((float *)c->index_q)[0] = 2;
    for (int j = 20; j < 24; j++) ((float *)c->k)[j * 4] = ((float *)c->index_k)[j * 4] = 2;
    for (int j = 0; j < 32; j++) ((float *)c->v)[j * 4 + 1] = (float)j;
    snprintf(c->label, sizeof c->label, "dominant");
    msa_err e;
    return msa_case_validate(c, 0, &e);
}

static void test_recall_dominant_block(void)
{
    msa_case c;
    msa_err e;
    CU_ASSERT_FATAL(dominant_case(&c) == 0);
    msa_trace_writer w;
    msa_trace_writer_init(&w);
    CU_ASSERT_FATAL(msa_trace_add(&w, "L00", 0, 0, &c, NULL, NULL, NULL, NULL, &e) == 0);
    CU_ASSERT_FATAL(msa_trace_finish_npz(&w, META, &e) == 0);
    msa_trace t;
    int rc = msa_trace_from_npz(&w.z, "dominant", &t, &e);
    if (rc) printf("\n%s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    msa_recall_opts o = {.ntopk = 2, .topk = {2, 8}, .nblock = 1, .block = {4}, .buckets = 1, .threads = 2};
    msa_recall_result r;
    CU_ASSERT_FATAL(msa_recall_run(&t, &o, &r, &e) == 0);
    CU_ASSERT_FATAL(r.ncell == 2);
    const msa_recall_cell *k2 = &r.cell[0], *k8 = &r.cell[1];
    double E = exp(2.0), den = 4 * E + 28;
    /* tolerance: sums of 32 positive doubles and one exp, relative error < 40 * 2^-53 */
    const double TOL = 1e-13;
    CU_ASSERT_EQUAL(k2->n, 1);
    CU_ASSERT_EQUAL(k2->block_recall.p50, 0.5);
    CU_ASSERT_DOUBLE_EQUAL(k2->mass_recall.p50, (4 * E + 4) / den, TOL);
    CU_ASSERT_EQUAL(k2->free_recall.p50, 1.0);
    CU_ASSERT_DOUBLE_EQUAL(k2->forced_mass.p50, 4 / den, TOL);
    CU_ASSERT_EQUAL(k8->n, 0);
    CU_ASSERT_EQUAL(k8->trivial, 1);
    /* the dense mass itself: block 5 holds 4E/den, every other block 4/den */
    double mass[8];
    CU_ASSERT_FATAL(msa_recall_block_mass(&c, 4, 8, mass, 1, &e) == 0);
    for (int b = 0; b < 8; b++) CU_ASSERT_DOUBLE_EQUAL(mass[b], (b == 5 ? 4 * E : 4) / den, TOL);
    msa_recall_result_free(&r);
    msa_trace_free(&t);
    msa_trace_writer_free(&w);
    msa_case_free(&c);
}

/* Recall on a generated case with k >= every row's nvis: all rows trivial; and with the
 * record's own (B, k), mass recall equals the dense mass of the reference's selection. */
static void test_recall_generated(void)
{
    msa_case c;
    msa_err e;
    CU_ASSERT_FATAL(gen_case(&c, SEED + 7, 12, 64) == 0);
    msa_trace_writer w;
    msa_trace_writer_init(&w);
    CU_ASSERT_FATAL(msa_trace_add(&w, "L03", 3, 0, &c, NULL, NULL, NULL, NULL, &e) == 0);
    CU_ASSERT_FATAL(msa_trace_finish_npz(&w, META, &e) == 0);
    msa_trace t;
    CU_ASSERT_FATAL(msa_trace_from_npz(&w.z, "gen", &t, &e) == 0);
    msa_recall_opts o = {.ntopk = 1, .topk = {64}, .nblock = 1, .block = {8}, .buckets = 2, .threads = 1};
    msa_recall_result r;
    CU_ASSERT_FATAL(msa_recall_run(&t, &o, &r, &e) == 0);
    CU_ASSERT_EQUAL(r.cell[0].n, 0);
    CU_ASSERT_EQUAL(r.cell[0].trivial, (long)c.Hkv * c.Tq);
    CU_ASSERT_EQUAL(r.maxpos, 63);
    msa_recall_result_free(&r);
    /* B = 16 scored directly by the reference and B = 16 coarsened from B = 8 agree */
    msa_recall_opts o1 = {.ntopk = 1, .topk = {2}, .nblock = 1, .block = {16}, .buckets = 2, .threads = 1};
    msa_recall_opts o2 = {.ntopk = 1, .topk = {2}, .nblock = 2, .block = {8, 16}, .buckets = 2, .threads = 1};
    msa_recall_result r1, r2;
    CU_ASSERT_FATAL(msa_recall_run(&t, &o1, &r1, &e) == 0 && msa_recall_run(&t, &o2, &r2, &e) == 0);
    CU_ASSERT_FATAL(r1.ncell == 1 && r2.ncell == 2 && r2.cell[1].B == 16);
    CU_ASSERT(r1.cell[0].n > 0 && r1.cell[0].n == r2.cell[1].n);
    for (long i = 0; i < r1.cell[0].n && i < r2.cell[1].n; i++) {
        CU_ASSERT_EQUAL(r1.cell[0].v_block[i], r2.cell[1].v_block[i]);
        CU_ASSERT_EQUAL(r1.cell[0].v_mass[i], r2.cell[1].v_mass[i]);
    }
    msa_recall_result_free(&r1);
    msa_recall_result_free(&r2);
    msa_trace_free(&t);
    msa_trace_writer_free(&w);
    msa_case_free(&c);
}

/* ------------------------------------------------------------------ GGUF */

typedef struct {
    uint8_t b[1024];
    size_t n;
} gbuf;

static void put(gbuf *g, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) g->b[g->n++] = (uint8_t)(v >> (8 * i));
}
static void put_str(gbuf *g, const char *s)
{
    put(g, strlen(s), 8);
    memcpy(g->b + g->n, s, strlen(s));
    g->n += strlen(s);
}

/* A valid GGUF v3: 2 keys, one Q4_1 tensor "t" of 2 rows x 32, d = 1, m = 0.5, byte j of
 * each block = j | (15 - j) << 4, so element j = j + 0.5 and element j + 16 = 15.5 - j.
 * Offsets of interesting fields are returned for the malformed variants. */
typedef struct {
    size_t version, ntensor, nkv, key0len, ndim, dim0, type, offset;
} gguf_offs;

static void build_gguf(gbuf *g, gguf_offs *o)
{
    g->n = 0;
    put(g, 0x46554747u, 4); /* "GGUF" little-endian */
    o->version = g->n; put(g, 3, 4);
    o->ntensor = g->n; put(g, 1, 8);
    o->nkv = g->n; put(g, 2, 8);
    o->key0len = g->n; put_str(g, "general.architecture"); put(g, 8, 4); put_str(g, "llama");
    put_str(g, "general.alignment"); put(g, 4, 4); put(g, 32, 4);
    put_str(g, "t");
    o->ndim = g->n; put(g, 2, 4);
    o->dim0 = g->n; put(g, 32, 8); put(g, 2, 8);
    o->type = g->n; put(g, 3, 4);
    o->offset = g->n; put(g, 0, 8);
    while (g->n % 32) g->b[g->n++] = 0;
    for (int blk = 0; blk < 2; blk++) {
        put(g, 0x3C00, 2); /* fp16 1.0 */
        put(g, 0x3800, 2); /* fp16 0.5 */
        for (int j = 0; j < 16; j++) g->b[g->n++] = (uint8_t)(j | (15 - j) << 4);
    }
}

static int parse_copy(const gbuf *g, size_t n, msa_gguf *out, msa_err *e)
{
    uint8_t *img = malloc(n ? n : 1);
    if (!img) return MSA_ENOMEM;
    memcpy(img, g->b, n);
    return msa_gguf_parse(img, n, "test.gguf", out, e);
}

static void test_gguf_valid(void)
{
    gbuf g;
    gguf_offs o;
    msa_gguf m;
    msa_err e;
    build_gguf(&g, &o);
    int rc = parse_copy(&g, g.n, &m, &e);
    if (rc) printf("\n%s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    const msa_gguf_kv *a = msa_gguf_find_kv(&m, "general.architecture");
    CU_ASSERT(a && a->str && !strcmp(a->str, "llama"));
    const msa_gguf_tensor *t = msa_gguf_find_tensor(&m, "t");
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(t->dims[0] == 32 && t->dims[1] == 2 && t->type == MSA_GGUF_Q4_1 && t->nbytes == 40);
    float row[32];
    for (int r = 0; r < 2; r++) {
        CU_ASSERT_FATAL(msa_gguf_row(t, (uint64_t)r, row) == 0);
        for (int j = 0; j < 16; j++) {
            CU_ASSERT_EQUAL(row[j], j + 0.5f);
            CU_ASSERT_EQUAL(row[j + 16], 15.5f - j);
        }
    }
    CU_ASSERT(msa_gguf_row(t, 2, row) != 0); /* row out of range */
    msa_gguf_free(&m);
}

static void test_gguf_malformed(void)
{
    gbuf g;
    gguf_offs o;
    msa_gguf m;
    msa_err e;
    build_gguf(&g, &o);
    /* every proper prefix is rejected, never read past */
    int bad = 0;
    for (size_t n = 0; n < g.n; n++)
        if (parse_copy(&g, n, &m, &e) != MSA_EINPUT) bad++;
    CU_ASSERT_EQUAL(bad, 0);
    struct {
        const char *what;
        size_t at;
        uint64_t val;
        int bytes;
    } cases[] = {
        {"magic", 0, 0x46554746u, 4},          {"version 1", o.version, 1, 4},
        {"tensor count", o.ntensor, 1u << 30, 8}, {"key count", o.nkv, 5, 8},
        {"key length", o.key0len, (uint64_t)1 << 40, 8}, {"ndim 5", o.ndim, 5, 4},
        {"dim0 not a block multiple", o.dim0, 48, 8}, {"dim0 zero", o.dim0, 0, 8},
        {"type 99", o.type, 99, 4},            {"offset outside", o.offset, 1024, 8},
        {"offset unaligned", o.offset, 8, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gbuf h = g;
        for (int b = 0; b < cases[i].bytes; b++) h.b[cases[i].at + b] = (uint8_t)(cases[i].val >> (8 * b));
        int rc = parse_copy(&h, h.n, &m, &e);
        if (rc != MSA_EINPUT) printf("\n  %s: accepted\n", cases[i].what);
        CU_ASSERT_EQUAL(rc, MSA_EINPUT);
        if (rc == MSA_OK) msa_gguf_free(&m);
    }
}

/* ------------------------------------------------------------------ Llama forward */

/* A one-layer Llama GGUF with F32 tensors: d 8, 2 query heads over 1 KV head (hd 4),
 * d_ff 8, vocabulary 6.  Weights of the layer are `lw(i)` (0 gives an identity layer),
 * the embedding row v is (v + 1) * e_v. */
typedef struct {
    uint8_t *b;
    size_t n, cap;
} dbuf;

static void dput(dbuf *g, uint64_t v, int bytes)
{
    if (g->n + 16 > g->cap) {
        g->cap = g->cap * 2 + 4096;
        g->b = realloc(g->b, g->cap);
    }
    for (int i = 0; i < bytes; i++) g->b[g->n++] = (uint8_t)(v >> (8 * i));
}
static void dstr(dbuf *g, const char *s)
{
    dput(g, strlen(s), 8);
    for (const char *p = s; *p; p++) dput(g, (uint8_t)*p, 1);
}
static void dkv_u32(dbuf *g, const char *k, uint32_t v) { dstr(g, k); dput(g, 4, 4); dput(g, v, 4); }
static void dkv_f32(dbuf *g, const char *k, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    dstr(g, k); dput(g, 6, 4); dput(g, u, 4);
}

static const struct {
    const char *name;
    int cols, rows;
} TINY[] = {{"token_embd.weight", 8, 6}, {"output_norm.weight", 8, 1}, {"blk.0.attn_norm.weight", 8, 1},
            {"blk.0.ffn_norm.weight", 8, 1}, {"blk.0.attn_q.weight", 8, 8}, {"blk.0.attn_k.weight", 8, 4},
            {"blk.0.attn_v.weight", 8, 4}, {"blk.0.attn_output.weight", 8, 8}, {"blk.0.ffn_gate.weight", 8, 8},
            {"blk.0.ffn_up.weight", 8, 8}, {"blk.0.ffn_down.weight", 8, 8}};
#define NTINY (sizeof TINY / sizeof *TINY)

static int tiny_llama(int random_layer, msa_gguf *g, msa_llama *m)
{
    dbuf b = {0};
    msa_err e;
    dput(&b, 0x46554747u, 4); dput(&b, 3, 4); dput(&b, NTINY, 8); dput(&b, 10, 8);
    dstr(&b, "general.architecture"); dput(&b, 8, 4); dstr(&b, "llama");
    dkv_u32(&b, "llama.block_count", 1); dkv_u32(&b, "llama.embedding_length", 8);
    dkv_u32(&b, "llama.attention.head_count", 2); dkv_u32(&b, "llama.attention.head_count_kv", 1);
    dkv_u32(&b, "llama.feed_forward_length", 8); dkv_u32(&b, "llama.context_length", 64);
    dkv_f32(&b, "llama.rope.freq_base", 10000.0f); dkv_f32(&b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    dkv_u32(&b, "llama.rope.dimension_count", 4);
    uint64_t off = 0;
    for (size_t i = 0; i < NTINY; i++) {
        dstr(&b, TINY[i].name); dput(&b, 2, 4); dput(&b, (uint64_t)TINY[i].cols, 8); dput(&b, (uint64_t)TINY[i].rows, 8);
        dput(&b, 0, 4); dput(&b, off, 8);
        off += (uint64_t)(4 * TINY[i].cols * TINY[i].rows + 31) / 32 * 32;
    }
    while (b.n % 32) dput(&b, 0, 1);
    msa_rng r;
    msa_rng_init(&r, SEED, 99);
    for (size_t i = 0; i < NTINY; i++) {
        int n = TINY[i].cols * TINY[i].rows;
        for (int j = 0; j < n; j++) {
            float v;
            if (i == 0) v = (j % 8 == j / 8) ? (float)(j / 8 + 1) : 0.0f; /* (v+1) e_v */
            else if (i <= 3) v = 1.0f;                                        /* norms */
            else v = random_layer ? (float)(0.5 * msa_rng_next_normal(&r)) : 0.0f;
            uint32_t u;
            memcpy(&u, &v, 4);
            dput(&b, u, 4);
        }
        while (b.n % 32) dput(&b, 0, 1);
    }
    int rc = msa_gguf_parse(b.b, b.n, "tiny.gguf", g, &e);
    if (!rc) rc = msa_llama_load(g, m, &e);
    if (rc) printf("\ntiny llama: %s\n", e.msg);
    return rc;
}

typedef struct {
    float logits[8][6];
    int calls;
} logit_sink;

static int sink_cb(void *ctx, int t0, int n, const float *lg)
{
    logit_sink *s = ctx;
    for (int r = 0; r < n && t0 + r < 8; r++) memcpy(s->logits[t0 + r], lg + (size_t)r * 6, sizeof s->logits[0]);
    s->calls++;
    return 0;
}

/* An all-zero layer is the identity (attention adds wo.(P.V) = 0, the MLP adds
 * down(silu(0) * up) = 0), so logits[t][v] = <emb[v], rmsnorm(emb[tok_t])>: with
 * emb[v] = (v+1) e_v that is (tok+1)^2 / sqrt((tok+1)^2 / 8 + eps) for v = tok, else 0. */
static void test_llama_identity_layer(void)
{
    msa_gguf g;
    msa_llama m;
    msa_err e;
    CU_ASSERT_FATAL(tiny_llama(0, &g, &m) == 0);
    CU_ASSERT(m.n_layer == 1 && m.hd == 4 && m.vocab == 6 && m.lm_head == m.emb);
    int32_t tok[5] = {2, 0, 5, 5, 1};
    logit_sink s = {{{0}}, 0};
    CU_ASSERT_FATAL(msa_llama_forward(&m, tok, 5, NULL, NULL, 0, sink_cb, &s, &e) == 0);
    for (int t = 0; t < 5; t++)
        for (int v = 0; v < 6; v++) {
            double a = tok[t] + 1, want = v == tok[t] ? a * a / sqrt(a * a / 8 + 1e-5) : 0;
            /* fp32 arithmetic on 8-element sums: relative error well below 1e-5 */
            CU_ASSERT_DOUBLE_EQUAL(s.logits[t][v], want, 1e-5 * (fabs(want) + 1));
        }
    msa_llama_free(&m);
    msa_gguf_free(&g);
}

typedef struct {
    float q[8][2][4], k[8][4];
    int seen;
} hook_sink;

static int hook_cb(void *ctx, int layer, int T, const float *q, const float *k, const float *v)
{
    hook_sink *h = ctx;
    memcpy(h->q, q, sizeof(float) * (size_t)T * 8);
    memcpy(h->k, k, sizeof(float) * (size_t)T * 4);
    h->seen = T;
    (void)layer; (void)v;
    return 0;
}

/* With a random layer: rows before position p do not depend on tokens at or after p
 * (bitwise: every row is computed by the same operations whatever the others hold), and
 * the RoPE'd q.k the hook sees depends on positions only through their difference. */
static void test_llama_causal_and_rope(void)
{
    msa_gguf g;
    msa_llama m;
    msa_err e;
    CU_ASSERT_FATAL(tiny_llama(1, &g, &m) == 0);
    int32_t a[6] = {1, 4, 2, 3, 0, 5}, b[6] = {1, 4, 2, 5, 5, 1};
    logit_sink sa = {{{0}}, 0}, sb = {{{0}}, 0};
    CU_ASSERT_FATAL(msa_llama_forward(&m, a, 6, NULL, NULL, 0, sink_cb, &sa, &e) == 0);
    CU_ASSERT_FATAL(msa_llama_forward(&m, b, 6, NULL, NULL, 0, sink_cb, &sb, &e) == 0);
    CU_ASSERT(memcmp(sa.logits, sb.logits, sizeof(float) * 3 * 6) == 0);
    CU_ASSERT(memcmp(sa.logits[3], sb.logits[3], sizeof(float) * 6) != 0);
    /* the same token at every position: q and k before RoPE are equal across rows, so
     * q_i.k_j after RoPE is a function of i - j */
    int32_t same[6] = {3, 3, 3, 3, 3, 3};
    hook_sink h = {{{{0}}}, {{0}}, 0};
    CU_ASSERT_FATAL(msa_llama_forward(&m, same, 6, hook_cb, &h, 6, NULL, NULL, &e) == 0);
    CU_ASSERT_FATAL(h.seen == 6);
    for (int hh = 0; hh < 2; hh++) {
        double d52 = 0, d41 = 0, d30 = 0;
        for (int d = 0; d < 4; d++) {
            d52 += (double)h.q[5][hh][d] * h.k[2][d];
            d41 += (double)h.q[4][hh][d] * h.k[1][d];
            d30 += (double)h.q[3][hh][d] * h.k[0][d];
        }
        /* fp32 rotations of O(1) values: agreement to ~1e-5 relative */
        CU_ASSERT_DOUBLE_EQUAL(d52, d41, 1e-4 * (fabs(d41) + 1));
        CU_ASSERT_DOUBLE_EQUAL(d41, d30, 1e-4 * (fabs(d30) + 1));
        /* and RoPE did act: position 3 is a rotation of position 0 (same norm, other vector) */
        double n0 = 0, n3 = 0, diff = 0;
        for (int d = 0; d < 4; d++) {
            n0 += (double)h.q[0][hh][d] * h.q[0][hh][d];
            n3 += (double)h.q[3][hh][d] * h.q[3][hh][d];
            diff += fabs((double)h.q[3][hh][d] - h.q[0][hh][d]);
        }
        CU_ASSERT_DOUBLE_EQUAL(n3, n0, 1e-4 * (n0 + 1));
        CU_ASSERT(diff > 1e-3 * sqrt(n0));
    }
    msa_llama_free(&m);
    msa_gguf_free(&g);
}

/* ------------------------------------------------------------------ tokenizer */

static void test_bpe_tiny(void)
{
    /* GPT-2 alphabet: space is U+0120 "Ġ" (UTF-8 C4 A0) */
    char *tokens[] = {"a", "b", "c", "\xc4\xa0", "ab", "abc", "\xc4\xa0\x61", "1", "2", "'", "s", "'s", "<|x|>"};
    int types[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3};
    char *merges[] = {"a b", "ab c", "\xc4\xa0 a", "' s"};
    enum { A, B, C, SP, AB, ABC, SPA, ONE, TWO, QUOTE, S, QS, CTRL };
    msa_bpe b;
    msa_err e;
    CU_ASSERT_FATAL(msa_bpe_init(&b, tokens, types, 13, merges, 4, &e) == 0);
    int32_t ids[32];
    /* pieces: "abc" | " ab" | " a" | "1" | "2"; " ab" merges a+b (rank 0) before Ġ+a */
    int n = msa_bpe_encode(&b, "abc ab a12", 10, ids, 32);
    int want[] = {ABC, SP, AB, SPA, ONE, TWO};
    CU_ASSERT_EQUAL_FATAL(n, 6);
    for (int i = 0; i < 6; i++) CU_ASSERT_EQUAL(ids[i], want[i]);
    /* a run of two spaces before a word leaves its last space to the word; 's is one piece */
    n = msa_bpe_encode(&b, "a  a's", 6, ids, 32);
    int want2[] = {A, SP, SPA, QS};
    CU_ASSERT_EQUAL_FATAL(n, 4);
    for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(ids[i], want2[i]);
    /* too small an output buffer is reported, not overrun */
    CU_ASSERT_EQUAL(msa_bpe_encode(&b, "abc ab a12", 10, ids, 3), -1);
    char out[16];
    msa_bpe_decode(&b, SPA, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, " a");
    CU_ASSERT_EQUAL(msa_bpe_find(&b, "<|x|>"), CTRL);
    CU_ASSERT(b.special[CTRL] == 1 && b.special[A] == 0);
    msa_bpe_free(&b);
    char *badm[] = {"ab"};
    CU_ASSERT_EQUAL(msa_bpe_init(&b, tokens, types, 13, badm, 1, &e), MSA_EINPUT);
}

int msa_suite_traces(void)
{
    CU_pSuite s = CU_add_suite("traces", NULL, NULL);
    if (!s) return -1;
    CU_add_test(s, "sha256 FIPS vectors", test_sha256_vectors);
    CU_add_test(s, "trace round trip (plain and pooled)", test_trace_roundtrip);
    CU_add_test(s, "checksum catches a flipped byte", test_checksum_flipped_byte);
    CU_add_test(s, "truncated trace -> EINPUT, exit 2", test_truncated_trace);
    CU_add_test(s, "replay passes faithful, fails tampered", test_replay_pass_and_fail);
    CU_add_test(s, "selection rule by hand", test_select_rule);
    CU_add_test(s, "distribution statistics", test_dist_stats);
    CU_add_test(s, "recall: one dominant block", test_recall_dominant_block);
    CU_add_test(s, "recall: k >= nvis is trivial", test_recall_generated);
    CU_add_test(s, "gguf valid Q4_1", test_gguf_valid);
    CU_add_test(s, "gguf malformed and truncated", test_gguf_malformed);
    CU_add_test(s, "bpe tiny vocabulary", test_bpe_tiny);
    CU_add_test(s, "llama: identity layer logits by hand", test_llama_identity_layer);
    CU_add_test(s, "llama: causality and RoPE relative positions", test_llama_causal_and_rope);
    return 0;
}
