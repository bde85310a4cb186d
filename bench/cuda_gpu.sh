#!/bin/bash
# On the GPU host (offline, Ubuntu): unpack the Debian packages carried in
# .deps into /opt/deps, build with -Dcuda=enabled, run the CUDA, engine and
# cache tests, then (with "bench") the first CUDA benchmark on an
# OLMoE-shaped synthetic bf16 model in /dev/shm.  Logs go to $OUT (or ./out).
# .deps: see shared/GPU.md, plus libpcre2-dev libpcre2-8-0 libpcre2-16-0
# libpcre2-32-0 libpcre2-posix3 (tokenizer/).
#   bench/cuda_gpu.sh [bench] [LAYERS]
set -u
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
D=/opt/deps; L=$D/usr/lib/x86_64-linux-gnu
mkdir -p $D; for f in .deps/*.deb; do dpkg -x "$f" $D; done
export PKG_CONFIG_SYSROOT_DIR=$D
export PKG_CONFIG_PATH=$L/pkgconfig:$L/openblas-pthread/pkgconfig
export CPATH=$D/usr/include LIBRARY_PATH=$L:$L/openblas-pthread LD_LIBRARY_PATH=$L:$L/openblas-pthread
# daemon/meson.build looks for llhttp's C sources under /usr/share.
mkdir -p /usr/share/include
[ -e /usr/share/llhttp ] || ln -s $D/usr/share/llhttp /usr/share/llhttp
[ -e /usr/share/include/llhttp ] || ln -s $D/usr/share/include/llhttp /usr/share/include/llhttp
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/machine.txt"
[ -f build-gpu/build.ninja ] || meson setup build-gpu -Dcuda=enabled > "$OUT/setup.log" 2>&1 ||
	{ tail -40 "$OUT/setup.log"; exit 1; }
ninja -C build-gpu tests/test_cuda tests/test_engine tests/test_cache bench/cuda_bench \
	daemon/moed > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$OUT/build.log"; exit 1; }
meson test -C build-gpu --no-rebuild cuda engine cache --print-errorlogs > "$OUT/tests.log" 2>&1
rc=$?
cp build-gpu/meson-logs/testlog.txt "$OUT/testlog.txt"
grep -E "^cuda |Checks" "$OUT/testlog.txt"
[ "${1:-}" = bench ] || exit $rc

M=/dev/shm/olmoe_bench; B=build-gpu
for be in host cuda; do
	$B/daemon/moed run --model tests/fixtures/olmoe_bf16 --set model.pack=/tmp/olmoe_fx.pack \
		--tokens 5,17,42,99,3 --max-tokens 16 --backend $be 2>&1 | tail -1 | sed "s/^/run $be: /"
done
[ -f $M/config.json ] || $B/daemon/moed mkmodel --out $M --family olmoe --layers "${2:-4}" \
	--experts 64 --top-k 8 --hidden 2048 --heads 16 --intermediate 1024 --vocab 50304 \
	--dtype bf16 | tail -1
for pol in lru fifo lfu; do
	fr="1 0.5 0.25 0.125"; [ $pol != lru ] && fr="0.5 0.25"
	echo "== cuda_bench $M $pol $fr"
	$B/bench/cuda_bench $M $M.pack $pol $fr
done
echo "== MOED_CUDA_BF16_ACTIVATIONS=1 cuda_bench $M lru 1"
MOED_CUDA_BF16_ACTIVATIONS=1 $B/bench/cuda_bench $M $M.pack lru 1
