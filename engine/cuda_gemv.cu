// Small-batch GEMVs (engine/cuda_moe.h): eng_cu_gemv, the norm GEMV and the
// lm_head's form that writes pinned host rows and their argmax.  A decode
// step reads every weight once for a handful of rows, so these are bound by
// memory bandwidth: a warp per output row (or two) streams the row in
// 16-byte loads and keeps up to ENG_CU_GEMV_MAX rows' sums in registers.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "engine/cuda_gemv.cuh"

extern "C" int eng_cu_gemv_ok(int in)
{
	return in > 0 && in % 8 == 0;
}

// Value v at index i as a key for atomicMax, larger wins: the value's order,
// then the lower index; a NaN is no candidate (0), except at index 0,
// which then beats every key (eng_argmax answers 0 when the first value
// is NaN).  -0 counts as +0, so equal values tie and the lower index wins.
__device__ __forceinline__ unsigned long long argmax_key(float v, unsigned i)
{
	if (v != v)
		return i ? 0ull : ~0ull;
	unsigned b = __float_as_uint(v + 0.0f);

	b = b & 0x80000000u ? ~b : b | 0x80000000u;
	return (unsigned long long)b << 32 | ~i;
}

// Each of the n rows' argmax over the block's BR values ys[t] (indexes
// blockIdx.x * BR + j) into hy.keys[t]; the block that finishes last
// writes the winners' indexes to hy.out and clears the keys.
template <int NM, int BR>
__device__ void block_argmax(const float (*ys)[BR], int n, const struct eng_cu_host_y &hy)
{
	__shared__ bool last;
	int lane = threadIdx.x & 31;

	for (int t = threadIdx.x >> 5; t < n; t += WARPS) {
		unsigned long long k = lane < BR ? argmax_key(ys[t][lane], blockIdx.x * BR + lane) : 0;

		for (int o = 16; o > 0; o >>= 1) {
			unsigned long long u = __shfl_xor_sync(0xffffffffu, k, o);
			k = u > k ? u : k;
		}
		if (!lane && k)
			atomicMax(hy.keys + t, k);
	}
	__threadfence();
	__syncthreads();
	if (!threadIdx.x)
		last = atomicAdd(hy.done, 1u) == gridDim.x - 1;
	__syncthreads();
	if (!last)
		return;
	__threadfence();
	if (threadIdx.x < n) {
		unsigned long long k = atomicExch(hy.keys + threadIdx.x, 0ull);

		hy.out[threadIdx.x] = k ? (int)~(unsigned)k : 0;
	}
	if (!threadIdx.x)
		*hy.done = 0;
}

// k_gemv's HY ending: the block's sums (each warp's R rows, acc in lane t
// for row t) staged in shared memory, written to the host rows as 16-byte
// stores from consecutive threads, then the rows' argmax.
template <int NM, int R>
__device__ __forceinline__ void host_rows(float *y, int ldy, const float (*acc)[NM], int n,
					  const struct eng_cu_host_y &hy)
{
	constexpr int BR = WARPS * R;
	__shared__ __align__(16) float ys[NM][BR];
	int wr = (threadIdx.x >> 5) * R, lane = threadIdx.x & 31;

#pragma unroll
	for (int t = 0; t < NM; t++)
		if (t < n && lane == t) {
			ys[t][wr] = acc[0][t];
			ys[t][wr + R - 1] = acc[R - 1][t];
		}
	__syncthreads();
	for (int i = threadIdx.x; i < n * BR / 4; i += blockDim.x) {
		int t = i / (BR / 4), q = i % (BR / 4);
		float4 *d = (float4 *)(y + (size_t)t * ldy + (size_t)blockIdx.x * BR);
		d[q] = ((const float4 *)ys[t])[q];
	}
	block_argmax<NM, BR>(ys, n, hy);
}

