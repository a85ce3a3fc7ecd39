/* report.c - what a campaign tells: the printed summary with the coverage table, the
 * JSON summary (which `msa fuzz merge` joins across shards) and JUnit XML (one testcase
 * per failure with its repro command, one per boundary class).  Every file is written
 * atomically.  It judges nothing. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../common/fsutil.h"
#include "../oracle/oracle.h"
#include "fuzz_camp.h"

static const int k_disps[] = {MSA_V_PASSED, MSA_V_INCORRECT, MSA_V_NOTSUPPORTED, MSA_V_NOTVERIFIED,
                              MSA_V_CRASHED, MSA_V_TIMEOUT};
#define NDISP ((int)(sizeof k_disps / sizeof k_disps[0]))

void msa_fuzz_print_summary(FILE *f, const msa_fuzz_summary *s)
{
    fprintf(f, "\ncases %ld in %.1f s: %.1f cases/s (corpus %ld, steered %ld, rows sampled in %ld)\n", s->cases,
            s->seconds, s->cases_per_s, s->corpus_cases, s->steered_cases, s->sampled_cases);
    for (int i = 0; i < NDISP; i++) fprintf(f, "  %-13s %ld\n", msa_disposition_name(k_disps[i]), s->by_disp[k_disps[i]]);
    fprintf(f, "worst error/bound %.3g\n", s->worst_ratio);
    fprintf(f, "boundary classes (cases that hit each):\n");
    int missed = 0;
    for (int c = 0; c < MSA_COV_N; c++) {
        fprintf(f, "  %-26s %6ld%s", msa_cov_name(c), s->cov[c], c % 3 == 2 || c == MSA_COV_N - 1 ? "\n" : "");
        missed += s->cov[c] == 0;
    }
    if (missed) {
        fprintf(f, "not hit:");
        for (int c = 0; c < MSA_COV_N; c++) if (!s->cov[c]) fprintf(f, " %s", msa_cov_name(c));
        fprintf(f, "\n");
    }
    if (s->first_fail_ordinal) {
        fprintf(f, "first failure at case %ld (%.2f s): %s\n  repro: %s\n", s->first_fail_ordinal,
                s->first_fail_seconds, s->first_fail_what, s->first_fail_repro);
        if (s->first_fail_case[0])
            fprintf(f, "  shrunk: %s\n  case file: %s\n", s->first_fail_shrunk_desc, s->first_fail_case);
    }
    if (s->failures) fprintf(f, "FAILED\n");
    else if (s->by_disp[MSA_V_NOTVERIFIED]) fprintf(f, "NOT VERIFIED: %ld cases could not be judged\n", s->by_disp[MSA_V_NOTVERIFIED]);
    else fprintf(f, "PASSED\n");
}

/* JSON string body with the escapes RFC 8259 requires. */
static void json_str(msa_sbuf *b, const char *s)
{
    msa_sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') msa_sb_printf(b, "\\%c", ch);
        else if (ch < 0x20) msa_sb_printf(b, "\\u%04x", ch);
        else msa_sb_printf(b, "%c", ch);
    }
    msa_sb_printf(b, "\"");
}

/* A JSON number; JSON has no inf or NaN, so a non-finite value is written as null
 * (only worst_ratio can be one: a NaN or inf output against a finite bound). */
static void json_num(msa_sbuf *b, double x)
{
    if (isfinite(x)) msa_sb_printf(b, "%.17g", x);
    else msa_sb_printf(b, "null");
}

int msa_fuzz_summary_json(const msa_fuzz_summary *s, const char *path, msa_err *e)
{
    msa_sbuf b = {0};
    msa_sb_printf(&b, "{\n  \"format\": \"msa-fuzz-summary-1\",\n  \"cases\": %ld,\n  \"failures\": %ld,\n", s->cases,
                  s->failures);
    msa_sb_printf(&b, "  \"corpus_cases\": %ld,\n  \"steered_cases\": %ld,\n  \"sampled_cases\": %ld,\n", s->corpus_cases,
                  s->steered_cases, s->sampled_cases);
    msa_sb_printf(&b, "  \"seconds\": %.17g,\n  \"cases_per_s\": %.17g,\n  \"worst_ratio\": ", s->seconds,
                  s->cases_per_s);
    json_num(&b, s->worst_ratio);
    msa_sb_printf(&b, ",\n");
    msa_sb_printf(&b, "  \"dispositions\": {");
    for (int i = 0; i < NDISP; i++)
        msa_sb_printf(&b, "%s\"%s\": %ld", i ? ", " : "", msa_disposition_name(k_disps[i]), s->by_disp[k_disps[i]]);
    msa_sb_printf(&b, "},\n  \"coverage\": {");
    for (int c = 0; c < MSA_COV_N; c++) msa_sb_printf(&b, "%s\"%s\": %ld", c ? ", " : "", msa_cov_name(c), s->cov[c]);
    msa_sb_printf(&b, "},\n  \"first_failure\": {\"ordinal\": %ld, \"seconds\": %.17g, \"what\": ", s->first_fail_ordinal,
                  s->first_fail_seconds);
    json_str(&b, s->first_fail_what);
    msa_sb_printf(&b, ", \"repro\": ");
    json_str(&b, s->first_fail_repro);
    msa_sb_printf(&b, ", \"case\": ");
    json_str(&b, s->first_fail_case);
    msa_sb_printf(&b, ", \"shrunk\": ");
    json_str(&b, s->first_fail_shrunk_desc);
    msa_sb_printf(&b, "}\n}\n");
    int rc = b.oom ? msa_fail(e, MSA_ENOMEM, "%s: out of memory", path) : msa_write_atomic(path, b.s, b.len, e);
    msa_sb_free(&b);
    return rc;
}

