/* recall_cli.c - `msa recall TRACE [--topk 4,8,16,32] [--block 32,64,128] [--buckets N]
 * [--threads N] [--device auto|cpu|gpu] [--plots DIR] [--out FILE.md]`: runs recall.c over a trace and writes
 * markdown tables (pooled over layers, per layer, per group, per position bucket) and,
 * when gnuplot is installed, PNG plots of recall against position and against layer.
 * It only formats; every number comes from msa_recall_run. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/fsutil.h"
#include "traces.h"

#define DEFAULT_BUCKETS 4
/* Metrics a pooled distribution can be taken of. */
enum { M_BLOCK, M_MASS, M_FREE, M_FORCED };

static int parse_list(const char *s, int *v, int max, int *n)
{
    *n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 1 || x > 1 << 20 || *n >= max) return -1;
        v[(*n)++] = (int)x;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return *n ? 0 : -1;
}

/* Pools the samples of every cell with this (B, k), optionally one layer / group / bucket. */
static msa_dist_stats pool(const msa_recall_result *r, int B, int k, int layer, int group, int bucket, int metric)
{
    long cap = 0;
    for (int i = 0; i < r->ncell; i++) cap += r->cell[i].n;
    double *v = malloc(sizeof *v * (size_t)(cap ? cap : 1));
    long n = 0;
    for (int i = 0; v && i < r->ncell; i++) {
        const msa_recall_cell *c = &r->cell[i];
        if (c->B != B || c->k != k || (layer >= 0 && c->layer != layer)) continue;
        const double *src = metric == M_BLOCK ? c->v_block : metric == M_MASS ? c->v_mass
                          : metric == M_FREE ? c->v_free : c->v_forced;
        for (long j = 0; j < c->n; j++) {
            if (group >= 0 && c->v_group[j] != group) continue;
            if (bucket >= 0 && c->v_bucket[j] != bucket) continue;
            v[n++] = src[j];
        }
    }
    msa_dist_stats s;
    msa_dist_compute(v, v ? n : 0, &s);
    free(v);
    return s;
}

static long trivial(const msa_recall_result *r, int B, int k)
{
    long n = 0;
    for (int i = 0; i < r->ncell; i++)
        if (r->cell[i].B == B && r->cell[i].k == k) n += r->cell[i].trivial;
    return n;
}

static void dist_cells(msa_sbuf *b, msa_dist_stats s)
{
    if (s.n == 0) msa_sb_printf(b, " - | - | - | - |");
    else msa_sb_printf(b, " %.4f | %.4f | %.4f | %.4f |", s.p5, s.p50, s.p95, s.min);
}

