/* cpusim.h - the cpu-sim backend and its variants.
 *
 * cpu-sim is a C transcription of the algorithm our CUDA kernels run (KV-outer partials
 * with per-block LSE and a merge, exp2 with a log2e prescale, P rounded to bf16 before
 * P.V, fp32 accumulation, bf16 output), so CI exercises the whole differential pipeline
 * without a GPU.  Its variants are the same code with one deliberate change: BUG variants
 * must be rejected by the oracle, LEGAL variants (with their own declaration) must pass.
 * The fuzzer's mutant plugins and `--kernel cpu-sim:VARIANT` both come from this table. */
#ifndef MSA_CPUSIM_H
#define MSA_CPUSIM_H

#include "msa_abi.h"

typedef struct {
    const char *name;  /* "shared-selection", ... */
    int legal;         /* 1: a legal variant, must pass; 0: a bug, must be killed */
    const char *what;  /* one line: the bug class (MSA.md section 6) or the legal change */
} msa_cpusim_variant_info;

/* All variants, terminated by an entry with name == NULL.  Index 0 is the plain backend
 * ("none"). */
const msa_cpusim_variant_info *msa_cpusim_variants(void);
/* The backend table of a variant (NULL when the name is unknown).  The table's name is
 * "cpu-sim:VARIANT" and its arith is the variant's declaration. */
const msa_backend *msa_cpusim_variant(const char *name);

#endif
