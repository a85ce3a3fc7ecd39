/* case.c - the MSA case: config JSON, NPZ mapping, validation and derived quantities.
 *
 * A case is loaded from an .npz (docs/FORMATS.md), checked against every invariant of
 * case.h (shapes, dtypes, cu_seqlens, page table, finiteness, size overflow) and then
 * handed to the reference, the oracle and the backends, which may trust it.  The
 * default scales 1/sqrt(D) and 1/sqrt(DI) are rounded once, correctly (MPFR), so every
 * component sees the same double.  No attention arithmetic happens here; generation of
 * random cases lives in case_gen.c. */
#include "case.h"

#include <limits.h>
#include <math.h>
#include <mpfr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "json.h"
#include "case_priv.h"

#define CASE_MAX_FILE ((size_t)16 << 30) /* same cap as the NPZ reader */
#define CONFIG_MAX_BYTES (1u << 20)      /* a config is a few hundred bytes */

/* ------------------------------------------------------------------ dtypes */
static int case_dtype_ok(msa_dtype t)
{
    return t == MSA_DT_BF16 || t == MSA_DT_FP16 || t == MSA_DT_FP32 || t == MSA_DT_E4M3;
}

/* The .npy type a tensor of case dtype t is stored as (raw bits for the 16/8-bit ones). */
static msa_dtype storage_of(msa_dtype t)
{
    switch (t) {
    case MSA_DT_BF16:
    case MSA_DT_FP16: return MSA_DT_U16;
    case MSA_DT_E4M3: return MSA_DT_U8;
    case MSA_DT_FP32: return MSA_DT_FP32;
    default: return MSA_DT_INVALID;
    }
}

static const char *npy_name(msa_dtype s)
{
    switch (s) {
    case MSA_DT_U16: return "<u2";
    case MSA_DT_U8: return "|u1";
    case MSA_DT_FP32: return "<f4";
    case MSA_DT_FP16: return "<f2";
    case MSA_DT_FP64: return "<f8";
    case MSA_DT_I32: return "<i4";
    case MSA_DT_I64: return "<i8";
    default: return "?";
    }
}

/* 1/sqrt(n) rounded to the nearest double, once (MPFR's rec_sqrt is correctly rounded;
 * 1.0 / sqrt(n) in double rounds twice and can miss by an ulp). */
double msa_case_rsqrt_nearest(int n)
{
    mpfr_t r;
    mpfr_init2(r, 53);
    mpfr_set_si(r, n, MPFR_RNDN);
    mpfr_rec_sqrt(r, r, MPFR_RNDN);
    double d = mpfr_get_d(r, MPFR_RNDN);
    mpfr_clear(r);
    return d;
}

/* ------------------------------------------------------------------ config JSON */
static int cfg_int(const msa_json *o, const char *key, const char *L, int *out, msa_err *e)
{
    const msa_json *v = msa_json_get(o, key);
    if (!v) return msa_fail(e, MSA_EINPUT, "%s: config: %s: missing", L, key);
    if (v->type != MSA_JSON_NUM || v->num != floor(v->num) || v->num < INT_MIN || v->num > INT_MAX)
        return msa_fail(e, MSA_EINPUT, "%s: config: %s: not an integer", L, key);
    *out = (int)v->num;
    return MSA_OK;
}

static int cfg_dtype(const msa_json *o, const char *key, const char *L, msa_dtype *out, msa_err *e)
{
    const msa_json *v = msa_json_get(o, key);
    if (!v) return msa_fail(e, MSA_EINPUT, "%s: config: %s: missing", L, key);
    if (v->type != MSA_JSON_STR) return msa_fail(e, MSA_EINPUT, "%s: config: %s: not a string", L, key);
    *out = msa_dtype_from_name(v->str);
    if (!case_dtype_ok(*out))
        return msa_fail(e, MSA_EINPUT, "%s: config: %s: unknown or unsupported dtype \"%.40s\" (bf16, fp16, fp32, e4m3)",
                        L, key, v->str);
    return MSA_OK;
}

/* A scale: absent or null -> the default 1/sqrt(dim); otherwise a positive finite number. */
static int cfg_scale(const msa_json *o, const char *key, const char *L, double *val, int *is_default, msa_err *e)
{
    const msa_json *v = msa_json_get(o, key);
    *is_default = !v || v->type == MSA_JSON_NULL;
    if (*is_default) return MSA_OK;
    if (v->type != MSA_JSON_NUM || !isfinite(v->num) || v->num <= 0)
        return msa_fail(e, MSA_EINPUT, "%s: config: %s: not a positive finite number or null", L, key);
    *val = v->num;
    return MSA_OK;
}

