/* verify_formats.c - the number-format conformance check that `msa verify` runs: every
 * bf16/fp16/e4m3/e5m2 code decodes to the value MPFR builds from its bit fields, encoding
 * round-trips, and every midpoint between neighbours rounds to the even code.  The CUnit
 * suite (tests/test_numfmt.c) checks more; this is the release-gate copy that needs no
 * test harness, written independently of it. */
#include <math.h>
#include <mpfr.h>
#include <stdio.h>
#include <string.h>

#include "../common/numfmt.h"
#include "verify.h"

typedef struct {
    const char *name;
    int bits, ebits, mbits; /* total, exponent, explicit mantissa */
    int ocp_e4m3;           /* no infinities; only S.1111.111 is NaN */
    double (*decode)(unsigned code);
    unsigned (*encode)(double x);
} fmt_desc;

static double dec_bf16(unsigned c) { return msa_bf16_to_double((uint16_t)c); }
static double dec_fp16(unsigned c) { return msa_fp16_to_double((uint16_t)c); }
static double dec_e4m3(unsigned c) { return msa_e4m3_to_double((uint8_t)c); }
static double dec_e5m2(unsigned c) { return msa_e5m2_to_double((uint8_t)c); }
static unsigned enc_bf16(double x) { return msa_double_to_bf16(x); }
static unsigned enc_fp16(double x) { return msa_double_to_fp16(x); }
static unsigned enc_e4m3(double x) { return msa_double_to_e4m3(x, 0); }
static unsigned enc_e5m2(double x) { return msa_double_to_e5m2(x, 0); }

static const fmt_desc fmts[] = {
    {"bf16", 16, 8, 7, 0, dec_bf16, enc_bf16},
    {"fp16", 16, 5, 10, 0, dec_fp16, enc_fp16},
    {"e4m3", 8, 4, 3, 1, dec_e4m3, enc_e4m3},
    {"e5m2", 8, 5, 2, 0, dec_e5m2, enc_e5m2},
};

/* Value of a code from its fields, in MPFR (exact); returns 0 finite, 1 inf, 2 NaN. */
static int field_value(const fmt_desc *f, unsigned code, mpfr_t v)
{
    unsigned s = code >> (f->bits - 1), e = (code >> f->mbits) & ((1u << f->ebits) - 1);
    unsigned m = code & ((1u << f->mbits) - 1), emax = (1u << f->ebits) - 1;
    int bias = (1 << (f->ebits - 1)) - 1;
    if (f->ocp_e4m3) {
        if (e == emax && m == (1u << f->mbits) - 1) return 2;
    } else if (e == emax) {
        return m ? 2 : 1;
    }
    if (e == 0) mpfr_set_ui_2exp(v, m, 1 - bias - f->mbits, MPFR_RNDN);
    else mpfr_set_ui_2exp(v, m + (1u << f->mbits), (int)e - bias - f->mbits, MPFR_RNDN);
    if (s) mpfr_neg(v, v, MPFR_RNDN);
    return 0;
}

static int check_format(const fmt_desc *f, char *why, size_t n, long *checked)
{
    mpfr_t v, w;
    mpfr_inits2(64, v, w, (mpfr_ptr)0);
    unsigned ncodes = 1u << f->bits;
    int bad = 0;
    for (unsigned c = 0; c < ncodes && !bad; c++) {
        int kind = field_value(f, c, v);
        double d = f->decode(c);
        (*checked)++;
        if (kind == 2) {
            if (!isnan(d)) bad = snprintf(why, n, "%s code 0x%x: expected NaN, decoded %g", f->name, c, d);
            continue;
        }
        double want = kind == 1 ? ((c >> (f->bits - 1)) ? -INFINITY : INFINITY) : mpfr_get_d(v, MPFR_RNDN);
        if (d != want || signbit(d) != signbit(want))
            bad = snprintf(why, n, "%s code 0x%x: decoded %.17g, MPFR %.17g", f->name, c, d, want);
        else if (f->encode(d) != c)
            bad = snprintf(why, n, "%s code 0x%x: encode(decode) = 0x%x", f->name, c, f->encode(d));
        /* midpoint to the next code of the same sign (finite neighbours only) */
        unsigned nx = c + 1;
        if (bad || kind || (nx >> (f->bits - 1)) != (c >> (f->bits - 1)) || field_value(f, nx, w)) continue;
        mpfr_add(w, w, v, MPFR_RNDN); /* exact at 64 bits */
        mpfr_div_2ui(w, w, 1, MPFR_RNDN);
        double mid = mpfr_get_d(w, MPFR_RNDN);
        unsigned even = (c & 1) ? nx : c;
        (*checked)++;
        if (f->encode(mid) != even)
            bad = snprintf(why, n, "%s midpoint %.17g between 0x%x and 0x%x encoded 0x%x (RNE wants 0x%x)",
                           f->name, mid, c, nx, f->encode(mid), even);
    }
    mpfr_clears(v, w, (mpfr_ptr)0);
    return bad ? -1 : 0;
}

void msa_verify_formats(msa_vctx *x, msa_vcheck *c)
{
    long checked = 0;
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        if (check_format(&fmts[i], c->detail, sizeof c->detail, &checked)) {
            c->disp = MSA_V_INCORRECT;
            snprintf(c->summary, sizeof c->summary, "%s conformance failed", fmts[i].name);
            return;
        }
    }
    c->disp = MSA_V_PASSED;
    snprintf(c->summary, sizeof c->summary,
             "all codes of bf16, fp16, e4m3, e5m2 decode as MPFR builds them; %ld values and midpoints checked", checked);
    (void)x;
}
