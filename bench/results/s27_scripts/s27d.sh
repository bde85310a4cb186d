#!/bin/bash
# Session 27, call 6: resident batch-1 decode (moed run, 256 tokens, all experts resident),
# c20581e (host_rev2.patch reversed) against HEAD with the router's XH template flag, one
# machine, alternating old/new three times.
. bench/gpu_call.sh
. bench/gpu_ab.sh
ab_old $PWD/bench/results/s27_scripts/host_rev2.patch daemon/moed
gpu_build build-gpu $L $S || exit 1
build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1
wait; say ready
for i in 1 2 3; do
  for side in old new; do
    [ $(( $(date +%s) - T0 )) -gt 200 ] && break
    B=build-gpu; [ $side = old ] && B=/tmp/ab/old/build-gpu
    timeout 40 $B/daemon/moed run --model $M --set model.pack=$M.pack --tokens 5,17,42,99,3,250,1000,7 \
      --max-tokens 256 --max-ctx 512 --backend cuda --json > $L/r.txt 2> $L/r.err
    say "$side $i rc=$?: $(grep -o '"decode_tok_s":[0-9.]*' $L/r.txt)"
  done
done
say done
