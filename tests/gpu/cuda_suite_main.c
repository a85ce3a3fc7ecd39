/* cuda_suite_main.c - runs only the "cuda" CUnit suite (tests/test_cuda.c), for GPU runs
 * where the other suites (CPU-only, already run in CI) would spend the device lease.
 * Same verdicts as build/test_msa; exit status 1 when a test fails or none ran. */
#include <CUnit/Basic.h>
#include <stdio.h>

int msa_suite_cuda(void);

int main(int argc, char **argv)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    if (msa_suite_cuda() != 0) return 2;
    CU_basic_set_mode(argc > 1 ? CU_BRM_VERBOSE : CU_BRM_NORMAL);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (ran == 0) fprintf(stderr, "no test ran\n");
    return failed || ran == 0 ? 1 : 0;
}
