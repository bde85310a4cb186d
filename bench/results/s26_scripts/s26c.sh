#!/bin/bash
# Session 26, call 3: the LFU rows (cepr and freq, 50/25/12.5%, both routings) on main against
# LFU with dynamic aging (LFU-DA: a slot's key is its uses plus the key of the last ordinary
# victim when it was last used; lfu_da_rev.patch reversed onto the tree), alternating, one round.
. bench/gpu_call.sh
. bench/gpu_ab.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
ab_old bench/results/s26_scripts/lfu_da_rev.patch
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
wait
[ -x /tmp/ab/old/build-gpu/bench/cuda_bench ] || { say "da build failed"; tail -20 /tmp/ab/old.log >> $S; exit 1; }
say ready
bench() {
  local B=build-gpu/bench/cuda_bench
  [ $1 = da ] && B=/tmp/ab/old/build-gpu/bench/cuda_bench
  timeout 120 $B --backend cuda --policy lfu --fracs 0.5,0.25,0.125 --prefetch cepr,freq --routing $2 \
    --steps1 4,32 --steps16 2,16 --prefill 2x256 --deadline 100 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
  say "$1 $2 rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,12,13,15,16 | tail -n +3 >> $S
  sed "s/^{/{\"build\": \"$1\", /" /tmp/x.jsonl >> $OUT/s26c_lfu.jsonl; rm -f /tmp/x.jsonl
}
for rt in synthetic trace:.deps/nvmoe-olmoe-all.tokens.jsonl; do
  for v in main da; do
    [ $(( $(date +%s) - T0 )) -gt 480 ] && break 2
    bench $v $rt
  done
done
grep "^|" /tmp/x.txt | head -2 | cut -d"|" -f3-9,12,13,15,16 >> $S
say done
