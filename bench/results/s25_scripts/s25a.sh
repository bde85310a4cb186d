#!/bin/bash
# Session 25, call 1: a long prompt's chunks run layer by layer (MOED_CUDA_CALL_CHUNKS).
# The GPU suites; prefill 4 x 512 (one call of four chunks) a chunk a call (1) against
# layer by layer (8) at every budget, alternating; with the prompt tables (freq, cepr).
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -h "layer_major" $L/tests.log build-gpu/meson-logs/testlog.txt | head -8 >> $S
cp $L/tests.log $OUT/s25a_gpu_tests.log
wait; say ready
B=build-gpu/bench/cuda_bench
row() { grep '^| ' /tmp/b.txt | tail -n +3 | cut -d'|' -f2-12 >> $S; }
for r in 1 2; do
  for cc in 1 8; do
    [ $(( $(date +%s) - T0 )) -gt 420 ] && break
    MOED_CUDA_CALL_CHUNKS=$cc timeout 100 $B --backend cuda --policy lru --fracs 1,0.5,0.25,0.125 \
      --prefetch none --routing synthetic --steps1 1,2 --steps16 1,1 --prefill 4x512 --deadline 80 \
      --json $OUT/s25a_prefill.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
    say "round $r call_chunks $cc none rc=$?"; row
  done
done
for cc in 1 8; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && break
  MOED_CUDA_CALL_CHUNKS=$cc timeout 100 $B --backend cuda --policy lru --fracs 0.5,0.25 \
    --prefetch freq,cepr --routing synthetic --steps1 1,2 --steps16 1,1 --prefill 4x512 \
    --prefill-calls 2 --deadline 80 --json $OUT/s25a_pred.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "call_chunks $cc freq,cepr prefill-calls 2 rc=$?"; row
done
say done
