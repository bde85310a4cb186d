/* loader/cuda_widen.cu, callable from C. */
#ifndef LD_CUDA_WIDEN_H
#define LD_CUDA_WIDEN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = x[i] widened from bf16 to f32 (exact), n values, queued on stream
 * (a cudaStream_t): 0, or the launch's cudaError_t. */
int ld_cu_widen_bf16(float *y, const void *x, size_t n, void *stream);

#ifdef __cplusplus
}
#endif

#endif
