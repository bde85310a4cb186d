#!/bin/bash
# Session 25, call 5 (final code): the GPU suites; the next layer prefetched (over any victim but
# the current layer, not only scans' loads) against none, prefill 4 x 512 at every
# budget, alternating, and 8 x 512 at 50%; with the prompt tables.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -h "cuda layer_major" build-gpu/meson-logs/testlog.txt | sort -u >> $S
cp $L/tests.log $OUT/s25e_gpu_tests.log
wait; say ready
B=build-gpu/bench/cuda_bench
row() { grep '^| ' /tmp/b.txt | tail -n +2 | cut -d'|' -f3-12 >> $S; }
for r in 1 2; do
  for a in 0 1; do
    MOED_CUDA_CALL_AHEAD=$a timeout 100 $B --backend cuda --policy lru --fracs 1,0.5,0.25,0.125 \
      --prefetch none --routing synthetic --steps1 1,2 --steps16 1,1 --prefill 4x512 --deadline 80 \
      --json $OUT/s25e_prefill.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
    say "round $r ahead $a 4x512 rc=$?"; row
  done
done
for a in 0 1; do
  MOED_CUDA_CALL_AHEAD=$a timeout 100 $B --backend cuda --policy lru --fracs 0.5 \
    --prefetch none --routing synthetic --steps1 1,2 --steps16 1,1 --prefill 8x512 --deadline 80 \
    --json $OUT/s25e_prefill8.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "ahead $a 8x512 rc=$?"; row
done
MOED_CUDA_CALL_AHEAD=1 timeout 100 $B --backend cuda --policy lru --fracs 0.5,0.25 \
  --prefetch freq,cepr --routing synthetic --steps1 1,2 --steps16 1,1 --prefill 4x512 \
  --prefill-calls 2 --deadline 80 --json $OUT/s25e_pred.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
say "ahead 1 freq,cepr prefill-calls 2 rc=$?"; row
say done