static int parse_config(const msa_tensor *t, const char *L, msa_case *c, msa_err *e)
{
    if (t->dtype != MSA_DT_U8 || t->ndim != 1)
        return msa_fail(e, MSA_EINPUT, "%s: config: must be a 1-d uint8 array of UTF-8 JSON", L);
    if (t->count > CONFIG_MAX_BYTES) return msa_fail(e, MSA_EINPUT, "%s: config: larger than 1 MiB", L);
    char jl[300];
    snprintf(jl, sizeof jl, "%s: config", L);
    msa_json j;
    int rc = msa_json_parse(t->data, t->count, jl, &j, e);
    if (rc) return rc;
    const msa_json *cz = msa_json_get(&j, "causal");
    if (j.type != MSA_JSON_OBJ) rc = msa_fail(e, MSA_EINPUT, "%s: config: not a JSON object", L);
    if (!rc) rc = cfg_dtype(&j, "dtype", L, &c->dtype, e);
    c->index_dtype = c->dtype;
    if (!rc && msa_json_get(&j, "index_dtype")) rc = cfg_dtype(&j, "index_dtype", L, &c->index_dtype, e);
    if (!rc) rc = cfg_int(&j, "block_size", L, &c->block_size, e);
    if (!rc) rc = cfg_int(&j, "topk", L, &c->topk, e);
    if (!rc) rc = cfg_int(&j, "init_blocks", L, &c->init_blocks, e);
    if (!rc) rc = cfg_int(&j, "local_blocks", L, &c->local_blocks, e);
    if (!rc) rc = cfg_scale(&j, "softmax_scale", L, &c->softmax_scale, &c->softmax_scale_is_default, e);
    if (!rc) rc = cfg_scale(&j, "index_scale", L, &c->index_scale, &c->index_scale_is_default, e);
    c->causal = 1;
    if (!rc && cz && cz->type != MSA_JSON_BOOL) rc = msa_fail(e, MSA_EINPUT, "%s: config: causal: not true or false", L);
    if (!rc && cz) c->causal = cz->boolean;
    msa_json_free(&j);
    return rc;
}

static void put_scale(char *b, size_t n, double v, int is_default)
{
    if (is_default) snprintf(b, n, "null");
    else snprintf(b, n, "%.17g", v); /* 17 digits: reads back as the same double */
}

char *msa_case_config_json(const msa_case *c)
{
    char s1[40], s2[40];
    put_scale(s1, sizeof s1, c->softmax_scale, c->softmax_scale_is_default);
    put_scale(s2, sizeof s2, c->index_scale, c->index_scale_is_default);
    const char *fmt = "{\"dtype\": \"%s\", \"index_dtype\": \"%s\", \"block_size\": %d, \"topk\": %d, "
                      "\"init_blocks\": %d, \"local_blocks\": %d, \"softmax_scale\": %s, "
                      "\"index_scale\": %s, \"causal\": %s}";
    int n = snprintf(NULL, 0, fmt, msa_dtype_name(c->dtype), msa_dtype_name(c->index_dtype), c->block_size,
                     c->topk, c->init_blocks, c->local_blocks, s1, s2, c->causal ? "true" : "false");
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s)
        snprintf(s, (size_t)n + 1, fmt, msa_dtype_name(c->dtype), msa_dtype_name(c->index_dtype), c->block_size,
                 c->topk, c->init_blocks, c->local_blocks, s1, s2, c->causal ? "true" : "false");
    return s;
}

/* ------------------------------------------------------------------ sizes */
/* Element counts of the five tensors; -1 when a product overflows. */
typedef struct {
    size_t q, kv, iq, ik;
} case_counts;

