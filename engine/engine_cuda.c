/* CUDA forward pass: the CPU engine's math on one GPU.  Dense weights stay
 * resident on the device (bf16 for bf16 checkpoints, f32 otherwise; the
 * router always f32 so its top-k matches the CPU's); GEMMs go through
 * cublasGemmEx with f32 accumulation; the other steps are the kernels of
 * engine/cuda_kernels.cu.
 *
 * Activations stay f32: a bf16 weight matrix is widened (exactly) into an f32
 * scratch right before its GEMM.  Rounding the activations to bf16 instead
 * (tensor cores, MOED_CUDA_BF16_ACTIVATIONS=1) flipped a near-tie in the
 * router of the olmoe_bf16 fixture (bench/results/cuda_correctness.md), so
 * it is opt-in.  Experts come from the expert source as device
 * pointers (f32 slots of the CUDA backend); each expert runs once per MoE
 * layer over all the chunk's rows routed to it.  A layer's experts are
 * acquired before any of them runs (as far as the slots allow), so that
 * their loads queue back to back while earlier experts compute.  The routes come back to the
 * host once per MoE layer: the hooks and the cache (which expert to acquire)
 * live there. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_kernels.h"
#include "engine/engine_cuda.h"

#define C ENG_CUDA_MAX_ROWS

struct dlayer {
	void *qkv, *o;             /* [qd + 2 kvd][H], [H][qd]; dense dtype */
	void *mlp_gu, *mlp_down;   /* dense MLP layers: [2I][H], [H][I] */
	float *attn_norm, *mlp_norm, *q_norm, *k_norm;
	float *router;             /* [E][H], f32 */
};

/* The chunk's rows as the kernels read them; one pinned copy, one device copy. */
struct rowtab {
	float *kc[C], *vc[C];
	int tok[C], pos[C], cap[C], out[C];
	int sel[C];                /* the rows with out >= 0 */
};

struct eng_cuda {
	const struct ld_model *m;
	struct ld_expert_src src;
	int dev, max_ctx, qd, kvd, D, ni, bf16;
	bool act16;                /* bf16 activations on bf16 GEMMs (opt-in) */
	cudaStream_t st;
	bool own_stream;
	cublasHandle_t blas;
	struct dlayer *L;
	void *embed, *lm_head;
	float *final_norm, *inv_freq;
	/* device scratch, C rows */
	float *x, *xn, *qkv, *att, *tmp, *rlog, *rw, *xe, *gu, *h, *eo, *scores, *logits;
	void *xb;
	float *wf;                 /* a bf16 matrix widened to f32, [max dense] */
	int *rid, *dgrp;           /* dgrp: rows [C*K], then weights [C*K] as floats */
	struct rowtab *hrow, *drow;
	struct eng_cu_rows rows;   /* pointers into drow */
	/* pinned host */
	int *hgrp, *hid, *cnt;
	int *xid;                  /* a MoE layer's experts in use, ascending */
	const float **xw;          /* their weights, once acquired */
	float *hw, *hp, *hlog;
};

static int fail(const char *what, const char *why)
{
	fprintf(stderr, "moed: cuda engine: %s: %s\n", what, why);
	return -EIO;
}

