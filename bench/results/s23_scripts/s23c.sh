#!/bin/bash
# Session 23, call 3: the matrix's one large drop (synthetic cepr/FIFO 12.5%, 40.01 -> 36.69
# tok/s, copies at 50.5 GB/s against 53.3) checked on one machine: main against main with
# s23c.patch reversed (engine as before session 22's change, 9df1217^), alternating, two
# rounds, synthetic routing, cepr with FIFO and LRU at 50% and 12.5%.
. bench/gpu_call.sh
. bench/gpu_ab.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
ab_old bench/results/s23_scripts/s23c.patch
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
wait
[ -x /tmp/ab/old/build-gpu/bench/cuda_bench ] || { say "old build failed"; tail -20 /tmp/ab/old.log >> $S; exit 1; }
say ready
bench() {
  local B=build-gpu/bench/cuda_bench
  [ $1 = old ] && B=/tmp/ab/old/build-gpu/bench/cuda_bench
  timeout 90 $B --backend cuda --policy fifo,lru --fracs 0.5,0.125 --prefetch cepr --routing synthetic \
    --steps1 4,32 --steps16 1,1 --prefill 1x4 --deadline 60 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
  say "$1 rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,23 | tail -n +3 >> $S
  sed "s/^{/{\"build\": \"$1\", /" /tmp/x.jsonl >> $OUT/s23c_ab.jsonl; rm -f /tmp/x.jsonl
}
for round in 1 2 3; do
  for v in new old; do
    [ $(( $(date +%s) - T0 )) -gt 420 ] && break 2
    bench $v
  done
done
grep "^|" /tmp/x.txt | head -2 | cut -d"|" -f3-9,23 >> $S
say done