static void xml_str(msa_sbuf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '<') msa_sb_printf(b, "&lt;");
        else if (ch == '>') msa_sb_printf(b, "&gt;");
        else if (ch == '&') msa_sb_printf(b, "&amp;");
        else if (ch == '"') msa_sb_printf(b, "&quot;");
        else if (ch < 0x20 && ch != '\n' && ch != '\t') msa_sb_printf(b, " ");
        else msa_sb_printf(b, "%c", ch);
    }
}

static void junit_failure(msa_sbuf *b, const fz_camp *k, const fz_failure *f)
{
    char name[400], msg[3200];
    snprintf(name, sizeof name, "%s %s", f->r.stage, f->r.desc);
    snprintf(msg, sizeof msg, "%s at %s: %s | repro: %s%s%s", msa_disposition_name(f->r.disp), f->r.stage, f->r.detail,
             f->repro, f->shrunk_path[0] ? " | shrunk: " : "", f->shrunk_path[0] ? f->shrunk_repro : "");
    msa_sb_printf(b, "    <testcase classname=\"fuzz.%s\" name=\"", k->o->kernel);
    xml_str(b, name);
    msa_sb_printf(b, "\" time=\"%.3f\">\n      <failure message=\"", f->r.seconds);
    xml_str(b, msg);
    msa_sb_printf(b, "\" type=\"%s\">", msa_disposition_name(f->r.disp));
    xml_str(b, msg);
    msa_sb_printf(b, "</failure>\n    </testcase>\n");
}

static int write_junit(const fz_camp *k, const char *path, msa_err *e)
{
    const msa_fuzz_summary *s = k->s;
    msa_sbuf b = {0};
    long extra = s->failures > k->nfail ? 1 : 0, nskip = 0;
    for (int c = 0; c < MSA_COV_N; c++) nskip += s->cov[c] == 0;
    msa_sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    msa_sb_printf(&b, "  <testsuite name=\"msa-fuzz\" tests=\"%ld\" failures=\"%ld\" skipped=\"%ld\" time=\"%.3f\">\n",
                  (long)k->nfail + extra + MSA_COV_N, (long)k->nfail + extra, nskip, s->seconds);
    for (int i = 0; i < k->nfail; i++) junit_failure(&b, k, &k->fails[i]);
    if (extra)
        msa_sb_printf(&b, "    <testcase classname=\"fuzz\" name=\"further failures\"><failure message=\"%ld failures in "
                          "all, the first %d listed\"/></testcase>\n", s->failures, k->nfail);
    for (int c = 0; c < MSA_COV_N; c++) {
        msa_sb_printf(&b, "    <testcase classname=\"fuzz.coverage\" name=\"");
        xml_str(&b, msa_cov_name(c)); /* "nvis<k" needs escaping */
        msa_sb_printf(&b, "\">");
        if (!s->cov[c]) msa_sb_printf(&b, "<skipped message=\"boundary class not hit\"/>");
        else msa_sb_printf(&b, "<system-out>%ld cases</system-out>", s->cov[c]);
        msa_sb_printf(&b, "</testcase>\n");
    }
    msa_sb_printf(&b, "  </testsuite>\n</testsuites>\n");
    int rc = b.oom ? msa_fail(e, MSA_ENOMEM, "%s: out of memory", path) : msa_write_atomic(path, b.s, b.len, e);
    msa_sb_free(&b);
    return rc;
}

int fz_write_reports(fz_camp *k, msa_err *e)
{
    int rc = 0;
    if (k->o->summary_path) rc = msa_fuzz_summary_json(k->s, k->o->summary_path, e);
    if (!rc && k->o->junit_path) rc = write_junit(k, k->o->junit_path, e);
    return rc;
}
