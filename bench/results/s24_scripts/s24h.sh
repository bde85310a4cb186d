#!/bin/bash
# Session 24, call 8: the GPU suites on main's final code (the prompt-rows hint in engine.c, the
# cache's lifecycle in cache_open.c); a prompt after another at 50% (scan on).
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp $L/tests.log $OUT/s24h_gpu_tests.log
wait; say ready
timeout 90 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5 --prefetch none --routing synthetic \
  --steps1 2,8 --steps16 1,1 --prefill 2x256 --prefill-calls 2 --deadline 60 \
  --json $OUT/s24h_prefill2.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
say "prefill-calls 2 rc=$?"; grep '^| ' /tmp/b.txt | tail -n +3 | cut -d'|' -f3-12 >> $S
say done
