// Small-batch GEMV and the MoE layer's kernels (engine/cuda_moe.h).  A
// decode step reads every weight once for a handful of rows, so these are
// bound by memory bandwidth: one warp per output row streams the row in
// 16-byte loads and keeps up to ENG_CU_GEMV_MAX rows' sums in registers.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "engine/cuda_common.cuh"
#include "engine/cuda_moe.h"

#define WARPS 8                    // rows per block

extern "C" size_t eng_cu_grp_bytes(int E, int entries)
{
	return (size_t)(1 + 3 * E + 2 * entries) * sizeof(int);
}

extern "C" struct eng_cu_grp eng_cu_grp_at(void *base, int E, int entries)
{
	int *p = (int *)base;
	struct eng_cu_grp g = {p, p + 1, p + 1 + E, p + 1 + 2 * E, p + 1 + 3 * E,
			       (float *)(p + 1 + 3 * E + entries)};
	return g;
}

extern "C" int eng_cu_gemv_ok(int in)
{
	return in > 0 && in % 8 == 0;
}

__device__ __forceinline__ void load8(const float *w, float o[8])
{
	float4 a = __ldg((const float4 *)w), b = __ldg((const float4 *)w + 1);

	o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w;
	o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
}

__device__ __forceinline__ void load8(const __nv_bfloat16 *w, float o[8])
{
	uint4 v = __ldg((const uint4 *)w);

	o[0] = __uint_as_float(v.x << 16), o[1] = __uint_as_float(v.x & 0xffff0000u);
	o[2] = __uint_as_float(v.y << 16), o[3] = __uint_as_float(v.y & 0xffff0000u);
	o[4] = __uint_as_float(v.z << 16), o[5] = __uint_as_float(v.z & 0xffff0000u);
	o[6] = __uint_as_float(v.w << 16), o[7] = __uint_as_float(v.w & 0xffff0000u);
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

// acc[t] = w . xp[t] over in (a multiple of 8) for t < m <= NM; every lane
// gets the totals.  The order of operations depends only on in.
template <typename WT, int NM>
__device__ __forceinline__ void warp_dot(const WT *w, int in, const float *const *xp, int m,
					 float *acc)
{
	int lane = threadIdx.x & 31;

#pragma unroll
	for (int t = 0; t < NM; t++)
		acc[t] = 0.0f;
#pragma unroll 4
	for (int c = lane * 8; c < in; c += 256) {
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

// R (1 or 2) output rows per warp: r, and r + 1 through warp_dot2 (more
// loads in flight, each row's sum as warp_dot's, so R does not change the
// bits).  Two pay off from a few activation rows on, where each weight load
// serves several rows; for one row, twice the warps keep more rows going.
template <typename WT, int NM, int R>
__global__ void k_gemv(float *y, int ldy, const float *x, int ldx, const WT *w, int n, int in,
		       int out, int add)
{
	int r = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * R, lane = threadIdx.x & 31;
	int r1 = R == 2 && r + 1 < out ? r + 1 : r;
	const float *xp[NM];
	float a0[NM], a1[NM];

	if (r < out) {
		prefetch_span(w + (size_t)r * in, (size_t)in * sizeof(WT), lane, 32);
		if (r1 != r)
			prefetch_span(w + (size_t)r1 * in, (size_t)in * sizeof(WT), lane, 32);
	}
	pdl_wait();
	pdl_launch();
#pragma unroll
	for (int t = 0; t < NM; t++)
		xp[t] = x + (size_t)(t < n ? t : 0) * ldx;
	if (r >= out)
		return;
	if (R == 2)
		warp_dot2<WT, NM>(w + (size_t)r * in, w + (size_t)r1 * in, in, xp, n, a0, a1);
	else
		warp_dot<WT, NM>(w + (size_t)r * in, in, xp, n, a0);
#pragma unroll
	for (int t = 0; t < NM; t++)
		if (t < n && lane == t) {
			float *d = y + (size_t)t * ldy + r;
			d[0] = add ? d[0] + a0[t] : a0[t];
			if (r1 != r)
				d[1] = add ? d[1] + a1[t] : a1[t];
		}
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
	for (int t = 0; t < NM; t++) {
		acc[t] = 0.0f;
		xp[t] = x + (size_t)(t < n ? t : 0) * ldx;
	}
	for (int c = threadIdx.x * 8; c < in; c += 32 * WARPS * 8) {
		float wv[8], xv[8];

		load8(wr + c, wv);
#pragma unroll
		for (int t = 0; t < NM; t++) {
			if (t >= n)
				break;
			load_x8(xp[t] + c, xv);
			acc[t] = dot8(wv, xv, acc[t]);
		}
	}
#pragma unroll
	for (int t = 0; t < NM; t++) {
		for (int o = 16; o > 0; o >>= 1)
			acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
		if (!lane)
			part[warp][t] = acc[t];
	}
	__syncthreads();
	if (threadIdx.x < n)
		for (int k = 0; k < WARPS; k++)
			s += part[k][threadIdx.x];
	return s;
}

template <typename WT, int NM>
__global__ void k_gemv_split(float *y, int ldy, const float *x, int ldx, const WT *w, int n,
			     int in, int add)
{
	const WT *wr = w + (size_t)blockIdx.x * in;

	prefetch_span(wr, (size_t)in * sizeof(WT), threadIdx.x, blockDim.x);
	pdl_wait();
	pdl_launch();
	float s = split_row<WT, NM>(x, ldx, wr, n, in);
	if (threadIdx.x < n) {
		float *d = y + (size_t)threadIdx.x * ldy + blockIdx.x;
		*d = add ? *d + s : s;
	}
}

// Power of two >= m (1..16), for the template's row count.
static int rows_of(int m)
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

extern "C" int eng_cu_gemv(float *y, int ldy, const float *x, int ldx, const void *w, int bf16,
			   int n, int in, int out, int add, void *stream)
{
	int R = n >= 4 ? 2 : 1, rc = 0;
	unsigned nb = (unsigned)((out + R * WARPS - 1) / (R * WARPS));

	if (n < 1 || n > ENG_CU_GEMV_MAX || !eng_cu_gemv_ok(in))
		return (int)cudaErrorInvalidValue;
	/* Few rows: too few warps to keep the memory busy one row each. */
	if (out <= ENG_CU_SPLIT_ROWS) {
#define SPLIT(T, N) rc = launch(k_gemv_split<T, N>, out, 32 * WARPS, 0, stream, y, ldy, x, \
				ldx, (const T *)w, n, in, add)
		DISPATCH(n, bf16, SPLIT);
#undef SPLIT
		return rc;
	}
#define GEMV(T, N) rc = R == 2 ? \
	launch(k_gemv<T, N, 2>, nb, 32 * WARPS, 0, stream, y, ldy, x, ldx, (const T *)w, n, in, \
	       out, add) : \
	launch(k_gemv<T, N, 1>, nb, 32 * WARPS, 0, stream, y, ldy, x, ldx, (const T *)w, n, in, \
	       out, add)
	DISPATCH(n, bf16, GEMV);
#undef GEMV
	return rc;
}

// ---- routing ----

// Largest (v, i), ties to the lowest i; i < 0: no candidate.
__device__ __forceinline__ void warp_argmax(float &v, int &i)
{
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, v, o);
		int oi = __shfl_xor_sync(0xffffffffu, i, o);
		if (oi >= 0 && (i < 0 || ov > v || (ov == v && oi < i)))
			v = ov, i = oi;
	}
}

