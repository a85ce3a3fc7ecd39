/* msa.c - the `msa` command: dispatches to the subcommands of each component.
 * Exit codes everywhere: 0 every check that ran passed, 1 a verification failure,
 * 2 bad input or usage. */
#include <stdio.h>
#include <string.h>

#include "../fuzz/fuzz.h"
#include "../traces/traces.h"
#include "cli.h"

#define MSA_VERSION "0.1.0"

static const char *usage =
    "msa " MSA_VERSION " - verification and reference simulation for MiniMax Sparse Attention kernels\n"
    "\n"
    "usage: msa COMMAND [options]      (msa COMMAND --help for each)\n"
    "\n"
    "  ref CASE.npz -o RESULT.npz      exact (MPFR-certified) or fast reference: dense GQA and MSA\n"
    "  judge CASE.npz OUT.npz          judge a kernel's dumped outputs against the exact reference\n"
    "  gen -o CASE.npz [shape options] write a deterministic random case file\n"
    "  fuzz --kernel K                 differential fuzzing with shrinking and a corpus\n"
    "  verify [--tier quick|full|soak] the release gate: writes REPORT.md and JUnit XML\n"
    "  replay TRACE [--kernel K]       re-run a recorded model trace through a backend\n"
    "  recall TRACE                    top-k block and attention-mass recall against dense attention\n"
    "  record                          record a trace from a real model (SmolLM2-135M)\n"
    "  bench                           benchmarks (reference; GPU kernels when a GPU is present)\n"
    "\n"
    "Kernels (K): cpu-sim, cpu-sim:VARIANT, cuda, cuda:VARIANT, or a plugin path (docs/ABI.md).\n"
    "Exit codes: 0 passed, 1 verification failure, 2 bad input or usage.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return MSA_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return MSA_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("msa %s (ABI %u)\n", MSA_VERSION, MSA_ABI_VERSION);
        return MSA_EXIT_OK;
    }
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    if (!strcmp(cmd, "ref")) return msa_cmd_ref(sub_argc, sub_argv);
    if (!strcmp(cmd, "judge")) return msa_cmd_judge(sub_argc, sub_argv);
    if (!strcmp(cmd, "gen")) return msa_cmd_gen(sub_argc, sub_argv);
    if (!strcmp(cmd, "verify")) return msa_cmd_verify(sub_argc, sub_argv);
    if (!strcmp(cmd, "bench")) return msa_cmd_bench(sub_argc, sub_argv);
    if (!strcmp(cmd, "fuzz")) return msa_fuzz_main(sub_argc, sub_argv);
    if (!strcmp(cmd, "replay")) return msa_replay_main(sub_argc, sub_argv);
    if (!strcmp(cmd, "recall")) return msa_recall_main(sub_argc, sub_argv);
    if (!strcmp(cmd, "record")) return msa_record_main(sub_argc, sub_argv);
    fprintf(stderr, "msa: unknown command '%s' (msa --help lists them)\n", cmd);
    return MSA_EXIT_USAGE;
}
