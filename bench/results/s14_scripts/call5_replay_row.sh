#!/bin/bash
# Session 14, call 5: the replayed row that missed in call 4 (lfu, freq, 12.5%) again, twice,
# with the backend's copy profile, to tell the machine's copy rate from the code.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
timeout 300 bash -c "meson setup build-gpu -Dcuda=enabled > $L/setup.log 2>&1; ninja -C build-gpu daemon/moed bench/cuda_bench > $L/build.log 2>&1" || { tail -20 $L/build.log >> $S; exit 1; }
say built
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1
say "mk rc=$?"
for i in 1 2; do
  MOED_CUDA_PROFILE=1 timeout 100 build-gpu/bench/cuda_bench --backend cuda --policy lfu --fracs 0.125 \
    --prefetch freq --routing trace:.deps/nvmoe-olmoe-all.tokens.jsonl --steps1 4,32 --steps16 2,16 \
    --prefill 2x256 $M $M.pack > $L/b.txt 2> $L/b.err
  say "replay lfu freq 12.5% rc=$?: $(tail -1 $L/b.txt | cut -d'|' -f6-11)"
  grep -E "profile" $L/b.err | cut -c1-200 >> $S
done
say done
