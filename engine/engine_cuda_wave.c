/* A prefill chunk's bf16 experts on tensor cores (engine_cuda_moe.c's
 * expert_split), in waves: each expert's inputs were split in three by
 * eng_cu_split3_entries (an f32 GEMM's precision from bf16 products); a
 * wave's experts run together, one batched cuBLAS GEMM per padded size. */
#include <stdint.h>

#include "engine/engine_cuda_int.h"

/* The entries an expert of m runs expert_split's GEMMs at: m rounded up to
 * one of a few sizes, so that a layer's experts fall in few groups of one
 * shape, each group one batched GEMM (per-expert cuBLAS calls were bound by
 * their count: 64 experts' gate/up and down took about 1 ms a layer at 64
 * or at 32 entries each, batched at one shape 0.26-0.31 ms; H200).  The
 * padding columns read whatever lies after the expert's rows (xbe's slack
 * past the last) and their products are never read.  cuBLAS gives each
 * problem the same bits batched with any others or alone (checked on the
 * GPU), and the size depends only on m, so a wave's make-up never changes
 * an expert's values: exact at every budget. */
static int split_rows(int m)
{
	static const int sz[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256,
				 384, 512};

	for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++)
		if (m <= sz[i])
			return sz[i];
	return m;
}

/* One batched cuBLAS GEMM for nb problems of n columns: y = W^T x for the
 * pointer arrays at p (device: nb weights, nb inputs, nb outputs). */
static int gemm3_batched(struct eng_cuda *g, void **p, int nb, int n, int in, int out)
{
	const float one = 1.0f, zero = 0.0f;

	BL(cublasGemmBatchedEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one,
			       (const void *const *)p, CUDA_R_16BF, in,
			       (const void *const *)(p + nb), CUDA_R_16BF, in, &zero, p + 2 * nb,
			       CUDA_R_32F, out, nb, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return 0;
}

/* How many of the wave's experts from b (sorted) share b's split_rows. */
static int same_size(const struct eng_cu_wave *w, int b, int nj)
{
	int nb = 1;

	while (b + nb < nj && split_rows(w[b + nb].cnt) == split_rows(w[b].cnt))
		nb++;
	return nb;
}

/* One projection's batched GEMMs for the wave's nj experts (w, sorted), a
 * GEMM per run of one size: gate/up (down false: H -> 2I) or down (I -> H);
 * d: the wave's device pointer arrays, six per expert as split_wave lays
 * them out. */
static int wave_gemms(struct eng_cuda *g, const struct eng_cu_wave *w, int nj, void **d,
		      bool down)
{
	int H = g->H, I = g->m->cfg.moe_intermediate_size, rc;

	for (int b = 0, nb; b < nj; b += nb, d += 6 * nb) {
		int n = 3 * split_rows(w[b].cnt);

		nb = same_size(w, b, nj);
		rc = down ? gemm3_batched(g, d + 3 * nb, nb, n, I, H)
			  : gemm3_batched(g, d, nb, n, H, 2 * I);
		if (rc)
			return rc;
	}
	return 0;
}

/* Experts js[0 .. nj) of the groups (acquired: weights xw, expert_split's),
 * with split_rows(m) each, sorted by it: as one wave, their products side
 * by side in y3 (rows 3 split_rows(m) each, wave_rows at most), one batched
 * GEMM per size for gate/up, one launch for SiLU and the split, one GEMM
 * per size for down, one launch adding each entry's three products into
 * eo.  The wave's lists go to the GPU in one copy (plan_at, reset each
 * layer: the previous layer's copies ran before this layer's routes). */
static int split_wave(struct eng_cuda *g, const int *js, int nj)
{
	struct eng_cu_grp hg = g->hg;
	int H = g->H, I = g->m->cfg.moe_intermediate_size, yb = 0, mmax = 0, rc;
	size_t at = (g->plan_at + 15) & ~(size_t)15;
	size_t wl = (nj * sizeof(struct eng_cu_wave) + 15) & ~(size_t)15;
	size_t len = wl + 6 * (size_t)nj * sizeof(void *);   /* waves, then pointers */
	struct eng_cu_wave *w = (struct eng_cu_wave *)(g->hplan + at);
	void **ptr = (void **)(g->hplan + at + wl);
	uint16_t *xin = g->xbe, *hid = xin + (size_t)3 * g->NE * H;

	if (at + len > (size_t)g->E * PLAN_EXPERT)
		return eng_cuda_fail("expert waves", "plan buffer overrun");
	for (int b = 0; b < nj; b++) {
		int j = js[b], m = hg.cnt[j];

		w[b] = (struct eng_cu_wave){hg.start[j], m, yb};
		yb += 3 * split_rows(m);
		mmax = m > mmax ? m : mmax;
	}
	/* Per run of one size: gate/up's weights, inputs, outputs, then
	 * down's, nb each. */
	void **q = ptr;
	for (int b = 0, nb; b < nj; b += nb) {
		nb = same_size(w, b, nj);
		for (int k = 0; k < nb; k++) {
			const char *wt = (const char *)g->xw[js[b + k]];
			struct eng_cu_wave e = w[b + k];

			q[k] = (void *)wt;
			q[nb + k] = (void *)(xin + (size_t)3 * e.st * H);
			q[2 * nb + k] = g->y3 + (size_t)e.yb * 2 * I;
			q[3 * nb + k] = (void *)(wt + (size_t)2 * I * H * 2);
			q[4 * nb + k] = (void *)(hid + (size_t)3 * e.st * I);
			q[5 * nb + k] = g->y3 + (size_t)e.yb * H;
		}
		q += 6 * nb;
	}
	g->plan_at = at + len;
	CU(cudaMemcpyAsync(g->dplan + at, g->hplan + at, len, cudaMemcpyHostToDevice, g->st));
	void **dw = (void **)(g->dplan + at + wl);
	const struct eng_cu_wave *dwv = (const struct eng_cu_wave *)(g->dplan + at);
	if ((rc = wave_gemms(g, w, nj, dw, false)))
		return rc;
	KR(eng_cu_silu_split3_wave(hid, g->y3, I, dwv, nj, mmax, g->st));
	if ((rc = wave_gemms(g, w, nj, dw, true)))
		return rc;
	KR(eng_cu_sum3_wave(g->eo, g->y3, H, dwv, nj, mmax, g->st));
	return 0;
}

int eng_cuda_run_split(struct eng_cuda *g, int *js, int nj)
{
	const int *cnt = g->hg.cnt;
	int rc;

	for (int i = 1; i < nj; i++)   /* insertion sort, stable: nj <= E */
		for (int k = i; k > 0 && split_rows(cnt[js[k - 1]]) > split_rows(cnt[js[k]]); k--) {
			int t = js[k];
			js[k] = js[k - 1], js[k - 1] = t;
		}
	for (int b = 0, nb; b < nj; b += nb) {
		int rows = 3 * split_rows(cnt[js[b]]);
		for (nb = 1; b + nb < nj && rows + 3 * split_rows(cnt[js[b + nb]]) <=
						    3 * g->wave_rows; nb++)
			rows += 3 * split_rows(cnt[js[b + nb]]);
		if ((rc = split_wave(g, js + b, nb)))
			return rc;
	}
	return 0;
}
