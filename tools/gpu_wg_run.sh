#!/bin/bash
# gpu_wg_run.sh - judges and times the wgmma index scorers (bench/NOTES.md v5) against v4 in one
#   device call: run from the repository root on the GPU machine with build/gpu carried.
#   MSA_CUDA_WGMMA: 0 v4 (mma.sync), 1 v5 (wgmma, lock-step warpgroups), 2 v5 pipelined.
set -u
B=build/gpu; O=$OUT
export MSA_CUDA_WS_MB=4096
nvidia-smi -L > $O/gpu.txt 2>&1
(cuobjdump -sass -fun '_Z16msa_cu_bscore_wgILb0ELi8ELb1EEv11msa_cu_prob12msa_cu_chunkPfii' $B/libmsa_cuda.so > $O/wg8-pipe.sass 2>&1 || /usr/local/cuda/bin/cuobjdump -sass $B/libmsa_cuda.so > $O/all.sass 2>&1) 
step() { # name timeout command...
    local n=$1 to=$2; shift 2; local t=$SECONDS
    timeout $to "$@" > $O/$n.log 2>&1; echo "$n: exit $? ($((SECONDS-t)) s)" | tee -a $O/summary.txt
}
for v in 2 1; do MSA_CUDA_WGMMA=$v step gpu_check-$v 100 $B/gpu_check $B/libmsa_cuda.so; done
for v in 0 1 2; do MSA_CUDA_WGMMA=$v step bench-$v 90 $B/msa_bench_gpu --prefill 32768,131072,1048576 --decode '' --reps 3 --dense-max 0; done
for v in 2 1; do MSA_CUDA_WGMMA=$v MSA_TEST_SUITES=cuda MSA_CUDA_QUICK=1 MSA_CUDA_ONLY="oracle:" step cuda-oracle-$v 150 $B/test_msa; grep -E '^ +(tests|asserts) ' $O/cuda-oracle-$v.log | tee -a $O/summary.txt; done
m=gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,lts__t_bytes.sum,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active
for v in 1 2; do MSA_CUDA_WGMMA=$v step ncu-$v 60 ncu --clock-control none --csv --metrics $m -k regex:msa_cu_bscore -c 3 $B/msa_bench_gpu --prefill 32768 --decode '' --reps 1 --ceilings 0 --dense-max 0; done
MSA_CUDA_WGMMA=2 step ncu-stall 90 ncu --clock-control none --section WarpStateStats --section ComputeWorkloadAnalysis --section SchedulerStats -k regex:msa_cu_bscore -s 2 -c 1 $B/msa_bench_gpu --prefill 32768 --decode '' --reps 1 --ceilings 0 --dense-max 0
MSA_CUDA_WGMMA=2 MSA_TEST_SUITES=cuda MSA_CUDA_ONLY="oracle: gqa" step memcheck 70 compute-sanitizer --tool memcheck --error-exitcode 3 $B/test_msa
grep 'ERROR SUMMARY' $O/memcheck.log | tail -1 | tee -a $O/summary.txt
for v in 0 1 2; do grep -E "^\| [0-9]+ \|" $O/bench-$v.log | head -3 | sed "s/^/v$v /" | tee -a $O/summary.txt; done