// R (1 or 2) output rows per warp: r, and r + 1 in the same pass (more
// loads in flight, each row's sum as alone, so R does not change the bits).
// Two pay off from a few activation rows on, where each weight load serves
// several rows; for one row, twice the warps keep more rows going.  The
// first batch of weights is requested before the wait (an L2 prefetch
// instead, measured in bench/cuda_gemv_lab, slowed the GEMV by a quarter).
// NORM (1 or 2): the input is RMSNorm(x) (weights nw, eps); 1: made as it
// is read (xin_scaled); 2: x already holds x * nw and nw the rows' 1 / rms
// (k_norm_prep), with the same bits as 1.  HY: y is host memory (zero-copy
// logits) and out a multiple of the block's rows: the block's sums go out
// as 16-byte stores from consecutive threads, not a 4-byte PCIe write per
// warp (which made lm_head's b1 step 10 us slower); then each row's argmax
// (block_argmax).
template <typename WT, int NM, int R, int IN = 0, int NORM = 0, bool HY = false>
__global__ void k_gemv(float *y, int ldy, const float *x, int ldx, const WT *w, int n_, int in_,
		       int out, int add, const float *nw, float eps, struct eng_cu_host_y hy)
{
	const int in = IN ? IN : in_;   /* IN: the row length known at compile time */
	const int n = NM == 1 ? 1 : n_;
	int r = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * R, lane = threadIdx.x & 31;
	int r1 = R == 2 && r + 1 < out ? r + 1 : r;
	const WT *rows[R];
	float acc[R][NM];
	warp_stream<WT, NM, R, true> ws;

	rows[0] = w + (size_t)r * in;
	rows[R - 1] = w + (size_t)r1 * in;
	/* Past the last row: nothing to wait for (every block has a row, and
	 * its other warps wait). */
	if (r >= out)
		return;
	warp_start<WT, NM, R, true>(ws, rows, in);
	pdl_wait();
	if (NORM == 1) {
		xin_scaled<NM> xs = {rows_at<NM>(x, ldx, n), nw, {}};

		chunk_dot<WT, NM, true>(ws, xs, n, acc);
#pragma unroll
		for (int t = 0; t < NM; t++) {
			float inv = norm_inv(xs.ss[t], in, eps);
#pragma unroll
			for (int k = 0; k < R; k++)
				acc[k][t] *= inv;
		}
	} else
		chunk_dot<WT, NM>(ws, rows_at<NM>(x, ldx, n), n, acc);
#pragma unroll
	for (int t = 0; t < NM; t++)
#pragma unroll
		for (int k = 0; k < R && NORM == 2 && t < n; k++)
			acc[k][t] *= nw[t];
	pdl_launch();
	if (HY)
		host_rows<NM, R>(y, ldy, acc, n, hy);
	else
#pragma unroll
		for (int t = 0; t < NM; t++)
			if (t < n && lane == t) {
				float *d = y + (size_t)t * ldy + r;
				d[0] = add ? d[0] + acc[0][t] : acc[0][t];
				if (r1 != r)
					d[1] = add ? d[1] + acc[R - 1][t] : acc[R - 1][t];
			}
}

// AM: then each row's argmax (block_argmax, y host memory as k_gemv's HY).
template <typename WT, int NM, bool AM = false>
__global__ void k_gemv_split(float *y, int ldy, const float *x, int ldx, const WT *w, int n,
			     int in, int add, struct eng_cu_host_y hy)
{
	__shared__ float sv[AM ? NM : 1][1];
	block_stream<WT> ws;

	block_start(ws, w + (size_t)blockIdx.x * in, in);
	pdl_wait();
	pdl_launch();
	float s = split_row<WT, NM>(rows_at<NM>(x, ldx, n), ws, n);
	if (threadIdx.x < n) {
		float *d = y + (size_t)threadIdx.x * ldy + blockIdx.x;
		*d = add ? *d + s : s;
		if (AM)
			sv[threadIdx.x][0] = s;
	}
	if (AM) {
		__syncthreads();
		block_argmax<NM, 1>(sv, n, hy);
	}
}

