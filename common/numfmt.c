/* numfmt.c - exact decoding and single-rounding RNE encoding of bf16, fp16, fp8 e4m3 (OCP)
 * and fp8 e5m2, plus rounding of a double to fp32/bf16/fp16.
 *
 * One generic binary-format description drives every conversion, so the rounding rule is
 * written once: the double's exact significand is shifted onto the target's quantum with
 * integer arithmetic and rounded to nearest, ties to even, in a single step (never via
 * float, which would round twice).  Subnormals fall out of the same formula because the
 * quantum below the normal range is the fixed 2^(emin-M).
 *
 * Special values (documented choices):
 *   - NaN input encodes to the sign-less canonical quiet NaN: bf16 0x7FC0, fp16 0x7E00,
 *     e4m3 0x7F, e5m2 0x7E (the NaN payload and sign of the double are dropped).
 *   - Overflow: rounding is first done with an unbounded exponent; if the result exceeds
 *     the largest finite value the format overflows.  bf16/fp16 then give +-inf.  e4m3 and
 *     e5m2 give +-max when saturating; otherwise e5m2 gives +-inf and e4m3 gives the NaN code
 *     carrying x's sign (0x7F / 0xFF), as NVIDIA's __nv_cvt_double_to_fp8 does.  Saturating
 *     fp8 encoders also clamp +-inf to +-max; non-saturating e4m3 maps +-inf to 0x7F/0xFF.
 *   - Underflow keeps the sign: tiny negative values round to -0.
 * It deliberately does not model other rounding modes or stochastic rounding. */
#include "numfmt.h"

#include <math.h>
#include <string.h>

/* A sign-magnitude binary format: M stored fraction bits, minimum normal exponent emin
 * (value 1.0 x 2^emin has exponent field 1).  Codes are the magnitude bits (sign added
 * separately at bit sign_shift). */
typedef struct {
    int M;             /* stored fraction bits (precision M+1) */
    int emin;          /* exponent of the smallest normal: 1 - bias */
    int sign_shift;    /* bit position of the sign */
    uint64_t maxcode;  /* magnitude code of the largest finite value */
    uint64_t infcode;  /* magnitude code of infinity, 0 when the format has none */
    uint64_t nancode;  /* canonical NaN (magnitude bits only: the sign-less form) */
    int ieee_specials; /* 1: all-ones exponent field is inf/NaN (IEEE); 0: OCP e4m3 */
} fmt_desc;

/* Parameters from IEEE 754-2008 (binary16, binary32), the bfloat16 definition (binary32
 * with 7 fraction bits) and the OCP 8-bit floating point spec v1.0 (E4M3: bias 7, only
 * S.1111.111 is NaN; E5M2: bias 15, IEEE specials). */
static const fmt_desc FMT_BF16 = {7, -126, 15, 0x7F7F, 0x7F80, 0x7FC0, 1};
static const fmt_desc FMT_FP16 = {10, -14, 15, 0x7BFF, 0x7C00, 0x7E00, 1};
static const fmt_desc FMT_FP32 = {23, -126, 31, 0x7F7FFFFF, 0x7F800000, 0x7FC00000, 1};
static const fmt_desc FMT_E4M3 = {3, -6, 7, 0x7E, 0, 0x7F, 0};
static const fmt_desc FMT_E5M2 = {2, -14, 7, 0x7B, 0x7C, 0x7E, 1};

/* 2^E for E in the double's normal range (every exponent the formats above can need:
 * -149 .. 127), built from its bits: exact, and much cheaper than ldexp on hot paths. */
