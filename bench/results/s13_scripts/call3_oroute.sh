#!/bin/bash
# Session 13 call 3: next/oroute. GPU suites (O_ROUTE on, then off), resident quick
# cuda_bench O0/O1 x 3 rounds, moed run O0/O1 x 2, one 50% none/lru round O0/O1.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
gpu_build build-gpu $OUT $S bench/cuda_bench || exit 1
[ -d $M ] || (build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $OUT
grep -E ":F:|:E:|ssertion|max " build-gpu/meson-logs/testlog.txt | head -30 >> $S
MOED_CUDA_O_ROUTE=0 timeout 150 meson test -C build-gpu --no-rebuild cuda exact engine --print-errorlogs > /tmp/t.log 2>&1
say "tests O_ROUTE=0 rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/t.log | tr -s ' ' | tr '\n' ';')"
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
for r in 1 2 3; do for z in 0 1; do bench "O$z" MOED_CUDA_O_ROUTE=$z; done; done
for r in 1 2; do for z in 0 1; do run1 "O$z" MOED_CUDA_O_ROUTE=$z; done; done
for z in 0 1; do
  MOED_CUDA_O_ROUTE=$z timeout 90 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5 \
    --prefetch none --steps1 4,32 --steps16 2,8 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "O$z 50% rc=$?: $(tail -1 /tmp/b.txt | cut -d'|' -f5-12)"
done
say done
