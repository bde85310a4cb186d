#!/bin/bash
# Session 14, call 6: the host-synchronised MoE layer with zero-copy routes (no D2H copies
# before the wait) and the groups' upload after the first acquires (ab/zr.patch): GPU suites,
# then 50% budget rows (none/freq, LRU/LFU) A/B against main (patch reversed), two rounds.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
rm -rf /tmp/ab/old; mkdir -p /tmp/ab/old; tar --exclude=./build-gpu -cf - . | tar -xf - -C /tmp/ab/old
(cd /tmp/ab/old && patch -R -p1 < ab/zr.patch > /tmp/ab/patch.log 2>&1 && echo "patch ok" >> $S || tail -5 /tmp/ab/patch.log >> $S)
(cd /tmp/ab/old && meson setup build-gpu -Dcuda=enabled > /tmp/ab/old.log 2>&1 && ninja -C build-gpu bench/cuda_bench >> /tmp/ab/old.log 2>&1; echo "old build rc=$?" >> $S) &
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $S
wait; say "ready"
bench() {  # NAME DIR
  (cd $2 && timeout 40 build-gpu/bench/cuda_bench --backend cuda --policy lru,lfu --fracs 0.5 \
    --prefetch none,freq --steps1 4,32 --steps16 1,1 --prefill 1x4 $M $M.pack > /tmp/b.txt 2> /tmp/b.err)
  say "$1 rc=$?"; grep '^| synth' /tmp/b.txt | cut -d'|' -f3-5,7,9,12 >> $S
}
for r in 1 2; do bench main /tmp/ab/old; bench zr .; done
say done
