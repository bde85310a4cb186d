#!/bin/bash
# Session 13 call 1: next/zout. GPU suites (ZOUT default on; then ROWG=1), then resident b1
# quick cuda_bench and moed run per setting (MOED_CUDA_ZOUT x MOED_CUDA_ROWG), three rounds.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
gpu_build build-gpu $OUT $S bench/cuda_bench || exit 1
[ -d $M ] || (build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $OUT
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head -5 >> $S
MOED_CUDA_ROWG=1 timeout 150 meson test -C build-gpu --no-rebuild $GPU_SUITES --print-errorlogs > /tmp/t.log 2>&1
say "tests ROWG=1 rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/t.log | tr -s ' ' | tr '\n' ';')"
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head -5 >> $S
MOED_CUDA_ZOUT=0 timeout 150 meson test -C build-gpu --no-rebuild cuda exact --print-errorlogs > /tmp/t.log 2>&1
say "tests ZOUT=0 rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/t.log | tr -s ' ' | tr '\n' ';')"
wait; say "mk done"
bench() {  # NAME env...
  local n=$1; shift
  env "$@" MOED_CUDA_PROFILE=1 timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 1 \
    --prefetch none --steps1 8,64 --steps16 4,32 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "$n rc=$?: $(tail -1 /tmp/b.txt | cut -d'|' -f6-9) $(grep -o 'graph on GPU [0-9.]*, launch to logits on host [0-9.]*' /tmp/b.err | tr '\n' ' ')"
}
run1() {
  local n=$1; shift
  env "$@" MOED_CUDA_PROFILE=1 timeout 60 build-gpu/daemon/moed run --model $M --set model.pack=$M.pack \
      --tokens 5,17,42,99,3,250,1000,7 --max-tokens 256 --max-ctx 512 --backend cuda --json > /tmp/r.txt 2> /tmp/r.err
  say "$n run rc=$?: $(grep -o '"decode_tok_s":[0-9.]*' /tmp/r.txt) $(grep -o '"tokens":\[[0-9,]*' /tmp/r.txt | head -c 50) $(grep 'fast steps' /tmp/r.err | cut -d: -f3-)"
}
for r in 1 2 3; do
  for z in 0 1; do for g in 0 1; do bench "Z$z R$g" MOED_CUDA_ZOUT=$z MOED_CUDA_ROWG=$g; done; done
done
for z in 0 1; do for g in 0 1; do run1 "Z$z R$g" MOED_CUDA_ZOUT=$z MOED_CUDA_ROWG=$g; done; done
say done
