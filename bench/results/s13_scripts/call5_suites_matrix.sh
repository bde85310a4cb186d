#!/bin/bash
# Session 13 call 5: GPU suites on next/gbest (default, ZOUT=0, ARGMAX=0); if they pass,
# the synthetic matrix call (bench/results/matrix_call.sh TAG=s13 PART=1).
set -u
T0=$(date +%s); P=$OUT/pre.txt; : > $P
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $P; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
gpu_build build-gpu $OUT $P bench/cuda_bench bench/cuda_kprof || exit 1
gpu_test build-gpu $OUT
ok=$(grep -c "FAIL" $OUT/tests.log)
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $P
for v in MOED_CUDA_ZOUT=0 MOED_CUDA_ARGMAX=0; do
  env $v timeout 150 meson test -C build-gpu --no-rebuild cuda exact engine --print-errorlogs > /tmp/t.log 2>&1
  say "tests $v rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/t.log | tr -s ' ' | tr '\n' ';')"
  grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -10 >> $P
done
[ "$ok" = 0 ] || { say "suites failed: no matrix"; exit 1; }
OUT=$OUT TAG=s13 PART=1 bash bench/results/matrix_call.sh
