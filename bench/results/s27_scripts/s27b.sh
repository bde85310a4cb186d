#!/bin/bash
# Session 27, call 2: the GPU suites with device.host_threads (test_cuda's host_experts), then
# LRU with none and cepr at 50/25/12.5%, synthetic routing, host threads 0 against 12, one run
# each, the matrix's steps.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep "host experts" build-gpu/meson-logs/testlog.txt >> $S
cp build-gpu/meson-logs/testlog.txt $OUT/s27b_gpu_testlog.txt
wait; say ready
for ht in 0 12; do
  [ $(( $(date +%s) - T0 )) -gt 380 ] && break
  timeout 150 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5,0.25,0.125 \
    --prefetch none,cepr --steps1 4,32 --steps16 2,16 --prefill 2x256 --deadline 140 --host-threads $ht \
    --json $OUT/s27b_host.jsonl $M $M.pack > /tmp/x.txt 2>&1
  say "host_threads $ht rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,12,13 | tail -n +3 >> $S
  tail -3 /tmp/x.txt >> $S
done
say done
