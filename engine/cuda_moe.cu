// The MoE layer's grouped-expert kernels (engine/cuda_moe.h).  A decode
// step reads every weight once for a handful of rows, so these are bound by
// memory bandwidth: a warp per output row (or two) streams the row in
// 16-byte loads and keeps up to ENG_CU_GEMV_MAX rows' sums in registers.
// The dense GEMVs: engine/cuda_gemv.cu; routing: engine/cuda_route.cu.
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

// ordered_sum's arithmetic over row t's own entries; block (t, y) takes
// the row's elements y * blockDim.x, ... (the row split across blocks: as
// one block per row, a one-row layer's combine walked 2048 elements on one
// SM, on the copy stream's idle path between layers).
__global__ void k_moe_combine(float *x, const float *eo, int H, const float *wt, const int *ent,
			      int K)
{
	const int *e = ent + (size_t)blockIdx.x * K;

	pdl_wait();
	pdl_launch();
	for (int h = blockIdx.y * blockDim.x + threadIdx.x; h < H; h += gridDim.y * blockDim.x) {
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

// Block (b, t) of a wave's launch: its expert b (w) and row t of it; false
// past the expert's entries.
__device__ __forceinline__ bool wave_row(const struct eng_cu_wave *wv, struct eng_cu_wave &w,
					 int &t)
{
	pdl_wait();
	pdl_launch();
	w = wv[blockIdx.x], t = blockIdx.y;
	return t < w.cnt;
}

// The gate/up products of the expert's entry st + t: row yb + t of p
// ([rows][2I]), its mid and lo rows cnt and 2 cnt further on; silu(gate) *
// up split in three as eng_cu_split3_entries writes an entry (rows 3 st +
// t, + cnt, + 2 cnt).
__global__ void k_silu_split3_wave(__nv_bfloat16 *xb, const float *p, int I,
				   const struct eng_cu_wave *wv)
{
	struct eng_cu_wave w;
	int t;

	if (!wave_row(wv, w, t))
		return;
	size_t part = (size_t)w.cnt * 2 * I;
	const float *r = p + (size_t)(w.yb + t) * 2 * I;
	__nv_bfloat16 *d = xb + ((size_t)3 * w.st + t) * I;
	for (int i = threadIdx.x; i < I; i += blockDim.x)
		split3(silu_mul(add3(r + i, part), add3(r + I + i, part)), d + i,
		       (size_t)w.cnt * I);
}

extern "C" int eng_cu_silu_split3_wave(void *xb, const float *p, int I,
				       const struct eng_cu_wave *w, int nj, int mmax, void *stream)
{
	return launch(k_silu_split3_wave, dim3(nj, mmax), 256, 0, stream, (__nv_bfloat16 *)xb, p,
		      I, w);
}

// The expert's entry st + t from its down products (row yb + t of p,
// [rows][H], mid and lo rows cnt apart).
__global__ void k_sum3_wave(float *eo, const float *p, int H, const struct eng_cu_wave *wv)
{
	struct eng_cu_wave w;
	int t;

	if (!wave_row(wv, w, t))
		return;
	const float *q = p + (size_t)(w.yb + t) * H;
	for (int h = threadIdx.x; h < H; h += blockDim.x)
		eo[(size_t)(w.st + t) * H + h] = add3(q + h, (size_t)w.cnt * H);
}

extern "C" int eng_cu_sum3_wave(float *eo, const float *p, int H, const struct eng_cu_wave *w,
				int nj, int mmax, void *stream)
{
	return launch(k_sum3_wave, dim3(nj, mmax), 256, 0, stream, eo, p, H, w);
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
	return launch(k_moe_combine, dim3(n, (H + 127) / 128), 128, 0, stream, x, eo, H, wt, ent,
		      K);
}

// One block an entry: thread 0 watches the host's counter (an acquire at
// system scope, so the host's outputs written before it are seen), then the
// block copies the entry's row.
__global__ void k_host_wait(float *eo, const float *hy, int H, const unsigned *done,
			    unsigned want, struct eng_cu_host_ents he)
{
	__shared__ bool late;

	pdl_wait();
	pdl_launch();
	if (!threadIdx.x) {
		unsigned long long t0, t;
		unsigned v;

		asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
		late = false;
		for (;;) {
			asm volatile("ld.acquire.sys.global.u32 %0, [%1];"
				     : "=r"(v) : "l"(done) : "memory");
			if ((int)(v - want) >= 0)
				break;
			asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
			if (t - t0 > 10000000000ull) {
				late = true;
				break;
			}
			__nanosleep(256);
		}
	}
	__syncthreads();
	if (late)
		__trap();
	size_t r = (size_t)he.e[blockIdx.x] * H;
	for (int i = threadIdx.x; i < H; i += blockDim.x)
		eo[r + i] = __ldcv(hy + r + i);
}

extern "C" int eng_cu_host_wait(float *eo, const float *hy, int H, const unsigned *done,
				unsigned want, struct eng_cu_host_ents he, void *stream)
{
	if (he.n < 1 || he.n > ENG_CU_HOST_ENTS)
		return (int)cudaErrorInvalidValue;
	return launch(k_host_wait, he.n, 256, 0, stream, eo, hy, H, done, want, he);
}
