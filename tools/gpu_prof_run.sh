#!/bin/bash
# gpu_prof_run.sh - one device call: the sanitizer and oracle checks of the CUDA backend
#   (memcheck on a CUDA fuzz and on the gqa prefill cases, gpu_check with its planted bugs,
#   the quick oracle suite, a short fuzz) and the per-kernel profile of decode (Nsight
#   Compute kernel times, an Nsight Systems timeline when nsys is there) and of the prefill
#   attention, merge and dense kernels.  Run from the repository root with build/gpu carried:
#   usage: tools/gpu_prof_run.sh BIN_DIR OUT_DIR [parts]   parts: check,ws,prof (default all)
#   ws: prefill 1M under several workspace budgets (MSA_CUDA_WS_MB: rows per chunk) and cell orders;
#   WS_NCU=0 skips the ncu pass of ws; gqa: the quick oracle cases with the top-k fast path
#   (MSA_CUDA_TOPK=1: the fast path with its full bound search, the default gpu-run14..19); ORACLE=1 adds the quick oracle suite to check.
set -u
B=${1:-build/gpu}; O=${2:-$OUT}; PARTS=${3:-check,gqa,ws,prof}
export MSA_CUDA_WS_MB=4096
mkdir -p $O; nvidia-smi -L > $O/gpu.txt 2>&1
step() { # name timeout command...
    local n=$1 to=$2; shift 2; local t=$SECONDS
    timeout $to "$@" > $O/$n.log 2>&1; echo "$n: exit $? ($((SECONDS-t)) s)" | tee -a $O/summary.txt
}
BG=$B/msa_bench_gpu
if [[ $PARTS == *gqa* ]]; then # the quick oracle cases with the top-k fast path (the default since gpu-run14)
    MSA_CUDA_TOPK=1 MSA_TEST_SUITES=cuda MSA_CUDA_QUICK=1 MSA_CUDA_ONLY="oracle:" step cuda-gqa 160 $B/test_msa
    grep -E '^ +(tests|asserts) ' $O/cuda-gqa.log | tee -a $O/summary.txt
fi
if [[ $PARTS == *check* ]]; then
    rm -rf /tmp/sm
    step memcheck-fuzz 120 compute-sanitizer --tool memcheck --error-exitcode 3 $B/msa fuzz --kernel cuda --cases 25 --max-context 1024 --corpus /tmp/sm --seed 7
    grep 'ERROR SUMMARY' $O/memcheck-fuzz.log | tail -1 | tee -a $O/summary.txt
    MSA_TEST_SUITES=cuda MSA_CUDA_ONLY="oracle: gqa" step memcheck-gqa 90 compute-sanitizer --tool memcheck --error-exitcode 3 $B/test_msa
    grep 'ERROR SUMMARY' $O/memcheck-gqa.log | tail -1 | tee -a $O/summary.txt
    step gpu_check 100 $B/gpu_check $B/libmsa_cuda.so
    tail -3 $O/gpu_check.log | tee -a $O/summary.txt
    if [ -n "${ORACLE:-}" ]; then
        MSA_TEST_SUITES=cuda MSA_CUDA_QUICK=1 MSA_CUDA_ONLY="oracle:" step cuda-oracle 150 $B/test_msa
        grep -E '^ +(tests|asserts) ' $O/cuda-oracle.log | tee -a $O/summary.txt
    fi
    rm -rf /tmp/fz; step fuzz 70 $B/msa fuzz --kernel cuda --budget 45 --max-context 4096 --corpus /tmp/fz --summary
    tail -4 $O/fuzz.log | tee -a $O/summary.txt
fi
if [[ $PARTS == *ws* ]]; then
    # "MB:ORDER:MERGE:WGPIPE:TOPK": workspace budget, MSA_CUDA_ORDER (0: grid order, 1: largest
    # KV-outer cells first), MSA_CUDA_MERGE (1: scalar, 4: vector merge), MSA_CUDA_WGPIPE (0: lock
    # step, 1: decoupled warpgroup scorer), MSA_CUDA_TOPK (0: search, 1: fast path with its
    # full 32-step bound search; the default since gpu-run20 shortens that search)
    for cfg in ${WS_LIST:-16384:1:4:1:0 16384:1:4:1:1 4096:1:4:1:1}; do
        IFS=: read -r mb od mg wp tk <<< "$cfg"
        n=bench-ws$mb-o$od-m$mg-p$wp-t$tk
        MSA_CUDA_TOPK=$tk MSA_CUDA_WGPIPE=$wp MSA_CUDA_ORDER=$od MSA_CUDA_MERGE=$mg MSA_CUDA_WS_MB=$mb step $n 120 $BG --prefill 1048576 --decode '' --reps 1 --dense-max 0 --ceilings 0
        grep -E "^\| [0-9]+ \|" $O/$n.log | head -2 | sed "s/^/ws $mb order $od merge $mg wgpipe $wp topk $tk /" | tee -a $O/summary.txt
    done
    # one late chunk of a 1M prefill (kernel launches 1000-1027 of the warm-up forward): per-kernel
    # time and the active-cycle spread across SMs (avg / max: the tail of each kernel)
    if [ "${WS_NCU:-1}" != 0 ]; then # WS_NCU=0: the timings only
        mt=gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_active.max,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,launch__grid_size
        step ncu-pre1m 200 ncu --clock-control none --csv --metrics $mt -s 1000 -c 28 $BG --prefill 1048576 --decode '' --reps 1 --dense-max 0 --ceilings 0
    fi
fi
if [[ $PARTS == *prof* ]]; then
    m=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size
    for n in 32768 1048576; do for t in bf16 e4m3; do
        step ncu-dec-$n-$t 60 ncu --clock-control none --csv --metrics $m -k regex:msa_cu_d -c 8 $BG --prefill '' --decode $n --index-dtype $t --reps 1 --ceilings 0 --dense-max 0
    done; done
    step ncu-attn 120 ncu --clock-control none --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis --section Occupancy -k regex:"msa_cu_sparse_attn|msa_cu_dmerge|msa_cu_dense_attn" -c 3 $BG --prefill 8192 --decode '' --reps 1 --ceilings 0 --dense-max 8192
    step bench-dec 90 $BG --prefill '' --decode 32768,131072,1048576 --reps 20 --dense-max 0
    step bench-dec-e4m3 60 $BG --prefill '' --decode 1048576 --index-dtype e4m3 --reps 20 --dense-max 0 --ceilings 0
fi