// One warp per row: the CPU's route() (softmax, k passes of argmax with
// ties to the lowest id, ids ascending), lanes sharing the work; p is the
// warp's shared-memory copy of the row, written back as the probabilities.
__device__ void route_row(float *pg, float *p, int *ids, float *w, int E, int K, int norm)
{
	int lane = threadIdx.x & 31;
	unsigned used = 0;          // bit q: expert lane + 32 q is chosen (E <= 1024)
	float mx = -INFINITY, ksum = 0;

	for (int i = lane; i < E; i += 32) {
		p[i] = pg[i];
		mx = fmaxf(mx, p[i]);
	}
	for (int o = 16; o > 0; o >>= 1)
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
	for (int i = lane; i < E; i += 32)
		p[i] = expf(p[i] - mx);
	__syncwarp();
	float sum = 0;
	for (int i = lane; i < E; i += 32)
		sum += p[i];
	for (int o = 16; o > 0; o >>= 1)
		sum += __shfl_xor_sync(0xffffffffu, sum, o);
	for (int i = lane; i < E; i += 32)
		pg[i] = p[i] = p[i] / sum;
	__syncwarp();
	if (E <= 256) {
		/* Rank of each probability (ties to the lowest id): the k-th
		 * pick of the argmax passes below, without K passes. */
		float *top = p + E;   /* K slots after the row (route_smem) */
		for (int i = lane, q = 0; i < E; i += 32, q++) {
			int rank = 0;
			float v = p[i];
			for (int j = 0; j < E; j++)
				rank += p[j] > v || (p[j] == v && j < i);
			if (rank < K) {
				used |= 1u << q;
				top[rank] = v;
			}
		}
		__syncwarp();
		for (int k = 0; k < K; k++)
			ksum += top[k];
		__syncwarp();
	} else
		for (int k = 0; k < K; k++) {
			float bv = -1.0f;
			int bi = -1;

			for (int i = lane, q = 0; i < E; i += 32, q++)
				if (!((used >> q) & 1u) && (bi < 0 || p[i] > bv))
					bv = p[i], bi = i;
			warp_argmax(bv, bi);
			if ((bi & 31) == lane)
				used |= 1u << (bi >> 5);
			ksum += bv;
		}
	/* Chosen ids in ascending order: by q, then by lane. */
	for (int q = 0, base = 0; q * 32 < E; q++) {
		bool mine = (used >> q) & 1u;
		unsigned b = __ballot_sync(0xffffffffu, mine);
		if (mine) {
			int at = base + __popc(b & ((1u << lane) - 1u)), x = lane + 32 * q;
			ids[at] = x;
			w[at] = norm ? p[x] / ksum : p[x];
		}
		base += __popc(b);
	}
}

