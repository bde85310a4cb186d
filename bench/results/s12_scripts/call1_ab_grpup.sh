#!/bin/bash
# Session 12 call: next/grpup (the group upload sized per call) against main (CHUNK 512) and main
# with CHUNK 256 (c256): GPU suites on grpup, then cepr and none at 50%, b1, two rounds.
# Before (here): cd /work/main && git checkout next/grpup && mkdir -p ab &&
#   git diff main next/grpup --binary > ab/g.patch && cp /work/notes/s11/ab_grpup.sh .
# Call: run(command="OUT=$OUT bash ab_grpup.sh", carry=[".deps"], timeout_s=400)
# After: rm -rf ab ab_grpup.sh; git checkout main
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
R=$(pwd); M=/dev/shm/m
TG="$(printf 'tests/test_%s ' $GPU_SUITES) daemon/moed bench/cuda_bench"
rm -rf /tmp/ab; mkdir -p /tmp/ab/main /tmp/ab/c256
for v in main c256; do
  tar --exclude=./build-gpu --exclude=./.deps --exclude=./ab --exclude=./.git -cf - . | tar -xf - -C /tmp/ab/$v
  (cd /tmp/ab/$v && patch -R -p1 -s < $R/ab/g.patch) || say "reverse patch failed"
done
(cd /tmp/ab/c256 && sed -i 's/^#define CHUNK 512/#define CHUNK 256/' engine/engine_int.h &&
  sed -i 's/^#define ENG_CUDA_MAX_ROWS 512/#define ENG_CUDA_MAX_ROWS 256/' engine/engine_cuda.h)
(meson setup build-gpu -Dcuda=enabled > /tmp/sB.log 2>&1; ninja -j6 -C build-gpu $TG > /tmp/bB.log 2>&1; echo "grpup build rc=$?" >> $S) &
for v in main c256; do (cd /tmp/ab/$v && meson setup bg -Dcuda=enabled > /tmp/s$v.log 2>&1 && ninja -j5 -C bg daemon/moed bench/cuda_bench > /tmp/b$v.log 2>&1; echo "$v build rc=$?" >> $S) & done
wait; say built
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1 &
timeout 150 meson test -C build-gpu --no-rebuild $GPU_SUITES --print-errorlogs > /tmp/t.log 2>&1
say "grpup tests rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/t.log | tr -s ' ' | tr '\n' ';')"
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head -5 >> $S
wait; say "mk done"
for r in 1 2; do
  for v in main c256 grpup; do
    X=build-gpu/bench/cuda_bench; [ $v != grpup ] && X=/tmp/ab/$v/bg/bench/cuda_bench
    timeout 60 $X --backend cuda --policy lru --fracs 0.5 --prefetch none,cepr --steps1 4,32 \
      --steps16 1,2 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
    say "$v rc=$?: $(grep -E '^\| synthetic' /tmp/b.txt | cut -d'|' -f3,4,5,7,9,11 | tr -s ' ' | tr '\n' ';')"
  done
done
say done
