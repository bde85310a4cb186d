#!/bin/bash
# Session 24, call 3: k_qk_prep preparing two heads at a time (head_prep<2>, as k_attend does
# its q and k) on top of call 2's four heads a block. New against old (s24c_pairs.patch
# reversed): GPU suites on new, k_qk_prep's time by ncu (512-token prompt, 2-layer model),
# a 300-token prompt's logits (must be identical), resident prefill tok/s alternating.
. bench/gpu_call.sh
. bench/gpu_ab.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> $S
M2=/dev/shm/m2
ab_old bench/results/s24_scripts/s24c_pairs.patch bench/cuda_bench daemon/moed
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk.log 2>&1; echo "mk rc=$?" >> $S
 build-gpu/daemon/moed mkmodel --out $M2 --family olmoe --layers 2 $OLMOE_SHAPE --dtype bf16 --skewed > $L/mk2.log 2>&1; echo "mk2 rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
cp $L/tests.log $OUT/s24c_gpu_tests.log
wait
[ -x /tmp/ab/old/build-gpu/bench/cuda_bench ] || { say "old build failed"; tail -20 /tmp/ab/old.log >> $S; exit 1; }
say ready
bin() { [ $1 = old ] && echo /tmp/ab/old/build-gpu/$2 || echo build-gpu/$2; }
TOK=$(seq 7 3 1539 | head -512 | paste -sd,)
for v in new old new old; do
  MOED_CUDA_GRAPHS=0 timeout 100 ncu --kernel-name k_qk_prep --metrics gpu__time_duration.sum --csv \
    $(bin $v daemon/moed) run --model $M2 --set model.pack=$M2.pack --tokens $TOK --max-tokens 1 \
    --max-ctx 1024 --backend cuda > $L/ncu.csv 2> $L/ncu.err
  say "$v ncu rc=$? k_qk_prep ns: $(grep gpu__time_duration $L/ncu.csv | awk -F'","' '{print $NF}' | tr -d '"' | tr '\n' ' ')"
done
TOK=$(seq 7 5 5000 | head -300 | paste -sd,)
for v in new old; do
  timeout 60 $(bin $v daemon/moed) run --model $M --set model.pack=$M.pack --tokens $TOK \
    --max-tokens 8 --max-ctx 1024 --backend cuda --json > $L/t$v.json 2> $L/t$v.err
  say "run $v rc=$? $(grep -o '"tokens":\[[0-9,]*' $L/t$v.json | head -c 80)"
done
python3 - $L/tnew.json $L/told.json >> $S <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
print("last logits new vs old: identical %s, tokens equal %s" % (a["last_logits"] == b["last_logits"], a["tokens"] == b["tokens"]))
PY
for r in 1 2 3; do for v in new old; do for P in 2x256 4x512; do
  [ $(( $(date +%s) - T0 )) -gt 500 ] && break 3
  timeout 60 $(bin $v bench/cuda_bench) --backend cuda --fracs 1 --prefetch none --policy lru --steps1 1,2 --steps16 1,2 --prefill $P $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "$v $P rc=$? $(grep '^| ' /tmp/b.txt | tail -1 | cut -d'|' -f5-7)"
done; done; done
say done