// Routes n rows with the block's warps; shared memory sh: [warps][E + 32]
// rows, then (group) [E] counts, [E] offsets and the entries' ids and
// weights.
__device__ void route_block(float *pg, int *ids, float *w, int n, int E, int K, int norm,
			    struct eng_cu_grp g, int group, float *sh)
{
	int warp = threadIdx.x >> 5, nw = blockDim.x >> 5, total = n * K, lane = threadIdx.x & 31;
	float *p = sh + (size_t)warp * (E + 32);
	int *cnt = (int *)(sh + (size_t)nw * (E + 32)), *off = cnt + E, *sid = off + E;
	float *sw = (float *)(sid + (group ? total : 0));

	for (int t = warp; t < n; t += nw)
		route_row(pg + (size_t)t * E, p, ids + (size_t)t * K, w + (size_t)t * K, E, K, norm);
	if (!group)
		return;
	__syncthreads();
	for (int i = threadIdx.x; i < total; i += blockDim.x)
		sid[i] = ids[i], sw[i] = w[i];
	__syncthreads();
	for (int x = threadIdx.x; x < E; x += blockDim.x) {
		int c = 0;
		for (int i = 0; i < total; i++)
			c += sid[i] == x;
		cnt[x] = c;
	}
	__syncthreads();
	if (warp == 0) {
		/* Lane l takes experts [x0, x1): scans of their entries and of
		 * the experts in use give each one's first entry and index. */
		int per = (E + 31) / 32, x0 = lane * per, x1 = x0 + per < E ? x0 + per : E;
		int c = 0, a = 0, ci, ai;
		for (int x = x0; x < x1; x++)
			c += cnt[x], a += cnt[x] > 0;
		ci = c, ai = a;
		for (int o = 1; o < 32; o <<= 1) {
			int u = __shfl_up_sync(0xffffffffu, ci, o), v = __shfl_up_sync(0xffffffffu, ai, o);
			if (lane >= o)
				ci += u, ai += v;
		}
		int at = ci - c, j = ai - a;
		for (int x = x0; x < x1; x++) {
			off[x] = at;
			if (cnt[x]) {
				g.xid[j] = x, g.start[j] = at, g.cnt[j] = cnt[x];
				j++;
			}
			at += cnt[x];
		}
		if (lane == 31)
			*g.nact = ai;
	}
	__syncthreads();
	for (int x = threadIdx.x; x < E; x += blockDim.x) {
		int at = off[x];
		for (int i = 0; i < total && cnt[x]; i++)
			if (sid[i] == x) {
				g.row[at] = i / K;
				g.wt[at++] = sw[i];
			}
	}
}

