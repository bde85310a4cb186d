#!/bin/bash
# Session 25, call 3: the GPU suites (layer_major's load counts kept); the per-request moe
# counters through `moed serve --backend cuda` at 50% (routes reach the worker after the
# acquires, so before this call's fix every use counted as a hit).
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -h "cuda layer_major" build-gpu/meson-logs/testlog.txt | sort -u >> $S
cp $L/tests.log $OUT/s25c_gpu_tests.log
wait; say ready
P=$(python3 -c "print(','.join(str((j*7919+13)%50304) for j in range(2000)))")
U=http://127.0.0.1:18080
cm() { curl -s $U/metrics | awk '/^moed_cache_hits_total/{h+=$2} /^moed_cache_misses_total/{m+=$2} /^moed_cache_loads_total/{l+=$2} END{print "hits",h,"misses",m,"loads",l}'; }
build-gpu/daemon/moed serve --model $M --set model.pack=$M.pack --listen 127.0.0.1:18080 \
  --backend cuda --max-ctx 2100 --slots 512 --set runtime.dir=/tmp/rtc > $L/serve.log 2>&1 &
SP=$!
for i in $(seq 300); do curl -sf $U/health > /dev/null 2>&1 && break; sleep 0.2; done
for req in "{\"prompt\":[$P],\"max_tokens\":1,\"temperature\":0}" \
           '{"prompt":[5,17,42,99,3,250,1000,7],"max_tokens":32,"temperature":0}' \
           '{"prompt":[5,17,42,99,3,250,1000,7],"max_tokens":32,"temperature":0}'; do
  c0=$(cm)
  o=$(curl -s $U/v1/completions -d "$req")
  c1=$(cm)
  say "moe $(echo "$o" | grep -o '"moe":{[^}]*}') usage $(echo "$o" | grep -o '"usage":{[^}]*}'); cache before: $c0 after: $c1"
done
kill -TERM $SP; wait $SP
say done
