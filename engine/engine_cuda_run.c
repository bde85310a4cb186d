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
 * - through the expert source (engine_cuda_moe.c): the routes come to the
 *   host (hooks, cache), the rows are grouped per expert, a layer's experts
 *   are acquired before any runs (their loads queue back to back while
 *   earlier ones compute), each expert runs over all its rows, then one
 *   kernel sums each row's experts in ascending order;
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
#include <stdlib.h>
#include <string.h>

#include "engine/engine_cuda_int.h"
#include "loader/clock.h"

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
int eng_cuda_gemm_big(struct eng_cuda *g, float *y, const float *x, const int *rows,
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
	if (eng_cuda_gemv_rows(n, in)) {
		KR(eng_cu_gemv(y, out, x, in, w, bf16, n, in, out, add, g->st));
		return 0;
	}
	return eng_cuda_gemm_big(g, y, x, NULL, w, bf16, n, in, out, add);
}

/* x's RMSNorm (weight w) into y, n rows. */
static int rmsnorm(struct eng_cuda *g, float *y, const float *x, const float *w, int n)
{
	KR(eng_cu_rmsnorm(y, x, w, n, g->H, (float)g->m->cfg.rms_eps, g->st));
	return 0;
}

/* y[n][out] = RMSNorm(x; nw) . W^T: a GEMV that normalises as it reads (xn
 * its scratch), whose bits differ from RMSNorm's by a rounding, else
 * RMSNorm into xn and the GEMM (MOED_CUDA_NORM_GEMV=0 turns that GEMV off).
 * host: y is pinned host memory (eng_cu_gemv_norm's). */
static int gemm_norm(struct eng_cuda *g, float *y, const float *x, const float *nw,
		     const void *w, int n, int in, int out, struct eng_cu_host_y *host)
{
	int rc;

	if (g->norm_gemv && eng_cuda_gemv_rows(n, in) && out > ENG_CU_SPLIT_ROWS) {
		KR(eng_cu_gemv_norm(y, x, nw, (float)g->m->cfg.rms_eps, w, g->bf16, n, in, out,
				    g->xn, host, g->st));
		return 0;
	}
	if ((rc = rmsnorm(g, g->xn, x, nw, n)))
		return rc;
	if (host && eng_cuda_gemv_rows(n, in) && out <= ENG_CU_SPLIT_ROWS) {
		KR(eng_cu_gemv_host(y, g->xn, w, g->bf16, n, in, out, host, g->st));
		return 0;
	}
	return gemm(g, y, g->xn, w, g->bf16, n, in, out, 0);
}

/* The MoE input xn = RMSNorm(x) (mlp_norm), router logits into rlog and the
 * top-k into ids/w (grouped into dg when group): RMSNorm and one launch for
 * up to GMAX rows (one launch for up to two), else RMSNorm, a GEMM and
 * eng_cu_route.  pout: the probabilities there too, and xh: the rows of xn
 * (the one launch's way only, eng_cuda_gemv_rows(n, H); else NULL). */