static size_t route_smem(int warps, int E, int total)
{
	return ((size_t)warps * (E + 32) + 2 * (size_t)E + 2 * (size_t)total) * 4;
}

__global__ void k_route(float *pg, int *ids, float *w, int n, int E, int K, int norm,
			struct eng_cu_grp g, int group)
{
	extern __shared__ float smem[];

	pdl_wait();
	pdl_launch();
	route_block(pg, ids, w, n, E, K, norm, g, group, smem);
}

extern "C" int eng_cu_route(float *p, int *ids, float *w, int n, int E, int K, int norm,
			    struct eng_cu_grp g, int group, void *stream)
{
	int warps = n < 32 ? n : 32, total = group ? n * K : 0;

	while (warps > 1 && (size_t)warps * (E + 32) * 4 > 32768)
		warps--;
	size_t sm = route_smem(warps, E, total);
	if (K > 32 || sm > 48 * 1024)
		return (int)cudaErrorInvalidValue;
	return launch(k_route, 1, 32 * warps, sm, stream, p, ids, w, n, E, K, norm, g, group);
}

// The router's GEMV (f32 weights, one block per expert, as k_gemv_split)
// and, in the block that finishes last, route_block over all rows.  done: a
// counter at 0, left at 0.
template <int NM>
__global__ void k_router_route(float *pg, const float *x, const float *wr, int n, int H,
			       int E, int K, int norm, int *ids, float *w,
			       struct eng_cu_grp g, int group, unsigned *done)
{
	extern __shared__ float smem[];
	__shared__ bool last;
	const float *row = wr + (size_t)blockIdx.x * H;

	prefetch_span(row, (size_t)H * sizeof(float), threadIdx.x, blockDim.x);
	pdl_wait();
	pdl_launch();
	float s = split_row<float, NM>(x, H, row, n, H);
	if (threadIdx.x < n)
		pg[(size_t)threadIdx.x * E + blockIdx.x] = s;
	__threadfence();
	__syncthreads();
	if (!threadIdx.x)
		last = atomicAdd(done, 1u) == gridDim.x - 1;
	__syncthreads();
	if (!last)
		return;
	__threadfence();
	route_block(pg, ids, w, n, E, K, norm, g, group, smem);
	if (!threadIdx.x)
		*done = 0;
}

extern "C" int eng_cu_router_route(float *p, const float *x, const float *wr, int n, int H,
				   int E, int K, int norm, int *ids, float *w,
				   struct eng_cu_grp g, int group, unsigned *done, void *stream)
{
	size_t sm = route_smem(WARPS, E, group ? n * K : 0);
	int rc = 0;

	if (n < 1 || n > ENG_CU_GEMV_MAX || !eng_cu_gemv_ok(H) || K > 32 || sm > 48 * 1024)
		return (int)cudaErrorInvalidValue;
#define RR(T, N) rc = launch(k_router_route<N>, E, 32 * WARPS, sm, stream, p, x, wr, n, H, E, \
			     K, norm, ids, w, g, group, done)
	DISPATCH(n, 0, RR);
