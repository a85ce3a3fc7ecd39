/* bounds.c - the per-element error bound of one attention row (docs/NUMERICS.md 4-6).
 *
 * For a row (query t, head h) with selected visible keys j, exact scores s_j and exact
 * softmax weights w_j, every error the declared arithmetic can make is written as
 *   - a relative perturbation rho_j of key j's unnormalised weight, |rho_j| <= R_j
 *     (score accumulation, scale, exp and its argument, P rounding, partial LSE, merge);
 *     because l sums the same perturbed weights, these enter the output only "centred":
 *     |dO_d| <= sum_j w_j (R_j + Rbar) / (1 - Rbar) |v_jd - O_d|   (NUMERICS.md 4.2);
 *   - uncentred relative errors of sums and divisions, times sum_j w_j |v_jd|;
 *   - absolute weight errors (flushed or subnormal P), times n max_j |v_jd|;
 *   - the final rounding to out_dtype: u_out (|O_d| + everything above).
 * This file computes numbers only; judge_attn.c decides and reports. */
#include "oracle_int.h"

#include <math.h>
#include <string.h>

#define REF_REL 0x1p-51 /* exact reference stored as a correctly rounded double, and the
                           double arithmetic of the bound and the comparison itself */
#define LOG_ERR 0x1p-21 /* logf/log2f: 2 ulp of a result of magnitude <= log(n) (<= 4 ulp) */
#define FTZ_ABS 0x1p-126 /* ex2.approx.ftz flushes results below the fp32 normal range */
#define SPARE_ROUNDINGS 16 /* roundings outside the sums (scale, exp, division, merge) */

typedef struct {
    double u, uP, alpha, eps, gD, g3, g4;
    int merge_lse;
    double n_acc, K;
} row_consts;

static void consts(const msa_case *c, const msa_arith *a, const msa_or_row *r, row_consts *k)
{
    memset(k, 0, sizeof *k);
    k->u = msa_or_unit(a->accum_bits > 0 ? a->accum_bits : 24);
    msa_dtype pt = msa_or_p_dtype(a, c); /* "follows the input" resolved (NUMERICS.md 2) */
    if (pt == MSA_DT_BF16 || pt == MSA_DT_FP16) {
        k->uP = msa_or_dtype_unit(pt);
        k->alpha = msa_or_dtype_subnormal_abs(pt);
    } else if (pt == MSA_DT_FP32 && a->accum_bits > 24) {
        k->uP = msa_or_dtype_unit(MSA_DT_FP32);
        k->alpha = msa_or_dtype_subnormal_abs(MSA_DT_FP32);
    }
    if (a->exp_kind == MSA_EXP_EX2_APPROX) k->alpha += FTZ_ABS;
    k->eps = a->exp_rel_err;
    k->gD = msa_or_gamma(r->D, k->u);
    k->g3 = msa_or_gamma(3, k->u);
    k->g4 = msa_or_gamma(4, k->u);
    k->merge_lse = a->merge == MSA_MERGE_LSE;
    /* max_partials: > 0 a fixed bound; 0 one partial per selected block; -m m per block */
    int per_block = a->max_partials < 0 ? -a->max_partials : 1;
    k->K = a->max_partials > 0 ? a->max_partials : per_block * (r->nparts > 0 ? r->nparts : 1);
    k->n_acc = r->n;
    if (k->merge_lse && a->max_partials <= 0 && c->block_size < r->n) k->n_acc = c->block_size;
}

