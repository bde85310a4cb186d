#!/bin/bash
# Session 23, call 7: host-to-GPU copy rate with 1-4 copy streams at once (copylab.cu).
set -u
nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader > $OUT/s23g_copylab.txt
/usr/local/cuda/bin/nvcc -O2 -o /tmp/copylab bench/results/s23_scripts/copylab.cu && /tmp/copylab >> $OUT/s23g_copylab.txt 2>&1
nvidia-smi topo -m >> $OUT/s23g_copylab.txt 2>&1; numactl -H >> $OUT/s23g_copylab.txt 2>&1 || lscpu | grep -i numa >> $OUT/s23g_copylab.txt
cat $OUT/s23g_copylab.txt
