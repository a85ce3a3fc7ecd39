/* test_case.c - CUnit suite "case": the case file, its validation and derived values.
 *
 * Positions (qinfo) against values worked out by hand for prefill, chunked prefill,
 * decode and Lq > Lk; storage rows with and without a page table; a case written by
 * tools/npz_tool.py (numpy's way) read with the values the script wrote; save/load round
 * trips; generator determinism; and a table of malformed cases, each of which must give
 * MSA_EINPUT naming the file and the field. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/case.h"
#include "test_util.h"

#define SEED 20261122u

static msa_case_params params(int batch, const int *lq, const int *lk, int B, int paged, uint64_t seed)
{
    msa_case_params p;
    memset(&p, 0, sizeof p);
    p.batch = batch;
    p.lq = lq;
    p.lk = lk;
    p.Hq = 4;
    p.Hkv = 2;
    p.D = 8;
    p.DI = 4;
    p.block_size = B;
    p.topk = 2;
    p.init_blocks = 0;
    p.local_blocks = 1;
    p.dtype = MSA_DT_BF16;
    p.index_dtype = MSA_DT_BF16;
    p.causal = 1;
    p.paged = paged;
    p.dist = MSA_DIST_NORMAL;
    p.index_dist = MSA_DIST_NORMAL;
    p.seed = seed;
    return p;
}

static int gen(const msa_case_params *p, msa_case *c)
{
    static uint64_t last_printed = 0;
    msa_err e = {{0}};
    if (p->seed != last_printed) { /* tests print the seeds they use */
        printf("[seed %llu] ", (unsigned long long)p->seed);
        last_printed = p->seed;
    }
    int rc = msa_case_generate(p, c, &e);
    if (rc) printf("\n  generate: %s\n", e.msg);
    return rc;
}

/* ------------------------------------------------------------------ positions */
typedef struct {
    int t, b, i, nkeys, nvis;
} qrow;

static void check_qinfo(const msa_case *c, const qrow *want, int n)
{
    for (int k = 0; k < n; k++) {
        msa_qinfo q = msa_case_qinfo(c, want[k].t);
        int ok = q.b == want[k].b && q.i == want[k].i && q.nkeys == want[k].nkeys && q.nvis == want[k].nvis;
        if (!ok)
            printf("\n  t=%d: got b%d i%d nkeys%d nvis%d, want b%d i%d nkeys%d nvis%d\n", want[k].t, q.b, q.i,
                   q.nkeys, q.nvis, want[k].b, want[k].i, want[k].nkeys, want[k].nvis);
        CU_ASSERT(ok);
    }
}

/* Sequences: prefill Lq=Lk=5; chunked prefill Lq=3 of Lk=7; an empty one; decode Lq=1 of
 * Lk=9; Lq=3 > Lk=1.  B = 4.  pos = Lk - Lq + i, nkeys = clamp(pos+1, 0, Lk),
 * nvis = ceil(nkeys / 4), all worked out by hand below. */
static void test_qinfo_causal(void)
{
    int lq[5] = {5, 3, 0, 1, 3}, lk[5] = {5, 7, 4, 9, 1};
    msa_case_params p = params(5, lq, lk, 4, 0, SEED);
    msa_case c;
    CU_ASSERT_EQUAL_FATAL(gen(&p, &c), MSA_OK);
    static const qrow want[] = {
        {0, 0, 0, 1, 1}, {3, 0, 3, 4, 1}, {4, 0, 4, 5, 2},  /* prefill: pos = i */
        {5, 1, 0, 5, 2}, {6, 1, 1, 6, 2}, {7, 1, 2, 7, 2},  /* chunked: pos = 4 + i */
        {8, 3, 0, 9, 3},                                    /* decode: pos = 8 (skips empty b2) */
        {9, 4, 0, 0, 0}, {10, 4, 1, 0, 0}, {11, 4, 2, 1, 1}, /* Lq > Lk: pos = -2, -1, 0 */
    };
    check_qinfo(&c, want, (int)(sizeof want / sizeof want[0]));
    msa_qinfo bad = msa_case_qinfo(&c, 12);
    CU_ASSERT_EQUAL(bad.b, -1);
    CU_ASSERT_EQUAL(msa_case_max_blocks(&c), 3);
    msa_case_free(&c);
}

