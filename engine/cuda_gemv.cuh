// Device helpers of the GEMV-shaped kernels, shared by engine/cuda_moe.cu
// (GEMV, experts) and engine/cuda_route.cu (the router): bf16/f32 loads,
// the fixed-order warp and block dot products (cuda_moe.h says why the
// order matters) and the row-count dispatch.
#ifndef ENG_CUDA_GEMV_CUH
#define ENG_CUDA_GEMV_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/cuda_common.cuh"
#include "engine/cuda_moe.h"

#define WARPS 8                    // rows per block

// Eight bf16 values (16 bytes) widened to f32, exactly.
__device__ __forceinline__ void unpack8(uint4 v, float o[8])
{
	o[0] = __uint_as_float(v.x << 16), o[1] = __uint_as_float(v.x & 0xffff0000u);
	o[2] = __uint_as_float(v.y << 16), o[3] = __uint_as_float(v.y & 0xffff0000u);
	o[4] = __uint_as_float(v.z << 16), o[5] = __uint_as_float(v.z & 0xffff0000u);
	o[6] = __uint_as_float(v.w << 16), o[7] = __uint_as_float(v.w & 0xffff0000u);
}

// Eight weights as loaded (16 bytes of bf16, 32 of f32): a batch of
// chunks stays in this form until used, which halves the registers bf16
// needs.  CS: streaming loads (ld.global.cs: evicted first), for weights
// read once a step, all but the router's: they keep the router's weights,
// the KV cache and the activations in L2 (b1 decode 924-932 tok/s with the
// experts' alone, 954-964 with the GEMVs' too; the L2::256B prefetch hint
// on top: 934-939; bench/results/cuda_bench_s10.md).
template <typename WT, bool CS = false>
struct raw8;

template <bool CS>
struct raw8<__nv_bfloat16, CS> {
	uint4 v;
	__device__ __forceinline__ void load(const __nv_bfloat16 *w)
	{
		v = CS ? __ldcs((const uint4 *)w) : __ldg((const uint4 *)w);
	}
	__device__ __forceinline__ void get(float o[8]) const
	{
		unpack8(v, o);
	}
};

template <bool CS>
struct raw8<float, CS> {
	float4 a, b;
	__device__ __forceinline__ void load(const float *w)
	{
		if (CS)
			a = __ldcs((const float4 *)w), b = __ldcs((const float4 *)w + 1);
		else
			a = __ldg((const float4 *)w), b = __ldg((const float4 *)w + 1);
	}
	__device__ __forceinline__ void get(float o[8]) const
	{
		o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w;
		o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
	}
};

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

// Where a dot product's inputs come from: load(t, c, o) gives input row
// t's eight values from c (c a multiple of 8).  Plain rows:
template <int NM>
struct xin_rows {
	const float *p[NM];

	__device__ __forceinline__ void load(int t, int c, float o[8]) const
	{
		load_x8(p[t] + c, o);
	}
};

// RMSNorm of the rows (weight nw, scales inv from block_inv_rms), with
// k_rmsnorm's arithmetic (rms_scale): the same bits as its output.
template <int NM>
struct xin_norm {
	xin_rows<NM> x;
	const float *nw;
	float inv[NM];

	__device__ __forceinline__ void load(int t, int c, float o[8]) const
	{
		float g[8];

		x.load(t, c, o);
		load_x8(nw + c, g);
#pragma unroll
		for (int i = 0; i < 8; i++)
			o[i] = rms_scale(g[i], o[i], inv[t]);
	}
};

// Row t's inputs times the RMSNorm weights nw, the squares of the raw
// inputs added into ss[t] as they pass (each chunk once): a warp's dot over
// them, scaled by norm_inv(ss) at the end, is RMSNorm then the dot without
// a pass of its own over x (that pass, block_inv_rms in each block, made
// the GEMV slower than a launch of k_rmsnorm before it).
template <int NM>
struct xin_scaled {
	xin_rows<NM> x;
	const float *nw;
	mutable float ss[NM];

