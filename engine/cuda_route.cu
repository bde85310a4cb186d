// The MoE router on the GPU (engine/cuda_moe.h): softmax, top-k and the
// grouping of a layer's rows per expert, alone or fused with the router's
// GEMV.
#include <cuda_runtime.h>

#include "engine/cuda_gemv.cuh"

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

// A probability as the ranks see it: 0 in a row whose sum is NaN (a NaN or
// infinite logit makes every probability NaN).  NaN compares false both
// ways, so every expert would rank first and a row would take all E, past
// its K slots; ties instead give ids 0 .. K-1, the CPU's route's choice.
__device__ __forceinline__ float rankable(float p, float sum)
{
	return sum == sum ? p : 0.0f;
}

// p[0 .. E) = the softmax of the row pg (written back to pg too); one warp.
__device__ __forceinline__ void softmax_row(float *pg, float *p, int E)
{
	int lane = threadIdx.x & 31;
	float mx = -INFINITY, sum = 0;

	for (int i = lane; i < E; i += 32) {
		p[i] = pg[i];
		mx = fmaxf(mx, p[i]);
	}
	for (int o = 16; o > 0; o >>= 1)
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
	for (int i = lane; i < E; i += 32)
		p[i] = expf(p[i] - mx);
	__syncwarp();
	for (int i = lane; i < E; i += 32)
		sum += p[i];
	for (int o = 16; o > 0; o >>= 1)
		sum += __shfl_xor_sync(0xffffffffu, sum, o);
	for (int i = lane; i < E; i += 32)
		pg[i] = p[i] = rankable(p[i] / sum, sum);
	__syncwarp();
}

// The K largest of p[0 .. E) (ties to the lowest id), one warp: bit q of
// the result marks expert lane + 32 q (E <= 1024); *ksum is their sum,
// added largest first.  E <= 256: by each value's rank (p + E has room for
// K values); else K passes of argmax.  Both pick the same in the same order.
__device__ __forceinline__ unsigned top_k(float *p, int E, int K, float *ksum)
{
	int lane = threadIdx.x & 31;
	unsigned used = 0;
	float s = 0;

	if (E <= 256) {
		float *top = p + E;
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
			s += top[k];
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
			s += bv;
		}
	*ksum = s;
	return used;
}

