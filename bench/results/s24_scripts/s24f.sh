#!/bin/bash
# Session 24, call 6: main with cepr's kept logs: the GPU suites; the second prompt's prefill
# with the predictors' tables (as call 5, scan on), twice.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp $L/tests.log $OUT/s24f_gpu_tests.log
wait; say ready
for r in 1 2; do
  timeout 200 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5,0.25 --prefetch freq,cepr \
    --routing synthetic --steps1 2,8 --steps16 1,1 --prefill 2x256 --prefill-calls 2 --scan 1 --deadline 150 \
    --json $OUT/s24f_pred.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "round $r rc=$?"; grep '^| ' /tmp/b.txt | tail -n +3 | cut -d'|' -f3-12 >> $S
done
say done
