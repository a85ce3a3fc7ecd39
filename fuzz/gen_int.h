/* gen_int.h - private interface between the generator's files (gen_case.c builds the
 * layout and q/k/v, gen_probe.c writes index patterns and probes). */
#ifndef MSA_FUZZ_GEN_INT_H
#define MSA_FUZZ_GEN_INT_H

#include "fuzz_int.h"

/* Stores x rounded to nearest (saturating for e4m3) as element i of a tensor. */
void fz_put(msa_dtype t, void *base, size_t i, double x);
/* An approximately standard normal value, a pure function of (seed, stream, i). */
double fz_normal(uint64_t seed, uint64_t stream, uint64_t i);
/* index_q / index_k in the spec's block pattern. */
void fz_fill_index(const fz_spec *s, uint64_t seed, uint64_t stream, msa_case *c);
/* The spec's probe (dominant keys placed where one masking decision decides the output). */
void fz_apply_probe(const fz_spec *s, uint64_t seed, uint64_t id, msa_case *c);

#endif
