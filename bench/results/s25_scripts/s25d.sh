#!/bin/bash
# Session 25, call 4: the GPU suites; a call's next layer prefetched while the current one
# runs (MOED_CUDA_CALL_AHEAD 0 against 1, both layer by layer) on prefill 4 x 512 at every
# budget, alternating, and 8 x 512 at 50%; with the prompt tables; the per-request moe counters
# through `moed serve --backend cuda` at 50% (bytes_loaded once a call).
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -h "cuda layer_major" build-gpu/meson-logs/testlog.txt | sort -u >> $S
cp $L/tests.log $OUT/s25d_gpu_tests.log
wait; say ready
B=build-gpu/bench/cuda_bench
row() { grep '^| ' /tmp/b.txt | tail -n +2 | cut -d'|' -f3-12 >> $S; }
for r in 1 2; do
  for a in 0 1; do
    MOED_CUDA_CALL_AHEAD=$a timeout 100 $B --backend cuda --policy lru --fracs 1,0.5,0.25,0.125 \
      --prefetch none --routing synthetic --steps1 1,2 --steps16 1,1 --prefill 4x512 --deadline 80 \
      --json $OUT/s25d_prefill.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
    say "round $r ahead $a 4x512 rc=$?"; row
  done
done
for a in 0 1; do
  MOED_CUDA_CALL_AHEAD=$a timeout 100 $B --backend cuda --policy lru --fracs 0.5 \
    --prefetch none --routing synthetic --steps1 1,2 --steps16 1,1 --prefill 8x512 --deadline 80 \
    --json $OUT/s25d_prefill8.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "ahead $a 8x512 rc=$?"; row
done
MOED_CUDA_CALL_AHEAD=1 timeout 100 $B --backend cuda --policy lru --fracs 0.5,0.25 \
  --prefetch freq,cepr --routing synthetic --steps1 1,2 --steps16 1,1 --prefill 4x512 \
  --prefill-calls 2 --deadline 80 --json $OUT/s25d_pred.jsonl $M $M.pack > /tmp/b.txt 2>/tmp/b.err
say "ahead 1 freq,cepr prefill-calls 2 rc=$?"; row
P=$(python3 -c "print(','.join(str((j*7919+13)%50304) for j in range(2000)))")
U=http://127.0.0.1:18080
cm() { curl -s $U/metrics | awk '/^moed_cache_hits_total/{h+=$2} /^moed_cache_misses_total/{m+=$2} /^moed_cache_loads_total/{l+=$2} /^moed_cache_loaded_bytes_total/{b+=$2} END{print "hits",h,"misses",m,"loads",l,"bytes",b}'; }
build-gpu/daemon/moed serve --model $M --set model.pack=$M.pack --listen 127.0.0.1:18080 \
  --backend cuda --max-ctx 2100 --slots 512 --set runtime.dir=/tmp/rtd > $L/serve.log 2>&1 &
SP=$!
for i in $(seq 300); do curl -sf $U/health > /dev/null 2>&1 && break; sleep 0.2; done
for req in "{\"prompt\":[$P],\"max_tokens\":1,\"temperature\":0}" \
           '{"prompt":[5,17,42,99,3,250,1000,7],"max_tokens":32,"temperature":0}' \
           "{\"prompt\":[$P],\"max_tokens\":1,\"temperature\":0}"; do
  c0=$(cm); t0=$(date +%s.%N)
  o=$(curl -s $U/v1/completions -d "$req")
  t1=$(date +%s.%N); c1=$(cm)
  say "$(python3 -c "print('%.3f s' % ($t1-$t0))") moe $(echo "$o" | grep -o '"moe":{[^}]*}') tokens $(echo "$o" | grep -o '"tokens":\[[0-9,]*' | head -c 30); cache before: $c0 after: $c1"
done
kill -TERM $SP; wait $SP
say done
