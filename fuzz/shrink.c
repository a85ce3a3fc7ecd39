/* shrink.c - reduces a failing case to a small one that still fails the same way (same
 * disposition and stage), greedily: one sequence, one KV group, one query head per group,
 * one query row (keeping its position and visible keys), fewer leading blocks, half the
 * head dims, smaller k and no forced blocks, a packed layout, then bf16 and simpler
 * values.  Each
 * accepted step restarts the pass; the step budget bounds the work.  Candidates are run
 * by the caller's predicate (in a worker process, from a case file, so a crash shrinks
 * like a wrong answer and the stored file is exactly what was shown to fail). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/fsutil.h"
#include "../oracle/oracle.h"
#include "fuzz_camp.h"
#include "gen_int.h"

#define MAX_CANDS 48
#define MIN_D 64  /* MSA.md section 2: D in {64, 128, 256} */
#define MIN_DI 16 /* index dims in multiples of 16 (tensor-core k-steps) */
#define SHRINK_STEPS 400
/* Wall-time cap of one shrink: a hanging kernel makes every candidate wait for the
 * worker time limit, so steps alone do not bound it. */
#define SHRINK_MAX_SECONDS 180.0
/* Value simplification grid: multiples of 1/4 in [-8, 8] are exact in every case dtype
 * (e4m3 included), so rounding to it never changes a value twice. */
#define VALUE_STEP 0.25
#define VALUE_CLAMP 8.0

typedef struct {
    fz_view v[MAX_CANDS];
    int n;
} cand_list;

static void add(cand_list *l, const fz_view *v)
{
    if (l->n < MAX_CANDS) l->v[l->n++] = *v;
}

static void structure_cands(const msa_case *c, cand_list *l)
{
    fz_view base, v;
    fz_view_identity(c, &base);
    if (base.nseq == 0) return;
    for (int b = 0; c->batch > 1 && b < c->batch; b++) { /* one sequence */
        v = base, v.nseq = 1, v.seq[0] = base.seq[b];
        add(l, &v);
    }
    for (int g = 0; c->Hkv > 1 && g < c->Hkv; g++) { /* one KV group */
        v = base, v.ngroups = 1, v.group[0] = g;
        add(l, &v);
    }
    if (base.ratio > 1) { v = base, v.ratio = 1, add(l, &v); v = base, v.ratio = base.ratio / 2, add(l, &v); }
    if (c->batch == 1) { /* rows and keys of the single sequence */
        int lq = base.seq[0].nq, lk = base.seq[0].lk, B = c->block_size;
        int picks[5] = {lq - 1, 0, lq / 2, lq / 4, 3 * lq / 4};
        for (int p = 0; lq > 1 && p < 5; p++) { /* one query row at its own position */
            int i = picks[p], pos = lk - lq + i;
            v = base, v.seq[0].q0 = i, v.seq[0].nq = 1;
            v.seq[0].lk = c->causal ? (pos + 1 < 0 ? 0 : pos + 1) : lk;
            add(l, &v);
        }
        if (lq > 1) { /* drop the first / the last half of the queries */
            v = base, v.seq[0].q0 = lq / 2, v.seq[0].nq = lq - lq / 2, add(l, &v);
            v = base, v.seq[0].nq = lq / 2, v.seq[0].lk = lk - (lq - lq / 2), add(l, &v);
        }
        int nb = (lk + B - 1) / B;
        for (int drop = nb / 2; drop >= 1; drop = drop > 1 ? drop / 2 : 0) { /* leading blocks */
            v = base, v.seq[0].k0 = drop * B, v.seq[0].lk = lk - drop * B;
            if (v.seq[0].lk >= 1) add(l, &v);
        }
    }
    /* D stays in MSA's {64, 128, 256} and DI a multiple of 16, so the stored case is one
     * every backend (the CUDA kernels included) accepts */
    if (c->D >= 2 * MIN_D) { v = base, v.D = c->D / 2, add(l, &v); }
    if (c->DI >= 2 * MIN_DI && c->DI % (2 * MIN_DI) == 0) { v = base, v.DI = c->DI / 2, add(l, &v); }
    if (c->init_blocks) { v = base, v.init = 0, add(l, &v); }
    if (c->local_blocks) { v = base, v.local = 0, add(l, &v); }
    if (c->topk > 1) {
        v = base, v.topk = c->topk - 1;
        if (v.init + v.local > v.topk) v.local = v.topk - v.init < 0 ? 0 : v.topk - v.init;
        if (v.init > v.topk) v.init = v.topk, v.local = 0;
        add(l, &v);
    }
    if (c->page_table) { v = base, v.unpage = 1, add(l, &v); }
}

