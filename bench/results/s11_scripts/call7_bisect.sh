#!/bin/bash
# Session 11 call 7: which of zcopy / chunk 512 costs cepr at 50% (b1): old (9b355c7), zc (main
# with CHUNK 256), new (main).
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
R=$(pwd); M=/dev/shm/m; TG="daemon/moed bench/cuda_bench"
rm -rf /tmp/ab; mkdir -p /tmp/ab/old /tmp/ab/zc
tar --exclude=./build-gpu --exclude=./.deps --exclude=./ab --exclude=./.git -cf - . | tar -xf - -C /tmp/ab/old
tar --exclude=./build-gpu --exclude=./.deps --exclude=./ab --exclude=./.git -cf - . | tar -xf - -C /tmp/ab/zc
(cd /tmp/ab/old && patch -R -p1 -s < $R/ab/new.patch) || say "reverse patch failed"
(cd /tmp/ab/zc && sed -i 's/^#define CHUNK 512/#define CHUNK 256/' engine/engine_int.h &&
  sed -i 's/^#define ENG_CUDA_MAX_ROWS 512/#define ENG_CUDA_MAX_ROWS 256/' engine/engine_cuda.h && grep -c 256 engine/engine_int.h engine/engine_cuda.h >> $S)
(meson setup build-gpu -Dcuda=enabled > /tmp/sB.log 2>&1; ninja -j6 -C build-gpu $TG > /tmp/bB.log 2>&1; echo "new build rc=$?" >> $S) &
for v in old zc; do (cd /tmp/ab/$v && meson setup bg -Dcuda=enabled > /tmp/s$v.log 2>&1 && ninja -j5 -C bg $TG > /tmp/b$v.log 2>&1; echo "$v build rc=$?" >> $S) & done
wait; say built
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; say "mk rc=$?"
for r in 1 2; do
  for v in old zc new; do
    X=build-gpu/bench/cuda_bench; [ $v != new ] && X=/tmp/ab/$v/bg/bench/cuda_bench
    timeout 40 $X --backend cuda --policy lru --fracs 0.5 --prefetch cepr --steps1 4,32 \
      --steps16 1,2 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
    say "$v rc=$?: $(grep -E '^\| synthetic' /tmp/b.txt | cut -d'|' -f3,4,5,7,9,11 | tr -s ' ' | tr '\n' ';')"
  done
done
say done
