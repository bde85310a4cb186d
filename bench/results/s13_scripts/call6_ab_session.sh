#!/bin/bash
# Session 13 call 6: A/B of the session on one machine: main (zero-copy outputs + GPU argmax)
# against 0dd6125 (this tree with ab/s13.patch reversed), resident cuda_bench with the
# matrix's settings (prefill 2x256, b1 4+32, b16 2+16), three rounds each, alternating.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
rm -rf /tmp/ab/old; mkdir -p /tmp/ab/old; tar --exclude=./build-gpu -cf - . | tar -xf - -C /tmp/ab/old
(cd /tmp/ab/old && patch -R -p1 < ab/s13.patch > /tmp/ab/patch.log 2>&1 && echo "patch ok" >> $S || tail -5 /tmp/ab/patch.log >> $S)
(cd /tmp/ab/old && rm -rf build-gpu && meson setup build-gpu -Dcuda=enabled > /tmp/ab/old.log 2>&1 && ninja -C build-gpu bench/cuda_bench daemon/moed >> /tmp/ab/old.log 2>&1; echo "old build rc=$?" >> $S) &
gpu_build build-gpu $OUT $S bench/cuda_bench || exit 1
[ -d $M ] || (build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S)
wait; say "ready"
bench() {  # NAME DIR
  (cd $2 && timeout 90 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 1 \
    --prefetch none --steps1 4,32 --steps16 2,16 --prefill 2x256 $M $M.pack > /tmp/b.txt 2> /tmp/b.err)
  say "$1 rc=$?: $(tail -1 /tmp/b.txt | cut -d'|' -f6-9,12)"
}
for r in 1 2 3; do bench old /tmp/ab/old; bench new .; done
say done
