/* mutant.c - one mutant plugin: a shared library exporting msa_backend_v1 that returns
 * the cpu-sim variant named by MSA_MUTANT_VARIANT (a compile-time string).  fuzz/mutants.mk
 * builds one such plugin per entry of cpu-sim's variant table from this one file, so the
 * fuzzer can be shown to kill every broken variant (and pass every legal one) through the
 * same plugin path any third-party kernel takes.  It contains no attention code. */
#include "../../kernels/cpusim.h"

#ifndef MSA_MUTANT_VARIANT
#error "build with -DMSA_MUTANT_VARIANT='\"name\"' (fuzz/mutants.mk does)"
#endif

const msa_backend *msa_backend_v1(void);

const msa_backend *msa_backend_v1(void) { return msa_cpusim_variant(MSA_MUTANT_VARIANT); }
