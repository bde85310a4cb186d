#!/bin/bash
# Session 16, call 4: where an all-hit 50% layer's time goes (next/prof16's split profile), and
# the host cost of the CUDA calls a budget layer makes (apicost.cu).
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
(nvcc -O2 -arch=sm_90 -o /tmp/apicost apicost.cu > /tmp/ac.log 2>&1; echo "apicost build rc=$?" >> $S) &
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
wait; say ready
/tmp/apicost >> $S 2>&1; say "apicost rc=$?"
bench() {  # NAME ARGS... (env before)
  local n=$1; shift
  timeout 100 build-gpu/bench/cuda_bench "$@" $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "$n rc=$?"; grep '^| ' /tmp/b.txt | grep -v resident | cut -d'|' -f2-5,7,9,12 | grep -E "%" >> $S
  grep -E "cuda profile" /tmp/b.err | cut -c1-400 >> $S
}
A="--backend cuda --fracs 0.5 --steps1 4,32 --steps16 1,1 --prefill 1x4"
MOED_CUDA_PROFILE=1 bench prof-syn $A --policy lru,fifo --prefetch none,freq
bench plain-syn $A --policy lru,fifo --prefetch none,freq
MOED_CUDA_PROFILE=1 bench prof-rep $A --policy lru --prefetch none --routing trace:.deps/nvmoe-olmoe-all.tokens.jsonl
say done
