// GEMV variants for one activation row (decode at batch 1), against the
// engine's eng_cu_gemv, on the q/k/v, o and lm_head shapes of the issue's
// OLMoE model (bf16 weights): which way of streaming a weight row gets
// closest to the HBM rate.  Each variant runs 50 times in a CUDA graph over
// 16 copies of the weights (so they come from HBM, not L2), timed as
// bench/graph_time.h says; prints us per launch, GB/s of weights and max |y - engine's y|.
//   cuda_gemv_lab
// Variants (one warp per output row unless said):
//   engine      eng_cu_gemv (PDL on; first weights requested before the wait)
//   engine-pdl0 the same launched without PDL
//   allin       every chunk's 16-byte load issued before the first FMA
//               (same order of operations as the engine: same bits)
//   allin16     allin with 16 warps per block instead of 8
//   halves      two warps per row, each half of the chunks, then added
//   allin+pf    allin after an L2 prefetch of the row (as the engine did in round 3)
//   warp_dot    the engine's chunk_dot alone (no PDL); +pf: after an L2 prefetch
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/graph_time.h"
#include "engine/cuda_gemv.cuh"
#include "engine/cuda_kernels.h"

// Bytes [0, bytes) from p into L2, lines spread over nt threads (this one
// is i): the L2 prefetch the engine used in the third round (+pf variants).
__device__ __forceinline__ void prefetch_span(const void *p, size_t bytes, int i, int nt)
{
	for (size_t o = (size_t)i * 128; o < bytes; o += (size_t)nt * 128)
		asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)p + o));
}

#define NL 16
#define REPS 50
#define IN 2048
#define CH (IN / 256)              // 16-byte chunks per lane

// Chunks k0, k0 + step, ... of row wr (lane's 8 elements each), all loads
// first; the warp's sum in every lane.
template <int NK>
__device__ __forceinline__ float row_dot(const __nv_bfloat16 *wr, const float *x, int k0,
					int step)
{
	int lane = threadIdx.x & 31;
	uint4 v[NK];
	float acc = 0.0f;

#pragma unroll
	for (int k = 0; k < NK; k++)
		v[k] = __ldg((const uint4 *)(wr + lane * 8 + (k0 + k * step) * 256));
#pragma unroll
	for (int k = 0; k < NK; k++) {
		float wv[8], xv[8];

		unpack8(v[k], wv);
		load_x8(x + lane * 8 + (k0 + k * step) * 256, xv);
		acc = dot8(wv, xv, acc);
	}
	for (int o = 16; o > 0; o >>= 1)
		acc += __shfl_xor_sync(0xffffffffu, acc, o);
	return acc;
}

// PF: the row prefetched into L2 first, as the engine's k_gemv does.
template <bool PF>
__global__ void k_allin(float *y, const float *x, const __nv_bfloat16 *w, int out)
{
	int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);

	if (r >= out)
		return;
	if (PF)
		prefetch_span(w + (size_t)r * IN, IN * 2, threadIdx.x & 31, 32);
	float s = row_dot<CH>(w + (size_t)r * IN, x, 0, 1);
	if (!(threadIdx.x & 31))
		y[r] = s;
}

// The engine's warp_dot (cuda_gemv.cuh) without PDL, PF as above.
template <bool PF>
__global__ void k_cd(float *y, const float *x, const __nv_bfloat16 *w, int out)
{
	int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
	const __nv_bfloat16 *row = w + (size_t)r * IN;
	float acc[1][1];

	if (r >= out)
		return;
	if (PF)
		prefetch_span(row, IN * 2, threadIdx.x & 31, 32);
	warp_stream<__nv_bfloat16, 1, 1> ws;

	warp_start<__nv_bfloat16, 1, 1>(ws, &row, IN);
	chunk_dot<__nv_bfloat16, 1>(ws, rows_at<1>(x, 0, 1), 1, acc);
	if (!(threadIdx.x & 31))
		y[r] = acc[0][0];
}

__global__ void k_halves(float *y, const float *x, const __nv_bfloat16 *w, int out)
{
	__shared__ float part[8];
	int warp = threadIdx.x >> 5, r = blockIdx.x * 4 + warp / 2;
	float s = r < out ? row_dot<CH / 2>(w + (size_t)r * IN, x, warp & 1, 2) : 0.0f;

	if (!(threadIdx.x & 31))
		part[warp] = s;
	__syncthreads();
	if (threadIdx.x < 4 && blockIdx.x * 4 + threadIdx.x < out)
		y[blockIdx.x * 4 + threadIdx.x] = part[2 * threadIdx.x] + part[2 * threadIdx.x + 1];
}

