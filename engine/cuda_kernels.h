/* The CUDA engine's kernels (engine/cuda_kernels.cu, cuda_att_tiles.cu), callable from C.  Each
 * launcher queues its kernel on stream (a cudaStream_t) and returns the
 * launch's cudaError_t as an int (0: queued).  Activations are f32; "w16"
 * tables are bf16 when the dense dtype is bf16. */
#ifndef ENG_CUDA_KERNELS_H
#define ENG_CUDA_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Programmatic dependent launch between the engine's kernels: on (1, the
 * default) or off.  Set before any launch. */
void eng_cu_set_pdl(int on);

/* Per-row data of a chunk, on the device. */
struct eng_cu_rows {
	const int *tok, *pos, *cap;
	float *const *kc, *const *vc;   /* each row's sequence caches */
};

/* x[t][0..H) = table[tok[t]] (f32 or bf16 table, bf16 when bf16 != 0). */
int eng_cu_embed(float *x, const void *table, int bf16, const int *tok, int n, int H,
		 void *stream);
/* The next step of n rows: tok[t] = best[t] (the step's argmax, which may
 * be pinned host memory) and pos[t] + 1. */
int eng_cu_advance(int *tok, int *pos, const int *best, int n, void *stream);
/* y[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * w, n rows of dim. */
int eng_cu_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps,
		   void *stream);
/* f32 -> bf16, n elements. */
int eng_cu_to_bf16(void *y, const float *x, size_t n, void *stream);
/* n rows of in floats (row t: x's row rows[t], or row t when rows is NULL)
 * as three bf16 rows each, hi + mid + lo == x exactly (finite x): xb holds
 * [3][n][in], hi rows first.  A bf16 GEMM of them with f32 sums has an f32
 * GEMM's precision, on tensor cores. */
int eng_cu_split3(void *xb, const float *x, const int *rows, int n, int in, void *stream);
/* y[j] = (add ? y[j] : 0) + (p[j] + (p[total + j] + p[2 total + j])), j < total. */
int eng_cu_sum3(float *y, const float *p, size_t total, int add, void *stream);
/* A chunk's new positions before attention: per row of qkv ([n][D], D =
 * (heads + 2 kv_heads) hd, not written) the q/k norms (norm 1: over all of q
 * and all of k, weights qw [qd] and kw [kvd]; 2: per head, weights [hd]; 0:
 * none), q, k and v clamped to +-clip (clip > 0), RoPE (inv_freq [hd / 2])
 * on the q and k heads at the row's position. */
struct eng_cu_prep {
	const float *qkv;
	int D, norm;
	const float *qw, *kw;
	float eps, clip;
	const float *inv_freq;
};

/* p's work for n rows: q into q [n][heads hd], k and v into each row's
 * sequence cache at (layer, pos).  hd even, <= 512. */
int eng_cu_qk_prep(float *q, const struct eng_cu_prep *p, const struct eng_cu_rows *r, int layer,
		   int n, int heads, int kv_heads, int hd, void *stream);
/* Causal GQA attention of each row's q heads over its sequence's cached
 * positions 0..pos (pos < max_ctx) into att [n][heads * hd]; hd even, <=
 * 512.  prep NULL: q (row t at q + t * stride) and the cache at pos from
 * eng_cu_qk_prep; else the kernel does prep's work itself (the same bits),
 * which needs every row to be a different sequence.  part: scratch of
 * eng_cu_att_part_floats(n, heads, hd, max_ctx) floats; cnt: n * heads
 * counters at 0, left at 0. */
int eng_cu_attention(float *att, const float *q, int stride, const struct eng_cu_prep *prep,
		     const struct eng_cu_rows *r, int layer, int n, int heads, int kv_heads,
		     int hd, float *part, unsigned *cnt, int max_ctx, void *stream);
size_t eng_cu_att_part_floats(int n, int heads, int hd, int max_ctx);
/* The same for a prefill chunk after eng_cu_qk_prep (prep's work not done
 * here), tiled: rows of one sequence share each tile of its cached keys
 * and values, so it pays when the chunk's rows come in long runs per
 * sequence.  hd <= 128, a multiple of 4 (eng_cu_att_tiles_ok).  Other bits than
 * eng_cu_attention's (another order of the sums). */
bool eng_cu_att_tiles_ok(int hd);
int eng_cu_attention_tiles(float *att, const float *q, int stride, const struct eng_cu_rows *r,
			   int layer, int n, int heads, int kv_heads, int hd, void *stream);
/* h[t][i] = silu(gu[t][i]) * gu[t][I + i]. */
int eng_cu_silu_mul(float *h, const float *gu, int n, int I, void *stream);
/* xe[r] = x[rows[r]], rows of H. */
int eng_cu_gather(float *xe, const float *x, const int *rows, int m, int H, void *stream);
#ifdef __cplusplus
}
#endif

#endif
