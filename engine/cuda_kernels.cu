// The CUDA engine's elementwise, normalisation and attention kernels (the
// tiled prefill attention: engine/cuda_att_tiles.cu).  GEMMs and the MoE
// kernels: engine/cuda_moe.cu and cuBLAS.  The arithmetic
// follows engine/engine.c's CPU code step for step (same f32 operations,
// same order where a row is processed by one thread), so the two paths differ
// only by reduction order and the GEMMs.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/cuda_common.cuh"
#include "engine/cuda_kernels.h"

int eng_cu_pdl = 1;

extern "C" void eng_cu_set_pdl(int on)
{
	eng_cu_pdl = on;
}

static unsigned blocks(size_t n, unsigned threads)
{
	size_t b = (n + threads - 1) / threads;
	return (unsigned)(b < 65535u * 16u ? (b ? b : 1) : 65535u * 16u);
}

__global__ void k_embed(float *x, const void *table, int bf16, const int *tok, int H)
{
	pdl_wait();
	pdl_launch();
	size_t row = (size_t)tok[blockIdx.x] * H;
	float *o = x + (size_t)blockIdx.x * H;

	for (int i = threadIdx.x; i < H; i += blockDim.x)
		o[i] = bf16 ? __bfloat162float(((const __nv_bfloat16 *)table)[row + i]) :
			((const float *)table)[row + i];
}

int eng_cu_embed(float *x, const void *table, int bf16, const int *tok, int n, int H,
		 void *stream)
{
	return launch(k_embed, n, 256, 0, stream, x, table, bf16, tok, H);
}

__global__ void k_advance(int *tok, int *pos, const int *best, int n)
{
	pdl_wait();
	pdl_launch();
	for (int t = threadIdx.x; t < n; t += blockDim.x) {
		tok[t] = best[t];
		pos[t]++;
	}
}

int eng_cu_advance(int *tok, int *pos, const int *best, int n, void *stream)
{
	return launch(k_advance, 1, 32, 0, stream, tok, pos, best, n);
}

__global__ void k_rmsnorm(float *y, const float *x, const float *w, int dim, float eps)
{
	const float *xr = x + (size_t)blockIdx.x * dim;
	float *yr = y + (size_t)blockIdx.x * dim, inv;

	pdl_wait();
	pdl_launch();
	block_inv_rms<1>(xr, dim, 1, dim, eps, &inv);
	for (int i = threadIdx.x; i < dim; i += blockDim.x)
		yr[i] = rms_scale(w[i], xr[i], inv);
}

int eng_cu_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps,
		   void *stream)
{
	return launch(k_rmsnorm, n, 256, 0, stream, y, x, w, dim, eps);
}

__global__ void k_to_bf16(__nv_bfloat16 *y, const float *x, size_t n)
{
	pdl_wait();
	pdl_launch();
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] = __float2bfloat16_rn(x[i]);
}

int eng_cu_to_bf16(void *y, const float *x, size_t n, void *stream)
{
	return launch(k_to_bf16, blocks(n, 256), 256, 0, stream, (__nv_bfloat16 *)y, x, n);
}

__global__ void k_split3(__nv_bfloat16 *xb, const float *x, const int *rows, int n, int in)
{
	const float *s;
	size_t t = blockIdx.x;

	pdl_wait();
	pdl_launch();
	s = x + (size_t)(rows ? rows[t] : (int)t) * in;
	for (int i = threadIdx.x; i < in; i += blockDim.x)
		split3(s[i], xb + t * in + i, (size_t)n * in);
}

int eng_cu_split3(void *xb, const float *x, const int *rows, int n, int in, void *stream)
{
	return launch(k_split3, n, 256, 0, stream, (__nv_bfloat16 *)xb, x, rows, n, in);
}

__global__ void k_sum3(float *y, const float *p, size_t total, int add)
{
	pdl_wait();
	pdl_launch();
	for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
	     j += (size_t)gridDim.x * blockDim.x) {
		float v = add3(p + j, total);

		y[j] = add ? y[j] + v : v;
	}
}

int eng_cu_sum3(float *y, const float *p, size_t total, int add, void *stream)
{
	return launch(k_sum3, blocks(total, 256), 256, 0, stream, y, p, total, add);
}