	__device__ __forceinline__ void load(int t, int c, float o[8]) const
	{
		float g[8];

		x.load(t, c, o);
		load_x8(nw + c, g);
#pragma unroll
		for (int i = 0; i < 8; i++) {
			ss[t] = fmaf(o[i], o[i], ss[t]);
			o[i] *= g[i];
		}
	}
};

// 1 / rms from a lane's squares ss (its chunks of a row of length in): the
// butterfly over the warp, in the order chunk_dot adds its sums.
__device__ __forceinline__ float norm_inv(float ss, int in, float eps)
{
	for (int o = 16; o > 0; o >>= 1)
		ss += __shfl_xor_sync(0xffffffffu, ss, o);
	return 1.0f / sqrtf(ss / (float)in + eps);
}

// Chunks first, first + STEP, ... < in of NR weight rows, read B at a time
// into registers (a batch's loads go out before its first FMA: more bytes in
// flight per thread).  Weights are never written by a kernel, so a kernel
// may start() before its pdl_wait(): the first batch (B > 1) is then on its
// way while the kernel before finishes.
template <typename WT, int NR, int B, int STEP, bool CS = false>
struct wstream {
	const WT *w[NR];
	int in, c0;
	raw8<WT, CS> v[B][NR];

	__device__ __forceinline__ void fetch()
	{
		if (c0 + (B - 1) * STEP < in) {   /* a whole batch: no per-load test */
#pragma unroll
			for (int k = 0; k < B; k++)
#pragma unroll
				for (int r = 0; r < NR; r++)
					v[k][r].load(w[r] + c0 + k * STEP);
			return;
		}
#pragma unroll
		for (int k = 0; k < B; k++)
#pragma unroll
			for (int r = 0; r < NR; r++)
				if (c0 + k * STEP < in)
					v[k][r].load(w[r] + c0 + k * STEP);
	}
	__device__ __forceinline__ void start(const WT *const *rows, int in_, int first)
	{
#pragma unroll
		for (int r = 0; r < NR; r++)
			w[r] = rows[r];
		in = in_, c0 = first;
		if (B > 1)   /* chunk_dot loads single chunks itself */
			fetch();
	}
};

// Batch sizes: 8 chunks in flight per thread for one or two input rows;
// one for more, whose sums take the registers.
template <int NM, int NR>
struct batch_of {
	static constexpr int v = NM <= 2 ? 8 / NR : 1;
};

// acc[r][t] += u[r] . xs's row t at c, for r < NR weight chunks and t < m.
template <int NM, int NR, typename XS>
__device__ __forceinline__ void dot_inputs(const float (*u)[8], const XS &xs, int c, int m,
					   float (*acc)[NM])
{
#pragma unroll
	for (int t = 0; t < NM; t++) {
		float xv[8];

		if (t >= m)
			break;
		xs.load(t, c, xv);
#pragma unroll
		for (int r = 0; r < NR; r++)
			acc[r][t] = dot8(u[r], xv, acc[r][t]);
	}
}

