// The CUDA engine's tiled attention for prefill chunks (engine/cuda_kernels.cu
// has the decode attention and the q/k preparation both run first).
#include <cuda_runtime.h>

#include "engine/cuda_common.cuh"
#include "engine/cuda_kernels.h"

// Attention of a prefill chunk, tiled: block (b, h) takes rows 32 b ..
// 32 b + 31 and q head h, warp w rows 4 w .. 4 w + 3.  Its rows' cached
// keys and values come 32 positions at a time into shared memory (keys
// transposed: lane j reads key j), shared by the rows of one sequence (a
// run of rows with the same cache; a block holding the end of one prompt
// and the start of the next takes each run in turn).  Each row keeps an
// online softmax over its positions 0..pos, 32 at a time from 0, so its
// values do not depend on the rows around it.  One block per row and head
// (k_attend) read a row's whole context for each row: 44% of a 512-token
// prefill's GPU time (H200, bench/results/cuda_bench_s17.md).
#define AT_T 32                    // rows of a block, positions of a tile
#define AT_RW (AT_T / ATT_WARPS)   // rows of a warp

// A tile's keys and values, positions k0 .. k0 + AT_T - 1 (zeros past last
// and past hd), NL float4 of each a thread: held in registers while the
// tile before is worked on, so their loads are in flight meanwhile.
template <int HD, int NL>
__device__ __forceinline__ void tile_load(float4 *kn, float4 *vn, const float *kc, const float *vc,
					  int k0, int last, int kvd, int hd)
{
#pragma unroll
	for (int u = 0; u < NL; u++) {
		int i = 4 * (threadIdx.x + ATT_THREADS * u), j = i / HD, d = i % HD;
		bool ok = k0 + j <= last && d < hd;
		size_t at = (size_t)(k0 + j) * kvd + d;

		kn[u] = ok ? *(const float4 *)(kc + at) : make_float4(0, 0, 0, 0);
		vn[u] = ok ? *(const float4 *)(vc + at) : make_float4(0, 0, 0, 0);
	}
}

// The tile into shared memory: keys transposed (kt), values as they are.
template <int HD, int NL>
__device__ __forceinline__ void tile_store(const float4 *kn, const float4 *vn, float *kt, float *vs)
{
#pragma unroll
	for (int u = 0; u < NL; u++) {
		int i = 4 * (threadIdx.x + ATT_THREADS * u), j = i / HD, d = i % HD;

		kt[d * (AT_T + 1) + j] = kn[u].x, kt[(d + 1) * (AT_T + 1) + j] = kn[u].y;
		kt[(d + 2) * (AT_T + 1) + j] = kn[u].z, kt[(d + 3) * (AT_T + 1) + j] = kn[u].w;
		*(float4 *)(vs + i) = vn[u];
	}
}