// ---- attention ----
// A row's new position: the family's q/k norms (norm 1: over all of q and
// all of k, as OLMoE; 2: per head, as Qwen3-MoE), clipping and RoPE
// (rotate_half) at the row's position.  k_qk_prep does it for every row
// and stores q, k and v; k_attend does it itself for its row when every row
// of the chunk is a sequence of its own (one new position each), which saves
// a launch per layer.  Both run these helpers with ATT_THREADS threads, so
// the two ways give the same bits.
#define ATT_HD 512
// Heads a k_qk_prep block takes when their norm spans the whole q or k (8
// took as long, bench/results/cuda_bench_s24.md).
#define QK_HPB 4

__device__ __forceinline__ float clip_to(float x, float clip)
{
	return clip > 0 ? (x < -clip ? -clip : x > clip ? clip : x) : x;
}

// This thread's share of the squares the norm of head hh adds (src: the
// row's q or k, dim long): elements i, i + ATT_THREADS, ...
__device__ __forceinline__ float norm_part(const struct eng_cu_prep &p, const float *src, int dim,
					   int hh, int hd)
{
	float ss = 0;

	if (p.norm == 2)
		src += (size_t)hh * hd, dim = hd;
	for (int i = threadIdx.x; p.norm && i < dim; i += ATT_THREADS)
		ss += src[i] * src[i];
	return ss;
}

// The scale from the block's sum ss (1 without a norm).
__device__ __forceinline__ float norm_scale(const struct eng_cu_prep &p, float ss, int dim, int hd)
{
	return p.norm ? 1.0f / sqrtf(ss / (float)(p.norm == 2 ? hd : dim) + p.eps) : 1.0f;
}

// One head to prepare: hh of src (the row's q or k; norm weights nw, scale
// inv) into out; raw: hd floats of scratch.
struct head_job {
	float *out, *raw;
	const float *src, *nw;
	int hh;
	float inv;
};

// NH heads (a q head, or a q head and its k head) normalised, clipped and
// rotated for position pos, side by side (one pair of barriers for both).
// Every thread calls it; the outputs are ready for all when it returns.
template <int NH>
__device__ void head_prep(const head_job *j, const struct eng_cu_prep &p, int hd, int pos)
{
	int half = hd / 2;

	for (int i = threadIdx.x; i < hd; i += ATT_THREADS)
#pragma unroll
		for (int h = 0; h < NH; h++) {
			float x = j[h].src[(size_t)j[h].hh * hd + i];
			if (p.norm)
				x = rms_scale(j[h].nw[p.norm == 1 ? j[h].hh * hd + i : i], x, j[h].inv);
			j[h].raw[i] = clip_to(x, p.clip);
		}
	__syncthreads();
	for (int i = threadIdx.x; i < half; i += ATT_THREADS) {
		float a = p.inv_freq[i] * (float)pos, c = cosf(a), s = sinf(a);

#pragma unroll
		for (int h = 0; h < NH; h++) {
			const float *raw = j[h].raw;

			j[h].out[i] = raw[i] * c - raw[i + half] * s;
			j[h].out[i + half] = raw[i + half] * c + raw[i] * s;
		}
	}
	__syncthreads();
}

// Row t's cache (kc or vc) at (layer, its position), kv head hh.
__device__ __forceinline__ float *cache_at(float *const *c, const struct eng_cu_rows &r, int t,
					   int layer, int kvd, int hh, int hd)
{
	return c[t] + ((size_t)layer * r.cap[t] + (size_t)r.pos[t]) * kvd + (size_t)hh * hd;
}

