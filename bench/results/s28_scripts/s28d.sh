#!/bin/bash
# Session 28, call 6: a bf16 model whose expert intermediate size (100) is not a multiple of 8
# (the GPU runs its experts through cuBLAS, not the GEMVs; the host pool does not open):
# `moed run --backend cuda` all resident and at 6 of 16 slots with the default host threads
# and with 12, tokens and last logits compared (before this commit the engine failed to open
# with host threads: host_ffn_open refused I = 100).
. bench/gpu_call.sh
gpu_build build-gpu $L $S || exit 1
M=/dev/shm/odd
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 2 --experts 8 --top-k 2 --hidden 264 \
  --heads 4 --intermediate 100 --vocab 300 --dtype bf16 --skewed > $L/mk.log 2>&1; say "$(tail -1 $L/mk.log)"
for a in "" "--slots 6" "--slots 6 --set device.host_threads=12"; do
  build-gpu/daemon/moed run --model $M --tokens 5,17,42 --max-tokens 32 --max-ctx 128 --backend cuda --json $a > $L/r.txt 2> $L/r.err
  say "[$a] rc=$? $(grep -oE '"(tokens|last_logits)":\[[^]]*' $L/r.txt | md5sum | cut -c1-12) $(grep -o '"tokens":\[[0-9,]*' $L/r.txt | head -c 50) $(tail -1 $L/r.err)"
done
say done