#define CU(x) do { cudaError_t e_ = (x); \
	if (e_ != cudaSuccess) return fail(#x, cudaGetErrorString(e_)); } while (0)
#define KR(x) do { int e_ = (x); \
	if (e_) return fail(#x, cudaGetErrorString((cudaError_t)e_)); } while (0)
#define BL(x) do { cublasStatus_t e_ = (x); \
	if (e_ != CUBLAS_STATUS_SUCCESS) return fail(#x, cublasGetStatusString(e_)); } while (0)

static uint16_t to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);  /* quiet NaN */
	u += 0x7fffu + ((u >> 16) & 1u);           /* round to nearest even */
	return (uint16_t)(u >> 16);
}

/* Uploads parts[0..np) (counts[i] floats each) back to back as one device
 * array, converted to bf16 when bf16. */
static int upload(int bf16, const float *const *parts, const size_t *counts, int np,
		  void **out)
{
	size_t n = 0, es = bf16 ? 2 : 4, at = 0;
	uint8_t *buf;
	int rc = 0;

	for (int i = 0; i < np; i++)
		n += counts[i];
	size_t bytes = n ? n * es : 1;
	if (!(buf = malloc(bytes)))
		return -ENOMEM;
	for (int i = 0; i < np; i++)
		for (size_t j = 0; j < counts[i]; j++, at++) {
			if (bf16) {
				uint16_t b = to_bf16(parts[i][j]);
				memcpy(buf + at * 2, &b, 2);
			} else {
				memcpy(buf + at * 4, &parts[i][j], 4);
			}
		}
	cudaError_t e = cudaMalloc(out, bytes);
	if (e == cudaSuccess)
		e = cudaMemcpy(*out, buf, n * es, cudaMemcpyHostToDevice);
	if (e != cudaSuccess)
		rc = fail("uploading dense weights", cudaGetErrorString(e));
	free(buf);
	return rc;
}

static int up1(int bf16, const float *p, size_t n, void **out)
{
	if (!p) {
		*out = NULL;
		return 0;
	}
	return upload(bf16, &p, &n, 1, out);
}

static int upload_layer(struct eng_cuda *g, const struct ld_layer *L, struct dlayer *d)
{
	const struct ld_config *c = &g->m->cfg;
	size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
	size_t qkn[3] = {g->qd * H, g->kvd * H, g->kvd * H};
	const float *qkv[3] = {L->q, L->k, L->v};
	int b = g->bf16, rc;
	size_t qn = c->family == LD_QWEN3_MOE ? (size_t)c->head_dim : (size_t)g->qd;
	size_t kn = c->family == LD_QWEN3_MOE ? (size_t)c->head_dim : (size_t)g->kvd;

	if ((rc = upload(b, qkv, qkn, 3, &d->qkv)) || (rc = up1(b, L->o, H * g->qd, &d->o)) ||
	    (rc = up1(0, L->attn_norm, H, (void **)&d->attn_norm)) ||
	    (rc = up1(0, L->mlp_norm, H, (void **)&d->mlp_norm)) ||
	    (rc = up1(0, L->q_norm, qn, (void **)&d->q_norm)) ||
	    (rc = up1(0, L->k_norm, kn, (void **)&d->k_norm)))
		return rc;
	if (L->moe_index >= 0)
		return up1(0, L->router, (size_t)c->n_experts * H, (void **)&d->router);
	const float *gu[2] = {L->mlp_gate, L->mlp_up};
	size_t gun[2] = {I * H, I * H};
	if ((rc = upload(b, gu, gun, 2, &d->mlp_gu)))
		return rc;
	return up1(b, L->mlp_down, H * I, &d->mlp_down);
}

static int dalloc(void *pp, size_t bytes)
{
	CU(cudaMalloc((void **)pp, bytes ? bytes : 1));
	return 0;
}

static int halloc(void *pp, size_t bytes)
{
	CU(cudaMallocHost((void **)pp, bytes ? bytes : 1));
	return 0;
}

/* Elements of the largest dense matrix. */
static size_t wmax(const struct eng_cuda *g)
{
	const struct ld_config *c = &g->m->cfg;
	size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
	size_t m[] = {(size_t)g->D * H, (size_t)g->qd * H, 2 * I * H,
		      (size_t)c->vocab_size * H}, mx = 0;

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		mx = m[i] > mx ? m[i] : mx;
	return mx;
}

static int alloc_scratch(struct eng_cuda *g)
{
	const struct ld_config *c = &g->m->cfg;
	size_t H = (size_t)c->hidden_size, E = (size_t)c->n_experts, K = (size_t)c->top_k;
	size_t V = (size_t)c->vocab_size, ni = (size_t)g->ni, f = sizeof(float);
	size_t wide = H > (size_t)g->qd ? H : (size_t)g->qd;
	int rc;

	wide = wide > ni ? wide : ni;
	if ((rc = dalloc(&g->x, C * H * f)) || (rc = dalloc(&g->xn, C * H * f)) ||
	    (rc = dalloc(&g->tmp, C * H * f)) || (rc = dalloc(&g->xe, C * H * f)) ||
	    (rc = dalloc(&g->eo, C * H * f)) || (rc = dalloc(&g->qkv, C * (size_t)g->D * f)) ||
	    (rc = dalloc(&g->att, C * (size_t)g->qd * f)) || (rc = dalloc(&g->rlog, C * E * f)) ||
	    (rc = dalloc(&g->rw, C * K * f)) || (rc = dalloc(&g->rid, C * K * sizeof(int))) ||
	    (rc = dalloc(&g->gu, C * 2 * ni * f)) || (rc = dalloc(&g->h, C * ni * f)) ||
	    (rc = dalloc(&g->scores, C * (size_t)c->n_heads * (size_t)g->max_ctx * f)) ||
	    (rc = dalloc(&g->logits, C * V * f)) || (rc = dalloc(&g->xb, C * wide * 2)) ||
	    (rc = dalloc(&g->wf, g->bf16 && !g->act16 ? wmax(g) * f : 1)) ||
	    (rc = dalloc(&g->dgrp, 2 * C * K * sizeof(int))) ||
	    (rc = dalloc(&g->drow, sizeof(struct rowtab))))
		return rc;
	if ((rc = halloc(&g->hrow, sizeof(struct rowtab))) ||
	    (rc = halloc(&g->hgrp, 2 * C * K * sizeof(int))) ||
	    (rc = halloc(&g->hid, C * K * sizeof(int))) || (rc = halloc(&g->hw, C * K * f)) ||
	    (rc = halloc(&g->hp, C * E * f)) || (rc = halloc(&g->hlog, C * V * f)))
		return rc;
	if (!(g->cnt = calloc(E + 1, sizeof(int))) || !(g->xid = calloc(E, sizeof(int))) ||
	    !(g->xw = calloc(E, sizeof(*g->xw))))
		return -ENOMEM;
	g->rows = (struct eng_cu_rows){.tok = g->drow->tok, .pos = g->drow->pos,
				       .cap = g->drow->cap, .kc = g->drow->kc,
				       .vc = g->drow->vc};
	return 0;
}

static int upload_all(struct eng_cuda *g)
{
	const struct ld_config *c = &g->m->cfg;
	size_t H = (size_t)c->hidden_size, V = (size_t)c->vocab_size;
	int hd = c->head_dim, rc;
	float inv[512];

	if (hd / 2 > 512)
		return -EINVAL;
	/* HF: 1 / base ** (arange(0, dim, 2).float() / dim), in f32, as engine.c. */
	for (int i = 0; i < hd / 2; i++)
		inv[i] = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)hd);
	if ((rc = up1(0, inv, (size_t)hd / 2, (void **)&g->inv_freq)) ||
	    (rc = up1(g->bf16, g->m->embed, V * H, &g->embed)) ||
	    (rc = up1(0, g->m->final_norm, H, (void **)&g->final_norm)))
		return rc;
	if (g->m->lm_head == g->m->embed)
		g->lm_head = g->embed;
	else if ((rc = up1(g->bf16, g->m->lm_head, V * H, &g->lm_head)))
		return rc;
	if (!(g->L = calloc((size_t)c->n_layers, sizeof(*g->L))))
		return -ENOMEM;
	for (int i = 0; i < c->n_layers; i++)
		if ((rc = upload_layer(g, &g->m->layers[i], &g->L[i])))
			return rc;
	return 0;
}

