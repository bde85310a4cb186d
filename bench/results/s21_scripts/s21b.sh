#!/bin/bash
# Session 21, call 2: the idle mode's prefetch piece (MOED_CUDA_PREFETCH_PIECE, KiB; 1024 is
# main's) at 512, 1024, 2048 and 4096, on main: cepr and freq with LRU and FIFO at 50%,
# synthetic and replayed routing; two rounds, the second in reverse order.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
say "model"
for round in 1 2; do
  P="512 1024 2048 4096"; [ $round = 2 ] && P="4096 2048 1024 512"
  for pc in $P; do
    for r in synthetic trace:.deps/nvmoe-olmoe-all.tokens.jsonl; do
      [ $(( $(date +%s) - T0 )) -gt 500 ] && break 3
      MOED_CUDA_PREFETCH_PIECE=$pc timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru,fifo \
        --fracs 0.5 --prefetch cepr,freq --routing $r --steps1 4,32 --steps16 1,2 --prefill 1x4 \
        --deadline 40 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
      say "piece $pc $r rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9 | tail -n +4 >> $S
      sed "s/^{/{\"piece_kib\": $pc, /" /tmp/x.jsonl >> $OUT/s21b_piece.jsonl; rm -f /tmp/x.jsonl
    done
  done
done
say done
