#!/bin/bash
# Session 27, call 5: copy-only (host_threads 0) A/B on one machine, main before this session's
# change (c20581e: host_rev.patch reversed) against HEAD, LRU at 50% with none and cepr,
# synthetic routing, alternating old/new twice.
. bench/gpu_call.sh
. bench/gpu_ab.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
ab_old $PWD/bench/results/s27_scripts/host_rev.patch
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
wait; say ready
for i in 1 2; do
  for side in old new; do
    [ $(( $(date +%s) - T0 )) -gt 420 ] && break
    B=build-gpu; [ $side = old ] && B=/tmp/ab/old/build-gpu
    timeout 100 $B/bench/cuda_bench --backend cuda --policy lru --fracs 0.5 --prefetch none,cepr \
      --steps1 4,32 --steps16 2,16 --prefill 2x256 --deadline 90 $M $M.pack > /tmp/x.txt 2>&1
    say "$side $i rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9 | tail -n +3 >> $S
  done
done
say done
