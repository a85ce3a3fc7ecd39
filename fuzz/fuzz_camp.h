/* fuzz_camp.h - private state of one campaign, shared by campaign.c (the loop),
 * shrink.c (shrinking failures into the corpus) and report.c (tables, JSON, JUnit). */
#ifndef MSA_FUZZ_CAMP_H
#define MSA_FUZZ_CAMP_H

#include <stdarg.h>

#include "fuzz_int.h"

enum { FZ_ORIGIN_STREAM = 0, FZ_ORIGIN_STEER, FZ_ORIGIN_CORPUS, FZ_ORIGIN_FILE };
#define FZ_MAX_FAILS 64   /* failures kept for shrinking and JUnit (all are counted) */
#define FZ_MAX_PENDING 64

typedef struct {
    msa_fuzz_result r;
    fz_job job;
    int origin;
    long ordinal;
    double seconds;
    char repro[1024];
    char shrunk_path[1024]; /* corpus file of the shrunk case ("" when not shrunk) */
    char shrunk_desc[200];
    char shrunk_repro[1200];
} fz_failure;

typedef struct {
    int used, origin;
    fz_job job;
} fz_pending;

typedef struct {
    const msa_fuzz_opts *o;
    msa_fuzz_summary *s;
    FILE *log;
    fz_pool *pool;
    int nworkers;
    double t0;
    fz_pending pend[FZ_MAX_PENDING];
    int steer_tries[MSA_COV_N];
    fz_failure fails[FZ_MAX_FAILS];
    int nfail;
    char open_err[640];
    char header[512]; /* printed with the first result: a backend that cannot be opened
                       * gives one error line and nothing else (exit 2 contract) */
    int header_done;
} fz_camp;

void fz_repro_id(const fz_camp *k, uint64_t id, char *buf, size_t n);
/* Shrinks the first failure of each distinct (disposition, stage) and stores it. */
void fz_shrink_failures(fz_camp *k);
int fz_write_reports(fz_camp *k, msa_err *e);

#endif