int eng_cuda_route(struct eng_cuda *g, const struct dlayer *d, int n, int *ids, float *w,
		   int group, const void *const *tab, float *pout, float *xh)
{
	int H = g->H, E = g->E, K = g->K, norm = g->m->cfg.norm_topk_prob, rc;
	float eps = (float)g->m->cfg.rms_eps;

	/* One or two rows: the router's launch normalises its input too.  For
	 * more, each of its blocks normalising every row cost more than the
	 * launch it saves (16 rows: 58.63 us against 36.14, cuda_kprof). */
	bool fuse = eng_cuda_gemv_rows(n, H) && n <= 2;
	if (!fuse && (rc = rmsnorm(g, g->xn, g->x, d->mlp_norm, n)))
		return rc;
	if (eng_cuda_gemv_rows(n, H)) {
		KR(eng_cu_router_route(g->rlog, fuse ? g->x : g->xn, d->router, n, H, E, K, norm,
				       ids, w, g->dg, group, g->done, fuse ? d->mlp_norm : NULL,
				       eps, g->xn, tab, pout, xh, g->st));
		return 0;
	}
	if (pout || xh)
		return -EINVAL;
	if ((rc = gemm(g, g->rlog, g->xn, d->router, 0, n, H, E, 0)))
		return rc;
	KR(eng_cu_route(g->rlog, ids, w, n, E, K, norm, g->dg, group, tab, g->st));
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
	int *ids = (g->zcap ? g->hfr_id : g->fr_id) + at;
	float *w = (g->zcap ? g->hfr_w : g->fr_w) + at;

	eng_cuda_grp_layout(g, n * K);   /* the router's grouping: n rows' entries */
	/* The router writes the experts' weights for the expert kernels (the
	 * route kernels take up to ENG_CU_WP_MAX experts that way). */
	if (E <= ENG_CU_WP_MAX)
		g->dg.wp = g->dwp;
	if ((rc = eng_cuda_route(g, d, n, ids, w, 1, g->dg.wp ? tab : NULL, NULL, NULL)))
		return rc;
	/* Over the few-rows bound, the experts of few rows take kernels of
	 * their own (eng_cu_moe_experts): down and combine apart, not in one
	 * launch whose kernel suits only one row count. */
	if (n > ENG_CU_FEW_ROWS) {
		KR(eng_cu_moe_experts(g->hb, g->eo, g->xn, H, I, g->dg, tab, b, nj, n, g->st));
		KR(eng_cu_moe_combine_grp(g->x, g->eo, H, g->dg, n, n * K, g->st));
		return 0;
	}
	KR(eng_cu_moe_gu(g->hb, g->xn, H, I, g->dg, tab, NULL, b, 0, nj, n, ENG_CU_ALL, g->st));
	KR(eng_cu_moe_down_add(g->x, g->hb, H, I, g->dg, tab, b, n, K, g->st));
	return 0;
}

/* RMSNorm and q/k/v in one GEMM; the family's q/k norms, clipping, RoPE and
 * the KV store in attention's launch when every row is a sequence of its
 * own, else in a launch before it; attention (tiled for a prefill chunk of
 * long runs of rows per sequence); the output projection added into x. */
static int attn(struct eng_cuda *g, const struct dlayer *d, int li, int n)
{
	const struct ld_config *c = &g->m->cfg;
	int H = g->H, hd = c->head_dim, D = g->D, qd = g->qd, rc;
	struct eng_cu_prep p = {
		g->qkv, D, c->family == LD_OLMOE ? 1 : c->family == LD_QWEN3_MOE ? 2 : 0,
		d->q_norm, d->k_norm, (float)c->rms_eps, c->clip_qkv > 0 ? (float)c->clip_qkv : 0,
		g->inv_freq};

	if ((rc = gemm_norm(g, g->qkv, g->x, d->attn_norm, d->qkv, n, H, D, NULL)))
		return rc;
	if (!g->one_each)
		KR(eng_cu_qk_prep(g->q, &p, &g->rows, li, n, c->n_heads, c->n_kv_heads, hd, g->st));
	if (g->att_tiles)
		KR(eng_cu_attention_tiles(g->att, g->q, qd, &g->rows, li, n, c->n_heads,
					  c->n_kv_heads, hd, g->st));
	else
		KR(eng_cu_attention(g->att, g->q, qd, g->one_each ? &p : NULL, &g->rows, li, n,
				    c->n_heads, c->n_kv_heads, hd, g->apart, g->done + 1,
				    g->max_ctx, g->st));
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
	eng_cuda_routes_out(g, h);
	if (L->moe_index >= 0) {
		if (h->before_moe)
			h->before_moe(h->ctx, L->moe_index, g->hrow->tok, n);
		return eng_cuda_moe(g, h, d, rows, L->moe_index, n);
	}
	/* MoE layers normalise in eng_cuda_route(). */
	if ((rc = gemm_norm(g, g->gu, g->x, d->mlp_norm, d->mlp_gu, n, H, 2 * I, NULL)))
		return rc;
	KR(eng_cu_silu_mul(g->h, g->gu, n, I, g->st));
	return gemm(g, g->x, g->h, d->mlp_down, g->bf16, n, I, H, 1);
}

