/* test_fsutil.c - suite "fsutil": atomic writes (including writers killed with SIGKILL at
 * random moments), bounded reads, mkdir -p and the string buffer.  Works in a fresh
 * folder under $TMPDIR (default /tmp) and removes it afterwards.  The kill schedule's seed
 * is printed; MSA_TEST_SEED replays another. */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/fsutil.h"

static char g_dir[512];

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

/* Entries of a folder other than . and .., or -1 when it cannot be opened. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

/* Removes the files of dir whose names start with prefix; returns how many. */
static int remove_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d)))
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            n += unlink(p) == 0;
        }
    closedir(d);
    return n;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int suite_init(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/msa_fsutil_XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int suite_clean(void)
{
    remove_tree(g_dir);
    return 0;
}

static int file_equals(const char *path, const void *want, size_t n)
{
    void *d;
    size_t len;
    msa_err e;
    if (msa_read_file(path, n + 16, &d, &len, &e) != MSA_OK) return 0;
    int eq = len == n && memcmp(d, want, n) == 0 && ((char *)d)[n] == 0;
    free(d);
    return eq;
}

static void test_write_overwrite_read(void)
{
    char p[1024];
    msa_err e;
    path_in(p, sizeof p, "a.txt");
    CU_ASSERT_EQUAL(msa_write_atomic(p, "hello\n", 6, &e), MSA_OK);
    CU_ASSERT(file_equals(p, "hello\n", 6));
    CU_ASSERT_EQUAL(msa_write_atomic(p, "bye", 3, &e), MSA_OK);
    CU_ASSERT(file_equals(p, "bye", 3));
    CU_ASSERT_EQUAL(msa_write_atomic(p, NULL, 0, &e), MSA_OK); /* empty file */
    CU_ASSERT(file_equals(p, "", 0));
    CU_ASSERT_EQUAL(count_entries(g_dir, ".a.txt.tmp"), 0); /* no temp left behind */
    /* size cap: exactly at the cap is fine, one byte over is bad input */
    void *d;
    size_t len;
    CU_ASSERT_EQUAL(msa_write_atomic(p, "0123456789", 10, &e), MSA_OK);
    CU_ASSERT_EQUAL(msa_read_file(p, 10, &d, &len, &e), MSA_OK);
    CU_ASSERT(len == 10 && memcmp(d, "0123456789", 10) == 0);
    free(d);
    CU_ASSERT_EQUAL(msa_read_file(p, 9, &d, &len, &e), MSA_EINPUT);
    CU_ASSERT_PTR_NULL(d);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "a.txt: size:"));
    path_in(p, sizeof p, "missing.txt");
    CU_ASSERT_EQUAL(msa_read_file(p, 100, &d, &len, &e), MSA_EINPUT);
    CU_ASSERT_EQUAL(msa_read_file(g_dir, 100, &d, &len, &e), MSA_EINPUT); /* a folder */
    /* a non-regular file (no size from stat) is capped while reading */
    CU_ASSERT_EQUAL(msa_read_file("/dev/zero", 4096, &d, &len, &e), MSA_EINPUT);
}

static void test_failures_leave_nothing(void)
{
    char p[1024], sub[1024];
    msa_err e;
    path_in(p, sizeof p, "no/such/folder/x.txt");
    CU_ASSERT_EQUAL(msa_write_atomic(p, "x", 1, &e), MSA_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "x.txt: create temp file:"));
    path_in(sub, sizeof sub, "no");
    CU_ASSERT_EQUAL(count_entries(sub, ""), -1); /* nothing was created */
    /* rename over an existing folder fails after the temp file was written: the temp file
     * must be removed and the folder left as it was */
    path_in(sub, sizeof sub, "adir");
    CU_ASSERT_EQUAL_FATAL(mkdir(sub, 0777), 0);
    CU_ASSERT_EQUAL(msa_write_atomic(sub, "data", 4, &e), MSA_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "rename"));
    CU_ASSERT_EQUAL(count_entries(g_dir, ".adir.tmp"), 0);
    struct stat st;
    CU_ASSERT(stat(sub, &st) == 0 && S_ISDIR(st.st_mode));
    CU_ASSERT_EQUAL(msa_write_atomic("", "x", 1, &e), MSA_EINPUT);
    path_in(p, sizeof p, "trailing/");
    CU_ASSERT_EQUAL(msa_write_atomic(p, "x", 1, &e), MSA_EINPUT);
}

static void test_mkdirs(void)
{
    char p[1024], f[1024];
    msa_err e;
    path_in(p, sizeof p, "m1/m2/m3");
    CU_ASSERT_EQUAL(msa_mkdirs(p, &e), MSA_OK);
    CU_ASSERT_EQUAL(msa_mkdirs(p, &e), MSA_OK); /* idempotent */
    CU_ASSERT_EQUAL(count_entries(p, ""), 0);
    path_in(f, sizeof f, "m1/file");
    CU_ASSERT_EQUAL(msa_write_atomic(f, "x", 1, &e), MSA_OK);
    path_in(p, sizeof p, "m1/file/below");
    CU_ASSERT_NOT_EQUAL(msa_mkdirs(p, &e), MSA_OK); /* a file is in the way */
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "m1/file"));
}

