/* The CUDA forward pass: the CPU engine's math on one GPU, activations f32.
 *
 * GEMMs: up to ENG_CU_GEMV_MAX rows (decode) run in engine/cuda_moe.cu's
 * GEMV kernels straight on the bf16 (or f32) weights; more rows (prefill) go
 * through cublasGemmEx with f32 accumulation: f32 weights in f32, bf16 ones
 * on tensor cores against the activations split exactly into three bf16
 * parts (eng_cu_split3: an f32 GEMM's precision; 2.6-3.7x the prefill of
 * widening each matrix to f32 first).  Rounding the activations to bf16
 * instead (MOED_CUDA_BF16_ACTIVATIONS=1) flipped a near-tie in the router
 * of the olmoe_bf16 fixture (bench/results/cuda_correctness.md), so it is
 * opt-in.
 *
 * MoE layers, two ways with the same arithmetic (so the same bits):
 * - through the expert source: the routes come to the host (hooks, cache),
 *   the rows are grouped per expert, a layer's experts are acquired before
 *   any runs (their loads queue back to back while earlier ones compute),
 *   each expert runs over all its rows, then one kernel sums each row's
 *   experts in ascending order;
 * - fast: when every expert is resident for good (ld_expert_src.resident_all)
 *   and a step has at most ENG_CU_GEMV_MAX rows that all want logits, each
 *   a sequence of its own (decode), routing, grouping and the experts stay
 *   on the GPU and the whole step is one CUDA graph (one per row count): no
 *   host round trip per layer and no launch gaps.  Hooks that only observe
 *   run after the step; override_route (trust mode) needs the host, so it
 *   takes the first way.
 *   MOED_CUDA_GRAPHS=0 turns the fast way off; MOED_CUDA_PROFILE=1 times
 *   its steps (host and GPU) and prints the split when the engine closes.
 * Both ways launch their kernels as programmatic dependent launches
 * (engine/cuda_common.cuh; MOED_CUDA_PDL=0: plain launches). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_cuda_int.h"
#include "loader/clock.h"

static bool gemv_rows(int n, int in)
{
	return n <= GMAX && eng_cu_gemv_ok(in);
}

/* Whether a chunk of n rows runs all its GEMMs as GEMVs (the fast way's
 * condition). */
static bool all_gemv(const struct eng_cuda *g, int n)
{
	return n <= GMAX && g->gemv_dims;
}

/* y3 [3 m][out] = the products of W [out][in] (bf16) and xb's 3 m rows. */
static int gemm3(cublasHandle_t blas, float *y3, const void *xb, const void *w, int m, int in,
		 int out)
{
	const float one = 1.0f, zero = 0.0f;

	BL(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, out, 3 * m, in, &one, w, CUDA_R_16BF,
			in, xb, CUDA_R_16BF, in, &zero, y3, CUDA_R_32F, out, CUBLAS_COMPUTE_32F,
			CUBLAS_GEMM_DEFAULT));
	return 0;
}

/* y = W x' (+ y) for n rows x' of x (rows: their indices, NULL: x's first
 * n), W [out][in] bf16, on tensor cores through eng_cu_split3 (an f32
 * GEMM's precision; widening W to f32 for cuBLAS's f32 GEMM instead made
 * prefill 2.6-3.7x slower, bench/results/cuda_bench_s7.md), as many rows at
 * a time as y3 holds three products of. */
static int gemm_split(struct eng_cuda *g, float *y, const float *x, const int *rows,
		      const void *w, int n, int in, int out, int add)
{
	int p = (int)(g->y3n / (3 * (size_t)out));

	for (int t = 0; t < n; t += p) {
		int m = n - t < p ? n - t : p, rc;

		KR(eng_cu_split3(g->xb, rows ? x : x + (size_t)t * in, rows ? rows + t : NULL, m,
				 in, g->st));
		if ((rc = gemm3(g->blas, g->y3, g->xb, w, m, in, out)))
			return rc;
		KR(eng_cu_sum3(y + (size_t)t * out, g->y3, (size_t)m * out, add, g->st));
	}
	return 0;
}

/* The same through cuBLAS whatever n: f32 weights in f32, bf16 ones as
 * above or (MOED_CUDA_BF16_ACTIVATIONS) with activations rounded to bf16. */