/* Final norm and lm_head for the m of n rows that want logits (drow->sel),
 * queued; all n (a decode step): sel is 0 .. n - 1, no gather.  A
 * zero-copy capture's logits go to hlog, each row's argmax to hbest
 * (best_in[n] says whether it does). */
static int head(struct eng_cuda *g, int m, int n)
{
	const struct ld_config *c = &g->m->cfg;
	int H = g->H, V = c->vocab_size, rc;
	struct eng_cu_host_y hy = {g->amk, (unsigned *)(g->amk + GMAX), g->hbest, 0};

	if (m < n)
		KR(eng_cu_gather(g->xe, g->x, g->drow->sel, m, H, g->st));
	rc = gemm_norm(g, g->zcap ? g->hlog : g->logits, m < n ? g->xe : g->x, g->final_norm,
		       g->lm_head, m, H, V, g->zcap ? &hy : NULL);
	if (g->zcap)
		g->best_in[n] = hy.ok;
	return rc;
}

int eng_cuda_row_argmax(const struct eng_cuda *g, const float *row)
{
	int V = g->m->cfg.vocab_size;

	for (int t = 0; t < g->best_n; t++)
		if (row == g->best_at + (size_t)g->hrow->out[g->hrow->sel[t]] * V)
			return g->hbest[t];
	return -1;
}

float *eng_cuda_logits_buffer(struct eng_cuda *g)
{
	return g->hlog;
}

/* The logits of the m selected rows to the host, after a synchronize; with
 * routes, a fast step's routes (fr_id, fr_w: just before the logits) in the
 * same copy.  When logits is hlog itself (eng_logits_buffer), rows that
 * stay in place take no host copy, and the others are copied from the GPU
 * straight to their rows (those of earlier chunks of a batch are kept).
 * zc: a zero-copy step's, already in hlog's rows 0 .. m - 1 (in place when
 * logits is hlog). */
static int logits_out(struct eng_cuda *g, int m, float *logits, bool routes, bool zc)
{
	int V = g->m->cfg.vocab_size, lead = m;
	size_t rb = routes ? (size_t)((char *)g->logits - (char *)g->fr_id) : 0;
	size_t row = (size_t)V * sizeof(float);
	const struct rowtab *r = g->hrow;
	bool own = logits == g->hlog;

	if (own && !zc)   /* rows in place, 0 .. lead - 1: one copy */
		for (lead = 0; lead < m && r->out[r->sel[lead]] == lead; lead++)
			;
	if (!zc)
		CU(cudaMemcpyAsync((char *)g->hlog - rb, (char *)g->logits - rb,
				   rb + (size_t)lead * row, cudaMemcpyDeviceToHost, g->st));
	for (int i = lead; i < m; i++)   /* own rows elsewhere (lead == m otherwise) */
		CU(cudaMemcpyAsync(logits + (size_t)r->out[r->sel[i]] * V, g->logits + (size_t)i * V,
				   row, cudaMemcpyDeviceToHost, g->st));
	CU(cudaStreamSynchronize(g->st));
	for (int i = 0; i < m && !own; i++)
		memcpy(logits + (size_t)r->out[r->sel[i]] * V, g->hlog + (size_t)i * V, row);
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
	return head(g, n, n);
}

int eng_cuda_capture(struct eng_cuda *g, int n, int z, cudaGraphExec_t *gx)
{
	cudaGraph_t gr = NULL;
	int rc;

	CU(cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal));
	g->zcap = z;
	rc = fast_body(g, n);
	g->zcap = false;
	cudaError_t e = cudaStreamEndCapture(g->st, &gr);
	if (!rc && e != cudaSuccess)
		rc = eng_cuda_fail("cudaStreamEndCapture", cudaGetErrorString(e));
	if (!rc && (e = cudaGraphInstantiate(gx, gr, 0)) != cudaSuccess)
		rc = eng_cuda_fail("cudaGraphInstantiate", cudaGetErrorString(e));
	if (gr)
		cudaGraphDestroy(gr);
	if (rc)
		*gx = NULL;
	return rc;
}

