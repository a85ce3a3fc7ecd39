# fuzz/mutants.mk - the mutant plugins of `make mutants`: one shared library per cpu-sim
# variant (BUG and LEGAL alike), all built from fuzz/mutants/mutant.c with
# -DMSA_MUTANT_VARIANT="name", each exporting msa_backend_v1 that returns
# msa_cpusim_variant(name).  `msa fuzz mutants --plugins $(BUILD)/mutants` runs the kill
# check over them.  The variant names are read from kernels/cs_internal.h's table, so a
# new variant gets its plugin without editing this file.

MUTANT_OPEN := (
MUTANT_NAMES := $(shell sed -n 's/^ *X[$(MUTANT_OPEN)][A-Z0-9_]*, *"\([a-z0-9-]*\)".*/\1/p' kernels/cs_internal.h)
MUTANTS := $(patsubst %,$(BUILD)/mutants/%.so,$(MUTANT_NAMES))
MUTANT_DEPS := fuzz/mutants/mutant.c kernels/cpusim.h kernels/msa_abi.h

# $(LIB_KERN) and $(LIB_COMMON) are built with -fPIC (CFLAGS_ALL), so they link into a
# shared object; -Wl,--no-undefined proves each plugin is complete on its own.
$(BUILD)/mutants/%.so: $(MUTANT_DEPS) $(LIB_KERN) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -shared -DMSA_MUTANT_VARIANT='"$*"' -o $@ fuzz/mutants/mutant.c \
	    $(LIB_KERN) $(LIB_COMMON) -Wl,--no-undefined $(LDLIBS_ALL)
