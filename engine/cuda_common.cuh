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

// RMSNorm's scale of each of the m rows xp[t] (in floats), as k_rmsnorm
// computes it with a block of 256 threads: 1 / sqrt(mean(x^2) + eps) into
// sinv[t].  Every thread of the block must call it.
template <int NM>
__device__ void block_inv(const float *const *xp, int m, int in, float eps, float *sinv,
			  float *sh)
{
	for (int t = 0; t < NM; t++) {
		if (t >= m)
			break;
		float ss = 0;
		for (int i = threadIdx.x; i < in; i += blockDim.x)
			ss += xp[t][i] * xp[t][i];
		ss = block_reduce<false>(ss, sh);
		if (!threadIdx.x)
			sinv[t] = 1.0f / sqrtf(ss / (float)in + eps);
	}
	__syncthreads();
}

#endif
