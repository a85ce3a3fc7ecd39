#!/bin/bash
# gpu_val_run.sh - a short device check of kernel changes before a release run.
#   PART=prefill (default): the quick CUDA suite (oracle cases, mutants, the M3 long cases)
#     without the bench-size tests, prefill/decode at 1M (the default top-k fast path and the
#     search alone: MSA_CUDA_TOPK=0), racecheck on the gqa prefill cases.  ~7 minutes on an
#     H100 (the suite's M3 8k dense judge alone runs past its 330 s limit).
#   PART=decode: the oracle at every decode size benchmarked (the bench-size decode cases),
#     the M3 long decode cases, memcheck on the decode and gqa oracle cases, racecheck on the
#     decode cases, Nsight Compute kernel times of decode 1M (bf16 and e4m3 index keys), and
#     decode timed beside the build in $B/old (if there: an A/B of a kernel change, same run).
#   PART=ab: the oracle cases, the oracle at prefill 1M, memcheck on the gqa and decode cases,
#     prefill/decode 1M timed for this build and the one in $B/old (16 GiB workspace) and this
#     one with 32 GiB, then the SDPA peer at 1M in the same run.  ~5 minutes.
#   PART=sizes: the oracle at every size the benchmark times (all the suite's bench-size
#     cases: prefill 8k..1M, decode 32k..1M, e4m3, 16 tokens, batch 8).  ~4 minutes.
#   PART=tune: decode 1M at scan CTA sizes MSA_CUDA_DBPC=4..32 (bf16 and e4m3 keys), beside
#     $B/old at its default, and a full Nsight Compute profile of the decode kernels.
#   PART=sizes+tune: both, in one call.
#   PART=optin (gpu-run20; the two are defaults since): the bench-size oracle cases and memcheck on the decode cases under the
#     opt-ins MSA_CUDA_TOPK=2 and MSA_CUDA_DBPC=16, decode 1M with and without, Nsight Compute
#     of our dense kernel at 8k, prefill 1M with and without.
#   PART=final: the bench-size oracle cases, memcheck and racecheck on the decode cases,
#     decode and prefill 1M beside $B/old, then the quick verify with the report's bench sizes
#     (REPORT.md, verify.xml) in what is left of FINAL_LIMIT (585 s).
# Run from the repository root with build/gpu carried; logs under /tmp/v (PACK_TO=FILE: packed
# there as they come).
O=/tmp/v; B=build/gpu; BG=$B/msa_bench_gpu; mkdir -p $O; export MSA_CUDA_WS_MB=16384
# st NAME LIMIT CMD...: CMD under a time limit, its log in $O/NAME.log; with $PACK_TO set,
# $O is packed there after each step (what a device call returns if it is cut off)
st() {
    local n=$1 to=$2; shift 2; local t=$SECONDS; timeout $to "$@" > $O/$n.log 2>&1; echo "$n: exit $? ($((SECONDS-t)) s)"
    [ -n "${PACK_TO:-}" ] && tar czf "$PACK_TO.tmp" -C $O . && mv "$PACK_TO.tmp" "$PACK_TO"
    return 0
}
cs() { grep -E '^ +(tests|asserts) |Incorrect|Failed |ERROR SUMMARY|RACECHECK SUMMARY' $O/$1.log | head -8; }
# the bench binary of an A/B arm (new: this build, old: the one in $B/old); empty if absent
bin_of() { local bg=$BG; [ "$1" = old ] && bg=$B/old/msa_bench_gpu; [ -x "$bg" ] && echo "$bg"; }
# the table rows of a bench log
rows() { grep -E '^\| [0-9]' $O/$1.log; }
# the CUDA suite's tests whose name contains SEL, plain or under a compute-sanitizer tool:
# ts NAME LIMIT SEL [memcheck|racecheck]
ts() {
    local n=$1 to=$2 sel=$3 tool=${4:-}
    if [ -n "$tool" ]; then MSA_TEST_SUITES=cuda MSA_CUDA_ONLY="$sel" st $n $to compute-sanitizer --tool $tool --error-exitcode 3 $B/test_msa
    else MSA_TEST_SUITES=cuda MSA_CUDA_ONLY="$sel" st $n $to $B/test_msa; fi
    cs $n
}
if [ "${PART:-prefill}" = prefill ]; then
MSA_TEST_SUITES=cuda MSA_CUDA_QUICK=1 MSA_CUDA_SKIP="bench size" st suite 330 $B/test_msa; cs suite
st bench 90 $BG --prefill 1048576 --decode 32768,1048576 --reps 3 --dense-max 0 --ceilings 0; rows bench
MSA_CUDA_TOPK=0 st bench-oldtopk 40 $BG --prefill 1048576 --decode 1048576 --reps 1 --dense-max 0 --ceilings 0; rows bench-oldtopk
ts racecheck 100 "oracle: gqa" racecheck
elif [ "$PART" = sizes ] || [ "$PART" = sizes+tune ]; then
ts bench-size 400 "bench size:"
[ "$PART" = sizes+tune ] && PART=tune bash "$0"
elif [ "$PART" = final ]; then
# one call before a release: the oracle at every bench size, memcheck and racecheck on the
# decode cases, decode 1M beside $B/old, then verify (REPORT.md) in the time that is left
ts bench-size 120 "bench size:"
ts memcheck-decode 60 "oracle: decode" memcheck
ts racecheck-decode 60 "oracle: decode" racecheck
for t in bf16 e4m3; do
    for v in new old; do
        bg=$(bin_of $v) || continue
        st dec-$t-$v 20 $bg --prefill '' --decode 1048576 --index-dtype $t --reps 30 --dense-max 0 --ceilings 0
        echo "$t $v: $(rows dec-$t-$v)"
    done
