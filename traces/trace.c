/* trace.c - reading and writing trace files: NPZ archives holding one MSA case per
 * (layer, step) record under a "NAME." prefix, what the recorded run produced, a `meta`
 * JSON entry and a SHA-256 `checksum` entry (docs/TRACES.md).
 *
 * The reader verifies the checksum before it trusts anything else, then lets
 * common/case.c validate each record's case and checks every recorded array's shape
 * against it.  It does not judge the recorded values: replay and recall do that. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/json.h"
#include "traces.h"

#define CHECKSUM_ENTRY "checksum"
#define META_ENTRY "meta"
/* A trace of a 60-layer model with several steps per layer stays far below this. */
#define MAX_RECORDS 100000

/* NumPy's dtype.str for each storage type, hashed into the checksum so that Python can
 * recompute it from numpy.load's arrays alone. */
static const char *descr(msa_dtype t)
{
    switch (t) {
    case MSA_DT_FP16: return "<f2";
    case MSA_DT_FP32: return "<f4";
    case MSA_DT_FP64: return "<f8";
    case MSA_DT_I32: return "<i4";
    case MSA_DT_I64: return "<i8";
    case MSA_DT_U8: return "|u1";
    case MSA_DT_U16: return "<u2";
    default: return NULL;
    }
}

static int cmp_name(const void *a, const void *b)
{
    const msa_tensor *x = *(const msa_tensor *const *)a, *y = *(const msa_tensor *const *)b;
    return strcmp(x->name, y->name);
}

int msa_trace_checksum(const msa_npz *z, uint8_t out[32], msa_err *e)
{
    const msa_tensor **v = msa_calloc(z->n ? (size_t)z->n : 1, sizeof *v);
    if (!v) return msa_fail(e, MSA_ENOMEM, "trace: checksum: out of memory");
    int n = 0;
    for (int i = 0; i < z->n; i++)
        if (strcmp(z->t[i].name, CHECKSUM_ENTRY) != 0) v[n++] = &z->t[i];
    qsort(v, (size_t)n, sizeof *v, cmp_name);
    msa_sha256_ctx s;
    msa_sha256_init(&s);
    for (int i = 0; i < n; i++) {
        const char *d = descr(v[i]->dtype);
        if (!d) {
            int rc = msa_fail(e, MSA_EINPUT, "trace: %s: dtype %s cannot be checksummed", v[i]->name,
                              msa_dtype_name(v[i]->dtype));
            free(v);
            return rc;
        }
        uint8_t nd = (uint8_t)v[i]->ndim;
        msa_sha256_update(&s, v[i]->name, strlen(v[i]->name) + 1);
        msa_sha256_update(&s, d, strlen(d) + 1);
        msa_sha256_update(&s, &nd, 1);
        for (int k = 0; k < v[i]->ndim; k++) {
            uint8_t le[8];
            uint64_t x = (uint64_t)v[i]->shape[k];
            for (int b = 0; b < 8; b++) le[b] = (uint8_t)(x >> (8 * b));
            msa_sha256_update(&s, le, 8);
        }
        msa_sha256_update(&s, v[i]->data, v[i]->nbytes);
    }
    free(v);
    msa_sha256_final(&s, out);
    return MSA_OK;
}

/* ---------------------------------------------------------------- writing */

void msa_trace_writer_init(msa_trace_writer *w) { memset(w, 0, sizeof *w); }

void msa_trace_writer_free(msa_trace_writer *w)
{
    msa_npz_free(&w->z);
    free(w->records_json);
    memset(w, 0, sizeof *w);
}

static int rj_append(msa_trace_writer *w, const char *s, msa_err *e)
{
    size_t n = strlen(s);
    if (w->rj_len + n + 1 > w->rj_cap) {
        size_t cap = (w->rj_cap ? w->rj_cap * 2 : 256) + n;
        char *p = realloc(w->records_json, cap);
        if (!p) return msa_fail(e, MSA_ENOMEM, "trace: records: out of memory");
        w->records_json = p;
        w->rj_cap = cap;
    }
    memcpy(w->records_json + w->rj_len, s, n + 1);
    w->rj_len += n;
    return MSA_OK;
}

static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= MSA_TRACE_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static int add_recorded(msa_trace_writer *w, const char *name, int layer, int step, const msa_case *c,
                        const int32_t *topk, const float *block_scores, const float *out, const float *lse,
                        msa_err *e);

