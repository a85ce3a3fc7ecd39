/* cmd_gen.c - `msa gen`: writes a deterministic random case file from shape options,
 * so that cases can be reproduced from a command line alone; `msa gen --trace` writes a
 * synthetic one-layer trace of a long sequence instead (traces/synth.c), for running
 * `msa recall` at 1M tokens where the trace cannot be shipped. */
#include <stdio.h>
#include <string.h>

#include "../common/case.h"
#include "../traces/traces.h"
#include "cli.h"

/* An integer option `name` in [lo, hi] into dst.field (inside gen's option loops, which
 * hold the option a, its value v and a long n). */
#define GEN_INTOPT(dst, name, field, lo, hi)                                           \
    if (!strcmp(a, name)) {                                                            \
        if (msa_cli_int("gen", name, v, lo, hi, &n)) return MSA_EXIT_USAGE;            \
        dst.field = (int)n;                                                            \
        continue;                                                                      \
    }

static const char *gen_trace_help =
    "usage: msa gen --trace TRACE.npz [options]   (a synthetic one-layer trace, docs/TRACES.md 5)\n"
    "  --lk T              tokens of the sequence (default 1048576)\n"
    "  --windows W         query windows spread over the sequence (default 4)\n"
    "  --window-len L      query rows per window (default 32)\n"
    "  --shape smollm2|m3  smollm2: Hq 9, Hkv 3, D 64 (default); m3: Hq 64, Hkv 4, D 128 (DI = Hkv*D)\n"
    "  --block B --topk K --init N --local N   recorded selection (default 64, 16, 0, 1)\n"
    "  --q-scale X         q = X * N(0,1) (default 2: a sharper softmax than unit scale)\n"
    "  --seed S            (default 1)\n"
    "  --no-topk           do not record the reference's selection (saves its CPU time)\n"
    "  --compress          deflate the archive\n";

/* `msa gen --trace PATH ...` */
static int gen_trace(int argc, char **argv)
{
    msa_synth_opts o = {.tokens = 1 << 20, .windows = 4, .window_len = 32, .Hq = 9, .Hkv = 3, .D = 64,
                        .block_size = 64, .topk = 16, .init_blocks = 0, .local_blocks = 1, .q_scale = 2.0,
                        .seed = 1, .record_topk = 1};
    const char *path = NULL;
    int compress = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(gen_trace_help, stdout);
            return MSA_EXIT_OK;
        }
        if (!strcmp(a, "--no-topk")) { o.record_topk = 0; continue; }
        if (!strcmp(a, "--compress")) { compress = 1; continue; }
        if (a[0] != '-') return msa_cli_usage_error("gen", "unexpected argument '%s'", a);
        if (!(v = msa_cli_value("gen", argc, argv, &i))) return MSA_EXIT_USAGE;
        GEN_INTOPT(o, "--windows", windows, 1, 4096)
        GEN_INTOPT(o, "--window-len", window_len, 1, 65536)
        GEN_INTOPT(o, "--block", block_size, 1, 4096)
        GEN_INTOPT(o, "--topk", topk, 1, 65536)
        GEN_INTOPT(o, "--init", init_blocks, 0, 65536)
        GEN_INTOPT(o, "--local", local_blocks, 0, 65536)
        if (!strcmp(a, "--trace")) path = v;
        else if (!strcmp(a, "--lk")) {
            if (msa_cli_int("gen", a, v, 1, MSA_SYNTH_MAX_TOKENS, &n)) return MSA_EXIT_USAGE;
            o.tokens = n;
        } else if (!strcmp(a, "--seed")) {
            if (msa_cli_u64("gen", a, v, &o.seed)) return MSA_EXIT_USAGE;
        } else if (!strcmp(a, "--q-scale")) {
            if (msa_cli_double("gen", a, v, &o.q_scale)) return MSA_EXIT_USAGE;
        } else if (!strcmp(a, "--shape")) {
            if (!strcmp(v, "smollm2")) o.Hq = 9, o.Hkv = 3, o.D = 64;
            else if (!strcmp(v, "m3")) o.Hq = 64, o.Hkv = 4, o.D = 128;
            else return msa_cli_usage_error("gen", "--shape: '%s' is not smollm2 or m3", v);
        } else {
            return msa_cli_usage_error("gen", "--trace: option '%s' does not apply (msa gen --trace X --help)", a);
        }
    }
    if (!path) return msa_cli_usage_error("gen", "--trace: missing the output path");
    msa_err e = {{0}};
    int st = msa_trace_synthetic(&o, path, compress, &e);
    if (!st)
        printf("%s: synthetic trace, %lld tokens, %d windows x %d rows, Hq %d Hkv %d D %d DI %d, B %d k %d%s\n", path,
               (long long)o.tokens, o.windows, o.window_len, o.Hq, o.Hkv, o.D, o.Hkv * o.D, o.block_size, o.topk,
               o.record_topk ? ", recorded selection" : "");
    return msa_cli_status_exit("gen", st, &e);
}

#define GEN_MAX_BATCH 64

