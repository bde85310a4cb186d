// Small-batch GEMV and the MoE layer's expert kernels (engine/cuda_moe.h).
// A decode step reads every weight once for a handful of rows, so these are
// bound by memory bandwidth: a warp per output row (or two) streams the row
// in 16-byte loads and keeps up to ENG_CU_GEMV_MAX rows' sums in registers.
// Routing: engine/cuda_route.cu.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "engine/cuda_gemv.cuh"

extern "C" size_t eng_cu_grp_bytes(int E, int entries)
{
	return (size_t)(1 + 3 * E + 2 * entries) * sizeof(int);
}

extern "C" struct eng_cu_grp eng_cu_grp_at(void *base, int E, int entries)
{
	int *p = (int *)base;
	struct eng_cu_grp g = {p, p + 1, p + 1 + E, p + 1 + 2 * E, p + 1 + 3 * E,
			       (float *)(p + 1 + 3 * E + entries), NULL};
	return g;
}

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
	if (HY) {
		constexpr int BR = WARPS * R;
		__shared__ __align__(16) float ys[NM][BR];
		int wr = (threadIdx.x >> 5) * R;

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
	} else
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

// The warp kernels' launch (eng_cu_gemv's and eng_cu_gemv_norm's).
template <int NORM, bool HY = false>
static int gemv_warps(float *y, int ldy, const float *x, int ldx, const void *w, int bf16, int n,
		      int in, int out, int add, const float *nw, float eps, void *stream,
		      struct eng_cu_host_y hy = {})
{
	/* With the norm, two rows per warp for one input row too: the input's
	 * loads and squares serve both (q/k/v: 9.27 us against 10.03 for one
	 * row per warp with a compile-time length at 40 registers, 14.03 at 44,
	 * whose grid then takes two waves; bench/cuda_kprof, H200). */
	int R = n >= 4 || (NORM == 1 && n == 1) ? 2 : 1, rc = 0;
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

extern "C" int eng_cu_gemv(float *y, int ldy, const float *x, int ldx, const void *w, int bf16,
			   int n, int in, int out, int add, void *stream)
{
	int rc = 0;

	if (!gemv_args_ok(n, in))
		return (int)cudaErrorInvalidValue;
	/* Few rows: too few warps to keep the memory busy one row each. */
	if (out <= ENG_CU_SPLIT_ROWS) {
#define SPLIT(T, N) rc = launch(k_gemv_split<T, N>, out, 32 * WARPS, 0, stream, y, ldy, x, \
				ldx, (const T *)w, n, in, add, eng_cu_host_y{})
		DISPATCH(n, bf16, SPLIT);
#undef SPLIT
		return rc;
	}
	return gemv_warps<0>(y, ldy, x, ldx, w, bf16, n, in, out, add, NULL, 0, stream);
}

extern "C" int eng_cu_gemv_host(float *y, const float *x, const void *w, int bf16, int n, int in,
				int out, struct eng_cu_host_y *host, void *stream)
{
	int rc = 0;

	if (!gemv_args_ok(n, in) || out > ENG_CU_SPLIT_ROWS)
		return (int)cudaErrorInvalidValue;
	host->ok = 1;
#define SPLIT(T, N) rc = launch(k_gemv_split<T, N, true>, out, 32 * WARPS, 0, stream, y, out, x, \
				in, (const T *)w, n, in, 0, *host)
	DISPATCH(n, bf16, SPLIT);
#undef SPLIT
	return rc;
}

// Row t's x * nw into xg and its 1 / rms into inv[t], one warp a row, with
// xin_scaled's operations in its order (lane l: chunks l, l + 32, ...), so
// k_gemv's NORM 2 on them gives NORM 1's bits.
__global__ void k_norm_prep(float *xg, float *inv, const float *x, const float *nw, int in,
			    float eps)
{
	const float *xr = x + (size_t)blockIdx.x * in;
	float *d = xg + (size_t)blockIdx.x * in, ss = 0.0f;

	pdl_wait();
	pdl_launch();
	for (int c = threadIdx.x * 8; c < in; c += 256) {
		float o[8], g[8];

		load_x8(xr + c, o);
		load_x8(nw + c, g);
#pragma unroll
		for (int i = 0; i < 8; i++) {
			ss = fmaf(o[i], o[i], ss);
			d[c + i] = o[i] * g[i];
		}
	}
	ss = norm_inv(ss, in, eps);
	if (!threadIdx.x)
		inv[blockIdx.x] = ss;
}

