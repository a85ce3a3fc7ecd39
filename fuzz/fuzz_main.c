/* fuzz_main.c - the `msa fuzz` subcommand: option parsing and the modes (campaign,
 * --case / --replay reruns, `mutants`, `merge`, and the internal --worker used for
 * workers under compute-sanitizer).  Bad usage prints one line and returns 2; a found
 * failure returns 1.  argv[0] is the subcommand's own name (a leading "fuzz" after it is
 * skipped too), so the CLI may pass either its argv or argv + 1. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../oracle/oracle.h"
#include "fuzz_int.h"

#define MAX_LIST 256
#define DEFAULT_CORPUS "fuzz/corpus"
#define FALLBACK_CORPUS ".cache/msa-fuzz/corpus"

static const char k_usage[] =
    "usage: msa fuzz --kernel K [--seed S] [--budget SECONDS | --cases N] [--shard I/N]\n"
    "                [--corpus DIR | --no-corpus] [--junit FILE] [--summary FILE] [--max-context N]\n"
    "                [--sanitize memcheck|racecheck] [--devices all|N] [--timeout S] [--stop-after N]\n"
    "                [--case ID]... [--replay FILE...] [--no-shrink] [--no-steer] [--quiet]\n"
    "       msa fuzz mutants [--plugins DIR | --lib LIB --variants a,legal:b,...] [--cases N] [--seed S]\n"
    "       msa fuzz merge --out DIR DIR...\n";


typedef struct {
    msa_fuzz_opts o;
    const char *replay[MAX_LIST];
    uint64_t ids[MAX_LIST];
    int nids, nreplay, no_corpus, worker_r, worker_w, devices_all;
    char self[1024];
} cli;

/* One error line: library messages that already start with "fuzz: " get "msa " only. */
static void report_error(const msa_err *e)
{
    fprintf(stderr, "%s%s\n", strncmp(e->msg, "fuzz: ", 6) ? "msa fuzz: " : "msa ", e->msg);
}

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "msa fuzz: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", k_usage);
    return 2;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 0);
    if (!*s || *end || errno || s[0] == '-') return -1;
    *v = x;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *v)
{
    uint64_t x;
    if (parse_u64(s, &x) || x < (uint64_t)lo || x > (uint64_t)hi) return -1;
    *v = (int)x;
    return 0;
}

static int parse_double(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return !*s || *end || !(*v >= 0) || *v > 1e9 ? -1 : 0;
}

/* One option with its value; returns 0, or 2 after printing the problem. */
static int option(cli *c, const char *opt, const char *val)
{
    msa_fuzz_opts *o = &c->o;
    int x;
    if (!strcmp(opt, "--kernel")) o->kernel = val;
    else if (!strcmp(opt, "--seed")) { if (parse_u64(val, &o->seed)) return bad("--seed: '%s' is not an unsigned integer", val); }
    else if (!strcmp(opt, "--budget")) { if (parse_double(val, &o->budget_s)) return bad("--budget: '%s' is not a number of seconds", val); }
    else if (!strcmp(opt, "--cases")) { if (parse_int(val, 1, 1 << 30, &x)) return bad("--cases: '%s' is not a positive integer", val); o->max_cases = x; }
    else if (!strcmp(opt, "--timeout")) { if (parse_double(val, &o->case_timeout_s) || o->case_timeout_s <= 0) return bad("--timeout: '%s' is not a positive number of seconds", val); }
    else if (!strcmp(opt, "--stop-after")) { if (parse_int(val, 1, 1 << 30, &o->stop_after)) return bad("--stop-after: '%s' is not a positive integer", val); }
    else if (!strcmp(opt, "--max-context")) { if (parse_int(val, 1, 1 << 24, &o->gen.max_context)) return bad("--max-context: '%s' is not a positive integer", val); }
    else if (!strcmp(opt, "--corpus")) o->corpus_dir = val;
    else if (!strcmp(opt, "--junit")) o->junit_path = val;
    else if (!strcmp(opt, "--summary")) o->summary_path = val;
    else if (!strcmp(opt, "--sanitize")) {
        if (strcmp(val, "memcheck") && strcmp(val, "racecheck")) return bad("--sanitize: '%s' is not memcheck or racecheck", val);
        o->sanitize = val;
    } else if (!strcmp(opt, "--shard")) {
        int i, n, end = 0;
        if (sscanf(val, "%d/%d%n", &i, &n, &end) != 2 || val[end] || n < 1 || i < 0 || i >= n)
            return bad("--shard: '%s' is not I/N with 0 <= I < N", val);
        o->shard_i = i, o->shard_n = n;
    } else if (!strcmp(opt, "--devices")) {
        if (!strcmp(val, "all")) c->devices_all = 1;
        else if (parse_int(val, 1, 64, &o->workers)) return bad("--devices: '%s' is not 'all' or 1..64", val);
    } else if (!strcmp(opt, "--case")) {
        if (c->nids >= MAX_LIST || parse_u64(val, &c->ids[c->nids])) return bad("--case: '%s' is not a case id", val);
        c->nids++;
    } else if (!strcmp(opt, "--replay")) {
        if (c->nreplay >= MAX_LIST) return bad("--replay: more than %s files", "256");
        c->replay[c->nreplay++] = val;
    } else if (!strcmp(opt, "--worker")) {
        if (sscanf(val, "%d,%d", &c->worker_r, &c->worker_w) != 2) return bad("--worker: '%s' is not R,W", val);
    } else return bad("unknown option '%s'", opt);
    return 0;
}