static int setup(struct eng_cuda *g)
{
	int rc;

	CU(cudaSetDevice(g->dev));
	if (g->src.stream) {
		g->st = (cudaStream_t)g->src.stream;
	} else {
		CU(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking));
		g->own_stream = true;
	}
	BL(cublasCreate(&g->blas));
	BL(cublasSetStream(g->blas, g->st));
	if ((rc = alloc_scratch(g)) || (rc = upload_all(g)))
		return rc;
	return 0;
}

int eng_cuda_open(const struct ld_model *m, const struct ld_expert_src *src, int max_ctx,
		  struct eng_cuda **out)
{
	const struct ld_config *c = &m->cfg;
	struct eng_cuda *g;
	int rc;

	*out = NULL;
	if (c->top_k > c->n_experts || c->n_heads % c->n_kv_heads)
		return -EINVAL;
	if (!(g = calloc(1, sizeof(*g))))
		return -ENOMEM;
	g->m = m;
	g->src = *src;
	g->dev = src->device;
	g->max_ctx = max_ctx;
	g->qd = c->n_heads * c->head_dim;
	g->kvd = c->n_kv_heads * c->head_dim;
	g->D = g->qd + 2 * g->kvd;
	g->ni = c->intermediate_size > c->moe_intermediate_size ? c->intermediate_size :
		c->moe_intermediate_size;
	g->bf16 = m->dtype == LD_BF16;
	g->act16 = g->bf16 && getenv("MOED_CUDA_BF16_ACTIVATIONS") &&
		strcmp(getenv("MOED_CUDA_BF16_ACTIVATIONS"), "0");
	if ((rc = setup(g))) {
		eng_cuda_close(g);
		return rc;
	}
	*out = g;
	return 0;
}

