#!/bin/bash
# Session 12 call 6: where a one-row step's MoE layer spends its time at a budget
# (MOED_CUDA_PROFILE's expert-source split), b1 only.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
gpu_build build-gpu /tmp $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1
say "mk rc=$?"
for c in "lru none 0.5" "lru cepr 0.5" "lru freq 0.5" "lru none 0.25" "lru all 0.5"; do
  set -- $c
  MOED_CUDA_PROFILE=1 timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy $1 --fracs $3 --prefetch $2 \
    --steps1 4,32 --steps16 1,1 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "$c rc=$?: $(grep '^| synthetic' /tmp/b.txt | tail -1 | cut -d'|' -f5,7,9,11)"
  grep 'MoE layers' /tmp/b.err | tail -1 | sed 's/moed: cuda profile: //' >> $S
done
say done
