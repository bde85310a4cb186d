# Sourced first by a one-call GPU script (bench/results/matrix_call.sh, a
# session's sNN_scripts/): set -u, the summary $OUT/sum.txt and say() (a
# line into it, after the seconds since the start), the carried packages
# (gpu_env.sh), gpu_build and gpu_test (gpu_build.sh), moed's libraries on
# LD_LIBRARY_PATH, the model's path M and the log folder L.
set -u
T0=$(date +%s); S=$OUT/sum.txt; : > $S
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
. bench/gpu_env.sh; . bench/gpu_build.sh
export LD_LIBRARY_PATH=$MOED_LD
M=/dev/shm/m; L=/tmp/lg; mkdir -p $L
