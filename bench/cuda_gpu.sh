#!/bin/bash
# On the GPU host (offline, Ubuntu): unpack the Debian packages carried in
# .deps into /opt/deps, build with -Dcuda=enabled, run the CUDA, engine and
# cache tests; then, with "bench", issue 6's benchmark on an OLMoE-shaped
# synthetic bf16 model with skewed routing (LAYERS layers, default 16):
#   ROUTING=synthetic (default): moed run --json on the host and cuda
#     backends (for the logits check), bench/cuda_bench's matrix with the
#     model's own router (resident; 50/25/12.5% budgets x prefetch none, all,
#     cepr and freq with lru/fifo/lfu, oracle), bench/hf_bench.py
#     (transformers resident and with accelerate offload, and the logits
#     check; CB_HF=0 skips it), bench/cuda_report.py (tables, plot).
#   ROUTING=trace: the same cuda_bench matrix with routing replayed from the
#     trace file TRACE (an OLMoE trace, 16 layers x 64 experts, top-8: a copy
#     of shared/traces/nvmoe-olmoe-all.tokens.jsonl carried with the tree;
#     ../shared is not on the GPU machine).  No tests, no moed run, no
#     transformers.  Without a readable TRACE the replay is skipped, saying so.
#   ROUTING=both: both matrices in one call (about twice the time).
# Each stage has a time limit inside BUDGET seconds (520) so that whatever
# finished comes back; cuda_bench starts no configuration past its deadline.
# Results in $OUT (or ./out): summary.txt, cuda_bench.jsonl (synthetic),
# cuda_bench_replay.jsonl, hf_bench.json, cuda_bench.png,
# cuda_bench_replay.png, logs.tgz.  The model is kept in /dev/shm and reused
# by a later call on the same machine when its shape matches.
# .deps: see shared/GPU.md, plus libpcre2-dev libpcre2-8-0 libpcre2-16-0
# libpcre2-32-0 libpcre2-posix3 (tokenizer/).
#   bench/cuda_gpu.sh [bench] [LAYERS]
#   ROUTING=trace TRACE=path/nvmoe-olmoe-all.tokens.jsonl bench/cuda_gpu.sh bench
# Step counts (cuda_bench options): CB_STEPS1 (b1 warm-up,timed: 4,32),
# CB_STEPS16 (2,16), CB_PREFILL (2x256), CB_MODES (none,all,cepr,freq,oracle),
# CB_POLICY (lru,fifo,lfu).  CB_BUILD: build dir (build-gpu).
# Local dry run without a GPU (host backend, tiny models: 16 experts/top-4
# for synthetic, the trace's 64 experts/top-8 for replay; no tests, no
# transformers): CB_DRY=1 bench/cuda_gpu.sh bench
set -u
T0=$(date +%s)
BUDGET=${BUDGET:-520}
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
W=/tmp/cb; rm -rf $W; mkdir -p $W
SUM=$OUT/summary.txt; : > "$SUM"
LAYERS=${2:-16}
DRY=${CB_DRY:-0}
ROUTING=${ROUTING:-synthetic}
TRACE=${TRACE:-}
B=${CB_BUILD:-build-gpu}
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$SUM"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# Seconds left less $1, at least 10.
lim() { local x=$(( $(left) - $1 )); [ $x -lt 10 ] && x=10; echo $x; }
finish() {
	cp -f $B/meson-logs/testlog.txt $W/ 2>/dev/null
	tar czf "$OUT/logs.tgz" -C $W . 2>/dev/null
	say "done"
	exit "${1:-0}"
}
SYN=1; REP=1
case $ROUTING in
synthetic) REP=0 ;;
trace) SYN=0 ;;
both) ;;
*) say "ROUTING=$ROUTING: synthetic, trace or both"; finish 2 ;;
esac
if [ $REP = 1 ] && { [ -z "$TRACE" ] || [ ! -r "$TRACE" ]; }; then
	say "replay skipped: TRACE='$TRACE' is not a readable file (give TRACE=path to a copy of" \
		"nvmoe-olmoe-all.tokens.jsonl carried with the tree; ../shared is not on this machine)"
	REP=0
	[ $SYN = 0 ] && finish 1
