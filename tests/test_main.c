/* test_main.c - the CUnit runner.  Each tests/test_NAME.c defines msa_suite_NAME(),
 * which adds its suite; the declarations are weak so a component's tests can land
 * before or after the others.  Exit status is non-zero when any test fails.
 * MSA_TEST_SUITES=a,b runs only those suites (e.g. the valgrind run of reference,oracle). */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUITES(X) X(numfmt) X(rng) X(npz) X(json) X(case) X(fsutil) X(reference) X(oracle) \
    X(cpusim) X(harness) X(cuda) X(fuzz) X(verify) X(traces) X(recallgpu) X(cli) X(badinput)

#define DECL(n) int msa_suite_##n(void) __attribute__((weak));
SUITES(DECL)
#undef DECL

/* 1 when suite `name` is selected by MSA_TEST_SUITES (all when unset). */
static int selected(const char *name)
{
    const char *sel = getenv("MSA_TEST_SUITES");
    if (!sel || !*sel) return 1;
    size_t n = strlen(name);
    for (const char *p = sel; (p = strstr(p, name)); p += n)
        if ((p == sel || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
#define ADD(n)                                                            \
    if (msa_suite_##n && selected(#n) && msa_suite_##n() != 0) {          \
        fprintf(stderr, "could not register suite %s\n", #n);             \
        return 2;                                                         \
    }
    SUITES(ADD)
#undef ADD
    CU_basic_set_mode(argc > 1 ? CU_BRM_VERBOSE : CU_BRM_NORMAL);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (ran == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
