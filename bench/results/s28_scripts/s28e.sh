#!/bin/bash
# Session 28, call 7: the GPU suites after the review's mend of the host pick (c65a7ee), and
# cuda_bench at 25% LRU, none and cepr, host threads 12 (tokens against all resident).
. bench/gpu_call.sh
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -E "host experts|host expert bits|silu_mul" build-gpu/meson-logs/testlog.txt >> $S
wait; say ready
timeout 120 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.25 --prefetch none,cepr \
  --steps1 4,32 --steps16 2,16 --prefill 2x256 --deadline 100 --host-threads 12 $M $M.pack > /tmp/x.txt 2>&1
say "bench rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,12,13 | tail -n +3 >> $S
say done
