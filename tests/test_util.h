/* test_util.h - small helpers the CUnit suites share: a per-suite temporary folder made on
 * first use and removed at suite clean-up, and whether python3 + tools/npz_tool.py (the
 * numpy-format writer used for interoperability fixtures) can run here. */
#ifndef MSA_TEST_UTIL_H
#define MSA_TEST_UTIL_H

typedef struct {
    const char *tag; /* folder name prefix, e.g. "msa_npz" */
    char dir[64];
    char path[160];
} msa_test_tmp;

/* TMPDIR/TAG_XXXXXX/name (the folder is created on first use); the returned buffer is
 * reused by the next call. */
const char *msa_test_tmp_path(msa_test_tmp *t, const char *name);
/* Removes the folder if it was made; always returns 0 (a CUnit clean-up function). */
int msa_test_tmp_remove(msa_test_tmp *t);
/* 1 when python3 and tools/npz_tool.py are usable (run from the repository root); prints
 * once, naming the suite, when they are not. */
int msa_test_python_ok(const char *suite);

#endif
