# Sourced by same-machine A/B scripts on the GPU host, after gpu_call.sh
# (say() defined, $S the summary): the tree's "old" side
# is this tree with PATCH (a `git diff OLD NEW` of the paths measured, kept
# in the tree) reversed, built in /tmp/ab/old.
#   ab_old PATCH [TARGET...]  copies the tree, reverses PATCH, builds the
#                             TARGETs (default bench/cuda_bench) in the
#                             background: `wait` before using it.
#   ab_mean FILE              the mean of a file of numbers, one a line.
ab_old() {
	local patch=$1
	shift
	rm -rf /tmp/ab/old; mkdir -p /tmp/ab/old
	tar --exclude=./build-gpu -cf - . | tar -xf - -C /tmp/ab/old
	(cd /tmp/ab/old && patch -R -p1 < "$patch" > /tmp/ab/patch.log 2>&1 &&
		echo "patch ok" >> $S || tail -5 /tmp/ab/patch.log >> $S)
	(cd /tmp/ab/old && meson setup build-gpu -Dcuda=enabled > /tmp/ab/old.log 2>&1 &&
		ninja -C build-gpu ${@:-bench/cuda_bench} >> /tmp/ab/old.log 2>&1
	 echo "old build rc=$?" >> $S) &
}

ab_mean() { awk '{s += $1} END {printf "%.2f", s / NR}' "$1"; }
