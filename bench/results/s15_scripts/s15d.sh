#!/bin/bash
# Session 15, call 4 (final): the replayed matrix (PART=2) then the synthetic one (PART=1, with the
# GPU suites and moed run) on main's tree, clocks sampled by nvidia-smi throughout (clk.csv).
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv -lms 250 > /tmp/clk.csv 2>&1 &
CK=$!
mkdir -p $OUT/m2 $OUT/m1
OUT=$OUT/m2 TAG=s15 PART=2 bash bench/results/matrix_call.sh > /dev/null 2>&1; say "part 2 rc=$?"
OUT=$OUT/m1 TAG=s15 PART=1 bash bench/results/matrix_call.sh > /dev/null 2>&1; say "part 1 rc=$?"
kill $CK; rm -f $OUT/m1/s15_kprof_*.txt; gzip -c /tmp/clk.csv > $OUT/clk.csv.gz
say done
