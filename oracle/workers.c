/* workers.c - the oracle's row parallelism: how many workers a judge may use, running a
 * worker function over an array of per-worker states (pthreads, falling back to the calling
 * thread for any that cannot start), and merging per-worker verdicts in row order so that a
 * parallel judgement reports exactly what the serial one would. */
#include "oracle_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int msa_or_workers(long units, size_t bytes_per_worker)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN), nw = ncpu < 1 ? 1 : ncpu;
    const char *env = getenv("MSA_ORACLE_THREADS");
    if (env && *env) nw = atol(env) < 1 ? 1 : atol(env);
    if (nw > MSA_OR_MAX_WORKERS) nw = MSA_OR_MAX_WORKERS;
    if (nw > units / 4) nw = units / 4; /* small cases: threads cost more than they save */
    if (bytes_per_worker > 0 && (double)nw * (double)bytes_per_worker > MSA_OR_WORKER_BYTES)
        nw = (long)(MSA_OR_WORKER_BYTES / (double)bytes_per_worker);
    return nw < 1 ? 1 : (int)nw;
}

void msa_or_run_workers(void *states, size_t size, int nw, void *(*fn)(void *))
{
    pthread_t th[MSA_OR_MAX_WORKERS];
    char *s = states;
    int i, started = 0;
    for (i = 1; i < nw; i++, started++)
        if (pthread_create(&th[i], NULL, fn, s + (size_t)i * size) != 0) break;
    fn(s);
    for (i = 1; i <= started; i++) pthread_join(th[i], NULL);
    for (i = started + 1; i < nw; i++) fn(s + (size_t)i * size); /* threads that did not start */
}

void msa_or_acc_merge(msa_or_acc *dst, const msa_or_acc *src)
{
    msa_verdict *v = dst->v;
    const msa_verdict *w = src->v;
    int i;
    for (i = 0; i < MSA_OR_HIST_BINS + 2; i++) dst->hist[i] += src->hist[i];
    dst->nratio += src->nratio;
    /* the worst element: strictly larger wins, so among equals the earliest row keeps it;
     * an accumulator with nothing checked yet takes the other's first element */
    if (w->checked > 0 && (v->checked == 0 || w->worst_ratio > v->worst_ratio)) {
        v->worst_ratio = w->worst_ratio;
        memcpy(v->budget, w->budget, sizeof v->budget);
        snprintf(v->stage, sizeof v->stage, "%s", w->stage);
        snprintf(v->detail, sizeof v->detail, "%s", w->detail);
    }
    if (w->worst_lse_ratio > v->worst_lse_ratio) v->worst_lse_ratio = w->worst_lse_ratio;
    v->checked += w->checked;
    v->failed += w->failed;
    if (w->disp == MSA_V_INCORRECT) v->disp = MSA_V_INCORRECT;
}
