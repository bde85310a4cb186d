#!/bin/bash
# Session 15, call 2: GPU suites with the spin wait (MOED_CUDA_SPIN, default on); 50% b1 rows
# (none/freq, LRU) SPIN=0 vs 1, two rounds; profiled (gap split: attention, router, host) with
# SPIN=1, SPIN=0, and SPIN=1 PDL=0.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $S
wait; say "ready"
ARGS="--backend cuda --policy lru --fracs 0.5 --prefetch none,freq --steps1 4,32 --steps16 1,1 --prefill 1x4"
bench() {  # NAME, env before
  timeout 60 build-gpu/bench/cuda_bench $ARGS $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "$1 rc=$?"; grep '^| synth' /tmp/b.txt | cut -d'|' -f3-5,7,9,12 >> $S
}
for r in 1 2; do MOED_CUDA_SPIN=0 bench spin0; MOED_CUDA_SPIN=1 bench spin1; done
for v in "1 1" "0 1" "1 0"; do set -- $v
  MOED_CUDA_SPIN=$1 MOED_CUDA_PDL=$2 MOED_CUDA_PROFILE=1 timeout 60 build-gpu/bench/cuda_bench $ARGS $M $M.pack > /tmp/b.txt 2> /tmp/p.txt
  say "profiled spin=$1 pdl=$2 rc=$?"; grep '^| synth' /tmp/b.txt | cut -d'|' -f3-5,7,9,12 >> $S
  grep -E "one-row|after another|on demand|expert copies" /tmp/p.txt | cut -c1-330 >> $S
done
say done