// One warp per row: the CPU's route() (softmax, top-k with ties to the
// lowest id, ids ascending), lanes sharing the work; p is the warp's
// shared-memory copy of the row, written back as the probabilities.
__device__ void route_row(float *pg, float *p, int *ids, float *w, int E, int K, int norm)
{
	int lane = threadIdx.x & 31;
	float ksum;

	softmax_row(pg, p, E);
	unsigned used = top_k(p, E, K, &ksum);
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
// weights.  The general path: any E and n.
__device__ void route_general(float *pg, int *ids, float *w, int n, int E, int K, int norm,
			      struct eng_cu_grp g, int group, float *sh, const void *const *stab)
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
				if (stab)
					g.wp[j] = stab[x];
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

// The fast path (n <= 32, E <= 32 QM, E % 4 == 0): the same float
// operations in the same order as softmax_row and top_k's rank path, but
// each lane keeps its QM values (experts lane + 32 q) in registers, reads
// the row four values at a time for the ranks, spare warps share the
// ranks, and every output is written once.  A decode step's route is
// latency bound, not work bound: few syncs, no loads of what was just
// stored to global memory, no loops over all entries per expert.

// softmax_row's arithmetic, v[q] = row[lane + 32 q]; pg gets the result.
template <int QM>
__device__ __forceinline__ void softmax_regs(float *pg, float *v, int E)
{
	int lane = threadIdx.x & 31;
	float mx = -INFINITY, sum = 0;

#pragma unroll
	for (int q = 0; q < QM; q++)
		if (lane + 32 * q < E) {
			v[q] = pg[lane + 32 * q];
			mx = fmaxf(mx, v[q]);
		}
	for (int o = 16; o > 0; o >>= 1)
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
#pragma unroll
	for (int q = 0; q < QM; q++)
		if (lane + 32 * q < E)
			v[q] = expf(v[q] - mx);
#pragma unroll
	for (int q = 0; q < QM; q++)
		if (lane + 32 * q < E)
			sum += v[q];
	for (int o = 16; o > 0; o >>= 1)
		sum += __shfl_xor_sync(0xffffffffu, sum, o);
#pragma unroll
	for (int q = 0; q < QM; q++)
		if (lane + 32 * q < E)
			pg[lane + 32 * q] = v[q] = rankable(v[q] / sum, sum);
}

// 1 when expert j (value pj) ranks before expert i (value v): top_k's rule.
__device__ __forceinline__ int ahead(float pj, int j, float v, int i)
{
	return pj > v || (pj == v && j < i);
}

// r[q] += how many of experts [j0, j1) of the row p rank before expert
// lane + 32 q (value v[q]); p shared and 16-byte aligned, j0 and j1
// multiples of 4.  Integer counts: any split of [0, E) sums to top_k's rank.
template <int QM>
__device__ __forceinline__ void rank_part(const float *p, const float *v, int j0, int j1, int *r)
{
	int lane = threadIdx.x & 31;

#pragma unroll 4
	for (int j = j0; j < j1; j += 4) {
		float4 c = *(const float4 *)(p + j);
#pragma unroll
		for (int q = 0; q < QM; q++) {
			int i = lane + 32 * q;
			r[q] += ahead(c.x, j, v[q], i) + ahead(c.y, j + 1, v[q], i) +
				ahead(c.z, j + 2, v[q], i) + ahead(c.w, j + 3, v[q], i);
		}
	}
}

// Row t's outputs from its values v and ranks r, one warp (top: the
// warp's 32 floats after its row): ids and weights to ids/w [t][K] and,
// when mask, to sid/sw [t][K] and bit t of mask[x].  As top_k and route_row.
template <int QM>
__device__ void row_out(float *top, const float *v, const int *r, int t, int E, int K, int norm,
			int *ids, float *w, int *sid, float *sw, unsigned *mask)
{
	int lane = threadIdx.x & 31;
	unsigned used = 0;
	float ksum = 0;

#pragma unroll
	for (int q = 0; q < QM; q++)
		if (lane + 32 * q < E && r[q] < K) {
			used |= 1u << q;
			top[r[q]] = v[q];
		}
	__syncwarp();
	/* top[0] + top[1] + ... from 0, as top_k; reads stay within the 32. */
	for (int k = 0; k < K; k += 4) {
		float4 c = *(const float4 *)(top + k);
		ksum += c.x;
		if (k + 1 < K)
			ksum += c.y;
		if (k + 2 < K)
			ksum += c.z;
		if (k + 3 < K)
			ksum += c.w;
	}
	/* Chosen ids in ascending order: by q, then by lane. */
#pragma unroll
	for (int q = 0, base = t * K; q < QM && 32 * q < E; q++) {
		bool mine = (used >> q) & 1u;
		unsigned b = __ballot_sync(0xffffffffu, mine);
		if (mine) {
			int at = base + __popc(b & ((1u << lane) - 1u)), x = lane + 32 * q;
			float wt = norm ? v[q] / ksum : v[q];
			ids[at] = x, w[at] = wt;
			if (mask)
				sid[at] = x, sw[at] = wt, atomicOr(mask + x, 1u << t);
		}
		base += __popc(b);
	}
}

// Row t of pg routed by one warp alone (p: the warp's E + 32 floats).
template <int QM>
__device__ void row_fast(float *pg, float *p, int t, int E, int K, int norm, int *ids, float *w,
			 int *sid, float *sw, unsigned *mask)
{
	int lane = threadIdx.x & 31, r[QM];
	float v[QM];

#pragma unroll
	for (int q = 0; q < QM; q++)
		v[q] = 0, r[q] = 0;
	softmax_regs<QM>(pg, v, E);
#pragma unroll
	for (int q = 0; q < QM; q++)
		if (lane + 32 * q < E)
			p[lane + 32 * q] = v[q];
	__syncwarp();
	rank_part<QM>(p, v, 0, E, r);
	row_out<QM>(p + E, v, r, t, E, K, norm, ids, w, sid, sw, mask);
}

// n <= nw / 2 rows: warp w works on row w % n, S = nw / n warps a row.
// Warp t (the row's owner) computes the softmax into its shared row; each
// of the S warps counts the ranks against a 1 / S share of the row, the
// others leave theirs in their own rows for the owner to add; the owner
// writes the outputs.  Two __syncthreads, the first also after the
// masks' clearing.
template <int QM>
__device__ void route_split(float *pg, int n, int E, int K, int norm, int *ids, float *w,
			    int *sid, float *sw, unsigned *mask, float *sh)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	int t = warp % n, s = warp / n, S = nw / n, c = E / 4, r[QM];
	float v[QM], *p = sh + (size_t)t * (E + 32);
	int *part = (int *)(sh + (size_t)warp * (E + 32));

#pragma unroll
	for (int q = 0; q < QM; q++)
		v[q] = 0, r[q] = 0;
	if (!s) {
		softmax_regs<QM>(pg + (size_t)t * E, v, E);
#pragma unroll
		for (int q = 0; q < QM; q++)
			if (lane + 32 * q < E)
				p[lane + 32 * q] = v[q];
	}
	__syncthreads();
	if (s && s < S) {
#pragma unroll
		for (int q = 0; q < QM; q++)
			if (lane + 32 * q < E)
				v[q] = p[lane + 32 * q];
		rank_part<QM>(p, v, 4 * (c * s / S), 4 * (c * (s + 1) / S), r);
#pragma unroll
		for (int q = 0; q < QM; q++)
			if (lane + 32 * q < E)
				part[lane + 32 * q] = r[q];
	} else if (!s)
		rank_part<QM>(p, v, 0, 4 * (c / S), r);
	__syncthreads();
	if (s)
		return;
	for (int o = 1; o < S; o++) {
		const int *po = (const int *)(p + (size_t)o * n * (E + 32));
#pragma unroll
		for (int q = 0; q < QM; q++)
			if (lane + 32 * q < E)
				r[q] += po[lane + 32 * q];
	}
	row_out<QM>(p + E, v, r, t, E, K, norm, ids, w, sid, sw, mask);
}

