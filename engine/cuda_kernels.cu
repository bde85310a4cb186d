// The CUDA engine's elementwise, normalisation and attention kernels.
// GEMMs and the MoE kernels: engine/cuda_moe.cu and cuBLAS.  The arithmetic
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

__global__ void k_from_bf16(float *y, const __nv_bfloat16 *x, size_t n)
{
	pdl_wait();
	pdl_launch();
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] = __bfloat162float(x[i]);
}

int eng_cu_from_bf16(float *y, const void *x, size_t n, void *stream)
{
	return launch(k_from_bf16, blocks(n, 256), 256, 0, stream, y, (const __nv_bfloat16 *)x, n);
}

// One block per (row, head of q or of k): the family's q/k norms (norm 1:
// over all of q and all of k, as OLMoE, each block reducing the whole vector;
// 2: per head, as Qwen3-MoE), clipping, RoPE (rotate_half) at the row's
// position; q heads go to q, k heads (with their v head, clipped) into the
// row's sequence cache at (layer, pos).  engine.c's steps in its order.  The
// input is not written, so blocks may read all of it.
__global__ void k_qk_prep(float *q, const float *qkv, int D, int heads, int kv_heads, int hd,
			  int norm, const float *qw, const float *kw, float eps, float clip,
			  const float *inv_freq, struct eng_cu_rows r, int layer)
{
	__shared__ float sh[32], v[512];
	int t = blockIdx.x, h = blockIdx.y, qd = heads * hd, kvd = kv_heads * hd, half = hd / 2;
	bool isq = h < heads;
	const float *row = qkv + (size_t)t * D, *src = isq ? row : row + qd;
	const float *nw = isq ? qw : kw;
	int hh = isq ? h : h - heads, dim = isq ? qd : kvd;
	float inv = 1.0f;

	pdl_wait();
	pdl_launch();
	if (norm == 1) {
		float ss = 0;
		for (int i = threadIdx.x; i < dim; i += blockDim.x)
			ss += src[i] * src[i];
		ss = block_reduce<false>(ss, sh);
		inv = 1.0f / sqrtf(ss / (float)dim + eps);
	} else if (norm == 2) {
		float ss = 0;
		for (int i = threadIdx.x; i < hd; i += blockDim.x)
			ss += src[hh * hd + i] * src[hh * hd + i];
		ss = block_reduce<false>(ss, sh);
		inv = 1.0f / sqrtf(ss / (float)hd + eps);
	}
	for (int i = threadIdx.x; i < hd; i += blockDim.x) {
		float x = src[hh * hd + i];
		if (norm)
			x = nw[norm == 1 ? hh * hd + i : i] * (x * inv);
		if (clip > 0)
			x = x < -clip ? -clip : x > clip ? clip : x;
		v[i] = x;
	}
	__syncthreads();
	float *dst = isq ? q + (size_t)t * qd + (size_t)hh * hd :
		r.kc[t] + ((size_t)layer * r.cap[t] + (size_t)r.pos[t]) * kvd + (size_t)hh * hd;
	for (int i = threadIdx.x; i < half; i += blockDim.x) {
		float a = inv_freq[i] * (float)r.pos[t], c = cosf(a), s = sinf(a);
		float x1 = v[i], x2 = v[i + half];

		dst[i] = x1 * c - x2 * s;
		dst[i + half] = x2 * c + x1 * s;
	}
	if (isq)
		return;
	float *vd = r.vc[t] + ((size_t)layer * r.cap[t] + (size_t)r.pos[t]) * kvd + (size_t)hh * hd;
	for (int i = threadIdx.x; i < hd; i += blockDim.x) {
		float x = row[qd + kvd + hh * hd + i];
		vd[i] = clip > 0 ? (x < -clip ? -clip : x > clip ? clip : x) : x;
	}
}

int eng_cu_qk_prep(float *q, const float *qkv, int D, int heads, int kv_heads, int hd, int norm,
		   const float *qw, const float *kw, float eps, float clip,
		   const float *inv_freq, const struct eng_cu_rows *r, int layer, int n,
		   void *stream)
{
	if (hd > 512 || hd % 2)
		return (int)cudaErrorInvalidValue;
	return launch(k_qk_prep, dim3(n, heads + kv_heads), 128, 0, stream, q, qkv, D, heads,
		      kv_heads, hd, norm, qw, kw, eps, clip, inv_freq, *r, layer);
}

// Attention, split over positions (flash-decoding): the positions 0..pos of
// a row are cut into spans of the length att_splits(max_ctx) picks (a
// multiple of ATT_CH); block (t, h, s) takes span s in sub-chunks of ATT_CH
// positions with an online softmax and writes its max, sum and weighted
// values; k_attend_merge adds the spans in order.  Spans past the row's
// length do nothing.  The order of operations depends only on the row's
// length and max_ctx, not on the batch.
#define ATT_CH 64
#define ATT_SMAX 32
#define ATT_THREADS 256
#define ATT_DMAX (512 / 32)

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

// Scores of positions j0 .. j0 + cnt - 1 (cnt <= ATT_CH) into sc: warp w
// takes 8 of them, four at a time, lanes across the dimensions.
__device__ __forceinline__ void att_scores(float *sc, const float *qv, const float *kc, int kvd,
					   int hd, int j0, int cnt, float scale)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nd = (hd + 31) / 32;

#pragma unroll
	for (int g = 0; g < 2; g++) {
		int p0 = warp * 8 + g * 4;
		float d[4] = {0, 0, 0, 0};

#pragma unroll
		for (int u = 0; u < ATT_DMAX; u++)
#pragma unroll
			for (int p = 0; p < 4; p++)
				if (u < nd && p0 + p < cnt && lane + 32 * u < hd)
					d[p] = fmaf(qv[u], kc[(size_t)(j0 + p0 + p) * kvd + 32 * u],
						    d[p]);
#pragma unroll
		for (int p = 0; p < 4; p++) {
			for (int o = 16; o > 0; o >>= 1)
				d[p] += __shfl_xor_sync(0xffffffffu, d[p], o);
			if (!lane && p0 + p < cnt)
				sc[p0 + p] = d[p] * scale;
		}
	}
}

