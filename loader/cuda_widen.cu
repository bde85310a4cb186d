// bf16 -> f32 widening for the CUDA backend's loads of a bf16 pack: the
// copy over PCIe moves half the bytes, and the slot holds the exact f32
// values an f32 pack would have given.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "loader/cuda_widen.h"

// Four values per step: one 8-byte load, one 16-byte store.
__global__ void k_widen4(float4 *y, const uint2 *x, size_t n4)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4;
	     i += (size_t)gridDim.x * blockDim.x) {
		uint2 v = x[i];
		y[i] = make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u),
				   __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xffff0000u));
	}
}

__global__ void k_widen1(float *y, const uint16_t *x, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] = __uint_as_float((uint32_t)x[i] << 16);
}

extern "C" int ld_cu_widen_bf16(float *y, const void *x, size_t n, void *stream)
{
	cudaStream_t st = (cudaStream_t)stream;
	size_t n4 = ((uintptr_t)y % 16 || (uintptr_t)x % 8) ? 0 : n / 4;
	unsigned threads = 256, cap = 132u * 16u;

	if (n4) {
		size_t b = (n4 + threads - 1) / threads;
		k_widen4<<<(unsigned)(b < cap ? b : cap), threads, 0, st>>>((float4 *)y,
									   (const uint2 *)x, n4);
	}
	if (n > n4 * 4) {
		size_t r = n - n4 * 4, b = (r + threads - 1) / threads;
		k_widen1<<<(unsigned)(b < cap ? b : cap), threads, 0, st>>>(
			y + n4 * 4, (const uint16_t *)x + n4 * 4, r);
	}
	return (int)cudaGetLastError();
}