static int is_value_option(const char *a)
{
    static const char *const opts[] = {"--kernel", "--seed", "--budget", "--cases", "--timeout", "--stop-after",
                                       "--max-context", "--corpus", "--junit", "--summary", "--sanitize",
                                       "--shard", "--devices", "--case", "--replay", "--worker"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strcmp(a, opts[i])) return 1;
    return 0;
}

static int parse(cli *c, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--no-shrink")) c->o.shrink = 0;
        else if (!strcmp(a, "--no-steer")) c->o.steer = 0;
        else if (!strcmp(a, "--no-corpus")) c->no_corpus = 1;
        else if (!strcmp(a, "--quiet")) c->o.quiet = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(k_usage, stdout); return 3; }
        else if (a[0] != '-' && c->nreplay > 0 && c->nreplay < MAX_LIST) c->replay[c->nreplay++] = a; /* --replay F1 F2 ... */
        else if (!is_value_option(a)) return bad("unknown option '%s'", a);
        else if (i + 1 >= argc) return bad("%s needs a value", a);
        else { int rc = option(c, a, argv[++i]); if (rc) return rc; }
    }
    return 0;
}

/* GPUs on this host without touching CUDA in this process: the driver's device nodes. */
static int count_gpus(void)
{
    DIR *d = opendir("/dev");
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        const char *s = de->d_name;
        if (strncmp(s, "nvidia", 6) || !s[6]) continue;
        int digits = 1;
        for (const char *p = s + 6; *p; p++) digits &= *p >= '0' && *p <= '9';
        n += digits;
    }
    if (d) closedir(d);
    return n;
}

static void finish_opts(cli *c)
{
    msa_fuzz_opts *o = &c->o;
    ssize_t L = readlink("/proc/self/exe", c->self, sizeof c->self - 1);
    c->self[L > 0 ? L : 0] = 0;
    const char *base = strrchr(c->self, '/');
    o->self_exe = base && !strcmp(base + 1, "msa") ? c->self : "msa";
    int is_cpu = !strncmp(o->kernel, "cpu-sim", 7);
    if (c->devices_all) {
        int g = is_cpu ? 0 : count_gpus();
        o->workers = g > 0 ? g : 1;
        o->gpu_workers = g > 0;
    }
    if (!c->no_corpus && !o->corpus_dir) {
        struct stat st;
        o->corpus_dir = stat(DEFAULT_CORPUS, &st) == 0 && S_ISDIR(st.st_mode) ? DEFAULT_CORPUS : FALLBACK_CORPUS;
    }
    if (c->no_corpus) o->corpus_dir = NULL;
}

/* 1 also when a case could not be verified: "all checks that ran passed" is not true then. */
static int exit_code(const msa_fuzz_summary *s)
{
    return s->failures || s->by_disp[MSA_V_NOTVERIFIED] ? 1 : 0;
}

