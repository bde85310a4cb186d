#!/bin/bash
# Session 19, call 1: GPU suites (idle mode the default; backend_prefetch_queue with 100 KiB
# pieces too), then the idle mode's piece (MOED_CUDA_PREFETCH_PIECE, KiB) 4096 (the default)
# against 1024, 512 and 2048 on one machine, batch 1, LRU, cepr and freq.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
say "$(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader) $(git log --oneline -1 | cut -c1-60)"
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp build-gpu/meson-logs/testlog.txt $OUT/s19a_testlog.txt
wait
for round in 1 2; do
  for rt in synthetic trace:.deps/nvmoe-olmoe-all.tokens.jsonl; do
    for p in 4096 1024 512 2048; do
      [ $round = 2 ] && [ $p = 2048 ] && continue
      [ $(( $(date +%s) - T0 )) -gt 500 ] && break 3
      MOED_CUDA_PREFETCH_PIECE=$p timeout 50 build-gpu/bench/cuda_bench --backend cuda --policy lru \
        --fracs 0.5,0.25,0.125 --prefetch cepr,freq --routing $rt --steps1 4,32 --steps16 1,2 \
        --prefill 1x4 --deadline 30 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
      say "$rt piece=$p rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-8 | tail -n +3 >> $S
      sed "s/^{/{\"piece_kib\": $p, /" /tmp/x.jsonl >> $OUT/s19a_ab.jsonl; rm -f /tmp/x.jsonl
    done
  done
done
say done
