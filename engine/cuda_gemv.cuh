// Device helpers of the GEMV-shaped kernels, shared by engine/cuda_moe.cu
// (GEMV, experts) and engine/cuda_route.cu (the router): bf16/f32 loads,
// the fixed-order warp and block dot products (cuda_moe.h says why the
// order matters), L2 prefetch of weights, and the row-count dispatch.
#ifndef ENG_CUDA_GEMV_CUH
#define ENG_CUDA_GEMV_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/cuda_common.cuh"
#include "engine/cuda_moe.h"

#define WARPS 8                    // rows per block

__device__ __forceinline__ void load8(const float *w, float o[8])
{
	float4 a = __ldg((const float4 *)w), b = __ldg((const float4 *)w + 1);

	o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w;
	o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
}

// Eight bf16 values (16 bytes) widened to f32, exactly.
__device__ __forceinline__ void unpack8(uint4 v, float o[8])
{
	o[0] = __uint_as_float(v.x << 16), o[1] = __uint_as_float(v.x & 0xffff0000u);
	o[2] = __uint_as_float(v.y << 16), o[3] = __uint_as_float(v.y & 0xffff0000u);
	o[4] = __uint_as_float(v.z << 16), o[5] = __uint_as_float(v.z & 0xffff0000u);
	o[6] = __uint_as_float(v.w << 16), o[7] = __uint_as_float(v.w & 0xffff0000u);
}

__device__ __forceinline__ void load8(const __nv_bfloat16 *w, float o[8])
{
	unpack8(__ldg((const uint4 *)w), o);
}

// Eight inputs at xr.
__device__ __forceinline__ void load_x8(const float *xr, float o[8])
{
	float4 a = *(const float4 *)xr, b = *(const float4 *)(xr + 4);

	o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w;
	o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
}

__device__ __forceinline__ float dot8(const float *w, const float *x, float s)
{
	s = fmaf(w[0], x[0], s), s = fmaf(w[1], x[1], s);
	s = fmaf(w[2], x[2], s), s = fmaf(w[3], x[3], s);
	s = fmaf(w[4], x[4], s), s = fmaf(w[5], x[5], s);
	s = fmaf(w[6], x[6], s), s = fmaf(w[7], x[7], s);
	return s;
}

// acc[t] = sum over c = first, first + step, ... < in of w[c .. c + 8) .
// xp[t][c .. c + 8), then added over the warp (a butterfly), for t < m <=
// NM; every lane gets its warp's totals.  The order depends only on in,
// first and step.
template <typename WT, int NM>
__device__ __forceinline__ void chunk_dot(const WT *w, int in, int first, int step,
					  const float *const *xp, int m, float *acc)
{
#pragma unroll
	for (int t = 0; t < NM; t++)
		acc[t] = 0.0f;
#pragma unroll 4
	for (int c = first; c < in; c += step) {
		float wv[8], xv[8];

		load8(w + c, wv);
#pragma unroll
		for (int t = 0; t < NM; t++) {
			if (t >= m)
				break;
			load_x8(xp[t] + c, xv);
			acc[t] = dot8(wv, xv, acc[t]);
		}
	}
#pragma unroll
	for (int t = 0; t < NM; t++)
		for (int o = 16; o > 0; o >>= 1)
			acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
}

// acc[t] = w . xp[t] over in (a multiple of 8) for t < m <= NM, one warp:
// lane l takes chunks l, l + 32, ...; every lane gets the totals.
template <typename WT, int NM>
__device__ __forceinline__ void warp_dot(const WT *w, int in, const float *const *xp, int m,
					 float *acc)
{
	chunk_dot<WT, NM>(w, in, (threadIdx.x & 31) * 8, 256, xp, m, acc);
}

// warp_dot of two weight rows over the same inputs in one pass (more loads
// in flight); each row's sums come out exactly as warp_dot's.
template <typename WT, int NM>
__device__ __forceinline__ void warp_dot2(const WT *w0, const WT *w1, int in,
					  const float *const *xp, int m, float *a0, float *a1)
{
	int lane = threadIdx.x & 31;

#pragma unroll
	for (int t = 0; t < NM; t++)
		a0[t] = a1[t] = 0.0f;
#pragma unroll 2
	for (int c = lane * 8; c < in; c += 256) {
		float u[8], v[8], xv[8];

		load8(w0 + c, u);
		load8(w1 + c, v);
#pragma unroll
		for (int t = 0; t < NM; t++) {
			if (t >= m)
				break;
			load_x8(xp[t] + c, xv);
			a0[t] = dot8(u, xv, a0[t]);
			a1[t] = dot8(v, xv, a1[t]);
		}
	}
#pragma unroll
	for (int t = 0; t < NM; t++)
		for (int o = 16; o > 0; o >>= 1) {
			a0[t] += __shfl_xor_sync(0xffffffffu, a0[t], o);
			a1[t] += __shfl_xor_sync(0xffffffffu, a1[t], o);
		}
}

// Bytes [0, bytes) from p into L2, lines spread over nt threads (this one
// is i).  Weights only: no kernel writes them, so this may run before
// pdl_wait().
__device__ __forceinline__ void prefetch_span(const void *p, size_t bytes, int i, int nt)
{
	for (size_t o = (size_t)i * 128; o < bytes; o += (size_t)nt * 128)
		prefetch_l2((const char *)p + o);
}

// For few output rows: one block per output row r, its 256 threads
// splitting the row in 8-element chunks (thread i takes chunks i, i + 256,
// ...), the partial sums added over the block in a fixed order.  Row t's
// sum comes out in thread t.
template <typename WT, int NM>
__device__ __forceinline__ float split_row(const float *x, int ldx, const WT *wr, int n, int in)
{
	__shared__ float part[WARPS][NM];
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const float *xp[NM];
	float acc[NM], s = 0.0f;

#pragma unroll
	for (int t = 0; t < NM; t++)
		xp[t] = x + (size_t)(t < n ? t : 0) * ldx;
	chunk_dot<WT, NM>(wr, in, threadIdx.x * 8, 32 * WARPS * 8, xp, n, acc);
#pragma unroll
	for (int t = 0; t < NM; t++)
		if (!lane)
			part[warp][t] = acc[t];
	__syncthreads();
	if (threadIdx.x < n)
		for (int k = 0; k < WARPS; k++)
			s += part[k][threadIdx.x];
	return s;
}

// Power of two >= m (1..16), for the template's row count.
static inline int rows_of(int m)
{
	return m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : m <= 8 ? 8 : 16;
}

#define DISPATCH(NM_EXPR, BF16, CALL)                                                     \
	do {                                                                              \
		switch (rows_of(NM_EXPR)) {                                               \
		case 1: if (BF16) CALL(__nv_bfloat16, 1); else CALL(float, 1); break;     \
		case 2: if (BF16) CALL(__nv_bfloat16, 2); else CALL(float, 2); break;     \
		case 4: if (BF16) CALL(__nv_bfloat16, 4); else CALL(float, 4); break;     \
		case 8: if (BF16) CALL(__nv_bfloat16, 8); else CALL(float, 8); break;     \
		default: if (BF16) CALL(__nv_bfloat16, 16); else CALL(float, 16); break;  \
		}                                                                         \
	} while (0)

#endif
