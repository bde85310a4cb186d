/* Times launches the way a decode step runs them: reps calls of body
 * captured in one CUDA graph, launched once to warm up, then 3 times between
 * CUDA events (bench/cuda_kprof.c, bench/cuda_gemv_lab.cu). */
#ifndef BENCH_GRAPH_TIME_H
#define BENCH_GRAPH_TIME_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* body(ctx, i) queues call i on st (0 or a launch error).  Returns the
 * microseconds per call, or < 0 on failure. */
double bench_graph_us(cudaStream_t st, int reps, int (*body)(void *ctx, int i), void *ctx);

#ifdef __cplusplus
}
#endif

#endif
