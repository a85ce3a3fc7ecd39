/* verify.c - `msa verify`: the release and CI gate.  Runs the checks of a tier, gives
 * each one disposition (Passed, Incorrect, NotSupported, NotVerified, Crashed, Timeout),
 * writes REPORT.md and JUnit XML atomically, and exits 0 only when every check that ran
 * passed (1 on a defect, 2 on bad usage).  The checks themselves live in verify_*.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "verify.h"

static const char *verify_help =
    "usage: msa verify [--tier quick|full|soak] [--kernel K ...] [--baseline OLD.so]\n"
    "                  [--report REPORT.md] [--junit FILE.xml] [--seed S]\n"
    "                  [--traces DIR|TRACE.npz ...] [--corpus DIR]\n"
    "                  [--bench-prefill N,N,...] [--bench-decode N,N,...]\n"
    "\n"
    "Runs, per tier: number-format conformance, the reference's fast mode against exact mode,\n"
    "the oracle's self-tests, the mutant kill check, the regression corpus, a fuzz campaign per\n"
    "kernel, CUDA-graph replay for device kernels, replay and recall of recorded traces, and the\n"
    "GPU benchmark table when a GPU is present.  Default kernels: cpu-sim and cuda (reported\n"
    "NotVerified with the reason when no GPU is usable).  quick: < 2 min on 2 CPU cores (CI);\n"
    "full: < 15 min on one H100/H200 (releases); soak: repeats campaigns until interrupted.\n"
    "--traces (repeatable; default traces/data): each trace is replayed through every kernel and\n"
    "its recall tables and plots (report-plots/ beside the report) go into the report.\n"
    "--baseline OLD.so compares each kernel with a previous release (accuracy and speed).\n"
    "--bench-prefill/--bench-decode: the context lengths the benchmark table times (ours and the\n"
    "SDPA peer), instead of the tier's (quick: 8192 / 32768; full: 8192,32768,131072 /\n"
    "32768,131072,1048576); an empty list skips that half.\n"
    "Exit 0: every check that ran passed; 1: a defect was found; 2: bad usage.\n";

double msa_vnow(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void msa_vprogress(msa_vctx *x, const char *what, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    static double last_plain;
    double now = msa_vnow();
    if (x->tty)
        fprintf(stderr, "\r\033[K[%d/%d %5.0fs] %-18s %s", x->current, x->total, now - x->t0, what, msg);
    else if (now - last_plain >= 10.0) { /* plain logs: a line every 10 s at most */
        fprintf(stderr, "[%d/%d %5.0fs] %-18s %s\n", x->current, x->total, now - x->t0, what, msg);
        last_plain = now;
    }
    fflush(stderr);
}

static void shell_line(const char *cmd, char *out, size_t n)
{
    out[0] = 0;
    FILE *p = popen(cmd, "r");
    if (!p) return;
    if (fgets(out, (int)n, p)) out[strcspn(out, "\n")] = 0;
    pclose(p);
}

static void machine_line(char *buf, size_t n)
{
    struct utsname u;
    char cpu[160] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
                snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
                cpu[strcspn(cpu, "\n")] = 0;
                break;
            }
        fclose(f);
    }
    if (uname(&u) != 0) memset(&u, 0, sizeof u);
    snprintf(buf, n, "%s %s, %s, %ld cores", u.sysname, u.machine, cpu, sysconf(_SC_NPROCESSORS_ONLN));
}

static void xml_escape(msa_sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': msa_sb_printf(b, "&lt;"); break;
        case '>': msa_sb_printf(b, "&gt;"); break;
        case '&': msa_sb_printf(b, "&amp;"); break;
        case '"': msa_sb_printf(b, "&quot;"); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\n' || *s == '\t') msa_sb_printf(b, "%c", *s);
        }
    }
}

