#!/bin/bash
# Session 26, call 1 (the command as run): the build, the six GPU suites, kprof, moed run and the synthetic matrix.
TAG=s26 PART=1 bash bench/results/matrix_call.sh > /dev/null 2>&1; cat $OUT/sum.txt