static void test_qinfo_noncausal(void)
{
    int lq[2] = {2, 1}, lk[2] = {5, 9};
    msa_case_params p = params(2, lq, lk, 4, 0, SEED);
    p.causal = 0;
    msa_case c;
    CU_ASSERT_EQUAL_FATAL(gen(&p, &c), MSA_OK);
    static const qrow want[] = {{0, 0, 0, 5, 2}, {1, 0, 1, 5, 2}, {2, 1, 0, 9, 3}};
    check_qinfo(&c, want, 3);
    msa_case_free(&c);
}

/* Packed rows are cu_k[b] + j; paged rows follow a hand-made table. */
static void test_kv_rows(void)
{
    int lq[2] = {1, 1}, lk[2] = {3, 1};
    msa_case_params p = params(2, lq, lk, 2, 0, SEED);
    msa_case c;
    CU_ASSERT_EQUAL_FATAL(gen(&p, &c), MSA_OK);
    CU_ASSERT_EQUAL(msa_case_kv_row(&c, 0, 2), 2);
    CU_ASSERT_EQUAL(msa_case_kv_row(&c, 1, 0), 3);
    msa_case_free(&c);
    p.paged = 1;
    CU_ASSERT_EQUAL_FATAL(gen(&p, &c), MSA_OK);
    CU_ASSERT_EQUAL_FATAL(c.max_blocks, 2);
    CU_ASSERT_EQUAL_FATAL(c.num_pages, 3);
    int32_t table[4] = {2, 0, 1, -1}; /* seq 0: blocks on pages 2, 0; seq 1: page 1 */
    memcpy(c.page_table, table, sizeof table);
    msa_err e;
    CU_ASSERT_EQUAL(msa_case_validate(&c, 0, &e), MSA_OK);
    CU_ASSERT_EQUAL(msa_case_kv_row(&c, 0, 0), 4);
    CU_ASSERT_EQUAL(msa_case_kv_row(&c, 0, 1), 5);
    CU_ASSERT_EQUAL(msa_case_kv_row(&c, 0, 2), 0);
    CU_ASSERT_EQUAL(msa_case_kv_row(&c, 1, 0), 2);
    msa_case_free(&c);
}

/* ------------------------------------------------------------------ numpy-written case */
static int python_ok(void) { return msa_test_python_ok("case"); }

static msa_test_tmp tmp = {"msa_case", "", ""};
static const char *tmp_path(const char *name) { return msa_test_tmp_path(&tmp, name); }

/* tools/npz_tool.py's demo case: q[i] = 0.5*((i%7)-3), k[i] = 0.25*((i%5)-2),
 * v[i] = (i%9)-4, index_q[i] = 0.125*(i%3), index_k[i] = 1-i over flat indices. */
