/* test_util.c - shared helpers of the CUnit suites (see test_util.h); no tests here. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *msa_test_tmp_path(msa_test_tmp *t, const char *name)
{
    if (!t->dir[0]) {
        snprintf(t->dir, sizeof t->dir, "%s/%s_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", t->tag);
        if (!mkdtemp(t->dir)) t->dir[0] = 0;
    }
    snprintf(t->path, sizeof t->path, "%s/%s", t->dir, name);
    return t->path;
}

int msa_test_tmp_remove(msa_test_tmp *t)
{
    if (t->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", t->dir);
    }
    return 0;
}

int msa_test_python_ok(const char *suite)
{
    static int ok = -1;
    if (ok < 0) {
        ok = access("tools/npz_tool.py", R_OK) == 0 && system("python3 -c 1 >/dev/null 2>&1") == 0;
        if (!ok) printf("\n  %s: python3 or tools/npz_tool.py missing (run from the repo root): interop skipped\n", suite);
    }
    return ok;
}
