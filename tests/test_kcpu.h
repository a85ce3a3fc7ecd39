/* test_kcpu.h - small helpers shared by tests/test_cpusim.c and tests/test_harness.c:
 * hand-built cases (explicit element setters, seeded random fill, packed or paged with
 * shuffled pages and a gap) and result comparisons.  Cases are built here rather than by
 * common/case_gen.c so that every expected value below is set by hand, independently of
 * the code under test.  Everything is static: each test file gets its own copy. */
#ifndef MSA_TEST_KCPU_H
#define MSA_TEST_KCPU_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/case.h"
#include "../common/numfmt.h"
#include "../common/rng.h"
#include "../kernels/harness.h"

typedef struct {
    int batch;
    int lq[4], lk[4];
    int Hq, Hkv, D, DI, B, topk, init, local, causal;
    msa_dtype dt;
    int paged;        /* 1: pages in reverse order plus one unused page */
    double q_scale;   /* multiplies q (0: 1) */
    int const_index;  /* 1: every index key and index query element is 1 (total ties) */
    uint64_t seed;
} tk_spec;

static void tk_store(msa_dtype t, void *base, size_t i, double x)
{
    if (t == MSA_DT_BF16) {
        uint16_t h = msa_double_to_bf16(x);
        memcpy((char *)base + 2 * i, &h, 2);
    } else if (t == MSA_DT_FP16) {
        uint16_t h = msa_double_to_fp16(x);
        memcpy((char *)base + 2 * i, &h, 2);
    } else if (t == MSA_DT_E4M3) {
        ((uint8_t *)base)[i] = msa_double_to_e4m3(x, 1);
    } else {
        float f = (float)x;
        memcpy((char *)base + 4 * i, &f, 4);
    }
}

/* Storage row of logical token j of sequence b (same rule as case.h states). */
static int64_t tk_row(const msa_case *c, int b, int j)
{
    if (c->page_table) return (int64_t)c->page_table[b * c->max_blocks + j / c->block_size] * c->block_size + j % c->block_size;
    return c->cu_k[b] + j;
}

static void tk_fill(msa_dtype t, void *base, size_t n, uint64_t seed, uint64_t stream, double scale)
{
    for (size_t i = 0; i < n; i++) tk_store(t, base, i, scale * msa_rng_normal(seed, stream, i));
}

/* Builds a case; random N(0,1) data from spec->seed (printed by the callers). */
static void tk_make(const tk_spec *s, msa_case *c)
{
    memset(c, 0, sizeof *c);
    c->dtype = c->index_dtype = s->dt;
    c->block_size = s->B, c->topk = s->topk, c->init_blocks = s->init, c->local_blocks = s->local;
    c->causal = s->causal;
    c->softmax_scale = 1.0 / sqrt((double)s->D), c->softmax_scale_is_default = 1;
    c->index_scale = 1.0 / sqrt((double)s->DI), c->index_scale_is_default = 1;
    c->batch = s->batch, c->Hq = s->Hq, c->Hkv = s->Hkv, c->HI = s->Hkv, c->D = s->D, c->DI = s->DI;
    c->cu_q = calloc((size_t)s->batch + 1, 4), c->cu_k = calloc((size_t)s->batch + 1, 4);
    int maxnb = 0, pages = 0;
    for (int b = 0; b < s->batch; b++) {
        c->cu_q[b + 1] = c->cu_q[b] + s->lq[b], c->cu_k[b + 1] = c->cu_k[b] + s->lk[b];
        int nb = (s->lk[b] + s->B - 1) / s->B;
        maxnb = nb > maxnb ? nb : maxnb;
        pages += nb;
    }
    c->Tq = c->cu_q[s->batch];
    c->Tk = c->cu_k[s->batch];
    if (s->paged) {
        c->max_blocks = maxnb > 0 ? maxnb : 1;
        c->num_pages = pages + 1; /* one unused page (a gap) */
        c->page_table = calloc((size_t)s->batch * c->max_blocks, 4);
        int next = c->num_pages - 1; /* reverse order; page 0 stays unused */
        for (int b = 0; b < s->batch; b++)
            for (int i = 0; i < (s->lk[b] + s->B - 1) / s->B; i++) c->page_table[b * c->max_blocks + i] = next--;
        c->Tk = c->num_pages * s->B;
    }
    size_t e = msa_dtype_size(s->dt);
    size_t nq = (size_t)c->Tq * c->Hq * c->D, nk = (size_t)c->Tk * c->Hkv * c->D;
    size_t niq = (size_t)c->Tq * c->HI * c->DI, nik = (size_t)c->Tk * c->DI;
    c->q = calloc(nq + 1, e), c->k = calloc(nk + 1, e), c->v = calloc(nk + 1, e);
    c->index_q = calloc(niq + 1, e), c->index_k = calloc(nik + 1, e);
    tk_fill(s->dt, c->q, nq, s->seed, 1, s->q_scale > 0 ? s->q_scale : 1.0);
    tk_fill(s->dt, c->index_q, niq, s->seed, 4, s->const_index ? 0.0 : 1.0);
    /* k, v, index_k by logical token so paged and packed cases hold the same data */
    for (int b = 0; b < s->batch; b++)
        for (int j = 0; j < s->lk[b]; j++) {
            int64_t row = tk_row(c, b, j);
            uint64_t tok = ((uint64_t)b << 32) | (uint64_t)j;
            for (int x = 0; x < c->Hkv * c->D; x++) {
                tk_store(s->dt, c->k, (size_t)row * c->Hkv * c->D + x, msa_rng_normal(s->seed, 2, tok * 4096 + x));
                tk_store(s->dt, c->v, (size_t)row * c->Hkv * c->D + x, msa_rng_normal(s->seed, 3, tok * 4096 + x));
            }
            for (int x = 0; x < c->DI; x++)
                tk_store(s->dt, c->index_k, (size_t)row * c->DI + x,
                         s->const_index ? 1.0 : msa_rng_normal(s->seed, 5, tok * 4096 + x));
        }
    if (s->const_index)
        for (size_t i = 0; i < niq; i++) tk_store(s->dt, c->index_q, i, 1.0);
    snprintf(c->label, sizeof c->label, "test_kcpu seed %llu", (unsigned long long)s->seed);
}

/* Frees what tk_make allocated (the test owns these buffers). */
static void tk_free(msa_case *c)
{
    free(c->cu_q), free(c->cu_k), free(c->page_table);
    free(c->q), free(c->k), free(c->v), free(c->index_q), free(c->index_k);
    memset(c, 0, sizeof *c);
}

static double tk_get(msa_dtype t, const void *base, size_t i) { return msa_dtype_load(t, base, i); }

/* Runs one entry of a named backend; returns the status (result valid when 0). */
static int tk_run(const char *name, const msa_case *c, msa_run_kind kind, const int32_t *given, int poison,
                  msa_kernel_result *r)
{
    msa_kernel k;
    msa_err e = {{0}};
    int rc = msa_kernel_open(name, &k, &e);
    if (rc) {
        printf("\n  open %s: %s\n", name, e.msg);
        return rc;
    }
    msa_run_opts o = {poison, 3}; /* 3 replays for MSA_RUN_REPLAY */
    rc = msa_kernel_run(&k, c, kind, given, &o, r, &e);
    if (rc) printf("\n  run %s: %s\n", name, e.msg);
    msa_kernel_close(&k);
    return rc;
}

static int tk_bytes_differ(const void *a, const void *b, size_t n)
{
    if (!a || !b) return a != b;
    return memcmp(a, b, n) != 0;
}

#endif