static int run_replay(cli *c)
{
    msa_fuzz_opts o = c->o;
    o.case_files = c->replay, o.n_case_files = c->nreplay;
    o.corpus_dir = NULL, o.shrink = 0, o.steer = 0;
    o.ids = c->ids, o.n_ids = c->nids;
    o.no_stream = !c->nids; /* with no --case: only the files */
    msa_fuzz_summary s;
    msa_err e;
    int rc = msa_fuzz_campaign(&o, &s, &e);
    if (rc) { report_error(&e); return 2; }
    return exit_code(&s);
}

static int main_mutants(int argc, char **argv)
{
    msa_mutant_opts m;
    memset(&m, 0, sizeof m);
    m.seed = 1;
    m.log = stderr;
    char *list = NULL;
    const char *names[MAX_LIST];
    for (int i = 0; i < argc; i++) {
        int x;
        if (i + 1 >= argc) return bad("%s needs a value", argv[i]);
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--plugins")) m.plugin_dir = v;
        else if (!strcmp(a, "--lib")) m.lib = v;
        else if (!strcmp(a, "--variants")) list = (char *)v;
        else if (!strcmp(a, "--cases")) { if (parse_int(v, 1, 1 << 30, &x)) return bad("--cases: '%s'", v); m.cases = x; }
        else if (!strcmp(a, "--seed")) { if (parse_u64(v, &m.seed)) return bad("--seed: '%s'", v); }
        else if (!strcmp(a, "--max-context")) { if (parse_int(v, 1, 1 << 24, &m.gen.max_context)) return bad("--max-context: '%s'", v); }
        else return bad("mutants: unknown option '%s'", a);
    }
    if (list) {
        for (char *t = strtok(list, ","); t && m.n_names < MAX_LIST; t = strtok(NULL, ",")) names[m.n_names++] = t;
        m.names = names;
    }
    if (m.lib && !list) return bad("mutants: --lib %s needs --variants", m.lib);
    msa_mutant_row *rows = NULL;
    int n = 0;
    msa_err e;
    int rc = msa_fuzz_mutant_check(&m, &rows, &n, &e);
    if (rc) { free(rows); report_error(&e); return 2; }
    int ok = msa_fuzz_mutant_table(stdout, rows, n);
    free(rows);
    return ok ? 0 : 1;
}

int msa_fuzz_main(int argc, char **argv)
{
    argc--, argv++; /* argv[0]: the subcommand's name */
    if (argc > 0 && !strcmp(argv[0], "fuzz")) argc--, argv++;
    if (argc > 0 && !strcmp(argv[0], "merge")) {
        if (argc < 4 || strcmp(argv[1], "--out")) return bad("merge: %s", "needs --out DIR and at least one DIR");
        msa_err e;
        long failures = 0;
        int rc = fz_merge(argv[2], argv + 3, argc - 3, stdout, &failures, &e);
        if (rc) report_error(&e);
        return rc ? 2 : failures ? 1 : 0;
    }
    if (argc > 0 && !strcmp(argv[0], "mutants")) return main_mutants(argc - 1, argv + 1);
    cli *c = calloc(1, sizeof *c);
    if (!c) return 2;
    msa_fuzz_opts_init(&c->o);
    int rc = parse(c, argc, argv);
    if (rc) { free(c); return rc == 3 ? 0 : rc; }
    if (c->worker_r || c->worker_w) { /* a worker under compute-sanitizer */
        fz_worker_cfg w = {c->o.kernel, c->o.seed, c->o.gen};
        rc = fz_worker_loop(&w, c->worker_r, c->worker_w);
        free(c);
        return rc;
    }
    finish_opts(c);
    if (c->nreplay) { rc = run_replay(c); free(c); return rc; }
    if (c->nids) c->o.ids = c->ids, c->o.n_ids = c->nids;
    msa_fuzz_summary s;
    msa_err e;
    rc = msa_fuzz_campaign(&c->o, &s, &e);
    free(c);
    if (rc) { report_error(&e); return 2; }
    return exit_code(&s);
}