extern "C" int eng_cu_gemv_norm(float *y, const float *x, const float *nw, float eps,
				const void *w, int bf16, int n, int in, int out, float *scratch,
				struct eng_cu_host_y *host, void *stream)
{
	int R = n >= 4 ? 2 : 1, rc;   /* gemv_warps' rows per warp for NORM 2 */
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

// ---- experts ----

// Two rows of an expert's weights, streamed (raw8's CS).
template <typename WT, int NM>
using expert_stream = warp_stream<WT, NM, 2, true>;

// An expert's weights: w when given (one expert), else the table's entry
// for expert id.
template <typename WT>
__device__ __forceinline__ const WT *expert_w(const void *const *tab, const void *w, int id)
{
	return (const WT *)(w ? w : tab[id]);
}

// Expert j of the groups: g.wp[j] when the router wrote it, else the
// table's (or w's) by its id.
template <typename WT>
__device__ __forceinline__ const WT *expert_j(struct eng_cu_grp g, const void *const *tab,
					      const void *w, int j)
{
	return g.wp ? (const WT *)g.wp[j] : expert_w<WT>(tab, w, g.xid[j]);
}

// Whether an expert of m entries is in the launch's part (ENG_CU_*).
__device__ __forceinline__ bool in_part(int part, int m)
{
	return part == ENG_CU_ALL || (part == ENG_CU_FEW) == (m <= ENG_CU_FEW_ROWS);
}

// Block (b, j) takes expert j's rows i = b * WARPS + warp, then i plus the
// grid's warps, ...; for one row a grid that fits on the GPU at once, so
// each block looks its expert up once and the next rows' loads follow the
// last dot (a second wave of blocks would start from the lookup again).
template <typename WT, int NM>
__global__ void k_moe_gu(float *hb, const float *x, int H, int I, struct eng_cu_grp g,
			 const void *const *tab, const void *w1, int j0, int part)
{
	int j = j0 + blockIdx.y, lane = threadIdx.x & 31;

	pdl_wait();
	pdl_launch();
	/* The expert's weights (g.wp) or id read with the count, not after it
	 * (j < E: in bounds): an L2 round trip less before its weights are
	 * asked for, two with g.wp. */
	int id = g.xid[j], st = g.start[j], m = g.cnt[j];
	const void *pw = g.wp ? g.wp[j] : NULL;
	const WT *w = j < *g.nact && in_part(part, m) ?
			      (pw ? (const WT *)pw : expert_w<WT>(tab, w1, id)) : NULL;
	if (!w)   /* past the last expert, not in the part or not in the table */
		return;
	xin_rows<NM> xs;
#pragma unroll
	for (int t = 0; t < NM; t++)
		xs.p[t] = x + (size_t)g.row[st + (t < m ? t : 0)] * H;
	for (int i = blockIdx.x * WARPS + (threadIdx.x >> 5); i < I; i += gridDim.x * WARPS) {
		const WT *rows[2] = {w + (size_t)i * H, w + ((size_t)I + i) * H};
		float a[2][NM];
		expert_stream<WT, NM> ws;

		warp_start<WT, NM, 2, true>(ws, rows, H);
		chunk_dot<WT, NM>(ws, xs, m, a);
#pragma unroll
		for (int t = 0; t < NM; t++)
			if (t < m && lane == t)
				hb[(size_t)(st + t) * I + i] = silu_mul(a[0][t], a[1][t]);
	}
}

// Starts ws on rows h and h + 1 of the down projection of expert weights w.
template <typename WT, int NM>
__device__ __forceinline__ void down_start(expert_stream<WT, NM> &ws, const WT *w, int h, int H,
					   int I)
{
	const WT *wd = w + (size_t)2 * I * H + (size_t)h * I, *rows[2] = {wd, wd + I};

	warp_start<WT, NM, 2, true>(ws, rows, I);
}

// Those two rows (ws, from down_start) against the hidden vectors of the
// expert's m entries from st; entry st + t's dots go to out[(st + t) *
// stride] and out[(st + t) * stride + step].  The one place both down
// kernels compute them (each row's sum as alone).
template <typename WT, int NM>
__device__ __forceinline__ void down_rows(expert_stream<WT, NM> &ws, int I, const float *hb,
					  int st, int m, float *out, int stride, int step)
{
	int lane = threadIdx.x & 31;
	xin_rows<NM> xs;
	float a[2][NM];

#pragma unroll
	for (int t = 0; t < NM; t++)
		xs.p[t] = hb + (size_t)(st + (t < m ? t : 0)) * I;
	chunk_dot<WT, NM>(ws, xs, m, a);
#pragma unroll
	for (int t = 0; t < NM; t++)
		if (t < m && lane == t) {
			out[(size_t)(st + t) * stride] = a[0][t];
			out[(size_t)(st + t) * stride + step] = a[1][t];
		}
}

// Row t's share of the layer: its entries' values v[e * stride], weighted,
// added in ascending entry (so expert) order; k_moe_combine adds the same
// way from a list of each row's entries.
// row and wt: the grouping's (a block's copy in shared memory).
__device__ __forceinline__ float ordered_sum(const int *row, const float *wt, int entries, int t,
					     const float *v, int stride)
{
	float acc = 0.0f;

	for (int e = 0; e < entries; e++)
		if (row[e] == t)
			acc = fmaf(wt[e], v[(size_t)e * stride], acc);
	return acc;
}

template <typename WT, int NM>
__global__ void k_moe_down(float *eo, const float *hb, int H, int I, struct eng_cu_grp g,
			   const void *const *tab, const void *w1, int j0, int part)
{
	int j = j0 + blockIdx.y, h = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * 2;
	expert_stream<WT, NM> ws;

	pdl_wait();
	pdl_launch();
	const WT *w = j < *g.nact && h < H && in_part(part, g.cnt[j]) ?
			      expert_j<WT>(g, tab, w1, j) : NULL;
	if (!w)   /* as k_moe_gu */
		return;
	down_start<WT, NM>(ws, w, h, H, I);
	down_rows<WT, NM>(ws, I, hb, g.start[j], g.cnt[j], eo + h, H, 1);
}

// Block b takes output dimensions h, h + 1 for h = 2 b, then h plus twice
// the grid's blocks, ... (a grid that fits at once, as k_moe_gu's): its
// warps take the experts in turn (down_rows, as k_moe_down), then threads t
// and 32 + t add row t's entries for h and h + 1 as k_moe_combine does.
// Runs right after k_moe_gu, whose grouping g came from the kernel before
// it: that one has finished by the time this kernel starts
// (cuda_common.cuh), so each warp's first expert's rows can be requested
// before the wait.
template <typename WT, int NM>
__global__ void k_moe_down_add(float *x, const float *hb, int H, int I, struct eng_cu_grp g,
			       const void *const *tab, int n, int entries)
{
	__shared__ float dot[2][ENG_CU_GEMV_MAX * 32], wt[ENG_CU_GEMV_MAX * 32];
	__shared__ int row[ENG_CU_GEMV_MAX * 32];
	int warp = threadIdx.x >> 5, nw = blockDim.x >> 5, nact = *g.nact;
	int lane = threadIdx.x & 31;
	expert_stream<WT, NM> ws;

	if (warp < nact)
		down_start<WT, NM>(ws, expert_j<WT>(g, tab, NULL, warp), blockIdx.x * 2, H, I);
	/* The entries' rows and weights into shared memory while the weights
	 * come: the sums below then wait on no global loads of their own. */
	for (int e = threadIdx.x; e < entries; e += blockDim.x)
		row[e] = g.row[e], wt[e] = g.wt[e];
	pdl_wait();
	pdl_launch();
	for (int h = blockIdx.x * 2; h < H; h += gridDim.x * 2) {
		for (int j = warp; j < nact; j += nw) {
			if (j != warp || h != (int)blockIdx.x * 2)
				down_start<WT, NM>(ws, expert_j<WT>(g, tab, NULL, j), h, H, I);
			down_rows<WT, NM>(ws, I, hb, g.start[j], g.cnt[j], dot[0], 1,
					  ENG_CU_GEMV_MAX * 32);
		}
		__syncthreads();
		if (warp < 2 && lane < n)
			x[(size_t)lane * H + h + warp] +=
				ordered_sum(row, wt, entries, lane, dot[warp], 1);
		__syncthreads();   /* dot is the next pair's */
	}
}

// Block t: row t's sums, ordered_sum over the grouping's entries (row and
// weights copied to shared memory first).
__global__ void k_moe_combine_grp(float *x, const float *eo, int H, struct eng_cu_grp g,
				  int entries)
{
	__shared__ float wt[ENG_CU_GEMV_MAX * 32];
	__shared__ int row[ENG_CU_GEMV_MAX * 32];

	pdl_wait();
	pdl_launch();
	for (int e = threadIdx.x; e < entries; e += blockDim.x)
		row[e] = g.row[e], wt[e] = g.wt[e];
	__syncthreads();
	for (int h = threadIdx.x; h < H; h += blockDim.x)
		x[(size_t)blockIdx.x * H + h] += ordered_sum(row, wt, entries, blockIdx.x, eo + h,
							     H);
}

// ordered_sum's arithmetic over row t's own entries.
__global__ void k_moe_combine(float *x, const float *eo, int H, const float *wt, const int *ent,
			      int K)
{
	const int *e = ent + (size_t)blockIdx.x * K;

	pdl_wait();
	pdl_launch();
	for (int h = threadIdx.x; h < H; h += blockDim.x) {
		float acc = 0.0f;

		for (int k = 0; k < K; k++)
			acc = fmaf(wt[e[k]], eo[(size_t)e[k] * H + h], acc);
		x[(size_t)blockIdx.x * H + h] += acc;
	}
}

// The block's entry e (blockIdx.x) in p's three-part layout (rows of width
// w): its hi row, the mid and lo rows *part further on (expert j's entries
// st .. st + m - 1 take rows 3 st .. 3 (st + m) - 1, hi rows first); NULL
// when e is left out.
template <typename T>
__device__ __forceinline__ T *entry_parts(T *p, size_t w, struct eng_cu_grp g, const int *ej,
					  size_t *part)
{
	int e = blockIdx.x, j = ej[e], st;

	if (j < 0)
		return NULL;
	st = g.start[j];
	*part = (size_t)g.cnt[j] * w;
	return p + ((size_t)3 * st + (e - st)) * w;
}

__global__ void k_split3_entries(__nv_bfloat16 *xb, const float *x, int in, struct eng_cu_grp g,
				 const int *ej)
{
	size_t part;

	pdl_wait();
	pdl_launch();
	__nv_bfloat16 *d = entry_parts(xb, in, g, ej, &part);
	if (!d)
		return;
	const float *s = x + (size_t)g.row[blockIdx.x] * in;
	for (int i = threadIdx.x; i < in; i += blockDim.x)
		split3(s[i], d + i, part);
}

extern "C" int eng_cu_split3_entries(void *xb, const float *x, int in, struct eng_cu_grp g,
				     const int *ej, int entries, void *stream)
{
	return launch(k_split3_entries, entries, 256, 0, stream, (__nv_bfloat16 *)xb, x, in, g,
		      ej);
}

__global__ void k_sum3_entries(float *eo, const float *p, int H, struct eng_cu_grp g,
			       const int *ej)
{
	size_t part;

	pdl_wait();
	pdl_launch();
	const float *q = entry_parts(p, H, g, ej, &part);
	if (!q)
		return;
	for (int h = threadIdx.x; h < H; h += blockDim.x)
		eo[(size_t)blockIdx.x * H + h] = add3(q + h, part);
}

extern "C" int eng_cu_sum3_entries(float *eo, const float *p, int H, struct eng_cu_grp g,
				   const int *ej, int entries, void *stream)
{
	return launch(k_sum3_entries, entries, 256, 0, stream, eo, p, H, g, ej);
}

static bool moe_args_ok(int H, int I, int mmax)
{
	return mmax >= 1 && mmax <= ENG_CU_GEMV_MAX && eng_cu_gemv_ok(H) && eng_cu_gemv_ok(I);
}

/* nj experts from the table, or one expert's weights w. */
static bool experts_ok(int H, int I, int mmax, const void *w, int nj)
{
	return moe_args_ok(H, I, mmax) && nj >= 1 && (!w || nj == 1);
}

// Blocks of kernel K (256 threads) the GPU holds at once; 0 if unknown.
// Asked once per kernel (a static; the engine runs on one device).
template <auto K>
static unsigned resident()
{
	static const unsigned n = [] {
		int per_sm = 0, sms = 0, dev = 0;

		if (cudaGetDevice(&dev) != cudaSuccess ||
		    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, K, 32 * WARPS, 0) !=
			    cudaSuccess ||
		    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
		    per_sm < 1 || sms < 1)
			return 0u;
		return (unsigned)(per_sm * sms);
	}();
	return n;
}

