#!/bin/bash
# Session 28, call 4: `moed serve --backend cuda` with device.host_threads at its new default
# (-1) on the OLMoE-shaped bf16 model: all resident, then 25% of the experts (--slots
# 256) with the default and with host_threads 0. Each: the worker's start line, 4 greedy
# completions of 64 tokens (tokens compared across the three), 1 client x 4 x 64 and 16 clients x
# 2 x 64 (bench/serve_load.py), the cache's counters from /metrics.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
say "cpus $(nproc)"
gpu_build build-gpu $L $S || exit 1
moed=build-gpu/daemon/moed
$moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
say "$(tail -1 $L/mk.log)"
U=http://127.0.0.1:18080
run() {
  local name=$1; shift
  $moed serve --model $M --listen 127.0.0.1:18080 --backend cuda --max-ctx 512 \
    --set runtime.dir=$L/rt_$name "$@" > $L/serve_$name.log 2>&1 &
  local sp=$!
  for i in $(seq 900); do curl -sf $U/health > /dev/null 2>&1 && break; sleep 0.2; done
  say "$name: $(grep -o 'worker: ready.*' $L/serve_$name.log | head -1)"
  : > $L/tok_$name.txt
  for p in 1 2 3 4; do
    curl -s $U/v1/completions -d "{\"prompt\":[$((p*5)),17,42,99,3,250,400,$((p*7))],\"max_tokens\":64,\"temperature\":0}" |
      python3 -c "import json,sys;print(json.load(sys.stdin)['choices'][0]['tokens'])" >> $L/tok_$name.txt
  done
  say "$name tokens: $(md5sum < $L/tok_$name.txt | cut -c1-12) $(head -c 80 $L/tok_$name.txt)"
  say "$name 1 client: $(python3 bench/serve_load.py $U 1 4 64)"
  say "$name 16 clients: $(python3 bench/serve_load.py $U 16 2 64)"
  curl -s $U/metrics | awk '/^moed_cache_(hits|misses|loads|host_runs|prefetch_dropped)_total|^moed_generated_tokens_total/ {
    split($1, a, "{"); s[a[1]] += $2} END {for (k in s) printf "%s %d  ", k, s[k]; print ""}' >> $S
  kill -TERM $sp; wait $sp; say "$name exit $?"
}
run resident
run b25_default --slots 256
run b25_copy --slots 256 --set device.host_threads=0
cmp -s $L/tok_resident.txt $L/tok_b25_default.txt && say "25% default: tokens = resident" || say "25% default: tokens DIFFER"
cmp -s $L/tok_resident.txt $L/tok_b25_copy.txt && say "25% copy-only: tokens = resident" || say "25% copy-only: tokens DIFFER"
tar czf $OUT/s28b_logs.tgz -C $L serve_resident.log serve_b25_default.log serve_b25_copy.log tok_resident.txt tok_b25_default.txt tok_b25_copy.txt
say done
