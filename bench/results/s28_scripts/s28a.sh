#!/bin/bash
# Session 28, call 1: the GPU suites (test_cuda's silu_bits, host_expert_bits, and host_experts
# now bit for bit), then device.host_threads 12 on the host path before this session (49ed4f5:
# host_exact.patch reversed) against HEAD: LRU with none and cepr at 50% and 12.5%, synthetic
# routing, alternating twice.
. bench/gpu_call.sh
. bench/gpu_ab.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
ab_old $PWD/bench/results/s28_scripts/host_exact.patch
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -E "host experts|host expert bits|silu_mul|skipped" build-gpu/meson-logs/testlog.txt >> $S
cp build-gpu/meson-logs/testlog.txt $OUT/s28a_gpu_testlog.txt
wait; say ready
for i in 1 2; do
  for side in old new; do
    [ $(( $(date +%s) - T0 )) -gt 480 ] && break
    B=build-gpu; [ $side = old ] && B=/tmp/ab/old/build-gpu
    timeout 100 $B/bench/cuda_bench --backend cuda --policy lru --fracs 0.5,0.125 --prefetch none,cepr \
      --steps1 4,32 --steps16 2,16 --prefill 2x256 --deadline 90 --host-threads 12 $M $M.pack > /tmp/x.txt 2>&1
    say "$side $i rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,12,13 | tail -n +3 >> $S
  done
done
say done