fi

if [ "$DRY" = 0 ]; then
	. bench/gpu_env.sh
else
	mo() { "$@"; }
fi
. bench/gpu_build.sh
{
	nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current,clocks.sm,clocks.mem,clocks.max.sm --format=csv
	nvidia-smi
	lscpu | head -20; free -g; df -h /dev/shm /tmp; nvcc --version | tail -2; uname -a
} > $W/machine.txt 2>&1
say "machine: $(head -2 $W/machine.txt | tail -1)"
LD_LIBRARY_PATH=${MOED_LD:-} gpu_build $B $W "$SUM" bench/cuda_bench bench/cuda_kprof || { tail -40 "$SUM"; finish 1; }
if [ "$DRY" = 0 ] && [ $SYN = 1 ]; then
	LD_LIBRARY_PATH=${MOED_LD:-} gpu_test $B $W
	grep -E ":[EF]:|Assertion" $B/meson-logs/testlog.txt | head -10 | tee -a "$SUM"
	# Per-kernel times at the bench's shape (one decode row, context 128).
	mo timeout 60 $B/bench/cuda_kprof 1 128 >> "$SUM" 2>&1
fi
[ "${1:-}" = bench ] || finish 0

BE=cuda
HF=${CB_HF:-1}; [ "$DRY" != 0 ] && HF=0
M=/dev/shm/olmoe_bench
[ "$(df --output=avail -k /dev/shm | tail -1)" -gt 30000000 ] || M=/tmp/olmoe_bench
shape=$OLMOE_SHAPE
MR=$M; rshape=$shape
if [ "$DRY" != 0 ]; then
	BE=host; M=/tmp/olmoe_dry; MR=/tmp/olmoe_dry_replay
	shape="--experts 16 --top-k 4 --hidden 128 --heads 4 --intermediate 64 --vocab 512"
	rshape="--experts 64 --top-k 8 --hidden 64 --heads 4 --intermediate 32 --vocab 512"
fi
# mkmodel DIR LAYERS SHAPE: reused when DIR.stamp says the same shape.
mkm() {
	local stamp="$2 $3 bf16 skewed"
	if [ -f "$1/config.json" ] && [ "$(cat "$1.stamp" 2>/dev/null)" = "$stamp" ]; then
		say "reusing $1 ($2 layers)"
		return 0
	fi
	rm -rf "$1" "$1.pack" "$1.stamp"
	say "mkmodel $2 layers into $1"
	mo timeout 240 $B/daemon/moed mkmodel --out "$1" --family olmoe --layers $2 $3 \
		--dtype bf16 --skewed > $W/mkmodel.log 2>&1 || { tail -5 $W/mkmodel.log | tee -a "$SUM"; return 1; }
	say "$(tail -1 $W/mkmodel.log)"
	echo "$stamp" > "$1.stamp"
}
STEPS="--steps1 ${CB_STEPS1:-4,32} --steps16 ${CB_STEPS16:-2,16} --prefill ${CB_PREFILL:-2x256}"
MODES=${CB_MODES:-none,all,cepr,freq,oracle}
# cbench JSONL ROUTING MODEL RESERVE: the matrix; no configuration starts
# later than RESERVE + 40 s before the end of BUDGET.
cbench() {
	local dl=$(lim $(( $4 + 40 )))
	say "cuda_bench $2, deadline ${dl}s"
	mo timeout $(lim $4) $B/bench/cuda_bench --backend $BE --policy ${CB_POLICY:-lru,fifo,lfu} \
		--fracs 1,0.5,0.25,0.125 --prefetch $MODES --routing "$2" $STEPS --json "$1" \
		--deadline $dl $3 $3.pack > $W/cb_$(basename "$1" .jsonl).txt \
		2> $W/cb_$(basename "$1" .jsonl).err
	say "cuda_bench $2 rc=$?"
	cat $W/cb_$(basename "$1" .jsonl).txt >> "$SUM"
	tail -5 $W/cb_$(basename "$1" .jsonl).err >> "$SUM"
}
# report MODEL JSONL HF_JSON PNG
report() {
	env -u LD_LIBRARY_PATH timeout 60 python3 bench/cuda_report.py "$1/config.json" \
		"$2" "$3" "$4" >> "$SUM" 2>&1
}