// One block per (row, hpb q heads or hpb k heads): q heads into q, k heads
// with their v heads into the row's sequence cache.  A norm over the whole
// q or k (p.norm == 1) is summed once for the block's heads: a block a head
// read the row's whole q or k for each (512 rows of OLMoE: 76 -> 51 us a
// layer, bench/results/cuda_bench_s24.md).  The same sum, the same bits.
__global__ void __launch_bounds__(ATT_THREADS)
k_qk_prep(float *q, struct eng_cu_prep p, struct eng_cu_rows r, int layer, int heads,
	  int kv_heads, int hd, int hpb)
{
	__shared__ float sh[32], raw[ATT_HD], out[ATT_HD];
	int t = blockIdx.x, qb = (heads + hpb - 1) / hpb, qd = heads * hd, kvd = kv_heads * hd;
	bool isq = (int)blockIdx.y < qb;
	int h0 = (isq ? blockIdx.y : blockIdx.y - qb) * hpb, dim = isq ? qd : kvd;
	int he = min(h0 + hpb, isq ? heads : kv_heads);
	const float *row = p.qkv + (size_t)t * p.D, *src = isq ? row : row + qd;
	float ss = 0;

	pdl_wait();
	pdl_launch();
	if (p.norm == 1)
		ss = block_reduce<false>(norm_part(p, src, dim, h0, hd), sh);
	/* Two heads at a time where they fit, as k_attend takes its q and k
	 * heads: one pair of barriers for both. */
	for (int hh = h0, nh; hh < he; hh += nh) {
		nh = hh + 1 < he && 2 * hd <= ATT_HD ? 2 : 1;
		if (p.norm == 2)   /* hpb 1 */
			ss = block_reduce<false>(norm_part(p, src, dim, hh, hd), sh);
		float inv = norm_scale(p, ss, dim, hd);
		const float *nw = isq ? p.qw : p.kw;
		head_job j[2] = {{out, raw, src, nw, hh, inv}, {out + hd, raw + hd, src, nw, hh + 1, inv}};
		if (nh == 2)
			head_prep<2>(j, p, hd, r.pos[t]);
		else
			head_prep<1>(j, p, hd, r.pos[t]);
		for (int i = threadIdx.x; i < nh * hd; i += ATT_THREADS) {
			int k = i >= hd, d = i - k * hd;

			if (isq) {
				q[(size_t)t * qd + (size_t)(hh + k) * hd + d] = out[i];
				continue;
			}
			cache_at(r.kc, r, t, layer, kvd, hh + k, hd)[d] = out[i];
			cache_at(r.vc, r, t, layer, kvd, hh + k, hd)[d] =
				clip_to(row[qd + kvd + (hh + k) * hd + d], p.clip);
		}
	}
}

int eng_cu_qk_prep(float *q, const struct eng_cu_prep *p, const struct eng_cu_rows *r, int layer,
		   int n, int heads, int kv_heads, int hd, void *stream)
{
	int hpb = p->norm == 1 ? QK_HPB : 1;

	if (hd > ATT_HD || hd % 2)
		return (int)cudaErrorInvalidValue;
	return launch(k_qk_prep, dim3(n, (heads + hpb - 1) / hpb + (kv_heads + hpb - 1) / hpb),
		      ATT_THREADS, 0, stream, q, *p, *r, layer, heads, kv_heads, hd, hpb);
}

// Attention, split over positions (flash-decoding): a row's positions
// 0..pos are cut into spans of the length att_splits(max_ctx) picks; block
// (t, h, s) takes span s, its warps positions in turn, P at a time, each
// with its own online softmax, added up in warp order at the end.  One span
// holding positions: the block writes the output; more: each writes its
// max, sum and weighted values and the last to finish adds the spans in
// order.  The order of operations depends only on the row's position and
// max_ctx, never on the batch or on who finishes last.
#define ATT_CH 64
#define ATT_SMAX 32

static int att_splits(int max_ctx, int *span)
{
	int s = (max_ctx + ATT_CH - 1) / ATT_CH;

	s = s < 1 ? 1 : s > ATT_SMAX ? ATT_SMAX : s;
	*span = ((max_ctx + s - 1) / s + ATT_CH - 1) / ATT_CH * ATT_CH;
	return s;
}

size_t eng_cu_att_part_floats(int n, int heads, int hd, int max_ctx)
{
	int span;

	return (size_t)n * heads * att_splits(max_ctx, &span) * ((size_t)hd + 2);
}

