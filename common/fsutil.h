/* fsutil.h - crash-safe file writing: every report, result, trace, corpus entry and JUnit
 * file goes through msa_write_atomic (write to a unique temp file in the same folder,
 * fsync, rename, fsync the folder), so a killed writer never leaves a half file and two
 * writers never clobber each other's temp files. */
#ifndef MSA_FSUTIL_H
#define MSA_FSUTIL_H

#include "msa_common.h"

int msa_write_atomic(const char *path, const void *data, size_t len, msa_err *e);
/* Reads a whole file (at most max_len bytes, else MSA_EINPUT), NUL-terminated after the
 * data; a missing or unreadable path is MSA_EINPUT.  msa_write_atomic creates files with
 * mode 0666 minus the umask (the old file's mode is not kept). */
int msa_read_file(const char *path, size_t max_len, void **data, size_t *len, msa_err *e);
/* mkdir -p */
int msa_mkdirs(const char *path, msa_err *e);

/* A growable string buffer for building reports in memory before one atomic write. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} msa_sbuf;
void msa_sb_printf(msa_sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void msa_sb_free(msa_sbuf *b);

#endif
