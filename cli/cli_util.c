/* cli_util.c - option parsing and exit-code helpers for the msa subcommands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int msa_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "msa %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return MSA_EXIT_USAGE;
}

int msa_cli_status_exit(const char *cmd, int status, const msa_err *e)
{
    if (status == MSA_OK) return MSA_EXIT_OK;
    fprintf(stderr, "msa %s: %s\n", cmd, e && e->msg[0] ? e->msg : msa_status_name(status));
    return status == MSA_EINPUT || status == MSA_EUNSUPPORTED ? MSA_EXIT_USAGE : MSA_EXIT_FAIL;
}

int msa_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        msa_cli_usage_error(cmd, "%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int msa_cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (s[0] == '-') {
        msa_cli_usage_error(cmd, "%s: '%s' is negative", opt, s);
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end) {
        msa_cli_usage_error(cmd, "%s: '%s' is not an unsigned integer", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int msa_cli_double(const char *cmd, const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        msa_cli_usage_error(cmd, "%s: '%s' is not a finite number", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int msa_cli_int_list(const char *cmd, const char *opt, const char *s, int *out, int max, long lo,
                     long hi)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char buf[32];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof buf || n >= max) {
            msa_cli_usage_error(cmd, "%s: bad list '%s' (at most %d comma-separated integers)", opt,
                                s, max);
            return -1;
        }
        memcpy(buf, p, len);
        buf[len] = 0;
        long v;
        if (msa_cli_int(cmd, opt, buf, lo, hi, &v) != 0) return -1;
        out[n++] = (int)v;
        p += len;
        if (*p == ',') p++;
    }
    if (n == 0) {
        msa_cli_usage_error(cmd, "%s: empty list", opt);
        return -1;
    }
    return n;
}

const char *msa_cli_value(const char *cmd, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        msa_cli_usage_error(cmd, "option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}
