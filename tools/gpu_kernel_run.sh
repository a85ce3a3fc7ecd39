#!/bin/bash
# gpu_kernel_run.sh - the kernel developer's run on a Hopper GPU machine, in one go: the
# GPU benchmark (bench/bench_gpu.cu) with the PyTorch SDPA peer in the same run, the
# oracle-judged CUDA suite (tests/test_cuda.c, plus the GPU recall suite), and
# compute-sanitizer memcheck / racecheck on the CUDA suite's decode-path cases, and an
# Nsight Compute profile of the decode and prefill index kernels (per-kernel time, DRAM and
# SM throughput).  Each part has a time limit so the whole stays under 10 minutes; logs go
# to OUT_DIR.
#   usage: tools/gpu_kernel_run.sh BIN_DIR OUT_DIR [PARTS]   (PARTS: any of bench,test,san,prof,recall)
# `recall` generates a synthetic 1M-token layer (msa gen --trace) and times `msa recall
# --device gpu` on it (issue 7: one 1M-token layer within 60 s).
# $TEST_ONLY (the suite's MSA_CUDA_ONLY) narrows the test part to matching test names;
# $TEST_SKIP (MSA_CUDA_SKIP) leaves out the matching ones.
# $VARIANT=NAME runs the suite, sanitizers, benchmark and profile on the plugin's variant
# cuda:NAME instead (e.g. a planted bug, to see the suite fail).
# BIN_DIR holds msa, test_msa, libmsa_cuda.so and msa_bench_gpu built on the dev machine.
set -u -o pipefail
bin=$1 out=$2 parts=${3:-bench,test,san}
variant=${VARIANT:-}
kern=cuda${variant:+:$variant}
vflag=${variant:+--variant $variant}
export MSA_CUDA_KERNEL=$kern
has() { case ",$parts," in *",$1,"*) return 0 ;; esac; return 1; }
nvidia-smi -L > "$out/gpu.txt" 2>&1
export MSA_CUDA_WS_MB=${MSA_CUDA_WS_MB:-4096}
if has bench; then
    b=$bin/msa_bench_gpu
    {
        timeout 150 "$b" $vflag --prefill ${BENCH_PREFILL:-32768,131072,1048576} --decode 32768,131072,1048576 --reps 7 --dense-max 32768
        timeout 60 "$b" --prefill '' --decode 32768,131072,1048576 --reps 7 --index-dtype e4m3 --ceilings 0
        timeout 60 "$b" --prefill '' --decode 131072,1048576 --reps 7 --decode-lq 16 --ceilings 0
        timeout 60 "$b" --prefill '' --decode 131072,1048576 --reps 7 --decode-batch 8 --ceilings 0
        MSA_CUDA_DECODE=0 timeout 60 "$b" --prefill '' --decode 131072,1048576 --reps 7 --ceilings 0
    } > "$out/bench.md" 2>&1
    echo "bench: exit $?"
    timeout 200 python3 bench/sdpa_peer.py --prefill ${BENCH_PREFILL:-32768,131072,1048576} --decode 32768,131072,1048576 > "$out/sdpa.md" 2>&1
    echo "sdpa peer: exit $?"
fi
if has test; then
    t0=$SECONDS
    MSA_TEST_SUITES=cuda,recallgpu MSA_CUDA_ONLY=${TEST_ONLY:-} MSA_CUDA_SKIP=${TEST_SKIP:-} timeout ${TEST_LIMIT:-330} "$bin/test_msa" > "$out/test_cuda.log" 2>&1
    echo "cuda suite: exit $? ($((SECONDS - t0)) s): $(grep -E '^ +(tests|asserts) ' "$out/test_cuda.log" | tr -s ' ' | tr '\n' ';')"
fi
if has san; then
    for tool in memcheck racecheck; do
        t0=$SECONDS
        MSA_TEST_SUITES=cuda MSA_CUDA_ONLY=${SAN_ONLY:-oracle: decode} timeout ${SAN_LIMIT:-100} \
            compute-sanitizer --tool $tool --error-exitcode 3 "$bin/test_msa" > "$out/san-$tool.log" 2>&1
        echo "compute-sanitizer $tool: exit $? ($((SECONDS - t0)) s): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/san-$tool.log" | tail -1)"
    done
fi
if has prof; then # Nsight Compute: the decode chain at 1M and the prefill index kernels at 32k
    m=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,sm__warps_active.avg.pct_of_peak_sustained_active
    for n in 32768 1048576; do
        timeout 90 ncu --clock-control none --csv --metrics $m -k 'regex:msa_cu_d(scan|topk|attn|merge)' -c 8 \
            "$bin/msa_bench_gpu" $vflag --prefill '' --decode $n --reps 1 --ceilings 0 > "$out/ncu-decode-$n.csv" 2>&1
        echo "ncu decode $n: exit $?"
    done
    timeout 120 ncu --clock-control none --csv --metrics $m -k 'regex:msa_cu_(bscore|dtopk|topk_kernel|sparse_attn|dmerge|csr)' -c 12 \
        "$bin/msa_bench_gpu" $vflag --prefill ${PROF_PREFILL:-32768} --decode '' --reps 1 --ceilings 0 --dense-max 0 > "$out/ncu-prefill.csv" 2>&1
    echo "ncu prefill: exit $?"
fi
if has recall; then
    t0=$SECONDS
    timeout 120 "$bin/msa" gen --trace /tmp/syn1m.npz --lk 1048576 > "$out/recall-1m.log" 2>&1
    echo "synthetic 1M layer: exit $? ($((SECONDS - t0)) s)"
    t0=$SECONDS
    timeout 120 "$bin/msa" recall /tmp/syn1m.npz --device gpu --out "$out/recall-1m.md" >> "$out/recall-1m.log" 2>&1
    echo "recall of the 1M layer on the GPU: exit $? ($((SECONDS - t0)) s)"
fi