static const char *gen_help =
    "usage: msa gen -o CASE.npz [options]\n"
    "  --seed S            (default 1)\n"
    "  --lq L1,L2,...      query lengths per sequence (default 64)\n"
    "  --lk L1,L2,...      key lengths per sequence (default = lq: plain prefill)\n"
    "  --hq N --hkv N      query heads, KV heads (default 4, 2)\n"
    "  --d N --di N        head dim, index dim (default 64, 64)\n"
    "  --block B --topk K --init N --local N   (default 16, 2, 0, 1)\n"
    "  --dtype bf16|fp16|fp32|e4m3   --index-dtype ... (default bf16, same)\n"
    "  --paged 0|1|2       0 packed, 1 shuffled pages, 2 shuffled pages with gaps\n"
    "  --dist normal|uniform|smallint|heavy|const   (q/k/v; --index-dist likewise)\n"
    "  --noncausal         causal = false\n"
    "  --preset m3         MiniMax-M3: Hq 64, Hkv 4, D 128, DI 128, B 128, k 16, init 0, local 1\n"
    "  --trace TRACE.npz   a synthetic one-layer trace instead (msa gen --trace X --help)\n";

static int parse_dist(const char *s, msa_dist *d)
{
    static const char *names[] = {"normal", "uniform", "smallint", "heavy", "const"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *d = (msa_dist)i;
            return 0;
        }
    return -1;
}

int msa_cmd_gen(int argc, char **argv)
{
    int lq[GEN_MAX_BATCH] = {64}, lk[GEN_MAX_BATCH];
    int nq = 1, nk = 0;
    msa_case_params p;
    memset(&p, 0, sizeof p);
    p.Hq = 4, p.Hkv = 2, p.D = 64, p.DI = 64, p.block_size = 16, p.topk = 2, p.local_blocks = 1;
    p.dtype = MSA_DT_BF16, p.index_dtype = MSA_DT_INVALID, p.causal = 1, p.seed = 1;
    const char *outp = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--trace")) return gen_trace(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        long n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(gen_help, stdout);
            return MSA_EXIT_OK;
        }
        if (!strcmp(a, "--noncausal")) {
            p.causal = 0;
            continue;
        }
        if (a[0] != '-') return msa_cli_usage_error("gen", "unexpected argument '%s'", a);
        if (!(v = msa_cli_value("gen", argc, argv, &i))) return MSA_EXIT_USAGE;
        GEN_INTOPT(p, "--hq", Hq, 1, 1024)
        GEN_INTOPT(p, "--hkv", Hkv, 1, 1024)
        GEN_INTOPT(p, "--d", D, 1, 1024)
        GEN_INTOPT(p, "--di", DI, 1, 1024)
        GEN_INTOPT(p, "--block", block_size, 1, 4096)
        GEN_INTOPT(p, "--topk", topk, 1, 65536)
        GEN_INTOPT(p, "--init", init_blocks, 0, 65536)
        GEN_INTOPT(p, "--local", local_blocks, 0, 65536)
        GEN_INTOPT(p, "--paged", paged, 0, 2)
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) outp = v;
        else if (!strcmp(a, "--seed")) {
            if (msa_cli_u64("gen", a, v, &p.seed)) return MSA_EXIT_USAGE;
        } else if (!strcmp(a, "--lq")) {
            if ((nq = msa_cli_int_list("gen", a, v, lq, GEN_MAX_BATCH, 0, 1 << 24)) < 0) return MSA_EXIT_USAGE;
        } else if (!strcmp(a, "--lk")) {
            if ((nk = msa_cli_int_list("gen", a, v, lk, GEN_MAX_BATCH, 0, 1 << 24)) < 0) return MSA_EXIT_USAGE;
        } else if (!strcmp(a, "--dtype") || !strcmp(a, "--index-dtype")) {
            msa_dtype t = msa_dtype_from_name(v);
            if (t != MSA_DT_BF16 && t != MSA_DT_FP16 && t != MSA_DT_FP32 && t != MSA_DT_E4M3)
                return msa_cli_usage_error("gen", "%s: '%s' is not bf16, fp16, fp32 or e4m3", a, v);
            if (!strcmp(a, "--dtype")) p.dtype = t;
            else p.index_dtype = t;
        } else if (!strcmp(a, "--dist")) {
            if (parse_dist(v, &p.dist)) return msa_cli_usage_error("gen", "--dist: unknown '%s'", v);
        } else if (!strcmp(a, "--index-dist")) {
            if (parse_dist(v, &p.index_dist)) return msa_cli_usage_error("gen", "--index-dist: unknown '%s'", v);
        } else if (!strcmp(a, "--preset")) {
            if (strcmp(v, "m3")) return msa_cli_usage_error("gen", "--preset: only 'm3' is known");
            p.Hq = 64, p.Hkv = 4, p.D = 128, p.DI = 128, p.block_size = 128, p.topk = 16;
            p.init_blocks = 0, p.local_blocks = 1;
        } else {
            return msa_cli_usage_error("gen", "unknown option '%s' (msa gen --help)", a);
        }
    }
    if (!outp) return msa_cli_usage_error("gen", "missing -o CASE.npz");
    if (nk == 0) {
        memcpy(lk, lq, sizeof lq);
        nk = nq;
    }
    if (nk != nq) return msa_cli_usage_error("gen", "--lq has %d entries but --lk has %d", nq, nk);
    if (p.index_dtype == MSA_DT_INVALID) p.index_dtype = p.dtype;
    p.batch = nq, p.lq = lq, p.lk = lk, p.q_scale = 1.0;
    msa_err e = {{0}};
    msa_case c;
    int st = msa_case_generate(&p, &c, &e);
    if (!st) st = msa_case_save(outp, &c, &e);
    if (!st) {
        char d[256];
        msa_case_describe(&c, d, sizeof d);
        printf("%s: %s\n", outp, d);
        msa_case_free(&c);
    }
    return msa_cli_status_exit("gen", st, &e);
}