// want blocks, or as many as K fits at once over ny rows of the grid.
template <auto K>
static unsigned fit(unsigned want, unsigned ny)
{
	unsigned cap = resident<K>() / ny;

	return cap && cap < want ? cap : want;
}

// The most rows an expert of the part can have.
static int part_rows(int part, int mmax)
{
	return part == ENG_CU_FEW && mmax > ENG_CU_FEW_ROWS ? ENG_CU_FEW_ROWS : mmax;
}

extern "C" int eng_cu_moe_gu(float *hb, const float *x, int H, int I, struct eng_cu_grp g,
			     const void *const *tab, const void *w, int bf16, int j0, int nj,
			     int mmax, int part, void *stream)
{
	if (!experts_ok(H, I, mmax, w, nj))
		return (int)cudaErrorInvalidValue;
	mmax = part_rows(part, mmax);
	unsigned want = (unsigned)((I + WARPS - 1) / WARPS);
	int rc = 0;
	/* More rows stream one chunk at a time (batch_of): rows in turn would
	 * serialise them (16 rows: 614 us against 117). */
#define GU(T, N) rc = launch(k_moe_gu<T, N>, dim3(N == 1 ? fit<k_moe_gu<T, N>>(want, nj) : want, \
						  nj), 32 * WARPS, 0, stream, hb, x, H, I, g, tab, w, j0, \
		     part)
	DISPATCH(mmax, bf16, GU);