// Output rows per warp of gemv_warps' kernels.  With the norm, two rows per
// warp for one input row too: the input's loads and squares serve both
// (q/k/v: 9.27 us against 10.03 for one row per warp with a compile-time
// length at 40 registers, 14.03 at 44, whose grid then takes two waves;
// bench/cuda_kprof, H200).
template <int NORM>
static int warp_rows(int n)
{
	return n >= 4 || (NORM == 1 && n == 1) ? 2 : 1;
}

// The warp kernels' launch (eng_cu_gemv's and eng_cu_gemv_norm's).
template <int NORM, bool HY = false>
static int gemv_warps(float *y, int ldy, const float *x, int ldx, const void *w, int bf16, int n,
		      int in, int out, int add, const float *nw, float eps, void *stream,
		      struct eng_cu_host_y hy = {})
{
	int R = warp_rows<NORM>(n), rc = 0;
	unsigned nb = (unsigned)((out + R * WARPS - 1) / (R * WARPS));

	/* One row at a common length: a compile-time length (with n known to be
	 * 1 and pdl_launch() after the dot) takes the bf16 kernel from 56
	 * registers to 38 (ptxas), so 6 blocks per SM instead of 4. */
	if (NORM != 1 && n == 1 && (in == 1024 || in == 2048)) {
#define G1(T, L) launch(k_gemv<T, 1, 1, L, NORM, HY>, nb, 32 * WARPS, 0, stream, y, ldy, x, ldx, \
			(const T *)w, n, in, out, add, nw, eps, hy)
		if (bf16)
			rc = in == 1024 ? G1(__nv_bfloat16, 1024) : G1(__nv_bfloat16, 2048);
		else
			rc = in == 1024 ? G1(float, 1024) : G1(float, 2048);
#undef G1
		return rc;
	}
#define GEMV(T, N) rc = R == 2 ? \
	launch(k_gemv<T, N, 2, 0, NORM, HY>, nb, 32 * WARPS, 0, stream, y, ldy, x, ldx, \
	       (const T *)w, n, in, out, add, nw, eps, hy) : \
	launch(k_gemv<T, N, 1, 0, NORM, HY>, nb, 32 * WARPS, 0, stream, y, ldy, x, ldx, (const T *)w, \
	       n, in, out, add, nw, eps, hy)
	DISPATCH(n, bf16, GEMV);
#undef GEMV
	return rc;
}

static bool gemv_args_ok(int n, int in)
{
	return n >= 1 && n <= ENG_CU_GEMV_MAX && eng_cu_gemv_ok(in);
}

// The split kernel's launch (one block per output row), with the argmax
// when AM (eng_cu_gemv's and eng_cu_gemv_host's).
template <bool AM>
static int gemv_split(float *y, int ldy, const float *x, int ldx, const void *w, int bf16, int n,
		      int in, int out, int add, struct eng_cu_host_y hy, void *stream)
{
	int rc = 0;

#define SPLIT(T, N) rc = launch(k_gemv_split<T, N, AM>, out, 32 * WARPS, 0, stream, y, ldy, x, \
				ldx, (const T *)w, n, in, add, hy)
	DISPATCH(n, bf16, SPLIT);
#undef SPLIT
	return rc;
}

extern "C" int eng_cu_gemv(float *y, int ldy, const float *x, int ldx, const void *w, int bf16,
			   int n, int in, int out, int add, void *stream)
{
	if (!gemv_args_ok(n, in))
		return (int)cudaErrorInvalidValue;
	/* Few rows: too few warps to keep the memory busy one row each. */
	if (out <= ENG_CU_SPLIT_ROWS)
		return gemv_split<false>(y, ldy, x, ldx, w, bf16, n, in, out, add, {}, stream);
	return gemv_warps<0>(y, ldy, x, ldx, w, bf16, n, in, out, add, NULL, 0, stream);
}

