#!/bin/bash
# Session 26, call 4: the GPU suites on the tree with cache.policy lfuda; then LRU, LFU and
# LFUDA with cepr and freq at 50/25/12.5%, both routings, the matrix's steps, one run each.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -c "lfuda" build-gpu/meson-logs/testlog.txt >> $S
cp build-gpu/meson-logs/testlog.txt $OUT/s26d_gpu_testlog.txt
wait; say ready
for rt in synthetic trace:.deps/nvmoe-olmoe-all.tokens.jsonl; do
  [ $(( $(date +%s) - T0 )) -gt 330 ] && break
  timeout 200 build-gpu/bench/cuda_bench --backend cuda --policy lru,lfu,lfuda --fracs 0.5,0.25,0.125 \
    --prefetch cepr,freq --routing $rt --steps1 4,32 --steps16 2,16 --prefill 2x256 --deadline 180 \
    --json $OUT/s26d_policies.jsonl $M $M.pack > /tmp/x.txt 2>&1
  say "$rt rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,12,13,15,16 | tail -n +3 >> $S
done
say done
