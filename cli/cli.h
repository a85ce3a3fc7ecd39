/* cli.h - shared helpers of the `msa` command's subcommands: option parsing that turns
 * every mistake into one line and exit code 2, and the exit-code convention
 * (0 passed, 1 a verification failure, 2 bad input or usage). */
#ifndef MSA_CLI_H
#define MSA_CLI_H

#include <stdint.h>

#include "../common/msa_common.h"

enum { MSA_EXIT_OK = 0, MSA_EXIT_FAIL = 1, MSA_EXIT_USAGE = 2 };

/* Prints "msa CMD: message" to stderr and returns MSA_EXIT_USAGE. */
int msa_cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Maps a library status to an exit code, printing the error line. */
int msa_cli_status_exit(const char *cmd, int status, const msa_err *e);
/* Strict integer / float parsing of an option value. */
int msa_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int msa_cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
int msa_cli_double(const char *cmd, const char *opt, const char *s, double *out);
/* Comma-separated list of ints (at most max), returns count or -1. */
int msa_cli_int_list(const char *cmd, const char *opt, const char *s, int *out, int max, long lo,
                     long hi);
/* Returns argv[i+1] or prints "option needs a value" (NULL). */
const char *msa_cli_value(const char *cmd, int argc, char **argv, int *i);

int msa_cmd_ref(int argc, char **argv);
int msa_cmd_judge(int argc, char **argv);
int msa_cmd_gen(int argc, char **argv);
int msa_cmd_verify(int argc, char **argv);
int msa_cmd_bench(int argc, char **argv);

#endif