// acc[r][t] = sum over ws's chunks c of w[r][c .. c + 8) . xs's row t at
// c, then added over the warp (a butterfly), for r < NR weight rows and t <
// m <= NM inputs; every lane gets its warp's totals.  Each sum's order
// depends only on in, first and STEP.  PIPE (batches of B > 1): each slot's
// next chunk is requested before the slot's dot, so B chunks stay in flight
// all along, not only at a batch's start; the same sums.  It pays where the
// input costs work of its own (the norm GEMV at one row: q/k/v 9.45 ->
// 8.71 us) and costs elsewhere (its registers: gate/up 20.68 -> 23.30,
// down 11.80 -> 13.52; cuda_kprof 1 128, H200).
template <typename WT, int NM, bool PIPE = false, int NR, int B, int STEP, bool CS, typename XS>
__device__ __forceinline__ void chunk_dot(wstream<WT, NR, B, STEP, CS> &ws, const XS &xs, int m,
					  float (*acc)[NM])
{
#pragma unroll
	for (int r = 0; r < NR; r++)
#pragma unroll
		for (int t = 0; t < NM; t++)
			acc[r][t] = 0.0f;
	/* One chunk at a time (many input rows): a plain loop.  The batched
	 * form below took 122 registers for 16 rows (72 this way), so half the
	 * blocks per SM. */
	if (B == 1) {
#pragma unroll 2
		for (int c = ws.c0; c < ws.in; c += STEP) {
			float u[NR][8];

#pragma unroll
			for (int r = 0; r < NR; r++) {
				raw8<WT, CS> q;
				q.load(ws.w[r] + c);
				q.get(u[r]);
			}
			dot_inputs<NM, NR>(u, xs, c, m, acc);
		}
	} else
#pragma unroll 1
	while (ws.c0 < ws.in) {
#pragma unroll
		for (int k = 0; k < B; k++) {
			int c = ws.c0 + k * STEP, cn = c + B * STEP;
			float u[NR][8];

			if (c >= ws.in)
				break;
#pragma unroll
			for (int r = 0; r < NR; r++)
				ws.v[k][r].get(u[r]);
#pragma unroll
			for (int r = 0; r < NR && PIPE && cn < ws.in; r++)
				ws.v[k][r].load(ws.w[r] + cn);
			dot_inputs<NM, NR>(u, xs, c, m, acc);
		}
		ws.c0 += B * STEP;
		if (!PIPE)
			ws.fetch();
	}
#pragma unroll
	for (int r = 0; r < NR; r++)
#pragma unroll
		for (int t = 0; t < NM; t++)
			for (int o = 16; o > 0; o >>= 1)
				acc[r][t] += __shfl_xor_sync(0xffffffffu, acc[r][t], o);
}

// A warp's stream of NR rows of length in (a multiple of 8): lane l takes
// chunks l, l + 32, ...; chunk_dot on it gives each row's sums as alone.
template <typename WT, int NM, int NR, bool CS = false>
using warp_stream = wstream<WT, NR, batch_of<NM, NR>::v, 256, CS>;

template <typename WT, int NM, int NR, bool CS = false>
__device__ __forceinline__ void warp_start(warp_stream<WT, NM, NR, CS> &ws, const WT *const *rows,
					   int in)
{
	ws.start(rows, in, (threadIdx.x & 31) * 8);
}

// For few output rows: one block per output row, its 256 threads splitting
// the row in 8-element chunks (thread i takes chunks i, i + 256, ...: the
// block's stream, block_start), the partial sums added over the block in a
// fixed order.  Row t's sum comes out in thread t.
template <typename WT>
using block_stream = wstream<WT, 1, 2, 32 * WARPS * 8>;   /* B 2: loaded in start() */

template <typename WT>
__device__ __forceinline__ void block_start(block_stream<WT> &ws, const WT *row, int in)
{
	ws.start(&row, in, threadIdx.x * 8);
}

template <typename WT, int NM, typename XS>
__device__ __forceinline__ float split_row(const XS &xs, block_stream<WT> &ws, int n)
{
	__shared__ float part[WARPS][NM];
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	float acc[1][NM], s = 0.0f;

	chunk_dot<WT, NM>(ws, xs, n, acc);
#pragma unroll
	for (int t = 0; t < NM; t++)
		if (!lane)
			part[warp][t] = acc[0][t];
	__syncthreads();
	if (threadIdx.x < n)
		for (int k = 0; k < WARPS; k++)
			s += part[k][threadIdx.x];
	return s;
}

// Input rows t < n (the rest: row 0) of x, ldx apart.
template <int NM>
__device__ __forceinline__ xin_rows<NM> rows_at(const float *x, int ldx, int n)
{
	xin_rows<NM> xs;

#pragma unroll
	for (int t = 0; t < NM; t++)
		xs.p[t] = x + (size_t)(t < n ? t : 0) * ldx;
	return xs;
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
