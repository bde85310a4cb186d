#!/bin/bash
# Session 29, call 1: the closing record on one commit (HEAD of main): a fresh build, the GPU
# suites (HF fixtures through CUDA, the cache and exactness suites with GPU slots), kprof,
# moed run, then the synthetic and the replayed matrix, host threads 12 (the serving default
# on this 16-CPU host). Seven files from matrix_call.sh plus the suites' Meson log.
git log --oneline -1
TAG=s29 HOST_THREADS=12 PART=1 bash bench/results/matrix_call.sh
cp build-gpu/meson-logs/testlog.txt $OUT/s29_gpu_testlog.txt
cp $OUT/sum.txt /tmp/sum1.txt
TAG=s29 HOST_THREADS=12 PART=2 bash bench/results/matrix_call.sh
cat /tmp/sum1.txt $OUT/sum.txt > /tmp/sum.txt && cp /tmp/sum.txt $OUT/s29_sum.txt && rm $OUT/sum.txt
cat $OUT/s29_sum.txt