static int case_counts_of(const msa_case *c, case_counts *n)
{
    size_t t;
    if (c->Tq < 0 || c->Tk < 0 || c->Hq < 0 || c->Hkv < 0 || c->D < 0 || c->HI < 0 || c->DI < 0) return -1;
    if (msa_mul_size((size_t)c->Tq, (size_t)c->Hq, &t) || msa_mul_size(t, (size_t)c->D, &n->q)) return -1;
    if (msa_mul_size((size_t)c->Tk, (size_t)c->Hkv, &t) || msa_mul_size(t, (size_t)c->D, &n->kv)) return -1;
    if (msa_mul_size((size_t)c->Tq, (size_t)c->HI, &t) || msa_mul_size(t, (size_t)c->DI, &n->iq)) return -1;
    if (msa_mul_size((size_t)c->Tk, (size_t)c->DI, &n->ik)) return -1;
    /* bytes too (8 bytes per element covers every storage type) */
    return msa_mul_size(n->q, 8, &t) || msa_mul_size(n->kv, 8, &t) || msa_mul_size(n->iq, 8, &t) ||
                   msa_mul_size(n->ik, 8, &t)
               ? -1
               : 0;
}

/* ------------------------------------------------------------------ validation */
static int check_config(const msa_case *c, const char *L, msa_err *e)
{
    if (!case_dtype_ok(c->dtype))
        return msa_fail(e, MSA_EINPUT, "%s: dtype: %s is not a case dtype (bf16, fp16, fp32, e4m3)", L, msa_dtype_name(c->dtype));
    if (!case_dtype_ok(c->index_dtype))
        return msa_fail(e, MSA_EINPUT, "%s: index_dtype: %s is not a case dtype (bf16, fp16, fp32, e4m3)", L,
                        msa_dtype_name(c->index_dtype));
    if (c->block_size < 1) return msa_fail(e, MSA_EINPUT, "%s: block_size: %d, must be >= 1", L, c->block_size);
    if (c->topk < 1) return msa_fail(e, MSA_EINPUT, "%s: topk: %d, must be >= 1", L, c->topk);
    if (c->init_blocks < 0) return msa_fail(e, MSA_EINPUT, "%s: init_blocks: %d, must be >= 0", L, c->init_blocks);
    if (c->local_blocks < 0) return msa_fail(e, MSA_EINPUT, "%s: local_blocks: %d, must be >= 0", L, c->local_blocks);
    if ((long long)c->init_blocks + c->local_blocks > c->topk)
        return msa_fail(e, MSA_EINPUT, "%s: init_blocks: init %d + local %d exceed topk %d", L, c->init_blocks,
                        c->local_blocks, c->topk);
    if (!(c->softmax_scale > 0) || !isfinite(c->softmax_scale))
        return msa_fail(e, MSA_EINPUT, "%s: softmax_scale: %g, must be positive and finite", L, c->softmax_scale);
    if (!(c->index_scale > 0) || !isfinite(c->index_scale))
        return msa_fail(e, MSA_EINPUT, "%s: index_scale: %g, must be positive and finite", L, c->index_scale);
    if (c->causal != 0 && c->causal != 1) return msa_fail(e, MSA_EINPUT, "%s: causal: must be 0 or 1", L);
    return MSA_OK;
}

static int check_dims(const msa_case *c, const char *L, msa_err *e)
{
    const struct { const char *n; int v; } d[] = {
        {"Hq", c->Hq}, {"Hkv", c->Hkv}, {"D", c->D}, {"HI", c->HI}, {"DI", c->DI}, {"batch", c->batch}};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        if (d[i].v < 1) return msa_fail(e, MSA_EINPUT, "%s: %s: %d, must be >= 1", L, d[i].n, d[i].v);
    if (c->Tq < 0 || c->Tk < 0) return msa_fail(e, MSA_EINPUT, "%s: Tq: negative token count", L);
    if (c->HI != c->Hkv)
        return msa_fail(e, MSA_EINPUT, "%s: index_q: %d index heads, must equal the %d KV heads", L, c->HI, c->Hkv);
    if (c->Hq % c->Hkv != 0)
        return msa_fail(e, MSA_EINPUT, "%s: q: %d query heads not a multiple of %d KV heads", L, c->Hq, c->Hkv);
    if (c->batch == INT_MAX) return msa_fail(e, MSA_EINPUT, "%s: batch: too large", L);
    case_counts n;
    if (case_counts_of(c, &n) != 0) return msa_fail(e, MSA_EINPUT, "%s: q: tensor sizes overflow", L);
    if ((!c->q && n.q) || (!c->k && n.kv) || (!c->v && n.kv) || (!c->index_q && n.iq) || (!c->index_k && n.ik))
        return msa_fail(e, MSA_EINPUT, "%s: q: a tensor is missing", L);
    if (!c->cu_q || !c->cu_k) return msa_fail(e, MSA_EINPUT, "%s: cu_seqlens_q: missing", L);
    return MSA_OK;
}

