#!/bin/bash
# Session 19, call 4: the 50% and 25% rows again (every policy and predictor), idle-mode
# pieces of 1024 KiB (the default) and 512 KiB alternating, synthetic and replayed routing.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
say "$(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
for rt in synthetic trace:.deps/nvmoe-olmoe-all.tokens.jsonl; do
  for p in 1024 512; do
    [ $(( $(date +%s) - T0 )) -gt 420 ] && break 2
    MOED_CUDA_PREFETCH_PIECE=$p timeout 90 build-gpu/bench/cuda_bench --backend cuda --policy lru,fifo,lfu \
      --fracs 0.5,0.25 --prefetch none,cepr,freq --routing $rt --steps1 4,32 --steps16 1,2 \
      --prefill 1x4 --deadline 80 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
    say "$rt piece=$p rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f2-8 | tail -n +3 >> $S
    sed "s/^{/{\"piece_kib\": $p, /" /tmp/x.jsonl >> $OUT/s19d_ab.jsonl; rm -f /tmp/x.jsonl
  done
done
say done