#undef RR
	return rc;
}

// ---- experts ----

template <typename WT>
__device__ __forceinline__ const WT *expert_w(struct eng_cu_grp g, const void *const *tab,
					      const void *w, int j)
{
	return (const WT *)(w ? w : tab[g.xid[j]]);
}

template <typename WT, int NM>
__global__ void k_moe_gu(float *hb, const float *x, int H, int I, struct eng_cu_grp g,
			 const void *const *tab, const void *w1, int j0)
{
	int j = j0 + blockIdx.y, i = blockIdx.x * WARPS + (threadIdx.x >> 5);
	int lane = threadIdx.x & 31;

	pdl_wait();
	pdl_launch();
	if (j >= *g.nact)
		return;
	const WT *w = expert_w<WT>(g, tab, w1, j);
	int st = g.start[j], m = g.cnt[j];
	const float *xp[NM];
	float ga[NM], ua[NM];
#pragma unroll
	for (int t = 0; t < NM; t++)
		xp[t] = x + (size_t)g.row[st + (t < m ? t : 0)] * H;
	if (i >= I)
		return;
	warp_dot2<WT, NM>(w + (size_t)i * H, w + ((size_t)I + i) * H, H, xp, m, ga, ua);
#pragma unroll
	for (int t = 0; t < NM; t++)
		if (t < m && lane == t)
			hb[(size_t)(st + t) * I + i] = ga[t] / (1.0f + expf(-ga[t])) * ua[t];
}

// Rows h and h + 1 of expert j's down projection (weights w) against the
// hidden vectors of j's m entries from st; entry st + t's dots go to
// out[(st + t) * stride] and out[(st + t) * stride + step].  The one place
// both down kernels compute them (warp_dot2: each row as warp_dot).
template <typename WT, int NM>
__device__ __forceinline__ void down_rows(const WT *w, int h, int H, int I, const float *hb,
					  int st, int m, float *out, int stride, int step)
{
	int lane = threadIdx.x & 31;
	const float *xp[NM];
	float a0[NM], a1[NM];
	const WT *wd = w + (size_t)2 * I * H + (size_t)h * I;

#pragma unroll
	for (int t = 0; t < NM; t++)
		xp[t] = hb + (size_t)(st + (t < m ? t : 0)) * I;
	warp_dot2<WT, NM>(wd, wd + I, I, xp, m, a0, a1);
#pragma unroll
	for (int t = 0; t < NM; t++)
		if (t < m && lane == t) {
			out[(size_t)(st + t) * stride] = a0[t];
			out[(size_t)(st + t) * stride + step] = a1[t];
		}
}

// Row t's share of the layer: its entries' values v[e * stride], weighted,
// added in ascending entry (so expert) order.  The one place both paths sum.
__device__ __forceinline__ float ordered_sum(struct eng_cu_grp g, int entries, int t,
					     const float *v, int stride)
{
	float acc = 0.0f;

	for (int e = 0; e < entries; e++)
		if (g.row[e] == t)
			acc = fmaf(g.wt[e], v[(size_t)e * stride], acc);
	return acc;
}

template <typename WT, int NM>
__global__ void k_moe_down(float *eo, const float *hb, int H, int I, struct eng_cu_grp g,
			   const void *const *tab, const void *w1, int j0)
{
	int j = j0 + blockIdx.y, h = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * 2;

	pdl_wait();
	pdl_launch();
	if (j >= *g.nact || h >= H)
		return;
	down_rows<WT, NM>(expert_w<WT>(g, tab, w1, j), h, H, I, hb, g.start[j], g.cnt[j], eo + h,
			  H, 1);
}

