#!/bin/bash
# gpu_wg_run.sh - judges and times the opt-in wgmma index scorer (bench/NOTES.md v5) in one device call:
#   run from the repository root on the GPU machine with build/gpu carried (see bench/NOTES.md)
set -u
B=build/gpu; O=$OUT
export MSA_CUDA_WS_MB=4096
nvidia-smi -L > $O/gpu.txt 2>&1
t=$SECONDS; MSA_CUDA_WGMMA=1 timeout 100 $B/gpu_check $B/libmsa_cuda.so > $O/gpu_check.log 2>&1; echo "gpu_check: exit $? ($((SECONDS-t)) s)" | tee -a $O/summary.txt
t=$SECONDS; MSA_CUDA_WGMMA=0 timeout 60 $B/msa_bench_gpu --prefill 32768,131072 --decode '' --reps 3 --dense-max 0 > $O/bench-v4.md 2>&1; echo "bench v4: exit $? ($((SECONDS-t)) s)" | tee -a $O/summary.txt
t=$SECONDS; MSA_CUDA_WGMMA=1 timeout 120 $B/msa_bench_gpu --prefill 32768,131072,1048576 --decode '' --reps 3 --dense-max 0 > $O/bench-v5.md 2>&1; echo "bench v5: exit $? ($((SECONDS-t)) s)" | tee -a $O/summary.txt
t=$SECONDS; MSA_CUDA_WGMMA=1 MSA_TEST_SUITES=cuda MSA_CUDA_QUICK=1 MSA_CUDA_ONLY="oracle:" timeout 150 $B/test_msa > $O/cuda-oracle.log 2>&1; echo "cuda oracle cases: exit $? ($((SECONDS-t)) s): $(grep -E '^ +(tests|asserts) ' $O/cuda-oracle.log | tr -s ' ' | tr '\n' ';')" | tee -a $O/summary.txt
m=gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,lts__t_bytes.sum,smsp__inst_executed.sum
t=$SECONDS; MSA_CUDA_WGMMA=1 timeout 60 ncu --clock-control none --csv --metrics $m -k regex:msa_cu_bscore -c 3 $B/msa_bench_gpu --prefill 32768 --decode '' --reps 1 --ceilings 0 --dense-max 0 > $O/ncu-scorer.csv 2>&1; echo "ncu: exit $? ($((SECONDS-t)) s)" | tee -a $O/summary.txt
t=$SECONDS; MSA_CUDA_WGMMA=1 MSA_TEST_SUITES=cuda MSA_CUDA_ONLY="oracle: gqa" timeout 70 compute-sanitizer --tool memcheck --error-exitcode 3 $B/test_msa > $O/memcheck.log 2>&1; echo "memcheck: exit $? ($((SECONDS-t)) s): $(grep 'ERROR SUMMARY' $O/memcheck.log | tail -1)" | tee -a $O/summary.txt