static int gemm_big(struct eng_cuda *g, float *y, const float *x, const int *rows,
		    const void *w, int bf16, int n, int in, int out, int add)
{
	const float one = 1.0f, beta = add ? 1.0f : 0.0f;
	cudaDataType_t t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
	const void *b = x;

	if (bf16 && !g->act16)
		return gemm_split(g, y, x, rows, w, n, in, out, add);
	if (rows) {   /* in <= H: expert inputs */
		KR(eng_cu_gather(g->xe, x, rows, n, in, g->st));
		b = x = g->xe;
	}
	if (bf16) {
		KR(eng_cu_to_bf16(g->xb, x, (size_t)n * in, g->st));
		b = g->xb;
	}
	BL(cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, t, in, b, t,
			in, &beta, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return 0;
}

/* y[n][out] (+)= x[n][in] . W[out][in]^T, f32 accumulation and output, W
 * bf16 when bf16 (add: y += ..., y not aliasing x): GEMVs for a decode
 * step's few rows, else cuBLAS. */
static int gemm(struct eng_cuda *g, float *y, const float *x, const void *w, int bf16, int n,
		int in, int out, int add)
{
	if (gemv_rows(n, in)) {
		KR(eng_cu_gemv(y, out, x, in, w, bf16, n, in, out, add, g->st));
		return 0;
	}
	return gemm_big(g, y, x, NULL, w, bf16, n, in, out, add);
}

/* x's RMSNorm (weight w) into y, n rows. */
static int rmsnorm(struct eng_cuda *g, float *y, const float *x, const float *w, int n)
{
	KR(eng_cu_rmsnorm(y, x, w, n, g->H, (float)g->m->cfg.rms_eps, g->st));
	return 0;
}

/* Whether an expert's m rows of an n-row chunk run as GEMVs (the
 * grouped-expert kernels).  A decode step's rows always do (the fast step's
 * way: the same bits at every budget); in a prefill chunk only an expert's
 * one or two rows, as more took longer than cuBLAS (16 rows: 46 us for
 * gate/up alone, one expert). */
static bool expert_gemv(const struct eng_cuda *g, int n, int m)
{
	return gemv_rows(m, g->H) && eng_cu_gemv_ok(g->m->cfg.moe_intermediate_size) &&
	       (n <= GMAX || m <= 2);
}

/* The others: bf16 experts on tensor cores (gemm_split's arithmetic, the
 * layer's inputs split once by moe(), outputs added up after the last). */
static bool expert_split(const struct eng_cuda *g, int n, int m)
{
	return g->src.bf16 && !g->act16 && !expert_gemv(g, n, m);
}

/* Host side of routing: override_route, then the rows grouped per expert
 * (ascending expert id, rows ascending within one; the layout eng_cu_route's
 * grouping writes on the GPU), uploaded once.  *mmax: the most rows of one
 * expert. */
static int group(struct eng_cuda *g, const struct eng_hooks *h, const struct eng_cuda_row *rows,
		 int ml, int n, int *mmax)
{
	int E = g->E, K = g->K, total = n * K, j = 0;
	struct eng_cu_grp hg = g->hg;

	for (int t = 0; t < n && h->override_route; t++)
		h->override_route(h->ctx, rows[t].user, ml, rows[t].pos, rows[t].tok,
				  g->hid + (size_t)t * K, g->hw + (size_t)t * K, K,
				  g->hp + (size_t)t * E, E);
	memset(g->cnt, 0, (size_t)(E + 1) * sizeof(int));
	for (int i = 0; i < total; i++) {
		if (g->hid[i] < 0 || g->hid[i] >= E)
			return -EINVAL;
		g->cnt[g->hid[i] + 1]++;
	}
	*mmax = 0;
	for (int x = 0; x < E; x++) {
		int c = g->cnt[x + 1];

		if (c) {
			hg.xid[j] = x, hg.start[j] = g->cnt[x], hg.cnt[j] = c;
			*mmax = c > *mmax ? c : *mmax;
			j++;
		}
		g->cnt[x + 1] += g->cnt[x];
	}
	*hg.nact = j;
	/* cnt[x] is now expert x's first entry; filling advances it. */
	for (int i = 0; i < total; i++) {
		int at = g->cnt[g->hid[i]]++;

		hg.row[at] = i / K;
		hg.wt[at] = g->hw[i];
	}
	g->any_split = false;
	for (int x = 0; x < j; x++) {
		bool sp = expert_split(g, n, hg.cnt[x]);

		for (int e = hg.start[x]; e < hg.start[x] + hg.cnt[x]; e++)
			g->hej[e] = sp ? x : -1;
		g->any_split |= sp;
	}
	/* Each row's entries, ascending, for the combine. */
	int fill[C] = {0};
	for (int e = 0; e < total; e++) {
		int t = hg.row[e];

		g->hent[t * K + fill[t]++] = e;
	}
	CU(cudaMemcpyAsync(g->dgrpb, g->hgrpb, eng_cu_grp_bytes(E, g->NE),
			   cudaMemcpyHostToDevice, g->st));
	CU(cudaMemcpyAsync(g->dent, g->hent, (size_t)total * sizeof(int), cudaMemcpyHostToDevice,
			   g->st));
	if (g->any_split) {
		CU(cudaMemcpyAsync(g->dej, g->hej, (size_t)total * sizeof(int),
				   cudaMemcpyHostToDevice, g->st));
		KR(eng_cu_split3_entries(g->xbe, g->xn, g->H, g->dg, g->dej, total, g->st));
	}
	return 0;
}

/* expert_split's way for an expert's m entries from at (weights w), in the
 * three-part layout: inputs split by moe(), outputs into y3d for it to add
 * up.  (Experts on four side streams at once measured the same: 10687 /
 * 9222 tok/s prefill against 10270 / 9256, 2 x 256 / 4 x 512.) */
static int split_ffn(struct eng_cuda *g, const void *w, int at, int m)
{
	int H = g->H, I = g->m->cfg.moe_intermediate_size, rc;
	const void *down = (const char *)w + (size_t)2 * I * H * 2;
	uint16_t *xin = (uint16_t *)g->xbe + (size_t)3 * at * H;
	uint16_t *hid = (uint16_t *)g->xbe + (size_t)3 * g->NE * H + (size_t)3 * at * I;

	if ((rc = gemm3(g->blas, g->y3, xin, w, m, H, 2 * I)))   /* y3: 3 m <= 3 C rows */
		return rc;
	KR(eng_cu_silu_split3(hid, g->y3, m, I, g->st));
	return gemm3(g->blas, g->y3d + (size_t)3 * at * H, hid, down, m, I, H);
}

/* Expert j of the groups (weights w, m rows from entry at) into eo, or into
 * y3d for expert_split's. */
static int expert_ffn(struct eng_cuda *g, int n, int j, const void *w, int at, int m)
{
	const struct ld_config *c = &g->m->cfg;
	int H = g->H, I = c->moe_intermediate_size, b = g->src.bf16, rc;
	const void *down = (const char *)w + (size_t)2 * I * H * (b ? 2 : 4);

	if (expert_gemv(g, n, m)) {
		KR(eng_cu_moe_gu(g->hb, g->xn, H, I, g->dg, NULL, w, b, j, 1, m, g->st));
		KR(eng_cu_moe_down(g->eo, g->hb, H, I, g->dg, NULL, w, b, j, 1, m, g->st));
		return 0;
	}
	if (expert_split(g, n, m))
		return split_ffn(g, w, at, m);
	float *hj = g->hb + (size_t)at * I;
	if ((rc = gemm_big(g, g->gu, g->xn, g->dg.row + at, w, b, m, H, 2 * I, 0)))
		return rc;
	KR(eng_cu_silu_mul(hj, g->gu, m, I, g->st));
	return gemm_big(g, g->eo + (size_t)at * H, hj, NULL, down, b, m, I, H, 0);
}

/* Acquires the layer's experts [*acq, nx) ahead of their compute, so that all
 * their loads queue back to back.  Those past `first` (the first not yet
 * run) go through acquire_ahead where the source has it (no waiting, no
 * taking prefetched experts' slots; xpend marks those still loading); stops
 * early (0) when a slot is not to be had that way or the slots are all held,
 * while acquired experts are still to run. */
static int acquire_ahead(struct eng_cuda *g, int ml, int nx, int first, int *acq)
{
	int rc;

	for (; *acq < nx; ++*acq) {
		int x = g->hg.xid[*acq];

		if (*acq > first && g->src.acquire_ahead)
			rc = g->src.acquire_ahead(g->src.ctx, ml, x, &g->xw[*acq]);
		else
			rc = g->src.acquire(g->src.ctx, ml, x, &g->xw[*acq]);
		if ((rc == -ENOSPC || rc == -EAGAIN) && *acq > first)
			return 0;
		if (rc < 0)
			return rc;
		g->xpend[*acq] = rc == 1;
		if (!g->xw[*acq]) {
			if (g->src.release)
				g->src.release(g->src.ctx, ml, x);
			return eng_cuda_fail("expert source", "no device pointer for an expert");
		}
	}
	return 0;
}

/* Which acquired expert (of [0, acq)) runs next: the first one not loading,
 * so that its compute overlaps the others' loads, else the first to run. */
static int next_expert(const struct eng_cuda *g, int acq)
{
	int j = -1;

	for (int i = 0; i < acq; i++)
		if (!g->xran[i]) {
			if (!g->xpend[i])
				return i;
			j = j < 0 ? i : j;
		}
	return j;
}

/* The experts among [0, acq) already loaded, when at least two and each
 * has at most GMAX rows (mmax): one gate/up and one down launch for all of
 * them (a table by expert id, NULL for the others, which those kernels
 * skip) instead of two each, so the host queues a decode layer's hits
 * quickly.  Same kernels, same bits. */
static int run_loaded(struct eng_cuda *g, int ml, int n, int acq, int mmax)
{
	const struct ld_config *c = &g->m->cfg;
	struct eng_cu_grp hg = g->hg;
	int H = g->H, I = c->moe_intermediate_size, b = g->src.bf16, nx = *hg.nact, k = 0;

	if (!expert_gemv(g, n, mmax))
		return 0;
	memset(g->hxtab, 0, (size_t)g->E * sizeof(void *));
	for (int j = 0; j < acq; j++)
		if (!g->xpend[j]) {
			g->hxtab[hg.xid[j]] = g->xw[j];
			k++;
		}
	if (k < 2)
		return 0;
	/* The previous layer's copy of hxtab ran before this layer's sync. */
	CU(cudaMemcpyAsync(g->dxtab, g->hxtab, (size_t)g->E * sizeof(void *),
			   cudaMemcpyHostToDevice, g->st));
	KR(eng_cu_moe_gu(g->hb, g->xn, H, I, g->dg, g->dxtab, NULL, b, 0, nx, mmax, g->st));
	KR(eng_cu_moe_down(g->eo, g->hb, H, I, g->dg, g->dxtab, NULL, b, 0, nx, mmax, g->st));
	for (int j = 0; j < acq; j++)
		if (!g->xpend[j]) {
			if (g->src.release)
				g->src.release(g->src.ctx, ml, hg.xid[j]);
			g->xran[j] = 1;
		}
	return 0;
}

/* Runs the grouped experts, the loaded ones first, acquiring ahead as far
 * as the slots allow; each is released once its kernels are queued (the
 * release records them as the slot's last use: a reload waits for them).
 * The order does not change the result: each entry has its own rows and
 * the combine adds them in entry order. */
static int experts(struct eng_cuda *g, const struct eng_hooks *h,
		   const struct eng_cuda_row *rows, int ml, int n, int mmax)
{
	struct eng_cu_grp hg = g->hg;
	int nx = *hg.nact, acq = 0, first = 0, K = g->K, rc;

	memset(g->xran, 0, (size_t)nx);
	if (!(rc = acquire_ahead(g, ml, nx, 0, &acq)))
		rc = run_loaded(g, ml, n, acq, mmax);
	/* The routes to the hooks only now: the prefetches they start for
	 * later layers queue behind this layer's loads (one copy stream) and
	 * take slots only after this layer's experts have theirs. */
	for (int t = 0; t < n && h->on_route && !rc; t++)
		h->on_route(h->ctx, rows[t].user, ml, rows[t].pos, rows[t].tok,
			    g->hid + (size_t)t * K, g->hw + (size_t)t * K, K);
	while (!rc) {
		while (first < nx && g->xran[first])
			first++;
		if (first == nx || (rc = acquire_ahead(g, ml, nx, first, &acq)))
			break;
		int j = next_expert(g, acq);
		g->xran[j] = 1;
		if (g->xpend[j] && (rc = g->src.order(g->src.ctx, ml, hg.xid[j])))
			break;   /* released by order() */
		rc = expert_ffn(g, n, j, g->xw[j], hg.start[j], hg.cnt[j]);
		if (g->src.release)
			g->src.release(g->src.ctx, ml, hg.xid[j]);
	}
	for (int i = first; i < acq; i++)   /* after a failure: the ones still held */
		if (!g->xran[i] && g->src.release)
			g->src.release(g->src.ctx, ml, hg.xid[i]);
	return rc;
}

/* The MoE input xn = RMSNorm(x) (mlp_norm), router logits into rlog and the
 * top-k into ids/w (grouped into dg when group): RMSNorm and one launch for
 * up to GMAX rows (one launch for up to two), else RMSNorm, a GEMM and
 * eng_cu_route. */
static int route(struct eng_cuda *g, const struct dlayer *d, int n, int *ids, float *w,
		 int group)
{
	int H = g->H, E = g->E, K = g->K, norm = g->m->cfg.norm_topk_prob, rc;
	float eps = (float)g->m->cfg.rms_eps;

	/* One or two rows: the router's launch normalises its input too.  For
	 * more, each of its blocks normalising every row cost more than the
	 * launch it saves (16 rows: 58.63 us against 36.14, cuda_kprof). */
	bool fuse = gemv_rows(n, H) && n <= 2;
	if (!fuse && (rc = rmsnorm(g, g->xn, g->x, d->mlp_norm, n)))
		return rc;
	if (gemv_rows(n, H)) {
		KR(eng_cu_router_route(g->rlog, fuse ? g->x : g->xn, d->router, n, H, E, K, norm,
				       ids, w, g->dg, group, g->done, fuse ? d->mlp_norm : NULL,
				       eps, g->xn, g->st));
		return 0;
	}
	if ((rc = gemm(g, g->rlog, g->xn, d->router, 0, n, H, E, 0)))
		return rc;
	KR(eng_cu_route(g->rlog, ids, w, n, E, K, norm, g->dg, group, g->st));
	return 0;
}

/* A MoE layer through the expert source; adds into x. */
static int moe(struct eng_cuda *g, const struct eng_hooks *h, const struct dlayer *d,
	       const struct eng_cuda_row *rows, int ml, int n)
{
	int H = g->H, E = g->E, K = g->K, rc, mmax;
	size_t nk = (size_t)n * K;

	if ((rc = route(g, d, n, g->rid, g->rw, 0)))
		return rc;
	CU(cudaMemcpyAsync(g->hid, g->rid, nk * sizeof(int), cudaMemcpyDeviceToHost, g->st));
	CU(cudaMemcpyAsync(g->hw, g->rw, nk * sizeof(float), cudaMemcpyDeviceToHost, g->st));
	if (h->override_route)
		CU(cudaMemcpyAsync(g->hp, g->rlog, (size_t)n * E * sizeof(float),
				   cudaMemcpyDeviceToHost, g->st));
	CU(cudaStreamSynchronize(g->st));
	if ((rc = group(g, h, rows, ml, n, &mmax)) || (rc = experts(g, h, rows, ml, n, mmax)))
		return rc;
	if (g->any_split)
		KR(eng_cu_sum3_entries(g->eo, g->y3d, H, g->dg, g->dej, (int)nk, g->st));
	KR(eng_cu_moe_combine(g->x, g->eo, H, g->dg.wt, g->dent, K, n, g->st));
	return 0;
}

/* A MoE layer of a fast step: everything on the GPU, routes recorded for
 * the hooks. */
static int moe_fast(struct eng_cuda *g, const struct dlayer *d, int ml, int n)
{
	const struct ld_config *c = &g->m->cfg;
	int H = g->H, E = g->E, K = g->K, I = c->moe_intermediate_size, b = g->src.bf16;
	int nj = n * K < E ? n * K : E, rc;
	const void *const *tab = g->dtab + (size_t)ml * E;
	size_t at = (size_t)ml * GMAX * K;

	if ((rc = route(g, d, n, g->fr_id + at, g->fr_w + at, 1)))
		return rc;
	KR(eng_cu_moe_gu(g->hb, g->xn, H, I, g->dg, tab, NULL, b, 0, nj, n, g->st));
	KR(eng_cu_moe_down_add(g->x, g->hb, H, I, g->dg, tab, b, n, K, g->st));
	return 0;
}

/* RMSNorm and q/k/v in one GEMM; the family's q/k norms, clipping, RoPE and
 * the KV store in attention's launch when every row is a sequence of its
 * own, else in a launch before it; attention; the output projection added
 * into x. */
static int attn(struct eng_cuda *g, const struct dlayer *d, int li, int n)
{
	const struct ld_config *c = &g->m->cfg;
	int H = g->H, hd = c->head_dim, D = g->D, qd = g->qd, rc;
	struct eng_cu_prep p = {
		g->qkv, D, c->family == LD_OLMOE ? 1 : c->family == LD_QWEN3_MOE ? 2 : 0,
		d->q_norm, d->k_norm, (float)c->rms_eps, c->clip_qkv > 0 ? (float)c->clip_qkv : 0,
		g->inv_freq};

	/* The norm inside the GEMV (each block normalising the row into shared
	 * memory) took 14.90 us against 3.38 + 6.84 (bench/cuda_kprof, H200). */
	if ((rc = rmsnorm(g, g->xn, g->x, d->attn_norm, n)) ||
	    (rc = gemm(g, g->qkv, g->xn, d->qkv, g->bf16, n, H, D, 0)))
		return rc;
	if (!g->one_each)
		KR(eng_cu_qk_prep(g->q, &p, &g->rows, li, n, c->n_heads, c->n_kv_heads, hd, g->st));
	KR(eng_cu_attention(g->att, g->q, qd, g->one_each ? &p : NULL, &g->rows, li, n,
			    c->n_heads, c->n_kv_heads, hd, g->apart, g->done + 1, g->max_ctx,
			    g->st));
	return gemm(g, g->x, g->att, d->o, g->bf16, n, qd, H, 1);
}

/* One layer; h and rows NULL: the fast step's MoE. */
static int layer(struct eng_cuda *g, const struct eng_hooks *h,
		 const struct eng_cuda_row *rows, int li, int n)
{
	const struct ld_config *c = &g->m->cfg;
	const struct ld_layer *L = &g->m->layers[li];
	const struct dlayer *d = &g->L[li];
	int H = g->H, I = c->intermediate_size, rc;

	if ((rc = attn(g, d, li, n)))
		return rc;
	if (L->moe_index >= 0 && !h)
		return moe_fast(g, d, L->moe_index, n);
	if (L->moe_index >= 0) {
		if (h->before_moe)
			h->before_moe(h->ctx, L->moe_index, g->hrow->tok, n);
		return moe(g, h, d, rows, L->moe_index, n);
	}
	/* MoE layers normalise in route(). */
	if ((rc = rmsnorm(g, g->xn, g->x, d->mlp_norm, n)) ||
	    (rc = gemm(g, g->gu, g->xn, d->mlp_gu, g->bf16, n, H, 2 * I, 0)))
		return rc;
	KR(eng_cu_silu_mul(g->h, g->gu, n, I, g->st));
	return gemm(g, g->x, g->h, d->mlp_down, g->bf16, n, I, H, 1);
}

/* Final norm and lm_head for the m rows that want logits (drow->sel), queued. */
static int head(struct eng_cuda *g, int m)
{
	const struct ld_config *c = &g->m->cfg;
	int H = g->H, V = c->vocab_size, rc;

	KR(eng_cu_gather(g->xe, g->x, g->drow->sel, m, H, g->st));
	if ((rc = rmsnorm(g, g->xn, g->xe, g->final_norm, m)))
		return rc;
	return gemm(g, g->logits, g->xn, g->lm_head, g->bf16, m, H, V, 0);
}

/* The logits of the m selected rows to the host, after a synchronize. */
static int logits_out(struct eng_cuda *g, int m, float *logits)
{
	int V = g->m->cfg.vocab_size;

	CU(cudaMemcpyAsync(g->hlog, g->logits, (size_t)m * V * sizeof(float),
			   cudaMemcpyDeviceToHost, g->st));
	CU(cudaStreamSynchronize(g->st));
	for (int i = 0; i < m; i++)
		memcpy(logits + (size_t)g->hrow->out[g->hrow->sel[i]] * V,
		       g->hlog + (size_t)i * V, (size_t)V * sizeof(float));
	return 0;
}

/* The whole fast step for n rows, queued (captured into a graph). */
static int fast_body(struct eng_cuda *g, int n)
{
	const struct ld_config *c = &g->m->cfg;
	int rc;

	KR(eng_cu_embed(g->x, g->embed, g->bf16, g->rows.tok, n, g->H, g->st));
	for (int li = 0; li < c->n_layers; li++)
		if ((rc = layer(g, NULL, NULL, li, n)))
			return rc;
	return head(g, n);
}

static int capture(struct eng_cuda *g, int n)
{
	cudaGraph_t gr = NULL;
	int rc;

	CU(cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal));
	rc = fast_body(g, n);
	cudaError_t e = cudaStreamEndCapture(g->st, &gr);
	if (!rc && e != cudaSuccess)
		rc = eng_cuda_fail("cudaStreamEndCapture", cudaGetErrorString(e));
	if (!rc && (e = cudaGraphInstantiate(&g->gx[n], gr, 0)) != cudaSuccess)
		rc = eng_cuda_fail("cudaGraphInstantiate", cudaGetErrorString(e));
	if (gr)
		cudaGraphDestroy(gr);
	if (rc)
		g->gx[n] = NULL;
	return rc;
}