static int add_prefixed(msa_npz *z, const char *prefix, const char *name, msa_dtype dt, int ndim,
                        const int64_t *shape, const void *data, msa_err *e)
{
    char full[MSA_NPY_NAME_MAX];
    int n = snprintf(full, sizeof full, "%s.%s", prefix, name);
    if (n < 0 || (size_t)n >= sizeof full) return msa_fail(e, MSA_EINPUT, "trace: %s: name too long", prefix);
    return msa_npz_add(z, full, dt, ndim, shape, data, e);
}

int msa_trace_add(msa_trace_writer *w, const char *name, int layer, int step, const msa_case *c,
                  const int32_t *topk, const float *block_scores, const float *out,
                  const float *lse, msa_err *e)
{
    if (!valid_name(name) || strcmp(name, META_ENTRY) == 0 || strcmp(name, CHECKSUM_ENTRY) == 0)
        return msa_fail(e, MSA_EINPUT, "trace: record name '%s': use 1-31 of [A-Za-z0-9._-]", name);
    msa_npz cz;
    memset(&cz, 0, sizeof cz);
    int rc = msa_case_to_npz(c, &cz, e);
    for (int i = 0; rc == MSA_OK && i < cz.n; i++)
        rc = add_prefixed(&w->z, name, cz.t[i].name, cz.t[i].dtype, cz.t[i].ndim, cz.t[i].shape,
                          cz.t[i].data, e);
    msa_npz_free(&cz);
    return rc ? rc : add_recorded(w, name, layer, step, c, topk, block_scores, out, lse, e);
}

static int add_recorded(msa_trace_writer *w, const char *name, int layer, int step, const msa_case *c,
                        const int32_t *topk, const float *block_scores, const float *out, const float *lse,
                        msa_err *e)
{
    int rc = MSA_OK;
    int64_t sh[3] = {c->HI, c->Tq, c->topk};
    if (rc == MSA_OK && topk) rc = add_prefixed(&w->z, name, "topk_indices", MSA_DT_I32, 3, sh, topk, e);
    sh[2] = msa_case_max_blocks(c);
    if (rc == MSA_OK && block_scores)
        rc = add_prefixed(&w->z, name, "block_scores", MSA_DT_FP32, 3, sh, block_scores, e);
    int64_t so[3] = {c->Tq, c->Hq, c->D};
    if (rc == MSA_OK && out) rc = add_prefixed(&w->z, name, "out", MSA_DT_FP32, 3, so, out, e);
    if (rc == MSA_OK && lse) rc = add_prefixed(&w->z, name, "lse", MSA_DT_FP32, 2, so, lse, e);
    if (rc != MSA_OK) return rc;
    char item[160];
    snprintf(item, sizeof item, "%s{\"name\": \"%s\", \"layer\": %d, \"step\": %d}",
             w->nrec ? ", " : "", name, layer, step);
    w->nrec++;
    return rj_append(w, item, e);
}

static int is_pooled_entry(const char *n) { return !strcmp(n, "k") || !strcmp(n, "v") || !strcmp(n, "index_k"); }

int msa_trace_add_pooled(msa_trace_writer *w, const char *name, int layer, int step, const msa_case *c,
                         const int32_t *kv_rows, int pool_rows, const void *k_pool, const void *v_pool,
                         const void *index_k_pool, const int32_t *topk, const float *block_scores,
                         const float *out, const float *lse, msa_err *e)
{
    if (!valid_name(name) || strcmp(name, META_ENTRY) == 0 || strcmp(name, CHECKSUM_ENTRY) == 0)
        return msa_fail(e, MSA_EINPUT, "trace: record name '%s': use 1-31 of [A-Za-z0-9._-]", name);
    for (int r = 0; r < c->Tk; r++)
        if (kv_rows[r] < 0 || kv_rows[r] >= pool_rows)
            return msa_fail(e, MSA_EINPUT, "trace: %s: kv_rows[%d] = %d outside the pool", name, r, kv_rows[r]);
    msa_npz cz;
    memset(&cz, 0, sizeof cz);
    int rc = msa_case_to_npz(c, &cz, e);
    const msa_tensor *kt = rc ? NULL : msa_npz_find(&cz, "k");
    const msa_tensor *it = rc ? NULL : msa_npz_find(&cz, "index_k");
    if (!rc && (!kt || !it)) rc = msa_fail(e, MSA_EINTERNAL, "trace: %s: case has no k/index_k", name);
    for (int i = 0; rc == MSA_OK && i < cz.n; i++)
        if (!is_pooled_entry(cz.t[i].name))
            rc = add_prefixed(&w->z, name, cz.t[i].name, cz.t[i].dtype, cz.t[i].ndim, cz.t[i].shape, cz.t[i].data, e);
    if (!rc) {
        int64_t sk[3] = {pool_rows, kt->shape[1], kt->shape[2]}, si[2] = {pool_rows, it->shape[1]}, sr = c->Tk;
        rc = add_prefixed(&w->z, name, "k_pool", kt->dtype, 3, sk, k_pool, e);
        if (!rc) rc = add_prefixed(&w->z, name, "v_pool", kt->dtype, 3, sk, v_pool, e);
        if (!rc) rc = add_prefixed(&w->z, name, "index_k_pool", it->dtype, 2, si, index_k_pool, e);
        if (!rc) rc = add_prefixed(&w->z, name, "kv_rows", MSA_DT_I32, 1, &sr, kv_rows, e);
    }
    msa_npz_free(&cz);
    if (rc) return rc;
    /* the recorded arrays and the records list, as msa_trace_add does them */
    msa_case shell = *c;
    shell.k = shell.v = shell.index_k = NULL;
    return add_recorded(w, name, layer, step, &shell, topk, block_scores, out, lse, e);
}

