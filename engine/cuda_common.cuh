// Device helpers shared by the CUDA engine's .cu files.
#ifndef ENG_CUDA_COMMON_CUH
#define ENG_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/silu.h"   // silu_mul: every expert path's, the host threads' too

#define ST(s) ((cudaStream_t)(s))

// Threads of an attention block (engine/cuda_kernels.cu, cuda_att_tiles.cu).
#define ATT_THREADS 256
#define ATT_WARPS (ATT_THREADS / 32)

// v = hi + mid + lo, each the bf16 nearest what is left (finite v; the
// parts of inf or NaN: v's bf16, 0, 0), into d[0], d[part], d[2 part].
// eng_cu_split3 says what for.
__device__ __forceinline__ void split3(float v, __nv_bfloat16 *d, size_t part)
{
	__nv_bfloat16 a = __float2bfloat16_rn(v), b;
	float r = isfinite(v) ? v - __bfloat162float(a) : 0.0f, r2;   /* exact */

	b = __float2bfloat16_rn(r);
	r2 = r - __bfloat162float(b);                                 /* exact, fits bf16 */
	d[0] = a, d[part] = b, d[2 * part] = __float2bfloat16_rn(r2);
}

// The three products of split3's parts at p[0], p[part], p[2 part], added
// smallest first.
__device__ __forceinline__ float add3(const float *p, size_t part)
{
	return p[0] + (p[part] + p[2 * part]);
}

// Programmatic dependent launch (sm_90).  Every kernel launched through
// launch() lets the next kernel in the stream start while it runs: the next
// one's blocks do what needs no earlier output (requesting their weights)
// and then wait in pdl_wait() until this grid has finished and its writes
// are visible.  The rules that keep this safe:
// - every kernel calls pdl_wait() before it reads or writes anything an
//   earlier kernel of the step writes or reads, and before it returns
//   (data of finished steps, such as k_attend's cached positions, may be
//   read before it);
// - pdl_launch() (let the next kernel start) comes after pdl_wait(), so at
//   most two grids overlap and the one before the previous has finished by
//   the time a kernel's own code runs.
// eng_cu_pdl (cuda_kernels.cu) turns the attribute off (MOED_CUDA_PDL=0):
// both instructions are then no-ops.
extern int eng_cu_pdl;

__device__ __forceinline__ void pdl_wait()
{
	asm volatile("griddepcontrol.wait;" ::: "memory");
}

__device__ __forceinline__ void pdl_launch()
{
	asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

// Queues kernel k; returns the cudaError_t as an int.
template <typename... KA, typename... A>
static int launch(void (*k)(KA...), dim3 grid, dim3 block, size_t smem, void *stream,
		  A... args)
{
	cudaLaunchAttribute at[1];
	cudaLaunchConfig_t c = {};

	at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
	at[0].val.programmaticStreamSerializationAllowed = 1;
	c.gridDim = grid, c.blockDim = block, c.dynamicSmemBytes = smem, c.stream = ST(stream);
	c.attrs = at, c.numAttrs = eng_cu_pdl ? 1 : 0;
	return (int)cudaLaunchKernelEx(&c, k, ((KA)args)...);
}

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

// block_reduce<false> of a and of b together: each by the same tree (the
// same bits as two calls), with one pair of barriers instead of two.
__device__ __forceinline__ void block_sum2(float &a, float &b, float2 *sh)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

	for (int o = 16; o > 0; o >>= 1) {
		a += __shfl_xor_sync(0xffffffffu, a, o);
		b += __shfl_xor_sync(0xffffffffu, b, o);
	}
	__syncthreads();
	if (!lane)
		sh[warp] = make_float2(a, b);
	__syncthreads();
	float2 v = lane < nw ? sh[lane] : make_float2(0.0f, 0.0f);
	a = v.x, b = v.y;
	for (int o = 16; o > 0; o >>= 1) {
		a += __shfl_xor_sync(0xffffffffu, a, o);
		b += __shfl_xor_sync(0xffffffffu, b, o);
	}
}

// One normalised element: weight w, input x, the row's scale inv.  Every
// path that normalises (k_rmsnorm, xin_norm, the router's copy for the
// experts) goes through this, so all give the same bits.
__device__ __forceinline__ float rms_scale(float w, float x, float inv)
{
	return w * (x * inv);
}

// inv[t] = 1 / sqrt(mean of row t's squares + eps) for t < n <= NM (rows
// x + t * ldx, dim long), in every thread.  The one place an RMSNorm's scale
// is computed (k_rmsnorm, and the GEMVs and router that normalise their own
// input), so all of them give the same bits for the same blockDim.x: thread
// i adds elements i, i + blockDim.x, ..., then block_reduce's tree.
template <int NM>
__device__ __forceinline__ void block_inv_rms(const float *x, int ldx, int n, int dim, float eps,
					      float *inv)
{
	__shared__ float sh[32][NM];
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	float ss[NM];

#pragma unroll
	for (int t = 0; t < NM; t++) {
		const float *xr = x + (size_t)(t < n ? t : 0) * ldx;
		ss[t] = 0;
		for (int i = threadIdx.x; t < n && i < dim; i += blockDim.x)
			ss[t] += xr[i] * xr[i];
		for (int o = 16; o > 0; o >>= 1)
			ss[t] += __shfl_xor_sync(0xffffffffu, ss[t], o);
	}
	__syncthreads();
	if (!lane)
		for (int t = 0; t < NM; t++)
			sh[warp][t] = ss[t];
	__syncthreads();
#pragma unroll
	for (int t = 0; t < NM; t++) {
		float v = lane < nw ? sh[lane][t] : 0.0f;
		for (int o = 16; o > 0; o >>= 1)
			v += __shfl_xor_sync(0xffffffffu, v, o);
		inv[t] = 1.0f / sqrtf(v / (float)dim + eps);
	}
}

#endif