static int write_junit(const char *path, const msa_vcheck *v, int n, double total, msa_err *e)
{
    msa_sbuf b = {0};
    int failures = 0, errors = 0, skipped = 0;
    for (int i = 0; i < n; i++) {
        failures += v[i].disp == MSA_V_INCORRECT;
        errors += v[i].disp == MSA_V_CRASHED || v[i].disp == MSA_V_TIMEOUT;
        skipped += v[i].disp == MSA_V_NOTVERIFIED || v[i].disp == MSA_V_NOTSUPPORTED;
    }
    msa_sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n"
                      "<testsuite name=\"msa-verify\" tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" time=\"%.3f\">\n",
                  n, failures, errors, skipped, total);
    for (int i = 0; i < n; i++) {
        msa_sb_printf(&b, "  <testcase classname=\"msa.verify\" name=\"");
        xml_escape(&b, v[i].name);
        msa_sb_printf(&b, "\" time=\"%.3f\">\n", v[i].seconds);
        const char *tag = v[i].disp == MSA_V_INCORRECT ? "failure"
                          : (v[i].disp == MSA_V_CRASHED || v[i].disp == MSA_V_TIMEOUT) ? "error"
                          : (v[i].disp == MSA_V_NOTVERIFIED || v[i].disp == MSA_V_NOTSUPPORTED) ? "skipped" : NULL;
        if (tag) {
            msa_sb_printf(&b, "    <%s message=\"%s: ", tag, msa_disposition_name(v[i].disp));
            xml_escape(&b, v[i].summary);
            msa_sb_printf(&b, "\">");
            xml_escape(&b, v[i].detail);
            if (v[i].repro[0]) {
                msa_sb_printf(&b, "\nrepro: ");
                xml_escape(&b, v[i].repro);
            }
            msa_sb_printf(&b, "</%s>\n", tag);
        }
        msa_sb_printf(&b, "    <system-out>");
        xml_escape(&b, v[i].summary);
        msa_sb_printf(&b, "</system-out>\n  </testcase>\n");
    }
    msa_sb_printf(&b, "</testsuite>\n</testsuites>\n");
    int st = b.oom ? msa_fail(e, MSA_ENOMEM, "%s: out of memory", path) : msa_write_atomic(path, b.s, b.len, e);
    msa_sb_free(&b);
    return st;
}

static void md_cell(msa_sbuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') msa_sb_printf(b, "\\|");
        else if (*s == '\n') msa_sb_printf(b, " ");
        else msa_sb_printf(b, "%c", *s);
    }
}

static int write_report(const char *path, msa_vctx *x, const msa_vcheck *v, int n, int rc, double total, msa_err *e)
{
    msa_sbuf b = {0};
    char date[64], commit[64], machine[320];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    /* $MSA_COMMIT names the commit the binaries were built from, when they run in a copy
     * of the tree whose git state is not theirs (the GPU machine): it wins over git */
    const char *mc = getenv("MSA_COMMIT");
    char dirty[8] = "0";
    if (mc && *mc) {
        snprintf(commit, sizeof commit, "%s", mc);
    } else {
        shell_line("git rev-parse --short HEAD 2>/dev/null", commit, sizeof commit);
        shell_line("git status --porcelain --untracked-files=no 2>/dev/null | head -1 | wc -l", dirty, sizeof dirty);
    }
    machine_line(machine, sizeof machine);
    static const char *tiers[] = {"quick", "full", "soak"};
    msa_sb_printf(&b, "# MSA verification report\n\n");
    msa_sb_printf(&b, "| | |\n|---|---|\n| result | **%s** (exit %d) |\n| date | %s |\n| commit | %s%s |\n"
                      "| tier | %s |\n| kernels |", rc == 0 ? "PASSED" : "FAILED", rc, date,
                  commit[0] ? commit : "unknown", dirty[0] == '1' ? " (with uncommitted changes)" : "", tiers[x->tier]);
    for (int i = 0; i < x->nkernels; i++) msa_sb_printf(&b, " %s", x->kernels[i]);
    msa_sb_printf(&b, " |\n| machine | %s |\n| GPU | %s |\n| wall time | %.1f s |\n\n", machine,
                  x->gpu[0] ? x->gpu : "none usable", total);
    msa_sb_printf(&b, "Regenerate with `make verify` (quick tier) or `build/msa verify --tier full --kernel cuda` "
                      "on a Hopper GPU.\n\n## Summary\n\n| check | disposition | time | summary |\n|---|---|---:|---|\n");
    for (int i = 0; i < n; i++) {
        msa_sb_printf(&b, "| %s | %s | %.1f s | ", v[i].name, msa_disposition_name(v[i].disp), v[i].seconds);
        md_cell(&b, v[i].summary);
        msa_sb_printf(&b, " |\n");
    }
    int nbad = 0;
    for (int i = 0; i < n; i++) nbad += v[i].disp != MSA_V_PASSED;
    if (nbad) {
        msa_sb_printf(&b, "\n## Not passed: details and repro commands\n\n");
        for (int i = 0; i < n; i++) {
            if (v[i].disp == MSA_V_PASSED) continue;
            msa_sb_printf(&b, "### %s: %s\n\n", v[i].name, msa_disposition_name(v[i].disp));
            if (v[i].detail[0]) msa_sb_printf(&b, "```\n%s\n```\n\n", v[i].detail);
            if (v[i].repro[0]) msa_sb_printf(&b, "Reproduce: `%s`\n\n", v[i].repro);
        }
    }
    if (x->sections.len) msa_sb_printf(&b, "\n%s", x->sections.s);
    int st = b.oom ? msa_fail(e, MSA_ENOMEM, "%s: out of memory", path) : msa_write_atomic(path, b.s, b.len, e);
    msa_sb_free(&b);
    return st;
}

