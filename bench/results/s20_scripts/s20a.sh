#!/bin/bash
# Session 20, call 1: GPU suites on main (0dfe9b0 and 1809926 had not run on a GPU), then a CUPTI
# timeline (bench/cupti_trace.c) of batch-1 decode at a 50% budget without prediction, LRU,
# replayed and synthetic routing, 16-layer model of the shape.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
CI=$(dirname $(find / -name cupti.h -path "*include*" 2>/dev/null | head -1))
CL=$(dirname $(find / -name "libcupti.so*" 2>/dev/null | head -1))
say "cupti: $CI $CL"
gcc -shared -fPIC -O2 -I$CI -I/usr/local/cuda/include bench/cupti_trace.c -L$CL -lcupti -Wl,-rpath,$CL -o /tmp/ct.so 2>> $S && say "tracer built"
wait
say "model: $(tail -1 $L/mk.log)"
for r in trace:.deps/nvmoe-olmoe-all.tokens.jsonl synthetic; do
  n=$(echo $r | cut -c1-5)
  CUDA_INJECTION64_PATH=/tmp/ct.so CUPTI_TRACE_OUT=/tmp/t_$n.csv timeout 120 build-gpu/bench/cuda_bench \
    --backend cuda --policy lru --fracs 0.5 --prefetch none --routing $r --steps1 4,24 --steps16 1,1 \
    --prefill 1x4 --json /tmp/x_$n.jsonl $M $M.pack > /tmp/x_$n.txt 2>&1
  say "$r rc=$? lines=$(wc -l < /tmp/t_$n.csv)"; grep '^|' /tmp/x_$n.txt | cut -d'|' -f2-9 >> $S
  gzip -c /tmp/t_$n.csv > $OUT/s20a_trace_$n.csv.gz; cp /tmp/x_$n.jsonl $OUT/s20a_$n.jsonl
done
say done
