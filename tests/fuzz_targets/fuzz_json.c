/* fuzz_json.c - libFuzzer target: arbitrary bytes as the config JSON. */
#include <stdint.h>
#include <stdlib.h>

#include "../../common/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msa_json j;
    msa_err e = {{0}};
    if (msa_json_parse((const char *)data, size, "fuzz.json", &j, &e) == 0) {
        (void)msa_json_get(&j, "dtype");
        msa_json_free(&j);
    }
    return 0;
}