int msa_trace_finish_npz(msa_trace_writer *w, const char *meta_obj, msa_err *e)
{
    const char *close = strrchr(meta_obj, '}');
    const char *open = strchr(meta_obj, '{');
    if (!open || !close || close < open)
        return msa_fail(e, MSA_EINPUT, "trace: meta: not a JSON object");
    int empty = 1;
    for (const char *p = open + 1; p < close; p++)
        if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') empty = 0;
    size_t head = (size_t)(close - meta_obj);
    size_t len = head + w->rj_len + 64;
    char *meta = malloc(len);
    if (!meta) return msa_fail(e, MSA_ENOMEM, "trace: meta: out of memory");
    int n = snprintf(meta, len, "%.*s%s\"records\": [%s]}", (int)head, meta_obj, empty ? "" : ", ",
                     w->records_json ? w->records_json : "");
    int64_t sh = n;
    int rc = msa_npz_add(&w->z, META_ENTRY, MSA_DT_U8, 1, &sh, meta, e);
    free(meta);
    uint8_t sum[32];
    if (rc == MSA_OK) rc = msa_trace_checksum(&w->z, sum, e);
    int64_t s32 = 32;
    if (rc == MSA_OK) rc = msa_npz_add(&w->z, CHECKSUM_ENTRY, MSA_DT_U8, 1, &s32, sum, e);
    return rc;
}

int msa_trace_write(msa_trace_writer *w, const char *path, const char *meta_obj, int compress,
                    msa_err *e)
{
    int rc = msa_trace_finish_npz(w, meta_obj, e);
    return rc ? rc : msa_npz_write(path, &w->z, compress, e);
}

/* ---------------------------------------------------------------- reading */

void msa_trace_unload_record(msa_trace *t, int i)
{
    msa_trace_record *r = &t->rec[i];
    if (r->loaded) msa_case_free(&r->c);
    free(r->topk);
    free(r->block_scores);
    free(r->out);
    free(r->lse);
    r->topk = NULL;
    r->block_scores = NULL;
    r->out = NULL;
    r->lse = NULL;
    memset(&r->c, 0, sizeof r->c);
    r->loaded = 0;
}

void msa_trace_free(msa_trace *t)
{
    for (int i = 0; t->rec && i < t->nrec; i++) msa_trace_unload_record(t, i);
    free(t->rec);
    free(t->meta_text);
    msa_npz_free(&t->z);
    memset(t, 0, sizeof *t);
}

static int verify_checksum(const msa_npz *z, const char *label, msa_err *e)
{
    const msa_tensor *cs = msa_npz_find(z, CHECKSUM_ENTRY);
    if (!cs) return msa_fail(e, MSA_EINPUT, "%s: checksum: entry missing (not a trace file?)", label);
    if (cs->dtype != MSA_DT_U8 || cs->ndim != 1 || cs->count != 32)
        return msa_fail(e, MSA_EINPUT, "%s: checksum: must be uint8[32]", label);
    uint8_t sum[32];
    int rc = msa_trace_checksum(z, sum, e);
    if (rc) return rc;
    if (memcmp(sum, cs->data, 32) != 0) {
        char a[65], b[65];
        msa_sha256_hex(cs->data, a);
        msa_sha256_hex(sum, b);
        return msa_fail(e, MSA_EINPUT, "%s: checksum: stored %.16s..., contents hash to %.16s...: the trace is corrupted",
                        label, a, b);
    }
    return MSA_OK;
}

