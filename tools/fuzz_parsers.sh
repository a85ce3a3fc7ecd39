#!/bin/sh
# fuzz_parsers.sh - runs every libFuzzer target in build/libfuzzer for SECONDS each with a
# seed corpus of valid files made here, and writes build/libfuzzer/stats.md (executions
# per target, crashes).  Exit 1 when a target crashed (the input is kept under
# build/libfuzzer/crashes/ and becomes a regression test), 0 otherwise.
#   usage: tools/fuzz_parsers.sh SECONDS [MSA_BINARY]
set -u
secs=${1:-10}
msa=${2:-build/msa}
lf=build/libfuzzer
mkdir -p $lf/crashes
stats=$lf/stats.md
printf '| target | seconds | executions | exec/s | crashes |\n|---|---:|---:|---:|---:|\n' > $stats.tmp
fail=0
seed_dir() { d=$lf/corpus/$1; mkdir -p "$d"; echo "$d"; }
# seeds: valid case files (stored and deflated), configs, a GGUF header
c=$(seed_dir fuzz_npz_case)
$msa gen -o "$c/seed1.npz" --lq 5,3 --lk 40,20 --hq 4 --hkv 2 --d 16 --di 16 --block 8 --topk 2 >/dev/null 2>&1
$msa gen -o "$c/seed2.npz" --lq 9 --lk 30 --hq 2 --hkv 1 --d 8 --di 8 --block 4 --topk 3 --paged 2 --dtype e4m3 >/dev/null 2>&1
c=$(seed_dir fuzz_trace); cp $lf/corpus/fuzz_npz_case/*.npz "$c/" 2>/dev/null
c=$(seed_dir fuzz_npy)
if [ -f $lf/corpus/fuzz_npz_case/seed1.npz ] && command -v python3 >/dev/null; then
  python3 - "$lf/corpus/fuzz_npz_case/seed1.npz" "$c" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for i, n in enumerate(z.namelist()[:6]):
    open("%s/seed%d.npy" % (sys.argv[2], i), "wb").write(z.read(n))
PY
fi
c=$(seed_dir fuzz_json)
printf '{"dtype":"bf16","block_size":128,"topk":16,"init_blocks":0,"local_blocks":1,"softmax_scale":null,"index_scale":0.125,"causal":true}' > "$c/seed1.json"
printf '[1,-2.5e-3,"\\u00e9\\ud83d\\ude00",{"a":[true,false,null]}]' > "$c/seed2.json"
c=$(seed_dir fuzz_gguf)
printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' > "$c/seed1.gguf"
for t in $lf/fuzz_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  log=$lf/$name.log
  ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
    "$t" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=4096 -malloc_limit_mb=4096 \
    -artifact_prefix=$lf/crashes/$name- $lf/corpus/$name > "$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  crashes=0
  if [ $rc -ne 0 ]; then crashes=1; fail=1; echo "fuzz_parsers: $name CRASHED (see $log, input in $lf/crashes/)"; fi
  rate=$(( ${execs:-0} / (secs > 0 ? secs : 1) ))
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$secs" "${execs:-0}" "$rate" "$crashes" >> $stats.tmp
done
mv $stats.tmp $stats
cat $stats
exit $fail
