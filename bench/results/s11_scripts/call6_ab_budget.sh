#!/bin/bash
# Session 11 call 6: budget b1 A/B, session 10's main (9b355c7) vs main now (zcopy + chunk 512).
# Before: git diff 9b355c7 HEAD --binary -- . ':!bench/results' > ab/new.patch
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
R=$(pwd); M=/dev/shm/m; TG="daemon/moed bench/cuda_bench"
rm -rf /tmp/ab; mkdir -p /tmp/ab/old
tar --exclude=./build-gpu --exclude=./.deps --exclude=./ab --exclude=./.git -cf - . | tar -xf - -C /tmp/ab/old
(cd /tmp/ab/old && patch -R -p1 -s < $R/ab/new.patch) || say "reverse patch failed"
(meson setup build-gpu -Dcuda=enabled > /tmp/sB.log 2>&1; ninja -j8 -C build-gpu $TG > /tmp/bB.log 2>&1; echo "new build rc=$?" >> $S) &
(cd /tmp/ab/old && meson setup bg -Dcuda=enabled > /tmp/sA.log 2>&1 && ninja -j8 -C bg $TG > /tmp/bA.log 2>&1; echo "old build rc=$?" >> $S) &
wait; say built
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; say "mk rc=$?"
for r in 1 2; do
  for v in old new; do
    X=build-gpu/bench/cuda_bench; [ $v = old ] && X=/tmp/ab/old/bg/bench/cuda_bench
    timeout 100 $X --backend cuda --policy lru --fracs 1,0.5 --prefetch none,cepr --steps1 4,32 \
      --steps16 1,2 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
    say "$v rc=$?: $(grep -E '^\| synthetic' /tmp/b.txt | cut -d'|' -f3,4,5,7,9,11 | tr -s ' ' | tr '\n' ';')"
  done
done
say done
