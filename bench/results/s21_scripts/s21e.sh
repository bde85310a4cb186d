#!/bin/bash
# Session 21, call 5: the GPU suites on main after after_load (backend_cuda's wait and
# stream_wait through one helper), and a short bench: all resident and 50% none/LRU, synthetic.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -cE ":P:" build-gpu/meson-logs/testlog.txt >> $S
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5 --prefetch none,cepr \
  --routing synthetic --steps1 4,32 --steps16 1,1 --prefill 1x4 --deadline 40 $M $M.pack > /tmp/x.txt 2>&1
say "bench rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,23 | tail -n +3 >> $S
say done
