#!/bin/bash
# Session 11 call 3 (on next/rtin): cuda_kprof's routed check and test_cuda (run without MOED_FIXTURES by mistake).
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
(meson setup build-gpu -Dcuda=enabled > /tmp/sB.log 2>&1; ninja -j16 -C build-gpu tests/test_cuda bench/cuda_kprof > /tmp/bB.log 2>&1; echo "build rc=$?" >> $S; grep -A5 error /tmp/bB.log | head -20 >> $S)
say built
timeout 100 build-gpu/tests/test_cuda > $OUT/tc.txt 2>&1; say "test_cuda rc=$?"
grep -E "%|:F:|:E:|DIFF|differ|!=" $OUT/tc.txt | head -30 >> $S
for n in 1 2; do timeout 60 build-gpu/bench/cuda_kprof $n 128 2>&1 | head -3 >> $S; done
say done