typedef enum { CK_FORMATS, CK_REFERENCE, CK_ORACLE, CK_MUTANTS, CK_CORPUS, CK_FUZZ, CK_EXTRAS, CK_BASELINE, CK_TRACES, CK_BENCH } ck_kind;
typedef struct {
    ck_kind kind;
    const char *kernel;
} ck_item;

static void run_item_here(msa_vctx *x, const ck_item *it, msa_vcheck *c);

static int read_all(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) return -1;
        p += r, n -= (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r <= 0) return -1;
        p += r, n -= (size_t)r;
    }
    return 0;
}

/* Checks that run a backend in-process (device extras, baseline, trace replay) run in a
 * child: a crashing plugin becomes a Crashed check instead of killing the gate, and the
 * parent never initialises CUDA, so later campaigns can still fork CUDA workers (a CUDA
 * context does not survive fork). The child sends back its check and report section. */
static void run_item(msa_vctx *x, const ck_item *it, msa_vcheck *c)
{
    if (it->kind != CK_EXTRAS && it->kind != CK_BASELINE && it->kind != CK_TRACES) {
        run_item_here(x, it, c);
        return;
    }
    int fd[2];
    double t = msa_vnow();
    fflush(stdout), fflush(stderr);
    pid_t pid = pipe(fd) == 0 ? fork() : -1;
    if (pid == 0) {
        close(fd[0]);
        size_t len0 = x->sections.len;
        run_item_here(x, it, c);
        size_t extra = x->sections.len - len0;
        int ok = write_all(fd[1], c, sizeof *c) == 0 && write_all(fd[1], x->gpu, sizeof x->gpu) == 0 &&
                 write_all(fd[1], &extra, sizeof extra) == 0 &&
                 (extra == 0 || write_all(fd[1], x->sections.s + len0, extra) == 0);
        fflush(stdout), fflush(stderr);
        _exit(ok ? 0 : 3);
    }
    if (pid < 0) { /* no fork: run here */
        run_item_here(x, it, c);
        return;
    }
    close(fd[1]);
    msa_vcheck got;
    size_t extra = 0;
    char gpu[sizeof x->gpu];
    int ok = read_all(fd[0], &got, sizeof got) == 0 && read_all(fd[0], gpu, sizeof gpu) == 0 &&
             read_all(fd[0], &extra, sizeof extra) == 0;
    if (ok && !x->gpu[0] && gpu[0]) { /* the GPU's name, learnt by the child */
        gpu[sizeof gpu - 1] = 0;
        snprintf(x->gpu, sizeof x->gpu, "%s", gpu);
    }
    char *sec = ok && extra ? malloc(extra + 1) : NULL;
    if (sec && read_all(fd[0], sec, extra) == 0) msa_sb_printf(&x->sections, "%.*s", (int)extra, sec);
    free(sec);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (ok) {
        *c = got;
        return;
    }
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s%s%s", it->kind == CK_EXTRAS ? "device" : it->kind == CK_BASELINE ? "baseline" : "traces",
             it->kernel ? ":" : "", it->kernel ? it->kernel : "");
    c->disp = MSA_V_CRASHED;
    snprintf(c->summary, sizeof c->summary, "the check's process died (%s %d)",
             WIFSIGNALED(status) ? "signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    c->seconds = msa_vnow() - t;
}

