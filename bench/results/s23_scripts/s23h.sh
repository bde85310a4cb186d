#!/bin/bash
# Session 23, call 8: the prefetch piece (MOED_CUDA_PREFETCH_PIECE, KiB) at 1 MiB against 4 MiB on
# synthetic routing, where cepr's prefetches are nearly all used (session 21 measured replayed
# routing, where many are dropped): the four synthetic 50% rows that miss, alternating.
. bench/gpu_call.sh
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
say ready
for round in 1 2; do
  for p in 1024 4096; do
    [ $(( $(date +%s) - T0 )) -gt 280 ] && break 2
    MOED_CUDA_PREFETCH_PIECE=$p timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru,fifo \
      --fracs 0.5 --prefetch cepr,freq --routing synthetic --steps1 4,32 --steps16 1,1 --prefill 1x4 \
      --deadline 50 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
    say "piece $p rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,23 | tail -n +4 >> $S
    sed "s/^{/{\"piece_kib\": $p, /" /tmp/x.jsonl >> $OUT/s23h_piece.jsonl; rm -f /tmp/x.jsonl
  done
done
say done
