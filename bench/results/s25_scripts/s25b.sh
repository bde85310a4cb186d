#!/bin/bash
# Session 25, call 2: the GPU suites (layer_major at one layer's slots); a 2000-token prompt
# through `moed run` (whole prompt: one call of four chunks) a chunk a call (MOED_CUDA_CALL_CHUNKS=1)
# and layer by layer (8) at every budget; the same prompt through `moed serve` at 50%
# (the worker now runs a lone prompt in one call).
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -h "cuda layer_major" $L/tests.log | sort -u >> $S
cp $L/tests.log $OUT/s25b_gpu_tests.log
wait; say ready
P=$(python3 -c "print(','.join(str((j*7919+13)%50304) for j in range(2000)))")
P2=$(python3 -c "print(','.join(str((j*104729+71)%50304) for j in range(2000)))")
for r in 1 2; do
  for slots in 1024 512 256 128; do
    for cc in 1 8; do
      [ $(( $(date +%s) - T0 )) -gt 400 ] && break
      MOED_CUDA_CALL_CHUNKS=$cc timeout 60 build-gpu/daemon/moed run --model $M --set model.pack=$M.pack \
        --set cache.slots=$slots --tokens $P --max-tokens 1 --max-ctx 2048 --backend cuda --json > $L/r.txt 2> $L/r.err
      say "run r$r slots $slots call_chunks $cc rc=$?: $(grep -o '"prefill_seconds":[0-9.]*' $L/r.txt) $(grep -o '"tokens":\[[0-9,]*' $L/r.txt | head -c 40) $(tail -1 $L/r.err | head -c 200)"
    done
  done
done
U=http://127.0.0.1:18080
for cc in 8 1; do
  [ $(( $(date +%s) - T0 )) -gt 470 ] && break
  MOED_CUDA_CALL_CHUNKS=$cc build-gpu/daemon/moed serve --model $M --set model.pack=$M.pack --listen 127.0.0.1:18080 \
    --backend cuda --max-ctx 2100 --slots 512 --set runtime.dir=/tmp/rt$cc > $L/serve$cc.log 2>&1 &
  SP=$!
  for i in $(seq 300); do curl -sf $U/health > /dev/null 2>&1 && break; sleep 0.2; done
  for p in "$P" "$P2" "$P"; do
    t0=$(date +%s.%N)
    o=$(curl -s $U/v1/completions -d "{\"prompt\":[$p],\"max_tokens\":1,\"temperature\":0}")
    t1=$(date +%s.%N)
    say "serve 50% call_chunks $cc: $(python3 -c "print('%.3f s' % ($t1-$t0))") $(echo "$o" | grep -o '"tokens":\[[0-9,]*') $(echo "$o" | grep -o '"bytes_loaded":[0-9]*')"
  done
  say "$(curl -s $U/metrics | grep -E '^moed_prefill_(calls|yields)_total')"
  kill -TERM $SP; wait $SP
done
say done
