#!/bin/bash
# Session 20, call 6: MOED_CUDA_DEFER_ROUTES 0 against 1 (the default) on the 16-layer model,
# replayed routing (not measured there in session 19): cepr and freq with LRU and FIFO at 50%
# and 25%, batch 1, alternating, two rounds as time allows.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
GPU_SUITES=cache gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
say model
for round in 1 2; do
  for d in 0 1; do
    [ $(( $(date +%s) - T0 )) -gt 250 ] && break 2
    MOED_CUDA_DEFER_ROUTES=$d timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru,fifo \
      --fracs 0.5,0.25 --prefetch cepr,freq --routing trace:.deps/nvmoe-olmoe-all.tokens.jsonl \
      --steps1 4,32 --steps16 1,1 --prefill 1x4 --deadline 40 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
    say "defer=$d rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-8 | tail -n +3 >> $S
    sed "s/^{/{\"defer\": $d, /" /tmp/x.jsonl >> $OUT/s20d_ab.jsonl; rm -f /tmp/x.jsonl
  done
done
say done