static double pow2(int E)
{
    uint64_t bits = (uint64_t)(E + 1023) << 52;
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static double decode(const fmt_desc *f, uint64_t code)
{
    int neg = (int)((code >> f->sign_shift) & 1);
    uint64_t mag = code & ((UINT64_C(1) << f->sign_shift) - 1);
    uint64_t frac = mag & ((UINT64_C(1) << f->M) - 1);
    int ef = (int)(mag >> f->M);
    double v;
    if (f->ieee_specials && f->infcode && mag >= f->infcode)
        return frac ? NAN : (neg ? -INFINITY : INFINITY);
    if (!f->ieee_specials && mag == f->nancode) return NAN;
    if (ef == 0) /* subnormal or zero: frac x 2^(emin - M) */
        v = (double)frac * pow2(f->emin - f->M);
    else
        v = (double)(frac | (UINT64_C(1) << f->M)) * pow2(f->emin - f->M + ef - 1);
    return neg ? -v : v;
}

/* Rounds a finite nonzero |x| = m * 2^e (m < 2^53) to the format with an unbounded
 * exponent and returns the magnitude code (which may exceed maxcode: overflow). */
static uint64_t round_mag(const fmt_desc *f, uint64_t m, int e)
{
    int top = 63 - __builtin_clzll(m) + e; /* exponent of the leading bit of |x| */
    int q = (top > f->emin ? top : f->emin) - f->M; /* quantum exponent at |x| */
    int qmin = f->emin - f->M;
    int shift = q - e; /* >= 52 - M > 0: the format is narrower than a double */
    uint64_t n;
    if (shift >= 64) {
        n = 0; /* |x| < 2^53 * 2^-64 quanta: below half a quantum */
    } else {
        uint64_t rem = m & ((UINT64_C(1) << shift) - 1);
        uint64_t half = UINT64_C(1) << (shift - 1);
        n = m >> shift;
        if (rem > half || (rem == half && (n & 1))) n++;
    }
    /* n x 2^q: in the lowest binade the code is n itself (subnormals, and the carry into
     * exponent field 1 works out); each binade up adds 1 to the exponent field. */
    return ((uint64_t)(q - qmin) << f->M) + n;
}

static uint64_t encode(const fmt_desc *f, double x, int saturate)
{
    uint64_t bits, sign, m, mag;
    memcpy(&bits, &x, sizeof bits);
    sign = (bits >> 63) << f->sign_shift;
    int be = (int)((bits >> 52) & 0x7FF);
    uint64_t frac = bits & ((UINT64_C(1) << 52) - 1);
    if (be == 0x7FF) {
        if (frac) return f->nancode;
        if (saturate) return sign | f->maxcode;
        return sign | (f->infcode ? f->infcode : f->nancode);
    }
    if (be == 0 && frac == 0) return sign; /* signed zero */
    m = be ? (frac | (UINT64_C(1) << 52)) : frac;
    mag = round_mag(f, m, (be ? be : 1) - 1075);
    if (mag > f->maxcode) {
        if (saturate) return sign | f->maxcode;
        return sign | (f->infcode ? f->infcode : f->nancode);
    }
    return sign | mag;
}

/* bf16 is the top half of a binary32: widening the bits is exact (and checked against
 * MPFR for all 65,536 codes like the generic decoder); it is the hot path of the
 * reference and the oracle. */
double msa_bf16_to_double(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return (double)f;
}
double msa_fp16_to_double(uint16_t h) { return decode(&FMT_FP16, h); }
double msa_e4m3_to_double(uint8_t b) { return decode(&FMT_E4M3, b); }
double msa_e5m2_to_double(uint8_t b) { return decode(&FMT_E5M2, b); }
/* Every bf16 and fp16 value is a float, so the conversion from double is exact. */
float msa_bf16_to_float(uint16_t h) { return (float)msa_bf16_to_double(h); }
float msa_fp16_to_float(uint16_t h) { return (float)decode(&FMT_FP16, h); }

uint16_t msa_double_to_bf16(double x) { return (uint16_t)encode(&FMT_BF16, x, 0); }
uint16_t msa_double_to_fp16(double x) { return (uint16_t)encode(&FMT_FP16, x, 0); }
uint8_t msa_double_to_e4m3(double x, int saturate) { return (uint8_t)encode(&FMT_E4M3, x, saturate); }
uint8_t msa_double_to_e5m2(double x, int saturate) { return (uint8_t)encode(&FMT_E5M2, x, saturate); }

double msa_round_fp32(double x) { return decode(&FMT_FP32, encode(&FMT_FP32, x, 0)); }
double msa_round_bf16(double x) { return decode(&FMT_BF16, encode(&FMT_BF16, x, 0)); }
double msa_round_fp16(double x) { return decode(&FMT_FP16, encode(&FMT_FP16, x, 0)); }
