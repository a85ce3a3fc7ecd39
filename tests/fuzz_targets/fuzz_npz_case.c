/* fuzz_npz_case.c - libFuzzer target: arbitrary bytes as a case file (zip container,
 * .npy headers, config JSON, shapes, cu_seqlens, page table, finiteness) through the
 * same calls `msa ref` makes before computing anything. */
#include <stdint.h>
#include <stdlib.h>

#include "../../common/case.h"
#include "../../common/npz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msa_npz z = {0};
    msa_err e = {{0}};
    if (msa_npz_read_mem(data, size, "fuzz.npz", &z, &e) == 0) {
        msa_case c;
        if (msa_case_from_npz(&z, "fuzz.npz", &c, &e) == 0) {
            if (msa_case_validate(&c, 0, &e) == 0) {
                volatile long sum = 0;
                for (int t = 0; t < c.Tq; t++) sum += msa_case_qinfo(&c, t).nvis;
                (void)sum;
            }
            msa_case_free(&c);
        }
        msa_npz_free(&z);
    }
    return 0;
}
