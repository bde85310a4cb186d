#!/bin/bash
# Session 16, call 6: the review mends (378e4a5) on the GPU: suites, then test_cuda with the profile on.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
gpu_build build-gpu $L $S || exit 1
#gpu_test build-gpu $L (ran in the first try)
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $S
(cd build-gpu && MOED_FIXTURES=$PWD/../tests/fixtures MOED_CUDA_PROFILE=1 timeout 60 tests/test_cuda > /tmp/tc.txt 2>&1; echo "profiled test_cuda rc=$?" >> $S)
grep -E "cuda profile.*(one-row|after another|first such)" /tmp/tc.txt | sort | uniq -c | sort -rn | head -8 | cut -c1-330 >> $S
tail -3 /tmp/tc.txt >> $S
say done
