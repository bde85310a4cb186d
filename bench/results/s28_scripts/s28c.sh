#!/bin/bash
# Session 28, call 5: the GPU suites on main's last commit, then `moed run` (256 greedy tokens, the
# matrix's prompt) all resident, at 25% of the experts (--slots 256) with the default
# device.host_threads and with 0, twice each, alternating: decode tok/s and the tokens compared.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1 &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -E "host experts|host expert bits|silu_mul" build-gpu/meson-logs/testlog.txt >> $S
wait; say ready
r() {
  timeout 120 build-gpu/daemon/moed run --model $M --set model.pack=$M.pack --tokens 5,17,42,99,3,250,1000,7 \
    --max-tokens 256 --max-ctx 512 --backend cuda --json "$@" > $L/r.txt 2> $L/r.err
  local rc=$?
  grep -oE '"(tokens|last_logits)":\[[^]]*' $L/r.txt | md5sum | cut -c1-12 > $L/h.txt
  say "$* rc=$rc $(grep -o '"decode_tok_s":[0-9.]*' $L/r.txt) tokens $(cat $L/h.txt)"
}
r
for i in 1 2; do
  r --slots 256
  r --slots 256 --set device.host_threads=0
done
say done
