/* A pool of CPU threads that computes bf16 SwiGLU experts for a few rows,
 * so that the CUDA engine can run a missed expert from host memory instead
 * of copying it to the GPU (the link and the CPU's memory bus then work at
 * once).  The sums are the GPU kernels', bit for bit: the same products
 * added in the same order (a warp's, engine/cuda_gemv.cuh) with the same
 * SiLU (engine/silu.h).  Jobs run in submission order, every thread on
 * each; a job's number is written to *done once its output and every
 * earlier job's are. */
#ifndef ENG_HOST_FFN_H
#define ENG_HOST_FFN_H

#include <stdint.h>

#define HOST_FFN_ROWS 4     /* rows a job may take */
#define HOST_FFN_QUEUE 64   /* jobs submitted and not yet done */

struct host_ffn;

/* threads (>= 1) workers for experts of hidden size H and intermediate
 * size I (multiples of 8, as the GPU's kernels need); done: a counter the pool sets (release order) to the number of
 * the last job finished, e.g. in memory the GPU reads.  0 or -errno. */
int host_ffn_open(int threads, int H, int I, volatile uint32_t *done, struct host_ffn **out);
void host_ffn_close(struct host_ffn *p);
/* The kernels in use: "avx512", "avx2" or "c" (the first this CPU runs, at
 * open); name, when this CPU runs it and no job is pending, replaces them
 * (tests: every one gives the same bits).  Returns the name in use. */
const char *host_ffn_isa(struct host_ffn *p, const char *name);

/* Queues y[t] = down(silu(gate x[t]) * up x[t]) for t < m (<= HOST_FFN_ROWS)
 * with expert weights w (bf16: gate [I][H], up [I][H], down [H][I], the
 * GPU slots' layout); x and y stay untouched by the caller until *done
 * reaches the returned job number (1, 2, ...).  Waits while
 * HOST_FFN_QUEUE jobs are pending. */
uint32_t host_ffn_submit(struct host_ffn *p, const void *w, const float *const *x, int m,
			 float *const *y);
/* Waits until job `job` is done. */
void host_ffn_wait(struct host_ffn *p, uint32_t job);

#endif
