#!/bin/bash
# On the GPU host (offline, Ubuntu): unpack the Debian packages carried in
# .deps into /opt/deps, build with -Dcuda=enabled, run the CUDA, engine and
# cache tests; then, with "bench", issue 6's benchmark on an OLMoE-shaped
# synthetic bf16 model with skewed routing (LAYERS layers, default 8):
#   moed run --json on the host and cuda backends (for the logits check),
#   bench/cuda_bench (resident; 50/25/12.5% budgets, lru, prefetch none,
#   cepr and oracle), bench/hf_bench.py (transformers resident and with
#   accelerate offload, and the logits check), bench/cuda_report.py (tables
#   and the plot).  Each stage has a time limit inside BUDGET seconds (520)
#   so that whatever finished comes back.  Results in $OUT (or ./out):
#   summary.txt, cuda_bench.jsonl, hf_bench.json, cuda_bench.png, logs.tgz.
# .deps: see shared/GPU.md, plus libpcre2-dev libpcre2-8-0 libpcre2-16-0
# libpcre2-32-0 libpcre2-posix3 (tokenizer/).
#   bench/cuda_gpu.sh [bench] [LAYERS]
# CB_HF=0 skips transformers (hf_bench.py).
# Local dry run without a GPU (host backend, a tiny model, no tests and no
# transformers): CB_DRY=1 bench/cuda_gpu.sh bench
set -u
T0=$(date +%s)
BUDGET=${BUDGET:-520}
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
W=/tmp/cb; rm -rf $W; mkdir -p $W
SUM=$OUT/summary.txt; : > "$SUM"
LAYERS=${2:-8}
DRY=${CB_DRY:-0}
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$SUM"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# Seconds left less $1, at least 10.
lim() { local x=$(( $(left) - $1 )); [ $x -lt 10 ] && x=10; echo $x; }
finish() {
	cp -f build-gpu/meson-logs/testlog.txt $W/ 2>/dev/null
	tar czf "$OUT/logs.tgz" -C $W . 2>/dev/null
	say "done"
	exit "${1:-0}"
}

