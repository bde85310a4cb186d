# Sourced by the GPU scripts (bench/cuda_gpu.sh, cuda_quick.sh,
# cuda_serve.sh): the CUDA build and the test suites every GPU call runs.
# Callers define say() (a line into their summary).

GPU_SUITES="cuda engine cache cache_host exact store host_ffn"
# The issue's OLMoE-1B-7B shape (mkmodel flags besides --layers).
OLMOE_SHAPE="--experts 64 --top-k 8 --hidden 2048 --heads 16 --intermediate 1024 --vocab 50304"

# gpu_build B LOGDIR SUMMARY [TARGET...]: configures B with CUDA when needed
# and builds the suites' tests, daemon/moed and the TARGETs; on failure the
# errors go to SUMMARY and it returns 1.
gpu_build() {
	local b=$1 log=$2 sum=$3
	shift 3
	[ -f "$b/build.ninja" ] || meson setup "$b" -Dcuda=enabled > "$log/setup.log" 2>&1 ||
		{ tail -30 "$log/setup.log" >> "$sum"; return 1; }
	timeout 300 ninja -C "$b" $(printf 'tests/test_%s ' $GPU_SUITES) daemon/moed "$@" \
		> "$log/build.log" 2>&1 ||
		{ grep -E "error|FAILED" -A5 "$log/build.log" | head -60 >> "$sum"; return 1; }
	say built
}

# gpu_test B LOGDIR: runs the suites (log in LOGDIR/tests.log, Meson's in
# B/meson-logs) and says how each ended.
gpu_test() {
	timeout 200 meson test -C "$1" --no-rebuild $GPU_SUITES --print-errorlogs \
		> "$2/tests.log" 2>&1
	say "tests rc=$?: $(grep -E '^ *[0-9]+/[0-9]+ ' "$2/tests.log" | tr -s ' ' | tr '\n' ';')"
}
