/* fuzz_trace.c - libFuzzer target: arbitrary bytes as a trace file (container, checksum,
 * meta JSON, per-record cases and recorded arrays). */
#include <stdint.h>
#include <stdlib.h>

#include "../../common/npz.h"
#include "../../traces/traces.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msa_npz z = {0};
    msa_err e = {{0}};
    if (msa_npz_read_mem(data, size, "fuzz-trace.npz", &z, &e) != 0) return 0;
    msa_trace t;
    if (msa_trace_from_npz(&z, "fuzz-trace.npz", &t, &e) == 0) msa_trace_free(&t);
    msa_npz_free(&z);
    return 0;
}
