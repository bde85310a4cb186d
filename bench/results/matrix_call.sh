#!/bin/bash
# The CUDA matrix call (H200): PART=1 builds, tests, kprof, moed run and the synthetic
# matrix; PART=2 (the same machine, still warm: build and model kept) the replayed matrix.
# TAG names the output files (s10, s11: the session that ran it); HOST_THREADS: cuda_bench's
# --host-threads (default 0). It leaves five files under
# $OUT (PART=1; three with PART=2): a caller that adds its own must stay within the device
# tool's eight (session 14 lost a matrix's JSON lines that way).
. bench/gpu_call.sh
say "$(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader) part ${PART}"
gpu_build build-gpu $L $S bench/cuda_kprof bench/cuda_bench || exit 1
[ -d $M ] || build-gpu/daemon/moed mkmodel --out $M --family olmoe --layers 16 $OLMOE_SHAPE \
	--dtype bf16 --skewed > $L/mk.log 2>&1 &
if [ "$PART" = 1 ]; then
  gpu_test build-gpu $L
  grep -E ":F:|:E:" build-gpu/meson-logs/testlog.txt | head >> $S
  build-gpu/bench/cuda_kprof 1 128 > $OUT/${TAG}_kprof_1.txt 2>&1
  build-gpu/bench/cuda_kprof 16 128 > $OUT/${TAG}_kprof_16.txt 2>&1
  say "kprof: $(grep -hE '^decoder layer  ' $OUT/${TAG}_kprof_1.txt $OUT/${TAG}_kprof_16.txt | tr -s ' ' | tr '\n' ';')"
fi
wait; cat $L/mk.log >> $S
if [ "$PART" = 1 ]; then
  for i in 1 2; do
    MOED_CUDA_PROFILE=1 timeout 60 build-gpu/daemon/moed run --model $M --set model.pack=$M.pack \
      --tokens 5,17,42,99,3,250,1000,7 --max-tokens 256 --max-ctx 512 --backend cuda --json > $L/r.txt 2> $L/r.err
    say "run rc=$?: $(grep -o '"decode_tok_s":[0-9.]*' $L/r.txt) $(grep -o '"tokens":\[[0-9,]*' $L/r.txt | head -c 60) $(grep 'cuda profile' $L/r.err)"
  done
  RT=synthetic; J=$OUT/${TAG}_matrix_synthetic.jsonl
else
  RT=trace:.deps/nvmoe-olmoe-all.tokens.jsonl; J=$OUT/${TAG}_matrix_replay.jsonl
fi
timeout 290 build-gpu/bench/cuda_bench --backend cuda --policy lru,fifo,lfu --fracs 1,0.5,0.25,0.125 \
  --prefetch none,cepr,freq,all --routing $RT --steps1 4,32 --steps16 2,16 --prefill 2x256 \
  --host-threads ${HOST_THREADS:-0} \
  --deadline 245 --json $J $M $M.pack > $L/m.txt 2> $L/m.err
say "matrix $RT rc=$? rows $(grep -c '^|' $L/m.txt)"
cp $L/m.txt $OUT/${TAG}_matrix_${PART}.md; tail -3 $L/m.err >> $S
say done
