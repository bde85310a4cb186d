#!/bin/bash
# For session 16, call 1 (run from a checkout of next/combine, with ab/combine.patch =
# `git diff main next/combine -- engine bench` in the tree): GPU suites on next/combine (bit
# exactness at every budget covers the combine); cuda_kprof one row on both trees (the new
# 'moe combine (expert-cache path)' line exists only on the branch); the 50% b1 rows A/B main
# (patch reversed) vs combine, two rounds; one profiled run on each (the attention split).
# run(command="OUT=$OUT bash s16.sh", carry=[".deps"], timeout_s=420)
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh; . bench/gpu_ab.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
ab_old ab/combine.patch
(nvcc -O3 -arch=sm_90 -o /tmp/smcopy smcopy.cu > /tmp/smc.log 2>&1; echo "smcopy build rc=$?" >> $S) &
gpu_build build-gpu $L $S bench/cuda_bench bench/cuda_kprof || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $S
build-gpu/bench/cuda_kprof 1 128 > /tmp/k1.txt 2>&1; grep -E "combine|decoder layer  " /tmp/k1.txt >> $S
wait; say "ready"
/tmp/smcopy > $OUT/smcopy.txt 2>&1; say "smcopy rc=$?"; cat $OUT/smcopy.txt >> $S
ARGS="--backend cuda --policy lru,fifo,lfu --fracs 0.5 --prefetch none,freq --steps1 4,32 --steps16 1,1 --prefill 1x4"
bench() {  # NAME DIR [ENV...]
  local n=$1 d=$2; shift 2
  (cd $d && env "$@" timeout 80 build-gpu/bench/cuda_bench $ARGS $M $M.pack > /tmp/b.txt 2> /tmp/b.err)
  say "$n rc=$?"; grep '^| synth' /tmp/b.txt | cut -d'|' -f3-5,7,9,12 >> $S
  grep -E "after another|first such" /tmp/b.err | cut -c1-300 >> $S
}
cp /tmp/k1.txt $OUT/kprof1.txt
for r in 1 2; do bench main /tmp/ab/old X=1; bench combine . X=1; done
bench main-prof /tmp/ab/old MOED_CUDA_PROFILE=1; bench combine-prof . MOED_CUDA_PROFILE=1
say done
