#!/bin/bash
# Session 21, call 4: MOED_CUDA_PROFILE's per-layer split (host and GPU clocks) on main, batch 1,
# prefetch none, LRU, all resident (each run makes that row first) and 50%, synthetic then replayed routing.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
say model
for r in synthetic trace:.deps/nvmoe-olmoe-all.tokens.jsonl; do
  for f in 0.5; do
    MOED_CUDA_PROFILE=1 timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs $f \
      --prefetch none --routing $r --steps1 4,32 --steps16 1,1 --prefill 1x4 --deadline 40 \
      $M $M.pack > /tmp/x.txt 2> /tmp/x.err
    say "$r $f rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9 | tail -n +3 >> $S
    grep "cuda profile" /tmp/x.err >> $S
  done
done
say done