static void run_item_here(msa_vctx *x, const ck_item *it, msa_vcheck *c)
{
    memset(c, 0, sizeof *c);
    c->disp = MSA_V_NOTVERIFIED;
    double t = msa_vnow();
    switch (it->kind) {
    case CK_FORMATS: snprintf(c->name, sizeof c->name, "formats"); msa_verify_formats(x, c); break;
    case CK_REFERENCE: snprintf(c->name, sizeof c->name, "reference fast~exact"); msa_verify_reference(x, c); break;
    case CK_ORACLE: snprintf(c->name, sizeof c->name, "oracle self-test"); msa_verify_oracle(x, c); break;
    case CK_MUTANTS: snprintf(c->name, sizeof c->name, "mutants"); msa_verify_mutants(x, c); break;
    case CK_CORPUS: snprintf(c->name, sizeof c->name, "corpus:%s", it->kernel); msa_verify_corpus(x, c, it->kernel); break;
    case CK_FUZZ: snprintf(c->name, sizeof c->name, "fuzz:%s", it->kernel); msa_verify_fuzz(x, c, it->kernel); break;
    case CK_EXTRAS: snprintf(c->name, sizeof c->name, "device:%s", it->kernel); msa_verify_kernel_extras(x, c, it->kernel); break;
    case CK_BASELINE: snprintf(c->name, sizeof c->name, "baseline:%s", it->kernel); msa_verify_baseline(x, c, it->kernel); break;
    case CK_TRACES: snprintf(c->name, sizeof c->name, "traces"); msa_verify_traces(x, c); break;
    case CK_BENCH: snprintf(c->name, sizeof c->name, "bench"); msa_verify_bench(x, c); break;
    }
    c->seconds = msa_vnow() - t;
}

/* A bench size list goes into a shell command line: digits and single commas only, each
 * a context length in [1, MSA_VERIFY_BENCH_MAX]; "" (skip) is a valid list. */
static int token_list_ok(const char *v)
{
    for (const char *s = v; *s;) {
        long n = 0;
        int nd = 0;
        for (; *s >= '0' && *s <= '9'; ++s, ++nd)
            if ((n = n * 10 + (*s - '0')) > MSA_VERIFY_BENCH_MAX) return 0;
        if (nd == 0 || n < 1 || (*s && *s != ',') || (*s == ',' && !s[1])) return 0;
        if (*s) ++s;
    }
    return 1;
}

