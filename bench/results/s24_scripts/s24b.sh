#!/bin/bash
# Session 24, call 2: k_qk_prep taking QK_HPB heads a block when the q/k norm spans the whole
# vector (OLMoE), the norm summed once for them. Experiment build: MOED_QK_HPB picks the count
# (1: a block a head, as before). GPU suites at the default (4); the kernel's time by ncu for
# 1, 2, 4, 8, 16 on a 512-token prompt (2-layer model); a 300-token prompt's logits at 1 and 4
# (must be identical); resident prefill tok/s at 1 and 4 alternating.
. bench/gpu_call.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
M2=/dev/shm/m2
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1; echo "mk rc=$?" >> $S
 build-gpu/daemon/moed mkmodel --out $M2 --family olmoe --layers 2 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk2.log 2>&1; echo "mk2 rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp $L/tests.log $OUT/s24b_gpu_tests.log
wait; say ready
TOK=$(seq 7 3 1539 | head -512 | paste -sd,)
for v in 1 2 4 8 16; do
  MOED_QK_HPB=$v MOED_CUDA_GRAPHS=0 timeout 100 ncu --kernel-name k_qk_prep --metrics gpu__time_duration.sum --csv \
    build-gpu/daemon/moed run --model $M2 --set model.pack=$M2.pack --tokens $TOK --max-tokens 1 \
    --max-ctx 1024 --backend cuda > $L/ncu$v.csv 2> $L/ncu$v.err
  say "hpb=$v ncu rc=$? k_qk_prep ns: $(grep gpu__time_duration $L/ncu$v.csv | awk -F'","' '{print $NF}' | tr -d '"' | tr '\n' ' ')"
done
TOK=$(seq 7 5 5000 | head -300 | paste -sd,)
for v in 1 4; do
  MOED_QK_HPB=$v timeout 60 build-gpu/daemon/moed run --model $M --set model.pack=$M.pack --tokens $TOK \
    --max-tokens 8 --max-ctx 1024 --backend cuda --json > $L/t$v.json 2> $L/t$v.err
  say "run hpb=$v rc=$? $(grep -o '"tokens":\[[0-9,]*' $L/t$v.json | head -c 80)"
done
python3 - $L/t4.json $L/t1.json >> $S <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
print("last logits hpb 4 vs 1: identical %s, tokens equal %s" % (a["last_logits"] == b["last_logits"], a["tokens"] == b["tokens"]))
PY
for r in 1 2 3; do for v in 1 4; do for P in 2x256 4x512; do
  [ $(( $(date +%s) - T0 )) -gt 500 ] && break 3
  MOED_QK_HPB=$v timeout 60 build-gpu/bench/cuda_bench --backend cuda --fracs 1 --prefetch none --policy lru --steps1 1,2 --steps16 1,2 --prefill $P $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "hpb=$v $P rc=$? $(grep '^| ' /tmp/b.txt | tail -1 | cut -d'|' -f5-7)"
done; done; done
say done
