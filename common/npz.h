/* npz.h - reading and writing NumPy .npy arrays and .npz archives (zip, stored or
 * deflated through zlib), so that cases, results and traces can be written by
 * np.savez / np.savez_compressed / torch and read back with numpy.load.
 *
 * The reader trusts nothing: every length, offset, shape and CRC is checked, sizes are
 * computed with overflow checks, and any defect is reported as MSA_EINPUT with one line
 * "LABEL: ENTRY: problem".  Writers are atomic (temp file, fsync, rename).
 * Supported element types: <f2 <f4 <f8 <i4 <i8 |u1 <u2 (and |i1 read as u1 is NOT
 * accepted); C order only; up to MSA_NPY_MAX_DIMS dimensions. */
#ifndef MSA_NPZ_H
#define MSA_NPZ_H

#include "msa_common.h"

#define MSA_NPY_MAX_DIMS 6
#define MSA_NPY_NAME_MAX 128

typedef struct {
    char name[MSA_NPY_NAME_MAX]; /* entry name without the ".npy" suffix */
    msa_dtype dtype;             /* storage type: FP16 (<f2), FP32, FP64, I32, I64, U8, U16 */
    int ndim;
    int64_t shape[MSA_NPY_MAX_DIMS];
    size_t count;  /* product of shape */
    size_t nbytes; /* count * element size */
    void *data;    /* owned, little-endian, C order */
} msa_tensor;

typedef struct {
    int n, cap;
    msa_tensor *t;
} msa_npz;

/* Reads a whole .npz from a file / from memory.  label names the source in messages. */
int msa_npz_read(const char *path, msa_npz *out, msa_err *e);
int msa_npz_read_mem(const void *buf, size_t len, const char *label, msa_npz *out, msa_err *e);
/* Parses one .npy image (header + data) from memory. */
int msa_npy_parse(const void *buf, size_t len, const char *label, const char *entry,
                  msa_tensor *out, msa_err *e);

const msa_tensor *msa_npz_find(const msa_npz *z, const char *name);
/* Appends a copy of data (count derived from shape).  Replaces an entry of the same name. */
int msa_npz_add(msa_npz *z, const char *name, msa_dtype dtype, int ndim, const int64_t *shape,
                const void *data, msa_err *e);
/* Writes atomically; compress != 0 uses deflate (like np.savez_compressed). */
int msa_npz_write(const char *path, const msa_npz *z, int compress, msa_err *e);
/* Serialises to a malloc'ed buffer (used by the writer and by the parser fuzzers). */
int msa_npz_serialize(const msa_npz *z, int compress, void **buf, size_t *len, msa_err *e);
void msa_npz_free(msa_npz *z);

#endif