static void python_case(const char *flags)
{
    if (!python_ok()) return;
    char cmd[300];
    const char *path = tmp_path("pycase.npz");
    snprintf(cmd, sizeof cmd, "python3 tools/npz_tool.py case %s %s", path, flags);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    msa_case c;
    msa_err e = {{0}};
    int rc = msa_case_load(path, &c, &e);
    if (rc) printf("\n  %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, MSA_OK);
    CU_ASSERT(c.batch == 2 && c.Tq == 3 && c.Tk == 8 && c.Hq == 2 && c.Hkv == 1 && c.D == 2 && c.HI == 1 &&
              c.DI == 2);
    CU_ASSERT(c.dtype == MSA_DT_BF16 && c.index_dtype == MSA_DT_BF16 && c.block_size == 2 && c.topk == 2 &&
              c.init_blocks == 0 && c.local_blocks == 1 && c.causal == 1 && c.page_table == NULL);
    CU_ASSERT(c.softmax_scale_is_default && c.softmax_scale == 0.7071067811865476);
    CU_ASSERT(!c.index_scale_is_default && c.index_scale == 0.5);
    CU_ASSERT_EQUAL(msa_case_q(&c, 1, 1, 0), 1.5);     /* i = 6 */
    CU_ASSERT_EQUAL(msa_case_k(&c, 7, 0, 1), -0.5);    /* i = 15 */
    CU_ASSERT_EQUAL(msa_case_v(&c, 3, 0, 1), 3.0);     /* i = 7 */
    CU_ASSERT_EQUAL(msa_case_iq(&c, 2, 0, 1), 0.25);   /* i = 5 */
    CU_ASSERT_EQUAL(msa_case_ik(&c, 7, 1), -14.0);     /* i = 15 */
    static const qrow want[] = {{1, 0, 1, 3, 2}, {2, 1, 0, 5, 3}};
    check_qinfo(&c, want, 2);
    char d[200];
    msa_case_describe(&c, d, sizeof d);
    CU_ASSERT_STRING_EQUAL(d, "b2 q[2,1] k[3,5] Hq2 Hkv1 D2 DI2 B2 k2 i0 l1 bf16");
    msa_case_free(&c);
}

static void test_python_case_stored(void) { python_case(""); }
static void test_python_case_deflate_stream(void) { python_case("-z --stream"); }

/* ------------------------------------------------------------------ round trips */
static size_t tensor_bytes(const msa_case *c, int which)
{
    size_t es = msa_dtype_size(c->dtype), ei = msa_dtype_size(c->index_dtype);
    switch (which) {
    case 0: return (size_t)c->Tq * c->Hq * c->D * es;
    case 1:
    case 2: return (size_t)c->Tk * c->Hkv * c->D * es;
    case 3: return (size_t)c->Tq * c->HI * c->DI * ei;
    default: return (size_t)c->Tk * c->DI * ei;
    }
}

static void check_same_case(const msa_case *a, const msa_case *b)
{
    CU_ASSERT(a->dtype == b->dtype && a->index_dtype == b->index_dtype && a->block_size == b->block_size &&
              a->topk == b->topk && a->init_blocks == b->init_blocks && a->local_blocks == b->local_blocks &&
              a->causal == b->causal && a->softmax_scale == b->softmax_scale &&
              a->softmax_scale_is_default == b->softmax_scale_is_default && a->index_scale == b->index_scale &&
              a->index_scale_is_default == b->index_scale_is_default);
    CU_ASSERT_FATAL(a->batch == b->batch && a->Tq == b->Tq && a->Tk == b->Tk && a->Hq == b->Hq &&
                    a->Hkv == b->Hkv && a->D == b->D && a->HI == b->HI && a->DI == b->DI &&
                    a->max_blocks == b->max_blocks && a->num_pages == b->num_pages);
    const void *pa[5] = {a->q, a->k, a->v, a->index_q, a->index_k}, *pb[5] = {b->q, b->k, b->v, b->index_q, b->index_k};
    for (int i = 0; i < 5; i++) CU_ASSERT(memcmp(pa[i], pb[i], tensor_bytes(a, i)) == 0);
    CU_ASSERT(memcmp(a->cu_q, b->cu_q, ((size_t)a->batch + 1) * 4) == 0);
    CU_ASSERT(memcmp(a->cu_k, b->cu_k, ((size_t)a->batch + 1) * 4) == 0);
    CU_ASSERT((a->page_table == NULL) == (b->page_table == NULL));
    if (a->page_table && b->page_table)
        CU_ASSERT(memcmp(a->page_table, b->page_table, (size_t)a->batch * a->max_blocks * 4) == 0);
}

static void test_save_load(void)
{
    static const msa_dtype dts[4] = {MSA_DT_BF16, MSA_DT_FP16, MSA_DT_FP32, MSA_DT_E4M3};
    int lq[3] = {4, 1, 0}, lk[3] = {9, 17, 3};
    for (int i = 0; i < 4; i++) {
        msa_case_params p = params(3, lq, lk, 4, i % 3, SEED + (uint64_t)i);
        p.dtype = dts[i];
        p.index_dtype = dts[(i + 1) % 4];
        p.causal = i != 2;
        msa_case a, b, cl;
        msa_err e = {{0}};
        CU_ASSERT_EQUAL_FATAL(gen(&p, &a), MSA_OK);
        a.softmax_scale_is_default = 0;
        a.softmax_scale = 0.1; /* not a dyadic: must survive the JSON text exactly */
        const char *path = tmp_path("rt.npz");
        int rc = msa_case_save(path, &a, &e);
        if (rc) printf("\n  save: %s\n", e.msg);
        CU_ASSERT_EQUAL_FATAL(rc, MSA_OK);
        rc = msa_case_load(path, &b, &e);
        if (rc) printf("\n  load: %s\n", e.msg);
        CU_ASSERT_EQUAL_FATAL(rc, MSA_OK);
        check_same_case(&a, &b);
        CU_ASSERT_STRING_EQUAL(b.label, path);
        CU_ASSERT_EQUAL_FATAL(msa_case_clone(&b, &cl, &e), MSA_OK);
        check_same_case(&a, &cl);
        msa_case_free(&a);
        msa_case_free(&b);
        msa_case_free(&cl);
    }
}

static void test_config_json(void)
{
    int lq[1] = {2}, lk[1] = {2};
    msa_case_params p = params(1, lq, lk, 16, 0, SEED);
    msa_case c;
    CU_ASSERT_EQUAL_FATAL(gen(&p, &c), MSA_OK);
    char *j = msa_case_config_json(&c);
    CU_ASSERT_STRING_EQUAL(j, "{\"dtype\": \"bf16\", \"index_dtype\": \"bf16\", \"block_size\": 16, \"topk\": 2, "
                              "\"init_blocks\": 0, \"local_blocks\": 1, \"softmax_scale\": null, "
                              "\"index_scale\": null, \"causal\": true}");
    free(j);
    CU_ASSERT(c.softmax_scale == sqrt(0.125)); /* 1/sqrt(8) = sqrt(1/8): IEEE sqrt rounds once */
    CU_ASSERT(c.index_scale == 0.5);
    msa_case_free(&c);
}

/* ------------------------------------------------------------------ generator */
static int serialize_case(const msa_case *c, void **buf, size_t *len)
{
    msa_npz z;
    msa_err e;
    if (msa_case_to_npz(c, &z, &e)) return -1;
    int rc = msa_npz_serialize(&z, 0, buf, len, &e);
    msa_npz_free(&z);
    return rc;
}

static void test_generator_determinism(void)
{
    int lq[2] = {3, 5}, lk[2] = {40, 5};
    for (int paged = 0; paged < 3; paged++) {
        msa_case_params p = params(2, lq, lk, 8, paged, SEED);
        msa_case a, b, d;
        void *ba, *bb, *bd;
        size_t la, lb, ld;
        CU_ASSERT_EQUAL_FATAL(gen(&p, &a), MSA_OK);
        CU_ASSERT_EQUAL_FATAL(gen(&p, &b), MSA_OK);
        p.seed = SEED + 1;
        CU_ASSERT_EQUAL_FATAL(gen(&p, &d), MSA_OK);
        CU_ASSERT_EQUAL_FATAL(serialize_case(&a, &ba, &la), 0);
        CU_ASSERT_EQUAL_FATAL(serialize_case(&b, &bb, &lb), 0);
        CU_ASSERT_EQUAL_FATAL(serialize_case(&d, &bd, &ld), 0);
        CU_ASSERT(la == lb && memcmp(ba, bb, la) == 0);
        CU_ASSERT(memcmp(a.q, d.q, tensor_bytes(&a, 0)) != 0);
        CU_ASSERT(memcmp(a.index_k, d.index_k, tensor_bytes(&a, 4)) != 0);
        CU_ASSERT(strstr(a.label, "seed=20261122") != NULL);
        CU_ASSERT(strstr(d.label, "seed=20261123") != NULL);
        if (paged) {
            /* 5 + 1 blocks used; with gaps 6/2 + 1 more unused pages */
            CU_ASSERT_EQUAL(a.num_pages, paged == 2 ? 10 : 6);
            CU_ASSERT_EQUAL(a.Tk, a.num_pages * 8);
            CU_ASSERT(memcmp(a.page_table, d.page_table, (size_t)2 * a.max_blocks * 4) != 0);
        }
        msa_case_free(&a);
        msa_case_free(&b);
        msa_case_free(&d);
        free(ba);
        free(bb);
        free(bd);
    }
}

/* Distributions land on the grid they promise, in the storage dtype. */
static void test_generator_dists(void)
{
    int lq[1] = {16}, lk[1] = {16};
    msa_case_params p = params(1, lq, lk, 4, 0, SEED);
    msa_case c;
    p.dist = MSA_DIST_SMALLINT;
    p.index_dist = MSA_DIST_CONST;
    CU_ASSERT_EQUAL_FATAL(gen(&p, &c), MSA_OK);
    int seen[9] = {0};
    for (int t = 0; t < c.Tq; t++)
        for (int h = 0; h < c.Hq; h++)
            for (int d = 0; d < c.D; d++) {
                double x = msa_case_q(&c, t, h, d);
                CU_ASSERT(x == floor(x) && x >= -4 && x <= 4);
                if (x == floor(x) && x >= -4 && x <= 4) seen[(int)x + 4] = 1;
            }
    for (int i = 0; i < 9; i++) CU_ASSERT(seen[i]);
    CU_ASSERT_EQUAL(msa_case_ik(&c, 5, 3), 1.0);
    CU_ASSERT_EQUAL(msa_case_iq(&c, 3, 1, 2), 1.0);
    msa_case_free(&c);
    /* heavy tails in e4m3 saturate at 448, never NaN (validate would refuse) */
    p.dist = MSA_DIST_HEAVY;
    p.dtype = MSA_DT_E4M3;
    p.q_scale = 1000;
    CU_ASSERT_EQUAL_FATAL(gen(&p, &c), MSA_OK);
    double mx = 0;
    for (int t = 0; t < c.Tq; t++) mx = fmax(mx, fabs(msa_case_q(&c, t, 0, 0)));
    CU_ASSERT(mx == 448.0);
    msa_case_free(&c);
}

/* ------------------------------------------------------------------ malformed cases */
#define BLABEL "bad.npz"

typedef void (*case_mut)(msa_npz *z);

static void set_config(msa_npz *z, const char *json)
{
    msa_err e;
    int64_t n = (int64_t)strlen(json);
    CU_ASSERT_EQUAL(msa_npz_add(z, "config", MSA_DT_U8, 1, &n, json, &e), MSA_OK);
}

/* Replaces one int32 element of an array. */
static void poke_i32(msa_npz *z, const char *name, size_t i, int32_t v)
{
    const msa_tensor *t = msa_npz_find(z, name);
    CU_ASSERT_FATAL(t != NULL && i < t->count);
    ((int32_t *)t->data)[i] = v;
}

static void reshape(msa_npz *z, const char *name, msa_dtype dt, int ndim, const int64_t *shape)
{
    msa_err e;
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    void *zero = calloc(n ? n : 1, 8);
    CU_ASSERT_EQUAL(msa_npz_add(z, name, dt, ndim, shape, zero, &e), MSA_OK);
    free(zero);
}

#define CFG(extra) "{\"dtype\": \"bf16\", \"block_size\": 4, \"topk\": 2, \"init_blocks\": 0, \"local_blocks\": 1" extra "}"
static void m_unknown_dtype(msa_npz *z) { set_config(z, "{\"dtype\": \"bf17\", \"block_size\": 4, \"topk\": 2, \"init_blocks\": 0, \"local_blocks\": 1}"); }
static void m_topk0(msa_npz *z) { set_config(z, "{\"dtype\": \"bf16\", \"block_size\": 4, \"topk\": 0, \"init_blocks\": 0, \"local_blocks\": 0}"); }
static void m_block0(msa_npz *z) { set_config(z, "{\"dtype\": \"bf16\", \"block_size\": 0, \"topk\": 2, \"init_blocks\": 0, \"local_blocks\": 1}"); }
static void m_forced(msa_npz *z) { set_config(z, "{\"dtype\": \"bf16\", \"block_size\": 4, \"topk\": 2, \"init_blocks\": 2, \"local_blocks\": 1}"); }
static void m_topk_str(msa_npz *z) { set_config(z, "{\"dtype\": \"bf16\", \"block_size\": 4, \"topk\": \"2\", \"init_blocks\": 0, \"local_blocks\": 1}"); }
static void m_topk_frac(msa_npz *z) { set_config(z, "{\"dtype\": \"bf16\", \"block_size\": 4, \"topk\": 2.5, \"init_blocks\": 0, \"local_blocks\": 1}"); }
static void m_no_topk(msa_npz *z) { set_config(z, "{\"dtype\": \"bf16\", \"block_size\": 4, \"init_blocks\": 0, \"local_blocks\": 1}"); }
static void m_causal(msa_npz *z) { set_config(z, CFG(", \"causal\": 1")); }
static void m_scale(msa_npz *z) { set_config(z, CFG(", \"softmax_scale\": -1")); }
static void m_e5m2(msa_npz *z) { set_config(z, CFG(", \"index_dtype\": \"e5m2\"")); }
static void m_json(msa_npz *z) { set_config(z, "{\"dtype\": \"bf16\","); }
static void m_json_arr(msa_npz *z) { set_config(z, "[1, 2]"); }
static void m_no_config(msa_npz *z)
{
    for (int i = 0; i < z->n; i++)
        if (strcmp(z->t[i].name, "config") == 0) snprintf(z->t[i].name, sizeof z->t[i].name, "konfig");
}
static void m_no_v(msa_npz *z)
{
    for (int i = 0; i < z->n; i++)
        if (strcmp(z->t[i].name, "v") == 0) snprintf(z->t[i].name, sizeof z->t[i].name, "w");
}
static void m_q_f32(msa_npz *z) { int64_t s[3] = {5, 4, 8}; reshape(z, "q", MSA_DT_FP32, 3, s); }
static void m_q_2d(msa_npz *z) { int64_t s[2] = {5, 32}; reshape(z, "q", MSA_DT_U16, 2, s); }
static void m_q_D(msa_npz *z) { int64_t s[3] = {5, 4, 16}; reshape(z, "q", MSA_DT_U16, 3, s); }
static void m_q_T(msa_npz *z) { int64_t s[3] = {6, 4, 8}; reshape(z, "q", MSA_DT_U16, 3, s); }
static void m_v_shape(msa_npz *z) { int64_t s[3] = {13, 2, 8}; reshape(z, "v", MSA_DT_U16, 3, s); }
static void m_hi(msa_npz *z) { int64_t s[3] = {5, 1, 4}; reshape(z, "index_q", MSA_DT_U16, 3, s); }
static void m_hq(msa_npz *z)
{
    int64_t s[3] = {5, 3, 8};
    reshape(z, "q", MSA_DT_U16, 3, s);
}
static void m_cu_nonmono(msa_npz *z) { poke_i32(z, "cu_seqlens_q", 1, 4); poke_i32(z, "cu_seqlens_q", 2, 3); }
static void m_cu_start(msa_npz *z) { poke_i32(z, "cu_seqlens_k", 0, 1); }
static void m_cu_end(msa_npz *z) { poke_i32(z, "cu_seqlens_q", 2, 4); }
static void m_cu_len(msa_npz *z) { int64_t s[1] = {4}; reshape(z, "cu_seqlens_k", MSA_DT_I32, 1, s); }
static void m_cu_f32(msa_npz *z) { int64_t s[1] = {3}; reshape(z, "cu_seqlens_q", MSA_DT_FP32, 1, s); }
static void m_cu_big(msa_npz *z)
{
    int64_t s[1] = {3}, v[3] = {0, 3, (int64_t)1 << 40};
    msa_err e;
    CU_ASSERT_EQUAL(msa_npz_add(z, "cu_seqlens_q", MSA_DT_I64, 1, s, v, &e), MSA_OK);
}
static void m_page_range(msa_npz *z) { poke_i32(z, "page_table", 0, 99); }
static void m_page_neg(msa_npz *z) { poke_i32(z, "page_table", 0, -1); }
static void m_page_twice(msa_npz *z)
{
    const msa_tensor *t = msa_npz_find(z, "page_table");
    poke_i32(z, "page_table", 1, ((int32_t *)t->data)[0]);
}
static void m_page_narrow(msa_npz *z) { int64_t s[2] = {2, 1}; reshape(z, "page_table", MSA_DT_I32, 2, s); }
static void m_page_rows(msa_npz *z) { int64_t s[2] = {3, 4}; reshape(z, "page_table", MSA_DT_I32, 2, s); }
static void m_nan_q(msa_npz *z) { ((uint16_t *)msa_npz_find(z, "q")->data)[17] = 0x7fc0; }
static void m_inf_ik(msa_npz *z) { ((uint16_t *)msa_npz_find(z, "index_k")->data)[3] = 0xff80; }

static void test_bad_case_table(void)
{
    static const struct {
        const char *what;
        int paged;
        case_mut m;
        const char *needle;
    } T[] = {
        {"unknown dtype", 0, m_unknown_dtype, "config: dtype: unknown or unsupported dtype \"bf17\""},
        {"k = 0", 0, m_topk0, "topk: 0, must be >= 1"},
        {"block size 0", 0, m_block0, "block_size: 0, must be >= 1"},
        {"init+local > k", 0, m_forced, "init_blocks: init 2 + local 1 exceed topk 2"},
        {"topk string", 0, m_topk_str, "config: topk: not an integer"},
        {"topk 2.5", 0, m_topk_frac, "config: topk: not an integer"},
        {"topk missing", 0, m_no_topk, "config: topk: missing"},
        {"causal 1", 0, m_causal, "config: causal: not true or false"},
        {"negative scale", 0, m_scale, "config: softmax_scale: not a positive"},
        {"e5m2 index", 0, m_e5m2, "config: index_dtype: unknown or unsupported dtype \"e5m2\""},
        {"broken JSON", 0, m_json, "config: byte"},
        {"JSON array", 0, m_json_arr, "config: not a JSON object"},
        {"no config", 0, m_no_config, "config: missing"},
        {"no v", 0, m_no_v, "v: missing"},
        {"q as float32", 0, m_q_f32, "q: stored as <f4, dtype bf16 needs <u2"},
        {"q 2-d", 0, m_q_2d, "q: 2 dimensions, want 3"},
        {"q D vs k D", 0, m_q_D, "k: dimension 2 is 8, q says 16"},
        {"q rows vs index_q", 0, m_q_T, "index_q: dimension 0 is 5, q says 6"},
        {"v vs k", 0, m_v_shape, "v: dimension 0 is 13, k says 12"},
        {"HI != Hkv", 0, m_hi, "index_q: 1 index heads, must equal the 2 KV heads"},
        {"Hq % Hkv", 0, m_hq, "q: 3 query heads not a multiple of 2"},
        {"non-monotone cu", 0, m_cu_nonmono, "cu_seqlens_q: decreases at index 2"},
        {"cu start", 0, m_cu_start, "cu_seqlens_k: starts at 1"},
        {"cu end", 0, m_cu_end, "cu_seqlens_q: ends at 4, the tensors have 5 rows"},
        {"cu lengths differ", 0, m_cu_len, "cu_seqlens_k: dimension 0 is 4"},
        {"cu float", 0, m_cu_f32, "cu_seqlens_q: stored as <f4, want <i4"},
        {"cu int64 too big", 0, m_cu_big, "cu_seqlens_q: value 1099511627776 at 2 does not fit int32"},
        {"page out of range", 1, m_page_range, "page_table: [0][0] = 99 outside [0, "},
        {"page -1 in use", 1, m_page_neg, "page_table: [0][0] = -1 outside"},
        {"page twice", 1, m_page_twice, "used twice"},
        {"page table narrow", 1, m_page_narrow, "page_table: sequence 0 needs 3 blocks, the table has 1"},
        {"page table rows", 1, m_page_rows, "page_table: dimension 0 is 3, cu_seqlens_q says 2"},
        {"NaN in q", 0, m_nan_q, "q: NaN or inf at flat index 17"},
        {"inf in index_k", 0, m_inf_ik, "index_k: NaN or inf at flat index 3"},
    };
    int lq[2] = {3, 2}, lk[2] = {9, 3};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        msa_case_params p = params(2, lq, lk, 4, T[i].paged, SEED);
        msa_case c;
        msa_npz z;
        msa_err e = {{0}};
        CU_ASSERT_EQUAL_FATAL(gen(&p, &c), MSA_OK);
        CU_ASSERT_EQUAL_FATAL(msa_case_to_npz(&c, &z, &e), MSA_OK);
        msa_case_free(&c);
        T[i].m(&z);
        const char *path = tmp_path(BLABEL);
        CU_ASSERT_EQUAL_FATAL(msa_npz_write(path, &z, 0, &e), MSA_OK);
        msa_npz_free(&z);
        e.msg[0] = 0;
        int rc = msa_case_load(path, &c, &e);
        char want[300];
        snprintf(want, sizeof want, "%s: ", path);
        int ok = rc == MSA_EINPUT && strncmp(e.msg, want, strlen(want)) == 0 && strstr(e.msg, T[i].needle);
        if (!ok) printf("\n  case '%s': rc %d, message '%s' (want '%s')\n", T[i].what, rc, e.msg, T[i].needle);
        CU_ASSERT(ok);
        CU_ASSERT_PTR_NULL(c.q);
        if (rc == MSA_OK) msa_case_free(&c);
    }
}

