#!/bin/bash
# Session 23, call 6: call 5's build (the two splits) without MOED_CUDA_PROFILE, the rows of
# section 2's matrix it can be held against (resident, none and cepr with LRU at 50%).
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
for i in 1 2; do
  timeout 90 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5 \
    --prefetch none,cepr --routing synthetic --steps1 4,32 --steps16 2,16 --prefill 2x256 --deadline 60 \
    --json $OUT/s23f_bench.jsonl $M $M.pack > /tmp/x.txt 2> /tmp/x.err
  say "bench rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,23 | tail -n +3 >> $S
done
say done
