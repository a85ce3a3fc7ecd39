#!/bin/bash
# gpu_release.sh - the release run on a Hopper GPU machine, in one go (device time is
# scarce): the full verify tier (REPORT.md, JUnit) over the cuda and cpu-sim kernels and
# every trace given, compute-sanitizer memcheck and racecheck (short CUDA fuzz runs and the
# CUDA suite's oracle-judged decode-path cases), the transformers MiniMax-M3 hook round
# trip (a real implementation nobody here wrote, judged by our oracle), and the e4m3-index
# decode benchmark (verify's own bench check times the rest, with the SDPA peer).  Each step has a time limit so the whole stays under 10
# minutes; logs go to OUT_DIR.
#   usage: tools/gpu_release.sh BIN_DIR OUT_DIR [TRACE.npz ...]
# BIN_DIR holds msa, test_msa, libmsa_cuda.so, msa_bench_gpu and mutants/ (built on the
# dev machine); traces/data is always replayed, the TRACE.npz arguments too.
# Environment: MSA_COMMIT (the commit the binaries were built from: REPORT.md says it), VERIFY_TIER (full), VERIFY_LIMIT (420 s), BENCH_PREFILL / BENCH_DECODE
# (verify's --bench-prefill / --bench-decode: the sizes of the report's benchmark table),
# RACECHECK_CASES ("oracle: decode"), SAN_CASES=0 skips the sanitizers on the suite's cases, BENCH_SIZE=prefill
# only the prefill bench-size cases, M3=0 skips the transformers round trip, PACK=1 packs OUT_DIR into one archive.
set -u -o pipefail
bin=$1 out=$2
shift 2
tr=(--traces traces/data)
for t in "$@"; do tr+=(--traces "$t"); done
nvidia-smi -L > "$out/gpu.txt" 2>&1
export MSA_CUDA_WS_MB=${MSA_CUDA_WS_MB:-16384} # 16 GiB: 41 chunks at 1M, not 162 (bench/NOTES.md 2026-12-07)
t0=$SECONDS
bargs=()
[ -n "${BENCH_PREFILL+x}" ] && bargs+=(--bench-prefill "$BENCH_PREFILL")
[ -n "${BENCH_DECODE+x}" ] && bargs+=(--bench-decode "$BENCH_DECODE")
timeout ${VERIFY_LIMIT:-420} "$bin/msa" verify --tier "${VERIFY_TIER:-full}" --kernel cuda --kernel cpu-sim "${tr[@]}" ${bargs[@]+"${bargs[@]}"} \
    --report "$out/REPORT.md" --junit "$out/verify.xml" 2>&1 | grep -v 'cases$' > "$out/verify.log"
echo "verify: exit $? ($((SECONDS - t0)) s)"
san() { # tool cases
    timeout 35 "$bin/msa" fuzz --kernel cuda --cases "$2" --max-context 1024 --sanitize "$1" \
        --corpus "/tmp/san-$1" --seed 7 > "$out/$1.log" 2>&1
    echo "compute-sanitizer $1 (fuzz): exit $? ($(grep -c 'ERROR SUMMARY: 0 errors\|RACECHECK SUMMARY: 0 hazards' "$out/$1.log") clean reports)"
}
san memcheck 4
# BENCH_SIZE=prefill: only the prefill bench-size cases (device time)
if [ "${BENCH_SIZE:-all}" = prefill ]; then BENCH_SIZE_SEL=("bench size: prefill"); else BENCH_SIZE_SEL=("bench size: prefill" "on the prefill kernels"); fi
# the oracle at the benchmark's prefill sizes (and decode 1M through the prefill kernels)
for sel in "${BENCH_SIZE_SEL[@]}"; do
    t0=$SECONDS
    MSA_TEST_SUITES=cuda MSA_CUDA_ONLY="$sel" timeout 100 "$bin/test_msa" >> "$out/bench-size.log" 2>&1
    echo "oracle at bench sizes ($sel): exit $? ($((SECONDS - t0)) s): $(grep -cE '(selection|forward) +Passed' "$out/bench-size.log") Passed lines so far"
done
if [ "${SAN_CASES:-1}" != 0 ]; then # SAN_CASES=0: no sanitizer runs on the suite's cases
t0=$SECONDS
MSA_TEST_SUITES=cuda MSA_CUDA_ONLY="oracle: gqa" timeout 40 compute-sanitizer --tool memcheck \
    --error-exitcode 3 "$bin/test_msa" > "$out/memcheck-gqa.log" 2>&1
echo "compute-sanitizer memcheck (cuda suite gqa prefill cases): exit $? ($((SECONDS - t0)) s): $(grep -E 'ERROR SUMMARY' "$out/memcheck-gqa.log" | tail -1)"
t0=$SECONDS
rc_sel=${RACECHECK_CASES:-oracle: decode}
MSA_TEST_SUITES=cuda MSA_CUDA_ONLY="$rc_sel" timeout 60 compute-sanitizer --tool racecheck \
    --error-exitcode 3 "$bin/test_msa" > "$out/racecheck.log" 2>&1
echo "compute-sanitizer racecheck (cuda suite '$rc_sel' cases, oracle-judged): exit $? ($((SECONDS - t0)) s): $(grep -E 'RACECHECK SUMMARY' "$out/racecheck.log" | tail -1)"
fi
if [ "${M3:-1}" != 0 ]; then
{
    timeout 60 python3 traces/python/make_tiny_m3_trace.py --out /tmp/m3_tiny.npz --device cuda &&
    python3 traces/python/msa_trace.py /tmp/m3_tiny.npz &&
    "$bin/msa" replay /tmp/m3_tiny.npz --kernel cpu-sim && "$bin/msa" replay /tmp/m3_tiny.npz --kernel cuda
} > "$out/m3.log" 2>&1
echo "transformers MiniMax-M3 round trip: exit $?"
fi
# verify's bench check (in REPORT.md) times bf16 index keys; the e4m3 index path beside it
if [ -x "$bin/msa_bench_gpu" ]; then
    timeout 25 "$bin/msa_bench_gpu" --prefill '' --decode 32768,1048576 --reps 7 --index-dtype e4m3 --ceilings 0 \
        > "$out/bench-e4m3.md" 2>&1
    echo "bench e4m3 index: exit $?"
fi
# the device tool brings back at most 8 files: PACK=1 packs OUT_DIR into one archive
if [ "${PACK:-0}" = 1 ]; then
    (cd "$out" && tar czf /tmp/release.tgz . && find . -mindepth 1 -delete && mv /tmp/release.tgz release.tgz)
fi
