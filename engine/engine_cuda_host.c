/* A decode step's missed experts computed on the CPU (engine/host_ffn.h)
 * while the others load: the copy engine and the CPU's memory bus then
 * work at once (on the H200 machine a bf16 OLMoE expert took about 209 us
 * on 12 threads while copies ran at 53 GB/s, bench/results/cuda_bench_s27.md).
 * One miss in two goes to the CPU, so that the cache still loads the other
 * half and keeps learning what decode uses; a miss here is also an expert
 * whose prefetch is still queued (the CPU takes it, the copy is dropped).
 * The CPU's sums are the GPU kernels' bits (engine/host_ffn.h), so every
 * budget still gives the all-resident run's output.  A group the
 * host takes is marked run (xran) before any acquire, so the GPU's
 * acquiring and running pass it by. */
#include <string.h>

#include "engine/engine_cuda_int.h"
#include "engine/host_ffn.h"

int eng_cuda_host_open(struct eng_cuda *g)
{
	const struct ld_config *c = &g->m->cfg;
	size_t H = (size_t)g->H, f = sizeof(float);
	int rc;

	/* (and only where a decode step's experts run as the GEMVs whose
	 * order the pool keeps: expert_gemv's lengths) */
	if (!g->src.host_weights || g->src.host_threads < 1 || !g->src.bf16 ||
	    !eng_cu_gemv_ok(g->H) || !eng_cu_gemv_ok(c->moe_intermediate_size))
		return 0;
	CU(cudaMallocHost((void **)&g->hxn, GMAX * H * f));
	CU(cudaMallocHost((void **)&g->hy, (size_t)GMAX * (size_t)g->K * H * f));
	CU(cudaMallocHost((void **)&g->hdone, sizeof(*g->hdone)));
	if ((rc = host_ffn_open(g->src.host_threads, g->H, c->moe_intermediate_size, g->hdone,
				&g->hf)))
		return eng_cuda_fail("host_ffn_open", strerror(-rc));
	return 0;
}

void eng_cuda_host_close(struct eng_cuda *g)
{
	host_ffn_close(g->hf);   /* after the stream: no wait is left on *hdone */
	cudaFreeHost(g->hxn);
	cudaFreeHost(g->hy);
	cudaFreeHost(g->hdone);
}

void eng_cuda_host_pick(struct eng_cuda *g, int ml)
{
	struct eng_cu_grp hg = g->hg;
	int nx = *hg.nact;

	g->he.n = 0;
	for (int j = 0; g->hx && j < nx; j++) {
		int st = hg.start[j], m = hg.cnt[j], x = hg.xid[j];
		const float *xr[HOST_FFN_ROWS];
		float *yr[HOST_FFN_ROWS];
		int take = g->hturn % 2 == 0;   /* else the GPU's turn */
		const void *w;

		if (m > HOST_FFN_ROWS || g->he.n + m > ENG_CU_HOST_ENTS)
			continue;
		/* NULL: a hit, loading, or (taking) a prefetch whose copy has
		 * started; none of them takes a turn */
		if (!(w = g->src.host_weights(g->src.ctx, ml, x, take)))
			continue;
		g->hturn++;
		if (!take)
			continue;
		for (int t = 0; t < m; t++) {
			xr[t] = g->hxn + (size_t)hg.row[st + t] * g->H;
			yr[t] = g->hy + (size_t)(st + t) * g->H;
			g->he.e[g->he.n++] = st + t;
		}
		g->hwant = host_ffn_submit(g->hf, w, xr, m, yr);
		g->xran[j] = 1;
	}
}

int eng_cuda_host_done(struct eng_cuda *g)
{
	if (!g->he.n)
		return 0;
	KR(eng_cu_host_wait(g->eo, g->hy, g->H, g->hdone, g->hwant, g->he, g->st));
	g->he.n = 0;
	return 0;
}
