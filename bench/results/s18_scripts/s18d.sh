#!/bin/bash
# Session 18, call 4: GPU suites on the idle mode's commit, then MOED_CUDA_PREFETCH_QUEUE 1 against
# 2 (idle) on one machine, synthetic and replayed routing, batch 1 and 16.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -A3 "backend_prefetch_queue" build-gpu/meson-logs/testlog.txt | head -5 >> $S
wait
for round in 1 2; do
  for rt in synthetic trace:.deps/nvmoe-olmoe-all.tokens.jsonl; do
    for q in 1 2; do
      [ $(( $(date +%s) - T0 )) -gt 330 ] && break 3
      MOED_CUDA_PREFETCH_QUEUE=$q timeout 55 build-gpu/bench/cuda_bench --backend cuda --policy lru \
        --fracs 0.5,0.25,0.125 --prefetch cepr,freq --routing $rt --steps1 4,32 --steps16 2,16 \
        --prefill 1x4 --deadline 40 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
      say "$rt queue=$q rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-8 | tail -n +3 >> $S
      sed "s/^{/{\"queue\": $q, /" /tmp/x.jsonl >> $OUT/s18d_ab.jsonl; rm -f /tmp/x.jsonl
    done
  done
done
say done
