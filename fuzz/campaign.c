/* campaign.c - one fuzzing campaign: replay the corpus, then draw this shard's part of the
 * case stream (ids i with i % shard_n == shard_i) through the worker pool until the case
 * count, the time budget or the failure limit is reached, steering toward boundary
 * classes not yet hit; then shrink each distinct failure, store it in the corpus and
 * write the reports.  Steering happens at fixed points of the stream (every STEER_PERIOD
 * cases, after all outstanding results are in), so the cases a shard runs depend only on
 * the seed, the shard and the limits, never on worker timing. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/fsutil.h"
#include "../oracle/oracle.h"
#include "fuzz_camp.h"

#define STEER_PERIOD 32
#define STEER_PER_ROUND 4
#define STEER_MAX_TRIES 3  /* recipes that miss three times are given up */
#define DEFAULT_CASES 200
#define PROGRESS_EVERY_S 5.0

void msa_fuzz_opts_init(msa_fuzz_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kernel = "cpu-sim";
    o->seed = 1;
    o->shard_n = 1;
    o->workers = 1;
    o->shrink = 1;
    o->steer = 1;
}

static void lg(const fz_camp *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lg(const fz_camp *k, const char *fmt, ...)
{
    if (k->o->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(k->log, fmt, ap);
    va_end(ap);
    fflush(k->log);
}

void fz_repro_id(const fz_camp *k, uint64_t id, char *buf, size_t n)
{
    const msa_fuzz_opts *o = k->o;
    char cap[48] = "";
    if (o->gen.max_context > 0 && o->gen.max_context != MSA_FUZZ_DEFAULT_MAX_CONTEXT)
        snprintf(cap, sizeof cap, " --max-context %d", o->gen.max_context);
    snprintf(buf, n, "%s fuzz --kernel %s --seed %llu --case %llu%s", o->self_exe ? o->self_exe : "msa",
             o->kernel, (unsigned long long)o->seed, (unsigned long long)id, cap);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* *.npz files of the corpus, sorted (so replay order is stable). */
static int list_corpus(const char *dir, char ***names, int *n)
{
    *names = NULL, *n = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) return 0;
    int cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t L = strlen(de->d_name);
        if (L < 5 || strcmp(de->d_name + L - 4, ".npz") || de->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **t = realloc(*names, sizeof(char *) * cap);
            if (!t) break;
            *names = t;
        }
        size_t m = strlen(dir) + L + 2;
        (*names)[*n] = malloc(m);
        if (!(*names)[*n]) break;
        snprintf((*names)[(*n)++], m, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    if (*n) qsort(*names, (size_t)*n, sizeof(char *), cmp_str);
    return 0;
}

/* Folds one result into the summary; failures are kept for shrinking and JUnit. */
static int account(fz_camp *k, msa_fuzz_result *r, const fz_job *j, int origin)
{
    msa_fuzz_summary *s = k->s;
    if (r->disp < 0) { /* the worker could not open the backend */
        snprintf(k->open_err, sizeof k->open_err, "%s", r->detail);
        return -1;
    }
    if (!r->desc[0] && j->kind == FZ_JOB_ID) { /* the worker died: describe from the generator */
        msa_case c;
        msa_err e;
        if (!msa_fuzz_generate(&k->o->gen, k->o->seed, j->id, &c, &e)) {
            msa_case_describe(&c, r->desc, sizeof r->desc);
            r->cov = msa_fuzz_coverage(&c, NULL, NULL);
            msa_case_free(&c);
        }
    }
    if (!k->header_done) lg(k, "%s", k->header), k->header_done = 1;
    s->cases++;
    if (k->o->on_result) k->o->on_result(k->o->user, r);
    if (r->disp >= 0 && r->disp < 8) s->by_disp[r->disp]++;
    if (origin == FZ_ORIGIN_CORPUS) s->corpus_cases++;
    if (origin == FZ_ORIGIN_STEER) s->steered_cases++;
    if (r->rows_judged < r->rows_total) s->sampled_cases++;
    /* a class counts as seen only when the backend actually ran on the case */
    if (r->disp != MSA_V_NOTSUPPORTED && r->disp != MSA_V_NOTVERIFIED)
        for (int c = 0; c < MSA_COV_N; c++) s->cov[c] += (r->cov >> c) & 1;
    if (r->worst_ratio > s->worst_ratio) s->worst_ratio = r->worst_ratio;
    if (!fz_is_failure(r->disp)) return 0;
    s->failures++;
    fz_failure f;
    memset(&f, 0, sizeof f);
    f.r = *r;
    f.job = *j;
    f.origin = origin;
    f.ordinal = s->cases;
    f.seconds = fz_now() - k->t0;
    if (j->kind == FZ_JOB_ID) fz_repro_id(k, j->id, f.repro, sizeof f.repro);
    else snprintf(f.repro, sizeof f.repro, "%s fuzz --kernel %s --replay %s", k->o->self_exe ? k->o->self_exe : "msa",
                  k->o->kernel, j->path);
    if (!s->first_fail_ordinal) {
        s->first_fail_ordinal = f.ordinal;
        s->first_fail_seconds = f.seconds;
        snprintf(s->first_fail_what, sizeof s->first_fail_what, "%s %s: %s", msa_disposition_name(r->disp),
                 r->stage, r->desc);
        snprintf(s->first_fail_repro, sizeof s->first_fail_repro, "%s", f.repro);
    }
    lg(k, "FAIL #%ld %s %s [%s] %s\n  %s\n  repro: %s\n", f.ordinal, msa_disposition_name(r->disp), r->stage,
       r->desc, origin == FZ_ORIGIN_CORPUS ? "(corpus)" : "", r->detail, f.repro);
    if (k->nfail < FZ_MAX_FAILS) k->fails[k->nfail++] = f;
    return 0;
}

static int drain_one(fz_camp *k)
{
    msa_fuzz_result r;
    long tag;
    if (fz_pool_collect(k->pool, &r, &tag)) return -1;
    fz_pending *p = &k->pend[tag];
    int rc = account(k, &r, &p->job, p->origin);
    p->used = 0;
    return rc;
}

static int submit(fz_camp *k, const fz_job *j, int origin)
{
    while (fz_pool_busy(k->pool) >= k->nworkers)
        if (drain_one(k)) return -1;
    long tag = 0;
    while (k->pend[tag].used) tag++;
    k->pend[tag].used = 1, k->pend[tag].job = *j, k->pend[tag].origin = origin;
    if (fz_pool_submit(k->pool, j, tag) < 0) return -1;
    return 0;
}

static int drain_all(fz_camp *k)
{
    while (fz_pool_busy(k->pool))
        if (drain_one(k)) return -1;
    return 0;
}

static int drain_all(fz_camp *k);

static int stop_now(fz_camp *k, long main_done)
{
    const msa_fuzz_opts *o = k->o;
    /* a failure limit is exact: no case runs past the one that reached it */
    if (o->stop_after && drain_all(k) == 0 && k->s->failures >= o->stop_after) return 1;
    if (o->budget_s > 0 && fz_now() - k->t0 >= o->budget_s) return 1;
    long cap = o->max_cases > 0 ? o->max_cases : (o->budget_s > 0 ? 0 : DEFAULT_CASES);
    return cap && main_done >= cap;
}

/* Steered ids for classes not hit yet (at most STEER_PER_ROUND per round). */
static int steer_round(fz_camp *k)
{
    int queued = 0;
    for (int c = 0; c < MSA_COV_N && queued < STEER_PER_ROUND; c++) {
        if (k->s->cov[c] || k->steer_tries[c] >= STEER_MAX_TRIES) continue;
        uint64_t n = (uint64_t)k->steer_tries[c]++ * (uint64_t)k->o->shard_n + (uint64_t)k->o->shard_i;
        fz_job j = {FZ_JOB_ID, MSA_FUZZ_STEER_BIT | ((uint64_t)c << 32) | n, ""};
        if (submit(k, &j, FZ_ORIGIN_STEER)) return -1;
        queued++;
    }
    return 0;
}

static int run_stream(fz_camp *k)
{
    const msa_fuzz_opts *o = k->o;
    if (o->no_stream) return 0;
    if (o->n_ids > 0) {
        for (int i = 0; i < o->n_ids; i++) {
            fz_job j = {FZ_JOB_ID, o->ids[i], ""};
            if (submit(k, &j, FZ_ORIGIN_STREAM)) return -1;
        }
        return drain_all(k);
    }
    long main_done = 0;
    double last = fz_now();
    for (uint64_t id = (uint64_t)o->shard_i; !stop_now(k, main_done); id += (uint64_t)o->shard_n) {
        fz_job j = {FZ_JOB_ID, id, ""};
        if (submit(k, &j, FZ_ORIGIN_STREAM)) return -1;
        main_done++;
        if (o->steer && main_done % STEER_PERIOD == 0) {
            if (drain_all(k) || steer_round(k)) return -1;
        }
        if (fz_now() - last >= PROGRESS_EVERY_S) {
            last = fz_now();
            lg(k, "  ... %ld cases, %ld failures, %.1f cases/s\n", k->s->cases, k->s->failures,
               k->s->cases / (last - k->t0));
        }
    }
    return drain_all(k);
}

/* Case files are the user's input: each must load before any runs (exit 2 otherwise). */
static int check_file(const char *path, msa_err *e)
{
    msa_case c;
    int rc = fz_load_case(path, &c, e);
    if (!rc) msa_case_free(&c);
    return rc;
}

static int replay_files(fz_camp *k)
{
    char **names;
    int n;
    list_corpus(k->o->corpus_dir, &names, &n);
    int rc = 0;
    for (int i = 0; i < n; i++) { /* shards split the corpus as they split the stream */
        fz_job j = {FZ_JOB_FILE, 0, ""};
        snprintf(j.path, sizeof j.path, "%s", names[i]);
        if (!rc && i % k->o->shard_n == k->o->shard_i) rc = submit(k, &j, FZ_ORIGIN_CORPUS);
        free(names[i]);
    }
    free(names);
    for (int i = 0; !rc && i < k->o->n_case_files; i++) {
        fz_job j = {FZ_JOB_FILE, 0, ""};
        snprintf(j.path, sizeof j.path, "%s", k->o->case_files[i]);
        rc = submit(k, &j, FZ_ORIGIN_FILE);
    }
    return rc ? rc : drain_all(k);
}

static int camp_open(fz_camp *k, const msa_fuzz_opts *o, msa_fuzz_summary *s, msa_err *e)
{
    memset(k, 0, sizeof *k);
    memset(s, 0, sizeof *s);
    k->o = o, k->s = s;
    k->log = o->log ? o->log : stderr;
    k->nworkers = o->workers > 0 ? o->workers : 1;
    if (k->nworkers > FZ_MAX_PENDING) k->nworkers = FZ_MAX_PENDING;
    if (o->shard_n < 1 || o->shard_i < 0 || o->shard_i >= o->shard_n)
        return msa_fail(e, MSA_EINPUT, "fuzz: --shard: %d/%d, need 0 <= I < N", o->shard_i, o->shard_n);
    if (!o->kernel || !o->kernel[0]) return msa_fail(e, MSA_EINPUT, "fuzz: --kernel: missing");
    if (o->corpus_dir && msa_mkdirs(o->corpus_dir, e)) return MSA_EIO;
    fz_pool_cfg pc = {{o->kernel, o->seed, o->gen}, k->nworkers, o->gpu_workers, o->case_timeout_s,
                      o->sanitize, o->self_exe};
    return fz_pool_open(&pc, &k->pool, e);
}

int msa_fuzz_campaign(const msa_fuzz_opts *o, msa_fuzz_summary *s, msa_err *e)
{
    fz_camp k;
    int rc = camp_open(&k, o, s, e);
    if (rc) return rc;
    k.t0 = fz_now();
    snprintf(k.header, sizeof k.header, "msa fuzz: kernel %s, seed %llu, shard %d/%d, max context %d, %d worker(s)%s%s\n",
             o->kernel, (unsigned long long)o->seed, o->shard_i, o->shard_n,
             o->gen.max_context > 0 ? o->gen.max_context : MSA_FUZZ_DEFAULT_MAX_CONTEXT, k.nworkers,
             o->sanitize ? ", under compute-sanitizer --tool " : "", o->sanitize ? o->sanitize : "");
    for (int i = 0; i < o->n_case_files; i++)
        if ((rc = check_file(o->case_files[i], e))) {
            fz_pool_close(k.pool);
            return rc == MSA_ENOMEM ? rc : MSA_EINPUT;
        }
    int prc = replay_files(&k);
    if (!prc) prc = run_stream(&k);
    s->seconds = fz_now() - k.t0;
    s->cases_per_s = s->seconds > 0 ? s->cases / s->seconds : 0;
    if (prc) {
        fz_pool_close(k.pool);
        return msa_fail(e, MSA_EINPUT, "fuzz: --kernel %s: %s", o->kernel,
                        k.open_err[0] ? k.open_err : "no worker process could be started");
    }
    if (o->shrink) fz_shrink_failures(&k);
    fz_pool_close(k.pool);
    rc = fz_write_reports(&k, e);
    if (!o->quiet) msa_fuzz_print_summary(k.log, s);
    return rc;
}