template <int ND>
__global__ void __launch_bounds__(ATT_THREADS)
k_attend_tiles(float *att, const float *q, int stride, struct eng_cu_rows r, int layer, int n,
	       int heads, int kv_heads, int hd)
{
	constexpr int HD = 32 * ND, NL = AT_T * HD / (4 * ATT_THREADS);
	extern __shared__ __align__(16) float at_sm[];
	/* q [T][HD], keys [HD][T + 1] (the pad: stores down a column and
	 * loads along a row both without bank conflicts), values [T][HD] */
	float *qs = at_sm, *kt = qs + AT_T * HD, *vs = kt + HD * (AT_T + 1);
	/* The last rows (the most positions) first: the long blocks start early. */
	int h = blockIdx.y, t0 = (gridDim.x - 1 - blockIdx.x) * AT_T, lane = threadIdx.x & 31;
	int warp = threadIdx.x >> 5;
	int kvd = kv_heads * hd, kvh = h / (heads / kv_heads), te = min(t0 + AT_T, n);
	float scale = 1.0f / sqrtf((float)hd), m[AT_RW], l[AT_RW], acc[AT_RW][ND];

	pdl_wait();
	pdl_launch();
	for (int i = threadIdx.x; i < AT_T * HD; i += ATT_THREADS) {
		int a = i / HD, d = i % HD;
		qs[i] = t0 + a < te && d < hd ? q[(size_t)(t0 + a) * stride + (size_t)h * hd + d] : 0;
	}
	for (int k = 0; k < AT_RW; k++) {
		m[k] = -INFINITY, l[k] = 0;
#pragma unroll
		for (int u = 0; u < ND; u++)
			acc[k][u] = 0;
	}
	for (int gs = t0, ge; gs < te; gs = ge) {   /* each run of one sequence */
		int last = r.pos[gs];
		for (ge = gs + 1; ge < te && r.kc[ge] == r.kc[gs] && r.cap[ge] == r.cap[gs]; ge++)
			last = max(last, r.pos[ge]);
		size_t lofs = (size_t)layer * r.cap[gs] * kvd + (size_t)kvh * hd;
		const float *kc = r.kc[gs] + lofs, *vc = r.vc[gs] + lofs;
		float4 kn[NL], vn[NL];
		tile_load<HD, NL>(kn, vn, kc, vc, 0, last, kvd, hd);
		for (int k0 = 0; k0 <= last; k0 += AT_T) {
			__syncthreads();   /* the tile before is done with */
			tile_store<HD, NL>(kn, vn, kt, vs);
			__syncthreads();
			if (k0 + AT_T <= last)
				tile_load<HD, NL>(kn, vn, kc, vc, k0 + AT_T, last, kvd, hd);
			/* The warp's rows side by side: each key and value loaded
			 * once for all four (rows of other runs, or past their
			 * positions, compute and drop). */
			float sc[AT_RW] = {}, e[AT_RW];
			const float4 *q4 = (const float4 *)(qs + warp * AT_RW * HD);
#pragma unroll 4
			for (int d = 0; d < HD; d += 4) {
				float k4[4];
#pragma unroll
				for (int i = 0; i < 4; i++)
					k4[i] = kt[(d + i) * (AT_T + 1) + lane];
#pragma unroll
				for (int k = 0; k < AT_RW; k++) {
					float4 qv = q4[k * HD / 4 + d / 4];
					sc[k] = fmaf(qv.x, k4[0], sc[k]), sc[k] = fmaf(qv.y, k4[1], sc[k]);
					sc[k] = fmaf(qv.z, k4[2], sc[k]), sc[k] = fmaf(qv.w, k4[3], sc[k]);
				}
			}
#pragma unroll
			for (int k = 0; k < AT_RW; k++) {
				int t = t0 + warp * AT_RW + k;
				bool on = t >= gs && t < ge && k0 <= r.pos[t];   /* warp-uniform */
				float x = on && k0 + lane <= r.pos[t] ? sc[k] * scale : -INFINITY;
				float mx = x;
				for (int o = 16; o > 0; o >>= 1)
					mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
				mx = on ? fmaxf(mx, m[k]) : m[k];
				e[k] = on ? expf(x - mx) : 0.0f;
				float c = on ? expf(m[k] - mx) : 1.0f, sum = e[k];
				for (int o = 16; o > 0; o >>= 1)
					sum += __shfl_xor_sync(0xffffffffu, sum, o);
				l[k] = l[k] * c + sum, m[k] = mx;
#pragma unroll
				for (int u = 0; u < ND; u++)
					acc[k][u] *= c;
			}
#pragma unroll 4
			for (int j = 0; j < AT_T; j++) {
				float v[ND];
#pragma unroll
				for (int u = 0; u < ND; u++)
					v[u] = vs[j * HD + lane + 32 * u];
#pragma unroll
				for (int k = 0; k < AT_RW; k++) {
					float ej = __shfl_sync(0xffffffffu, e[k], j);
#pragma unroll
					for (int u = 0; u < ND; u++)
						acc[k][u] = fmaf(ej, v[u], acc[k][u]);
				}
			}
		}
	}
#pragma unroll
	for (int k = 0; k < AT_RW; k++) {
		int t = t0 + warp * AT_RW + k;
#pragma unroll
		for (int u = 0; u < ND; u++)
			if (t < te && lane + 32 * u < hd)
				att[(size_t)t * heads * hd + (size_t)h * hd + lane + 32 * u] =
					acc[k][u] / l[k];
	}
}

extern "C" bool eng_cu_att_tiles_ok(int hd)
{
	return hd <= 128 && hd % 4 == 0;   /* float4 rows */
}

int eng_cu_attention_tiles(float *att, const float *q, int stride, const struct eng_cu_rows *r,
			   int layer, int n, int heads, int kv_heads, int hd, void *stream)
{
	int rc = 0;

	if (!eng_cu_att_tiles_ok(hd) || heads % kv_heads)
		return (int)cudaErrorInvalidValue;
	dim3 grid((n + AT_T - 1) / AT_T, heads);
#define AT(ND) do {                                                                         \
		size_t sm = (size_t)(3 * AT_T + 1) * 32 * ND * sizeof(float);                \
		rc = (int)cudaFuncSetAttribute(k_attend_tiles<ND>,                           \
					       cudaFuncAttributeMaxDynamicSharedMemorySize,  \
					       (int)sm);                                     \
		if (!rc)                                                                     \
			rc = launch(k_attend_tiles<ND>, grid, ATT_THREADS, sm, stream, att, q, \
				    stride, *r, layer, n, heads, kv_heads, hd);              \
	} while (0)
	if (hd <= 32)
		AT(1);
	else if (hd <= 64)
		AT(2);
	else
		AT(4);
#undef AT
	return rc;
}
