/* gguf.c - a reader for GGUF model files (version 2 and 3, as written by llama.cpp's
 * converters), enough to run a Llama-layout model: header, metadata key/values (scalars,
 * strings, arrays of scalars or strings), tensor infos, and dequantisation of F32, F16,
 * BF16, Q4_0, Q4_1 and Q8_0 rows.
 *
 * Every count, length, dimension and offset is checked against the file size with
 * overflow-safe arithmetic before use; a malformed file gives MSA_EINPUT with one line.
 * It does not write GGUF and does not know any other quantisation type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/fsutil.h"
#include "../common/numfmt.h"
#include "traces.h"

/* Limits far above any real model file, so a corrupted count cannot make us allocate
 * absurd amounts before the size checks run. */
#define GGUF_MAX_KV 1000000u
#define GGUF_MAX_TENSORS 1000000u
#define GGUF_MAX_STRING (1u << 24)
#define GGUF_MAX_DIMS 4u
#define GGUF_DEFAULT_ALIGNMENT 32u /* gguf.md: "general.alignment", default 32 */
#define GGUF_MAX_FILE ((size_t)1 << 36)

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64 };

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    const char *label;
    msa_err *e;
} cur;

static int need(cur *c, size_t n, const char *what)
{
    if (n > c->len - c->pos)
        return msa_fail(c->e, MSA_EINPUT, "%s: %s: truncated at byte %zu (needs %zu more, file has %zu)", c->label,
                        what, c->pos, n, c->len - c->pos);
    return MSA_OK;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--) x = x << 8 | p[i];
    return x;
}

static int rd(cur *c, int n, uint64_t *v, const char *what)
{
    int rc = need(c, (size_t)n, what);
    if (rc) return rc;
    *v = le(c->p + c->pos, n);
    c->pos += (size_t)n;
    return MSA_OK;
}

static int rd_str(cur *c, char **out, const char *what)
{
    uint64_t n;
    int rc = rd(c, 8, &n, what);
    if (rc) return rc;
    if (n > GGUF_MAX_STRING) return msa_fail(c->e, MSA_EINPUT, "%s: %s: string length %llu too large", c->label, what, (unsigned long long)n);
    if ((rc = need(c, (size_t)n, what))) return rc;
    *out = malloc((size_t)n + 1);
    if (!*out) return msa_fail(c->e, MSA_ENOMEM, "%s: out of memory", c->label);
    memcpy(*out, c->p + c->pos, (size_t)n);
    (*out)[n] = 0;
    c->pos += (size_t)n;
    return MSA_OK;
}

static int scalar_size(uint32_t t)
{
    switch (t) {
    case T_U8: case T_I8: case T_BOOL: return 1;
    case T_U16: case T_I16: return 2;
    case T_U32: case T_I32: case T_F32: return 4;
    case T_U64: case T_I64: case T_F64: return 8;
    default: return 0;
    }
}

static double scalar_value(uint32_t t, const uint8_t *p)
{
    uint64_t x = le(p, scalar_size(t));
    switch (t) {
    case T_I8: return (double)(int8_t)x;
    case T_I16: return (double)(int16_t)x;
    case T_I32: return (double)(int32_t)x;
    case T_I64: return (double)(int64_t)x;
    case T_F32: { uint32_t u = (uint32_t)x; float f; memcpy(&f, &u, 4); return f; }
    case T_F64: { double d; memcpy(&d, &x, 8); return d; }
    default: return (double)x;
    }
}

static int rd_kv(cur *c, msa_gguf_kv *kv)
{
    uint64_t t;
    int rc = rd_str(c, &kv->key, "metadata key");
    if (!rc) rc = rd(c, 4, &t, kv->key);
    if (rc) return rc;
    kv->type = (uint32_t)t;
    kv->n = 1;
    if (t == T_STRING) return rd_str(c, &kv->str, kv->key);
    if (scalar_size((uint32_t)t)) {
        if ((rc = need(c, (size_t)scalar_size((uint32_t)t), kv->key))) return rc;
        kv->num = scalar_value((uint32_t)t, c->p + c->pos);
        c->pos += (size_t)scalar_size((uint32_t)t);
        return MSA_OK;
    }
    if (t != T_ARRAY) return msa_fail(c->e, MSA_EINPUT, "%s: %s: unknown value type %llu", c->label, kv->key, (unsigned long long)t);
    uint64_t at, n;
    if ((rc = rd(c, 4, &at, kv->key)) || (rc = rd(c, 8, &n, kv->key))) return rc;
    kv->arr_type = (uint32_t)at;
    kv->n = n;
    if (at == T_STRING) {
        /* each string needs at least its 8-byte length: bounds n before allocating */
        if (n > (c->len - c->pos) / 8) return msa_fail(c->e, MSA_EINPUT, "%s: %s: array of %llu strings exceeds the file", c->label, kv->key, (unsigned long long)n);
        kv->strs = calloc(n ? (size_t)n : 1, sizeof *kv->strs);
        if (!kv->strs) return msa_fail(c->e, MSA_ENOMEM, "%s: out of memory", c->label);
        for (uint64_t i = 0; i < n; i++)
            if ((rc = rd_str(c, &kv->strs[i], kv->key))) return rc;
        return MSA_OK;
    }
    int es = scalar_size((uint32_t)at);
    if (!es) return msa_fail(c->e, MSA_EINPUT, "%s: %s: unsupported array element type %llu", c->label, kv->key, (unsigned long long)at);
    if (n > (c->len - c->pos) / (uint64_t)es) return need(c, c->len, kv->key);
    kv->arr = c->p + c->pos;
    c->pos += (size_t)n * (size_t)es;
    return MSA_OK;
}

