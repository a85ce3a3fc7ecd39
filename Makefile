# Makefile - builds the msa command, its libraries, the CUDA backend plugin and the tests.
#
#   make            build/msa, build/lib*.a, build/libmsa_cuda.so (when nvcc exists)
#   make test       CUnit suite (plain, then ASan+UBSan), refcheck, 60 s fuzz, parser fuzzers
#   make verify     the release gate, quick tier, writes REPORT.md
#   make deps       installs missing Debian packages (MPFR, GMP, CUnit, zlib)
#   make mutants    deliberately broken and legal variants of cpu-sim (plugins)
#   make bench      reference and kernel benchmarks
#
# Messages are truncated deliberately (fixed buffers), hence -Wno-format-truncation.
# Variables: CC (gcc or clang), BUILD (output folder), SAN=1 (sanitizers), NVCC.

CC      ?= cc
BUILD   ?= build
NVCC    ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
CUDA_HOME ?= /usr/local/cuda
TIER    ?= quick
REPORT  ?= REPORT.md

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wvla
WARN    += $(if $(findstring clang,$(shell $(CC) --version 2>/dev/null)),,-Wno-format-truncation)
CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
OPT     ?= -O2 -g
CFLAGS_ALL := $(CSTD) $(WARN) $(OPT) -fPIC -pthread $(CFLAGS)
ifeq ($(SAN),1)
CFLAGS_ALL += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
endif
LDLIBS_ALL := -lmpfr -lgmp -lz -lm -ldl -pthread $(LDSAN)