/* Linear components of R_j by budget bucket; returns R_j itself (NUMERICS.md 4.1). */
static double key_components(const row_consts *k, const msa_or_row *r, int j, double smax,
                             double smin, double etot_max, double *rc)
{
    double smaxabs = fmax(fabs(smax), fabs(smin));
    double eacc = k->gD * r->A[j];
    double escale = k->g3 * (fabs(r->s[j]) + eacc);
    double etot = eacc + escale;
    double earg = k->u * (smax - r->s[j] + etot + etot_max);
    double lam = 0, mu = 0, em = 0, ell, mult;
    if (k->merge_lse) {
        double lmag = smaxabs + etot_max + log(k->n_acc);
        lam = k->g4 * lmag + LOG_ERR * log(k->n_acc);
        mu = 2 * k->u * (smax - smin + 2 * etot_max + log(k->n_acc) + 2 * lam);
        em = k->eps;
    }
    memset(rc, 0, sizeof(double) * MSA_BUD_N);
    rc[MSA_BUD_ACCUM] = eacc;
    rc[MSA_BUD_INPUT] = escale;
    rc[MSA_BUD_EXP] = earg + k->eps;
    rc[MSA_BUD_RESCALE] = lam + mu + em;
    rc[MSA_BUD_PROUND] = k->uP;
    ell = eacc + escale + earg + lam + mu;
    mult = (1 + k->eps) * (1 + k->uP) * (1 + em);
    return expm1(ell) * mult + (mult - 1);
}

/* The LSE bound (NUMERICS.md 5). */
static void lse_bound(const row_consts *k, const msa_or_row *r, msa_or_rowbound *rb, double rbar,
                      const double *rbar_c, double grow, double spread, double etot_max)
{
    double lr = -log1p(-rbar), pre = 0, tot = 0, g, *lb = rb->lse_budget;
    int b;
    for (b = 0; b < MSA_BUD_N; b++) lb[b] = rbar > 0 ? lr * rbar_c[b] / rbar : 0;
    g = msa_or_gamma(k->n_acc, k->u) * grow + (k->merge_lse ? msa_or_gamma(k->K, k->u) : 0);
    lb[MSA_BUD_ACCUM] += g < 1 ? -log1p(-g) : INFINITY; /* relative error g of l and S */
    lb[MSA_BUD_RESCALE] += LOG_ERR * log(k->merge_lse ? k->K : (double)r->n);
    if (!k->merge_lse) /* online rescale factors scale l alone: their errors reach the LSE */
        lb[MSA_BUD_RESCALE] += k->K * (k->eps + 2 * k->u * (spread + 2 * etot_max));
    for (b = 0; b < MSA_BUD_N; b++) pre += lb[b] *= rb->second;
    lb[MSA_BUD_RESCALE] += k->g3 * (fabs(r->lse) + pre + 1);
    lb[MSA_BUD_OUTPUT] += msa_or_dtype_unit(MSA_DT_FP32) * (fabs(r->lse) + pre + 1); /* fp32 lse */
    lb[MSA_BUD_INPUT] += REF_REL * (fabs(r->lse) + 1);
    for (b = 0; b < MSA_BUD_N; b++) tot += lb[b];
    rb->lse_bound = tot;
}

