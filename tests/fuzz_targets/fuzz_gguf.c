/* fuzz_gguf.c - libFuzzer target: arbitrary bytes as a GGUF model file (header, key/value
 * pairs, tensor table, offsets, alignment). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../traces/traces.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *img = malloc(size ? size : 1);
    if (!img) return 0;
    memcpy(img, data, size);
    msa_gguf g;
    msa_err e = {{0}};
    if (msa_gguf_parse(img, size, "fuzz.gguf", &g, &e) == 0) msa_gguf_free(&g); /* takes img */
    return 0;
}
