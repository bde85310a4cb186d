#!/bin/bash
# Session 18, call 3 (main with the prefetch queue and the baseline's LD_LOAD_NOW): the replayed
# matrix, the GPU suites, and the synthetic layer-ahead rows again.
OUT=$OUT TAG=s18c PART=2 bash bench/results/matrix_call.sh
. bench/gpu_env.sh; . bench/gpu_build.sh; export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; S=$OUT/sum.txt; L=/tmp/lg
say() { echo "$*" | tee -a $S; }
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
timeout 150 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 0.5,0.25,0.125 \
  --prefetch all --routing synthetic --steps1 4,32 --steps16 2,16 --prefill 2x256 \
  --deadline 140 --json $OUT/s18c_all_synthetic.jsonl $M $M.pack > /tmp/all.txt 2>&1
say "all rows rc=$?"; grep '^|' /tmp/all.txt | cut -d'|' -f2-8 >> $S
