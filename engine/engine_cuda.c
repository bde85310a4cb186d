/* The CUDA engine's setup: dense weights uploaded once and kept on the device
 * (bf16 for bf16 checkpoints, f32 otherwise; the router always f32 so that
 * its top-k matches the CPU's), scratch for ENG_CUDA_MAX_ROWS rows, the
 * fast path's route records, and the sequences' KV caches.  The forward
 * pass is engine/engine_cuda_run.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_cuda_int.h"
#include "loader/env.h"

int eng_cuda_fail(const char *what, const char *why)
{
	fprintf(stderr, "moed: cuda engine: %s: %s\n", what, why);
	return -EIO;
}

/* dg/hg and the entry lists after them (hent, hej; dent, dej) laid out for
 * that many entries: a layer's upload is then only as long as its own
 * entries (at CHUNK 512 the whole capacity was 33.5 KB a layer for a one-row
 * step's 8 entries, and cepr at 50% decoded 84-85 tok/s against 89 at
 * CHUNK 256; sized per call, 89: bench/results/cuda_bench_s12.md).  Any entries <= NE fit the
 * buffers.  A fast step's graph keeps the layout it was captured with. */
void eng_cuda_grp_layout(struct eng_cuda *g, int entries)
{
	size_t gb = eng_cu_grp_bytes(g->E, entries);

	g->dg = eng_cu_grp_at(g->dgrpb, g->E, entries);
	g->hg = eng_cu_grp_at(g->hgrpb, g->E, entries);
	g->hent = (int *)((char *)g->hgrpb + gb), g->hej = g->hent + entries;
	g->dent = (int *)((char *)g->dgrpb + gb), g->dej = g->dent + entries;
}

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
		rc = eng_cuda_fail("uploading dense weights", cudaGetErrorString(e));
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

int eng_cuda_chain_alloc(struct eng_cuda *g)
{
	const struct ld_config *c = &g->m->cfg;
	size_t fr = (size_t)c->n_moe_layers * GMAX * g->K, f = sizeof(float);
	int rc;

	/* Each part once (a failure leaves the others for the next try). */
	for (int i = 0; i < 2; i++)
		if (!g->cev[i])
			CU(cudaEventCreateWithFlags(&g->cev[i], cudaEventDisableTiming));
	/* hfr_id's layout, GMAX rows of logits */
	if (!g->hfr_id2 &&
	    (rc = halloc(&g->hfr_id2, 2 * fr * f + (size_t)GMAX * c->vocab_size * f)))
		return rc;
	g->hfr_w2 = (float *)(g->hfr_id2 + fr), g->hlog2 = g->hfr_w2 + fr;
	return g->hbest2 ? 0 : halloc(&g->hbest2, GMAX * sizeof(int));
}

/* Floats of gemm_split's products: 3 x C rows of the widest output but
 * the vocabulary (lm_head goes a few rows at a time), or 3 rows of that. */
static size_t y3_floats(const struct eng_cuda *g)
{
	size_t o = (size_t)g->D, V = (size_t)g->m->cfg.vocab_size;

	o = o > (size_t)g->H ? o : (size_t)g->H;
	o = o > 2 * (size_t)g->ni ? o : 2 * (size_t)g->ni;
	return 3 * (C * o > V ? C * o : V);
}

