// The CUDA engine's elementwise, normalisation, attention and routing
// kernels.  GEMMs are cuBLAS's (engine/engine_cuda.c).  The arithmetic
// follows engine/engine.c's CPU code step for step (same f32 operations,
// same order where a row is processed by one thread), so the two paths differ
// only by reduction order and the GEMMs.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

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

// Sum (or max) over the block; every thread gets the result.  blockDim.x is
// a multiple of 32, at most 1024.
template <bool MAX>
__device__ float block_reduce(float v, float *sh)
{
	for (int o = 16; o > 0; o >>= 1) {
		float u = __shfl_xor_sync(0xffffffffu, v, o);
		v = MAX ? fmaxf(v, u) : v + u;
	}
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	__syncthreads();
	if (!lane)
		sh[warp] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : (MAX ? -INFINITY : 0.0f);
	for (int o = 16; o > 0; o >>= 1) {
		float u = __shfl_xor_sync(0xffffffffu, v, o);
		v = MAX ? fmaxf(v, u) : v + u;
	}
	return v;
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

__global__ void k_rmsnorm(float *y, int ys, const float *x, int xs, const float *w,
			  int dim, float eps)
{
	__shared__ float sh[32];
	const float *xr = x + (size_t)blockIdx.x * xs + (size_t)blockIdx.y * dim;
	float *yr = y + (size_t)blockIdx.x * ys + (size_t)blockIdx.y * dim, ss = 0;

	for (int i = threadIdx.x; i < dim; i += blockDim.x)
		ss += xr[i] * xr[i];
	ss = block_reduce<false>(ss, sh);
	float inv = 1.0f / sqrtf(ss / (float)dim + eps);
	for (int i = threadIdx.x; i < dim; i += blockDim.x)
		yr[i] = w[i] * (xr[i] * inv);
}

int eng_cu_rmsnorm(float *y, int ystride, const float *x, int xstride, const float *w,
		   int n, int groups, int dim, float eps, void *stream)
{
	int th = dim >= 256 ? 256 : (dim + 31) / 32 * 32;

	k_rmsnorm<<<dim3(n, groups), th, 0, ST(stream)>>>(y, ystride, x, xstride, w, dim,
							 eps);
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

__global__ void k_clamp(float *v, size_t n, float lim)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		v[i] = v[i] < -lim ? -lim : v[i] > lim ? lim : v[i];
}

int eng_cu_clamp(float *v, size_t n, float lim, void *stream)
{
	k_clamp<<<blocks(n, 256), 256, 0, ST(stream)>>>(v, n, lim);
	return launched();
}

__global__ void k_rope(float *v, int stride, int heads, int hd, const float *inv_freq,
		       const int *pos)
{
	int half = hd / 2;
	float *row = v + (size_t)blockIdx.x * stride;

	for (int j = threadIdx.x; j < heads * half; j += blockDim.x) {
		int h = j / half, i = j % half;
		float a = inv_freq[i] * (float)pos[blockIdx.x], c = cosf(a), s = sinf(a);
		float *p = row + (size_t)h * hd;
		float x1 = p[i], x2 = p[i + half];

		p[i] = x1 * c - x2 * s;
		p[i + half] = x2 * c + x1 * s;
	}
}

int eng_cu_rope(float *v, int stride, int heads, int hd, const float *inv_freq,
		const int *pos, int n, void *stream)
{
	k_rope<<<n, 128, 0, ST(stream)>>>(v, stride, heads, hd, inv_freq, pos);
	return launched();
}

__global__ void k_kv_store(const float *qkv, int stride, int koff, int voff,
			   struct eng_cu_rows r, int layer, int kvd)
{
	int t = blockIdx.x;
	size_t at = ((size_t)layer * r.cap[t] + (size_t)r.pos[t]) * kvd;
	const float *src = qkv + (size_t)t * stride;

	for (int i = threadIdx.x; i < kvd; i += blockDim.x) {
		r.kc[t][at + i] = src[koff + i];
		r.vc[t][at + i] = src[voff + i];
	}
}

// One block per (row, head): scores over the row's sequence, softmax, then
// the weighted sum of values, as the CPU's attend() does it.
__global__ void k_attend(float *att, const float *qkv, int stride, struct eng_cu_rows r,
			 int layer, int heads, int kv_heads, int hd, float *scores,
			 int max_ctx)
{
	__shared__ float sh[32];
	int t = blockIdx.x, h = blockIdx.y, len = r.pos[t] + 1, kvd = kv_heads * hd;
	size_t lofs = (size_t)layer * r.cap[t] * kvd;
	const float *q = qkv + (size_t)t * stride + (size_t)h * hd;
	const float *kc = r.kc[t] + lofs + (size_t)(h / (heads / kv_heads)) * hd;
	const float *vc = r.vc[t] + lofs + (size_t)(h / (heads / kv_heads)) * hd;
	float *sc = scores + ((size_t)t * heads + h) * max_ctx;
	float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY, sum = 0;

	for (int j = threadIdx.x; j < len; j += blockDim.x) {
		const float *k = kc + (size_t)j * kvd;
		float d = 0;

		for (int i = 0; i < hd; i++)
			d += q[i] * k[i];
		sc[j] = d * scale;
		mx = fmaxf(mx, sc[j]);
	}
	mx = block_reduce<true>(mx, sh);
	for (int j = threadIdx.x; j < len; j += blockDim.x) {
		sc[j] = expf(sc[j] - mx);
		sum += sc[j];
	}
	sum = block_reduce<false>(sum, sh);
	__syncthreads();
	float *o = att + (size_t)t * heads * hd + (size_t)h * hd;
	for (int i = threadIdx.x; i < hd; i += blockDim.x) {
		float acc = 0;

		for (int j = 0; j < len; j++)
			acc += (sc[j] / sum) * vc[(size_t)j * kvd + i];
		o[i] = acc;
	}
}

int eng_cu_attention(float *att, const float *qkv, int stride, int koff, int voff,
		     const struct eng_cu_rows *r, int layer, int n, int heads, int kv_heads,
		     int hd, float *scores, int max_ctx, void *stream)
{
	int rc;

	k_kv_store<<<n, 128, 0, ST(stream)>>>(qkv, stride, koff, voff, *r, layer,
					      kv_heads * hd);
	if ((rc = launched()))
		return rc;
	k_attend<<<dim3(n, heads), 128, 0, ST(stream)>>>(att, qkv, stride, *r, layer, heads,
							 kv_heads, hd, scores, max_ctx);
	return launched();
}

// One thread per row, the CPU's route() verbatim: softmax, k passes of
// argmax (ties to the lowest id), ids ascending.
__global__ void k_route(float *p_all, int *ids_all, float *w_all, int n, int E, int K,
			int norm)
{
	int t = blockIdx.x * blockDim.x + threadIdx.x;
	if (t >= n)
		return;
	float *p = p_all + (size_t)t * E, mx = p[0], sum = 0, ksum = 0;
	int *ids = ids_all + (size_t)t * K;
	float *w = w_all + (size_t)t * K;

	for (int i = 1; i < E; i++)
		mx = fmaxf(mx, p[i]);
	for (int i = 0; i < E; i++) {
		p[i] = expf(p[i] - mx);
		sum += p[i];
	}
	for (int i = 0; i < E; i++)
		p[i] /= sum;
	for (int k = 0; k < K; k++) {
		int best = -1;

		for (int i = 0; i < E; i++) {
			bool used = false;
			for (int u = 0; u < k; u++)
				used |= ids[u] == i;
			if (!used && (best < 0 || p[i] > p[best]))
				best = i;
		}
		ids[k] = best;
		ksum += p[best];
	}
	for (int a = 1; a < K; a++)          // insertion sort by id
		for (int b = a; b > 0 && ids[b - 1] > ids[b]; b--) {
			int x = ids[b];
			ids[b] = ids[b - 1];
			ids[b - 1] = x;
		}
	for (int k = 0; k < K; k++)
		w[k] = norm ? p[ids[k]] / ksum : p[ids[k]];
}

int eng_cu_route(float *p, int *ids, float *w, int n, int E, int K, int norm,
		 void *stream)
{
	k_route<<<(n + 63) / 64, 64, 0, ST(stream)>>>(p, ids, w, n, E, K, norm);
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

__global__ void k_scatter_add(float *y, const float *eo, const int *rows, const float *w,
			      int H)
{
	float *d = y + (size_t)rows[blockIdx.x] * H, wt = w[blockIdx.x];
	const float *s = eo + (size_t)blockIdx.x * H;

	for (int i = threadIdx.x; i < H; i += blockDim.x)
		d[i] += wt * s[i];
}

int eng_cu_scatter_add(float *y, const float *eo, const int *rows, const float *w, int m,
		       int H, void *stream)
{
	k_scatter_add<<<m, 256, 0, ST(stream)>>>(y, eo, rows, w, H);
	return launched();
}

__global__ void k_add(float *x, const float *y, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		x[i] += y[i];
}

int eng_cu_add(float *x, const float *y, size_t n, void *stream)
{
	k_add<<<blocks(n, 256), 256, 0, ST(stream)>>>(x, y, n);
	return launched();
}
