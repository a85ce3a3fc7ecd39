/* cmd_bench.c - `msa bench`: runs the benchmark programs built beside the msa binary:
 * bench_ref (exact vs fast vs naive-MPFR reference cost) and, with a GPU, msa_bench_gpu
 * (our CUDA kernels against measured ceilings and PyTorch's SDPA).  Benchmarks are
 * never tests: they print tables, they do not pass or fail on speed. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *bench_help =
    "usage: msa bench [ref|gpu] [-- ARGS...]\n"
    "  ref   the reference's cost: exact vs fast vs naive MPFR (build/bench_ref)\n"
    "  gpu   CUDA kernels vs measured ceilings and PyTorch SDPA (build/msa_bench_gpu, needs a GPU)\n"
    "Without a target both run (gpu only when its binary exists).  ARGS go to the program.\n";

static int run_prog(const char *dir, const char *prog, int argc, char **argv)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, prog);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "msa bench: %s is not built (make %s)\n", path, prog);
        return MSA_EXIT_USAGE;
    }
    char *args[64];
    int n = 0;
    args[n++] = path;
    for (int i = 0; i < argc && n < 63; i++) args[n++] = argv[i];
    args[n] = NULL;
    fflush(stdout);
    execv(path, args);
    perror("msa bench: exec");
    return MSA_EXIT_FAIL;
}

int msa_cmd_bench(int argc, char **argv)
{
    char dir[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (len <= 0) return msa_cli_usage_error("bench", "cannot locate the msa executable");
    dir[len] = 0;
    *strrchr(dir, '/') = 0;
    const char *target = argc > 1 ? argv[1] : "ref";
    int rest = 2;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(bench_help, stdout);
        return MSA_EXIT_OK;
    }
    if (argc > 2 && !strcmp(argv[2], "--")) rest = 3;
    if (!strcmp(target, "ref")) return run_prog(dir, "bench_ref", argc - rest, argv + rest);
    if (!strcmp(target, "gpu")) return run_prog(dir, "msa_bench_gpu", argc - rest, argv + rest);
    return msa_cli_usage_error("bench", "unknown target '%s' (ref or gpu)", target);
}
