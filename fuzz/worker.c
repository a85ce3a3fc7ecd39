/* worker.c - process isolation for the fuzzer.  Each worker is a child process (fork, or
 * an exec of `msa fuzz --worker` under compute-sanitizer) that opens the backend once and
 * evaluates jobs sent over a pipe, one fixed-size result per job back.  A worker that
 * dies (segfault, abort, illegal memory access, sanitizer error) turns its job into
 * Crashed; one that exceeds the time limit is killed and its job becomes Timeout; either
 * way the next job gets a fresh worker (and so a fresh CUDA context).  Messages are
 * smaller than PIPE_BUF, so each write is atomic.  The parent never opens the backend. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../oracle/oracle.h"
#include "fuzz_int.h"

_Static_assert(sizeof(fz_job) < 4096 && sizeof(msa_fuzz_result) < 4096, "pipe messages must be atomic");

/* Exit status of compute-sanitizer when it found an error (--error-exitcode). */
#define SANITIZER_ERROR_EXIT 86
/* Workers under compute-sanitizer run tens of times slower (NVIDIA documents 10-100x). */
#define SANITIZER_SLOWDOWN 50.0
#define MAX_WORKERS 64

double fz_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int fz_is_failure(int disp)
{
    return disp == MSA_V_INCORRECT || disp == MSA_V_CRASHED || disp == MSA_V_TIMEOUT;
}

static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    size_t put = 0;
    while (put < n) {
        ssize_t r = write(fd, (const char *)buf + put, n - put);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        put += (size_t)r;
    }
    return 0;
}

/* Loads a case file allowing NaN/inf (unused storage rows may hold them). */
int fz_load_case(const char *path, msa_case *c, msa_err *e)
{
    msa_npz z;
    int rc = msa_npz_read(path, &z, e);
    if (rc) return rc;
    rc = msa_case_from_npz(&z, path, c, e);
    msa_npz_free(&z);
    return rc;
}

static void run_job(msa_kernel *k, const fz_worker_cfg *w, const fz_job *j, msa_fuzz_result *r)
{
    msa_case c;
    msa_err e = {{0}};
    int rc = j->kind == FZ_JOB_ID ? msa_fuzz_generate(&w->gen, w->seed, j->id, &c, &e)
                                  : fz_load_case(j->path, &c, &e);
    r->id = j->kind == FZ_JOB_ID ? j->id : UINT64_MAX;
    if (!rc) {
        rc = msa_fuzz_eval(k, &c, r, &e);
        msa_case_free(&c);
    }
    if (rc) { /* the suite could not judge: NotVerified, never a silent pass */
        r->disp = MSA_V_NOTVERIFIED;
        snprintf(r->stage, sizeof r->stage, "suite/%s", msa_status_name(rc));
        snprintf(r->detail, sizeof r->detail, "%s", e.msg);
    }
}

int fz_worker_loop(const fz_worker_cfg *w, int in_fd, int out_fd)
{
    msa_kernel k;
    msa_err e = {{0}};
    int open_rc = msa_kernel_open(w->kernel, &k, &e);
    fz_job j;
    while (read_full(in_fd, &j, sizeof j) == 0 && j.kind != FZ_JOB_QUIT) {
        msa_fuzz_result r;
        memset(&r, 0, sizeof r);
        if (open_rc) { /* -1: the campaign stops with this message */
            r.disp = -1;
            snprintf(r.detail, sizeof r.detail, "%s", e.msg);
        } else {
            run_job(&k, w, &j, &r);
        }
        if (write_full(out_fd, &r, sizeof r)) break;
    }
    if (!open_rc) msa_kernel_close(&k);
    return 0;
}

/* ---- the pool ---- */
typedef struct {
    pid_t pid;
    int to, from; /* parent's ends */
    int busy;
    long tag;
    fz_job job;
    double deadline;
} fz_slot;

struct fz_pool {
    fz_pool_cfg cfg;
    int n;
    fz_slot s[MAX_WORKERS];
};

static void child_exec_sanitizer(const fz_pool *p, int rfd, int wfd)
{
    char fds[32], seed[32], cap[32];
    snprintf(fds, sizeof fds, "%d,%d", rfd, wfd);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->cfg.w.seed);
    snprintf(cap, sizeof cap, "%d", p->cfg.w.gen.max_context);
    char tool[64];
    snprintf(tool, sizeof tool, "%s", p->cfg.sanitize);
    char *argv[] = {"compute-sanitizer", "--tool", tool, "--error-exitcode", "86", (char *)p->cfg.self_exe,
                    "fuzz", "--worker", fds, "--kernel", (char *)p->cfg.w.kernel, "--seed", seed,
                    "--max-context", cap, NULL};
    execvp(argv[0], argv);
    argv[0] = "/usr/local/cuda/bin/compute-sanitizer";
    execv(argv[0], argv);
    _exit(127);
}

static int spawn(fz_pool *p, int i)
{
    int a[2], b[2]; /* a: parent -> child jobs, b: child -> parent results */
    if (pipe(a)) return -1;
    if (pipe(b)) { close(a[0]), close(a[1]); return -1; }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { close(a[0]), close(a[1]), close(b[0]), close(b[1]); return -1; }
    if (pid == 0) {
        for (int o = 0; o < p->n; o++)
            if (o != i && p->s[o].pid > 0) close(p->s[o].to), close(p->s[o].from);
        close(a[1]), close(b[0]);
        if (p->cfg.gpu_workers) {
            char dev[16];
            snprintf(dev, sizeof dev, "%d", i);
            setenv("CUDA_VISIBLE_DEVICES", dev, 1);
        }
        signal(SIGPIPE, SIG_DFL);
        if (p->cfg.sanitize) child_exec_sanitizer(p, a[0], b[1]);
        fz_worker_loop(&p->cfg.w, a[0], b[1]);
        _exit(0);
    }
    close(a[0]), close(b[1]);
    fcntl(a[1], F_SETFD, FD_CLOEXEC);
    fcntl(b[0], F_SETFD, FD_CLOEXEC);
    p->s[i].pid = pid, p->s[i].to = a[1], p->s[i].from = b[0], p->s[i].busy = 0;
    return 0;
}

