#!/bin/bash
# Session 24, call 7: main at its final code (prompt rows, two cold classes): the GPU suites;
# a prompt after another at 50% and 25% (scan 1); the decode rows at 50% with scan 1 and 0.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp $L/tests.log $OUT/s24g_gpu_tests.log
wait; say ready
B=build-gpu/bench/cuda_bench
row() { grep '^| ' /tmp/b.txt | tail -n +3 | cut -d'|' -f3-12 >> $S; }
timeout 120 $B --backend cuda --policy lru --fracs 0.5,0.25 --prefetch none --routing synthetic \
  --steps1 4,32 --steps16 1,1 --prefill 2x256 --prefill-calls 2 --scan 1 --deadline 100 \
  --json $OUT/s24g_prefill2.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
say "prefill-calls 2 rc=$?"; row
for sc in 1 0; do
  [ $(( $(date +%s) - T0 )) -gt 330 ] && break
  timeout 100 $B --backend cuda --policy lru --fracs 0.5 --prefetch none,cepr --routing synthetic \
    --steps1 4,32 --steps16 1,1 --prefill 1x4 --scan $sc --deadline 80 \
    --json $OUT/s24g_decode.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "decode rows scan $sc rc=$?"; row
done
say done
