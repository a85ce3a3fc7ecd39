/* ref_dd.h - double-double ("dd") arithmetic for the certified fast path of the exact
 * reference, with the proven relative error bounds it relies on.
 *
 * Algorithms and bounds are those of Joldes, Muller, Popescu, "Tight and rigorous error
 * bounds for basic building blocks of double-word arithmetic", ACM TOMS 44(2), 2017
 * (u = 2^-53, no underflow/overflow):
 *   dd_add   AccurateDWPlusDW (Alg. 6)     rel. error <= 3u^2 + 13u^3   < 2^-104
 *   dd_mul_d DWTimesFP3 (Alg. 9, FMA)      rel. error <= 2u^2           = 2^-105
 *   dd_mul   DWTimesDW3 (Alg. 12, FMA)     rel. error <= 5u^2           < 2^-103.6
 *   dd_div   DWDivDW2 (Alg. 17)            rel. error <= 15u^2 + 56u^3  < 2^-102
 * Underflow is kept away by the callers (see ref_exact.c); this header does not check.
 * Nothing here is used for results directly: every dd result is certified against its
 * error bound before it is returned (Ziv's strategy), otherwise MPFR takes over. */
#ifndef MSA_REF_DD_H
#define MSA_REF_DD_H

#include <math.h>

typedef struct {
    double hi, lo;
} msa_dd;

static inline msa_dd dd_two_sum(double a, double b)
{
    double s = a + b, bb = s - a;
    msa_dd r = {s, (a - (s - bb)) + (b - bb)};
    return r;
}

static inline msa_dd dd_fast_two_sum(double a, double b) /* |a| >= |b| or a == 0 */
{
    double s = a + b;
    msa_dd r = {s, b - (s - a)};
    return r;
}

static inline msa_dd dd_two_prod(double a, double b)
{
    double p = a * b;
    msa_dd r = {p, fma(a, b, -p)};
    return r;
}

static inline msa_dd dd_add(msa_dd x, msa_dd y)
{
    msa_dd s = dd_two_sum(x.hi, y.hi), t = dd_two_sum(x.lo, y.lo);
    msa_dd v = dd_fast_two_sum(s.hi, s.lo + t.hi);
    return dd_fast_two_sum(v.hi, t.lo + v.lo);
}

static inline msa_dd dd_neg(msa_dd x)
{
    msa_dd r = {-x.hi, -x.lo};
    return r;
}

static inline msa_dd dd_mul_d(msa_dd x, double y)
{
    msa_dd c = dd_two_prod(x.hi, y);
    return dd_fast_two_sum(c.hi, fma(x.lo, y, c.lo));
}

static inline msa_dd dd_mul(msa_dd x, msa_dd y)
{
    msa_dd c = dd_two_prod(x.hi, y.hi);
    double tl = fma(x.hi, y.lo, x.lo * y.lo);
    return dd_fast_two_sum(c.hi, c.lo + fma(x.lo, y.hi, tl));
}

static inline msa_dd dd_div(msa_dd x, msa_dd y)
{
    double th = x.hi / y.hi;
    msa_dd r = dd_mul_d(y, th);
    double ph = x.hi - r.hi, dl = x.lo - r.lo;
    return dd_fast_two_sum(th, (ph + dl) / y.hi);
}

/* Exact comparison of two normalised dd values (hi = RN(hi + lo)): since rounding is
 * monotone, hi1 > hi2 implies hi1 + lo1 > hi2 + lo2; equal hi leaves lo to decide. */
static inline int dd_cmp(msa_dd a, msa_dd b)
{
    if (a.hi != b.hi) return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo) return a.lo < b.lo ? -1 : 1;
    return 0;
}

#endif
