#!/bin/bash
# Session 11 call 2: main (zcopy + chunk merged) vs next/rtin (the fast step's experts route
# themselves: eng_cu_moe_routed; MOED_CUDA_ROUTE_IN=0 = the router's launch routes).
# Before: git diff main next/rtin --binary > ab/rt.patch; cp this to repo root (on next/rtin).
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
R=$(pwd); M=/dev/shm/m
TG="$(printf 'tests/test_%s ' $GPU_SUITES) daemon/moed bench/cuda_kprof bench/cuda_bench"
rm -rf /tmp/ab; mkdir -p /tmp/ab/main
tar --exclude=./build-gpu --exclude=./.deps --exclude=./ab --exclude=./.git -cf - . | tar -xf - -C /tmp/ab/main
(cd /tmp/ab/main && patch -R -p1 -s < $R/ab/rt.patch) || say "reverse patch failed"
(meson setup build-gpu -Dcuda=enabled > /tmp/sB.log 2>&1; ninja -j10 -C build-gpu $TG > /tmp/bB.log 2>&1; echo "rt build rc=$?" >> $S; grep -A5 error /tmp/bB.log | head -20 >> $S) &
(cd /tmp/ab/main && meson setup bg -Dcuda=enabled > /tmp/sA.log 2>&1 && ninja -j6 -C bg $TG > /tmp/bA.log 2>&1; echo "main build rc=$?" >> $S) &
wait; say built
[ -d $M ] || (build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
for f in 1 0; do
  MOED_CUDA_ROUTE_IN=$f timeout 150 meson test -C build-gpu --no-rebuild $GPU_SUITES --print-errorlogs > /tmp/t$f.log 2>&1
  say "rt tests route_in=$f rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/t$f.log | tr -s ' ' | tr '\n' ';')"
  grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head -5 >> $S
  grep -h "experts routing themselves\|routes identical" build-gpu/meson-logs/testlog.txt | head -4 >> $S
done
for i in 1 2; do
  say "kprof1 main: $(timeout 60 /tmp/ab/main/bg/bench/cuda_kprof 1 128 2>&1 | grep -E '^decoder layer  |^moe|failed' | tr -s ' ' | tr '\n' ';')"
  timeout 60 build-gpu/bench/cuda_kprof 1 128 > $OUT/kprof1_rt_$i.txt 2>&1
  say "kprof1 rt: $(grep -E '^decoder layer  |^decoder layer, the|^moe|failed' $OUT/kprof1_rt_$i.txt | tr -s ' ' | tr '\n' ';')"
done
timeout 60 build-gpu/bench/cuda_kprof 2 128 > $OUT/kprof2_rt.txt 2>&1
say "kprof2 rt: $(grep -E '^decoder layer  |^decoder layer, the|^moe|failed' $OUT/kprof2_rt.txt | tr -s ' ' | tr '\n' ';')"
timeout 100 /usr/local/cuda/bin/compute-sanitizer --print-limit 4 build-gpu/bench/cuda_kprof 1 128 > /tmp/cs.txt 2>&1
say "sanitizer kprof1 rc=$?: $(grep -E 'ERROR SUMMARY|Invalid|failed' /tmp/cs.txt | head -6 | tr '\n' ';')"
timeout 100 /usr/local/cuda/bin/compute-sanitizer --print-limit 4 build-gpu/bench/cuda_kprof 2 128 > /tmp/cs.txt 2>&1
say "sanitizer kprof2 rc=$?: $(grep -E 'ERROR SUMMARY|Invalid|failed' /tmp/cs.txt | head -6 | tr '\n' ';')"
wait
bench() {  # NAME BIN env...
  local n=$1 x=$2; shift 2
  env "$@" MOED_CUDA_PROFILE=1 timeout 80 $x --backend cuda --policy lru --fracs 1 --prefetch none \
    --steps1 8,64 --steps16 4,32 --prefill 2x256 $M $M.pack > /tmp/b.txt 2> /tmp/b.err
  say "$n bench rc=$?: $(tail -1 /tmp/b.txt) $(grep 'cuda profile' /tmp/b.err | head -1 | sed 's/.*per step (us)://')"
}
for r in 1 2 3; do
  bench main /tmp/ab/main/bg/bench/cuda_bench X=1
  bench rt build-gpu/bench/cuda_bench X=1
  bench rt-off build-gpu/bench/cuda_bench MOED_CUDA_ROUTE_IN=0
done
for v in main rt; do
  X=build-gpu/daemon/moed; [ $v = main ] && X=/tmp/ab/main/bg/daemon/moed
  MOED_CUDA_PROFILE=1 timeout 60 $X run --model $M --set model.pack=$M.pack \
    --tokens 5,17,42,99,3,250,1000,7 --max-tokens 256 --max-ctx 512 --backend cuda --json > /tmp/r.txt 2> /tmp/r.err
  say "$v run rc=$?: $(grep -o '"decode_tok_s":[0-9.]*' /tmp/r.txt) $(grep -o '"tokens":\[[0-9,]*' /tmp/r.txt | head -c 60) $(grep 'cuda profile' /tmp/r.err)"
done
say done
