#!/bin/bash
# Session 22, call 6: fewer experts prefetched a next layer in decode (cuda_bench --prefetch-k,
# the worker's predictor.prefetch_k) at 50%: freq and cepr, synthetic routing, then cepr on
# replayed routing, with LRU, FIFO and LFU; top_k (8) against 4, then 2 while time is left.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
say "ready"
R=trace:.deps/nvmoe-olmoe-all.tokens.jsonl
for k in 8 4 2; do
  for r in synthetic $R; do
    [ $(( $(date +%s) - T0 )) -gt 240 ] && break 2
    p=freq,cepr; [ $r = synthetic ] || p=cepr
    timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru,fifo,lfu --fracs 0.5 --prefetch $p \
      --prefetch-k $k --routing $r --steps1 4,32 --steps16 1,1 --prefill 1x4 --deadline 40 \
      --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
    say "k=$k $r rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,23 | tail -n +3 >> $S
    cat /tmp/x.jsonl >> $OUT/s22f_pk.jsonl; rm -f /tmp/x.jsonl
  done
done
say done