static void copy_str(char *dst, size_t n, const msa_json *j)
{
    dst[0] = 0;
    if (j && j->type == MSA_JSON_STR) snprintf(dst, n, "%s", j->str);
}

static const msa_tensor *find_rec(const msa_npz *z, const char *rec, const char *what)
{
    char full[MSA_NPY_NAME_MAX];
    snprintf(full, sizeof full, "%s.%s", rec, what);
    return msa_npz_find(z, full);
}

/* k = pool[rows] for one pooled entry; the result is a tensor named `name` (owned). */
static int gather(const msa_tensor *pool, const msa_tensor *rows, const char *name, msa_tensor *out,
                  const char *label, msa_err *e)
{
    if (pool->ndim < 2 || pool->shape[0] < 1)
        return msa_fail(e, MSA_EINPUT, "%s: %s: pool must have at least 2 dimensions", label, pool->name);
    size_t rowb = pool->nbytes / (size_t)pool->shape[0], n;
    if (msa_mul_size(rowb, rows->count, &n)) return msa_fail(e, MSA_EINPUT, "%s: %s: too large", label, name);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->dtype = pool->dtype;
    out->ndim = pool->ndim;
    memcpy(out->shape, pool->shape, sizeof out->shape);
    out->shape[0] = (int64_t)rows->count;
    out->count = pool->count / (size_t)pool->shape[0] * rows->count;
    out->nbytes = n;
    out->data = malloc(n ? n : 1);
    if (!out->data) return msa_fail(e, MSA_ENOMEM, "%s: %s: out of memory", label, name);
    const int32_t *r = rows->data;
    for (size_t i = 0; i < rows->count; i++) {
        if (r[i] < 0 || r[i] >= pool->shape[0]) {
            free(out->data);
            out->data = NULL;
            return msa_fail(e, MSA_EINPUT, "%s: %s: kv_rows[%zu] = %d outside [0, %lld)", label, pool->name, i,
                            (int)r[i], (long long)pool->shape[0]);
        }
        memcpy((char *)out->data + i * rowb, (const char *)pool->data + (size_t)r[i] * rowb, rowb);
    }
    return MSA_OK;
}

/* A view of the record's case entries with the prefix stripped (data shared), pooled
 * k / v / index_k expanded (data owned, freed by the caller: entries [nshared, n)). */
static int record_view(const msa_npz *z, const char *label, const char *rec, msa_npz *view, int *nshared,
                       msa_err *e)
{
    size_t pl = strlen(rec);
    memset(view, 0, sizeof *view);
    view->t = msa_calloc((size_t)z->n + 3, sizeof *view->t);
    if (!view->t) return msa_fail(e, MSA_ENOMEM, "%s: %s: out of memory", label, rec);
    for (int i = 0; i < z->n; i++) {
        if (strncmp(z->t[i].name, rec, pl) != 0 || z->t[i].name[pl] != '.') continue;
        view->t[view->n] = z->t[i];
        memmove(view->t[view->n].name, z->t[i].name + pl + 1, strlen(z->t[i].name + pl + 1) + 1);
        view->n++;
    }
    *nshared = view->n;
    view->cap = view->n + 3;
    const msa_tensor *rows = find_rec(z, rec, "kv_rows");
    if (!rows) return MSA_OK;
    if (rows->dtype != MSA_DT_I32 || rows->ndim != 1)
        return msa_fail(e, MSA_EINPUT, "%s: %s.kv_rows: must be int32[Tk]", label, rec);
    static const char *const pools[3][2] = {{"k_pool", "k"}, {"v_pool", "v"}, {"index_k_pool", "index_k"}};
    for (int p = 0; p < 3; p++) {
        const msa_tensor *pool = find_rec(z, rec, pools[p][0]);
        if (!pool) return msa_fail(e, MSA_EINPUT, "%s: %s.%s: missing (kv_rows present)", label, rec, pools[p][0]);
        int rc = gather(pool, rows, pools[p][1], &view->t[view->n], label, e);
        if (rc) return rc;
        view->n++;
    }
    return MSA_OK;
}