/* Whether this chunk can take the fast way; uploads the experts' table the
 * first time the source says all are resident. */
bool eng_cuda_fast_ok(struct eng_cuda *g, const struct eng_hooks *h, int n, int m)
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

/* Whether a fast step of n rows writes its routes and logits to the host
 * itself: allowed, the router's fast way (route_block's: it never reads
 * its ids back), and the rows in place when logits is the engine's buffer
 * (else earlier chunks' rows 0 .. n - 1 there would be overwritten). */
static int zero_copy(const struct eng_cuda *g, int n, const float *logits)
{
	const struct rowtab *r = g->hrow;

	if (!g->zout || !eng_cu_route_fast(n, g->E))
		return 0;
	for (int i = 0; i < n && logits == g->hlog; i++)
		if (r->out[r->sel[i]] != i)
			return 0;
	return 1;
}

void eng_cuda_fast_routes(struct eng_cuda *g, const struct eng_hooks *h,
			  const struct eng_cuda_row *rows, int n, const int *fr_id,
			  const float *fr_w)
{
	int K = g->K, L = g->m->cfg.n_moe_layers;

	g->fast_steps++;
	for (int ml = 0; ml < L; ml++) {
		/* One hit per expert used, as acquires count them. */
		g->lhits[ml] = distinct(fr_id + (size_t)ml * GMAX * K, n * K);
		for (int t = 0; t < n && h->on_route; t++) {
			size_t at = ((size_t)ml * GMAX + t) * K;
			h->on_route(h->ctx, rows[t].user, ml, rows[t].pos, rows[t].tok, fr_id + at,
				    fr_w + at, K);
		}
	}
	if (g->src.note_hits)
		g->src.note_hits(g->src.ctx, g->lhits);
}

/* A fast step (one graph for n rows); the hooks: before_moe of every layer
 * ahead of it, the routes after it. */
static int fast_chunk(struct eng_cuda *g, const struct eng_hooks *h,
		      const struct eng_cuda_row *rows, int n, float *logits)
{
	const struct ld_config *c = &g->m->cfg;
	int rc, z = zero_copy(g, n, logits);
	double tm[4] = {g->prof ? ld_now() : 0, 0, 0, 0};

	for (int ml = 0; ml < c->n_moe_layers && h->before_moe; ml++)
		h->before_moe(h->ctx, ml, g->hrow->tok, n);
	if (!g->gx[z][n] && (rc = eng_cuda_capture(g, n, z, &g->gx[z][n])))
		return rc;
	if (g->prof) {
		tm[1] = ld_now();
		cudaEventRecord(g->pev[0], g->st);
	}
	CU(cudaGraphLaunch(g->gx[z][n], g->st));
	if (g->prof)
		cudaEventRecord(g->pev[1], g->st);
	if ((rc = logits_out(g, n, logits, true, z)))
		return rc;
	g->best_n = z && g->best_in[n] && g->argmax ? n : 0;
	g->best_at = logits;
	if (g->prof)
		tm[2] = ld_now();
	eng_cuda_fast_routes(g, h, rows, n, g->hfr_id, g->hfr_w);
	if (g->prof) {
		tm[3] = ld_now();
		eng_cuda_prof_step(g, tm);
	}
	return 0;
}

/* Rows of chunk k of an n-row call. */
static int chunk_rows(int n, int k)
{
	return n - k * C < C ? n - k * C : C;
}

/* A call of more than C rows (a long prompt, or many): its chunks of C rows
 * go through each layer in turn before any goes on to the next, so that at
 * a budget a layer's experts, acquired by the first chunk, are there for
 * the others (the cache keeps the current layer's; a chunk at a time, the
 * next chunk found them evicted by the layers after).  A chunk's rows attend
 * to the earlier chunks' keys and values of the same layer, written by then,
 * and take the same kernels with the same rows as run alone: the same bits. */
