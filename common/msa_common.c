/* msa_common.c - status names, error messages, dtype tables and checked sizes. */
#include "msa_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numfmt.h"

int msa_fail(msa_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *msa_status_name(int code)
{
    switch (code) {
    case MSA_OK: return "ok";
    case MSA_EINPUT: return "bad input";
    case MSA_ENOMEM: return "out of memory";
    case MSA_EIO: return "I/O error";
    case MSA_EUNSUPPORTED: return "not supported";
    case MSA_EBACKEND: return "backend error";
    case MSA_EINTERNAL: return "internal error";
    default: return "unknown error";
    }
}

static const struct {
    msa_dtype t;
    const char *name;
    size_t size;
} dtypes[] = {
    {MSA_DT_BF16, "bf16", 2}, {MSA_DT_FP16, "fp16", 2}, {MSA_DT_FP32, "fp32", 4},
    {MSA_DT_FP64, "fp64", 8}, {MSA_DT_E4M3, "e4m3", 1}, {MSA_DT_E5M2, "e5m2", 1},
    {MSA_DT_I32, "int32", 4}, {MSA_DT_I64, "int64", 8}, {MSA_DT_U8, "uint8", 1},
    {MSA_DT_U16, "uint16", 2},
};

size_t msa_dtype_size(msa_dtype t)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].t == t) return dtypes[i].size;
    return 0;
}

const char *msa_dtype_name(msa_dtype t)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].t == t) return dtypes[i].name;
    return "invalid";
}

msa_dtype msa_dtype_from_name(const char *s)
{
    if (!s) return MSA_DT_INVALID;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, s) == 0) return dtypes[i].t;
    if (strcmp(s, "bfloat16") == 0) return MSA_DT_BF16;
    if (strcmp(s, "float16") == 0) return MSA_DT_FP16;
    if (strcmp(s, "float32") == 0) return MSA_DT_FP32;
    if (strcmp(s, "float64") == 0) return MSA_DT_FP64;
    if (strcmp(s, "fp8_e4m3") == 0 || strcmp(s, "float8_e4m3fn") == 0) return MSA_DT_E4M3;
    if (strcmp(s, "fp8_e5m2") == 0 || strcmp(s, "float8_e5m2") == 0) return MSA_DT_E5M2;
    return MSA_DT_INVALID;
}

double msa_dtype_load(msa_dtype t, const void *base, size_t i)
{
    const unsigned char *p = base;
    switch (t) {
    case MSA_DT_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return msa_bf16_to_double(h); }
    case MSA_DT_FP16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return msa_fp16_to_double(h); }
    case MSA_DT_FP32: { float f; memcpy(&f, p + 4 * i, 4); return (double)f; }
    case MSA_DT_FP64: { double d; memcpy(&d, p + 8 * i, 8); return d; }
    case MSA_DT_E4M3: return msa_e4m3_to_double(p[i]);
    case MSA_DT_E5M2: return msa_e5m2_to_double(p[i]);
    case MSA_DT_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return (double)v; }
    case MSA_DT_U8: return (double)p[i];
    case MSA_DT_U16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return (double)h; }
    default: return 0.0;
    }
}

int msa_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > (size_t)-1 / a) return -1;
    *out = a * b;
    return 0;
}

void *msa_calloc(size_t n, size_t size)
{
    size_t t;
    if (msa_mul_size(n, size, &t) != 0) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}