static int check_cu(const int32_t *cu, int batch, int total, int check_end, const char *L, const char *name,
                    msa_err *e)
{
    if (cu[0] != 0) return msa_fail(e, MSA_EINPUT, "%s: %s: starts at %d, must start at 0", L, name, (int)cu[0]);
    for (int b = 0; b < batch; b++)
        if (cu[b + 1] < cu[b])
            return msa_fail(e, MSA_EINPUT, "%s: %s: decreases at index %d (%d after %d)", L, name, b + 1,
                            (int)cu[b + 1], (int)cu[b]);
    if (check_end && cu[batch] != total)
        return msa_fail(e, MSA_EINPUT, "%s: %s: ends at %d, the tensors have %d rows", L, name, (int)cu[batch], total);
    return MSA_OK;
}

/* Paged KV: every block of every sequence maps to a distinct page in [0, num_pages).
 * Slots past a sequence's ceil(Lk/B) blocks are never read and may hold anything. */
static int check_pages(const msa_case *c, const char *L, msa_err *e)
{
    int B = c->block_size;
    if (c->Tk % B != 0 || c->num_pages != c->Tk / B)
        return msa_fail(e, MSA_EINPUT, "%s: page_table: k has %d rows, not num_pages %d x block_size %d", L, c->Tk,
                        c->num_pages, B);
    if (c->max_blocks < 0) return msa_fail(e, MSA_EINPUT, "%s: page_table: negative width", L);
    unsigned char *used = calloc((size_t)c->num_pages + 1, 1);
    if (!used) return msa_fail(e, MSA_ENOMEM, "%s: page_table: out of memory", L);
    int rc = MSA_OK;
    for (int b = 0; b < c->batch && !rc; b++) {
        int64_t need = ((int64_t)msa_case_lk(c, b) + B - 1) / B;
        if (need > c->max_blocks) {
            rc = msa_fail(e, MSA_EINPUT, "%s: page_table: sequence %d needs %lld blocks, the table has %d", L, b,
                          (long long)need, c->max_blocks);
            break;
        }
        for (int64_t j = 0; j < need && !rc; j++) {
            int32_t p = c->page_table[(size_t)b * (size_t)c->max_blocks + (size_t)j];
            if (p < 0 || p >= c->num_pages)
                rc = msa_fail(e, MSA_EINPUT, "%s: page_table: [%d][%lld] = %d outside [0, %d)", L, b, (long long)j,
                              (int)p, c->num_pages);
            else if (used[p]++)
                rc = msa_fail(e, MSA_EINPUT, "%s: page_table: page %d used twice ([%d][%lld])", L, (int)p, b,
                              (long long)j);
        }
    }
    free(used);
    return rc;
}

/* The first non-finite element of a tensor, or -1 (bit tests: no conversions needed). */
static long long first_nonfinite(msa_dtype t, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        int bad;
        if (t == MSA_DT_BF16) { uint16_t h; memcpy(&h, b + 2 * i, 2); bad = (h & 0x7f80) == 0x7f80; }
        else if (t == MSA_DT_FP16) { uint16_t h; memcpy(&h, b + 2 * i, 2); bad = (h & 0x7c00) == 0x7c00; }
        else if (t == MSA_DT_E4M3) bad = (b[i] & 0x7f) == 0x7f; /* OCP e4m3: only NaN, no inf */
        else { float f; memcpy(&f, b + 4 * i, 4); bad = !isfinite(f); }
        if (bad) return (long long)i;
    }
    return -1;
}

static int check_finite(const msa_case *c, const char *L, msa_err *e)
{
    case_counts n;
    case_counts_of(c, &n);
    const struct { const char *name; msa_dtype t; const void *p; size_t n; } T[] = {
        {"q", c->dtype, c->q, n.q}, {"k", c->dtype, c->k, n.kv}, {"v", c->dtype, c->v, n.kv},
        {"index_q", c->index_dtype, c->index_q, n.iq}, {"index_k", c->index_dtype, c->index_k, n.ik}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        long long at = first_nonfinite(T[i].t, T[i].p, T[i].n);
        if (at >= 0)
            return msa_fail(e, MSA_EINPUT, "%s: %s: NaN or inf at flat index %lld (not allowed here)", L, T[i].name, at);
    }
    return MSA_OK;
}

