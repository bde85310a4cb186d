#!/bin/bash
# Session 20, call 2: GPU suites (with override_probs), then replayed routing with the router's
# probabilities zero-copy and the spin wait (MOED_CUDA_SPIN=1, new) against the copy and
# cudaStreamSynchronize (0, as before), alternating, two rounds; then a CUPTI timeline of the
# new path (replayed, none/LRU 50%).
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep "cuda override" build-gpu/meson-logs/testlog.txt >> $S
wait
TR=trace:.deps/nvmoe-olmoe-all.tokens.jsonl
for round in 1 2; do
  for sp in 0 1; do
    [ $(( $(date +%s) - T0 )) -gt 400 ] && break 2
    MOED_CUDA_SPIN=$sp timeout 120 build-gpu/bench/cuda_bench --backend cuda --policy lru \
      --fracs 0.5,0.25 --prefetch none,cepr,freq --routing $TR --steps1 4,32 --steps16 1,2 \
      --prefill 1x4 --deadline 90 --json /tmp/x.jsonl $M $M.pack > /tmp/x.txt 2>&1
    say "spin=$sp rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9 | tail -n +3 >> $S
    sed "s/^{/{\"spin\": $sp, /" /tmp/x.jsonl >> $OUT/s20b_ab.jsonl; rm -f /tmp/x.jsonl
  done
done
CI=$(dirname $(find / -name cupti.h -path "*include*" 2>/dev/null | head -1))
CL=$(dirname $(find / -name "libcupti.so*" 2>/dev/null | head -1))
gcc -shared -fPIC -O2 -I$CI -I/usr/local/cuda/include bench/cupti_trace.c -L$CL -lcupti -Wl,-rpath,$CL -o /tmp/ct.so
CUDA_INJECTION64_PATH=/tmp/ct.so CUPTI_TRACE_OUT=/tmp/t.csv timeout 100 build-gpu/bench/cuda_bench \
  --backend cuda --policy lru --fracs 0.5 --prefetch none --routing $TR --steps1 4,24 --steps16 1,1 \
  --prefill 1x4 $M $M.pack > /tmp/x.txt 2>&1
say "trace rc=$?"; grep '^|' /tmp/x.txt | cut -d'|' -f3-9 | tail -n +3 >> $S
gzip -c /tmp/t.csv > $OUT/s20b_trace_replay.csv.gz
say done