static void view_free(msa_npz *view, int nshared)
{
    for (int i = nshared; i < view->n; i++) free(view->t[i].data);
    free(view->t);
    memset(view, 0, sizeof *view);
}

static int record_case(const msa_npz *z, const char *label, msa_trace_record *r, msa_err *e)
{
    msa_npz view;
    int nshared = 0;
    int rc = record_view(z, label, r->name, &view, &nshared, e);
    char sub[300];
    snprintf(sub, sizeof sub, "%s:%s", label, r->name);
    if (!rc && view.n == 0) rc = msa_fail(e, MSA_EINPUT, "%s: %s: record has no entries", label, r->name);
    if (!rc) rc = msa_case_from_npz(&view, sub, &r->c, e);
    view_free(&view, nshared);
    if (rc) return rc;
    r->loaded = 1;
    return msa_case_validate(&r->c, 0, e);
}

static int want_shape(const msa_tensor *x, const char *label, msa_dtype dt, int nd, const int64_t *sh, msa_err *e)
{
    int ok = x->dtype == dt && x->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = x->shape[i] == sh[i];
    if (ok) return MSA_OK;
    char want[96] = "", got[96] = "";
    for (int i = 0; i < nd; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)sh[i]);
    for (int i = 0; i < x->ndim; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)x->shape[i]);
    return msa_fail(e, MSA_EINPUT, "%s: %s: expected %s[%s], found %s[%s]", label, x->name, msa_dtype_name(dt), want,
                    msa_dtype_name(x->dtype), got);
}

static void *dup_data(const msa_tensor *x)
{
    void *p = malloc(x->nbytes ? x->nbytes : 1);
    if (p) memcpy(p, x->data, x->nbytes);
    return p;
}

static int record_arrays(const msa_npz *z, const char *label, msa_trace_record *r, msa_err *e)
{
    const msa_case *c = &r->c;
    const msa_tensor *x;
    int rc = MSA_OK, oom = 0;
    r->nblk = msa_case_max_blocks(c);
    int64_t st[3] = {c->HI, c->Tq, c->topk}, sb[3] = {c->HI, c->Tq, r->nblk};
    int64_t so[3] = {c->Tq, c->Hq, c->D};
    if ((x = find_rec(z, r->name, "topk_indices")) && !(rc = want_shape(x, label, MSA_DT_I32, 3, st, e)))
        oom |= !(r->topk = dup_data(x));
    if (!rc && (x = find_rec(z, r->name, "block_scores")) && !(rc = want_shape(x, label, MSA_DT_FP32, 3, sb, e)))
        oom |= !(r->block_scores = dup_data(x));
    if (!rc && (x = find_rec(z, r->name, "out")) && !(rc = want_shape(x, label, MSA_DT_FP32, 3, so, e))) {
        r->out = msa_calloc(x->count ? x->count : 1, sizeof *r->out);
        oom |= !r->out;
        for (size_t i = 0; r->out && i < x->count; i++) r->out[i] = ((const float *)x->data)[i];
    }
    if (!rc && (x = find_rec(z, r->name, "lse")) && !(rc = want_shape(x, label, MSA_DT_FP32, 2, so, e)))
        oom |= !(r->lse = dup_data(x));
    if (!rc && oom) rc = msa_fail(e, MSA_ENOMEM, "%s: %s: out of memory", label, r->name);
    return rc;
}

int msa_trace_load_record(msa_trace *t, int i, msa_err *e)
{
    if (i < 0 || i >= t->nrec) return msa_fail(e, MSA_EINTERNAL, "%s: record %d out of range", t->label, i);
    if (t->rec[i].loaded) return MSA_OK;
    int rc = record_case(&t->z, t->label, &t->rec[i], e);
    if (!rc) rc = record_arrays(&t->z, t->label, &t->rec[i], e);
    if (rc) msa_trace_unload_record(t, i);
    return rc;
}

