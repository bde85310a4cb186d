#!/bin/bash
# On the GPU host: `moed serve --backend cuda` end to end over HTTP, on the
# issue's 16-layer OLMoE-shaped bf16 model (mkmodel --skewed).  Builds, runs
# the CUDA/engine/cache tests, then with every expert resident: a greedy
# completion, 1 and 16 concurrent clients (bench/serve_load.py), a malformed
# request, /metrics; kill -9 of the worker under load (every request must
# get an answer); then the same clients at a 25% budget (--slots 256).
# .deps carried (shared/GPU.md).  Results in $OUT/serve.txt.
#   bench/cuda_serve.sh
set -u
T0=$(date +%s)
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"; S=$OUT/serve.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
W=/tmp/cserve; rm -rf $W; mkdir -p $W
trap 'kill $(jobs -p) 2>/dev/null; tar czf $OUT/logs.tgz -C $W . 2>/dev/null' EXIT
. bench/gpu_env.sh
. bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
gpu_build build-gpu $W $S || exit 1
gpu_test build-gpu $W
cp build-gpu/meson-logs/testlog.txt $W/ 2>/dev/null
M=/dev/shm/olmoe_bench; moed=build-gpu/daemon/moed
$moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > $W/mkmodel.log 2>&1
say "$(tail -1 $W/mkmodel.log)"
U=http://127.0.0.1:18080
# start NAME [flags]: serve in the background, wait for /health (pack, load).
start() {
	local name=$1; shift
	$moed serve --model $M --listen 127.0.0.1:18080 --backend cuda --max-ctx 512 \
		--set runtime.dir=$W/rt_$name "$@" > $W/serve_$name.log 2>&1 &
	SPID=$!
	for i in $(seq 600); do
		curl -sf $U/health > /dev/null 2>&1 && break; sleep 0.2
	done
	say "$name: up after $(( $(date +%s) - T0 ))s: $(curl -s $U/health)"
}
stop() { kill -TERM $SPID; wait $SPID; say "serve exit $?"; }
load() { say "$1: $(python3 bench/serve_load.py $U $2 $3 $4)"; }

start resident
say "completion: $(curl -s $U/v1/completions -d '{"prompt":[5,17,42,99,3,250,1000,7],"max_tokens":8,"temperature":0}' | head -c 400)"
load "1 client x 4 x 64 tokens" 1 4 64
load "16 clients x 4 x 64 tokens" 16 4 64
say "malformed: $(curl -s -w ' HTTP %{http_code}' $U/v1/completions -d '{"prompt":[1,2],"max_tokens":"x"}')"
curl -s $U/metrics > $W/metrics_resident.txt
grep -E "^moed_(decode_steps_total|generated_tokens_total|batch_sequences_(sum|count)|cache_slots|cache_resident_experts|child_exits_total)" \
	$W/metrics_resident.txt | tee -a $S
# kill -9 the worker while 8 clients are waiting: every request must be answered.
wp=$(curl -s $U/health | python3 -c "import json,sys;print(json.load(sys.stdin)['worker_pid'])")
python3 bench/serve_load.py $U 8 2 64 > $W/kill_load.json &
LP=$!
sleep 1; kill -9 $wp; say "killed worker $wp"
wait $LP; say "8 clients x 2 x 64 around the kill: rc=$? $(cat $W/kill_load.json)"
for i in $(seq 300); do curl -sf $U/health > /dev/null 2>&1 && break; sleep 0.2; done
say "after restart: $(curl -s $U/health)"
load "after restart, 1 client x 2 x 64" 1 2 64
stop
start budget25 --slots 256
load "25%: 1 client x 2 x 64 tokens" 1 2 64
load "25%: 16 clients x 2 x 64 tokens" 16 2 64
curl -s $U/metrics | grep -E "^moed_(decode_steps_total|cache_slots|cache_resident_experts)" | tee -a $S
stop
say done