// The block's new position, when it holds it and preps (q into qs, k and v
// of its kv head into ks and vs; the first q head of each kv head stores
// them in the cache); else q from the prepared rows.  qv: lane's dimensions
// lane, lane + 32, ...
template <int ND>
__device__ __forceinline__ void att_q(float qv[ND], float *qs, float *ks, float *vs, float *raw,
				      float *sh, const float *q, int stride,
				      const struct eng_cu_prep &p, bool prep, bool cur,
				      const struct eng_cu_rows &r, int layer, int heads,
				      int kv_heads, int hd)
{
	int t = blockIdx.x, h = blockIdx.y, lane = threadIdx.x & 31;
	int grp = heads / kv_heads, kvh = h / grp, qd = heads * hd, kvd = kv_heads * hd;

	if (prep) {
		const float *row = p.qkv + (size_t)t * p.D, *krow = row + qd;
		float sq = norm_part(p, row, qd, h, hd), sk = cur ? norm_part(p, krow, kvd, kvh, hd) : 0;

		if (p.norm && cur)
			block_sum2(sq, sk, (float2 *)sh);
		else if (p.norm)
			sq = block_reduce<false>(sq, sh);
		head_job j[2] = {{qs, raw, row, p.qw, h, norm_scale(p, sq, qd, hd)},
				 {ks, raw + hd, krow, p.kw, kvh, norm_scale(p, sk, kvd, hd)}};
		if (cur)
			head_prep<2>(j, p, hd, r.pos[t]);
		else
			head_prep<1>(j, p, hd, r.pos[t]);
		if (cur) {
			float *kd = cache_at(r.kc, r, t, layer, kvd, kvh, hd);
			float *vd = cache_at(r.vc, r, t, layer, kvd, kvh, hd);
			for (int i = threadIdx.x; i < hd; i += ATT_THREADS) {
				vs[i] = clip_to(row[qd + kvd + kvh * hd + i], p.clip);
				if (h % grp == 0)
					kd[i] = ks[i], vd[i] = vs[i];
			}
			__syncthreads();
		}
	}
	const float *qr = q + (size_t)t * stride + (size_t)h * hd;
#pragma unroll
	for (int u = 0; u < ND; u++) {
		int i = lane + 32 * u;
		qv[u] = i >= hd ? 0.0f : prep ? qs[i] : qr[i];
	}
}

// Cached k and v rows j0 .. j0 + P - 1 (< end; not row skip) for the lane's
// dimensions; 0 elsewhere.
template <int ND, int P>
__device__ __forceinline__ void att_rows(float (*kx)[ND], float (*vx)[ND], const float *kc,
					 const float *vc, int j0, int end, int skip, int kvd, int hd)
{
	int lane = threadIdx.x & 31;

#pragma unroll
	for (int a = 0; a < P; a++)
#pragma unroll
		for (int u = 0; u < ND; u++) {
			int j = j0 + a, i = lane + 32 * u;
			bool ok = j < end && j != skip && i < hd;

			kx[a][u] = ok ? kc[(size_t)j * kvd + i] : 0.0f;
			vx[a][u] = ok ? vc[(size_t)j * kvd + i] : 0.0f;
		}
}

// A warp's online softmax over positions j0 .. j0 + P - 1 (those < end; k
// and v rows in kx, vx): running max m, sum l and weighted values acc.
template <int ND, int P>
__device__ __forceinline__ void att_step(const float *qv, const float (*kx)[ND],
					 const float (*vx)[ND], int j0, int end, float scale,
					 float &m, float &l, float *acc)
{
	float e[P], mn = m, sum = 0;

#pragma unroll
	for (int a = 0; a < P; a++) {
		float d = 0;
#pragma unroll
		for (int u = 0; u < ND; u++)
			d = fmaf(qv[u], kx[a][u], d);
		for (int o = 16; o > 0; o >>= 1)
			d += __shfl_xor_sync(0xffffffffu, d, o);
		e[a] = j0 + a < end ? d * scale : -INFINITY;
		mn = fmaxf(mn, e[a]);
	}
	float c = expf(m - mn);
#pragma unroll
	for (int a = 0; a < P; a++) {
		e[a] = expf(e[a] - mn);
		sum += e[a];
	}
	l = l * c + sum;
#pragma unroll
	for (int u = 0; u < ND; u++) {
		float v = acc[u] * c;
#pragma unroll
		for (int a = 0; a < P; a++)
			v = fmaf(e[a], vx[a][u], v);
		acc[u] = v;
	}
	m = mn;
}