struct shape {
	const char *name;
	int out, copies;           // copies: weight copies cycled (HBM, not L2)
};

static int variant(int v, float *y, const float *x, const __nv_bfloat16 *w, int out,
		   cudaStream_t st)
{
	switch (v) {
	case 0:
	case 1:
		eng_cu_set_pdl(v == 0);
		return eng_cu_gemv(y, out, x, IN, w, 1, 1, IN, out, 0, st);
	case 2:
		k_allin<false><<<(out + 7) / 8, 256, 0, st>>>(y, x, w, out);
		break;
	case 3:
		k_allin<false><<<(out + 15) / 16, 512, 0, st>>>(y, x, w, out);
		break;
	case 4:
		k_halves<<<(out + 3) / 4, 256, 0, st>>>(y, x, w, out);
		break;
	case 5:
		k_allin<true><<<(out + 7) / 8, 256, 0, st>>>(y, x, w, out);
		break;
	case 6:
		k_cd<false><<<(out + 7) / 8, 256, 0, st>>>(y, x, w, out);
		break;
	default:
		k_cd<true><<<(out + 7) / 8, 256, 0, st>>>(y, x, w, out);
	}
	return (int)cudaGetLastError();
}

struct run {
	int v;
	float *y;
	const float *x;
	const __nv_bfloat16 *w;
	size_t wsz;
	const struct shape *sh;
	cudaStream_t st;
};

// Call i: variant v on weight copy i % copies.
static int run_call(void *p, int i)
{
	struct run *r = (struct run *)p;

	return variant(r->v, r->y, r->x, r->w + (size_t)(i % r->sh->copies) * r->wsz, r->sh->out,
		       r->st);
}

static __global__ void k_fill(__nv_bfloat16 *w, size_t n, float *x)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		unsigned h = (unsigned)(i * 2654435761u);
		w[i] = __float2bfloat16((float)(h >> 8) / 16777216.0f - 0.5f);
		if (i < IN)
			x[i] = (float)((h >> 4) & 1023) / 1024.0f - 0.5f;
	}
}

int main(void)
{
	static const char *names[] = {"engine", "engine-pdl0", "allin", "allin16", "halves",
				      "allin+pf", "warp_dot", "warp_dot+pf"};
	const int NV = sizeof(names) / sizeof(names[0]);
	const struct shape shapes[] = {{"q/k/v 2048->6144", 6144, NL}, {"o 2048->2048", 2048, NL},
				       {"lm_head 2048->50304", 50304, 1}};
	cudaStream_t st;
	float *x, *y, *ref, *hy, *hr;
	__nv_bfloat16 *w;
	size_t most = (size_t)NL * 6144 * IN > (size_t)50304 * IN ? (size_t)NL * 6144 * IN :
		(size_t)50304 * IN;

	if (cudaMalloc(&w, most * 2) || cudaMalloc(&x, IN * 4) || cudaMalloc(&y, 50304 * 4) ||
	    cudaMalloc(&ref, 50304 * 4)) {
		fprintf(stderr, "cudaMalloc failed: %s\n", cudaGetErrorString(cudaGetLastError()));
		return 1;
	}
	hy = (float *)malloc(50304 * 4), hr = (float *)malloc(50304 * 4);
	cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
	k_fill<<<1024, 256>>>(w, most, x);
	printf("%-22s %-12s %9s %9s %12s\n", "shape", "variant", "us", "GB/s", "max|dy|");
	for (const struct shape *sh = shapes; sh < shapes + 3; sh++) {
		size_t wsz = (size_t)sh->out * IN;
		for (int v = 0; v < NV; v++) {
			struct run r = {v, y, x, w, wsz, sh, st};
			double us = bench_graph_us(st, REPS, run_call, &r);
			float d = 0;
			cudaMemset(y, 0, sh->out * 4);
			variant(v, v ? y : ref, x, w, sh->out, st);
			cudaStreamSynchronize(st);
			cudaMemcpy(v ? hy : hr, v ? y : ref, sh->out * 4, cudaMemcpyDeviceToHost);
			for (int i = 0; v && i < sh->out; i++)
				d = fmaxf(d, fabsf(hy[i] - hr[i]));
			printf("%-22s %-12s %9.2f %9.1f %12.3g\n", sh->name, names[v], us,
			       us > 0 ? wsz * 2 / (us * 1e3) : 0.0, d);
		}
	}
	return 0;
}