COMMON_SRC := $(wildcard common/*.c)
REF_SRC    := $(wildcard reference/*.c)
ORACLE_SRC := $(wildcard oracle/*.c)
KERN_SRC   := $(wildcard kernels/*.c)
FUZZ_SRC   := $(wildcard fuzz/*.c)
TRACE_SRC  := $(wildcard traces/*.c)
CLI_SRC    := $(wildcard cli/*.c)
BENCH_SRC  := $(wildcard bench/*.c)
TEST_SRC   := $(wildcard tests/*.c)
CUDA_SRC   := $(wildcard kernels/cuda/*.cu)
MUTANT_SRC := $(wildcard fuzz/mutants/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_COMMON := $(BUILD)/libmsa_common.a
LIB_REF    := $(BUILD)/libmsa_ref.a
LIB_ORACLE := $(BUILD)/libmsa_oracle.a
LIB_KERN   := $(BUILD)/libmsa_kernels.a
LIB_FUZZ   := $(BUILD)/libmsa_fuzz.a
LIB_TRACE  := $(BUILD)/libmsa_traces.a
# link order: users before providers
LIBS := $(LIB_TRACE) $(LIB_FUZZ) $(LIB_ORACLE) $(LIB_REF) $(LIB_KERN) $(LIB_COMMON)

ifneq ($(NVCC),)
CUDA_LIB := $(BUILD)/libmsa_cuda.so
endif

# component fragments (extra targets owned by the component's authors)
-include $(wildcard kernels/cuda/cuda.mk fuzz/fuzz.mk fuzz/mutants.mk traces/traces.mk bench/bench.mk)

.PHONY: all test verify deps mutants bench clean check-deps test-asan test-normal lf-libs fuzz-parsers test-extra valgrind

all: check-deps $(BUILD)/msa $(CUDA_LIB)

# check-deps first (order-only): with -j the headers it installs must exist before any compile
$(BUILD)/obj/%.o: %.c | check-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIB_COMMON): $(call obj,$(COMMON_SRC))
$(LIB_REF): $(call obj,$(REF_SRC))
$(LIB_ORACLE): $(call obj,$(ORACLE_SRC))
$(LIB_KERN): $(call obj,$(KERN_SRC))
$(LIB_FUZZ): $(call obj,$(FUZZ_SRC))
$(LIB_TRACE): $(call obj,$(TRACE_SRC))
$(BUILD)/%.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/msa: $(call obj,$(CLI_SRC)) $(LIBS)
	$(CC) $(CFLAGS_ALL) -rdynamic -o $@ $(call obj,$(CLI_SRC)) $(LIBS) $(LDLIBS_ALL)

# CUnit is linked statically so the test binary runs on the GPU machine, which lacks it.
# Looked up when the link runs (deferred '='), after check-deps may have installed it.
CUNIT_A = $(firstword $(shell ls /usr/lib/x86_64-linux-gnu/libcunit.a /usr/lib/aarch64-linux-gnu/libcunit.a /usr/lib/libcunit.a 2>/dev/null))
$(BUILD)/test_msa: $(call obj,$(TEST_SRC)) $(LIBS)
	$(CC) $(CFLAGS_ALL) -rdynamic -o $@ $(call obj,$(TEST_SRC)) $(LIBS) $(CUNIT_A) $(LDLIBS_ALL)

$(BUILD)/bench_ref: $(call obj,$(filter bench/bench_ref%.c,$(BENCH_SRC))) $(LIBS)
	$(CC) $(CFLAGS_ALL) -o $@ $(filter %.o,$^) $(LIBS) $(LDLIBS_ALL)

# ---- CUDA backend: a plugin like any other, so CPU-only binaries never need libcudart.
NVFLAGS := -O3 -std=c++17 -Xcompiler -fPIC -Xcompiler -Wall -Werror all-warnings \
  -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=sm_90 -lineinfo
$(BUILD)/obj/kernels/cuda/%.o: kernels/cuda/%.cu $(wildcard kernels/cuda/*.cuh) kernels/msa_abi.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
$(BUILD)/libmsa_cuda.so: $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRC))
	$(NVCC) -shared -o $@ $^ -lcublas -cudart static

# ---- mutants: fuzz/mutants.mk (owned by the fuzzer) defines MUTANTS, the plugins that
# `make mutants` builds from cpu-sim's variant table.
MUTANTS ?=
mutants: $(LIB_KERN) $(LIB_COMMON) $(MUTANTS)

# ---- dependencies from Debian's packages, installed when missing
check-deps:
	@sh tools/deps.sh

deps:
	@sh tools/deps.sh

test: check-deps
	$(MAKE) --no-print-directory test-normal
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-extra

# The independent reference check (Python stdlib, bit-for-bit), a one-minute fuzz
# campaign on cpu-sim, and a short bounded run of every parser fuzzer.
test-extra: $(BUILD)/msa
	python3 tools/refcheck.py --msa $(BUILD)/msa --cases 120
	$(BUILD)/msa fuzz --kernel cpu-sim --budget 60 --junit $(BUILD)/fuzz-junit.xml
	$(MAKE) --no-print-directory fuzz-parsers FUZZ_SECONDS=10

test-normal: $(BUILD)/test_msa $(BUILD)/msa mutants $(CUDA_LIB)
	$(BUILD)/test_msa

test-asan:
	$(MAKE) --no-print-directory BUILD=build/asan SAN=1 build/asan/test_msa build/asan/msa
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 MSA_TEST_SAN=1 build/asan/test_msa

# valgrind memcheck of the reference and oracle suites (slow: minutes; not part of make test)
valgrind: $(BUILD)/test_msa
	MSA_TEST_SUITES=reference,oracle valgrind --error-exitcode=1 --leak-check=full \
	  --errors-for-leak-kinds=definite $(BUILD)/test_msa

verify: all mutants
	$(BUILD)/msa verify --tier $(TIER) --report $(REPORT) --junit $(BUILD)/verify-junit.xml

# ---- libFuzzer targets for every parser (tests/fuzz_targets), clang only
LF_BUILD   := build/libfuzzer
LF_FLAGS   := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
LF_TARGETS := $(patsubst tests/fuzz_targets/%.c,$(LF_BUILD)/%,$(wildcard tests/fuzz_targets/fuzz_*.c))
FUZZ_SECONDS ?= 10
lf-libs:
	$(MAKE) --no-print-directory BUILD=$(LF_BUILD) CC=clang OPT="-O1 -g" CFLAGS="$(LF_FLAGS)" \
	  $(LF_BUILD)/libmsa_traces.a $(LF_BUILD)/libmsa_oracle.a $(LF_BUILD)/libmsa_ref.a \
	  $(LF_BUILD)/libmsa_kernels.a $(LF_BUILD)/libmsa_common.a
$(LF_BUILD)/fuzz_%: tests/fuzz_targets/fuzz_%.c lf-libs
	clang $(CSTD) -Wall -Wextra -Werror -Wshadow -Wvla -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< \
	  $(LF_BUILD)/libmsa_traces.a $(LF_BUILD)/libmsa_oracle.a $(LF_BUILD)/libmsa_ref.a \
	  $(LF_BUILD)/libmsa_kernels.a $(LF_BUILD)/libmsa_common.a -lmpfr -lgmp -lz -lm -ldl -pthread
fuzz-parsers: check-deps $(BUILD)/msa $(LF_TARGETS)
	sh tools/fuzz_parsers.sh $(FUZZ_SECONDS) $(BUILD)/msa

bench: all $(BUILD)/bench_ref
	$(BUILD)/bench_ref

clean:
	rm -rf build


-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
