#!/bin/sh
# Sets up moed on Debian 12 (run as root) and then either serves a demo model
# on the CPU or runs every test.
#   tools/setup.sh demo   install packages, build, make a demo model, run it
#   tools/setup.sh test   install packages, build, run all tests
set -eu
cd "$(dirname "$0")/.."
what=${1:-test}

PKGS="build-essential meson ninja-build pkg-config libuv1-dev libnng-dev
libjansson-dev check libsubunit-dev libopenblas-dev node-llhttp
libhttp-parser-dev libsystemd-dev libpcre2-dev libutf8proc-dev systemd curl wrk
libxrt-dev"

missing=""
for p in $PKGS; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing
fi

[ -d build ] || meson setup build
ninja -C build

case "$what" in
demo)
	[ -f demo/tokenizer.json ] || ./build/daemon/moed mkmodel --out demo --skewed \
		--tokenizer-corpus tools/demo-corpus.txt
	echo "serving the demo model on http://127.0.0.1:8080 (Ctrl-C stops); try:"
	echo "  curl -s localhost:8080/v1/completions -d '{\"prompt\":\"Hello\",\"max_tokens\":8}'"
	exec ./build/daemon/moed serve --model demo --listen 127.0.0.1:8080
	;;
test)
	set +e
	meson test -C build --print-errorlogs --num-processes 2
	rc=$?
	set -e
	tools/test_totals.sh build/meson-logs/testlog.json
	exit $rc
	;;
*)
	echo "usage: tools/setup.sh demo|test" >&2
	exit 2
	;;
esac
