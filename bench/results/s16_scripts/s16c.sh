#!/bin/bash
# Session 16, call 5: next/prof16 (one upload for the table and the groups, victims picked before
# polling loads, loads noted done in ticket order) against main (ab/p.patch reversed): GPU suites,
# the 50% batch-1 rows both ways, two rounds, the replayed none/LRU row, one profiled run.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh; . bench/gpu_ab.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
ab_old ab/p.patch
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $S
wait; say ready
A="--backend cuda --fracs 0.5 --steps1 4,32 --steps16 1,1 --prefill 1x4"
bench() {  # NAME DIR ARGS...
  local n=$1 d=$2; shift 2
  (cd $d && timeout 100 build-gpu/bench/cuda_bench "$@" $M $M.pack > /tmp/b.txt 2> /tmp/b.err)
  say "$n rc=$?"; grep '^| ' /tmp/b.txt | grep "%" | grep -v "100.0%" | cut -d'|' -f3-5,7,9,12 >> $S
  grep -E "cuda profile" /tmp/b.err | grep -E "after another|first such" | cut -c1-400 >> $S
}
for r in 1 2; do
  bench main /tmp/ab/old $A --policy lru,fifo,lfu --prefetch none,freq
  bench new . $A --policy lru,fifo,lfu --prefetch none,freq
done
R="--routing trace:$PWD/.deps/nvmoe-olmoe-all.tokens.jsonl"
bench main-rep /tmp/ab/old $A --policy lru,fifo --prefetch none,freq $R
bench new-rep . $A --policy lru,fifo --prefetch none,freq $R
MOED_CUDA_PROFILE=1 bench new-prof . $A --policy lru,fifo --prefetch none,freq
say done