static void summary_table(msa_sbuf *b, const msa_recall_result *r, const msa_recall_opts *o)
{
    msa_sb_printf(b, "\n### Pooled over all records\n\nRows: (group, query) pairs with more visible blocks than k; "
                     "rows with nvis <= k select everything and are counted under \"all-sel\".\n\n");
    msa_sb_printf(b, "| B | k | rows | all-sel | block recall p5 | p50 | p95 | min | mass recall p5 | p50 | p95 | min "
                     "| free recall p50 | forced mass p50 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int bi = 0; bi < o->nblock; bi++)
        for (int ki = 0; ki < o->ntopk; ki++) {
            int B = o->block[bi], k = o->topk[ki];
            msa_dist_stats sb = pool(r, B, k, -1, -1, -1, M_BLOCK), sm = pool(r, B, k, -1, -1, -1, M_MASS);
            msa_dist_stats sf = pool(r, B, k, -1, -1, -1, M_FREE), so = pool(r, B, k, -1, -1, -1, M_FORCED);
            msa_sb_printf(b, "| %d | %d | %ld | %ld |", B, k, sm.n, trivial(r, B, k));
            dist_cells(b, sb);
            dist_cells(b, sm);
            msa_sb_printf(b, " %.4f | %.4f |\n", sf.p50, so.p50);
        }
}

/* A matrix: rows (layers, groups or buckets) x columns (B, k), cell = a statistic of mass recall. */
static void matrix(msa_sbuf *b, const msa_recall_result *r, const msa_recall_opts *o, const char *title,
                   const char *rowname, int nrows, const int *rowid, int kind, int metric)
{
    msa_sb_printf(b, "\n### %s\n\n| %s |", title, rowname);
    for (int bi = 0; bi < o->nblock; bi++)
        for (int ki = 0; ki < o->ntopk; ki++) msa_sb_printf(b, " B%d k%d |", o->block[bi], o->topk[ki]);
    msa_sb_printf(b, "\n|---|");
    for (int i = 0; i < o->nblock * o->ntopk; i++) msa_sb_printf(b, "---|");
    msa_sb_printf(b, "\n");
    for (int ri = 0; ri < nrows; ri++) {
        int id = rowid[ri];
        if (kind == 2 && r->maxpos > 0)
            msa_sb_printf(b, "| %lld-%lld |", (long long)(id * (r->maxpos + 1) / r->buckets),
                          (long long)((id + 1) * (r->maxpos + 1) / r->buckets - 1));
        else msa_sb_printf(b, "| %d |", id);
        for (int bi = 0; bi < o->nblock; bi++)
            for (int ki = 0; ki < o->ntopk; ki++) {
                msa_dist_stats s = pool(r, o->block[bi], o->topk[ki], kind == 0 ? id : -1, kind == 1 ? id : -1,
                                        kind == 2 ? id : -1, metric);
                if (s.n == 0) msa_sb_printf(b, " - |");
                else msa_sb_printf(b, " %.3f / %.3f / %.3f |", s.p5, s.p50, s.min);
            }
        msa_sb_printf(b, "\n");
    }
}

static int layer_ids(const msa_trace *t, int *ids)
{
    int n = 0;
    for (int i = 0; i < t->nrec; i++) {
        int seen = 0;
        for (int j = 0; j < n; j++) seen |= ids[j] == t->rec[i].layer;
        if (!seen) ids[n++] = t->rec[i].layer;
    }
    return n;
}

/* ---------------------------------------------------------------- plots (gnuplot) */

static int have_gnuplot(void) { return system("command -v gnuplot >/dev/null 2>&1") == 0; }

static int write_text(const char *path, msa_sbuf *b, msa_err *e)
{
    if (b->oom) return msa_fail(e, MSA_ENOMEM, "%s: out of memory", path);
    return msa_write_atomic(path, b->s ? b->s : "", b->len, e);
}

/* One data file per B: columns x, then (p50, p5) mass recall for each k. */
static int plot_one(const char *dir, const char *link, int draw, const msa_recall_result *r,
                    const msa_recall_opts *o, int B, int by_layer, const int *ids, int nid, msa_sbuf *md,
                    msa_err *e)
{
    char dat[1024], gp[1024], png[256], datname[256];
    const char *what = by_layer ? "layer" : "position";
    snprintf(dat, sizeof dat, "%s/recall_%s_B%d.dat", dir, what, B);
    snprintf(gp, sizeof gp, "%s/recall_%s_B%d.gp", dir, what, B);
    snprintf(png, sizeof png, "recall_%s_B%d.png", what, B); /* relative: gnuplot runs in dir */
    snprintf(datname, sizeof datname, "recall_%s_B%d.dat", what, B);
    msa_sbuf d = {0}, g = {0};
    for (int i = 0; i < nid; i++) {
        double x = by_layer ? ids[i] : (ids[i] + 0.5) * (double)(r->maxpos + 1) / r->buckets;
        msa_sb_printf(&d, "%g", x);
        for (int ki = 0; ki < o->ntopk; ki++) {
            msa_dist_stats s = pool(r, B, o->topk[ki], by_layer ? ids[i] : -1, -1, by_layer ? -1 : ids[i], M_MASS);
            if (s.n) msa_sb_printf(&d, " %.6f %.6f", s.p50, s.p5);
            else msa_sb_printf(&d, " NaN NaN");
        }
        msa_sb_printf(&d, "\n");
    }
    msa_sb_printf(&g, "set terminal png size 900,540\nset output '%s'\nset grid\nset key bottom right\n"
                      "set yrange [0:1.02]\nset xlabel '%s'\nset ylabel 'attention-mass recall'\n"
                      "set title 'MSA mass recall by %s, block size %d (thick: p50, thin: p5)'\nplot ",
                  png, by_layer ? "layer" : "query position (bucket centre)", what, B);
    for (int ki = 0; ki < o->ntopk; ki++)
        msa_sb_printf(&g, "%s'%s' using 1:%d with linespoints lw 2 lc %d title 'k=%d', '%s' using 1:%d with lines lw 1 lc %d notitle",
                      ki ? ", " : "", datname, 2 + 2 * ki, ki + 1, o->topk[ki], datname, 3 + 2 * ki, ki + 1);
    msa_sb_printf(&g, "\n");
    int rc = write_text(dat, &d, e);
    if (!rc) rc = write_text(gp, &g, e);
    msa_sb_free(&d);
    msa_sb_free(&g);
    if (rc) return rc;
    if (draw) {
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot 'recall_%s_B%d.gp' 2>&1", dir, what, B);
        if (system(cmd) != 0) return msa_fail(e, MSA_EIO, "%s: gnuplot failed", gp);
    }
    msa_sb_printf(md, "\n![mass recall by %s, B=%d](%s/%s)\n", what, B, link, png);
    return MSA_OK;
}

/* Writes each plot's data and gnuplot script into dir and, when gnuplot is installed, draws
 * the PNGs there; md links them as LINK/recall_*.png (LINK: dir as the markdown's reader
 * reaches it).  Without gnuplot the scripts stay, with a line saying how to draw them. */
int msa_recall_plots(const char *dir, const char *link, const msa_trace *t, const msa_recall_result *r,
                     const msa_recall_opts *o, msa_sbuf *md, msa_err *e)
{
    int draw = have_gnuplot();
    if (strchr(dir, '\'')) return msa_fail(e, MSA_EINPUT, "%s: --plots: folder name must not contain a quote", dir);
    if (!draw) {
        fprintf(stderr, "msa recall: --plots: gnuplot not found in PATH (apt install gnuplot-nox); "
                        "data and scripts written to %s, PNGs not drawn\n", dir);
        msa_sb_printf(md, "\n(plots not drawn here: gnuplot is not installed on this machine; "
                          "`cd %s && for f in *.gp; do gnuplot $f; done` draws them from the data written beside them)\n", link);
    }
    int rc = msa_mkdirs(dir, e);
    int *ids = malloc(sizeof *ids * (size_t)(t->nrec + r->buckets + 1));
    if (!ids) return msa_fail(e, MSA_ENOMEM, "recall: out of memory");
    for (int bi = 0; bi < o->nblock && !rc; bi++) {
        int n = layer_ids(t, ids);
        rc = plot_one(dir, link, draw, r, o, o->block[bi], 1, ids, n, md, e);
        for (int q = 0; q < r->buckets; q++) ids[q] = q;
        if (!rc) rc = plot_one(dir, link, draw, r, o, o->block[bi], 0, ids, r->buckets, md, e);
    }
    free(ids);
    return rc;
}

/* ---------------------------------------------------------------- entry */

static int usage(void)
{
    fprintf(stderr, "usage: msa recall TRACE [--topk 4,8,16,32] [--block 32,64,128] [--buckets N] "
                    "[--threads N] [--device auto|cpu|gpu] [--plots DIR] [--out FILE.md]\n");
    return 2;
}

void msa_recall_report(msa_sbuf *b, const char *path, const msa_trace *t, const msa_recall_result *r,
                   const msa_recall_opts *o)
{
    msa_sb_printf(b, "## MSA recall: %s\n\nModel: %s; index: %s; %d records; %.1f s.\n"
                     "Selection: the reference's index branch (fast mode) on the trace's index q/k, "
                     "MSA's rule (init %d, local %d forced when k allows). Dense mass: causal softmax "
                     "in double, averaged over each group's query heads.\nComputed on: %s%s.\n",
                  path, t->model[0] ? t->model : "?", t->index_kind[0] ? t->index_kind : "?", t->nrec,
                  r->seconds, r->init_blocks, r->local_blocks, r->device,
                  r->gpu ? " (dense mass and index block scores as cuBLAS fp64 GEMMs, kernels/cuda/gpuref.cu)" : "");
    summary_table(b, r, o);
    int *ids = malloc(sizeof *ids * (size_t)(t->nrec + r->Hkv + r->buckets + 1));
    if (!ids) {
        b->oom = 1;
        return;
    }
    int n = layer_ids(t, ids);
    matrix(b, r, o, "Mass recall per layer (p5 / p50 / min)", "layer", n, ids, 0, M_MASS);
    matrix(b, r, o, "Block recall@k per layer (p5 / p50 / min)", "layer", n, ids, 0, M_BLOCK);
    for (int g = 0; g < r->Hkv; g++) ids[g] = g;
    matrix(b, r, o, "Mass recall per KV group, pooled over layers (p5 / p50 / min)", "group", r->Hkv, ids, 1, M_MASS);
    for (int q = 0; q < r->buckets; q++) ids[q] = q;
    matrix(b, r, o, "Mass recall per query-position bucket, pooled (p5 / p50 / min)", "positions", r->buckets, ids, 2,
           M_MASS);
    matrix(b, r, o, "Block recall@k per query-position bucket, pooled (p5 / p50 / min)", "positions", r->buckets, ids,
           2, M_BLOCK);
    free(ids);
}

int msa_recall_main(int argc, char **argv)
{
    msa_recall_opts o = {.ntopk = 4, .topk = {4, 8, 16, 32}, .nblock = 3, .block = {32, 64, 128},
                         .buckets = DEFAULT_BUCKETS};
    const char *path = NULL, *plotdir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--topk") && v) bad = parse_list(v, o.topk, 8, &o.ntopk), i++;
        else if (!strcmp(a, "--block") && v) bad = parse_list(v, o.block, 8, &o.nblock), i++;
        else if (!strcmp(a, "--buckets") && v) bad = (o.buckets = atoi(v)) < 1 || o.buckets > 64, i++;
        else if (!strcmp(a, "--threads") && v) bad = (o.threads = atoi(v)) < 1 || o.threads > 64, i++;
        else if (!strcmp(a, "--device") && v) {
            bad = strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "gpu");
            o.device = !strcmp(v, "gpu") ? MSA_RECALL_GPU : !strcmp(v, "cpu") ? MSA_RECALL_CPU : MSA_RECALL_AUTO;
            i++;
        } else if (!strcmp(a, "--plots") && v) plotdir = v, i++;
        else if (!strcmp(a, "--out") && v) out = v, i++;
        else if (a[0] != '-' && !path) path = a;
        else return usage();
        if (bad) {
            fprintf(stderr, "msa recall: %s: bad value '%s'%s\n", a, v,
                    !strcmp(a, "--device") ? " (auto, cpu or gpu)" : "");
            return 2;
        }
    }
    if (!path) return usage();
    msa_err e = {{0}};
    msa_trace t;
    msa_recall_result r;
    int rc = msa_trace_read(path, &t, &e);
    if (rc) {
        fprintf(stderr, "msa recall: %s\n", e.msg);
        return 2;
    }
    rc = msa_recall_run(&t, &o, &r, &e);
    if (!rc) fprintf(stderr, "msa recall: device: %s\n", r.device);
    msa_sbuf md = {0};
    if (!rc) {
        msa_recall_report(&md, path, &t, &r, &o);
        if (plotdir) rc = msa_recall_plots(plotdir, plotdir, &t, &r, &o, &md, &e);
    }
    if (!rc && out) rc = write_text(out, &md, &e);
    else if (!rc) fwrite(md.s ? md.s : "", 1, md.len, stdout);
    if (!rc) fprintf(stderr, "msa recall: %d records, %d cells in %.1f s\n", t.nrec, r.ncell, r.seconds);
    else fprintf(stderr, "msa recall: %s\n", e.msg);
    msa_sb_free(&md);
    if (r.cell) msa_recall_result_free(&r);
    msa_trace_free(&t);
    return rc == MSA_OK ? 0 : rc == MSA_EINPUT ? 2 : 2;
}
