// Device helpers shared by engine/cuda_kernels.cu and engine/cuda_moe.cu.
#ifndef ENG_CUDA_COMMON_CUH
#define ENG_CUDA_COMMON_CUH

#include <cuda_runtime.h>

// Sum (or max) over the block; every thread gets the result.  blockDim.x is
// a multiple of 32, at most 1024.
template <bool MAX>
__device__ float block_reduce(float v, float *sh)
{
	for (int o = 16; o > 0; o >>= 1) {
		float u = __shfl_xor_sync(0xffffffffu, v, o);
		v = MAX ? fmaxf(v, u) : v + u;
	}
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	__syncthreads();
	if (!lane)
		sh[warp] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : (MAX ? -INFINITY : 0.0f);
	for (int o = 16; o > 0; o >>= 1) {
		float u = __shfl_xor_sync(0xffffffffu, v, o);
		v = MAX ? fmaxf(v, u) : v + u;
	}
	return v;
}

#endif
