#!/bin/bash
# Session 26, call 2: the replayed matrix (matrix_call.sh PART=2, the same warm machine), then
# through `moed serve --backend cuda` at 50% (512 slots) session 25's itl2.py with
# batch.prefill_chunks -1 (the auto default, not yet run on a GPU: 8 at a budget), 8 and 1.
TAG=s26 PART=2 bash bench/results/matrix_call.sh
. bench/gpu_env.sh; export LD_LIBRARY_PATH=$MOED_LD
S=$OUT/sum.txt; M=/dev/shm/m; T0=$(date +%s)
say() { echo "[itl $(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
mkdir -p /tmp/itl
for c in -1 8 1; do
  [ $(( $(date +%s) - T0 )) -gt 240 ] && break
  say "$(timeout 90 python3 bench/results/s25_scripts/itl2.py build-gpu/daemon/moed $M $c 1809$((c+2)) cuda 512 50304 2100 2>&1 | tail -1)"
done
say done