static int chunks(struct eng_cuda *g, const struct eng_hooks *h,
		  const struct eng_cuda_row *rows, int n, float *logits)
{
	int nc = (n + C - 1) / C, m[ENG_CUDA_CALL_CHUNKS], rc;
	bool ahead = g->ahead && g->src.prefetch_layer && g->src.unpin_layer;

	if ((rc = eng_cuda_chunks_alloc(g, nc)))
		return rc;
	for (int k = 0; k < nc; k++) {
		eng_cuda_use_chunk(g, k);
		m[k] = eng_cuda_rows_in(g, rows + k * C, chunk_rows(n, k));
		g->c_one[k] = g->one_each, g->c_tiles[k] = g->att_tiles;
		CU(cudaMemcpyAsync(g->drow, g->hrow, sizeof(*g->hrow), cudaMemcpyHostToDevice,
				   g->st));
		KR(eng_cu_embed(g->x, g->embed, g->bf16, g->rows.tok, chunk_rows(n, k), g->H,
				g->st));
	}
	for (int li = 0; li < g->m->cfg.n_layers && !rc; li++) {
		int ml = g->m->layers[li].moe_index;

		for (int k = 0; k < nc && !rc; k++) {
			eng_cuda_use_chunk(g, k);
			rc = layer(g, h, rows + k * C, li, chunk_rows(n, k));
			/* The first chunk's loads queued: the next MoE layer's
			 * experts copy while the rest of this layer computes. */
			if (ahead && !rc && k == 0 && ml >= 0 && ml + 1 < g->m->cfg.n_moe_layers)
				g->src.prefetch_layer(g->src.ctx, ml + 1);
		}
		if (ahead && ml > 0)
			g->src.unpin_layer(g->src.ctx, ml);
	}
	if (ahead && rc)   /* a failed call's pins go too */
		g->src.unpin_layer(g->src.ctx, -1);
	eng_cuda_routes_out(g, h);
	for (int k = 0; k < nc && !rc && logits; k++)
		if (m[k]) {
			eng_cuda_use_chunk(g, k);
			if (!(rc = head(g, m[k], chunk_rows(n, k))))
				rc = logits_out(g, m[k], logits, false, false);
		}
	return rc;
}

int eng_cuda_chunk(struct eng_cuda *g, const struct eng_hooks *h,
		   const struct eng_cuda_row *rows, int n, float *logits)
{
	const struct ld_config *c = &g->m->cfg;
	int rc = 0, m;

	if (n < 1 || n > eng_cuda_call_rows(g))
		return -EINVAL;
	CU(cudaSetDevice(g->dev));
	g->best_n = 0;
	if (n > C) {
		rc = chunks(g, h, rows, n, logits);
		eng_cuda_use_chunk(g, 0);
		goto out;
	}
	m = eng_cuda_rows_in(g, rows, n);
	CU(cudaMemcpyAsync(g->drow, g->hrow, sizeof(*g->hrow), cudaMemcpyHostToDevice, g->st));
	if (logits && eng_cuda_fast_ok(g, h, n, m)) {
		rc = fast_chunk(g, h, rows, n, logits);
		goto out;
	}
	KR(eng_cu_embed(g->x, g->embed, g->bf16, g->rows.tok, n, g->H, g->st));
	for (int li = 0; li < c->n_layers; li++)
		if ((rc = layer(g, h, rows, li, n)))
			goto out;
	if (m && logits)
		rc = head(g, m, n);
	eng_cuda_routes_out(g, h);
	if (!rc && m && logits)
		rc = logits_out(g, m, logits, false, false);
out:
	g->pn = 0;   /* a failed step's held routes go nowhere */
	if (cudaStreamSynchronize(g->st) != cudaSuccess && !rc)
		rc = eng_cuda_fail("cudaStreamSynchronize", cudaGetErrorString(cudaGetLastError()));
	return rc;
}

uint64_t eng_cuda_fast_steps(const struct eng_cuda *g)
{
	return g->fast_steps;
}
