#!/bin/bash
# Session 15, call 3: GPU suites (exact_every_budget now asserts layer graphs ran); 50% b1 rows
# (none/freq x LRU/FIFO/LFU) MOED_CUDA_LAYER_GRAPHS=0 vs 1, two rounds; one profiled with layer
# graphs; then the synthetic matrix (PART=1) on this tree into $OUT/m.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
gpu_build build-gpu $L $S bench/cuda_bench bench/cuda_kprof || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $S
grep -E "cuda exact .*layer graphs" build-gpu/meson-logs/testlog.txt | head -3 >> $S
wait; say "ready"
ARGS="--backend cuda --policy lru,fifo,lfu --fracs 0.5 --prefetch none,freq --steps1 4,32 --steps16 1,1 --prefill 1x4"
bench() {
  timeout 80 build-gpu/bench/cuda_bench $ARGS $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "$1 rc=$?"; grep '^| synth' /tmp/b.txt | cut -d'|' -f3-5,7,9,12 >> $S
}
for r in 1 2; do MOED_CUDA_LAYER_GRAPHS=0 bench lg0; MOED_CUDA_LAYER_GRAPHS=1 bench lg1; done
MOED_CUDA_PROFILE=1 timeout 80 build-gpu/bench/cuda_bench $ARGS $M $M.pack > /tmp/b.txt 2> /tmp/p.txt
say "profiled rc=$?"; grep -E "one-row|after another|on demand" /tmp/p.txt | cut -c1-400 >> $S
mkdir -p $OUT/m && OUT=$OUT/m TAG=s15 PART=1 bash bench/results/matrix_call.sh > /dev/null 2>&1
say "matrix rc=$?"; cat $OUT/m/sum.txt >> $S
say done