int msa_cmd_verify(int argc, char **argv)
{
    msa_vctx x;
    memset(&x, 0, sizeof x);
    x.seed = 20261122;
    x.budget_scale = 1.0;
    const char *report = "REPORT.md", *junit = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(verify_help, stdout);
            return MSA_EXIT_OK;
        }
        if (a[0] != '-') return msa_cli_usage_error("verify", "unexpected argument '%s'", a);
        if (!(v = msa_cli_value("verify", argc, argv, &i))) return MSA_EXIT_USAGE;
        if (!strcmp(a, "--tier")) {
            if (!strcmp(v, "quick")) x.tier = MSA_TIER_QUICK;
            else if (!strcmp(v, "full")) x.tier = MSA_TIER_FULL;
            else if (!strcmp(v, "soak")) x.tier = MSA_TIER_SOAK;
            else return msa_cli_usage_error("verify", "--tier: '%s' is not quick, full or soak", v);
        } else if (!strcmp(a, "--kernel")) {
            if (x.nkernels == MSA_VERIFY_MAX_KERNELS) return msa_cli_usage_error("verify", "at most %d --kernel options", MSA_VERIFY_MAX_KERNELS);
            x.kernels[x.nkernels++] = v;
        } else if (!strcmp(a, "--baseline")) x.baseline = v;
        else if (!strcmp(a, "--report")) report = v;
        else if (!strcmp(a, "--junit")) junit = v;
        else if (!strcmp(a, "--traces")) {
            if (x.ntrace_dirs == MSA_VERIFY_MAX_KERNELS) return msa_cli_usage_error("verify", "at most %d --traces options", MSA_VERIFY_MAX_KERNELS);
            x.trace_dirs[x.ntrace_dirs++] = v;
        }
        else if (!strcmp(a, "--corpus")) x.corpus_dir = v;
        else if (!strcmp(a, "--bench-prefill") || !strcmp(a, "--bench-decode")) {
            if (!token_list_ok(v))
                return msa_cli_usage_error("verify", "%s: '%s' is not a comma-separated list of context lengths (1 to %d)",
                                           a, v, MSA_VERIFY_BENCH_MAX);
            *(a[8] == 'p' ? &x.bench_prefill : &x.bench_decode) = v;
        }
        else if (!strcmp(a, "--seed")) {
            if (msa_cli_u64("verify", a, v, &x.seed)) return MSA_EXIT_USAGE;
        } else return msa_cli_usage_error("verify", "unknown option '%s' (msa verify --help)", a);
    }
    if (x.nkernels == 0) {
        x.kernels[x.nkernels++] = "cpu-sim";
        x.kernels[x.nkernels++] = "cuda";
    }
    if (!x.corpus_dir) x.corpus_dir = "fuzz/corpus";
    if (!x.ntrace_dirs) x.trace_dirs[x.ntrace_dirs++] = "traces/data";
    { /* recall plots go to report-plots/ beside the report, linked relatively */
        const char *sl = strrchr(report, '/');
        snprintf(x.plot_dir, sizeof x.plot_dir, "%.*s%sreport-plots", sl ? (int)(sl - report) : 0, report, sl ? "/" : "");
        snprintf(x.plot_link, sizeof x.plot_link, "report-plots");
    }
    if (x.tier == MSA_TIER_SOAK) x.budget_scale = 1e6;
    x.tty = isatty(2);
    x.t0 = msa_vnow();

    ck_item items[64];
    int n = 0;
    items[n++] = (ck_item){CK_FORMATS, NULL};
    items[n++] = (ck_item){CK_REFERENCE, NULL};
    items[n++] = (ck_item){CK_ORACLE, NULL};
    items[n++] = (ck_item){CK_MUTANTS, NULL};
    for (int k = 0; k < x.nkernels; k++) {
        items[n++] = (ck_item){CK_CORPUS, x.kernels[k]};
        items[n++] = (ck_item){CK_FUZZ, x.kernels[k]};
        items[n++] = (ck_item){CK_EXTRAS, x.kernels[k]};
        if (x.baseline) items[n++] = (ck_item){CK_BASELINE, x.kernels[k]};
    }
    items[n++] = (ck_item){CK_TRACES, NULL};
    items[n++] = (ck_item){CK_BENCH, NULL};
    x.total = n;

    msa_vcheck *checks = calloc((size_t)n, sizeof *checks);
    if (!checks) return msa_cli_usage_error("verify", "out of memory");
    int rc = MSA_EXIT_OK;
    do {
        for (int i = 0; i < n; i++) {
            x.current = i + 1;
            run_item(&x, &items[i], &checks[i]);
            fprintf(stderr, "%s[%d/%d %5.0fs] %-18s %s  %s\n", x.tty ? "\r\033[K" : "", x.current, x.total,
                    msa_vnow() - x.t0, checks[i].name, msa_disposition_name(checks[i].disp), checks[i].summary);
            if (checks[i].disp == MSA_V_INCORRECT || checks[i].disp == MSA_V_CRASHED || checks[i].disp == MSA_V_TIMEOUT)
                rc = MSA_EXIT_FAIL;
        }
    } while (x.tier == MSA_TIER_SOAK && rc == MSA_EXIT_OK && (x.seed++, 1));

    double total = msa_vnow() - x.t0;
    msa_err e = {{0}};
    int st = write_report(report, &x, checks, n, rc, total, &e);
    if (!st && junit) st = write_junit(junit, checks, n, total, &e);
    if (st) fprintf(stderr, "msa verify: %s\n", e.msg);
    printf("msa verify: %s in %.1f s; report %s%s%s\n", rc == 0 ? "PASSED" : "FAILED", total, report,
           junit ? ", JUnit " : "", junit ? junit : "");
    for (int i = 0; i < n; i++)
        if (checks[i].disp != MSA_V_PASSED)
            printf("  %-22s %s: %s%s%s\n", checks[i].name, msa_disposition_name(checks[i].disp), checks[i].summary,
                   checks[i].repro[0] ? "\n    repro: " : "", checks[i].repro);
    free(checks);
    msa_sb_free(&x.sections);
    return st ? MSA_EXIT_FAIL : rc;
}
