/* fuzz_npy.c - libFuzzer target: arbitrary bytes as one .npy image (magic, version,
 * header dict, dtype, shape, data length). */
#include <stdint.h>
#include <stdlib.h>

#include "../../common/npz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msa_tensor t;
    msa_err e = {{0}};
    if (msa_npy_parse(data, size, "fuzz.npy", "x", &t, &e) == 0) free(t.data);
    return 0;
}