/* Bytes per block and elements per block of a tensor type (0 when unknown). */
static int type_layout(uint32_t t, int *bytes, int *elems)
{
    switch (t) {
    case MSA_GGUF_F32: *bytes = 4; *elems = 1; return 1;
    case MSA_GGUF_F16: case MSA_GGUF_BF16: *bytes = 2; *elems = 1; return 1;
    case MSA_GGUF_Q4_0: *bytes = 18; *elems = 32; return 1; /* f16 d, 16 bytes of nibbles */
    case MSA_GGUF_Q4_1: *bytes = 20; *elems = 32; return 1; /* f16 d, f16 m, 16 bytes */
    case MSA_GGUF_Q8_0: *bytes = 34; *elems = 32; return 1; /* f16 d, 32 int8 */
    default: return 0;
    }
}

static int rd_tensor(cur *c, msa_gguf_tensor *t)
{
    uint64_t nd, ty, off;
    int rc = rd_str(c, &t->name, "tensor name");
    if (!rc) rc = rd(c, 4, &nd, t->name);
    if (rc) return rc;
    if (nd < 1 || nd > GGUF_MAX_DIMS) return msa_fail(c->e, MSA_EINPUT, "%s: %s: %llu dimensions (1-4 allowed)", c->label, t->name, (unsigned long long)nd);
    t->ndim = (uint32_t)nd;
    t->nelem = 1;
    for (uint32_t i = 0; i < t->ndim; i++) {
        if ((rc = rd(c, 8, &t->dims[i], t->name))) return rc;
        if (t->dims[i] == 0 || t->dims[i] > ((uint64_t)1 << 40) || t->nelem > ((uint64_t)1 << 40) / t->dims[i])
            return msa_fail(c->e, MSA_EINPUT, "%s: %s: dimension %u is %llu (empty or too large)", c->label, t->name, i, (unsigned long long)t->dims[i]);
        t->nelem *= t->dims[i];
    }
    for (uint32_t i = t->ndim; i < 4; i++) t->dims[i] = 1;
    if ((rc = rd(c, 4, &ty, t->name)) || (rc = rd(c, 8, &off, t->name))) return rc;
    t->type = (uint32_t)ty;
    t->offset = off;
    int bytes, elems;
    if (!type_layout(t->type, &bytes, &elems)) return msa_fail(c->e, MSA_EINPUT, "%s: %s: unsupported tensor type %u", c->label, t->name, t->type);
    if (t->dims[0] % (uint64_t)elems) return msa_fail(c->e, MSA_EINPUT, "%s: %s: row length %llu not a multiple of the block (%d)", c->label, t->name, (unsigned long long)t->dims[0], elems);
    t->nbytes = t->nelem / (uint64_t)elems * (uint64_t)bytes;
    return MSA_OK;
}

void msa_gguf_free(msa_gguf *g)
{
    for (uint64_t i = 0; g->kv && i < g->nkv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str);
        for (uint64_t j = 0; g->kv[i].strs && j < g->kv[i].n; j++) free(g->kv[i].strs[j]);
        free(g->kv[i].strs);
    }
    for (uint64_t i = 0; g->t && i < g->ntensor; i++) free(g->t[i].name);
    free(g->kv);
    free(g->t);
    free(g->img);
    memset(g, 0, sizeof *g);
}

static int parse_header(cur *c, msa_gguf *g)
{
    uint64_t v;
    int rc = need(c, 4, "magic");
    if (rc) return rc;
    if (memcmp(c->p, "GGUF", 4)) return msa_fail(c->e, MSA_EINPUT, "%s: magic: not a GGUF file", c->label);
    c->pos = 4;
    if ((rc = rd(c, 4, &v, "version"))) return rc;
    if (v != 2 && v != 3) return msa_fail(c->e, MSA_EINPUT, "%s: version: %llu (2 and 3 supported)", c->label, (unsigned long long)v);
    g->version = (uint32_t)v;
    if ((rc = rd(c, 8, &g->ntensor, "tensor count")) || (rc = rd(c, 8, &g->nkv, "metadata count"))) return rc;
    if (g->ntensor > GGUF_MAX_TENSORS || g->nkv > GGUF_MAX_KV)
        return msa_fail(c->e, MSA_EINPUT, "%s: header: %llu tensors / %llu keys is implausible", c->label,
                        (unsigned long long)g->ntensor, (unsigned long long)g->nkv);
    return MSA_OK;
}