static int parse_records(const msa_json *recs, const char *label, msa_trace *t, msa_err *e)
{
    if (!recs || recs->type != MSA_JSON_ARR || recs->n < 1 || recs->n > MAX_RECORDS)
        return msa_fail(e, MSA_EINPUT, "%s: meta: records: expected a non-empty array", label);
    t->rec = msa_calloc((size_t)recs->n, sizeof *t->rec);
    if (!t->rec) return msa_fail(e, MSA_ENOMEM, "%s: out of memory", label);
    for (int i = 0; i < recs->n; i++) {
        const msa_json *it = &recs->items[i];
        const msa_json *nm = it->type == MSA_JSON_OBJ ? msa_json_get(it, "name") : NULL;
        const msa_json *ly = it->type == MSA_JSON_OBJ ? msa_json_get(it, "layer") : NULL;
        const msa_json *sp = it->type == MSA_JSON_OBJ ? msa_json_get(it, "step") : NULL;
        if (!nm || nm->type != MSA_JSON_STR || !valid_name(nm->str) || !ly || ly->type != MSA_JSON_NUM ||
            ly->num < 0 || ly->num > 1e6 || ly->num != floor(ly->num))
            return msa_fail(e, MSA_EINPUT, "%s: meta: records[%d]: needs a valid name and integer layer", label, i);
        msa_trace_record *r = &t->rec[t->nrec++];
        snprintf(r->name, sizeof r->name, "%s", nm->str);
        r->layer = (int)ly->num;
        r->step = sp && sp->type == MSA_JSON_NUM && sp->num >= 0 && sp->num < 1e9 ? (int)sp->num : 0;
        for (int j = 0; j + 1 < t->nrec; j++)
            if (strcmp(t->rec[j].name, r->name) == 0)
                return msa_fail(e, MSA_EINPUT, "%s: meta: records: name %s appears twice", label, r->name);
    }
    for (int i = 0; i < t->nrec; i++) { /* validate everything now, keep nothing expanded */
        int rc = msa_trace_load_record(t, i, e);
        if (rc) return rc;
        /* ...except a trace's only record (a synthetic 1M-token layer expands to GBs: loading
         * it twice costs seconds); the first load_record call then finds it ready */
        if (t->nrec > 1) msa_trace_unload_record(t, i);
    }
    return MSA_OK;
}

static int parse_meta(msa_trace *t, msa_err *e)
{
    const char *label = t->label;
    const msa_tensor *m = msa_npz_find(&t->z, META_ENTRY);
    if (!m || m->dtype != MSA_DT_U8 || m->ndim != 1)
        return msa_fail(e, MSA_EINPUT, "%s: meta: missing or not a uint8 array", label);
    t->meta_text = malloc(m->count + 1);
    if (!t->meta_text) return msa_fail(e, MSA_ENOMEM, "%s: out of memory", label);
    memcpy(t->meta_text, m->data, m->count);
    t->meta_text[m->count] = 0;
    msa_json j;
    char jl[300];
    snprintf(jl, sizeof jl, "%s: meta", label);
    int rc = msa_json_parse(t->meta_text, m->count, jl, &j, e);
    if (rc) return rc;
    const msa_json *fmt = j.type == MSA_JSON_OBJ ? msa_json_get(&j, "format") : NULL;
    if (!fmt || fmt->type != MSA_JSON_STR || strcmp(fmt->str, MSA_TRACE_FORMAT) != 0) {
        rc = msa_fail(e, MSA_EINPUT, "%s: meta: format: expected \"%s\"", label, MSA_TRACE_FORMAT);
    } else {
        copy_str(t->model, sizeof t->model, msa_json_get(&j, "model"));
        copy_str(t->weights_sha256, sizeof t->weights_sha256, msa_json_get(&j, "weights_sha256"));
        copy_str(t->index_kind, sizeof t->index_kind, msa_json_get(&j, "index"));
        copy_str(t->order, sizeof t->order, msa_json_get(&j, "order"));
        if (!t->order[0]) snprintf(t->order, sizeof t->order, "any");
        rc = parse_records(msa_json_get(&j, "records"), label, t, e);
    }
    msa_json_free(&j);
    return rc;
}

int msa_trace_from_npz(msa_npz *z, const char *label, msa_trace *t, msa_err *e)
{
    memset(t, 0, sizeof *t);
    t->z = *z;
    memset(z, 0, sizeof *z);
    snprintf(t->label, sizeof t->label, "%s", label);
    int rc = verify_checksum(&t->z, label, e);
    if (!rc) rc = parse_meta(t, e);
    if (rc) msa_trace_free(t);
    return rc;
}

int msa_trace_read(const char *path, msa_trace *t, msa_err *e)
{
    msa_npz z;
    memset(&z, 0, sizeof z);
    memset(t, 0, sizeof *t);
    int rc = msa_npz_read(path, &z, e);
    if (rc) {
        msa_npz_free(&z);
        return rc;
    }
    return msa_trace_from_npz(&z, path, t, e);
}