/* Accepted variants: int64 cu_seqlens, fp16 stored as <f2, NaN through from_npz (which
 * leaves finiteness to the caller), absent optional keys and unknown keys. */
static void test_accepted_variants(void)
{
    int lq[2] = {3, 2}, lk[2] = {9, 3};
    msa_case_params p = params(2, lq, lk, 4, 0, SEED);
    p.dtype = MSA_DT_FP16;
    msa_case c, d;
    msa_npz z;
    msa_err e = {{0}};
    CU_ASSERT_EQUAL_FATAL(gen(&p, &c), MSA_OK);
    CU_ASSERT_EQUAL_FATAL(msa_case_to_npz(&c, &z, &e), MSA_OK);
    int64_t cu[3] = {0, 3, 5}, s1[1] = {3}, sq[3] = {5, 4, 8};
    CU_ASSERT_EQUAL(msa_npz_add(&z, "cu_seqlens_q", MSA_DT_I64, 1, s1, cu, &e), MSA_OK);
    CU_ASSERT_EQUAL(msa_npz_add(&z, "q", MSA_DT_FP16, 3, sq, c.q, &e), MSA_OK);
    set_config(&z, "{\"dtype\": \"fp16\", \"index_dtype\": \"bf16\", \"block_size\": 4, \"topk\": 2, "
                   "\"init_blocks\": 0, \"local_blocks\": 1, \"future_key\": [1, {\"x\": null}]}");
    ((uint16_t *)msa_npz_find(&z, "k")->data)[0] = 0x7e00; /* fp16 NaN */
    int rc = msa_case_from_npz(&z, "variants", &d, &e);
    if (rc) printf("\n  %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, MSA_OK);
    CU_ASSERT(d.causal == 1 && d.softmax_scale_is_default && d.index_scale_is_default);
    CU_ASSERT_EQUAL(memcmp(d.q, c.q, (size_t)5 * 4 * 8 * 2), 0);
    CU_ASSERT_EQUAL(msa_case_validate(&d, 1, &e), MSA_OK);
    CU_ASSERT_EQUAL(msa_case_validate(&d, 0, &e), MSA_EINPUT);
    CU_ASSERT(strstr(e.msg, "variants: k: NaN") != NULL);
    msa_case_free(&d);
    msa_npz_free(&z);
    msa_case_free(&c);
}

static int suite_clean(void) { return msa_test_tmp_remove(&tmp); }

int msa_suite_case(void)
{
    CU_pSuite s = CU_add_suite("case", NULL, suite_clean);
    if (!s) return -1;
    CU_add_test(s, "qinfo causal (prefill, chunked, decode, Lq>Lk)", test_qinfo_causal);
    CU_add_test(s, "qinfo non-causal", test_qinfo_noncausal);
    CU_add_test(s, "kv rows packed and paged", test_kv_rows);
    CU_add_test(s, "numpy-style case stored", test_python_case_stored);
    CU_add_test(s, "numpy-style case deflate stream", test_python_case_deflate_stream);
    CU_add_test(s, "save/load/clone round trip", test_save_load);
    CU_add_test(s, "config json", test_config_json);
    CU_add_test(s, "generator determinism", test_generator_determinism);
    CU_add_test(s, "generator distributions", test_generator_dists);
    CU_add_test(s, "bad case table", test_bad_case_table);
    CU_add_test(s, "accepted variants", test_accepted_variants);
    return 0;
}
