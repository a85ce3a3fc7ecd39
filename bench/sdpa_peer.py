#!/usr/bin/env python3
"""sdpa_peer.py - the dense-attention peer for bench/bench_gpu.cu (issue 8): PyTorch's
scaled_dot_product_attention on the GPU test machine, at MiniMax-M3's shape (Hq 64, Hkv 4,
D 128, bf16), causal prefill and single-token decode, timed with CUDA events after warm-up
(median; launches enqueued back to back, CUDA-graph replay where capture works, as
bench_gpu.cu times our kernels), two input sets in rotation below 64k tokens, random data.

Backends: cuDNN and flash (torch.nn.attention.sdpa_kernel), GQA through enable_gqa=True,
or K/V expanded with repeat_interleave (outside the timed region) when a backend refuses
it.  Decode uses is_causal=False: the single query at the end sees every key (PyTorch's
causal mask is top-left aligned, so it would be wrong for Lq != Lk).  Prints a markdown
table; it judges nothing.
Usage: python3 bench/sdpa_peer.py [--prefill 8192,...] [--decode 8192,...]"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HQ, HKV, D = 64, 4, 128


def timed(fn, warm, reps):
    for _ in range(warm):
        fn(0)
    torch.cuda.synchronize()
    # every launch enqueued back to back, an event between two, one synchronisation at the
    # end: launch i is timed on the GPU from the end of launch i-1 to its own end, so the
    # host's (Python's) launch latency is not in the figure; msa_cuda_time does the same
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(reps + 1)]
    ev[0].record()
    for i in range(reps):
        fn(i)
        ev[i + 1].record()
    torch.cuda.synchronize()
    ts = [ev[i].elapsed_time(ev[i + 1]) for i in range(reps)]
    return statistics.median(ts)


def run(backend, lq, lk, causal, nsets, reps, warm=3, graph=True):
    sets = []
    for s in range(nsets):
        g = torch.Generator(device="cuda").manual_seed(1000 * lk + s)
        q = torch.randn(1, HQ, lq, D, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(1, HKV, lk, D, device="cuda", dtype=torch.bfloat16, generator=g)
        v = torch.randn(1, HKV, lk, D, device="cuda", dtype=torch.bfloat16, generator=g)
        sets.append((q, k, v))
    mode = "enable_gqa"
    with sdpa_kernel([backend]):
        try:
            q, k, v = sets[0]
            F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
            torch.cuda.synchronize()
            fn = lambda i: F.scaled_dot_product_attention(*sets[i % nsets], is_causal=causal, enable_gqa=True)
        except Exception:  # the backend refuses GQA: expand K/V once, outside the timing
            mode = "repeat_interleave"
            sets = [(q, k.repeat_interleave(HQ // HKV, 1), v.repeat_interleave(HQ // HKV, 1)) for q, k, v in sets]
            fn = lambda i: F.scaled_dot_product_attention(*sets[i % nsets], is_causal=causal)
        # as our kernels are timed: one CUDA graph per input set, replayed; eager launches
        # when capture fails (the table says which)
        try:
            if not graph:
                raise RuntimeError("eager")
            graphs = []
            for i in range(nsets):
                fn(i)  # the backend's own warm-up and workspace, outside the capture
                torch.cuda.synchronize()
                gr = torch.cuda.CUDAGraph()
                with torch.cuda.graph(gr):
                    fn(i)
                graphs.append(gr)
            run_fn, how = (lambda i: graphs[i % nsets].replay()), mode + ", graph"
        except Exception:
            run_fn, how = fn, mode + ", eager"
        try:
            return timed(run_fn, warm, reps), how
        except Exception as e:
            return None, f"failed: {str(e).splitlines()[0][:60]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefill", default="8192,16384,32768,65536,131072")
    ap.add_argument("--decode", default="8192,32768,131072,524288,1048576")
    a = ap.parse_args()
    print(f"# sdpa_peer on {torch.cuda.get_device_name()} (torch {torch.__version__})\n")
    backends = [("cuDNN", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)]
    print("## Dense causal prefill (batch 1, Hq 64, Hkv 4, D 128, bf16)\n")
    print("| N | backend | ms | TFLOP/s | GQA via, launch |\n|---|---|---|---|---|")
    for n in [int(x) for x in a.prefill.split(",") if x]:
        flop = 4.0 * HQ * D * n * (n + 1) / 2
        for name, be in backends:
            if n >= 524288 and name != "cuDNN":
                continue  # the fastest backend only: one launch lasts tens of seconds there
            big = n >= 524288  # one warm-up, one timed launch, eager (launch cost is nothing there)
            ms, mode = run(be, n, n, True, 2 if n < 65536 else 1, 1 if big else 10 if n < 65536 else 3,
                           warm=1 if big else 3, graph=not big)
            tf = f"{flop / ms / 1e9:.0f}" if ms else "-"
            print(f"| {n} | {name} | {ms if ms is None else round(ms, 3)} | {tf} | {mode} |", flush=True)
            torch.cuda.empty_cache()
    print("\n## Dense decode (batch 1, 1 query token)\n")
    print("| N | backend | ms | K/V GB/s | GQA via, launch |\n|---|---|---|---|---|")
    for n in [int(x) for x in a.decode.split(",") if x]:
        byts = 2.0 * n * HKV * D * 2
        for name, be in backends:
            ms, mode = run(be, 1, n, False, 2 if n <= 262144 else 1, 20)
            bw = f"{byts / ms / 1e6:.0f}" if ms else "-"
            print(f"| {n} | {name} | {ms if ms is None else round(ms, 4)} | {bw} | {mode} |", flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
