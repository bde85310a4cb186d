#!/bin/bash
# Load test of `moed serve` on the CPU with wrk: the demo model (mkmodel
# --skewed), POST /v1/completions (8 prompt tokens, 16 generated, greedy),
# at several cache budgets and predictors.  Only 127.0.0.1 is used.
#   bench/serve_wrk.sh [BUILD_DIR] [SECONDS] [CONNECTIONS]
set -eu
B=${1:-build}; SECS=${2:-10}; CONN=${3:-8}
MOED=$B/daemon/moed
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
$MOED mkmodel --out "$W/m" --skewed > /dev/null
$MOED pack --model "$W/m" --quiet
cat > "$W/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local a, b = n % 500, (n * 7) % 500
  return wrk.format(nil, nil, nil, string.format(
    '{"prompt":[%d,%d,3,4,5,6,7,8],"max_tokens":16,"temperature":0}', a, b))
end
LUA
echo "| slots | predictor | requests/s | tokens/s (generated) | latency p50 | latency p99 | non-2xx |"
echo "|---|---|---|---|---|---|---|"
for slots in 0 16 8; do
	for pred in none freq cepr; do
		port=$((18500 + RANDOM % 1000))
		$MOED serve --model "$W/m" --listen 127.0.0.1:$port --slots $slots --predictor $pred \
			--set runtime.dir="$W/rt$port" > "$W/serve.log" 2>&1 &
		pid=$!
		for i in $(seq 100); do
			curl -sf localhost:$port/health > /dev/null && break; sleep 0.1
		done
		out=$(wrk -t2 -c$CONN -d${SECS}s --latency -s "$W/post.lua" http://127.0.0.1:$port/v1/completions)
		kill -TERM $pid; wait $pid || true
		rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
		p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
		p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
		bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
		tps=$(python3 -c "print(f'{float(\"$rps\") * 16:.1f}')")
		echo "| ${slots/#0/all (64)} | $pred | $rps | $tps | $p50 | $p99 | ${bad:-0} |"
	done
done
