/* mutants.c - self-validation of the fuzzer: one short campaign per variant of a backend
 * (cpu-sim's table, the mutant plugins `make mutants` builds, or a plugin's named
 * variants).  A BUG variant must be killed (some case fails), a LEGAL one must pass every
 * case; the table records cases and seconds to detection.  Campaigns here keep no corpus
 * and do not shrink: they measure detection, nothing else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpusim.h"
#include "../oracle/oracle.h"
#include "fuzz_int.h"

#define DEFAULT_MUTANT_CASES 300

static int count_names(const msa_mutant_opts *o)
{
    if (o->names) return o->n_names;
    int n = 0;
    for (const msa_cpusim_variant_info *v = msa_cpusim_variants(); v->name; v++) n++;
    return n;
}

static void row_name(const msa_mutant_opts *o, int i, msa_mutant_row *r)
{
    if (o->names) {
        const char *s = o->names[i];
        r->legal = !strncmp(s, "legal:", 6);
        snprintf(r->name, sizeof r->name, "%s", r->legal ? s + 6 : s);
        for (const msa_cpusim_variant_info *v = msa_cpusim_variants(); !r->legal && v->name; v++)
            if (!strcmp(v->name, r->name) && !o->lib) r->legal = v->legal;
        return;
    }
    const msa_cpusim_variant_info *v = msa_cpusim_variants() + i;
    snprintf(r->name, sizeof r->name, "%s", v->name);
    r->legal = v->legal;
}

static int check_one(const msa_mutant_opts *o, msa_mutant_row *r, msa_err *e)
{
    char kernel[1200];
    if (o->plugin_dir) snprintf(kernel, sizeof kernel, "%s/%s.so", o->plugin_dir, r->name);
    else if (o->lib) snprintf(kernel, sizeof kernel, "%s:%s", o->lib, r->name);
    else snprintf(kernel, sizeof kernel, "cpu-sim:%s", r->name);
    msa_fuzz_opts fo;
    msa_fuzz_opts_init(&fo);
    fo.kernel = kernel;
    fo.seed = o->seed;
    fo.max_cases = o->cases > 0 ? o->cases : DEFAULT_MUTANT_CASES;
    fo.budget_s = o->budget_s;
    fo.gen = o->gen;
    fo.case_timeout_s = o->case_timeout_s;
    fo.stop_after = 1;
    fo.shrink = 0;
    fo.quiet = 1;
    msa_fuzz_summary s;
    int rc = msa_fuzz_campaign(&fo, &s, e);
    if (rc) return rc;
    r->killed = s.failures > 0;
    r->cases_to_detection = s.first_fail_ordinal;
    r->seconds_to_detection = s.first_fail_seconds;
    /* first_fail_what is "Disposition stage: description" */
    const char *sp = strchr(s.first_fail_what, ' '), *colon = sp ? strchr(sp, ':') : NULL;
    if (sp && colon) snprintf(r->stage, sizeof r->stage, "%.*s", (int)(colon - sp - 1), sp + 1);
    return 0;
}

int msa_fuzz_mutant_check(const msa_mutant_opts *o, msa_mutant_row **rows, int *n, msa_err *e)
{
    *n = count_names(o);
    *rows = calloc((size_t)(*n > 0 ? *n : 1), sizeof **rows);
    if (!*rows) return msa_fail(e, MSA_ENOMEM, "fuzz: out of memory");
    for (int i = 0; i < *n; i++) {
        msa_mutant_row *r = &(*rows)[i];
        row_name(o, i, r);
        int rc = check_one(o, r, e);
        if (rc) return rc;
        if (o->log)
            fprintf(o->log, "  %-22s %-5s %s after %ld cases (%.2f s) %s\n", r->name, r->legal ? "legal" : "bug",
                    r->killed ? "KILLED" : "survived", r->cases_to_detection, r->seconds_to_detection, r->stage),
                fflush(o->log);
    }
    return 0;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int msa_fuzz_mutant_table(FILE *f, const msa_mutant_row *rows, int n)
{
    int bugs = 0, killed = 0, legal = 0, rejected = 0;
    double *t = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    long *cs = malloc(sizeof(long) * (size_t)(n > 0 ? n : 1));
    if (f) fprintf(f, "| variant | kind | verdict | cases to detection | seconds to detection | caught at |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const msa_mutant_row *r = &rows[i];
        int good = r->legal ? !r->killed : r->killed;
        if (r->legal) legal++, rejected += r->killed;
        else if (bugs++, r->killed && t && cs) t[killed] = r->seconds_to_detection, cs[killed] = r->cases_to_detection, killed++;
        if (f)
            fprintf(f, "| %s | %s | %s%s | %ld | %.3f | %s |\n", r->name, r->legal ? "LEGAL" : "BUG",
                    r->legal ? (r->killed ? "REJECTED" : "passed") : (r->killed ? "killed" : "SURVIVED"),
                    good ? "" : " (!)", r->cases_to_detection, r->seconds_to_detection, r->stage[0] ? r->stage : "-");
    }
    double med = 0;
    long medc = 0;
    if (killed && t && cs) {
        qsort(t, (size_t)killed, sizeof *t, cmp_dbl);
        med = killed % 2 ? t[killed / 2] : 0.5 * (t[killed / 2 - 1] + t[killed / 2]);
        long *c = cs;
        for (int i = 1; i < killed; i++) /* insertion sort of the case counts */
            for (int j = i; j > 0 && c[j - 1] > c[j]; j--) { long x = c[j]; c[j] = c[j - 1], c[j - 1] = x; }
        medc = c[killed / 2];
    }
    if (f)
        fprintf(f, "\nkilled %d/%d BUG variants (%.0f%%), rejected %d/%d LEGAL variants; median time to detection %.3f s, "
                   "median cases to detection %ld\n",
                killed, bugs, bugs ? 100.0 * killed / bugs : 100.0, rejected, legal, med, medc);
    free(t);
    free(cs);
    return killed == bugs && rejected == 0;
}