if [ $SYN = 1 ]; then
	BES=host; [ $BE = host ] || BES="host $BE"
	for be in $BES; do
		mo timeout 60 $B/daemon/moed run --model tests/fixtures/olmoe_bf16 \
			--set model.pack=$W/olmoe_fx.pack --tokens 5,17,42,99,3 --max-tokens 16 \
			--backend $be > $W/run_fixture_$be.txt 2>&1
		say "fixture run $be rc=$?: $(tail -1 $W/run_fixture_$be.txt)"
	done
	mkm $M $LAYERS "$shape" || finish 1
	# The cuda runs pack bf16 experts themselves; an f32 pack is for the host.
	if [ ! -f $M.pack ] && { [ $HF = 1 ] || [ $BE = host ]; }; then
		mo timeout 240 $B/daemon/moed pack --model $M --out $M.pack --quiet > $W/pack.log 2>&1 ||
			{ tail -5 $W/pack.log | tee -a "$SUM"; finish 1; }
		say "$(tail -1 $W/pack.log)"
	fi
	P=5,17,42,99,3,250,1000,7
	[ "$DRY" != 0 ] && P=5,17,42,99,3,250,100,7
	# Where a resident decode step's time goes (engine's MOED_CUDA_PROFILE).
	if [ "$DRY" = 0 ]; then
		MOED_CUDA_PROFILE=1 mo timeout 120 $B/daemon/moed run --model $M \
			--set model.pack=$M.pack --tokens $P --max-tokens 256 --max-ctx 512 \
			--backend cuda --json > $W/moed_profile.json 2> $W/moed_profile.err
		say "moed run cuda 256 tokens rc=$?: $(python3 -c "import json;print(json.load(open('$W/moed_profile.json'))['timing'])" 2>&1 | tail -1)"
		grep "cuda profile" $W/moed_profile.err | tee -a "$SUM"
	fi
	if [ $HF = 1 ]; then
		for be in $BES; do
			extra="--slots 64"; [ $be = cuda ] && extra=""
			mo timeout 90 $B/daemon/moed run --model $M --set model.pack=$M.pack --tokens $P \
				--max-tokens 16 --max-ctx 64 --backend $be $extra --json > $W/moed_$be.json \
				2> $W/moed_$be.err
			say "moed run $be rc=$?: $(head -c 120 $W/moed_$be.json)"
		done
	fi
	# Leave ~200 s for transformers (resident and offload at 3 budgets), or ~30 s for the rest.
	r=30; [ $HF = 1 ] && r=200; [ $REP = 1 ] && r=$(( r + ($(left) - r) / 2 ))
	cbench $OUT/cuda_bench.jsonl synthetic $M $r
	if [ $HF = 1 ]; then
		say "hf_bench, $(left)s left"
		env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 timeout $(lim 25) python3 \
			bench/hf_bench.py $M $OUT/hf_bench.json --moed host=$W/moed_host.json \
			--moed cuda=$W/moed_cuda.json --prompt $P --deadline $(lim 100) \
			> $W/hf_bench.log 2>&1
		say "hf_bench rc=$?"
		tail -15 $W/hf_bench.log >> "$SUM"
	fi
	report $M $OUT/cuda_bench.jsonl $OUT/hf_bench.json $OUT/cuda_bench.png
fi
if [ $REP = 1 ]; then
	# The trace's shape: 16 MoE layers (cuda_bench refuses another shape).
	mkm $MR 16 "$rshape" || finish 1
	cbench $OUT/cuda_bench_replay.jsonl "trace:$TRACE" $MR 30
	report $MR $OUT/cuda_bench_replay.jsonl /dev/null $OUT/cuda_bench_replay.png
fi
finish 0