#undef GU
	return rc;
}

extern "C" int eng_cu_moe_down(float *eo, const float *hb, int H, int I, struct eng_cu_grp g,
			       const void *const *tab, const void *w, int bf16, int j0, int nj,
			       int mmax, int part, void *stream)
{
	if (!experts_ok(H, I, mmax, w, nj))
		return (int)cudaErrorInvalidValue;
	mmax = part_rows(part, mmax);
	dim3 grid((unsigned)((H + 2 * WARPS - 1) / (2 * WARPS)), (unsigned)nj);
	int rc = 0;
#define DN(T, N) rc = launch(k_moe_down<T, N>, grid, 32 * WARPS, 0, stream, eo, hb, H, I, g, \
			     tab, w, j0, part)
	DISPATCH(mmax, bf16, DN);
#undef DN
	return rc;
}

extern "C" int eng_cu_moe_experts(float *hb, float *eo, const float *x, int H, int I,
				  struct eng_cu_grp g, const void *const *tab, int bf16, int nj,
				  int mmax, void *stream)
{
	int parts[2] = {ENG_CU_FEW, ENG_CU_MANY}, np = 2, rc = 0;

	if (mmax <= ENG_CU_FEW_ROWS)
		parts[0] = ENG_CU_ALL, np = 1;
	for (int p = 0; p < np && !rc; p++)
		rc = eng_cu_moe_gu(hb, x, H, I, g, tab, NULL, bf16, 0, nj, mmax, parts[p], stream);
	for (int p = 0; p < np && !rc; p++)
		rc = eng_cu_moe_down(eo, hb, H, I, g, tab, NULL, bf16, 0, nj, mmax, parts[p],
				     stream);
	return rc;
}

