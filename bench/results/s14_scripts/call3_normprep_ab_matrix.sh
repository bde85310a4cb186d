#!/bin/bash
# Session 14, call 3: main (8f3798c, next/s14 merged) with k_norm_prep's loads at once
# (ab/hoist.patch) against main: GPU suites with the patch, resident quick cuda_bench A/B,
# three rounds; the patch is taken back out unless it wins b1 or b16 on average; then
# matrix_call.sh PART=1 (TAG=s14) on what is left, into $OUT/m (six files back in all).
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S; L=/tmp/lg0; mkdir -p $L
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m
rm -rf /tmp/ab/old; mkdir -p /tmp/ab/old; tar --exclude=./build-gpu -cf - . | tar -xf - -C /tmp/ab/old
(cd /tmp/ab/old && patch -R -p1 < ab/hoist.patch > /tmp/ab/patch.log 2>&1 && echo "patch ok" >> $S || tail -5 /tmp/ab/patch.log >> $S)
(cd /tmp/ab/old && meson setup build-gpu -Dcuda=enabled > /tmp/ab/old.log 2>&1 && ninja -C build-gpu bench/cuda_bench >> /tmp/ab/old.log 2>&1; echo "old build rc=$?" >> $S) &
gpu_build build-gpu $L $S bench/cuda_bench bench/cuda_kprof || exit 1
[ -d $M ] || (build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE --dtype bf16 --skewed > /tmp/mk.log 2>&1; echo "mk rc=$?" >> $S) &
gpu_test build-gpu $L
TOK=$(grep -cE ":F:|:E:" build-gpu/meson-logs/testlog.txt)
grep -E ":F:|:E:|ssertion" build-gpu/meson-logs/testlog.txt | head -20 >> $S
build-gpu/bench/cuda_kprof 1 128 > $L/kp1.txt 2>&1; build-gpu/bench/cuda_kprof 16 128 > $L/kp16.txt 2>&1
grep -hE "lm_head with rmsnorm|qkv with rmsnorm  |decoder layer  " $L/kp1.txt $L/kp16.txt >> $S
wait; say "ready"
bench() {  # NAME DIR
  (cd $2 && timeout 60 build-gpu/bench/cuda_bench --backend cuda --policy lru --fracs 1 \
    --prefetch none --steps1 8,64 --steps16 4,32 --prefill 1x32 $M $M.pack > /tmp/b.txt 2> /tmp/b.err)
  say "$1 rc=$?: $(tail -1 /tmp/b.txt | cut -d'|' -f6-9,12)"
  tail -1 /tmp/b.txt | cut -d'|' -f7 >> /tmp/ab/$1.b1; tail -1 /tmp/b.txt | cut -d'|' -f8 >> /tmp/ab/$1.b16
}
rm -f /tmp/ab/*.b1 /tmp/ab/*.b16
for r in 1 2 3; do bench main /tmp/ab/old; bench hoist .; done
mean() { awk '{s+=$1} END {printf "%.2f", s/NR}' $1; }
say "means b1 main $(mean /tmp/ab/main.b1) hoist $(mean /tmp/ab/hoist.b1); b16 main $(mean /tmp/ab/main.b16) hoist $(mean /tmp/ab/hoist.b16); failures $TOK"
if [ "$TOK" != 0 ] || awk "BEGIN {exit !($(mean /tmp/ab/hoist.b1) <= $(mean /tmp/ab/main.b1) && $(mean /tmp/ab/hoist.b16) <= $(mean /tmp/ab/main.b16))}"; then
  patch -R -p1 < ab/hoist.patch > /dev/null && say "hoist taken out"
fi
mkdir -p $OUT/m; OUT=$OUT/m TAG=s14 PART=1 bash bench/results/matrix_call.sh
cat $OUT/m/sum.txt >> $S
say done