// g from mask (bit t of mask[x]: row t chose x) and the entries sid/sw.
// Every warp with entries to place finds each expert's first entry itself
// (off: the warp's own E ints), so only __syncwarp stands between that and
// its stores; warp 0 writes xid, start, cnt and nact.  Lane l takes
// experts l + 32 q: ballots of the counts' bits give the sums over the
// lanes below and over the 32 without a chain of shuffles.  An entry's
// place: its expert's first, plus the earlier rows that chose the expert.
template <int QM>
__device__ void group_fast(const unsigned *mask, int *off, const int *sid, const float *sw,
			   int n, int E, int K, struct eng_cu_grp g, const void *const *stab)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, total = n * K, at = 0, j = 0;
	unsigned lt = (1u << lane) - 1u;

	if (warp * 32 >= total)
		return;
#pragma unroll
	for (int q = 0; q < QM && 32 * q < E; q++) {
		int x = lane + 32 * q, below = 0, all = 0;
		unsigned m = x < E ? mask[x] : 0u, c = __popc(m);
		unsigned a = __ballot_sync(0xffffffffu, m != 0);
		for (int b = 0; (1 << b) <= n; b++) {
			unsigned bb = __ballot_sync(0xffffffffu, (c >> b) & 1u);
			below += __popc(bb & lt) << b, all += __popc(bb) << b;
		}
		if (x < E)
			off[x] = at + below;
		if (m && !warp) {
			int k = j + __popc(a & lt);
			g.xid[k] = x, g.start[k] = at + below, g.cnt[k] = c;
			if (stab)
				g.wp[k] = stab[x];
		}
		at += all, j += __popc(a);
	}
	if (!warp && !lane)
		*g.nact = j;
	__syncwarp();
	for (int i = threadIdx.x; i < total; i += blockDim.x) {
		int x = sid[i], t = i / K, e = off[x] + __popc(mask[x] & ((1u << t) - 1u));
		g.row[e] = t, g.wt[e] = sw[i];
	}
}

// route_general's results for n <= 32, E <= 32 QM, E % 4 == 0, in the same
// shared memory (its offsets' part unused; mask in its counts' place).
template <int QM>
__device__ void route_fast(float *pg, int *ids, float *w, int n, int E, int K, int norm,
			   struct eng_cu_grp g, int group, float *sh, const void *const *stab)
{
	int warp = threadIdx.x >> 5, nw = blockDim.x >> 5, total = n * K;
	float *p = sh + (size_t)warp * (E + 32);
	unsigned *mask = (unsigned *)(sh + (size_t)nw * (E + 32)), *m = group ? mask : NULL;
	int *sid = (int *)(mask + 2 * E);
	float *sw = (float *)(sid + total);