// The ns spans' max, sum and weighted values at pp (hd + 2 floats each,
// written by other blocks: __ldcg) added in span order into out.  The
// spans' maxima and sums come in together (one L2 round trip, not three
// loops of them one after another); the arithmetic and its order are as
// when each was loaded where used.
__device__ __forceinline__ void att_merge(float *out, const float *pp, int ns, int hd)
{
	__shared__ float sm[ATT_SMAX], sl[ATT_SMAX];
	float mx = -INFINITY, sum = 0;

	if (threadIdx.x < ns) {
		sm[threadIdx.x] = __ldcg(pp + (size_t)threadIdx.x * (hd + 2));
		sl[threadIdx.x] = __ldcg(pp + (size_t)threadIdx.x * (hd + 2) + 1);
	}
	__syncthreads();
	for (int k = 0; k < ns; k++)
		mx = fmaxf(mx, sm[k]);
	for (int k = 0; k < ns; k++)
		sum = fmaf(sl[k], expf(sm[k] - mx), sum);
	for (int i = threadIdx.x; i < hd; i += ATT_THREADS) {
		float o = 0;
#pragma unroll 4
		for (int k = 0; k < ns; k++)
			o = fmaf(__ldcg(pp + (size_t)k * (hd + 2) + 2 + i), expf(sm[k] - mx), o);
		out[i] = o / sum;
	}
}

// Span s of ns (its values already at pp + s * (hd + 2)): its max and sum
// too; the block that finishes the row's head last (counter c) merges.
__device__ __forceinline__ void att_spans(float *out, float *pp, unsigned *c, int s, int ns,
					  int hd, float mx, float sum)
{
	__shared__ bool last;

	if (!threadIdx.x)
		pp[(size_t)s * (hd + 2)] = mx, pp[(size_t)s * (hd + 2) + 1] = sum;
	__threadfence();
	__syncthreads();
	if (!threadIdx.x) {
		last = atomicAdd(c, 1u) == (unsigned)ns - 1;
		if (last)
			*c = 0;
	}
	__syncthreads();
	if (!last)
		return;
	__threadfence();
	att_merge(out, pp, ns, hd);
}

template <int ND>
__global__ void __launch_bounds__(ATT_THREADS, 2)
k_attend(float *att, float *part, unsigned *cnt, const float *q, int stride,
	 struct eng_cu_prep p, int prep, struct eng_cu_rows r, int layer, int heads, int kv_heads,
	 int hd, int span)
{
	constexpr int P = ND >= 16 ? 2 : ND >= 8 ? 4 : 8, HD = 32 * ND;
	__shared__ __align__(8) float sh[64];   /* block_sum2's float2[32] */
	__shared__ float qs[HD], ks[HD], vs[HD], raw[2 * HD];
	__shared__ float wm[ATT_WARPS], wl[ATT_WARPS], wa[ATT_WARPS][HD];
	int t = blockIdx.x, h = blockIdx.y, s = blockIdx.z, lane = threadIdx.x & 31;
	int warp = threadIdx.x >> 5, kvd = kv_heads * hd, kvh = h / (heads / kv_heads);

	/* The rows (copied in before the step) and, when it preps, the cached
	 * positions before the row's new one (written by earlier steps, which
	 * have finished) are read before the wait: the first of them are on
	 * their way while the kernel before finishes and the prep runs. */
	int pos = r.pos[t], beg = s * span, end = beg + span < pos + 1 ? beg + span : pos + 1;
	bool cur = prep && end == pos + 1;
	float qv[ND], acc[ND], kx[P][ND], vx[P][ND], m = -INFINITY, l = 0;
	float scale = 1.0f / sqrtf((float)hd);
	size_t lofs = (size_t)layer * r.cap[t] * kvd + (size_t)kvh * hd;
	const float *kc = r.kc[t] + lofs, *vc = r.vc[t] + lofs;
	int j0 = beg + warp * P;

	if (prep)
		att_rows<ND, P>(kx, vx, kc, vc, j0, end, pos, kvd, hd);
	pdl_wait();
	pdl_launch();
	if (beg > pos)
		return;
	if (!prep)
		att_rows<ND, P>(kx, vx, kc, vc, j0, end, -1, kvd, hd);
	att_q<ND>(qv, qs, ks, vs, raw, sh, q, stride, p, prep, cur, r, layer, heads, kv_heads, hd);
#pragma unroll
	for (int u = 0; u < ND; u++)
		acc[u] = 0.0f;
	for (; j0 < end; j0 += ATT_WARPS * P) {
		if (j0 != beg + warp * P)
			att_rows<ND, P>(kx, vx, kc, vc, j0, end, prep ? pos : -1, kvd, hd);
		/* The new position: made by the prep, not in the cache yet. */
#pragma unroll
		for (int a = 0; a < P; a++)
#pragma unroll
			for (int u = 0; u < ND; u++)
				if (cur && j0 + a == pos && lane + 32 * u < hd)
					kx[a][u] = ks[lane + 32 * u], vx[a][u] = vs[lane + 32 * u];
		att_step<ND, P>(qv, kx, vx, j0, end, scale, m, l, acc);
	}
	if (!lane)
		wm[warp] = m, wl[warp] = l;
#pragma unroll
	for (int u = 0; u < ND; u++)
		if (lane + 32 * u < hd)
			wa[warp][lane + 32 * u] = acc[u];
	__syncthreads();
	float mx = -INFINITY, sum = 0, ew[ATT_WARPS];
#pragma unroll
	for (int w = 0; w < ATT_WARPS; w++)
		mx = fmaxf(mx, wm[w]);
#pragma unroll
	for (int w = 0; w < ATT_WARPS; w++) {
		ew[w] = expf(wm[w] - mx);
		sum = fmaf(wl[w], ew[w], sum);
	}
	int ns = (pos + span) / span;
	float *out = att + (size_t)t * heads * hd + (size_t)h * hd;
	float *pp = part + ((size_t)t * heads + h) * gridDim.z * (hd + 2);
	for (int i = threadIdx.x; i < hd; i += ATT_THREADS) {
		float o = 0;
#pragma unroll
		for (int w = 0; w < ATT_WARPS; w++)
			o = fmaf(wa[w][i], ew[w], o);
		if (ns == 1)
			out[i] = o / sum;
		else
			pp[(size_t)s * (hd + 2) + 2 + i] = o;
	}
	if (ns > 1)
		att_spans(out, pp, cnt + (size_t)t * heads + h, s, ns, hd, mx, sum);
}

