#!/bin/bash
# Session 24, call 5: cache.scan_resistant with the predictors' prompt tables (freq, cepr:
# the batch table prefetched layer by layer) and a prompt after another (--prefill-calls 2),
# LRU at 50% and 25%, scan 0 and 1; the GPU suites on main.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp $L/tests.log $OUT/s24e_gpu_tests.log
wait; say ready
for sc in 0 1; do
  timeout 200 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5,0.25 --prefetch freq,cepr \
    --routing synthetic --steps1 2,8 --steps16 1,1 --prefill 2x256 --prefill-calls 2 --scan $sc --deadline 150 \
    --json $OUT/s24e_pred.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "scan $sc rc=$?"; grep '^| ' /tmp/b.txt | tail -n +3 | cut -d'|' -f3-12 >> $S
done
say done