void msa_or_row_prepare(const msa_case *c, const msa_arith *a, const msa_or_row *r,
                        msa_or_rowbound *rb)
{
    row_consts k;
    double smax = -INFINITY, smin = INFINITY, etot_max = 0, rbar = 0, rmax = 0, grow;
    double rbar_c[MSA_BUD_N] = {0}, rc[MSA_BUD_N];
    msa_dtype od = msa_or_out_dtype(a, c);
    int j, b;

    consts(c, a, r, &k);
    for (j = 0; j < r->n; j++) {
        double eacc = k.gD * r->A[j];
        smax = fmax(smax, r->s[j]);
        smin = fmin(smin, r->s[j]);
        etot_max = fmax(etot_max, eacc + k.g3 * (fabs(r->s[j]) + eacc));
    }
    memset(rb->lse_budget, 0, sizeof rb->lse_budget);
    /* first pass: R_j scaled so that its components add up to it, and Rbar */
    for (j = 0; j < r->n; j++) {
        double w = rb->w[j] = exp(r->s[j] - r->lse), sum = 0, Rj, f;
        Rj = key_components(&k, r, j, smax, smin, etot_max, rc);
        for (b = 0; b < MSA_BUD_N; b++) sum += rc[b];
        f = sum > 0 ? Rj / sum : 0;
        for (b = 0; b < MSA_BUD_N; b++) {
            rb->coef[b * r->n + j] = w * rc[b] * f; /* w_j r_cj, completed below */
            rbar_c[b] += w * rc[b] * f;
        }
        rbar += w * Rj;
        rmax = fmax(rmax, Rj);
    }
    rb->unbounded = !(rbar < 1); /* the declaration cannot bound this row (NUMERICS.md 4.2) */
    if (rb->unbounded) return;
    for (j = 0; j < r->n; j++) {
        double w = rb->w[j], t = 0;
        for (b = 0; b < MSA_BUD_N; b++) {
            rb->coef[b * r->n + j] = (rb->coef[b * r->n + j] + w * rbar_c[b]) / (1 - rbar);
            t += rb->coef[b * r->n + j];
        }
        rb->coef[MSA_BUD_N * r->n + j] = t; /* the fast path's single coefficient */
    }
    /* uncentred terms (NUMERICS.md 4.3), times sum_j w_j |v_jd| */
    grow = (1 + rmax) / (1 - rbar);
    rb->unc_acc = 2 * msa_or_gamma(k.n_acc, k.u) + (k.merge_lse ? 2 * msa_or_gamma(k.K, k.u) : 0);
    rb->unc_resc = k.u + (k.merge_lse ? k.u : 0) + msa_or_gamma(2 * k.K, k.u);
    rb->unc_acc *= grow;
    rb->unc_resc *= grow;
    rb->unc = rb->unc_acc + rb->unc_resc;
    rb->abs_w = 2 * k.alpha / (1 - rbar);
    /* first-order sums of gammas and Rs understate products of (1 + delta) factors by a
     * second-order amount; one more gamma over every rounding counted covers it (4.5) */
    rb->second = 1 + msa_or_gamma(r->D + 2 * k.n_acc + 2 * k.K + SPARE_ROUNDINGS, k.u);
    rb->u_out = msa_or_dtype_unit(od);
    rb->sub_out = msa_or_dtype_subnormal_abs(od);
    rb->u_ref = REF_REL;

    lse_bound(&k, r, rb, rbar, rbar_c, grow, smax - smin, etot_max);
}

double msa_or_elem_bound(const msa_or_row *r, const msa_or_rowbound *rb, int d, double *budget)
{
    double cent[MSA_BUD_N] = {0}, vabs = 0, vmax = 0, od = r->O[d], pre = 0, outb, refb;
    const double *tot = rb->coef + (size_t)MSA_BUD_N * r->n;
    int j, b;
    if (!budget) { /* the fast path: one coefficient per key */
        for (j = 0; j < r->n; j++) {
            double v = r->V[(size_t)j * r->D + d];
            pre += tot[j] * fabs(v - od);
            vabs += rb->w[j] * fabs(v);
            vmax = fmax(vmax, fabs(v));
        }
    } else {
        for (j = 0; j < r->n; j++) {
            double v = r->V[(size_t)j * r->D + d], dv = fabs(v - od);
            for (b = 0; b < MSA_BUD_N; b++) cent[b] += rb->coef[(size_t)b * r->n + j] * dv;
            vabs += rb->w[j] * fabs(v);
            vmax = fmax(vmax, fabs(v));
        }
        for (b = 0; b < MSA_BUD_N; b++) pre += cent[b];
    }
    pre = (pre + rb->unc * vabs + rb->abs_w * r->n * vmax) * rb->second;
    outb = rb->u_out * (fabs(od) + pre) + rb->sub_out;
    refb = rb->u_ref * (fabs(od) + pre + outb);
    if (budget) {
        for (b = 0; b < MSA_BUD_N; b++) budget[b] = cent[b];
        budget[MSA_BUD_ACCUM] += rb->unc_acc * vabs;
        budget[MSA_BUD_RESCALE] += rb->unc_resc * vabs;
        budget[MSA_BUD_PROUND] += rb->abs_w * r->n * vmax;
        for (b = 0; b < MSA_BUD_N; b++) budget[b] *= rb->second;
        budget[MSA_BUD_OUTPUT] += outb;
        budget[MSA_BUD_INPUT] += refb;
    }
    return pre + outb + refb;
}