	if (group)
		for (int x = threadIdx.x; x < E; x += blockDim.x)
			mask[x] = 0;
	if (2 * n <= nw)
		route_split<QM>(pg, n, E, K, norm, ids, w, sid, sw, m, sh);
	else {
		if (group)
			__syncthreads();
		for (int t = warp; t < n; t += nw)
			row_fast<QM>(pg + (size_t)t * E, p, t, E, K, norm, ids, w, sid, sw, m);
	}
	if (!group)
		return;
	__syncthreads();
	group_fast<QM>(mask, (int *)p, sid, sw, n, E, K, g, stab);
}

// Routes n rows with the block's warps (shared memory as route_general's,
// 16-byte aligned): the fast path where it applies, the same results.
// stab (shared, E entries, or NULL): the experts' weights for g.wp.
__device__ void route_block(float *pg, int *ids, float *w, int n, int E, int K, int norm,
			    struct eng_cu_grp g, int group, float *sh, const void *const *stab)
{
	/* !eng_cu_route_fast(n, E), spelled out: called here it changed the
	 * router kernel's code (71 registers to 64; not measured). */
	if (n > 32 || E > 256 || E % 4)
		route_general(pg, ids, w, n, E, K, norm, g, group, sh, stab);
	else if (E <= 64)
		route_fast<2>(pg, ids, w, n, E, K, norm, g, group, sh, stab);
	else if (E <= 128)
		route_fast<4>(pg, ids, w, n, E, K, norm, g, group, sh, stab);
	else
		route_fast<8>(pg, ids, w, n, E, K, norm, g, group, sh, stab);
}

// The table's entries for g.wp, requested before the wait (the table is
// written before the step): thread i < E keeps entry i until table_to()
// puts them in shared memory for route_block.  E <= blockDim.x, as the
// callers check.
struct wp_table {
	const void *mine;
	bool on;
};

__device__ __forceinline__ wp_table table_get(const void *const *tab, struct eng_cu_grp g, int E)
{
	wp_table t = {NULL, tab && g.wp};

	if (t.on && (int)threadIdx.x < E)
		t.mine = tab[threadIdx.x];
	return t;
}

__device__ __forceinline__ const void *const *table_to(const wp_table &t, const void **stab, int E)
{
	if (!t.on)
		return NULL;
	if ((int)threadIdx.x < E)
		stab[threadIdx.x] = t.mine;
	__syncthreads();
	return stab;
}

// Whether the table's entries for g.wp fit: one a thread, in stab.
static bool wp_fits(const void *const *tab, struct eng_cu_grp g, int E, int threads)
{
	return !tab || !g.wp || (E <= ENG_CU_WP_MAX && E <= threads);
}

static size_t route_smem(int warps, int E, int total)
{
	return ((size_t)warps * (E + 32) + 2 * (size_t)E + 2 * (size_t)total) * 4;
}

// Up to 32 warps a block: at most 64 registers a thread (the table's
// pointers took it to 72, too many to launch 1024 threads).
__global__ void __launch_bounds__(1024)
k_route(float *pg, int *ids, float *w, int n, int E, int K, int norm, struct eng_cu_grp g,
	int group, const void *const *tab)
{
	extern __shared__ __align__(16) float smem[];
	__shared__ const void *stab[ENG_CU_WP_MAX];

	/* Without grouping the rows are independent: 32 per block (the fast
	 * way's, the same results as route_general's). */
	int t0 = group ? 0 : blockIdx.x * 32, m = group ? n : min(32, n - t0);
	wp_table tt = table_get(group ? tab : NULL, g, E);

	pdl_wait();
	pdl_launch();
	route_block(pg + (size_t)t0 * E, ids + (size_t)t0 * K, w + (size_t)t0 * K, m, E, K, norm,
		    g, group, smem, table_to(tt, stab, E));
}

extern "C" int eng_cu_route(float *p, int *ids, float *w, int n, int E, int K, int norm,
			    struct eng_cu_grp g, int group, const void *const *tab, void *stream)
{
	/* At least WARPS warps: for few rows, the spare ones share the ranks. */
	int warps = n < WARPS ? WARPS : n < 32 ? n : 32, total = group ? n * K : 0;
	unsigned nb = group ? 1u : (unsigned)(n + 31) / 32;

