/* subcase.c - a smaller case cut out of a bigger one: chosen query rows (each kept run of
 * rows keeps a prefix of its sequence's keys, so bottom-right alignment gives every kept
 * query the same position and the same visible keys), chosen KV groups, the first query
 * heads of each group, a prefix of the head dims, and smaller k.  Row sampling (judging a
 * few rows of a large case exactly) and the shrinker both use it.  Paged sources stay
 * paged with the pool compacted to the pages still referenced, in their old order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_int.h"

void fz_view_identity(const msa_case *c, fz_view *v)
{
    memset(v, 0, sizeof *v);
    v->nseq = c->batch < (int)(sizeof v->seq / sizeof v->seq[0]) ? c->batch : 0;
    for (int b = 0; b < v->nseq; b++) {
        v->seq[b].src_b = b;
        v->seq[b].q0 = 0;
        v->seq[b].nq = msa_case_lq(c, b);
        v->seq[b].lk = msa_case_lk(c, b);
    }
    v->ngroups = c->Hkv < 64 ? c->Hkv : 64;
    for (int g = 0; g < v->ngroups; g++) v->group[g] = g;
    v->ratio = c->Hkv ? c->Hq / c->Hkv : 1;
    v->D = c->D, v->DI = c->DI, v->topk = c->topk, v->init = c->init_blocks, v->local = c->local_blocks;
}

static int check_view(const msa_case *s, const fz_view *v, msa_err *e)
{
    int ok = v->nseq >= 1 && v->ngroups >= 1 && v->ratio >= 1 && v->ratio <= s->Hq / s->Hkv &&
             v->D >= 1 && v->D <= s->D && v->DI >= 1 && v->DI <= s->DI && v->topk >= 1 &&
             v->init >= 0 && v->local >= 0 && v->init + v->local <= v->topk;
    for (int i = 0; ok && i < v->nseq; i++) {
        const fz_seqsel *q = &v->seq[i];
        ok = q->src_b >= 0 && q->src_b < s->batch && q->q0 >= 0 && q->nq >= 0 &&
             q->q0 + q->nq <= msa_case_lq(s, q->src_b) && q->lk >= 0 && q->k0 >= 0 &&
             q->k0 % s->block_size == 0 && q->k0 + q->lk <= msa_case_lk(s, q->src_b);
    }
    for (int g = 0; ok && g < v->ngroups; g++) ok = v->group[g] >= 0 && v->group[g] < s->Hkv;
    return ok ? 0 : msa_fail(e, MSA_EINTERNAL, "fuzz: sub-case view out of range");
}

static void copy_elems(msa_dtype t, void *dst, size_t di, const void *src, size_t si, size_t n)
{
    size_t es = msa_dtype_size(t);
    memcpy((char *)dst + di * es, (const char *)src + si * es, n * es);
}

/* Physical layout of the result: new page ids (old order kept) or packed rows. */
static int layout(const msa_case *s, const fz_view *v, msa_case *d, int64_t **rowmap)
{
    int B = s->block_size, paged = s->page_table && !v->unpage;
    d->Tk = 0;
    for (int i = 0; i < v->nseq; i++) d->Tk += v->seq[i].lk;
    if (paged) {
        int *newid = malloc(sizeof(int) * (s->num_pages ? s->num_pages : 1)), maxb = 1, np = 0;
        if (!newid) return MSA_ENOMEM;
        for (int p = 0; p < s->num_pages; p++) newid[p] = -1;
        for (int i = 0; i < v->nseq; i++) {
            int nb = (v->seq[i].lk + B - 1) / B;
            if (nb > maxb) maxb = nb;
            for (int blk = 0; blk < nb; blk++)
                newid[s->page_table[(size_t)v->seq[i].src_b * s->max_blocks + v->seq[i].k0 / B + blk]] = 0;
        }
        for (int p = 0; p < s->num_pages; p++) if (newid[p] == 0) newid[p] = np++;
        d->num_pages = np ? np : 1;
        d->max_blocks = maxb;
        d->Tk = d->num_pages * B;
        d->page_table = msa_calloc((size_t)v->nseq * maxb, sizeof(int32_t));
        *rowmap = msa_calloc((size_t)d->Tk, sizeof(int64_t));
        if (!d->page_table || !*rowmap) { free(newid); return MSA_ENOMEM; }
        /* rows no kept key owns stay zero: the source's may hold NaN (never read) */
        for (int64_t r = 0; r < d->Tk; r++) (*rowmap)[r] = -1;
        for (int i = 0; i < v->nseq; i++)
            for (int blk = 0; blk < (v->seq[i].lk + B - 1) / B; blk++) {
                int old = s->page_table[(size_t)v->seq[i].src_b * s->max_blocks + v->seq[i].k0 / B + blk];
                d->page_table[(size_t)i * maxb + blk] = newid[old];
                for (int o = 0; o < B && blk * B + o < v->seq[i].lk; o++)
                    (*rowmap)[(int64_t)newid[old] * B + o] = (int64_t)old * B + o;
            }
        free(newid);
        return 0;
    }
    *rowmap = msa_calloc((size_t)(d->Tk ? d->Tk : 1), sizeof(int64_t));
    if (!*rowmap) return MSA_ENOMEM;
    int64_t r = 0;
    for (int i = 0; i < v->nseq; i++)
        for (int j = 0; j < v->seq[i].lk; j++) (*rowmap)[r++] = fz_kv_row(s, v->seq[i].src_b, v->seq[i].k0 + j);
    return 0;
}

