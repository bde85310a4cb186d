/* The CUDA engine's kernels (engine/cuda_kernels.cu), callable from C.  Each
 * launcher queues its kernel on stream (a cudaStream_t) and returns the
 * launch's cudaError_t as an int (0: queued).  Activations are f32; "w16"
 * tables are bf16 when the dense dtype is bf16. */
#ifndef ENG_CUDA_KERNELS_H
#define ENG_CUDA_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Per-row data of a chunk, on the device. */
struct eng_cu_rows {
	const int *tok, *pos, *cap;
	float *const *kc, *const *vc;   /* each row's sequence caches */
};

/* x[t][0..H) = table[tok[t]] (f32 or bf16 table, bf16 when bf16 != 0). */
int eng_cu_embed(float *x, const void *table, int bf16, const int *tok, int n, int H,
		 void *stream);
/* y = x * rsqrt(mean(x^2) + eps) * w over groups of dim: row t, group g at
 * base + t * stride + g * dim.  y may equal x. */
int eng_cu_rmsnorm(float *y, int ystride, const float *x, int xstride, const float *w,
		   int n, int groups, int dim, float eps, void *stream);
/* f32 -> bf16, and bf16 -> f32 (exact), n elements. */
int eng_cu_to_bf16(void *y, const float *x, size_t n, void *stream);
int eng_cu_from_bf16(float *y, const void *x, size_t n, void *stream);
/* v = clamp(v, -lim, lim). */
int eng_cu_clamp(float *v, size_t n, float lim, void *stream);
/* rotate_half RoPE, in place, on heads of hd at row t (stride floats apart)
 * with position pos[t]; inv_freq [hd / 2]. */
int eng_cu_rope(float *v, int stride, int heads, int hd, const float *inv_freq,
		const int *pos, int n, void *stream);
/* Stores each row's k and v (at qkv + t * stride + koff / voff) into its
 * sequence cache at (layer, pos), then causal GQA attention of the q heads
 * (at qkv + t * stride) over positions 0..pos into att [n][heads * hd].
 * scores: scratch of n * heads * max_ctx floats. */
int eng_cu_attention(float *att, const float *qkv, int stride, int koff, int voff,
		     const struct eng_cu_rows *r, int layer, int n, int heads, int kv_heads,
		     int hd, float *scores, int max_ctx, void *stream);
/* Softmax over each row's E logits (in place: probabilities), top-k,
 * optional renormalisation; ids ascending with their weights. */
int eng_cu_route(float *p, int *ids, float *w, int n, int E, int K, int norm,
		 void *stream);
/* h[t][i] = silu(gu[t][i]) * gu[t][I + i]. */
int eng_cu_silu_mul(float *h, const float *gu, int n, int I, void *stream);
/* xe[r] = x[rows[r]], rows of H. */
int eng_cu_gather(float *xe, const float *x, const int *rows, int m, int H, void *stream);
/* y[rows[r]] += w[r] * eo[r] (rows distinct). */
int eng_cu_scatter_add(float *y, const float *eo, const int *rows, const float *w, int m,
		       int H, void *stream);
/* x += y. */
int eng_cu_add(float *x, const float *y, size_t n, void *stream);

#ifdef __cplusplus
}
#endif

#endif
