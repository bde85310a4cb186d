#!/bin/bash
# Session 22, call 5: GPU suites on the final change (call 4's, with routes grouped on the GPU
# only for one or two rows), then new against old (s22e.patch reversed: main), two rounds,
# synthetic routing, none and cepr with LRU.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
rm -rf /tmp/old; mkdir -p /tmp/old; tar --exclude=./build-gpu -cf - . | tar -xf - -C /tmp/old
(cd /tmp/old && patch -s -R -p1 < s22e.patch && meson setup build-gpu -Dcuda=enabled > /dev/null &&
  ninja -C build-gpu bench/cuda_bench > /tmp/old.log 2>&1; echo "old build rc=$?" >> $S) &
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -cE ":P:" build-gpu/meson-logs/testlog.txt >> $S
cp build-gpu/meson-logs/testlog.txt $OUT/s22e_testlog.txt
wait
[ -x /tmp/old/build-gpu/bench/cuda_bench ] || { say "old build failed"; tail -20 /tmp/old.log >> $S; exit 1; }
say "ready"
bench() {  # variant routing
  local B=build-gpu/bench/cuda_bench e=
  [ $1 = old ] && B=/tmp/old/build-gpu/bench/cuda_bench
  env $e timeout 70 $B --backend cuda --policy lru --fracs 0.5 --prefetch none,cepr --routing $2 \
    --steps1 4,32 --steps16 1,1 --prefill 1x4 --deadline 40 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
  say "$1 $2 rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,23 | tail -n +3 >> $S
  sed "s/^{/{\"build\": \"$1\", /" /tmp/x.jsonl >> $OUT/s22e_ab.jsonl; rm -f /tmp/x.jsonl
}
R=trace:.deps/nvmoe-olmoe-all.tokens.jsonl
for round in 1 2; do
  for v in new old; do
    for r in synthetic; do
      [ $(( $(date +%s) - T0 )) -gt 330 ] && break 3
      bench $v $r
    done
  done
done
grep "^|" /tmp/x.txt | head -2 | cut -d"|" -f3-9,23 >> $S
say done