static void copy_query_side(const msa_case *s, const fz_view *v, msa_case *d, int *row_map)
{
    int rs = s->Hq / s->Hkv, t2 = 0;
    for (int i = 0; i < v->nseq; i++)
        for (int qi = 0; qi < v->seq[i].nq; qi++, t2++) {
            int t = s->cu_q[v->seq[i].src_b] + v->seq[i].q0 + qi;
            if (row_map) row_map[t2] = t;
            for (int gi = 0; gi < v->ngroups; gi++) {
                int g = v->group[gi];
                for (int r = 0; r < v->ratio; r++)
                    copy_elems(s->dtype, d->q, ((size_t)t2 * d->Hq + gi * v->ratio + r) * d->D, s->q,
                               ((size_t)t * s->Hq + g * rs + r) * s->D, (size_t)d->D);
                copy_elems(s->index_dtype, d->index_q, ((size_t)t2 * d->HI + gi) * d->DI, s->index_q,
                           ((size_t)t * s->HI + g) * s->DI, (size_t)d->DI);
            }
        }
}

static void copy_key_side(const msa_case *s, const fz_view *v, msa_case *d, const int64_t *rowmap)
{
    for (int64_t r = 0; r < d->Tk; r++) {
        int64_t sr = rowmap[r];
        if (sr < 0) continue;
        for (int gi = 0; gi < v->ngroups; gi++) {
            size_t di = ((size_t)r * d->Hkv + gi) * d->D, si = ((size_t)sr * s->Hkv + v->group[gi]) * s->D;
            copy_elems(s->dtype, d->k, di, s->k, si, (size_t)d->D);
            copy_elems(s->dtype, d->v, di, s->v, si, (size_t)d->D);
        }
        copy_elems(s->index_dtype, d->index_k, (size_t)r * d->DI, s->index_k, (size_t)sr * s->DI, (size_t)d->DI);
    }
}

static void set_config(const msa_case *s, const fz_view *v, msa_case *d)
{
    d->dtype = s->dtype, d->index_dtype = s->index_dtype;
    d->block_size = s->block_size, d->causal = s->causal;
    d->topk = v->topk, d->init_blocks = v->init, d->local_blocks = v->local;
    d->softmax_scale_is_default = s->softmax_scale_is_default;
    d->softmax_scale = s->softmax_scale_is_default ? 1.0 / sqrt((double)v->D) : s->softmax_scale;
    d->index_scale_is_default = s->index_scale_is_default;
    d->index_scale = s->index_scale_is_default ? 1.0 / sqrt((double)v->DI) : s->index_scale;
    d->batch = v->nseq, d->Hkv = d->HI = v->ngroups, d->Hq = v->ngroups * v->ratio;
    d->D = v->D, d->DI = v->DI;
}

int fz_subcase(const msa_case *s, const fz_view *v, msa_case *d, int *row_map, msa_err *e)
{
    if (check_view(s, v, e)) return MSA_EINTERNAL;
    memset(d, 0, sizeof *d);
    set_config(s, v, d);
    int64_t *rowmap = NULL;
    d->cu_q = msa_calloc((size_t)v->nseq + 1, sizeof(int32_t));
    d->cu_k = msa_calloc((size_t)v->nseq + 1, sizeof(int32_t));
    int rc = d->cu_q && d->cu_k ? 0 : MSA_ENOMEM;
    for (int i = 0; !rc && i < v->nseq; i++) {
        d->cu_q[i + 1] = d->cu_q[i] + v->seq[i].nq;
        d->cu_k[i + 1] = d->cu_k[i] + v->seq[i].lk;
    }
    if (!rc) d->Tq = d->cu_q[v->nseq], rc = layout(s, v, d, &rowmap);
    if (!rc) {
        size_t es = msa_dtype_size(d->dtype), ies = msa_dtype_size(d->index_dtype);
        d->q = msa_calloc((size_t)d->Tq * d->Hq * d->D, es);
        d->k = msa_calloc((size_t)d->Tk * d->Hkv * d->D, es);
        d->v = msa_calloc((size_t)d->Tk * d->Hkv * d->D, es);
        d->index_q = msa_calloc((size_t)d->Tq * d->HI * d->DI, ies);
        d->index_k = msa_calloc((size_t)d->Tk * d->DI, ies);
        if (!d->q || !d->k || !d->v || !d->index_q || !d->index_k) rc = MSA_ENOMEM;
    }
    if (rc) {
        free(rowmap);
        msa_case_free(d);
        return msa_fail(e, MSA_ENOMEM, "fuzz: out of memory building a sub-case");
    }
    copy_query_side(s, v, d, row_map);
    copy_key_side(s, v, d, rowmap);
    free(rowmap);
    snprintf(d->label, sizeof d->label, "%.200s sub", s->label);
    return 0;
}