// One block per two output dimensions h, h + 1: its warps take the experts
// in turn (down_rows, as k_moe_down), then threads t and 32 + t add row t's
// entries for h and h + 1 as k_moe_combine does.  Runs right after k_moe_gu,
// whose grouping g came from the kernel before it: that one has finished by
// the time this kernel starts (cuda_common.cuh), so the experts' rows can be
// prefetched before the wait.
template <typename WT, int NM>
__global__ void k_moe_down_add(float *x, const float *hb, int H, int I, struct eng_cu_grp g,
			       const void *const *tab, int n, int entries)
{
	__shared__ float dot[2][ENG_CU_GEMV_MAX * 32];
	int warp = threadIdx.x >> 5, nw = blockDim.x >> 5, h = blockIdx.x * 2, nact = *g.nact;
	int lane = threadIdx.x & 31;

	for (int j = warp; j < nact; j += nw)
		prefetch_span((const WT *)tab[g.xid[j]] + (size_t)2 * I * H + (size_t)h * I,
			      2 * (size_t)I * sizeof(WT), lane, 32);
	pdl_wait();
	pdl_launch();
	for (int j = warp; j < nact; j += nw)
		down_rows<WT, NM>(expert_w<WT>(g, tab, NULL, j), h, H, I, hb, g.start[j], g.cnt[j],
				  dot[0], 1, ENG_CU_GEMV_MAX * 32);
	__syncthreads();
	if (warp < 2 && lane < n)
		x[(size_t)lane * H + h + warp] += ordered_sum(g, entries, lane, dot[warp], 1);
}

__global__ void k_moe_combine(float *x, const float *eo, int H, struct eng_cu_grp g,
			      int entries)
{
	int t = blockIdx.x;

	pdl_wait();
	pdl_launch();
	for (int h = threadIdx.x; h < H; h += blockDim.x)
		x[(size_t)t * H + h] += ordered_sum(g, entries, t, eo + h, H);
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

extern "C" int eng_cu_moe_gu(float *hb, const float *x, int H, int I, struct eng_cu_grp g,
			     const void *const *tab, const void *w, int bf16, int j0, int nj,
			     int mmax, void *stream)
{
	if (!experts_ok(H, I, mmax, w, nj))
		return (int)cudaErrorInvalidValue;
	dim3 grid((unsigned)((I + WARPS - 1) / WARPS), (unsigned)nj);
	int rc = 0;
#define GU(T, N) rc = launch(k_moe_gu<T, N>, grid, 32 * WARPS, 0, stream, hb, x, H, I, g, tab, \
			     w, j0)
	DISPATCH(mmax, bf16, GU);
#undef GU
	return rc;
}

extern "C" int eng_cu_moe_down(float *eo, const float *hb, int H, int I, struct eng_cu_grp g,
			       const void *const *tab, const void *w, int bf16, int j0, int nj,
			       int mmax, void *stream)
{
	if (!experts_ok(H, I, mmax, w, nj))
		return (int)cudaErrorInvalidValue;
	dim3 grid((unsigned)((H + 2 * WARPS - 1) / (2 * WARPS)), (unsigned)nj);
	int rc = 0;
#define DN(T, N) rc = launch(k_moe_down<T, N>, grid, 32 * WARPS, 0, stream, eo, hb, H, I, g, \
			     tab, w, j0)
	DISPATCH(mmax, bf16, DN);
#undef DN
	return rc;
}

extern "C" int eng_cu_moe_down_add(float *x, const float *hb, int H, int I, struct eng_cu_grp g,
				   const void *const *tab, int bf16, int n, int K, void *stream)
{
	int rc = 0;

	if (!moe_args_ok(H, I, n) || n * K > ENG_CU_GEMV_MAX * 32)
		return (int)cudaErrorInvalidValue;
#define DA(T, N) rc = launch(k_moe_down_add<T, N>, H / 2, 32 * WARPS, 0, stream, x, hb, H, I, g, \
			     tab, n, n * K)
	DISPATCH(n, bf16, DA);
#undef DA
	return rc;
}

extern "C" int eng_cu_moe_combine(float *x, const float *eo, int H, struct eng_cu_grp g,
				  int entries, int n, void *stream)
{
	return launch(k_moe_combine, n, 256, 0, stream, x, eo, H, g, entries);
}
