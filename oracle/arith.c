/* arith.c - the named arithmetic declarations ("profiles") and the rounding constants the
 * bounds are built from.
 *
 * A profile is a declaration of how a kernel computes (kernels/msa_abi.h msa_arith); the
 * numbers in it are justified in docs/NUMERICS.md section 3.  This file does not judge
 * anything and does not guess a kernel's arithmetic from its results. */
#include "oracle_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* exp error constants (NUMERICS.md 3):
 *  - glibc exp (double): < 1 ulp, so relative 2^-52;
 *  - glibc expf / exp2f (since 2.28): < 1 ulp; we declare 2 ulp = 2^-22 for margin
 *    against other libms;
 *  - PTX ex2.approx.ftz.f32: the PTX ISA states a maximum error of 2 ulp over the full
 *    range; declared 2^-21 (4 ulp) because the ISA text is the only source. */
#define EXP_ERR_F64 0x1p-52
#define EXP_ERR_LIBM_F32 0x1p-22
#define EXP_ERR_EX2_APPROX 0x1p-21
/* radix-keys default: drop the low 16 bits of the 32-bit ordered key (sign, exponent and
 * 7 fraction bits stay: a bf16-sized key, as in two-pass radix top-k). */
#define RADIX_DEFAULT_DROP 16
/* Fasi, Higham, Mikaitis, Pranesh (2021), "Numerical behavior of NVIDIA tensor cores":
 * bf16/fp16 products are exact and accumulated in fp32 with truncation, so the relative
 * error per addition is below 2^-23 rather than 2^-24. */
#define TENSOR_CORE_ACCUM_BITS 23
#define RADIX_MAX_DROP 22

double msa_or_unit(int bits) { return ldexp(1.0, -bits); }

double msa_or_gamma(double n, double u)
{
    double nu = n * u;
    return nu >= 1.0 ? INFINITY : nu / (1.0 - nu);
}

double msa_or_dtype_unit(msa_dtype t)
{
    switch (t) {
    case MSA_DT_BF16: return 0x1p-8;
    case MSA_DT_FP16: return 0x1p-11;
    case MSA_DT_FP32: return 0x1p-24;
    case MSA_DT_E4M3: return 0x1p-4;
    case MSA_DT_E5M2: return 0x1p-3;
    default: return 0.0; /* FP64: no rounding declared */
    }
}

/* Half the spacing of the subnormal range (the absolute error of RNE there). */
double msa_or_dtype_subnormal_abs(msa_dtype t)
{
    switch (t) {
    case MSA_DT_BF16: return 0x1p-134;
    case MSA_DT_FP16: return 0x1p-25;
    case MSA_DT_FP32: return 0x1p-150;
    case MSA_DT_E4M3: return 0x1p-10;
    case MSA_DT_E5M2: return 0x1p-17;
    default: return 0x1p-1074; /* FP64: one subnormal spacing */
    }
}

msa_dtype msa_or_p_dtype(const msa_arith *a, const msa_case *c)
{
    if (a->p_dtype != MSA_DT_INVALID) return a->p_dtype;
    return c->dtype == MSA_DT_FP16 ? MSA_DT_FP16 : MSA_DT_BF16;
}

msa_dtype msa_or_out_dtype(const msa_arith *a, const msa_case *c)
{
    if (a->out_dtype != MSA_DT_INVALID) return a->out_dtype;
    if (c->dtype == MSA_DT_BF16 || c->dtype == MSA_DT_FP16) return c->dtype;
    return MSA_DT_FP32;
}

static const char *const PROFILE_NAMES[] = {
    "exact-fp64", "fp32", "bf16-out", "bf16-p-bf16-out", "cpu-sim", "cuda",
    "fp16-keys", "q16-keys", "radix-keys", "radix-keys:N", NULL};

const char *const *msa_arith_profile_names(void) { return PROFILE_NAMES; }

static void fp32_base(msa_arith *a)
{
    memset(a, 0, sizeof *a);
    a->out_dtype = MSA_DT_FP32;
    a->accum_bits = 24;
    a->p_dtype = MSA_DT_FP32;
    a->exp_kind = MSA_EXP_EXACT;
    a->exp_rel_err = EXP_ERR_LIBM_F32;
    a->merge = MSA_MERGE_NONE;
    a->key_kind = MSA_KEY_FP32;
    a->order = MSA_ORDER_ASCENDING;
    a->index_accum_bits = 24;
}

/* The kernel design (cpu-sim and CUDA, docs/ABI.md): KV-outer partials per block, exp2
 * with a log2e prescale, P rounded to the input's 16-bit type (fp16 for fp16 inputs,
 * bf16 otherwise), LSE merge, out by input dtype. */
static void design(msa_arith *a, int cuda)
{
    fp32_base(a);
    a->out_dtype = MSA_DT_INVALID; /* bf16 for bf16 inputs, fp16 for fp16, else fp32 */
    a->p_dtype = MSA_DT_INVALID;   /* fp16 for fp16 inputs, else bf16 */
    a->exp_kind = cuda ? MSA_EXP_EX2_APPROX : MSA_EXP_EXP2;
    if (cuda) /* tensor-core fp32 accumulation truncates: unit roundoff 2^-23 (NUMERICS.md 3) */
        a->accum_bits = a->index_accum_bits = TENSOR_CORE_ACCUM_BITS;
    a->exp_rel_err = cuda ? EXP_ERR_EX2_APPROX : EXP_ERR_LIBM_F32;
    a->merge = MSA_MERGE_LSE;
}