static void test_sbuf(void)
{
    msa_sbuf b = {0};
    for (int i = 0; i < 1000; i++) msa_sb_printf(&b, "%d,", i % 10);
    CU_ASSERT_EQUAL(b.len, 2000);
    CU_ASSERT(b.s && strlen(b.s) == 2000 && strncmp(b.s, "0,1,2,", 6) == 0);
    CU_ASSERT_EQUAL(b.oom, 0);
    char big[5000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = 0;
    msa_sb_printf(&b, "%s!", big);
    CU_ASSERT(b.len == 2000 + 5000 && b.s[b.len - 1] == '!' && b.s[b.len] == 0);
    msa_sb_free(&b);
    CU_ASSERT(b.s == NULL && b.len == 0);
}

/* ---- the kill test.  Content of round r: 8-byte tag r, then bytes of a xorshift stream
 * seeded by r.  After each killed writer the target must be exactly the content of the
 * previous complete round or of round r. */
#define KILL_BYTES ((size_t)1 << 20) /* 1 MiB: a write (with fsync) lasts milliseconds */
#define KILL_ROUNDS 400 /* upper bound; the loop stops after KILL_WANTED kills */
#define KILL_WANTED 120
#define KILL_BUDGET_S 4.0 /* stop early (but after >= 100 kills) if the disk is slow */
#define KILL_HARD_S 15.0  /* never run longer, even on a loaded machine */

static void fill(unsigned char *buf, uint64_t tag)
{
    uint64_t s = tag * UINT64_C(0x9E3779B97F4A7C15) + 1;
    memcpy(buf, &tag, 8);
    for (size_t i = 8; i < KILL_BYTES; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        buf[i] = (unsigned char)s;
    }
}

/* Returns the tag of a complete target, or -1 when it is truncated or corrupt. */
static long long target_tag(const char *path, unsigned char *scratch)
{
    void *d;
    size_t len;
    msa_err e;
    if (msa_read_file(path, KILL_BYTES, &d, &len, &e) != MSA_OK) return -2;
    long long tag = -1;
    if (len == KILL_BYTES) {
        uint64_t t;
        memcpy(&t, d, 8);
        fill(scratch, t);
        if (memcmp(scratch, d, KILL_BYTES) == 0) tag = (long long)t;
    }
    free(d);
    return tag;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_kill_writers(void)
{
    char p[1024];
    msa_err e;
    path_in(p, sizeof p, "killed.bin");
    unsigned char *buf = malloc(KILL_BYTES), *scratch = malloc(KILL_BYTES);
    CU_ASSERT_FATAL(buf && scratch);
    fill(buf, 0);
    CU_ASSERT_EQUAL_FATAL(msa_write_atomic(p, buf, KILL_BYTES, &e), MSA_OK);
    /* calibrate on a whole forked writer (fork and exit included: slow under ASan), so the
     * random kill times spread over the writer's real life */
    double t0 = now_s();
    pid_t cal = fork();
    CU_ASSERT_FATAL(cal >= 0);
    if (cal == 0) _exit(msa_write_atomic(p, buf, KILL_BYTES, NULL) == MSA_OK ? 0 : 3);
    int cal_status;
    waitpid(cal, &cal_status, 0);
    double one_write = now_s() - t0;
    CU_ASSERT_FATAL(WIFEXITED(cal_status) && WEXITSTATUS(cal_status) == 0);
    const char *env = getenv("MSA_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : UINT64_C(20261122), st = seed | 1;
    long long prev = 0;
    int kills = 0, completed = 0, bad = 0, temps = 0;
    double start = now_s(), span = 1.3 * one_write;
    for (int r = 1; r <= KILL_ROUNDS; r++) {
        fill(buf, (uint64_t)r);
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        /* delay uniform in [0, span]; span adapts (x0.7 after a writer finished, x1.05
         * after a kill) so that about one writer in eight finishes and the rest die at
         * random points of their life, whatever the disk's speed today */
        long delay_ns = (long)((double)(st % 1000) / 1000.0 * span * 1e9);
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) _exit(msa_write_atomic(p, buf, KILL_BYTES, NULL) == MSA_OK ? 0 : 3);
        struct timespec ts = {delay_ns / 1000000000L, delay_ns % 1000000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status)) kills++, span *= 1.05;
        else completed += WIFEXITED(status) && WEXITSTATUS(status) == 0, span *= 0.7;
        long long tag = target_tag(p, scratch);
        if (tag != prev && tag != r) {
            bad++;
            fprintf(stderr, "\n  round %d: target tag %lld, want %lld or %d (seed %llu)", r, tag,
                    prev, r, (unsigned long long)seed);
        }
        if (tag >= 0) prev = tag;
        temps += remove_prefixed(g_dir, ".killed.bin.tmp"); /* keep the disk use at 1 MiB */
        double spent = now_s() - start;
        if (kills >= KILL_WANTED || (kills >= 100 && spent > KILL_BUDGET_S)) break;
        if (spent > KILL_HARD_S) break; /* hard bound; then kills < 100 fails below */
    }
    printf("[fsutil: one write %.1f ms, %d kills, %d finished, %d temp files left, seed %llu] ",
           one_write * 1e3, kills, completed, temps, (unsigned long long)seed);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(kills >= 100);
    CU_ASSERT(temps > 0); /* some kills did land mid-write, so the test had teeth */
    free(buf);
    free(scratch);
}

int msa_suite_fsutil(void)
{
    CU_pSuite s = CU_add_suite("fsutil", suite_init, suite_clean);
    if (!s) return -1;
    if (!CU_add_test(s, "write, overwrite, read with cap", test_write_overwrite_read) ||
        !CU_add_test(s, "failures leave nothing behind", test_failures_leave_nothing) ||
        !CU_add_test(s, "mkdir -p", test_mkdirs) ||
        !CU_add_test(s, "string buffer", test_sbuf) ||
        !CU_add_test(s, "SIGKILLed writers never truncate the target", test_kill_writers))
        return -1;
    return 0;
}