void eng_cuda_close(struct eng_cuda *g)
{
	if (!g)
		return;
	cudaSetDevice(g->dev);
	if (g->st)
		cudaStreamSynchronize(g->st);
	if (g->L)
		for (int i = 0; i < g->m->cfg.n_layers; i++) {
			struct dlayer *d = &g->L[i];
			void *p[] = {d->qkv, d->o, d->mlp_gu, d->mlp_down, d->attn_norm,
				     d->mlp_norm, d->q_norm, d->k_norm, d->router};
			for (size_t j = 0; j < sizeof(p) / sizeof(p[0]); j++)
				cudaFree(p[j]);
		}
	free(g->L);
	if (g->lm_head != g->embed)
		cudaFree(g->lm_head);
	void *dp[] = {g->embed, g->final_norm, g->inv_freq, g->x, g->xn, g->qkv, g->att,
		      g->tmp, g->rlog, g->rw, g->xe, g->gu, g->h, g->eo, g->scores,
		      g->logits, g->xb, g->wf, g->rid, g->dgrp, g->drow};
	for (size_t j = 0; j < sizeof(dp) / sizeof(dp[0]); j++)
		cudaFree(dp[j]);
	void *hp[] = {g->hrow, g->hgrp, g->hid, g->hw, g->hp, g->hlog};
	for (size_t j = 0; j < sizeof(hp) / sizeof(hp[0]); j++)
		cudaFreeHost(hp[j]);
	free(g->cnt);
	free(g->xid);
	free(g->xw);
	if (g->blas)
		cublasDestroy(g->blas);
	if (g->own_stream)
		cudaStreamDestroy(g->st);
	free(g);
}

int eng_cuda_kv_alloc(struct eng_cuda *g, size_t n, float **kc, float **vc)
{
	*kc = *vc = NULL;
	CU(cudaSetDevice(g->dev));
	if (cudaMalloc((void **)kc, n * sizeof(float) + 1) != cudaSuccess ||
	    cudaMalloc((void **)vc, n * sizeof(float) + 1) != cudaSuccess) {
		cudaFree(*kc);
		*kc = NULL;
		return -ENOMEM;
	}
	return 0;
}

void eng_cuda_kv_free(struct eng_cuda *g, float *kc, float *vc)
{
	cudaSetDevice(g->dev);
	/* Queued kernels may still write these caches. */
	cudaStreamSynchronize(g->st);
	cudaFree(kc);
	cudaFree(vc);
}

/* y[n][out] = x[n][in] . W[out][in]^T; f32 accumulation and output.  W in
 * bf16 when bf16: widened to f32 first, or (act16) x rounded to bf16. */