	while (warps > 1 && (size_t)warps * (E + 32) * 4 > 32768)
		warps--;
	size_t sm = route_smem(warps, E, total);
	if (K > 32 || sm > 48 * 1024 || !wp_fits(tab, g, E, 32 * warps))
		return (int)cudaErrorInvalidValue;
	return launch(k_route, nb, 32 * warps, sm, stream, p, ids, w, n, E, K, norm, g, group, tab);
}

// The router's GEMV (f32 weights, one block per expert, as k_gemv_split)
// and, in the block that finishes last, route_block over all rows.  done: a
// counter at 0, left at 0.  NORM: x is RMSNorm's input (weight nw); each
// block normalises as it reads and writes its share of the normalised rows
// to xn (for the experts), the same bits as eng_cu_rmsnorm's.  XH: and the
// experts' input rows to xh (host memory) before the routes (a template
// flag, so that the kernel without it stays as it was).
template <int NM, bool NORM, bool XH>
__global__ void k_router_route(float *pg, const float *x, const float *wr, int n, int H,
			       int E, int K, int norm, int *ids, float *w,
			       struct eng_cu_grp g, int group, unsigned *done,
			       const float *nw, float eps, float *xn, const void *const *tab,
			       float *pout, float *xh)
{
	extern __shared__ __align__(16) float smem[];
	__shared__ const void *stab[ENG_CU_WP_MAX];
	__shared__ bool last;
	block_stream<float> ws;

	block_start(ws, wr + (size_t)blockIdx.x * H, H);
	wp_table tt = table_get(group ? tab : NULL, g, E);
	pdl_wait();
	pdl_launch();
	float s;
	if (NORM) {
		xin_norm<NM> xs = {rows_at<NM>(x, H, n), nw};
		block_inv_rms<NM>(x, H, n, H, eps, xs.inv);
#pragma unroll
		for (int t = 0; t < NM; t++)
			for (int i = blockIdx.x * blockDim.x + threadIdx.x; t < n && i < H;
			     i += gridDim.x * blockDim.x) {
				float v = rms_scale(nw[i], x[(size_t)t * H + i], xs.inv[t]);

				xn[(size_t)t * H + i] = v;
				if (XH)
					xh[(size_t)t * H + i] = v;
			}
		s = split_row<float, NM>(xs, ws, n);
	} else {
		for (int i = blockIdx.x * blockDim.x + threadIdx.x; XH && i < n * H;
		     i += gridDim.x * blockDim.x)
			xh[i] = x[i];
		s = split_row<float, NM>(rows_at<NM>(x, H, n), ws, n);
	}
	if (XH)   /* the rows before the routes, for the host that reads both */
		__threadfence_system();
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
	if (XH)
		__threadfence_system();
	route_block(pg, ids, w, n, E, K, norm, g, group, smem, table_to(tt, stab, E));
	if (pout) {
		__syncthreads();
		for (int i = threadIdx.x; i < n * E; i += blockDim.x)
			pout[i] = pg[i];
	}
	if (!threadIdx.x)
		*done = 0;
}

extern "C" int eng_cu_router_route(float *p, const float *x, const float *wr, int n, int H,
				   int E, int K, int norm, int *ids, float *w,
				   struct eng_cu_grp g, int group, unsigned *done,
				   const float *nw, float eps, float *xn, const void *const *tab,
				   float *pout, float *xh, void *stream)
{
	size_t sm = route_smem(WARPS, E, group ? n * K : 0);
	int rc = 0;

	if (n < 1 || n > ENG_CU_GEMV_MAX || !eng_cu_gemv_ok(H) || K > 32 || sm > 48 * 1024 ||
	    !wp_fits(tab, g, E, 32 * WARPS))
		return (int)cudaErrorInvalidValue;
#define RRK(N, NORM, XH) launch(k_router_route<N, NORM, XH>, E, 32 * WARPS, sm, stream, p, x, \
				 wr, n, H, E, K, norm, ids, w, g, group, done, nw, eps, xn, tab, \
				 pout, xh)
#define RR(T, N) rc = nw ? (xh ? RRK(N, true, true) : RRK(N, true, false)) : \
			   (xh ? RRK(N, false, true) : RRK(N, false, false))
	DISPATCH(n, 0, RR);
#undef RR
#undef RRK
	return rc;
}
