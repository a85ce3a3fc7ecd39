#!/bin/sh
# slurm_example.sh - fuzzing across machines as a Slurm job array (an example to adapt,
# not a tested deployment).  Each array task runs one shard of the same seeded case stream
# (shards partition it: task I runs case ids I, I+N, I+2N, ...) on every GPU of its node,
# with its own corpus folder; a last job joins the summaries and corpora.
#
#   sbatch fuzz/slurm_example.sh                          # 8 shards, one hour each
#   sbatch --dependency=afterany:JOBID --wrap 'build/msa fuzz merge --out fuzz/merged fuzz/shards/*'
#
# Every failure found is shrunk, stored in the task's corpus as a case file, and printed
# with a one-line repro (`msa fuzz --kernel cuda --replay FILE`); copy the merged corpus
# into fuzz/corpus to have every later campaign replay it first.
#SBATCH --job-name=msa-fuzz
#SBATCH --array=0-7
#SBATCH --nodes=1
#SBATCH --gres=gpu:8
#SBATCH --time=01:10:00
#SBATCH --output=fuzz-%A_%a.log

set -eu
SHARDS=${SLURM_ARRAY_TASK_COUNT:-8}
SHARD=${SLURM_ARRAY_TASK_ID:-0}
SEED=${MSA_FUZZ_SEED:-20261122}
OUT=fuzz/shards/shard-$SHARD
mkdir -p "$OUT"

# --devices all: one worker process per GPU of the node (CUDA_VISIBLE_DEVICES=i each).
# Exit status 1 only means the shard found a failure; keep going so merge sees it.
build/msa fuzz --kernel cuda --seed "$SEED" --shard "$SHARD/$SHARDS" --budget 3600 \
    --devices all --max-context 131072 --corpus "$OUT" \
    --summary "$OUT/summary-$SHARD.json" --junit "$OUT/junit-$SHARD.xml" || test $? -eq 1