static int gemm(struct eng_cuda *g, float *y, const float *x, const void *w, int bf16,
		int n, int in, int out)
{
	const float one = 1.0f, zero = 0.0f;
	cudaDataType_t t = bf16 && g->act16 ? CUDA_R_16BF : CUDA_R_32F;
	const void *b = x;

	if (bf16 && g->act16) {
		KR(eng_cu_to_bf16(g->xb, x, (size_t)n * in, g->st));
		b = g->xb;
	} else if (bf16) {
		KR(eng_cu_from_bf16(g->wf, w, (size_t)out * in, g->st));
		w = g->wf;
	}
	BL(cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, t, in, b, t,
			in, &zero, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return 0;
}


/* Host side of routing: the hooks, then the rows grouped per expert (ascending
 * expert id, rows ascending within one, as engine.c's moe()), uploaded once. */
static int group(struct eng_cuda *g, const struct eng_hooks *h, const struct eng_cuda_row *rows,
		 int ml, int n)
{
	const struct ld_config *c = &g->m->cfg;
	int E = c->n_experts, K = c->top_k, total = n * K;
	int *grows = g->hgrp;
	float *gw = (float *)(g->hgrp + C * K);

	for (int t = 0; t < n; t++) {
		int *ids = g->hid + (size_t)t * K;
		float *w = g->hw + (size_t)t * K;

		if (h->override_route)
			h->override_route(h->ctx, rows[t].user, ml, rows[t].pos, rows[t].tok, ids,
					  w, K, g->hp + (size_t)t * E, E);
		if (h->on_route)
			h->on_route(h->ctx, rows[t].user, ml, rows[t].pos, rows[t].tok, ids, w,
				    K);
	}
	memset(g->cnt, 0, (size_t)(E + 1) * sizeof(int));
	for (int i = 0; i < total; i++) {
		if (g->hid[i] < 0 || g->hid[i] >= E)
			return -EINVAL;
		g->cnt[g->hid[i] + 1]++;
	}
	for (int x = 0; x < E; x++)
		g->cnt[x + 1] += g->cnt[x];
	/* cnt[x] is now expert x's first entry; filling advances it to the next
	 * expert's, so afterwards expert x spans [cnt[x - 1], cnt[x]). */
	for (int i = 0; i < total; i++) {
		int at = g->cnt[g->hid[i]]++;

		grows[at] = i / K;
		gw[at] = g->hw[i];
	}
	CU(cudaMemcpyAsync(g->dgrp, g->hgrp, (size_t)2 * C * K * sizeof(int),
			   cudaMemcpyHostToDevice, g->st));
	return 0;
}

/* One acquired expert (weights w) over its m rows (entries [at, at + m) of
 * the groups), then its release. */
static int expert(struct eng_cuda *g, int ml, int x, const float *w, int at, int m)
{
	const struct ld_config *c = &g->m->cfg;
	int H = c->hidden_size, I = c->moe_intermediate_size, K = c->top_k, rc;
	const int *rws = g->dgrp + at;
	const float *wts = (const float *)(g->dgrp + C * K) + at;

	rc = eng_cu_gather(g->xe, g->xn, rws, m, H, g->st);
	if (!rc && !(rc = gemm(g, g->gu, g->xe, w, 0, m, H, 2 * I)) &&
	    !(rc = eng_cu_silu_mul(g->h, g->gu, m, I, g->st)) &&
	    !(rc = gemm(g, g->eo, g->h, w + (size_t)2 * I * H, 0, m, I, H)))
		rc = eng_cu_scatter_add(g->tmp, g->eo, rws, wts, m, H, g->st);
	/* The GEMMs are queued, not done: release records them as the slot's
	 * last use, and a reload of the slot waits for them. */
	if (g->src.release)
		g->src.release(g->src.ctx, ml, x);
	return rc > 0 ? fail("expert kernels", cudaGetErrorString((cudaError_t)rc)) : rc;
}

/* Acquires the layer's experts [*acq, nx) ahead of their compute, so that all
 * their loads queue back to back.  Those not next to run go through
 * acquire_ahead where the source has it (no waiting, no taking prefetched
 * experts' slots); stops early (0) when a slot is not to be had that way or
 * the slots are all held, while acquired experts are still to run. */
static int acquire_ahead(struct eng_cuda *g, int ml, int nx, int run, int *acq)
{
	int rc;

	for (; *acq < nx; ++*acq) {
		int x = g->xid[*acq];

		if (*acq > run && g->src.acquire_ahead)
			rc = g->src.acquire_ahead(g->src.ctx, ml, x, &g->xw[*acq]);
		else
			rc = g->src.acquire(g->src.ctx, ml, x, &g->xw[*acq]);
		if ((rc == -ENOSPC || rc == -EAGAIN) && *acq > run)
			return 0;
		if (rc < 0)
			return rc;
		if (!g->xw[*acq]) {
			if (g->src.release)
				g->src.release(g->src.ctx, ml, x);
			return fail("expert source", "no device pointer for an expert");
		}
	}
	return 0;
}

/* Runs the grouped experts in ascending order (the CPU engine's order, so
 * the sums are the same), acquiring ahead as far as the slots allow. */
static int experts(struct eng_cuda *g, int ml)
{
	int E = g->m->cfg.n_experts, nx = 0, acq = 0, run = 0, rc = 0;

	for (int x = 0; x < E; x++)
		if (g->cnt[x] > (x ? g->cnt[x - 1] : 0))
			g->xid[nx++] = x;
	while (run < nx && !rc) {
		if ((rc = acquire_ahead(g, ml, nx, run, &acq)))
			break;
		int x = g->xid[run], at = x ? g->cnt[x - 1] : 0;

		rc = expert(g, ml, x, g->xw[run], at, g->cnt[x] - at);
		run++;
	}
	for (; run < acq; run++)   /* after a failure: the ones still held */
		if (g->src.release)
			g->src.release(g->src.ctx, ml, g->xid[run]);
	return rc;
}

static int moe(struct eng_cuda *g, const struct eng_hooks *h, const struct dlayer *d,
	       const struct eng_cuda_row *rows, int ml, int n)
{
	const struct ld_config *c = &g->m->cfg;
	int H = c->hidden_size, E = c->n_experts, K = c->top_k, rc;
	size_t nk = (size_t)n * K;

	if ((rc = gemm(g, g->rlog, g->xn, d->router, 0, n, H, E)))
		return rc;
	KR(eng_cu_route(g->rlog, g->rid, g->rw, n, E, K, c->norm_topk_prob, g->st));
	CU(cudaMemcpyAsync(g->hid, g->rid, nk * sizeof(int), cudaMemcpyDeviceToHost, g->st));
	CU(cudaMemcpyAsync(g->hw, g->rw, nk * sizeof(float), cudaMemcpyDeviceToHost, g->st));
	if (h->override_route)
		CU(cudaMemcpyAsync(g->hp, g->rlog, (size_t)n * E * sizeof(float),
				   cudaMemcpyDeviceToHost, g->st));
	CU(cudaStreamSynchronize(g->st));
	if ((rc = group(g, h, rows, ml, n)))
		return rc;
	CU(cudaMemsetAsync(g->tmp, 0, (size_t)n * H * sizeof(float), g->st));
	return experts(g, ml);
}

/* q/k/v in one GEMM, the family's q/k norms, clipping, RoPE, attention and
 * the output projection into tmp. */
static int attn(struct eng_cuda *g, const struct dlayer *d, int li, int n)
{
	const struct ld_config *c = &g->m->cfg;
	int H = c->hidden_size, hd = c->head_dim, D = g->D, qd = g->qd, kvd = g->kvd;
	float eps = (float)c->rms_eps, *k = g->qkv + qd;
	int rc;

	if ((rc = gemm(g, g->qkv, g->xn, d->qkv, g->bf16, n, H, D)))
		return rc;
	if (c->family == LD_OLMOE) {
		KR(eng_cu_rmsnorm(g->qkv, D, g->qkv, D, d->q_norm, n, 1, qd, eps, g->st));
		KR(eng_cu_rmsnorm(k, D, k, D, d->k_norm, n, 1, kvd, eps, g->st));
	} else if (c->family == LD_QWEN3_MOE) {
		KR(eng_cu_rmsnorm(g->qkv, D, g->qkv, D, d->q_norm, n, c->n_heads, hd, eps,
				  g->st));
		KR(eng_cu_rmsnorm(k, D, k, D, d->k_norm, n, c->n_kv_heads, hd, eps, g->st));
	}
	if (c->clip_qkv > 0)
		KR(eng_cu_clamp(g->qkv, (size_t)n * D, (float)c->clip_qkv, g->st));
	KR(eng_cu_rope(g->qkv, D, c->n_heads, hd, g->inv_freq, g->rows.pos, n, g->st));
	KR(eng_cu_rope(k, D, c->n_kv_heads, hd, g->inv_freq, g->rows.pos, n, g->st));
	KR(eng_cu_attention(g->att, g->qkv, D, qd, qd + kvd, &g->rows, li, n, c->n_heads,
			    c->n_kv_heads, hd, g->scores, g->max_ctx, g->st));
	return gemm(g, g->tmp, g->att, d->o, g->bf16, n, qd, H);
}

static int layer(struct eng_cuda *g, const struct eng_hooks *h,
		 const struct eng_cuda_row *rows, int li, int n)
{
	const struct ld_config *c = &g->m->cfg;
	const struct ld_layer *L = &g->m->layers[li];
	const struct dlayer *d = &g->L[li];
	int H = c->hidden_size, I = c->intermediate_size, rc;
	size_t nh = (size_t)n * H;
	float eps = (float)c->rms_eps;

	KR(eng_cu_rmsnorm(g->xn, H, g->x, H, d->attn_norm, n, 1, H, eps, g->st));
	if ((rc = attn(g, d, li, n)))
		return rc;
	KR(eng_cu_add(g->x, g->tmp, nh, g->st));
	KR(eng_cu_rmsnorm(g->xn, H, g->x, H, d->mlp_norm, n, 1, H, eps, g->st));
	if (L->moe_index >= 0) {
		if (h->before_moe)
			h->before_moe(h->ctx, L->moe_index, g->hrow->tok, n);
		rc = moe(g, h, d, rows, L->moe_index, n);
	} else if (!(rc = gemm(g, g->gu, g->xn, d->mlp_gu, g->bf16, n, H, 2 * I))) {
		KR(eng_cu_silu_mul(g->h, g->gu, n, I, g->st));
		rc = gemm(g, g->tmp, g->h, d->mlp_down, g->bf16, n, I, H);
	}
	if (rc)
		return rc;
	KR(eng_cu_add(g->x, g->tmp, nh, g->st));
	return 0;
}

/* Final norm and lm_head for the m rows that want logits (hrow->sel), then
 * to the host. */
static int head(struct eng_cuda *g, int m, float *logits)
{
	const struct ld_config *c = &g->m->cfg;
	int H = c->hidden_size, V = c->vocab_size, rc;

	if (!m || !logits)
		return 0;
	KR(eng_cu_gather(g->xe, g->x, g->drow->sel, m, H, g->st));
	KR(eng_cu_rmsnorm(g->xn, H, g->xe, H, g->final_norm, m, 1, H, (float)c->rms_eps,
			  g->st));
	if ((rc = gemm(g, g->logits, g->xn, g->lm_head, g->bf16, m, H, V)))
		return rc;
	CU(cudaMemcpyAsync(g->hlog, g->logits, (size_t)m * V * sizeof(float),
			   cudaMemcpyDeviceToHost, g->st));
	CU(cudaStreamSynchronize(g->st));
	for (int i = 0; i < m; i++)
		memcpy(logits + (size_t)g->hrow->out[g->hrow->sel[i]] * V,
		       g->hlog + (size_t)i * V, (size_t)V * sizeof(float));
	return 0;
}

int eng_cuda_chunk(struct eng_cuda *g, const struct eng_hooks *h,
		   const struct eng_cuda_row *rows, int n, float *logits)
{
	const struct ld_config *c = &g->m->cfg;
	struct rowtab *r = g->hrow;
	int rc, m = 0;

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
	CU(cudaMemcpyAsync(g->drow, r, sizeof(*r), cudaMemcpyHostToDevice, g->st));
	KR(eng_cu_embed(g->x, g->embed, g->bf16, g->rows.tok, n, c->hidden_size, g->st));
	for (int li = 0; li < c->n_layers; li++)
		if ((rc = layer(g, h, rows, li, n)))
			goto out;
	rc = head(g, m, logits);
out:
	if (cudaStreamSynchronize(g->st) != cudaSuccess && !rc)
		rc = fail("cudaStreamSynchronize", cudaGetErrorString(cudaGetLastError()));
	return rc;
}
