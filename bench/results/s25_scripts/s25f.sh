#!/bin/bash
# Session 25, call 6: through `moed serve --backend cuda` at 50% (512 slots), a 300-token stream
# and, 50 ms after its first token, a 2000-token prompt (max_tokens 1): the stream's longest
# gap and the long request's time with batch.prefill_chunks 1, 8 and 0, twice each (itl2.py).
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
gpu_build build-gpu $L $S || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
build-gpu/daemon/moed run --model $M --set model.pack=$M.pack --tokens 1 --max-tokens 1 --backend cuda > $L/pack.log 2>&1
say ready
mkdir -p /tmp/itl
for r in 1 2; do
  for c in 1 8 0; do
    [ $(( $(date +%s) - T0 )) -gt 400 ] && break
    say "$(timeout 90 python3 bench/results/s25_scripts/itl2.py build-gpu/daemon/moed $M $c 1808$c cuda 512 50304 2100 2>&1 | tail -1)"
  done
done
say done
