#!/bin/bash
# Session 21, call 1: GPU suites with the split expert copy (a load's gate/up rows marked by an
# event, the GEMV gate/up launch waiting only for them: s21a_head.patch) and main's (ae85db7,
# not yet run on a GPU) cuda suite; then that build (new) against main (old, the patch reversed),
# alternating, two rounds: none and cepr with LRU at 50%, synthetic then replayed routing.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
rm -rf /tmp/old; cp -r . /tmp/old; (cd /tmp/old && rm -rf build-gpu && patch -s -R -p1 < s21a_head.patch &&
  meson setup build-gpu -Dcuda=enabled > /dev/null && ninja -C build-gpu bench/cuda_bench tests/test_cuda > /tmp/old.log 2>&1) &
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -E "backend_head|order_head|ahead_then" build-gpu/meson-logs/testlog.txt | head -5 >> $S
wait
[ -x /tmp/old/build-gpu/bench/cuda_bench ] && say "old built" || { say "old build failed"; tail -20 /tmp/old.log >> $S; exit 1; }
(cd /tmp/old && timeout 150 meson test -C build-gpu --no-rebuild cuda > /tmp/oldt.log 2>&1; echo "old cuda suite rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' /tmp/oldt.log | tr -s ' ')" >> $S)
say "old suite done"
for round in 1 2; do
  for v in old new; do
    [ $(( $(date +%s) - T0 )) -gt 420 ] && break 2
    B=build-gpu/bench/cuda_bench; [ $v = old ] && B=/tmp/old/build-gpu/bench/cuda_bench
    for r in synthetic trace:.deps/nvmoe-olmoe-all.tokens.jsonl; do
      timeout 60 $B --backend cuda --policy lru --fracs 0.5 --prefetch none,cepr --routing $r \
        --steps1 4,32 --steps16 1,1 --prefill 1x4 --deadline 40 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
      say "$v $r rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9 | tail -n +3 >> $S
      sed "s/^{/{\"build\": \"$v\", /" /tmp/x.jsonl >> $OUT/s21a_ab.jsonl; rm -f /tmp/x.jsonl
    done
  done
done
say done
