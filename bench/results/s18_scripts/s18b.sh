#!/bin/bash
# Session 18, call 2: the prefetch queue (build, GPU suites, kprof, run, synthetic matrix), then
# an A/B of some rows with MOED_CUDA_PREFETCH_QUEUE=0 (the old way) and =1 on one machine.
OUT=$OUT TAG=s18b PART=1 bash bench/results/matrix_call.sh
. bench/gpu_env.sh; export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; S=$OUT/sum.txt; i=0
for q in 0 1 0 1; do
  i=$((i+1))
  MOED_CUDA_PREFETCH_QUEUE=$q timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru \
    --fracs 0.5,0.125 --prefetch cepr,freq --routing synthetic --steps1 4,32 --steps16 1,1 --prefill 1x4 \
    --deadline 50 --json /tmp/ab$i.jsonl $M $M.pack > /tmp/ab.txt 2>&1
  echo "queue=$q rc=$?" >> $S; grep '^|' /tmp/ab.txt | cut -d'|' -f2-8 >> $S
  sed "s/^{/{\"queue\": $q, /" /tmp/ab$i.jsonl >> $OUT/s18b_ab.jsonl
done
