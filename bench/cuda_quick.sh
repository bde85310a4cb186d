#!/bin/bash
# On the GPU host: build with CUDA, run the CUDA/engine/cache tests, the
# per-kernel times (bench/cuda_kprof), GEMV variants (bench/cuda_gemv_lab) and
# launch boundaries against a grid barrier (bench/cuda_sync_lab), then
# decode timings of `moed run --json` (its "timing" object) on the issue's
# 16-layer OLMoE-shaped bf16 model: all experts resident (CUDA graphs; the
# same with MOED_CUDA_PDL=0, with MOED_CUDA_NORM_GEMV=0; MOED_CUDA_GRAPHS=0),
# and a 25% budget.  .deps carried (shared/GPU.md).
# Results in $OUT/quick.txt.   bench/cuda_quick.sh [LAYERS] [STEPS]
set -u
T0=$(date +%s)
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"; S=$OUT/quick.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
LAYERS=${1:-16}; STEPS=${2:-256}
trap 'tar czf $OUT/logs.tgz -C /tmp/quick . 2>/dev/null' EXIT
. bench/gpu_env.sh
. bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
say "$(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader); profilers: $(which ncu nsys 2>/dev/null | tr "\n" " ")"
gpu_build build-gpu $OUT $S || exit 1
gpu_test build-gpu $OUT
W=/tmp/quick; rm -rf $W; mkdir -p $W
cp build-gpu/meson-logs/testlog.txt $W/ 2>/dev/null
grep -E ":[EF]:|Assertion|differs" build-gpu/meson-logs/testlog.txt | head -20 >> $S
grep -E "^cuda " build-gpu/meson-logs/testlog.txt | grep -v "identical" | head -40 >> $S
grep -cE "^cuda exact .*identical" build-gpu/meson-logs/testlog.txt >> $S
if ninja -C build-gpu bench/cuda_kprof bench/cuda_gemv_lab bench/cuda_sync_lab >> $OUT/build.log 2>&1; then
	for a in "1 128" "16 128" "1 1024"; do build-gpu/bench/cuda_kprof $a >> $S 2>&1; done
	timeout 60 build-gpu/bench/cuda_gemv_lab >> $S 2>&1
	timeout 60 build-gpu/bench/cuda_sync_lab >> $S 2>&1
fi
[ "${QUICK_BENCH:-1}" = 0 ] && exit 0
M=/dev/shm/olmoe_bench; moed=build-gpu/daemon/moed
$moed mkmodel --out $M --family olmoe --layers $LAYERS $OLMOE_SHAPE --dtype bf16 --skewed > $W/mkmodel.log 2>&1
say "$(tail -1 $W/mkmodel.log)"
P=5,17,42,99,3,250,1000,7
run() {   # run NAME ENV=VALUE [moed run flags]
	local name=$1 ev=$2; shift 2
	env $ev timeout 150 $moed run --model $M --set model.pack=$M.pack --tokens $P \
		--max-tokens $STEPS --max-ctx 512 --backend cuda --json "$@" > $W/run_$name.json \
		2> $W/run_$name.err
	say "$name rc=$?: $(python3 -c "import json;d=json.load(open('$W/run_$name.json'));print(d['timing'], d['tokens'][:12], 'hits', d['moe']['hits'], 'misses', d['moe']['misses'])" 2>&1 | tail -2)"
}
run resident MOED_CUDA_PROFILE=1
grep "cuda profile" $W/run_resident.err >> $S
run resident_nopdl "MOED_CUDA_PROFILE=1 MOED_CUDA_PDL=0"
grep "cuda profile" $W/run_resident_nopdl.err >> $S
run resident_normapart "MOED_CUDA_PROFILE=1 MOED_CUDA_NORM_GEMV=0"
grep "cuda profile" $W/run_resident_normapart.err >> $S
run nographs MOED_CUDA_GRAPHS=0
run budget25 MOED_X=1 --slots $(( LAYERS * 16 ))
# Kernel durations of the prompt and 3 decode steps without graphs (ncu
# replays each kernel; gpu__time_duration excludes launch gaps).
if which ncu > /dev/null 2>&1 && [ "${QUICK_NCU:-1}" != 0 ]; then
	MOED_CUDA_GRAPHS=0 timeout 120 ncu --metrics gpu__time_duration.sum --csv \
		$moed run --model $M --set model.pack=$M.pack --tokens $P --max-tokens 4 \
		--max-ctx 512 --backend cuda > $W/ncu.csv 2> $W/ncu.err
	say "ncu rc=$? lines $(wc -l < $W/ncu.csv)"
	cp $W/ncu.csv $OUT/ 2>/dev/null; tail -3 $W/ncu.err >> $S
fi
say done