int msa_arith_profile(const char *name, msa_arith *a, msa_err *e)
{
    if (!name || !a) return msa_fail(e, MSA_EINPUT, "arith: profile: missing name");
    if (!strcmp(name, "exact-fp64")) {
        fp32_base(a);
        a->out_dtype = MSA_DT_FP64;
        a->accum_bits = 53;
        a->p_dtype = MSA_DT_FP64;
        a->exp_rel_err = EXP_ERR_F64;
        a->index_accum_bits = 53;
    } else if (!strcmp(name, "fp32")) {
        fp32_base(a);
    } else if (!strcmp(name, "bf16-out")) {
        fp32_base(a);
        a->out_dtype = MSA_DT_BF16;
    } else if (!strcmp(name, "bf16-p-bf16-out")) {
        fp32_base(a);
        a->out_dtype = MSA_DT_BF16;
        a->p_dtype = MSA_DT_BF16;
    } else if (!strcmp(name, "cpu-sim") || !strcmp(name, "cuda")) {
        design(a, !strcmp(name, "cuda"));
    } else if (!strcmp(name, "fp16-keys") || !strcmp(name, "q16-keys")) {
        design(a, 0);
        a->key_kind = name[0] == 'f' ? MSA_KEY_FP16 : MSA_KEY_Q16ROW;
    } else if (!strncmp(name, "radix-keys", 10) && (name[10] == 0 || name[10] == ':')) {
        design(a, 0);
        a->key_kind = MSA_KEY_RADIX;
        a->key_drop_bits = RADIX_DEFAULT_DROP;
        if (name[10] == ':') {
            char *end = NULL;
            long b = strtol(name + 11, &end, 10);
            if (end == name + 11 || *end || b < 0 || b > RADIX_MAX_DROP)
                return msa_fail(e, MSA_EINPUT, "arith: %s: dropped bits must be 0..%d", name,
                                RADIX_MAX_DROP);
            a->key_drop_bits = (int)b;
        }
    } else {
        return msa_fail(e, MSA_EINPUT,
                        "arith: %s: unknown profile (exact-fp64, fp32, bf16-out, "
                        "bf16-p-bf16-out, cpu-sim, cuda, fp16-keys, q16-keys, radix-keys[:N])",
                        name);
    }
    return MSA_OK;
}

const char *msa_disposition_name(msa_disposition d)
{
    switch (d) {
    case MSA_V_PASSED: return "Passed";
    case MSA_V_INCORRECT: return "Incorrect";
    case MSA_V_NOTSUPPORTED: return "NotSupported";
    case MSA_V_NOTVERIFIED: return "NotVerified";
    case MSA_V_CRASHED: return "Crashed";
    case MSA_V_TIMEOUT: return "Timeout";
    }
    return "Unknown";
}

int msa_or_check_case(const msa_case *c, msa_err *e)
{
    if (!c || c->Hkv < 1 || c->Hq < 1 || c->Hq % c->Hkv || c->HI != c->Hkv || c->D < 1 ||
        c->DI < 1 || c->block_size < 1 || c->topk < 1 || c->Tq < 0 || !c->cu_q || !c->cu_k)
        return msa_fail(e, MSA_EINPUT, "oracle: case: inconsistent shape (validate it first)");
    return MSA_OK;
}

/* ---- verdict accumulation: counts, worst ratio, log-histogram quantiles ---- */
void msa_or_acc_init(msa_or_acc *acc, msa_verdict *v, const char *stage)
{
    memset(acc, 0, sizeof *acc);
    memset(v, 0, sizeof *v);
    acc->v = v;
    v->disp = MSA_V_PASSED;
    strncpy(v->stage, stage, sizeof v->stage - 1);
}

void msa_or_acc_ratio(msa_or_acc *acc, double ratio)
{
    int bin;
    acc->nratio++;
    if (ratio == 0) {
        acc->hist[0]++;
        return;
    }
    if (!(ratio < 0x1p16)) { /* also NaN */
        acc->hist[MSA_OR_HIST_BINS + 1]++;
        return;
    }
    bin = (int)floor((log2(ratio) + 64.0) * 8.0);
    if (bin < 0) bin = 0;
    acc->hist[1 + (bin < MSA_OR_HIST_BINS ? bin : MSA_OR_HIST_BINS - 1)]++;
}

/* Upper edge of the histogram bin holding quantile q: within 9% above the true value. */
static double hist_quantile(const msa_or_acc *acc, double q)
{
    long target = (long)ceil(q * (double)acc->nratio), seen = 0;
    int i;
    if (acc->nratio == 0) return 0;
    if (target < 1) target = 1;
    for (i = 0; i < MSA_OR_HIST_BINS + 2; i++) {
        seen += acc->hist[i];
        if (seen >= target) {
            if (i == 0) return 0;
            if (i == MSA_OR_HIST_BINS + 1) return INFINITY;
            return exp2((double)i / 8.0 - 64.0);
        }
    }
    return INFINITY;
}

void msa_or_acc_finish(msa_or_acc *acc)
{
    acc->v->ratio_p50 = hist_quantile(acc, 0.50);
    acc->v->ratio_p99 = hist_quantile(acc, 0.99);
}