static int place_tensors(cur *c, msa_gguf *g)
{
    const msa_gguf_kv *al = msa_gguf_find_kv(g, "general.alignment");
    g->alignment = al && al->type == T_U32 && al->num >= 1 && al->num <= 65536 ? (uint64_t)al->num : GGUF_DEFAULT_ALIGNMENT;
    uint64_t data = (c->pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data > c->len) return msa_fail(c->e, MSA_EINPUT, "%s: data section: starts past the end of the file", c->label);
    for (uint64_t i = 0; i < g->ntensor; i++) {
        msa_gguf_tensor *t = &g->t[i];
        if (t->offset % g->alignment) return msa_fail(c->e, MSA_EINPUT, "%s: %s: offset %llu not aligned to %llu", c->label, t->name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
        if (t->offset > c->len - data || t->nbytes > c->len - data - t->offset)
            return msa_fail(c->e, MSA_EINPUT, "%s: %s: data [%llu, +%llu) lies outside the file", c->label, t->name,
                            (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        t->data = c->p + data + t->offset;
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(g->t[j].name, t->name)) return msa_fail(c->e, MSA_EINPUT, "%s: %s: tensor name repeated", c->label, t->name);
    }
    return MSA_OK;
}

int msa_gguf_parse(uint8_t *img, size_t len, const char *label, msa_gguf *g, msa_err *e)
{
    memset(g, 0, sizeof *g);
    g->img = img;
    g->len = len;
    cur c = {.p = img, .len = len, .pos = 0, .label = label, .e = e};
    int rc = parse_header(&c, g);
    if (!rc) {
        g->kv = calloc(g->nkv ? (size_t)g->nkv : 1, sizeof *g->kv);
        g->t = calloc(g->ntensor ? (size_t)g->ntensor : 1, sizeof *g->t);
        if (!g->kv || !g->t) rc = msa_fail(e, MSA_ENOMEM, "%s: out of memory", label);
    }
    for (uint64_t i = 0; !rc && i < g->nkv; i++) rc = rd_kv(&c, &g->kv[i]);
    for (uint64_t i = 0; !rc && i < g->ntensor; i++) rc = rd_tensor(&c, &g->t[i]);
    if (!rc) rc = place_tensors(&c, g);
    if (rc) msa_gguf_free(g);
    return rc;
}

int msa_gguf_load(const char *path, msa_gguf *g, msa_err *e)
{
    void *buf;
    size_t len;
    int rc = msa_read_file(path, GGUF_MAX_FILE, &buf, &len, e);
    if (rc) return rc;
    return msa_gguf_parse(buf, len, path, g, e);
}

const msa_gguf_kv *msa_gguf_find_kv(const msa_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->nkv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const msa_gguf_tensor *msa_gguf_find_tensor(const msa_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->ntensor; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

int msa_gguf_row(const msa_gguf_tensor *t, uint64_t r, float *out)
{
    int bytes, elems;
    if (!type_layout(t->type, &bytes, &elems) || r >= t->nelem / t->dims[0]) return MSA_EINPUT;
    uint64_t n = t->dims[0], nb = n / (uint64_t)elems;
    const uint8_t *p = t->data + r * nb * (uint64_t)bytes;
    for (uint64_t b = 0; b < nb; b++, p += bytes) {
        float *o = out + b * (uint64_t)elems;
        switch (t->type) {
        case MSA_GGUF_F32: memcpy(o, p, 4); break;
        case MSA_GGUF_F16: o[0] = msa_fp16_to_float((uint16_t)le(p, 2)); break;
        case MSA_GGUF_BF16: o[0] = msa_bf16_to_float((uint16_t)le(p, 2)); break;
        case MSA_GGUF_Q4_0: {
            float d = msa_fp16_to_float((uint16_t)le(p, 2));
            for (int j = 0; j < 16; j++) {
                o[j] = (float)((p[2 + j] & 15) - 8) * d;
                o[j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
            }
            break;
        }
        case MSA_GGUF_Q4_1: {
            float d = msa_fp16_to_float((uint16_t)le(p, 2)), m = msa_fp16_to_float((uint16_t)le(p + 2, 2));
            for (int j = 0; j < 16; j++) {
                o[j] = (float)(p[4 + j] & 15) * d + m;
                o[j + 16] = (float)(p[4 + j] >> 4) * d + m;
            }
            break;
        }
        case MSA_GGUF_Q8_0: {
            float d = msa_fp16_to_float((uint16_t)le(p, 2));
            for (int j = 0; j < 32; j++) o[j] = (float)(int8_t)p[2 + j] * d;
            break;
        }
        }
    }
    return MSA_OK;
}
