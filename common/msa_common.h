/* msa_common.h - status codes, error messages and dtypes shared by every layer.
 *
 * Every public function of the suite returns an msa_status and, on failure, leaves one
 * human-readable line in an msa_err ("FILE: FIELD: problem").  The CLI maps
 * MSA_EINPUT to exit code 2.  This header knows nothing about tensors or kernels. */
#ifndef MSA_COMMON_H
#define MSA_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    MSA_OK = 0,
    MSA_EINPUT = 1,       /* malformed or inconsistent input (user's fault) -> exit 2 */
    MSA_ENOMEM = 2,       /* allocation failed or would exceed a computed limit */
    MSA_EIO = 3,          /* file system error */
    MSA_EUNSUPPORTED = 4, /* valid input the component cannot handle (NotSupported) */
    MSA_EBACKEND = 5,     /* a backend (kernel) reported an error or crashed */
    MSA_EINTERNAL = 6     /* a bug in the suite itself */
} msa_status;

typedef struct {
    char msg[512];
} msa_err;

/* Sets e->msg (if e != NULL) from a printf format and returns code. */
int msa_fail(msa_err *e, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *msa_status_name(int code);

/* Element types of tensors in case files and buffers. */
typedef enum {
    MSA_DT_INVALID = 0,
    MSA_DT_BF16,
    MSA_DT_FP16,
    MSA_DT_FP32,
    MSA_DT_FP64,
    MSA_DT_E4M3,
    MSA_DT_E5M2,
    MSA_DT_I32,
    MSA_DT_I64,
    MSA_DT_U8,
    MSA_DT_U16
} msa_dtype;

size_t msa_dtype_size(msa_dtype t);
const char *msa_dtype_name(msa_dtype t);       /* "bf16", "fp16", "fp32", "e4m3", ... */
msa_dtype msa_dtype_from_name(const char *s);  /* MSA_DT_INVALID when unknown */
/* Decodes one stored element of a floating dtype (bf16/fp16/fp32/fp64/e4m3/e5m2) to
 * double, exactly (every such value is a double). */
double msa_dtype_load(msa_dtype t, const void *base, size_t i);

/* Overflow-checked size arithmetic: returns 0 and sets *out, or -1 on overflow. */
int msa_mul_size(size_t a, size_t b, size_t *out);

/* malloc/calloc that return NULL for n == 0 overflow-free callers; calloc wrapper with
 * overflow check. */
void *msa_calloc(size_t n, size_t size);

#endif
