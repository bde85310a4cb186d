#!/bin/bash
# Session 17, call B: the wave code split into engine_cuda_wave.c (GPU suites again), and where
# a 512-token prefill's GPU time goes now (ncu, 2-layer OLMoE-shaped model, by kernel name).
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m2
gpu_build build-gpu $L $S bench/cuda_bench || exit 1
(build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 2 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
grep -h "waves of one" build-gpu/meson-logs/testlog.txt | head -2 >> $S
wait; say ready
TOK=$(seq 7 3 1539 | head -512 | paste -sd,)
MOED_CUDA_GRAPHS=0 timeout 240 ncu --metrics gpu__time_duration.sum --csv \
  build-gpu/daemon/moed run --model $M --set model.pack=$M.pack --tokens $TOK --max-tokens 1 \
  --max-ctx 1024 --backend cuda > $L/ncu.csv 2> $L/ncu.err
say "ncu rc=$? lines $(wc -l < $L/ncu.csv)"; tail -2 $L/ncu.err >> $S
python3 - $L/ncu.csv > $OUT/s17b_ncu_prefill.txt <<'PY'
import csv, sys, collections
t = collections.defaultdict(float); n = collections.Counter()
for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"')):
    if r.get('Metric Name') != 'gpu__time_duration.sum': continue
    v = float(r['Metric Value'].replace(',', '')); u = r['Metric Unit']
    v = v / 1000 if u == 'nsecond' else v * 1000 if u == 'msecond' else v
    k = r['Kernel Name'][:90]; t[k] += v; n[k] += 1
tot = sum(t.values())
print("512-token prefill, 2-layer OLMoE shape, ncu gpu__time_duration (us, kernels alone), total %.1f" % tot)
for k, v in sorted(t.items(), key=lambda x: -x[1])[:30]:
    print("%10.1f %5.1f%% %5d  %s" % (v, 100 * v / tot, n[k], k))
PY
head -25 $OUT/s17b_ncu_prefill.txt >> $S
say done
