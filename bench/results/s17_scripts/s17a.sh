#!/bin/bash
# Session 17, call A: a prefill chunk's split experts in batched waves (this tree) against
# main (split.patch reversed): GPU suites, prefill A/B, budget rows' tokens vs resident.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh; . bench/gpu_ab.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
ab_old split.patch
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -h "waves of one\|cuda exact olmoe_bf16: 1/" build-gpu/meson-logs/testlog.txt | head -4 >> $S
wait; say ready
for r in 1 2; do for t in new old; do
  B=build-gpu; [ $t = old ] && B=/tmp/ab/old/build-gpu
  for P in 2x256 4x512; do
    timeout 60 $B/bench/cuda_bench --backend cuda --fracs 1 --prefetch none --policy lru --steps1 1,2 --steps16 1,2 --prefill $P $M $M.pack > /tmp/b.txt 2>/tmp/b.err
    say "$t $P rc=$? $(grep '^| ' /tmp/b.txt | tail -1 | cut -d'|' -f5-7)"
  done
done; done
timeout 150 build-gpu/bench/cuda_bench --backend cuda --fracs 1,0.5,0.125 --prefetch none --policy lru --steps1 2,8 --steps16 1,4 --prefill 2x256 --json $OUT/s17a.jsonl $M $M.pack > $OUT/s17a_budget.md 2>/tmp/b.err
say "budget rc=$?"; tail -3 /tmp/b.err >> $S
cp build-gpu/meson-logs/testlog.txt $OUT/s17a_testlog.txt
say done
