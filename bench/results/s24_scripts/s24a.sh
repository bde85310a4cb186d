#!/bin/bash
# Session 24, call 1: the GPU suites on main at c1aada3 (test_cuda's override_probs takes the
# model config from the loaded fixture, compile-checked only in session 23); a short bench
# against session 23's matrix rows.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
git log --oneline -1 >> $S 2>/dev/null
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp $L/tests.log $OUT/s24a_gpu_tests.log
grep -E "skipped|test_cuda" build-gpu/meson-logs/testlog.txt | head -5 >> $S
wait
timeout 120 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5,0.125 \
  --prefetch none,cepr --routing synthetic --steps1 4,32 --steps16 1,1 --prefill 2x256 --deadline 100 \
  --json $OUT/s24a_bench.jsonl $M $M.pack > /tmp/x.txt 2> /tmp/x.err
say "bench rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,23 | tail -n +3 >> $S
tail -3 /tmp/x.err >> $S
say done