/* Whether this chunk can take the fast way; uploads the experts' table the
 * first time the source says all are resident. */
static bool fast_ok(struct eng_cuda *g, const struct eng_hooks *h, int n, int m)
{
	const struct ld_config *c = &g->m->cfg;

	if (!g->graphs || m != n || !g->one_each || h->override_route || !g->src.resident_all ||
	    !all_gemv(g, n))
		return false;
	if (!g->have_tab) {
		const void *const *t = g->src.resident_all(g->src.ctx);
		size_t bytes = (size_t)c->n_moe_layers * g->E * sizeof(void *);

		if (!t || cudaMemcpy(g->dtab, t, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
			return false;
		g->have_tab = true;
	}
	return true;
}

/* Distinct ids among ids[0..n) (each < 1024). */
static int distinct(const int *ids, int n)
{
	uint32_t seen[1024 / 32] = {0};
	int d = 0;

	for (int i = 0; i < n; i++) {
		uint32_t b = 1u << (ids[i] & 31);

		d += !(seen[ids[i] >> 5] & b);
		seen[ids[i] >> 5] |= b;
	}
	return d;
}

/* The hooks of a fast step: before_moe of every layer ahead of it, the
 * routes after it. */
/* MOED_CUDA_PROFILE: host time before the launch, GPU time of the graph,
 * the wait for it, host time after, and the caller's time between steps. */
static void prof_step(struct eng_cuda *g, const double t[4])
{
	float ms = 0;

	cudaEventElapsedTime(&ms, g->pev[0], g->pev[1]);
	g->p_pre += t[1] - t[0];
	g->p_gpu += ms * 1e-3;
	g->p_wait += t[2] - t[1];
	g->p_post += t[3] - t[2];
	if (g->p_last > 0)
		g->p_between += t[0] - g->p_last;
	g->p_last = t[3];
}

void eng_cuda_prof_print(const struct eng_cuda *g)
{
	double n = g->fast_steps ? (double)g->fast_steps : 1;

	if (g->prof && g->fast_steps)
		fprintf(stderr, "moed: cuda profile: %llu fast steps, per step (us): host before "
			"launch %.1f, graph on GPU %.1f, launch to logits on host %.1f, host "
			"after %.1f, caller between steps %.1f\n",
			(unsigned long long)g->fast_steps, g->p_pre / n * 1e6, g->p_gpu / n * 1e6,
			g->p_wait / n * 1e6, g->p_post / n * 1e6, g->p_between / n * 1e6);
}

static int fast_chunk(struct eng_cuda *g, const struct eng_hooks *h,
		      const struct eng_cuda_row *rows, int n, float *logits)
{
	const struct ld_config *c = &g->m->cfg;
	int K = g->K, rc;
	size_t fr = (size_t)c->n_moe_layers * GMAX * K;
	double tm[4] = {g->prof ? ld_now() : 0, 0, 0, 0};

	for (int ml = 0; ml < c->n_moe_layers && h->before_moe; ml++)
		h->before_moe(h->ctx, ml, g->hrow->tok, n);
	if (!g->gx[n] && (rc = capture(g, n)))
		return rc;
	if (g->prof) {
		tm[1] = ld_now();
		cudaEventRecord(g->pev[0], g->st);
	}
	CU(cudaGraphLaunch(g->gx[n], g->st));
	if (g->prof)
		cudaEventRecord(g->pev[1], g->st);
	CU(cudaMemcpyAsync(g->hfr_id, g->fr_id, fr * sizeof(int), cudaMemcpyDeviceToHost,
			   g->st));
	CU(cudaMemcpyAsync(g->hfr_w, g->fr_w, fr * sizeof(float), cudaMemcpyDeviceToHost,
			   g->st));
	if ((rc = logits_out(g, n, logits)))
		return rc;
	if (g->prof)
		tm[2] = ld_now();
	g->fast_steps++;
	for (int ml = 0; ml < c->n_moe_layers; ml++) {
		/* One hit per expert used, as acquires count them. */
		g->lhits[ml] = distinct(g->hfr_id + (size_t)ml * GMAX * K, n * K);
		for (int t = 0; t < n && h->on_route; t++) {
			size_t at = ((size_t)ml * GMAX + t) * K;
			h->on_route(h->ctx, rows[t].user, ml, rows[t].pos, rows[t].tok,
				    g->hfr_id + at, g->hfr_w + at, K);
		}
	}
	if (g->src.note_hits)
		g->src.note_hits(g->src.ctx, g->lhits);
	if (g->prof) {
		tm[3] = ld_now();
		prof_step(g, tm);
	}
	return 0;
}

/* Whether every row is a sequence of its own (its one new position). */
static bool one_each(const struct eng_cuda_row *rows, int n)
{
	for (int t = 1; t < n; t++)
		for (int u = 0; u < t; u++)
			if (rows[t].kc == rows[u].kc)
				return false;
	return true;
}

int eng_cuda_chunk(struct eng_cuda *g, const struct eng_hooks *h,
		   const struct eng_cuda_row *rows, int n, float *logits)
{
	const struct ld_config *c = &g->m->cfg;
	struct rowtab *r = g->hrow;
	int rc = 0, m = 0;

	if (n < 1 || n > C)
		return -EINVAL;
	CU(cudaSetDevice(g->dev));
	/* The previous chunk ended with a synchronize: r is free to refill. */
	for (int t = 0; t < n; t++) {
		r->kc[t] = rows[t].kc;
		r->vc[t] = rows[t].vc;
		r->tok[t] = rows[t].tok;
		r->pos[t] = rows[t].pos;
		r->cap[t] = rows[t].cap;
		r->out[t] = rows[t].out;
		if (rows[t].out >= 0)
			r->sel[m++] = t;
	}
	g->one_each = one_each(rows, n);
	CU(cudaMemcpyAsync(g->drow, r, sizeof(*r), cudaMemcpyHostToDevice, g->st));
	if (logits && fast_ok(g, h, n, m)) {
		rc = fast_chunk(g, h, rows, n, logits);
		goto out;
	}
	KR(eng_cu_embed(g->x, g->embed, g->bf16, g->rows.tok, n, g->H, g->st));
	for (int li = 0; li < c->n_layers; li++)
		if ((rc = layer(g, h, rows, li, n)))
			goto out;
	if (m && logits && !(rc = head(g, m)))
		rc = logits_out(g, m, logits);
out:
	if (cudaStreamSynchronize(g->st) != cudaSuccess && !rc)
		rc = eng_cuda_fail("cudaStreamSynchronize", cudaGetErrorString(cudaGetLastError()));
	return rc;
}

uint64_t eng_cuda_fast_steps(const struct eng_cuda *g)
{
	return g->fast_steps;
}
