#!/bin/bash
# For session 15, call 1 (run from a checkout of next/s15, with ab/s15.patch = `git diff main
# next/s15 -- engine bench daemon tests` in the tree): GPU suites on next/s15 (greedy_chain is
# new); the 50% rows (none/freq, LRU/LFU) A/B main (patch reversed) vs s15, two rounds; s15 once
# with MOED_CUDA_PROFILE=1 (next/gap's split); resident quick bench in the s15 tree with
# MOED_CUDA_CHAIN=0 vs 1 (next/chain), three rounds; moed run (greedy, 256 tokens) with each.
# At most 8 files come back: only sum.txt and prof.txt under $OUT here.
# run(command="OUT=$OUT bash s15.sh", carry=[".deps"], timeout_s=420)
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh; . bench/gpu_ab.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
ab_old ab/s15.patch
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $S
grep -E "cuda greedy" build-gpu/meson-logs/testlog.txt | head -4 >> $S
wait; say "ready"
ARGS="--backend cuda --policy lru,lfu --fracs 0.5 --prefetch none,freq --steps1 4,32 --steps16 1,1 --prefill 1x4"
bench() {  # NAME DIR
  (cd $2 && timeout 60 build-gpu/bench/cuda_bench $ARGS $M $M.pack > /tmp/b.txt 2> /tmp/b.err)
  say "$1 rc=$?"; grep '^| synth' /tmp/b.txt | cut -d'|' -f3-5,7,9,12 >> $S
}
for r in 1 2; do bench main /tmp/ab/old; bench s15 .; done
MOED_CUDA_PROFILE=1 timeout 60 build-gpu/bench/cuda_bench $ARGS $M $M.pack > /tmp/b.txt 2> $OUT/prof.txt
say "profiled rc=$?"; grep -E "after another|one-row MoE" $OUT/prof.txt | cut -c1-300 >> $S
for r in 1 2 3; do for ch in 0 1; do
  MOED_CUDA_CHAIN=$ch timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 1 \
    --prefetch none --steps1 8,64 --steps16 4,32 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "chain=$ch rc=$?: $(tail -1 /tmp/b.txt | cut -d'|' -f6-9,12)"
done; done
for ch in 0 1; do
  MOED_CUDA_CHAIN=$ch timeout 60 build-gpu/daemon/moed run --model $M --set model.pack=$M.pack \
    --tokens 5,17,42,99,3,250,1000,7 --max-tokens 256 --max-ctx 512 --backend cuda --json > /tmp/r.txt 2> /tmp/r.err
  say "run chain=$ch rc=$?: $(grep -o '"decode_tok_s":[0-9.]*' /tmp/r.txt) $(grep -o '"tokens":\[[0-9,]*' /tmp/r.txt | md5sum | cut -c1-8)"
done
say done
