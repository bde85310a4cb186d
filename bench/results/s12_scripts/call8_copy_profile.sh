#!/bin/bash
# Session 12 call 8: the copy stream's busy and idle time at 50%, b1 (MOED_CUDA_PROFILE's
# copy timing in loader/backend_cuda.c), no prediction, cepr and layer-ahead prefetch of all.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
gpu_build build-gpu /tmp $S bench/cuda_bench || exit 1
[ -d $M ] || build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1
say "mk rc=$?"
for p in none cepr all; do
  MOED_CUDA_PROFILE=1 timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5 --prefetch $p \
    --steps1 4,32 --steps16 1,1 --prefill 1x4 $M $M.pack > /tmp/b.txt 2>&1
  say "$p rc=$?"
  grep -E '^\| synthetic|cuda profile' /tmp/b.txt >> $S
done
say done
