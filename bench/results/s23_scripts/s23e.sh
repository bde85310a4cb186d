#!/bin/bash
# Session 23, call 5: the GPU suites on two splits (engine/cuda_att_tiles.cu out of
# cuda_kernels.cu; loader/backend_cuda_prof.c out of backend_cuda.c), code motion only; the
# backend's copy profile printed at a 50% budget; a short bench against the matrix's rows.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp $L/tests.log $OUT/s23e_gpu_tests.log
wait
MOED_CUDA_PROFILE=1 timeout 90 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5 \
  --prefetch none,cepr --routing synthetic --steps1 4,32 --steps16 1,1 --prefill 2x256 --deadline 60 \
  --json $OUT/s23e_bench.jsonl $M $M.pack > /tmp/x.txt 2> /tmp/x.err
say "bench rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9,23 | tail -n +3 >> $S
grep "cuda profile" /tmp/x.err | head -8 >> $S
say done
