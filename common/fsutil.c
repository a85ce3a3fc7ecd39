/* fsutil.c - crash-safe file writing, bounded file reading, mkdir -p and a string buffer.
 *
 * msa_write_atomic writes to a unique temp file in the target's folder (".NAME.tmp.PID.
 * COUNTER.RANDOM", created with O_EXCL so two writers never share one), fsyncs it, renames
 * it over the target and fsyncs the folder.  rename() within one file system is atomic, so
 * a reader or a crash sees the old file or the new one, never a mix.  On any failure the
 * temp file is removed and the old target is untouched; a writer killed by a signal may
 * leave its temp file behind (never under the target name).
 * It deliberately does not lock: concurrent writers of one target each succeed and the
 * last rename wins. */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TMP_NAME_TRIES 16 /* O_EXCL collisions are astronomically rare; retry a few times */

static unsigned long g_tmp_counter; /* updated with __atomic builtins: thread-safe */

/* Splits path into its folder ("." when none) and base name. */
static int split_path(const char *path, char **dir, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    size_t n = slash ? (size_t)(slash - path) : 1;
    *dir = malloc(n + 1);
    if (!*dir) return -1;
    if (!slash) memcpy(*dir, ".", 2);
    else if (n == 0) memcpy(*dir, "/", 2);
    else memcpy(*dir, path, n), (*dir)[n] = 0;
    return 0;
}

static uint64_t tmp_random(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)&ts;
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9); /* SplitMix64 finaliser */
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Creates the temp file; returns its fd and fills tmp (malloc'd) or returns -1. */
static int open_temp(const char *dir, const char *base, char **tmp)
{
    size_t cap = strlen(dir) + strlen(base) + 96;
    *tmp = malloc(cap);
    if (!*tmp) return -1;
    for (int t = 0; t < TMP_NAME_TRIES; t++) {
        unsigned long c = __atomic_fetch_add(&g_tmp_counter, 1, __ATOMIC_RELAXED);
        snprintf(*tmp, cap, "%s/.%s.tmp.%ld.%lu.%016llx", dir, base, (long)getpid(), c,
                 (unsigned long long)tmp_random());
        int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) {
            if (fd < 0) { free(*tmp); *tmp = NULL; }
            return fd;
        }
    }
    free(*tmp);
    *tmp = NULL;
    errno = EEXIST;
    return -1;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync of a folder makes the rename durable; some file systems answer EINVAL (no
 * support), which is not an error for us. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    if (rc < 0 && errno == EINVAL) rc = 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int msa_write_atomic(const char *path, const void *data, size_t len, msa_err *e)
{
    char *dir = NULL, *tmp = NULL;
    const char *base;
    if (!path || !*path || (!data && len)) return msa_fail(e, MSA_EINPUT, "write: no path or data");
    if (split_path(path, &dir, &base)) return msa_fail(e, MSA_ENOMEM, "%s: out of memory", path);
    if (!*base) { free(dir); return msa_fail(e, MSA_EINPUT, "%s: path names a folder", path); }
    const char *step = "create temp file";
    int fd = open_temp(dir, base, &tmp);
    if (fd >= 0) {
        if (write_all(fd, data, len)) step = "write";
        else if (fsync(fd)) step = "fsync";
        else step = NULL;
        int saved = errno;
        if (close(fd) && !step) step = "close";
        else errno = saved;
        if (!step && rename(tmp, path)) step = "rename";
    }
    if (step) {
        int saved = errno;
        if (tmp) unlink(tmp);
        free(tmp);
        free(dir);
        return msa_fail(e, MSA_EIO, "%s: %s: %s", path, step, strerror(saved));
    }
    free(tmp);
    int rc = sync_dir(dir) ? msa_fail(e, MSA_EIO, "%s: fsync folder: %s", path, strerror(errno))
                           : MSA_OK;
    free(dir);
    return rc;
}

/* Reads fd to EOF into a malloc'd buffer (NUL-terminated); fails with MSA_EINPUT once more
 * than max_len bytes arrive (non-regular files have no size to check up front). */
static int read_all(int fd, const char *path, size_t cap, size_t max_len, char **out,
                    size_t *len, msa_err *e)
{
    size_t n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) return msa_fail(e, MSA_ENOMEM, "%s: out of memory", path);
        if (n > max_len) {
            free(buf);
            return msa_fail(e, MSA_EINPUT, "%s: size: more than the limit of %zu bytes", path,
                            max_len);
        }
        if (n + 1 >= cap) { /* keep room for the NUL */
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
            continue;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int saved = errno;
            free(buf);
            return msa_fail(e, MSA_EIO, "%s: read: %s", path, strerror(saved));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return MSA_OK;
}

/* A path the user named that does not exist, cannot be read, or is a folder is bad input
 * (exit 2); other failures are I/O errors.  *data gets len bytes plus a NUL terminator. */
int msa_read_file(const char *path, size_t max_len, void **data, size_t *len, msa_err *e)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int code = errno == ENOENT || errno == EACCES || errno == ENOTDIR ? MSA_EINPUT : MSA_EIO;
        return msa_fail(e, code, "%s: open: %s", path, strerror(errno));
    }
    struct stat st;
    int rc = MSA_OK;
    size_t cap = (size_t)1 << 16; /* first guess for files without a size */
    if (fstat(fd, &st) != 0) {
        rc = msa_fail(e, MSA_EIO, "%s: stat: %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        rc = msa_fail(e, MSA_EINPUT, "%s: open: is a folder", path);
    } else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_len) {
        rc = msa_fail(e, MSA_EINPUT, "%s: size: %lld bytes exceed the limit of %zu", path,
                      (long long)st.st_size, max_len);
    } else {
        if (S_ISREG(st.st_mode) && (size_t)st.st_size + 1 > cap) cap = (size_t)st.st_size + 2;
        char *buf = NULL;
        rc = read_all(fd, path, cap, max_len, &buf, len, e);
        *data = buf;
    }
    close(fd);
    return rc;
}

int msa_mkdirs(const char *path, msa_err *e)
{
    if (!path || !*path) return msa_fail(e, MSA_EINPUT, "mkdir: empty path");
    char *p = strdup(path);
    if (!p) return msa_fail(e, MSA_ENOMEM, "%s: out of memory", path);
    int rc = MSA_OK;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != 0) continue;
        char c = *s;
        *s = 0;
        struct stat st;
        if (mkdir(p, 0777) != 0 && !(errno == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode))) {
            int code = errno == EEXIST || errno == ENOTDIR ? MSA_EINPUT : MSA_EIO;
            rc = msa_fail(e, code, "%s: mkdir %s: %s", path, p,
                          errno == EEXIST ? "exists and is not a folder" : strerror(errno));
            break;
        }
        *s = c;
        if (!c) break;
    }
    free(p);
    return rc;
}

void msa_sb_printf(msa_sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if (b->s && (size_t)n < room) { b->len += (size_t)n; return; }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) { b->oom = 1; return; }
        b->s = ns;
        b->cap = cap;
    }
}

void msa_sb_free(msa_sbuf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}