extern "C" int eng_cu_moe_down_add(float *x, const float *hb, int H, int I, struct eng_cu_grp g,
				   const void *const *tab, int bf16, int n, int K, void *stream)
{
	int rc = 0;

	if (!moe_args_ok(H, I, n) || n * K > ENG_CU_GEMV_MAX * 32)
		return (int)cudaErrorInvalidValue;
#define DA(T, N) rc = launch(k_moe_down_add<T, N>, fit<k_moe_down_add<T, N>>(H / 2, 1), \
			     32 * WARPS, 0, stream, x, hb, H, I, g, tab, n, n * K)
	DISPATCH(n, bf16, DA);
#undef DA
	return rc;
}

extern "C" int eng_cu_moe_combine_grp(float *x, const float *eo, int H, struct eng_cu_grp g,
				      int n, int entries, void *stream)
{
	if (entries > ENG_CU_GEMV_MAX * 32)
		return (int)cudaErrorInvalidValue;
	return launch(k_moe_combine_grp, n, 256, 0, stream, x, eo, H, g, entries);
}

extern "C" int eng_cu_moe_combine(float *x, const float *eo, int H, const float *wt,
				  const int *ent, int K, int n, void *stream)
{
	return launch(k_moe_combine, n, 256, 0, stream, x, eo, H, wt, ent, K);
}