/* Tensor t of the case rounded to the VALUE_STEP grid (non-finite values kept). */
static int simplify_values(const msa_case *c, int which, msa_case *out, msa_err *e)
{
    if (msa_case_clone(c, out, e)) return -1;
    void *p[5] = {out->v, out->q, out->k, out->index_q, out->index_k};
    msa_dtype t = which >= 3 ? out->index_dtype : out->dtype;
    size_t n[5] = {(size_t)c->Tk * c->Hkv * c->D, (size_t)c->Tq * c->Hq * c->D, (size_t)c->Tk * c->Hkv * c->D,
                   (size_t)c->Tq * c->HI * c->DI, (size_t)c->Tk * c->DI};
    int changed = 0;
    for (size_t i = 0; i < n[which]; i++) {
        double x = msa_dtype_load(t, p[which], i);
        if (!isfinite(x)) continue;
        double y = fmin(fmax(round(x / VALUE_STEP) * VALUE_STEP, -VALUE_CLAMP), VALUE_CLAMP);
        if (y != x) changed = 1, fz_put(t, p[which], i, y);
    }
    if (!changed) msa_case_free(out);
    return changed ? 0 : -1;
}

/* The case in bf16 (q/k/v and index): the dtype every backend takes.  e4m3 values are
 * exact in bf16; fp16 and fp32 values are rounded (the predicate decides). */
static void *to_bf16(msa_dtype t, const void *src, size_t n)
{
    uint16_t *d = msa_calloc(n ? n : 1, sizeof(uint16_t));
    for (size_t i = 0; d && i < n; i++) fz_put(MSA_DT_BF16, d, i, msa_dtype_load(t, src, i));
    return d;
}

static int simplify_dtype(const msa_case *c, msa_case *out, msa_err *e)
{
    if (c->dtype == MSA_DT_BF16 && c->index_dtype == MSA_DT_BF16) return -1;
    if (msa_case_clone(c, out, e)) return -1;
    size_t nq = (size_t)c->Tq * c->Hq * c->D, nk = (size_t)c->Tk * c->Hkv * c->D;
    size_t niq = (size_t)c->Tq * c->HI * c->DI, nik = (size_t)c->Tk * c->DI;
    void *t[5] = {to_bf16(c->dtype, c->q, nq), to_bf16(c->dtype, c->k, nk), to_bf16(c->dtype, c->v, nk),
                  to_bf16(c->index_dtype, c->index_q, niq), to_bf16(c->index_dtype, c->index_k, nik)};
    void **dst[5] = {&out->q, &out->k, &out->v, &out->index_q, &out->index_k};
    int ok = t[0] && t[1] && t[2] && t[3] && t[4];
    for (int i = 0; i < 5; i++) {
        if (ok) free(*dst[i]), *dst[i] = t[i];
        else free(t[i]);
    }
    out->dtype = out->index_dtype = MSA_DT_BF16;
    if (!ok) msa_case_free(out);
    return ok ? 0 : -1;
}

int msa_fuzz_shrink(const msa_case *c, msa_fuzz_still_fails pred, void *user, int max_steps,
                    msa_case *out, msa_err *e)
{
    msa_case cur;
    if (msa_case_clone(c, &cur, e)) return MSA_ENOMEM;
    int steps = 0, progress = 1;
    cand_list *l = malloc(sizeof *l);
    if (!l) { msa_case_free(&cur); return msa_fail(e, MSA_ENOMEM, "fuzz: out of memory"); }
    while (progress && steps < max_steps) {
        progress = 0;
        l->n = 0;
        structure_cands(&cur, l);
        for (int i = 0; i < l->n && !progress && steps < max_steps; i++) {
            msa_case cand;
            if (fz_subcase(&cur, &l->v[i], &cand, NULL, e)) continue;
            snprintf(cand.label, sizeof cand.label, "%s", cur.label);
            steps++;
            if (pred(user, &cand)) msa_case_free(&cur), cur = cand, progress = 1;
            else msa_case_free(&cand);
        }
        for (int w = -1; w < 5 && !progress && steps < max_steps; w++) {
            msa_case cand;
            if (w < 0 ? simplify_dtype(&cur, &cand, e) : simplify_values(&cur, w, &cand, e)) continue;
            steps++;
            if (pred(user, &cand)) msa_case_free(&cur), cur = cand, progress = 1;
            else msa_case_free(&cand);
        }
    }
    free(l);
    *out = cur;
    return 0;
}

