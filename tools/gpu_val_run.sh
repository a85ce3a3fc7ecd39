#!/bin/bash
# gpu_val_run.sh - a short device check of kernel changes before a release run: the quick CUDA
# suite (oracle cases, mutants, decode) without the bench-size tests, prefill/decode at 1M (with
# the top-k fast path and without it: MSA_CUDA_TOPK=1 / 0), racecheck on the gqa prefill cases.
# MSA_CUDA_TOPK=1 is exported: the opt-in fast path is what this run judges.
# Run from the repository root with build/gpu carried; logs under /tmp/v.
O=/tmp/v; B=build/gpu; BG=$B/msa_bench_gpu; mkdir -p $O; export MSA_CUDA_WS_MB=16384 MSA_CUDA_TOPK=1
st() { local n=$1 to=$2; shift 2; local t=$SECONDS; timeout $to "$@" > $O/$n.log 2>&1; echo "$n: exit $? ($((SECONDS-t)) s)"; }
MSA_TEST_SUITES=cuda MSA_CUDA_QUICK=1 MSA_CUDA_SKIP="bench size" st suite 200 $B/test_msa; grep -E '^ +(tests|asserts) |FAIL|Failed' $O/suite.log | head -8
st bench 90 $BG --prefill 1048576 --decode 32768,1048576 --reps 3 --dense-max 0 --ceilings 0; grep -E '^\| [0-9]' $O/bench.log
st bench-e4m3 40 $BG --prefill '' --decode 1048576 --index-dtype e4m3 --reps 10 --dense-max 0 --ceilings 0; grep -E '^\| [0-9]' $O/bench-e4m3.log
MSA_CUDA_TOPK=0 st bench-oldtopk 40 $BG --prefill 1048576 --decode 1048576 --reps 1 --dense-max 0 --ceilings 0; grep -E '^\| [0-9]' $O/bench-oldtopk.log
MSA_TEST_SUITES=cuda MSA_CUDA_ONLY="oracle: gqa" st racecheck 100 compute-sanitizer --tool racecheck --error-exitcode 3 $B/test_msa; grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $O/racecheck.log | tail -2