static void reap(fz_slot *s, int kill_it, int *status)
{
    if (kill_it) kill(s->pid, SIGKILL);
    close(s->to), close(s->from);
    *status = 0;
    while (waitpid(s->pid, status, 0) < 0 && errno == EINTR) {}
    s->pid = 0, s->busy = 0;
}

int fz_pool_open(const fz_pool_cfg *cfg, fz_pool **out, msa_err *e)
{
    fz_pool *p = calloc(1, sizeof *p);
    if (!p) return msa_fail(e, MSA_ENOMEM, "fuzz: out of memory");
    p->cfg = *cfg;
    p->n = cfg->nworkers < 1 ? 1 : cfg->nworkers > MAX_WORKERS ? MAX_WORKERS : cfg->nworkers;
    if (p->cfg.timeout_s <= 0) p->cfg.timeout_s = MSA_FUZZ_DEFAULT_TIMEOUT;
    if (p->cfg.sanitize) p->cfg.timeout_s *= SANITIZER_SLOWDOWN;
    if (!p->cfg.self_exe) p->cfg.self_exe = "msa";
    signal(SIGPIPE, SIG_IGN); /* a dead worker shows as EPIPE, not as our death */
    *out = p;
    return 0;
}

int fz_pool_busy(const fz_pool *p)
{
    int n = 0;
    for (int i = 0; i < p->n; i++) n += p->s[i].busy;
    return n;
}

int fz_pool_submit(fz_pool *p, const fz_job *j, long tag)
{
    for (int i = 0; i < p->n; i++) {
        fz_slot *s = &p->s[i];
        if (s->busy) continue;
        for (int attempt = 0; attempt < 2; attempt++) {
            if (s->pid <= 0 && spawn(p, i)) return -1;
            if (write_full(s->to, j, sizeof *j) == 0) {
                s->busy = 1, s->tag = tag, s->job = *j;
                s->deadline = fz_now() + p->cfg.timeout_s;
                return i;
            }
            int st;
            reap(s, 1, &st); /* it died between jobs: start a fresh one */
        }
        return -1;
    }
    return -1;
}

static void death_result(const fz_slot *s, int status, int timed_out, msa_fuzz_result *r)
{
    memset(r, 0, sizeof *r);
    r->id = s->job.kind == FZ_JOB_ID ? s->job.id : UINT64_MAX;
    r->disp = timed_out ? MSA_V_TIMEOUT : MSA_V_CRASHED;
    if (timed_out) {
        snprintf(r->stage, sizeof r->stage, "worker/timeout");
        snprintf(r->detail, sizeof r->detail, "no result within the time limit; worker killed");
    } else if (WIFSIGNALED(status)) {
        snprintf(r->stage, sizeof r->stage, "worker/signal");
        snprintf(r->detail, sizeof r->detail, "worker killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else {
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        snprintf(r->stage, sizeof r->stage, "worker/%s", code == SANITIZER_ERROR_EXIT ? "sanitizer" : "exit");
        snprintf(r->detail, sizeof r->detail, "worker exited with status %d%s", code,
                 code == SANITIZER_ERROR_EXIT ? " (compute-sanitizer reported an error)" : "");
    }
}

int fz_pool_collect(fz_pool *p, msa_fuzz_result *r, long *tag)
{
    for (;;) {
        struct pollfd pf[MAX_WORKERS];
        int idx[MAX_WORKERS], n = 0;
        double now = fz_now(), wait = 1e9;
        for (int i = 0; i < p->n; i++) {
            fz_slot *s = &p->s[i];
            if (!s->busy) continue;
            if (now >= s->deadline) { /* hung: kill, report Timeout */
                int st;
                *tag = s->tag;
                death_result(s, 0, 1, r);
                reap(s, 1, &st);
                return 0;
            }
            if (s->deadline - now < wait) wait = s->deadline - now;
            pf[n].fd = s->from, pf[n].events = POLLIN, pf[n].revents = 0, idx[n++] = i;
        }
        if (!n) return -1;
        int rc = poll(pf, (nfds_t)n, (int)(wait * 1000) + 1);
        if (rc < 0 && errno != EINTR) return -1;
        for (int m = 0; rc > 0 && m < n; m++) {
            if (!pf[m].revents) continue;
            fz_slot *s = &p->s[idx[m]];
            *tag = s->tag;
            if (read_full(s->from, r, sizeof *r) == 0) {
                s->busy = 0;
                return 0;
            }
            int st; /* EOF: the worker died during the job */
            reap(s, 1, &st);
            death_result(s, st, 0, r);
            return 0;
        }
    }
}

int fz_pool_run1(fz_pool *p, const fz_job *j, msa_fuzz_result *r)
{
    long tag;
    if (fz_pool_busy(p) || fz_pool_submit(p, j, 0) < 0) return -1;
    return fz_pool_collect(p, r, &tag);
}

void fz_pool_close(fz_pool *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        fz_slot *s = &p->s[i];
        if (s->pid <= 0) continue;
        fz_job q;
        memset(&q, 0, sizeof q);
        q.kind = FZ_JOB_QUIT;
        int st;
        int clean = !s->busy && write_full(s->to, &q, sizeof q) == 0;
        reap(s, !clean, &st);
    }
    free(p);
}
