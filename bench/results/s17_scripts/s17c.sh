#!/bin/bash
# Session 17, call C: tiled prefill attention (MOED_CUDA_ATT_TILES=0: k_attend as before, the
# same binary): GPU suites, a 300-token prompt's logits both ways (OLMoE shape, hd 128),
# prefill A/B, ncu breakdown of a 512-token prefill again.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; M2=/dev/shm/m2
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S
 build-gpu/daemon/moed mkmodel --out $M2 --family olmoe --layers 2 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk2.log 2>&1; echo "mk2 rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
wait; say ready
TOK=$(seq 7 5 5000 | head -300 | paste -sd,)
for v in 1 0; do
  MOED_CUDA_ATT_TILES=$v timeout 60 build-gpu/daemon/moed run --model $M --set model.pack=$M.pack --tokens $TOK \
    --max-tokens 8 --max-ctx 1024 --backend cuda --json > $L/t$v.json 2> $L/t$v.err
  say "run tiles=$v rc=$? $(grep -o '"tokens":\[[0-9,]*' $L/t$v.json | head -c 80) $(grep -o '"prefill_seconds":[0-9.e-]*' $L/t$v.json)"
done
python3 - $L/t1.json $L/t0.json >> $S <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
la, lb = a["last_logits"], b["last_logits"]
d = max(abs(x - y) for x, y in zip(la, lb)); m = max(abs(x) for x in lb)
print("last logits tiles vs k_attend: max |d| %.3g (max |logit| %.3g), tokens equal %s" % (d, m, a["tokens"] == b["tokens"]))
PY
for r in 1 2; do for v in 1 0; do for P in 2x256 4x512; do
  MOED_CUDA_ATT_TILES=$v timeout 60 build-gpu/bench/cuda_bench --backend cuda --fracs 1 --prefetch none --policy lru --steps1 1,2 --steps16 1,2 --prefill $P $M $M.pack > /tmp/b.txt 2>/tmp/b.err
  say "tiles=$v $P rc=$? $(grep '^| ' /tmp/b.txt | tail -1 | cut -d'|' -f5-7)"
done; done; done
TOK=$(seq 7 3 1539 | head -512 | paste -sd,)
MOED_CUDA_GRAPHS=0 timeout 200 ncu --metrics gpu__time_duration.sum --csv \
  build-gpu/daemon/moed run --model $M2 --set model.pack=$M2.pack --tokens $TOK --max-tokens 1 \
  --max-ctx 1024 --backend cuda > $L/ncu.csv 2> $L/ncu.err
say "ncu rc=$?"
python3 - $L/ncu.csv > $OUT/s17c_ncu_prefill.txt <<'PY'
import csv, sys, collections
t = collections.defaultdict(float); n = collections.Counter(); units = set()
for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"')):
    if r.get('Metric Name') != 'gpu__time_duration.sum': continue
    v = float(r['Metric Value'].replace(',', '')); units.add(r['Metric Unit'])
    k = r['Kernel Name'][:90]; t[k] += v; n[k] += 1
tot = sum(t.values())
print("512-token prefill, 2-layer OLMoE shape, ncu gpu__time_duration (%s; each kernel alone), total %.1f" % (",".join(units), tot))
for k, v in sorted(t.items(), key=lambda x: -x[1])[:30]:
    print("%10.1f %5.1f%% %5d  %s" % (v, 100 * v / tot, n[k], k))
PY
head -16 $OUT/s17c_ncu_prefill.txt >> $S
cp build-gpu/meson-logs/testlog.txt $OUT/s17c_testlog.txt
say done
