# cuda.mk - extra targets of the CUDA backend (included by the main Makefile).
#
#   $(BUILD)/gpu_check       private GPU driver (tests/gpu/gpu_check.c): double-precision CPU
#                            comparison, graph replay, poison and mutant checks; dlopens the plugin
#   $(BUILD)/msa_bench_gpu   GPU benchmark (bench/bench_gpu.cu): MSA prefill/decode, dense, ceilings
# Both only when nvcc exists; neither is part of `make all`.
# The plugin's sources are every kernels/cuda/*.cu (CUDA_SRC in the Makefile): backend.cu,
# index.cu, sparse.cu, dense.cu, gpuref.cu and decode.cu (the decode path, issue 8).

ifneq ($(NVCC),)
$(BUILD)/gpu_check: tests/gpu/gpu_check.c kernels/msa_abi.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) -o $@ $< -ldl -lm

$(BUILD)/msa_bench_gpu: bench/bench_gpu.cu kernels/msa_abi.h
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -Xcompiler -Wall -gencode=arch=compute_90a,code=sm_90a \
	  -gencode=arch=compute_90,code=sm_90 -o $@ $< -lcublas -ldl
endif

# only the "cuda" CUnit suite (GPU runs): tests/test_cuda.c + tests/gpu/cuda_suite_main.c
$(BUILD)/test_cuda_only: $(call obj,tests/test_cuda.c tests/gpu/cuda_suite_main.c) $(LIBS)
	$(CC) $(CFLAGS_ALL) -o $@ $(call obj,tests/test_cuda.c tests/gpu/cuda_suite_main.c) $(LIBS) $(CUNIT_A) $(LDLIBS_ALL)
