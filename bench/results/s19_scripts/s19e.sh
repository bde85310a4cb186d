#!/bin/bash
# Session 19, call 5: GPU suites with the held routes (MOED_CUDA_DEFER_ROUTES on), then 0 against 1
# on one machine: an 8-layer model of the shape otherwise, synthetic routing, cepr and
# freq with LRU at 50% and 25%, batch 1.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m8; L=/tmp/lg; mkdir -p $L
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 8 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
wait
for round in 1 2; do
  for d in 0 1; do
    [ $(( $(date +%s) - T0 )) -gt 165 ] && break 2
    MOED_CUDA_DEFER_ROUTES=$d timeout 40 build-gpu/bench/cuda_bench --backend cuda --policy lru \
      --fracs 0.5,0.25 --prefetch cepr,freq --steps1 4,32 --steps16 1,2 --prefill 1x4 \
      --deadline 25 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
    say "defer=$d rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-8 | tail -n +3 >> $S
    sed "s/^{/{\"defer\": $d, /" /tmp/x.jsonl >> $OUT/s19e_ab.jsonl; rm -f /tmp/x.jsonl
  done
done
say done
