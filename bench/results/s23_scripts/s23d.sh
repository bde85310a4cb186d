#!/bin/bash
# Session 23, call 4: CUPTI timelines (bench/cupti_trace.c, bench/cupti_idle.py counting prefetch
# pieces too) of batch-1 decode at 50% with cepr: synthetic LRU and replayed FIFO (two of the six
# rows without a bound), and synthetic none/LRU beside them on the same machine.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
CI=$(dirname $(find / -name cupti.h -path "*include*" 2>/dev/null | head -1))
CL=$(dirname $(find / -name "libcupti.so*" 2>/dev/null | head -1))
gcc -shared -fPIC -O2 -I$CI -I/usr/local/cuda/include bench/cupti_trace.c -L$CL -lcupti -Wl,-rpath,$CL -o /tmp/ct.so 2>> $S && say "tracer built"
wait
R=trace:.deps/nvmoe-olmoe-all.tokens.jsonl
for c in "synthetic lru cepr" "$R fifo cepr" "synthetic lru none"; do
  set -- $c; n=$(echo $1 | cut -c1-5)_$2_$3
  CUDA_INJECTION64_PATH=/tmp/ct.so CUPTI_TRACE_OUT=/tmp/t_$n.csv timeout 150 build-gpu/bench/cuda_bench \
    --backend cuda --policy $2 --fracs 0.5 --prefetch $3 --routing $1 --steps1 4,24 --steps16 1,1 \
    --prefill 1x4 --json /tmp/x_$n.jsonl $M $M.pack > /tmp/x_$n.txt 2>&1
  say "$n rc=$? lines=$(wc -l < /tmp/t_$n.csv)"; grep '^|' /tmp/x_$n.txt | cut -d'|' -f3-9,23 | tail -n +3 >> $S
  echo "== $n" >> $OUT/s23d_idle.txt
  python3 bench/cupti_idle.py /tmp/t_$n.csv -385 352 >> $OUT/s23d_idle.txt 2>&1
  cat /tmp/x_$n.jsonl >> $OUT/s23d_runs.jsonl
  [ $3 = cepr ] && gzip -c /tmp/t_$n.csv > $OUT/s23d_trace_$n.csv.gz
  [ $(( $(date +%s) - T0 )) -gt 400 ] && break
done
say done
