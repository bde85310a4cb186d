#!/bin/sh
# Prints "N passed, N failed" (Check test cases, summed over every suite)
# from a meson testlog.json, so CI reads the totals of the real test cases.
set -eu
log=${1:-build/meson-logs/testlog.json}
python3 - "$log" <<'PY'
import json, re, sys
passed = failed = 0
skipped = []
for line in open(sys.argv[1]):
    t = json.loads(line)
    out = t.get("stdout", "") or ""
    if t.get("result") == "SKIP":  # e.g. cuda: "skipped: no CUDA device (...)"
        why = (out.strip().splitlines() or ["exit status 77"])[0]
        skipped.append(f"{t.get('name')}: {why}")
    m = re.search(r"(\d+)%: Checks: (\d+), Failures: (\d+), Errors: (\d+)", out)
    if m:
        n, f, e = int(m.group(2)), int(m.group(3)), int(m.group(4))
        passed += n - f - e
        failed += f + e
    elif t.get("result") == "OK":
        passed += 1
    elif t.get("result") != "SKIP":
        failed += 1
for s in skipped:
    print("skipped test " + s)
print(f"{passed} passed, {failed} failed")
PY
