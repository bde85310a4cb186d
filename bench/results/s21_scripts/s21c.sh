#!/bin/bash
# Session 21, call 3: the idle mode's prefetch piece (MOED_CUDA_PREFETCH_PIECE, KiB) at 256, 512
# and 1024 (main's), on main: cepr and freq with LRU, FIFO and LFU at 50% and 25%; round 1
# synthetic and replayed routing, round 2 (reverse order) replayed only.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
[ -d $M ] || build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
say "model"
TR=trace:.deps/nvmoe-olmoe-all.tokens.jsonl
for round in 1 2; do
  P="256 512 1024"; R="synthetic $TR"; [ $round = 2 ] && P="1024 512 256" R=$TR
  for pc in $P; do
    for r in $R; do
      [ $(( $(date +%s) - T0 )) -gt 520 ] && break 3
      MOED_CUDA_PREFETCH_PIECE=$pc timeout 70 build-gpu/bench/cuda_bench --backend cuda --policy lru,fifo,lfu \
        --fracs 0.5,0.25 --prefetch cepr,freq --routing $r --steps1 4,32 --steps16 1,2 --prefill 1x4 \
        --deadline 55 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
      say "piece $pc $r rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9 | tail -n +4 >> $S
      sed "s/^{/{\"piece_kib\": $pc, /" /tmp/x.jsonl >> $OUT/s21c_piece.jsonl; rm -f /tmp/x.jsonl
    done
  done
done
say done
