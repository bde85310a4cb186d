#!/bin/bash
# Session 11: ONE GPU call comparing main with next/b1 (zcopy + fused MoE + MOED_CUDA_GRID_PCT +
# MOED_CUDA_ATT_SPAN) and next/chunk (CHUNK 512).
# Before the call (here):
#   cd /work/main && git checkout next/b1 && mkdir -p ab && git diff main next/b1 --binary > ab/b1.patch
#   (next/chunk = main with CHUNK and ENG_CUDA_MAX_ROWS 512: made below by sed on main's copy)
#   cp /work/notes/s10/ab_b1.sh .        (ab/ and ab_b1.sh travel untracked)
# Call: run(command="OUT=$OUT bash ab_b1.sh", carry=[".deps"], timeout_s=480)
# After: rm -rf ab ab_b1.sh; git checkout main
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
R=$(pwd); M=/dev/shm/m
TG="$(printf 'tests/test_%s ' $GPU_SUITES) daemon/moed bench/cuda_kprof bench/cuda_bench"
rm -rf /tmp/ab; mkdir -p /tmp/ab/main
tar --exclude=./build-gpu --exclude=./.deps --exclude=./ab --exclude=./.git -cf - . | tar -xf - -C /tmp/ab/main
(cd /tmp/ab/main && patch -R -p1 -s < $R/ab/b1.patch) || say "reverse patch failed"
mkdir -p /tmp/ab/chunk; (cd /tmp/ab/main && tar --exclude=./bg -cf - .) | tar -xf - -C /tmp/ab/chunk
(cd /tmp/ab/chunk && sed -i 's/^#define CHUNK 256/#define CHUNK 512/' engine/engine_int.h &&
  sed -i 's/^#define ENG_CUDA_MAX_ROWS 256/#define ENG_CUDA_MAX_ROWS 512/' engine/engine_cuda.h) || say "chunk tree failed"
(cd /tmp/ab/chunk && meson setup bg -Dcuda=enabled > /tmp/sC.log 2>&1 && ninja -j5 -C bg $TG > /tmp/bC.log 2>&1; echo "chunk build rc=$?" >> $S) &
(meson setup build-gpu -Dcuda=enabled > /tmp/sB.log 2>&1; ninja -j8 -C build-gpu $TG > /tmp/bB.log 2>&1; echo "b1 build rc=$?" >> $S; grep -A5 error /tmp/bB.log | head -20 >> $S) &
(cd /tmp/ab/main && meson setup bg -Dcuda=enabled > /tmp/sA.log 2>&1 && ninja -j7 -C bg $TG > /tmp/bA.log 2>&1; echo "main build rc=$?" >> $S) &
wait; say built
[ -d $M ] || (build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
for f in 1 0; do
  MOED_CUDA_FUSED_MOE=$f timeout 150 meson test -C build-gpu --no-rebuild $GPU_SUITES --print-errorlogs > /tmp/t$f.log 2>&1
  say "b1 tests fused=$f rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/t$f.log | tr -s ' ' | tr '\n' ';')"
  grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head -5 >> $S
done
for i in 1 2; do
  say "kprof1 main: $(timeout 60 /tmp/ab/main/bg/bench/cuda_kprof 1 128 2>&1 | grep -E '^decoder layer  |^moe|failed' | tr -s ' ' | tr '\n' ';')"
  say "kprof1 b1: $(timeout 60 build-gpu/bench/cuda_kprof 1 128 2>&1 | grep -E '^decoder layer  |^decoder layer, moe fused|^moe|failed' | tr -s ' ' | tr '\n' ';')"
  say "kprof1 b1 pct75: $(MOED_CUDA_GRID_PCT=75 timeout 60 build-gpu/bench/cuda_kprof 1 128 2>&1 | grep -E '^decoder layer  |^decoder layer, moe fused|^moe|failed' | tr -s ' ' | tr '\n' ';')"
done
 say "kprof1 b1 span256: $(MOED_CUDA_ATT_SPAN=256 timeout 60 build-gpu/bench/cuda_kprof 1 128 2>&1 | grep -E '^decoder layer  |^attention|failed' | tr -s ' ' | tr '\n' ';')"
MOED_CUDA_ATT_SPAN=512 timeout 100 meson test -C build-gpu --no-rebuild cuda exact > /tmp/tS.log 2>&1
say "b1 tests span512 rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/tS.log | tr -s ' ' | tr '\n' ';')"
say "kprof2 b1: $(timeout 60 build-gpu/bench/cuda_kprof 2 128 2>&1 | grep -E '^decoder layer  |^decoder layer, moe fused|^moe|failed' | tr -s ' ' | tr '\n' ';')"
timeout 100 /usr/local/cuda/bin/compute-sanitizer --print-limit 4 build-gpu/bench/cuda_kprof 1 128 > /tmp/cs.txt 2>&1
say "sanitizer rc=$?: $(grep -E 'ERROR SUMMARY|Invalid|failed' /tmp/cs.txt | head -6 | tr '\n' ';')"
wait
bench() {  # NAME BIN env...
  local n=$1 x=$2; shift 2
  env "$@" MOED_CUDA_PROFILE=1 timeout 80 $x --backend cuda --policy lru --fracs 1 --prefetch none \
    --steps1 8,64 --steps16 4,32 --prefill 2x256 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "$n bench rc=$?: $(tail -1 /tmp/b.txt)"
}
for r in 1 2; do
  bench main /tmp/ab/main/bg/bench/cuda_bench X=1
  bench b1 build-gpu/bench/cuda_bench X=1
  bench b1-unfused build-gpu/bench/cuda_bench MOED_CUDA_FUSED_MOE=0
  bench b1-pct75 build-gpu/bench/cuda_bench MOED_CUDA_GRID_PCT=75
  bench b1-pct50 build-gpu/bench/cuda_bench MOED_CUDA_GRID_PCT=50
  bench b1-span512 build-gpu/bench/cuda_bench MOED_CUDA_ATT_SPAN=512
  bench b1-span256 build-gpu/bench/cuda_bench MOED_CUDA_ATT_SPAN=256
done
(cd /tmp/ab/chunk && timeout 100 meson test -C bg --no-rebuild cuda exact engine > /tmp/tC.log 2>&1)
say "chunk tests rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/tC.log | tr -s ' ' | tr '\n' ';')"
for v in main chunk; do
  timeout 100 /tmp/ab/$v/bg/bench/cuda_bench --backend cuda --policy lru --fracs 1,0.25 --prefetch none \
    --steps1 2,8 --steps16 1,4 --prefill 2x256 $M $M.pack > /tmp/b.txt 2>&1
  say "$v prefill (resident, 25%): $(grep -E '^\| synthetic' /tmp/b.txt | cut -d'|' -f5,6 | tr '\n' ';')"
done
for v in main b1 b1-span512; do
  X=build-gpu/daemon/moed; [ $v = main ] && X=/tmp/ab/main/bg/daemon/moed
  [ $v = b1-span512 ] && export MOED_CUDA_ATT_SPAN=512
  MOED_CUDA_PROFILE=1 timeout 60 $X run --model $M --set model.pack=$M.pack \
    --tokens 5,17,42,99,3,250,1000,7 --max-tokens 256 --max-ctx 512 --backend cuda --json > /tmp/r.txt 2> /tmp/r.err
  say "$v run rc=$?: $(grep -o '"decode_tok_s":[0-9.]*' /tmp/r.txt) $(grep -o '"tokens":\[[0-9,]*' /tmp/r.txt | head -c 60) $(grep 'cuda profile' /tmp/r.err)"
done
say done
