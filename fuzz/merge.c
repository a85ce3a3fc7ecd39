/* merge.c - `msa fuzz merge --out DIR DIR...`: joins the JSON summaries (summary*.json) of
 * campaigns run apart (Slurm array tasks, shards on several hosts) and copies their
 * corpus entries into one corpus.  Corpus names are content hashes, so the same case from
 * two shards is one file; every write is atomic.  It re-runs nothing. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/fsutil.h"
#include "../common/json.h"
#include "../oracle/oracle.h"
#include "fuzz_int.h"

#define MAX_SUMMARY_BYTES (1 << 20)
#define MAX_CASE_BYTES ((size_t)1 << 31)

static long num(const msa_json *o, const char *key)
{
    const msa_json *v = o ? msa_json_get(o, key) : NULL;
    return v && v->type == MSA_JSON_NUM ? (long)v->num : 0;
}

static double dnum(const msa_json *o, const char *key)
{
    const msa_json *v = o ? msa_json_get(o, key) : NULL;
    return v && v->type == MSA_JSON_NUM ? v->num : 0;
}

static void str(const msa_json *o, const char *key, char *out, size_t n)
{
    const msa_json *v = o ? msa_json_get(o, key) : NULL;
    if (v && v->type == MSA_JSON_STR) snprintf(out, n, "%s", v->str);
}

static int add_summary(const char *path, msa_fuzz_summary *m, msa_err *e)
{
    void *buf;
    size_t len;
    msa_json j;
    int rc = msa_read_file(path, MAX_SUMMARY_BYTES, &buf, &len, e);
    if (rc) return rc;
    rc = msa_json_parse(buf, len, path, &j, e);
    free(buf);
    if (rc) return rc;
    m->cases += num(&j, "cases"), m->failures += num(&j, "failures");
    m->corpus_cases += num(&j, "corpus_cases"), m->steered_cases += num(&j, "steered_cases");
    m->sampled_cases += num(&j, "sampled_cases");
    m->seconds += dnum(&j, "seconds"), m->cases_per_s += dnum(&j, "cases_per_s"); /* shards run side by side */
    const msa_json *w = msa_json_get(&j, "worst_ratio"); /* null: not finite (report.c) */
    double wr = w && w->type == MSA_JSON_NULL ? INFINITY : dnum(&j, "worst_ratio");
    if (wr > m->worst_ratio) m->worst_ratio = wr;
    const msa_json *d = msa_json_get(&j, "dispositions"), *c = msa_json_get(&j, "coverage");
    for (int i = 0; i < 8; i++) m->by_disp[i] += num(d, msa_disposition_name((msa_disposition)i));
    for (int i = 0; i < MSA_COV_N; i++) m->cov[i] += num(c, msa_cov_name(i));
    const msa_json *f = msa_json_get(&j, "first_failure");
    if (num(f, "ordinal") > 0 && !m->first_fail_ordinal) {
        m->first_fail_ordinal = num(f, "ordinal");
        m->first_fail_seconds = dnum(f, "seconds");
        str(f, "what", m->first_fail_what, sizeof m->first_fail_what);
        str(f, "repro", m->first_fail_repro, sizeof m->first_fail_repro);
        str(f, "case", m->first_fail_case, sizeof m->first_fail_case);
        str(f, "shrunk", m->first_fail_shrunk_desc, sizeof m->first_fail_shrunk_desc);
    }
    msa_json_free(&j);
    return 0;
}

static int copy_case(const char *src, const char *out_dir, const char *name, long *copied, msa_err *e)
{
    char dst[2048];
    struct stat st;
    snprintf(dst, sizeof dst, "%s/%s", out_dir, name);
    if (stat(dst, &st) == 0) return 0; /* same content hash: already there */
    void *buf;
    size_t len;
    int rc = msa_read_file(src, MAX_CASE_BYTES, &buf, &len, e);
    if (!rc) rc = msa_write_atomic(dst, buf, len, e), free(buf);
    if (!rc) (*copied)++;
    return rc;
}

static int merge_dir(const char *dir, const char *out, msa_fuzz_summary *m, long *nsum, long *copied,
                     msa_err *e)
{
    DIR *d = opendir(dir);
    if (!d) return msa_fail(e, MSA_EINPUT, "%s: cannot open the folder", dir);
    struct dirent *de;
    int rc = 0;
    int same = !strcmp(dir, out);
    while (!rc && (de = readdir(d))) {
        const char *n = de->d_name;
        size_t L = strlen(n);
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, n);
        if (!strncmp(n, "summary", 7) && L > 5 && !strcmp(n + L - 5, ".json") && strcmp(n, "summary-merged.json"))
            rc = add_summary(path, m, e), (*nsum) += !rc;
        else if (!same && L > 4 && !strcmp(n + L - 4, ".npz") && n[0] != '.')
            rc = copy_case(path, out, n, copied, e);
    }
    closedir(d);
    return rc;
}

int fz_merge(const char *out, char **dirs, int n, FILE *log, long *failures, msa_err *e)
{
    msa_fuzz_summary m;
    memset(&m, 0, sizeof m);
    if (msa_mkdirs(out, e)) return MSA_EIO;
    long nsum = 0, copied = 0;
    for (int i = 0; i < n; i++) {
        int rc = merge_dir(dirs[i], out, &m, &nsum, &copied, e);
        if (rc) return rc;
    }
    char path[2048];
    snprintf(path, sizeof path, "%s/summary-merged.json", out);
    int rc = msa_fuzz_summary_json(&m, path, e);
    if (rc) return rc;
    fprintf(log, "merged %ld summaries and copied %ld corpus cases into %s (summary: %s)\n", nsum, copied, out, path);
    msa_fuzz_print_summary(log, &m);
    *failures = m.failures;
    return 0;
}