int eng_cu_attention(float *att, const float *q, int stride, const struct eng_cu_prep *prep,
		     const struct eng_cu_rows *r, int layer, int n, int heads, int kv_heads,
		     int hd, float *part, unsigned *cnt, int max_ctx, void *stream)
{
	struct eng_cu_prep p = {};
	int span, splits = att_splits(max_ctx, &span), rc = 0;

	if (hd > ATT_HD || hd % 2 || heads % kv_heads)
		return (int)cudaErrorInvalidValue;
	if (prep)
		p = *prep;
	dim3 grid(n, heads, splits);
#define AT(ND) rc = launch(k_attend<ND>, grid, ATT_THREADS, 0, stream, att, part, cnt, q, stride, \
			   p, prep != NULL, *r, layer, heads, kv_heads, hd, span)
	if (hd <= 32)
		AT(1);
	else if (hd <= 64)
		AT(2);
	else if (hd <= 128)
		AT(4);
	else if (hd <= 256)
		AT(8);
	else
		AT(16);
#undef AT
	return rc;
}

__global__ void k_silu_mul(float *h, const float *gu, int n, int I)
{
	size_t total = (size_t)n * I;

	pdl_wait();
	pdl_launch();
	for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
	     j += (size_t)gridDim.x * blockDim.x) {
		size_t t = j / I, i = j % I;
		h[j] = silu_mul(gu[t * 2 * I + i], gu[t * 2 * I + I + i]);
	}
}

int eng_cu_silu_mul(float *h, const float *gu, int n, int I, void *stream)
{
	return launch(k_silu_mul, blocks((size_t)n * I, 256), 256, 0, stream, h, gu, n, I);
}

__global__ void k_gather(float *xe, const float *x, const int *rows, int H)
{
	pdl_wait();
	pdl_launch();
	const float *s = x + (size_t)rows[blockIdx.x] * H;
	float *d = xe + (size_t)blockIdx.x * H;

	for (int i = threadIdx.x; i < H; i += blockDim.x)
		d[i] = s[i];
}

int eng_cu_gather(float *xe, const float *x, const int *rows, int m, int H, void *stream)
{
	return launch(k_gather, m, 256, 0, stream, xe, x, rows, H);
}
