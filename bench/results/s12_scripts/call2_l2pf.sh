#!/bin/bash
# Session 12: next/l2pf, the fast step's graph asking L2 for the weights (side stream) while
# HBM idles: MOED_CUDA_L2PF bits (1: o during attention, 2: next qkv after o, 4: evict_normal),
# MOED_CUDA_L2PF_BLOCKS.  GPU suites with L2PF=3, then resident b1/b16 per setting, two rounds.
# Call: run(command="OUT=$OUT bash l2pf.sh", carry=[".deps"], timeout_s=560)
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
gpu_build build-gpu $OUT $S bench/cuda_bench || exit 1
[ -d $M ] || (build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
MOED_CUDA_L2PF=3 timeout 150 meson test -C build-gpu --no-rebuild $GPU_SUITES --print-errorlogs > /tmp/t.log 2>&1
say "tests L2PF=3 rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/t.log | tr -s ' ' | tr '\n' ';')"
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head -5 >> $S
wait; say "mk done"
bench() {  # NAME env...
  local n=$1; shift
  env "$@" MOED_CUDA_PROFILE=1 timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 1 \
    --prefetch none --steps1 8,64 --steps16 4,32 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "$n rc=$?: $(tail -1 /tmp/b.txt) $(grep -o 'graph on GPU [0-9.]*' /tmp/b.err | tr '\n' ' ')"
}
for r in 1 2 3; do
  for v in 0 1 2 3 7; do bench "pf$v" MOED_CUDA_L2PF=$v; done
  for b in 8 128; do bench "pf3 blocks$b" MOED_CUDA_L2PF=3 MOED_CUDA_L2PF_BLOCKS=$b; done
done
head -3 /tmp/b.txt >> $S; cat /tmp/b.err | tail -5 >> $S
say done