extern "C" int eng_cu_gemv_host(float *y, const float *x, const void *w, int bf16, int n, int in,
				int out, struct eng_cu_host_y *host, void *stream)
{
	if (!gemv_args_ok(n, in) || out > ENG_CU_SPLIT_ROWS)
		return (int)cudaErrorInvalidValue;
	host->ok = 1;
	return gemv_split<true>(y, out, x, in, w, bf16, n, in, out, 0, *host, stream);
}

// Row t's x * nw into xg and its 1 / rms into inv[t], one warp a row, with
// xin_scaled's operations in its order (lane l: chunks l, l + 32, ...), so
// k_gemv's NORM 2 on them gives NORM 1's bits.  PREP chunks a lane are
// loaded at once (nw's first before the wait: it does not depend on the
// kernel before), not one load's latency after another.
#define PREP 8
__device__ __forceinline__ void prep_load(const float *p, float v[PREP][8], int c, int in)
{
#pragma unroll
	for (int u = 0; u < PREP; u++)
		if (c + u * 256 < in)
			load_x8(p + c + u * 256, v[u]);
}

__global__ void k_norm_prep(float *xg, float *inv, const float *x, const float *nw, int in,
			    float eps)
{
	const float *xr = x + (size_t)blockIdx.x * in;
	float *d = xg + (size_t)blockIdx.x * in, ss = 0.0f, o[PREP][8], g[PREP][8];
	int c = threadIdx.x * 8;

	prep_load(nw, g, c, in);
	pdl_wait();
	pdl_launch();
	for (;;) {
		prep_load(xr, o, c, in);
#pragma unroll
		for (int u = 0; u < PREP; u++)
#pragma unroll
			for (int i = 0; i < 8 && c + u * 256 < in; i++) {
				ss = fmaf(o[u][i], o[u][i], ss);
				d[c + u * 256 + i] = o[u][i] * g[u][i];
			}
		if ((c += PREP * 256) >= in)
			break;
		prep_load(nw, g, c, in);
	}
	ss = norm_inv(ss, in, eps);
	if (!threadIdx.x)
		inv[blockIdx.x] = ss;
}

extern "C" int eng_cu_gemv_norm(float *y, const float *x, const float *nw, float eps,
				const void *w, int bf16, int n, int in, int out, float *scratch,
				struct eng_cu_host_y *host, void *stream)
{
	int R = warp_rows<2>(n), rc;
	float *inv;

	if (!gemv_args_ok(n, in) || out <= ENG_CU_SPLIT_ROWS)
		return (int)cudaErrorInvalidValue;
	/* Over four rows, each warp squaring and scaling every row as it reads
	 * costs more than a launch that does it once (q/k/v, us, fused against
	 * prepared: 4 rows 13.72 / 15.16, 8 rows 33.02 / 23.88, 16 rows 68.04 /
	 * 41.64).  Many output rows (a GEMV of several waves) take the launch
	 * too: lm_head at one row took 53.73 us fused, 63.00 with chunk_dot's
	 * PIPE (which the one-row q/k/v gains from), 53.19 prepared (cuda_kprof,
	 * H200).  Host rows take it too (the same bits), for the argmax. */
	if (host)
		host->ok = 0;
	if (!scratch || (n <= 4 && out < 16384 && !host))
		return gemv_warps<1>(y, out, x, in, w, bf16, n, in, out, 0, nw, eps, stream);
	inv = scratch + (size_t)n * in;
	if ((rc = launch(k_norm_prep, n, 32, 0, stream, scratch, inv, x, nw, in, eps)))
		return rc;
	if (host && out % (R * WARPS) == 0 && out % 4 == 0 && (uintptr_t)y % 16 == 0) {
		host->ok = 1;
		return gemv_warps<2, true>(y, out, scratch, in, w, bf16, n, in, out, 0, inv, eps,
					   stream, *host);
	}
	return gemv_warps<2>(y, out, scratch, in, w, bf16, n, in, out, 0, inv, eps, stream);
}