/* ---- shrinking a campaign's failures through the worker pool ---- */
typedef struct {
    fz_camp *k;
    const fz_failure *f;
    char dir[256];
    int n;
    double t0;
} shrink_ctx;

static int same_failure(void *user, const msa_case *cand)
{
    shrink_ctx *x = user;
    if (fz_now() - x->t0 > SHRINK_MAX_SECONDS) return 0;
    fz_job j = {FZ_JOB_FILE, 0, ""};
    snprintf(j.path, sizeof j.path, "%s/cand-%d.npz", x->dir, x->n++);
    msa_err e;
    if (msa_case_save(j.path, cand, &e)) return 0;
    msa_fuzz_result r;
    int ok = fz_pool_run1(x->k->pool, &j, &r) == 0 && r.disp == x->f->r.disp && !strcmp(r.stage, x->f->r.stage);
    unlink(j.path);
    return ok;
}

static void sanitize_name(const char *s, char *out, size_t n)
{
    size_t i = 0;
    for (; *s && i + 1 < n; s++) out[i++] = (char)((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                                                        (*s >= '0' && *s <= '9') || *s == '-' ? *s : '_');
    out[i] = 0;
}

/* Stores the shrunk case in the corpus under a content-derived (so collision-free and
 * idempotent) name; msa_case_save writes atomically. */
static void store(fz_camp *k, fz_failure *f, const msa_case *c)
{
    char kn[64], st[64];
    sanitize_name(k->o->kernel, kn, sizeof kn);
    sanitize_name(f->r.stage, st, sizeof st);
    msa_err e;
    snprintf(f->shrunk_path, sizeof f->shrunk_path, "%s/%s-%s-%016llx.npz", k->o->corpus_dir, kn, st,
             (unsigned long long)fz_hash_case(c));
    if (msa_case_save(f->shrunk_path, c, &e)) {
        fprintf(k->log, "fuzz: could not store the shrunk case: %s\n", e.msg);
        f->shrunk_path[0] = 0;
        return;
    }
    snprintf(f->shrunk_repro, sizeof f->shrunk_repro, "%s fuzz --kernel %s --replay %s",
             k->o->self_exe ? k->o->self_exe : "msa", k->o->kernel, f->shrunk_path);
}

static int shrink_one(fz_camp *k, fz_failure *f, const char *dir)
{
    msa_case c, small;
    msa_err e;
    int rc = f->job.kind == FZ_JOB_ID ? msa_fuzz_generate(&k->o->gen, k->o->seed, f->job.id, &c, &e)
                                      : fz_load_case(f->job.path, &c, &e);
    if (rc) return rc;
    shrink_ctx x = {k, f, "", 0, fz_now()};
    snprintf(x.dir, sizeof x.dir, "%s", dir);
    rc = msa_fuzz_shrink(&c, same_failure, &x, SHRINK_STEPS, &small, &e);
    if (!rc) {
        msa_case_describe(&small, f->shrunk_desc, sizeof f->shrunk_desc);
        if (k->o->corpus_dir) store(k, f, &small);
        if (!k->o->quiet)
            fprintf(k->log, "shrunk in %d steps: %s\n  -> %s\n  repro: %s\n", x.n, f->r.desc, f->shrunk_desc,
                    f->shrunk_path[0] ? f->shrunk_repro : f->repro);
        msa_case_free(&small);
    }
    msa_case_free(&c);
    return rc;
}

void fz_shrink_failures(fz_camp *k)
{
    char dir[] = "/tmp/msa-fuzz-shrink-XXXXXX";
    if (!k->nfail || !mkdtemp(dir)) return;
    for (int i = 0; i < k->nfail; i++) {
        fz_failure *f = &k->fails[i];
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= k->fails[j].r.disp == f->r.disp && !strcmp(k->fails[j].r.stage, f->r.stage);
        if (seen || f->origin == FZ_ORIGIN_CORPUS) continue; /* corpus cases are already small */
        shrink_one(k, f, dir);
        if (i == 0 || !k->s->first_fail_case[0]) {
            if (f->ordinal == k->s->first_fail_ordinal) {
                snprintf(k->s->first_fail_case, sizeof k->s->first_fail_case, "%s", f->shrunk_path);
                snprintf(k->s->first_fail_shrunk_desc, sizeof k->s->first_fail_shrunk_desc, "%s", f->shrunk_desc);
            }
        }
    }
    rmdir(dir);
}