D=/opt/deps; L=$D/usr/lib/x86_64-linux-gnu
if [ "$DRY" = 0 ]; then
	mkdir -p $D; for f in .deps/*.deb; do dpkg -x "$f" $D; done
	export PKG_CONFIG_SYSROOT_DIR=$D
	export PKG_CONFIG_PATH=$L/pkgconfig:$L/openblas-pthread/pkgconfig
	export CPATH=$D/usr/include LIBRARY_PATH=$L:$L/openblas-pthread
	export MOED_LD=$L:$L/openblas-pthread
	# daemon/meson.build looks for llhttp's C sources under /usr/share.
	mkdir -p /usr/share/include
	[ -e /usr/share/llhttp ] || ln -s $D/usr/share/llhttp /usr/share/llhttp
	[ -e /usr/share/include/llhttp ] || ln -s $D/usr/share/include/llhttp /usr/share/include/llhttp
fi
# Only moed's own programs get the carried libraries (python keeps its own).
mo() { LD_LIBRARY_PATH=${MOED_LD:-} "$@"; }
{
	nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current,clocks.sm,clocks.mem,clocks.max.sm --format=csv
	nvidia-smi
	lscpu | head -20; free -g; df -h /dev/shm /tmp; nvcc --version | tail -2; uname -a
} > $W/machine.txt 2>&1
say "machine: $(head -2 $W/machine.txt | tail -1)"
[ -f build-gpu/build.ninja ] || mo meson setup build-gpu -Dcuda=enabled > $W/setup.log 2>&1 ||
	{ tail -40 $W/setup.log | tee -a "$SUM"; finish 1; }
mo timeout 300 ninja -C build-gpu tests/test_cuda tests/test_engine tests/test_cache tests/test_exact tests/test_store \
	bench/cuda_bench daemon/moed > $W/build.log 2>&1 ||
	{ grep -E "error|FAILED" -A5 $W/build.log | head -40 | tee -a "$SUM"; finish 1; }
say "built"
if [ "$DRY" = 0 ]; then
	mo timeout 120 meson test -C build-gpu --no-rebuild cuda engine cache exact store --print-errorlogs \
		> $W/tests.log 2>&1
	say "tests rc=$?: $(grep -E '^ *[0-9]+/5 ' $W/tests.log | tr -s ' ' | tr '\n' ';')"
fi
[ "${1:-}" = bench ] || finish 0

B=build-gpu; BE=cuda
M=/dev/shm/olmoe_bench
[ "$(df --output=avail -k /dev/shm | tail -1)" -gt 30000000 ] || M=/tmp/olmoe_bench
shape="--experts 64 --top-k 8 --hidden 2048 --heads 16 --intermediate 1024 --vocab 50304"
if [ "$DRY" != 0 ]; then
	BE=host; M=/tmp/olmoe_dry
	shape="--experts 16 --top-k 4 --hidden 128 --heads 4 --intermediate 64 --vocab 512"
fi
for be in host $BE; do
	mo timeout 60 $B/daemon/moed run --model tests/fixtures/olmoe_bf16 \
		--set model.pack=$W/olmoe_fx.pack --tokens 5,17,42,99,3 --max-tokens 16 \
		--backend $be > $W/run_fixture_$be.txt 2>&1
	say "fixture run $be rc=$?: $(tail -1 $W/run_fixture_$be.txt)"
done
rm -rf $M $M.pack
say "mkmodel $LAYERS layers into $M"
mo timeout 240 $B/daemon/moed mkmodel --out $M --family olmoe --layers $LAYERS $shape \
	--dtype bf16 --skewed > $W/mkmodel.log 2>&1 || { tail -5 $W/mkmodel.log | tee -a "$SUM"; finish 1; }
say "$(tail -1 $W/mkmodel.log)"
mo timeout 240 $B/daemon/moed pack --model $M --out $M.pack --quiet > $W/pack.log 2>&1 ||
	{ tail -5 $W/pack.log | tee -a "$SUM"; finish 1; }
say "$(tail -1 $W/pack.log)"
P=5,17,42,99,3,250,1000,7
[ "$DRY" != 0 ] && P=5,17,42,99,3,250,100,7
for be in host $BE; do
	extra="--slots 64"; [ $be = cuda ] && extra=""
	mo timeout 90 $B/daemon/moed run --model $M --set model.pack=$M.pack --tokens $P \
		--max-tokens 16 --max-ctx 64 --backend $be $extra --json > $W/moed_$be.json \
		2> $W/moed_$be.err
	say "moed run $be rc=$?: $(head -c 120 $W/moed_$be.json)"
done
# cuda_bench starts no configuration after its deadline; leave ~170 s for
# transformers.
dl=$(lim 170)
[ "$DRY" != 0 ] && pre=--prefill=4x64 || pre=--prefill=4x512
say "cuda_bench, deadline ${dl}s"
mo timeout $(lim 130) $B/bench/cuda_bench --backend $BE --policy lru \
	--fracs 1,0.5,0.25,0.125 --prefetch none,cepr,oracle $pre --json $OUT/cuda_bench.jsonl \
	--deadline $dl $M $M.pack > $W/cuda_bench.txt 2> $W/cuda_bench.err
say "cuda_bench rc=$?"
cat $W/cuda_bench.txt >> "$SUM"
tail -5 $W/cuda_bench.err >> "$SUM"
if [ "$DRY" = 0 ] && [ "${CB_HF:-1}" != 0 ]; then
	say "hf_bench, $(left)s left"
	env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 timeout $(lim 25) python3 \
		bench/hf_bench.py $M $OUT/hf_bench.json --moed host=$W/moed_host.json \
		--moed cuda=$W/moed_cuda.json --prompt $P --deadline $(lim 100) \
		> $W/hf_bench.log 2>&1
	say "hf_bench rc=$?"
	tail -15 $W/hf_bench.log >> "$SUM"
fi
env -u LD_LIBRARY_PATH timeout 60 python3 bench/cuda_report.py $M/config.json \
	$OUT/cuda_bench.jsonl $OUT/hf_bench.json $OUT/cuda_bench.png >> "$SUM" 2>&1
finish 0