int msa_case_validate(const msa_case *c, int allow_nonfinite, msa_err *e)
{
    const char *L = c->label[0] ? c->label : "case";
    int rc = check_config(c, L, e);
    if (!rc) rc = check_dims(c, L, e);
    if (!rc) rc = check_cu(c->cu_q, c->batch, c->Tq, 1, L, "cu_seqlens_q", e);
    if (!rc) rc = check_cu(c->cu_k, c->batch, c->Tk, !c->page_table, L, "cu_seqlens_k", e);
    if (!rc && c->page_table) rc = check_pages(c, L, e);
    if (!rc && !allow_nonfinite) rc = check_finite(c, L, e);
    return rc;
}

/* ------------------------------------------------------------------ derived */
int msa_case_max_blocks(const msa_case *c)
{
    int m = 0;
    for (int b = 0; b < c->batch; b++) {
        int nb = (int)(((int64_t)msa_case_lk(c, b) + c->block_size - 1) / c->block_size);
        if (nb > m) m = nb;
    }
    return m;
}

/* Bottom-right alignment (MSA.md section 3): query i of Lq over Lk keys is at
 * pos = Lk - Lq + i and, when causal, sees keys 0..pos (none when pos < 0). */
msa_qinfo msa_case_qinfo(const msa_case *c, int t)
{
    msa_qinfo r = {-1, -1, 0, 0};
    if (t < 0 || t >= c->Tq) return r;
    int lo = 0, hi = c->batch - 1; /* last b with cu_q[b] <= t: skips empty sequences */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (c->cu_q[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    r.b = lo;
    r.i = t - c->cu_q[lo];
    int64_t lq = msa_case_lq(c, lo), lk = msa_case_lk(c, lo), pos = lk - lq + r.i;
    int64_t nk = c->causal ? pos + 1 : lk;
    r.nkeys = (int)(nk < 0 ? 0 : nk > lk ? lk : nk);
    r.nvis = (int)(((int64_t)r.nkeys + c->block_size - 1) / c->block_size);
    return r;
}

int64_t msa_case_kv_row(const msa_case *c, int b, int j)
{
    if (!c->page_table) return (int64_t)c->cu_k[b] + j;
    int B = c->block_size;
    int32_t page = c->page_table[(size_t)b * (size_t)c->max_blocks + (size_t)(j / B)];
    return (int64_t)page * B + j % B;
}

double msa_case_q(const msa_case *c, int t, int h, int d)
{
    return msa_dtype_load(c->dtype, c->q, ((size_t)t * (size_t)c->Hq + (size_t)h) * (size_t)c->D + (size_t)d);
}
double msa_case_k(const msa_case *c, int64_t row, int g, int d)
{
    return msa_dtype_load(c->dtype, c->k, ((size_t)row * (size_t)c->Hkv + (size_t)g) * (size_t)c->D + (size_t)d);
}
double msa_case_v(const msa_case *c, int64_t row, int g, int d)
{
    return msa_dtype_load(c->dtype, c->v, ((size_t)row * (size_t)c->Hkv + (size_t)g) * (size_t)c->D + (size_t)d);
}
double msa_case_iq(const msa_case *c, int t, int g, int d)
{
    return msa_dtype_load(c->index_dtype, c->index_q,
                          ((size_t)t * (size_t)c->HI + (size_t)g) * (size_t)c->DI + (size_t)d);
}
double msa_case_ik(const msa_case *c, int64_t row, int d)
{
    return msa_dtype_load(c->index_dtype, c->index_k, (size_t)row * (size_t)c->DI + (size_t)d);
}

/* ------------------------------------------------------------------ NPZ mapping */
static int get_arr(const msa_npz *z, const char *name, int ndim, const char *L, const msa_tensor **out, msa_err *e)
{
    const msa_tensor *t = msa_npz_find(z, name);
    if (!t) return msa_fail(e, MSA_EINPUT, "%s: %s: missing", L, name);
    if (t->ndim != ndim) return msa_fail(e, MSA_EINPUT, "%s: %s: %d dimensions, want %d", L, name, t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] > INT_MAX) return msa_fail(e, MSA_EINPUT, "%s: %s: dimension %d too large", L, name, d);
    *out = t;
    return MSA_OK;
}

/* A floating tensor stored in the form its case dtype prescribes (fp16 also as <f2). */
static int get_float(const msa_npz *z, const char *name, int ndim, msa_dtype dt, const char *L,
                     const msa_tensor **out, void **copy, msa_err *e)
{
    int rc = get_arr(z, name, ndim, L, out, e);
    if (rc) return rc;
    msa_dtype s = (*out)->dtype;
    if (s != storage_of(dt) && !(dt == MSA_DT_FP16 && s == MSA_DT_FP16))
        return msa_fail(e, MSA_EINPUT, "%s: %s: stored as %s, dtype %s needs %s", L, name, npy_name(s),
                        msa_dtype_name(dt), npy_name(storage_of(dt)));
    *copy = malloc((*out)->nbytes ? (*out)->nbytes : 1);
    if (!*copy) return msa_fail(e, MSA_ENOMEM, "%s: %s: out of memory", L, name);
    if ((*out)->nbytes) memcpy(*copy, (*out)->data, (*out)->nbytes);
    return MSA_OK;
}

/* int32 (int64 accepted when every value fits, since np.array([0, 5]) is int64). */
static int get_int32(const msa_npz *z, const char *name, int ndim, const char *L, const msa_tensor **out,
                     int32_t **copy, msa_err *e)
{
    int rc = get_arr(z, name, ndim, L, out, e);
    if (rc) return rc;
    const msa_tensor *t = *out;
    if (t->dtype != MSA_DT_I32 && t->dtype != MSA_DT_I64)
        return msa_fail(e, MSA_EINPUT, "%s: %s: stored as %s, want <i4", L, name, npy_name(t->dtype));
    *copy = malloc(t->count ? t->count * sizeof(int32_t) : 1);
    if (!*copy) return msa_fail(e, MSA_ENOMEM, "%s: %s: out of memory", L, name);
    for (size_t i = 0; i < t->count; i++) {
        int64_t v;
        if (t->dtype == MSA_DT_I32) { int32_t w; memcpy(&w, (char *)t->data + 4 * i, 4); v = w; }
        else memcpy(&v, (char *)t->data + 8 * i, 8);
        if (v < INT32_MIN || v > INT32_MAX)
            return msa_fail(e, MSA_EINPUT, "%s: %s: value %lld at %zu does not fit int32", L, name, (long long)v, i);
        (*copy)[i] = (int32_t)v;
    }
    return MSA_OK;
}

static int shape_eq(const msa_tensor *t, int d, int64_t want, const char *L, const char *what, msa_err *e)
{
    if (t->shape[d] == want) return MSA_OK;
    return msa_fail(e, MSA_EINPUT, "%s: %s: dimension %d is %lld, %s says %lld", L, t->name, d,
                    (long long)t->shape[d], what, (long long)want);
}

static int map_tensors(const msa_npz *z, const char *L, msa_case *c, msa_err *e)
{
    const msa_tensor *q, *k, *v, *iq, *ik, *cq, *ck, *pt;
    int rc = get_float(z, "q", 3, c->dtype, L, &q, &c->q, e);
    if (!rc) rc = get_float(z, "k", 3, c->dtype, L, &k, &c->k, e);
    if (!rc) rc = get_float(z, "v", 3, c->dtype, L, &v, &c->v, e);
    if (!rc) rc = get_float(z, "index_q", 3, c->index_dtype, L, &iq, &c->index_q, e);
    if (!rc) rc = get_float(z, "index_k", 2, c->index_dtype, L, &ik, &c->index_k, e);
    if (!rc) rc = get_int32(z, "cu_seqlens_q", 1, L, &cq, &c->cu_q, e);
    if (!rc) rc = get_int32(z, "cu_seqlens_k", 1, L, &ck, &c->cu_k, e);
    if (rc) return rc;
    c->Tq = (int)q->shape[0]; c->Hq = (int)q->shape[1]; c->D = (int)q->shape[2];
    c->Tk = (int)k->shape[0]; c->Hkv = (int)k->shape[1];
    c->HI = (int)iq->shape[1]; c->DI = (int)iq->shape[2];
    c->batch = (int)cq->shape[0] - 1;
    if (c->batch < 1) return msa_fail(e, MSA_EINPUT, "%s: cu_seqlens_q: needs at least 2 entries", L);
    if (!rc) rc = shape_eq(k, 2, c->D, L, "q", e);
    for (int d = 0; d < 3 && !rc; d++) rc = shape_eq(v, d, k->shape[d], L, "k", e);
    if (!rc) rc = shape_eq(iq, 0, c->Tq, L, "q", e);
    if (!rc) rc = shape_eq(ik, 0, c->Tk, L, "k", e);
    if (!rc) rc = shape_eq(ik, 1, c->DI, L, "index_q", e);
    if (!rc) rc = shape_eq(ck, 0, c->batch + 1, L, "cu_seqlens_q", e);
    if (rc || !msa_npz_find(z, "page_table")) return rc;
    rc = get_int32(z, "page_table", 2, L, &pt, &c->page_table, e);
    if (!rc) rc = shape_eq(pt, 0, c->batch, L, "cu_seqlens_q", e);
    if (rc) return rc;
    c->max_blocks = (int)pt->shape[1];
    c->num_pages = c->block_size > 0 ? c->Tk / c->block_size : 0;
    return MSA_OK;
}

int msa_case_from_npz(const msa_npz *z, const char *label, msa_case *c, msa_err *e)
{
    memset(c, 0, sizeof *c);
    snprintf(c->label, sizeof c->label, "%s", label ? label : "case");
    const char *L = c->label;
    const msa_tensor *cfg = msa_npz_find(z, "config");
    if (!cfg) return msa_fail(e, MSA_EINPUT, "%s: config: missing", L);
    int rc = parse_config(cfg, L, c, e);
    if (!rc) rc = map_tensors(z, L, c, e);
    if (!rc) {
        if (c->softmax_scale_is_default) c->softmax_scale = msa_case_rsqrt_nearest(c->D);
        if (c->index_scale_is_default) c->index_scale = msa_case_rsqrt_nearest(c->DI);
        rc = msa_case_validate(c, 1, e);
    }
    if (rc) msa_case_free(c);
    return rc;
}

int msa_case_load(const char *path, msa_case *c, msa_err *e)
{
    msa_npz z;
    memset(c, 0, sizeof *c);
    int rc = msa_npz_read(path, &z, e);
    if (rc) return rc;
    rc = msa_case_from_npz(&z, path, c, e);
    msa_npz_free(&z);
    if (!rc) rc = msa_case_validate(c, 0, e);
    if (rc) msa_case_free(c);
    return rc;
}

int msa_case_to_npz(const msa_case *c, msa_npz *z, msa_err *e)
{
    int rc = msa_case_validate(c, 1, e);
    if (rc) return rc;
    memset(z, 0, sizeof *z);
    int64_t sq[3] = {c->Tq, c->Hq, c->D}, sk[3] = {c->Tk, c->Hkv, c->D}, siq[3] = {c->Tq, c->HI, c->DI},
            sik[2] = {c->Tk, c->DI}, scu[1] = {c->batch + 1}, spt[2] = {c->batch, c->max_blocks}, scf[1];
    char *cfg = msa_case_config_json(c);
    if (!cfg) return msa_fail(e, MSA_ENOMEM, "%s: config: out of memory", c->label);
    scf[0] = (int64_t)strlen(cfg);
    msa_dtype s = storage_of(c->dtype), si = storage_of(c->index_dtype);
    rc = msa_npz_add(z, "q", s, 3, sq, c->q, e);
    if (!rc) rc = msa_npz_add(z, "k", s, 3, sk, c->k, e);
    if (!rc) rc = msa_npz_add(z, "v", s, 3, sk, c->v, e);
    if (!rc) rc = msa_npz_add(z, "index_q", si, 3, siq, c->index_q, e);
    if (!rc) rc = msa_npz_add(z, "index_k", si, 2, sik, c->index_k, e);
    if (!rc) rc = msa_npz_add(z, "cu_seqlens_q", MSA_DT_I32, 1, scu, c->cu_q, e);
    if (!rc) rc = msa_npz_add(z, "cu_seqlens_k", MSA_DT_I32, 1, scu, c->cu_k, e);
    if (!rc && c->page_table) rc = msa_npz_add(z, "page_table", MSA_DT_I32, 2, spt, c->page_table, e);
    if (!rc) rc = msa_npz_add(z, "config", MSA_DT_U8, 1, scf, cfg, e);
    free(cfg);
    if (rc) msa_npz_free(z);
    return rc;
}

int msa_case_save(const char *path, const msa_case *c, msa_err *e)
{
    msa_npz z;
    int rc = msa_case_to_npz(c, &z, e);
    if (rc) return rc;
    rc = msa_npz_write(path, &z, 1, e);
    msa_npz_free(&z);
    return rc;
}

/* ------------------------------------------------------------------ life cycle */
static void *dup_bytes(const void *p, size_t n, int *oom)
{
    if (!p) return NULL;
    void *d = malloc(n ? n : 1);
    if (!d) *oom = 1;
    else if (n) memcpy(d, p, n);
    return d;
}

int msa_case_clone(const msa_case *src, msa_case *dst, msa_err *e)
{
    case_counts n;
    *dst = *src;
    dst->q = dst->k = dst->v = dst->index_q = dst->index_k = NULL;
    dst->cu_q = dst->cu_k = dst->page_table = NULL;
    if (src->batch < 0 || src->max_blocks < 0 || case_counts_of(src, &n) != 0 || src->batch == INT_MAX)
        return msa_fail(e, MSA_EINPUT, "%s: case: sizes overflow, not cloned", src->label);
    size_t es = msa_dtype_size(src->dtype), ei = msa_dtype_size(src->index_dtype);
    int oom = 0;
    dst->q = dup_bytes(src->q, n.q * es, &oom);
    dst->k = dup_bytes(src->k, n.kv * es, &oom);
    dst->v = dup_bytes(src->v, n.kv * es, &oom);
    dst->index_q = dup_bytes(src->index_q, n.iq * ei, &oom);
    dst->index_k = dup_bytes(src->index_k, n.ik * ei, &oom);
    dst->cu_q = dup_bytes(src->cu_q, ((size_t)src->batch + 1) * sizeof(int32_t), &oom);
    dst->cu_k = dup_bytes(src->cu_k, ((size_t)src->batch + 1) * sizeof(int32_t), &oom);
    dst->page_table = dup_bytes(src->page_table, (size_t)src->batch * (size_t)src->max_blocks * sizeof(int32_t), &oom);
    if (!oom) return MSA_OK;
    msa_case_free(dst);
    return msa_fail(e, MSA_ENOMEM, "%s: case: out of memory while cloning", src->label);
}

void msa_case_free(msa_case *c)
{
    if (!c) return;
    free(c->q); free(c->k); free(c->v); free(c->index_q); free(c->index_k);
    free(c->cu_q); free(c->cu_k); free(c->page_table);
    char label[sizeof c->label];
    memcpy(label, c->label, sizeof label);
    memset(c, 0, sizeof *c);
    memcpy(c->label, label, sizeof label); /* keeps messages about a freed case readable */
}

/* "b2 q[5,129] k[5,300] Hq8 Hkv2 D64 DI64 B16 k4 i0 l1 bf16 paged": lengths of at most
 * the first 4 sequences, then "...". */
void msa_case_describe(const msa_case *c, char *buf, size_t n)
{
    char lq[64] = "", lk[64] = "";
    size_t a = 0, b = 0;
    for (int s = 0; s < c->batch && s < 4 && c->cu_q && c->cu_k; s++) {
        a += (size_t)snprintf(lq + a, sizeof lq - a, "%s%d", s ? "," : "", msa_case_lq(c, s));
        b += (size_t)snprintf(lk + b, sizeof lk - b, "%s%d", s ? "," : "", msa_case_lk(c, s));
    }
    if (c->batch > 4) {
        snprintf(lq + a, sizeof lq - a, ",...");
        snprintf(lk + b, sizeof lk - b, ",...");
    }
    char idx[32] = "";
    if (c->index_dtype != c->dtype) snprintf(idx, sizeof idx, " idx-%s", msa_dtype_name(c->index_dtype));
    snprintf(buf, n, "b%d q[%s] k[%s] Hq%d Hkv%d D%d DI%d B%d k%d i%d l%d %s%s%s%s", c->batch, lq, lk, c->Hq, c->Hkv,
             c->D, c->DI, c->block_size, c->topk, c->init_blocks, c->local_blocks, msa_dtype_name(c->dtype), idx,
             c->page_table ? " paged" : "", c->causal ? "" : " noncausal");
}
