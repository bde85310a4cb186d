#!/bin/bash
# For session 14, call 1 (run from a checkout of next/s14, with ab/s14.patch = `git diff main
# next/s14 -- engine bench tests` in the tree): GPU suites on next/s14, cuda_kprof 1 128, then
# resident quick cuda_bench main (patch reversed) vs next/s14, alternating, three rounds.
# run(command="OUT=$OUT bash s14.sh", carry=[".deps"], timeout_s=400)
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
rm -rf /tmp/ab/old; mkdir -p /tmp/ab/old; tar --exclude=./build-gpu -cf - . | tar -xf - -C /tmp/ab/old
(cd /tmp/ab/old && patch -R -p1 < ab/s14.patch > /tmp/ab/patch.log 2>&1 && echo "patch ok" >> $S || tail -5 /tmp/ab/patch.log >> $S)
(cd /tmp/ab/old && meson setup build-gpu -Dcuda=enabled > /tmp/ab/old.log 2>&1 && ninja -C build-gpu bench/cuda_bench >> /tmp/ab/old.log 2>&1; echo "old build rc=$?" >> $S) &
gpu_build build-gpu $OUT $S bench/cuda_bench bench/cuda_kprof || exit 1
[ -d $M ] || (build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $OUT
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $S
build-gpu/bench/cuda_kprof 1 128 > $OUT/kprof_1.txt 2>&1
grep -E "attention with|moe gate|decoder layer  " $OUT/kprof_1.txt >> $S
wait; say "ready"
bench() {  # NAME DIR
  (cd $2 && timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 1 \
    --prefetch none --steps1 8,64 --steps16 4,32 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err)
  say "$1 rc=$?: $(tail -1 /tmp/b.txt | cut -d'|' -f6-9,12)"
}
for r in 1 2 3; do bench main /tmp/ab/old; bench s14 .; done
say done