static int alloc_scratch(struct eng_cuda *g)
{
	const struct ld_config *c = &g->m->cfg;
	size_t H = (size_t)g->H, E = (size_t)g->E, K = (size_t)g->K, NE = (size_t)g->NE;
	size_t V = (size_t)c->vocab_size, ni = (size_t)g->ni, f = sizeof(float);
	size_t wide = H > (size_t)g->qd ? H : (size_t)g->qd;
	size_t gb = eng_cu_grp_bytes(g->E, g->NE), fr = (size_t)c->n_moe_layers * GMAX * K;
	size_t lists = 2 * NE * sizeof(int);   /* ent and ej after the groups */
	size_t done_n = 1 + C * (size_t)c->n_heads;
	bool split = eng_cuda_split_experts(g);
	int rc;

	wide = wide > ni ? wide : ni;
	if ((rc = dalloc(&g->x, C * H * f)) || (rc = dalloc(&g->xn, C * H * f)) ||
	    (rc = dalloc(&g->xe, C * H * f)) || (rc = dalloc(&g->eo, NE * H * f)) ||
	    (rc = dalloc(&g->hb, NE * ni * f)) || (rc = dalloc(&g->qkv, C * (size_t)g->D * f)) ||
	    (rc = dalloc(&g->att, C * (size_t)g->qd * f)) ||
	    (rc = dalloc(&g->q, C * (size_t)g->qd * f)) || (rc = dalloc(&g->rlog, C * E * f)) ||
	    (rc = dalloc(&g->rw, C * K * f)) || (rc = dalloc(&g->rid, C * K * sizeof(int))) ||
	    (rc = dalloc(&g->gu, C * 2 * ni * f)) || (rc = dalloc(&g->h, C * ni * f)) ||
	    (rc = dalloc(&g->done, done_n * sizeof(unsigned))) ||
	    (rc = dalloc(&g->amk, (GMAX + 1) * sizeof(*g->amk))) ||
	    (rc = dalloc(&g->apart, f * eng_cu_att_part_floats(C, c->n_heads, c->head_dim,
								  g->max_ctx))) ||
	    (rc = dalloc(&g->fr_id, 2 * fr * f + C * V * f)) ||
	    (rc = dalloc(&g->xb, 3 * C * wide * 2)) ||
	    (rc = dalloc(&g->y3, (g->y3n = y3_floats(g)) * f)) ||
	    (rc = dalloc(&g->xbe, split ? 3 * (NE + C) * (H + ni) * 2 : 1)) ||
	    (rc = dalloc(&g->dplan, E * PLAN_EXPERT)) ||
	    (rc = dalloc(&g->dgrpb, gb + lists)) || (rc = dalloc(&g->drow, sizeof(struct rowtab))) ||
	    (rc = dalloc(&g->dxtab, E * sizeof(void *))) ||
	    (rc = dalloc(&g->dwp, E * sizeof(void *))) ||
	    (rc = dalloc(&g->dtab, (size_t)c->n_moe_layers * E * sizeof(void *))))
		return rc;
	if ((rc = halloc(&g->hrow, sizeof(struct rowtab))) || (rc = halloc(&g->hgrpb, gb + lists)) ||
	    (rc = halloc(&g->hxtab, E * sizeof(void *))) ||
	    (rc = halloc(&g->hid, C * K * sizeof(int))) || (rc = halloc(&g->hw, C * K * f)) ||
	    (rc = halloc(&g->hp, C * E * f)) || (rc = halloc(&g->hfr_id, 2 * fr * f + C * V * f)) ||
	    (rc = halloc(&g->hbest, GMAX * sizeof(int))) ||
	    (rc = halloc(&g->hplan, E * PLAN_EXPERT)))
		return rc;
	/* A wave's products take 3 padded entries' rows each of y3's widest
	 * (2 ni >= moe_intermediate_size * 2, >= H); y3 holds C entries' at
	 * least, so any one expert fits.  MOED_CUDA_WAVE_ROWS: fewer (tests). */
	g->wave_rows = (int)(g->y3n / (3 * (2 * ni > H ? 2 * ni : H)));
	g->wave_rows = (int)ld_env_long("MOED_CUDA_WAVE_ROWS", 1, g->wave_rows - 1, g->wave_rows);
	/* A fast step's routes, then the logits: one copy brings both back. */
	g->fr_w = (float *)(g->fr_id + fr), g->logits = g->fr_w + fr;
	g->hfr_w = (float *)(g->hfr_id + fr), g->hlog = g->hfr_w + fr;
	if (!(g->cnt = calloc(E + 1, sizeof(int))) ||
	    !(g->lhits = calloc((size_t)c->n_moe_layers + 1, sizeof(int))) ||
	    !(g->xw = calloc(E, sizeof(*g->xw))) || !(g->xpend = calloc(E, 1)) ||
	    !(g->xran = calloc(E, 1)) || !(g->wj = calloc(E, sizeof(int))) ||
	    !(g->pid = calloc(GMAX * K, sizeof(int))) || !(g->pw = calloc(GMAX * K, f)))
		return -ENOMEM;
	CU(cudaMemset(g->done, 0, done_n * sizeof(unsigned)));
	CU(cudaMemset(g->amk, 0, (GMAX + 1) * sizeof(*g->amk)));
	eng_cuda_grp_layout(g, g->NE);
	g->cx[0] = g->x, g->chrow[0] = g->hrow, g->cdrow[0] = g->drow;
	eng_cuda_use_chunk(g, 0);
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
	if (g->prof) {
		for (int i = 0; i < 2; i++)
			CU(cudaEventCreate(&g->pev[i]));
		for (int i = 0; i < 8; i++) {
			CU(cudaEventCreate(&g->gev[i / 4][i % 4]));
			g->gml[i / 4][i % 4] = -1;
		}
		CU(cudaStreamCreateWithFlags(&g->pst, cudaStreamNonBlocking));
	}
	if (g->src.stream) {
		g->st = (cudaStream_t)g->src.stream;
	} else {
		CU(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking));
		g->own_stream = true;
	}
	BL(cublasCreate(&g->blas));
	BL(cublasSetStream(g->blas, g->st));
	if ((rc = alloc_scratch(g)) || (rc = upload_all(g)) || (rc = eng_cuda_host_open(g)))
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
	/* The kernels' limits (routing masks, attention's shared memory). */
	if (c->top_k > 32 || c->n_experts > 1024 || c->head_dim > 512) {
		fprintf(stderr, "moed: cuda engine: top_k %d, %d experts, head_dim %d: the CUDA "
			"path takes top_k <= 32, <= 1024 experts, head_dim <= 512; use "
			"device.backend = \"host\"\n", c->top_k, c->n_experts, c->head_dim);
		return -EINVAL;
	}
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
	g->H = c->hidden_size;
	g->E = c->n_experts;
	g->K = c->top_k;
	g->NE = C * c->top_k;
	g->gemv_dims = eng_cu_gemv_ok(g->H) && eng_cu_gemv_ok(g->qd) &&
		eng_cu_gemv_ok(c->moe_intermediate_size) &&
		(c->n_moe_layers == c->n_layers || eng_cu_gemv_ok(c->intermediate_size));
	g->graphs = ld_env_on("MOED_CUDA_GRAPHS", true);
	g->norm_gemv = ld_env_on("MOED_CUDA_NORM_GEMV", true);
	g->prof = ld_env_on("MOED_CUDA_PROFILE", false);
	g->zout = ld_env_on("MOED_CUDA_ZOUT", true);
	g->argmax = ld_env_on("MOED_CUDA_ARGMAX", true);
	g->chain = ld_env_on("MOED_CUDA_CHAIN", true);
	g->spin = ld_env_on("MOED_CUDA_SPIN", true);
	g->defer = ld_env_on("MOED_CUDA_DEFER_ROUTES", true);
	g->tiles = ld_env_on("MOED_CUDA_ATT_TILES", true);
	g->ahead = ld_env_on("MOED_CUDA_CALL_AHEAD", true);
	g->call_chunks = (int)ld_env_long("MOED_CUDA_CALL_CHUNKS", 1, ENG_CUDA_CALL_CHUNKS,
					  ENG_CUDA_CALL_CHUNKS);
	eng_cu_set_pdl(ld_env_on("MOED_CUDA_PDL", true));
	g->bf16 = m->dtype == LD_BF16;
	g->act16 = g->bf16 && ld_env_on("MOED_CUDA_BF16_ACTIVATIONS", false);
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
	eng_cuda_prof_print(g);
	for (int i = 0; i < 2; i++)
		if (g->pev[i])
			cudaEventDestroy(g->pev[i]);
	for (int i = 0; i < 8; i++)
		if (g->gev[i / 4][i % 4])
			cudaEventDestroy(g->gev[i / 4][i % 4]);
	if (g->pst)
		cudaStreamDestroy(g->pst);
	if (g->st)
		cudaStreamSynchronize(g->st);
	eng_cuda_host_close(g);
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
	for (int i = 0; i <= GMAX; i++)
		for (int z = 0; z < 3; z++)
			if (z < 2 ? g->gx[z][i] : g->gx2[i])
				cudaGraphExecDestroy(z < 2 ? g->gx[z][i] : g->gx2[i]);
	for (int i = 0; i < 2; i++)
		if (g->cev[i])
			cudaEventDestroy(g->cev[i]);
	void *dp[] = {g->embed, g->final_norm, g->inv_freq, g->x, g->xn, g->qkv, g->q, g->att,
		      g->rlog, g->rw, g->xe, g->gu, g->h, g->hb, g->eo, g->done, g->amk, g->apart,
		      g->xb, g->y3, g->xbe, g->dplan, g->rid, g->dgrpb, g->drow, g->fr_id, g->dtab, g->dwp,
		      g->dxtab};
	for (size_t j = 0; j < sizeof(dp) / sizeof(dp[0]); j++)
		cudaFree(dp[j]);
	void *hp[] = {g->hrow, g->hgrpb, g->hid, g->hw, g->hp, g->hfr_id, g->hxtab, g->hbest,
		      g->hfr_id2, g->hbest2, g->hplan};
	for (size_t j = 0; j < sizeof(hp) / sizeof(hp[0]); j++)
		cudaFreeHost(hp[j]);
	for (int k = 1; k < ENG_CUDA_CALL_CHUNKS; k++) {
		cudaFree(g->cx[k]);
		cudaFree(g->cdrow[k]);
		cudaFreeHost(g->chrow[k]);
	}
	free(g->cnt);
	free(g->lhits);
	free(g->xw);
	free(g->xpend);
	free(g->xran);
	free(g->wj);
	free(g->pid);
	free(g->pw);
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

