// The CUDA engine's elementwise, normalisation and attention kernels.
// GEMMs and the MoE kernels: engine/cuda_moe.cu and cuBLAS.  The arithmetic
// follows engine/engine.c's CPU code step for step (same f32 operations,
// same order where a row is processed by one thread), so the two paths differ
// only by reduction order and the GEMMs.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/cuda_common.cuh"
#include "engine/cuda_kernels.h"

#define ST(s) ((cudaStream_t)(s))

static int launched(void)
{
	return (int)cudaGetLastError();
}

static unsigned blocks(size_t n, unsigned threads)
{
	size_t b = (n + threads - 1) / threads;
	return (unsigned)(b < 65535u * 16u ? (b ? b : 1) : 65535u * 16u);
}

__global__ void k_embed(float *x, const void *table, int bf16, const int *tok, int H)
{
	size_t row = (size_t)tok[blockIdx.x] * H;
	float *o = x + (size_t)blockIdx.x * H;

	for (int i = threadIdx.x; i < H; i += blockDim.x)
		o[i] = bf16 ? __bfloat162float(((const __nv_bfloat16 *)table)[row + i]) :
			((const float *)table)[row + i];
}

int eng_cu_embed(float *x, const void *table, int bf16, const int *tok, int n, int H,
		 void *stream)
{
	k_embed<<<n, 256, 0, ST(stream)>>>(x, table, bf16, tok, H);
	return launched();
}

__global__ void k_rmsnorm(float *y, const float *x, const float *w, int dim, float eps)
{
	__shared__ float sh[32];
	const float *xr = x + (size_t)blockIdx.x * dim;
	float *yr = y + (size_t)blockIdx.x * dim, ss = 0;

	for (int i = threadIdx.x; i < dim; i += blockDim.x)
		ss += xr[i] * xr[i];
	ss = block_reduce<false>(ss, sh);
	float inv = 1.0f / sqrtf(ss / (float)dim + eps);
	for (int i = threadIdx.x; i < dim; i += blockDim.x)
		yr[i] = w[i] * (xr[i] * inv);
}

int eng_cu_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps,
		   void *stream)
{
	k_rmsnorm<<<n, 256, 0, ST(stream)>>>(y, x, w, dim, eps);
	return launched();
}

__global__ void k_to_bf16(__nv_bfloat16 *y, const float *x, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] = __float2bfloat16_rn(x[i]);
}

int eng_cu_to_bf16(void *y, const float *x, size_t n, void *stream)
{
	k_to_bf16<<<blocks(n, 256), 256, 0, ST(stream)>>>((__nv_bfloat16 *)y, x, n);
	return launched();
}

__global__ void k_from_bf16(float *y, const __nv_bfloat16 *x, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] = __bfloat162float(x[i]);
}

int eng_cu_from_bf16(float *y, const void *x, size_t n, void *stream)
{
	k_from_bf16<<<blocks(n, 256), 256, 0, ST(stream)>>>(y, (const __nv_bfloat16 *)x, n);
	return launched();
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
	k_qk_prep<<<dim3(n, heads + kv_heads), 128, 0, ST(stream)>>>(
		q, qkv, D, heads, kv_heads, hd, norm, qw, kw, eps, clip, inv_freq, *r, layer);
	return launched();
}

