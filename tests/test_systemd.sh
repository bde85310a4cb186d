#!/bin/sh
# systemd-analyze verify on systemd/moed.service, with ExecStart pointed at
# the binary under test (verify checks that the executable exists).
set -eu
unit=$1
bin=$2
command -v systemd-analyze >/dev/null || { echo "skipped: systemd-analyze not installed"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s|/usr/local/bin/moed|$bin|" "$unit" > "$dir/moed.service"
out=$(systemd-analyze verify "$dir/moed.service" 2>&1) || { echo "$out"; exit 1; }
# verify exits 0 on some warnings; fail on any line about our unit.
if echo "$out" | grep -q "moed.service"; then echo "$out"; exit 1; fi
grep -q '^Type=notify' "$dir/moed.service"
for k in DynamicUser ProtectSystem NoNewPrivileges PrivateTmp RuntimeDirectory \
	RestrictAddressFamilies SystemCallFilter MemoryDenyWriteExecute; do
	grep -q "^$k=" "$dir/moed.service" || { echo "missing $k="; exit 1; }
done
echo "systemd-analyze verify: ok"