__global__ void k_attend(float *part, const float *q, int stride, struct eng_cu_rows r,
			 int layer, int heads, int kv_heads, int hd, int span)
{
	__shared__ float sc[ATT_CH];
	int t = blockIdx.x, h = blockIdx.y, s = blockIdx.z, lane = threadIdx.x & 31;
	int kvd = kv_heads * hd, nd = (hd + 31) / 32;
	float scale = 1.0f / sqrtf((float)hd), m = -INFINITY, l = 0;
	float qv[ATT_DMAX], acc[512 / ATT_THREADS];

	pdl_wait();
	pdl_launch();
	int len = r.pos[t] + 1, beg = s * span, end = beg + span < len ? beg + span : len;
	if (beg >= len)
		return;
	size_t lofs = (size_t)layer * r.cap[t] * kvd + (size_t)(h / (heads / kv_heads)) * hd;
	const float *qr = q + (size_t)t * stride + (size_t)h * hd;
	const float *kc = r.kc[t] + lofs + lane, *vc = r.vc[t] + lofs;
#pragma unroll
	for (int u = 0; u < ATT_DMAX; u++)
		qv[u] = u < nd && lane + 32 * u < hd ? qr[lane + 32 * u] : 0.0f;
#pragma unroll
	for (int k = 0; k < 512 / ATT_THREADS; k++)
		acc[k] = 0.0f;
	for (int j0 = beg; j0 < end; j0 += ATT_CH) {
		int cnt = end - j0 < ATT_CH ? end - j0 : ATT_CH;

		att_scores(sc, qv, kc, kvd, hd, j0, cnt, scale);
		__syncthreads();
		/* Every thread the same max and sum, in the same order. */
		float mn = m, sum = 0;
		for (int j = 0; j < cnt; j++)
			mn = fmaxf(mn, sc[j]);
		float c = expf(m - mn);
		__syncthreads();
		if (threadIdx.x < cnt)
			sc[threadIdx.x] = expf(sc[threadIdx.x] - mn);
		__syncthreads();
		for (int j = 0; j < cnt; j++)
			sum += sc[j];
		l = l * c + sum;
#pragma unroll
		for (int k = 0; k < 512 / ATT_THREADS; k++) {
			int i = threadIdx.x + k * ATT_THREADS;
			float a = acc[k] * c;
			if (i < hd) {
#pragma unroll 8
				for (int j = 0; j < cnt; j++)
					a = fmaf(sc[j], vc[(size_t)(j0 + j) * kvd + i], a);
			}
			acc[k] = a;
		}
		m = mn;
		__syncthreads();
	}
	float *pp = part + (((size_t)t * heads + h) * gridDim.z + s) * (hd + 2);
	if (!threadIdx.x)
		pp[0] = m, pp[1] = l;
#pragma unroll
	for (int k = 0; k < 512 / ATT_THREADS; k++)
		if (threadIdx.x + k * ATT_THREADS < hd)
			pp[2 + threadIdx.x + k * ATT_THREADS] = acc[k];
}

// The spans of (t, h) that have positions, in order.
__global__ void k_attend_merge(float *att, const float *part, struct eng_cu_rows r, int heads,
			       int hd, int splits, int span)
{
	int t = blockIdx.x, h = blockIdx.y;

	pdl_wait();
	pdl_launch();
	int ns = (r.pos[t] + span) / span;
	const float *pp = part + ((size_t)t * heads + h) * splits * (hd + 2);
	float mx = -INFINITY, sum = 0;
	for (int s = 0; s < ns; s++)
		mx = fmaxf(mx, pp[(size_t)s * (hd + 2)]);
	for (int s = 0; s < ns; s++)
		sum = fmaf(pp[(size_t)s * (hd + 2) + 1], expf(pp[(size_t)s * (hd + 2)] - mx), sum);
	for (int i = threadIdx.x; i < hd; i += blockDim.x) {
		float o = 0;
		for (int s = 0; s < ns; s++)
			o = fmaf(pp[(size_t)s * (hd + 2) + 2 + i], expf(pp[(size_t)s * (hd + 2)] - mx),
				 o);
		att[(size_t)t * heads * hd + (size_t)h * hd + i] = o / sum;
	}
}

int eng_cu_attention(float *att, const float *q, int stride, const struct eng_cu_rows *r,
		     int layer, int n, int heads, int kv_heads, int hd, float *part, int max_ctx,
		     void *stream)
{
	int span, splits = att_splits(max_ctx, &span), rc;

	if (hd > 32 * ATT_DMAX)
		return (int)cudaErrorInvalidValue;
	if ((rc = launch(k_attend, dim3(n, heads, splits), ATT_THREADS, 0, stream, part, q,
			 stride, *r, layer, heads, kv_heads, hd, span)))
		return rc;
	return launch(k_attend_merge, dim3(n, heads), 128, 0, stream, att, (const float *)part,
		      *r, heads, hd, splits, span);
}

__global__ void k_silu_mul(float *h, const float *gu, int n, int I)
{
	size_t total = (size_t)n * I;

	pdl_wait();
	pdl_launch();
	for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
	     j += (size_t)gridDim.x * blockDim.x) {
		size_t t = j / I, i = j % I;
		float g = gu[t * 2 * I + i], u = gu[t * 2 * I + I + i];

		h[j] = g / (1.0f + expf(-g)) * u;
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