// One block (ATT_THREADS) per (row, head).  Scores: each warp takes four
// positions at a time, lanes across the head's dimensions (coalesced reads
// of the cached keys); softmax over the block; the weighted sum of values
// the same way round (warps over positions, lanes over dimensions).
#define ATT_THREADS 512
__global__ void k_attend(float *att, const float *qkv, int stride, struct eng_cu_rows r,
			 int layer, int heads, int kv_heads, int hd, float *scores,
			 int max_ctx)
{
	__shared__ float sh[32], part[ATT_THREADS / 32 * 512];
	int t = blockIdx.x, h = blockIdx.y, len = r.pos[t] + 1, kvd = kv_heads * hd;
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	size_t lofs = (size_t)layer * r.cap[t] * kvd;
	const float *q = qkv + (size_t)t * stride + (size_t)h * hd;
	const float *kc = r.kc[t] + lofs + (size_t)(h / (heads / kv_heads)) * hd;
	const float *vc = r.vc[t] + lofs + (size_t)(h / (heads / kv_heads)) * hd;
	float *sc = scores + ((size_t)t * heads + h) * max_ctx;
	float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY, sum = 0;

	/* Four positions per pass: their loads are in flight together. */
	for (int j0 = warp * 4; j0 < len; j0 += nw * 4) {
		float d[4] = {0, 0, 0, 0};

		for (int i = lane; i < hd; i += 32)
#pragma unroll
			for (int u = 0; u < 4; u++)
				if (j0 + u < len)
					d[u] += q[i] * kc[(size_t)(j0 + u) * kvd + i];
#pragma unroll
		for (int u = 0; u < 4; u++) {
			for (int o = 16; o > 0; o >>= 1)
				d[u] += __shfl_xor_sync(0xffffffffu, d[u], o);
			if (j0 + u < len) {
				if (!lane)
					sc[j0 + u] = d[u] * scale;
				mx = fmaxf(mx, d[u] * scale);
			}
		}
	}
	mx = block_reduce<true>(mx, sh);
	__syncthreads();
	for (int j = threadIdx.x; j < len; j += blockDim.x) {
		sc[j] = expf(sc[j] - mx);
		sum += sc[j];
	}
	sum = block_reduce<false>(sum, sh);
	__syncthreads();
	for (int j = threadIdx.x; j < len; j += blockDim.x)
		sc[j] /= sum;
	__syncthreads();
	/* Warp w sums the positions j = w, w + nw, ... of 128 dimensions at a
	 * time (four per lane, coalesced rows); then the warps' sums in order. */
	for (int i0 = 0; i0 < hd; i0 += 128) {
		float a[4] = {0, 0, 0, 0};

#pragma unroll 4
		for (int j = warp; j < len; j += nw) {
			const float *vr = vc + (size_t)j * kvd + i0 + lane;
			float pj = sc[j];
#pragma unroll
			for (int u = 0; u < 4; u++)
				if (i0 + lane + 32 * u < hd)
					a[u] += pj * vr[32 * u];
		}
#pragma unroll
		for (int u = 0; u < 4; u++)
			if (i0 + lane + 32 * u < hd)
				part[warp * hd + i0 + lane + 32 * u] = a[u];
	}
	__syncthreads();
	for (int i = threadIdx.x; i < hd; i += blockDim.x) {
		float acc = 0;
		for (int k = 0; k < nw; k++)
			acc += part[k * hd + i];
		att[(size_t)t * heads * hd + (size_t)h * hd + i] = acc;
	}
}

int eng_cu_attention(float *att, const float *qkv, int stride, const struct eng_cu_rows *r,
		     int layer, int n, int heads, int kv_heads, int hd, float *scores, int max_ctx,
		     void *stream)
{
	if (hd > ATT_THREADS)
		return (int)cudaErrorInvalidValue;
	k_attend<<<dim3(n, heads), ATT_THREADS, 0, ST(stream)>>>(att, qkv, stride, *r, layer,
								 heads, kv_heads, hd, scores,
								 max_ctx);
	return launched();
}

__global__ void k_silu_mul(float *h, const float *gu, int n, int I)
{
	size_t total = (size_t)n * I;

	for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
	     j += (size_t)gridDim.x * blockDim.x) {
		size_t t = j / I, i = j % I;
		float g = gu[t * 2 * I + i], u = gu[t * 2 * I + I + i];

		h[j] = g / (1.0f + expf(-g)) * u;
	}
}

int eng_cu_silu_mul(float *h, const float *gu, int n, int I, void *stream)
{
	k_silu_mul<<<blocks((size_t)n * I, 256), 256, 0, ST(stream)>>>(h, gu, n, I);
	return launched();
}

__global__ void k_gather(float *xe, const float *x, const int *rows, int H)
{
	const float *s = x + (size_t)rows[blockIdx.x] * H;
	float *d = xe + (size_t)blockIdx.x * H;

	for (int i = threadIdx.x; i < H; i += blockDim.x)
		d[i] = s[i];
}

int eng_cu_gather(float *xe, const float *x, const int *rows, int m, int H, void *stream)
{
	k_gather<<<m, 256, 0, ST(stream)>>>(xe, x, rows, H);
	return launched();
}