done
for v in new old; do
    bg=$(bin_of $v) || continue
    st pre-$v 60 $bg --prefill 1048576 --decode '' --reps 3 --dense-max 0 --ceilings 0
    echo "prefill 1M $v: $(rows pre-$v)"
done
left=$((${FINAL_LIMIT:-585} - SECONDS - 5))
st verify $left $B/msa verify --tier quick --kernel cuda --kernel cpu-sim --traces traces/data \
    --bench-prefill 8192,32768,131072,1048576 --bench-decode 32768,131072,1048576 \
    --report $O/REPORT.md --junit $O/verify.xml
tail -3 $O/verify.log
elif [ "$PART" = optin ]; then
# judges two opt-ins in one short call (gpu-run20; both default since, so TOPK=2 is the
# default's value now: compare against MSA_CUDA_TOPK=1): $MSA_CUDA_TOPK=2 (the shortened bound search) and
# $MSA_CUDA_DBPC=16: the bench-size oracle cases and memcheck on the decode cases under both,
# then decode and prefill 1M timed with and without them
MSA_CUDA_TOPK=2 MSA_CUDA_DBPC=16 ts bench-size-optin 120 "bench size:"
MSA_CUDA_TOPK=2 MSA_CUDA_DBPC=16 ts memcheck-decode-optin 60 "oracle: decode" memcheck
for t in e4m3 bf16; do
    for e in "" "MSA_CUDA_TOPK=2" "MSA_CUDA_TOPK=2 MSA_CUDA_DBPC=16"; do
        n=dec-$t-$(echo "${e:-default}" | tr ' =' '__')
        st $n 20 env $e $BG --prefill '' --decode 1048576 --index-dtype $t --reps 30 --dense-max 0 --ceilings 0
        echo "$t ${e:-default}: $(rows $n)"
    done
done
st ncu-dense-8k 60 ncu --clock-control none --section SpeedOfLight --section Occupancy --section WarpStateStats \
    --section SchedulerStats -k regex:msa_cu_dense -c 1 $BG --prefill 8192 --decode '' --reps 1 --ceilings 0
for e in "" "MSA_CUDA_TOPK=2"; do
    n=pre-$(echo "${e:-default}" | tr ' =' '__')
    st $n 60 env $e $BG --prefill 1048576 --decode '' --reps 3 --dense-max 0 --ceilings 0
    echo "prefill 1M ${e:-default}: $(rows $n)"
done
elif [ "$PART" = tune ]; then
# decode 1M: scan CTA sizes ($MSA_CUDA_DBPC), this build beside $B/old, then an Nsight
# Compute profile of the four decode kernels (occupancy, stall reasons, clocks)
for t in bf16 e4m3; do
    for v in new old; do
        for n in 4 8 16 32; do
            bg=$(bin_of $v) || continue
            [ $v = old ] && [ $n != 4 ] && continue
            MSA_CUDA_DBPC=$n st tune-$t-$v-$n 40 $bg --prefill '' --decode 1048576 --index-dtype $t --reps 50 --dense-max 0 --ceilings 0
            echo "$t $v dbpc $n: $(rows tune-$t-$v-$n)"
        done
    done
    st ncu-full-$t 90 ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats \
        --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis -k regex:msa_cu_d -c 8 \
        $BG --prefill '' --decode 1048576 --index-dtype $t --reps 1 --ceilings 0 --dense-max 0
done
elif [ "$PART" = ab ]; then
MSA_CUDA_QUICK=1 ts oracle 120 "oracle:"
ts bench-size-1m 120 "bench size: prefill 1M"
for c in gqa decode; do
    ts memcheck-$c 60 "oracle: $c" memcheck
done
for v in new old new32; do
    bg=$(bin_of $v) || continue; ws=16384; [ $v = new32 ] && ws=32768
    MSA_CUDA_WS_MB=$ws st bench-$v 90 $bg --prefill 1048576 --decode 1048576 --reps 3 --dense-max 0 --ceilings 0
    rows bench-$v
done
st sdpa 200 python3 bench/sdpa_peer.py --prefill 1048576 --decode 1048576; rows sdpa
else
ts bench-size-decode 200 "bench size: decode"
ts m3-decode 90 "M3 decode"
ts memcheck-decode 60 "oracle: decode" memcheck
ts memcheck-gqa 60 "oracle: gqa" memcheck
ts racecheck-decode 60 "oracle: decode" racecheck
m=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size
for t in bf16 e4m3; do
    for v in new old; do
        bg=$(bin_of $v) || continue
        st bench-dec-$t-$v 60 $bg --prefill '' --decode 32768,1048576 --index-dtype $t --reps 30 --dense-max 0 --ceilings 0
        rows bench-dec-$t-$v
    done
    st ncu-dec-1m-$t 60 ncu --clock-control none --csv --metrics $m -k regex:msa_cu_d -c 8 $BG --prefill '' --decode 1048576 --index-dtype $t --reps 1 --ceilings 0 --dense-max 0
done
fi
