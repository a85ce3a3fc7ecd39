/* numfmt.h - the low-precision number formats of MSA kernels: bf16, fp16, fp8 e4m3 (OCP)
 * and fp8 e5m2.  Decoding is exact (every code is a double); encoding from double or
 * float rounds to nearest, ties to even.  No lookup tables that hide the rules: the
 * exhaustive tests compare against MPFR.
 *
 * e4m3 follows the OCP 8-bit spec: no infinities, NaN is 0x7F/0xFF, max finite 448.
 * Saturating encode clamps finite overflow to +-448 (and +-inf to +-448); non-saturating
 * encode turns overflow into NaN (0x7F/0xFF with the input's sign, as NVIDIA's
 * conversion does).  A NaN input encodes to the sign-less canonical NaN: bf16 0x7FC0,
 * fp16 0x7E00, e4m3 0x7F, e5m2 0x7E.  e5m2 is IEEE-like (inf 0x7C/0xFC, max finite 57344);
 * saturating clamps to +-57344, non-saturating overflows to +-inf. */
#ifndef MSA_NUMFMT_H
#define MSA_NUMFMT_H

#include <stdint.h>

double msa_bf16_to_double(uint16_t h);
double msa_fp16_to_double(uint16_t h);
double msa_e4m3_to_double(uint8_t b);
double msa_e5m2_to_double(uint8_t b);
float msa_bf16_to_float(uint16_t h);
float msa_fp16_to_float(uint16_t h);

/* Round-to-nearest-even encoders from double (one rounding, no double rounding). */
uint16_t msa_double_to_bf16(double x);
uint16_t msa_double_to_fp16(double x);
uint8_t msa_double_to_e4m3(double x, int saturate);
uint8_t msa_double_to_e5m2(double x, int saturate);
/* Round a double to the nearest float / bf16 / fp16 value, returned as double. */
double msa_round_fp32(double x);
double msa_round_bf16(double x);
double msa_round_fp16(double x);

#define MSA_E4M3_MAX 448.0
#define MSA_E5M2_MAX 57344.0

#endif
