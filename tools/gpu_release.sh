#!/bin/bash
# gpu_release.sh - the release run on a Hopper GPU machine, in one go (device time is
# scarce): the full verify tier (REPORT.md, JUnit), compute-sanitizer memcheck and
# racecheck on short CUDA fuzz runs, and the transformers MiniMax-M3 hook round trip
# (a real implementation nobody here wrote, judged by our oracle).  Each step has a time
# limit so the whole stays under 10 minutes; logs go to OUT_DIR.
#   usage: tools/gpu_release.sh BIN_DIR OUT_DIR [BIG_TRACE.npz]
set -u -o pipefail
bin=$1 out=$2 big=${3:-} traces=traces/data
nvidia-smi -L > "$out/gpu.txt" 2>&1
timeout 330 "$bin/msa" verify --tier full --kernel cuda --kernel cpu-sim --traces "$traces" \
    --report "$out/REPORT.md" --junit "$out/verify.xml" 2>&1 | grep -v 'cases$' > "$out/verify.log"
echo "verify: exit $?"
san() { # tool cases
    timeout 50 "$bin/msa" fuzz --kernel cuda --cases "$2" --max-context 1024 --sanitize "$1" \
        --corpus "/tmp/san-$1" --seed 7 > "$out/$1.log" 2>&1
    echo "compute-sanitizer $1: exit $? ($(grep -c 'ERROR SUMMARY: 0 errors\|RACECHECK SUMMARY: 0 hazards' "$out/$1.log") clean reports)"
}
san memcheck 6
san racecheck 3
{
    timeout 60 python3 traces/python/make_tiny_m3_trace.py --out /tmp/m3_tiny.npz --device cuda &&
    python3 traces/python/msa_trace.py /tmp/m3_tiny.npz &&
    "$bin/msa" replay /tmp/m3_tiny.npz --kernel cpu-sim && "$bin/msa" replay /tmp/m3_tiny.npz --kernel cuda
} > "$out/m3.log" 2>&1
echo "transformers MiniMax-M3 round trip: exit $?"
if [ -n "$big" ]; then # a long real trace (SmolLM2, 8k tokens) through the CUDA kernels
    timeout 60 "$bin/msa" replay "$big" --kernel cuda > "$out/replay-8k.log" 2>&1
    echo "replay $big through cuda: exit $?"
fi
