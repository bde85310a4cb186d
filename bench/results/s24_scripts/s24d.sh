#!/bin/bash
# Session 24, call 4: cache.scan_resistant (a prefill chunk's loads evicted first, the last
# loaded first). GPU suites; cuda_bench with --prefill-calls 2 (a prompt after another) at
# 50/25/12.5%, scan 0 and 1; 4 x 512 at 50%; the b1/b16 decode rows (one prefill call) with
# scan 0 and 1 alternating.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp $L/tests.log $OUT/s24d_gpu_tests.log
wait; say ready
B=build-gpu/bench/cuda_bench
row() { grep '^| ' /tmp/b.txt | tail -n +3 | cut -d'|' -f3-12 >> $S; }
for sc in 0 1; do
  timeout 150 $B --backend cuda --policy lru --fracs 0.5,0.25,0.125 --prefetch none --routing synthetic \
    --steps1 4,32 --steps16 1,1 --prefill 2x256 --prefill-calls 2 --scan $sc --deadline 120 \
    --json $OUT/s24d_prefill2.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "prefill-calls 2, 2x256, scan $sc rc=$?"; row
done
for sc in 0 1; do
  timeout 100 $B --backend cuda --policy lru --fracs 0.5 --prefetch none --routing synthetic \
    --steps1 1,2 --steps16 1,1 --prefill 4x512 --prefill-calls 2 --scan $sc --deadline 80 \
    --json $OUT/s24d_prefill4.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "prefill-calls 2, 4x512, scan $sc rc=$?"; row
done
for r in 1 2; do for sc in 1 0; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && break 2
  timeout 100 $B --backend cuda --policy lru --fracs 0.5 --prefetch none,cepr --routing synthetic \
    --steps1 4,32 --steps16 1,1 --prefill 1x4 --scan $sc --deadline 80 \
    --json $OUT/s24d_decode.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "decode rows scan $sc rc=$?"; row
done; done
say done
