/* CPU forward pass: embeddings, RMSNorm, RoPE, GQA attention with a KV cache,
 * router, SwiGLU experts, lm_head.  f32 throughout; GEMMs through cblas.
 * The math follows HF transformers' Mixtral, Qwen3-MoE and OLMoE code. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

static void matmul(float *y, const float *x, const float *w, int n, int in,
		   int out)
{
	if (n == 1)
		cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in,
			    x, 1, 0.0f, y, 1);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in,
			    1.0f, x, in, w, in, 0.0f, y, out);
}

/* HF RMSNorm: x * rsqrt(mean(x^2) + eps) * weight, over groups of dim. */
static void rmsnorm(float *y, const float *x, const float *w, int rows,
		    int dim, float eps)
{
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (size_t)r * dim;
		float *yr = y + (size_t)r * dim, ss = 0;

		for (int i = 0; i < dim; i++)
			ss += xr[i] * xr[i];
		float inv = 1.0f / sqrtf(ss / (float)dim + eps);
		for (int i = 0; i < dim; i++)
			yr[i] = w[i] * (xr[i] * inv);
	}
}

/* rotate_half RoPE on heads of one token at position pos. */
static void rope(const struct eng *e, float *v, int heads, int pos)
{
	int hd = e->m->cfg.head_dim, half = hd / 2;

	for (int i = 0; i < half; i++) {
		float a = e->inv_freq[i] * (float)pos, c = cosf(a), s = sinf(a);

		for (int h = 0; h < heads; h++) {
			float *p = v + (size_t)h * hd;
			float x1 = p[i], x2 = p[i + half];

			p[i] = x1 * c - x2 * s;
			p[i + half] = x2 * c + x1 * s;
		}
	}
}

static void clamp(float *v, size_t n, float lim)
{
	for (size_t i = 0; i < n; i++)
		v[i] = v[i] < -lim ? -lim : v[i] > lim ? lim : v[i];
}

/* q/k projections and their family-specific norms, then RoPE. */
static void qkv(struct eng *e, const struct ld_layer *L, int n)
{
	const struct ld_config *c = &e->m->cfg;
	int H = c->hidden_size, hd = c->head_dim;
	float eps = (float)c->rms_eps;

	matmul(e->q, e->xn, L->q, n, H, e->qd);
	matmul(e->k, e->xn, L->k, n, H, e->kvd);
	matmul(e->v, e->xn, L->v, n, H, e->kvd);
	if (c->family == LD_OLMOE) {
		rmsnorm(e->q, e->q, L->q_norm, n, e->qd, eps);
		rmsnorm(e->k, e->k, L->k_norm, n, e->kvd, eps);
	} else if (c->family == LD_QWEN3_MOE) {
		rmsnorm(e->q, e->q, L->q_norm, n * c->n_heads, hd, eps);
		rmsnorm(e->k, e->k, L->k_norm, n * c->n_kv_heads, hd, eps);
	}
	if (c->clip_qkv > 0) {
		clamp(e->q, (size_t)n * e->qd, (float)c->clip_qkv);
		clamp(e->k, (size_t)n * e->kvd, (float)c->clip_qkv);
		clamp(e->v, (size_t)n * e->kvd, (float)c->clip_qkv);
	}
	for (int t = 0; t < n; t++) {
		rope(e, e->q + (size_t)t * e->qd, c->n_heads, e->row_pos[t]);
		rope(e, e->k + (size_t)t * e->kvd, c->n_kv_heads, e->row_pos[t]);
	}
}

/* Causal attention: each row's query over its own sequence's cache up to and
 * including its position.  Every row's K/V is stored first, so rows of one
 * prompt chunk see each other. */
static void attend(struct eng *e, int layer, int n)
{
	const struct ld_config *c = &e->m->cfg;
	int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
	size_t kvb = e->kvd * sizeof(float);
	float scale = 1.0f / sqrtf((float)hd);

	for (int t = 0; t < n; t++) {
		struct eng_seq *s = e->row_seq[t];
		size_t at = ((size_t)layer * s->cap + (size_t)e->row_pos[t]) * e->kvd;

		memcpy(s->kc + at, e->k + (size_t)t * e->kvd, kvb);
		memcpy(s->vc + at, e->v + (size_t)t * e->kvd, kvb);
	}
	for (int t = 0; t < n; t++) {
		int len = e->row_pos[t] + 1;
		size_t lofs = (size_t)layer * e->row_seq[t]->cap * e->kvd;
		const float *kc = e->row_seq[t]->kc + lofs, *vc = e->row_seq[t]->vc + lofs;

		for (int h = 0; h < c->n_heads; h++) {
			const float *q = e->q + (size_t)t * e->qd + (size_t)h * hd;
			size_t kvo = (size_t)(h / group) * hd;
			float *o = e->att + (size_t)t * e->qd + (size_t)h * hd;
			float mx = -INFINITY, sum = 0;

			/* scores = scale K q, o = V^T p / sum: BLAS, not scalar
			 * loops (a 2000-token prefill spent most of its time here). */
			cblas_sgemv(CblasRowMajor, CblasNoTrans, len, hd, scale, kc + kvo, e->kvd,
				    q, 1, 0.0f, e->scores, 1);
			for (int j = 0; j < len; j++)
				mx = fmaxf(mx, e->scores[j]);
			for (int j = 0; j < len; j++) {
				e->scores[j] = expf(e->scores[j] - mx);
				sum += e->scores[j];
			}
			cblas_sgemv(CblasRowMajor, CblasTrans, len, hd, 1.0f / sum, vc + kvo, e->kvd,
				    e->scores, 1, 0.0f, o, 1);
		}
	}
}

static float silu(float x)
{
	return x / (1.0f + expf(-x));
}

/* out[n][H] = down(silu(gate x) * up x) for rows x[n][H]. */
static void swiglu(struct eng *e, float *out, const float *x, int n,
		   const float *gate, const float *up, const float *down, int ni)
{
	int H = e->m->cfg.hidden_size;

	matmul(e->g, x, gate, n, H, ni);
	matmul(e->u, x, up, n, H, ni);
	for (size_t i = 0; i < (size_t)n * ni; i++)
		e->g[i] = silu(e->g[i]) * e->u[i];
	matmul(out, e->g, down, n, ni, H);
}

/* Softmax over the router logits (in place: p becomes the probabilities),
 * top-k, optional renormalisation; the chosen experts come out sorted by id
 * with their weights. */
static void route(const struct ld_config *c, float *p, int *ids, float *w)
{
	int E = c->n_experts, K = c->top_k;
	float mx = p[0], sum = 0, ksum = 0;
	int used[E];

	for (int i = 1; i < E; i++)
		mx = fmaxf(mx, p[i]);
	for (int i = 0; i < E; i++) {
		p[i] = expf(p[i] - mx);
		sum += p[i];
		used[i] = 0;
	}
	for (int i = 0; i < E; i++)
		p[i] /= sum;
	for (int k = 0; k < K; k++) {
		int best = -1;

		for (int i = 0; i < E; i++)
			if (!used[i] && (best < 0 || p[i] > p[best]))
				best = i;
		used[best] = 1;
		ksum += p[best];
	}
	for (int i = 0, k = 0; i < E; i++)
		if (used[i]) {
			ids[k] = i;
			w[k++] = c->norm_topk_prob ? p[i] / ksum : p[i];
		}
}

static int route_chunk(struct eng *e, int ml, const int *tok, int n)
{
	const struct ld_config *c = &e->m->cfg;
	const struct eng_hooks *h = &e->hooks;
	int K = c->top_k;

	for (int t = 0; t < n; t++) {
		int *ids = e->rid + (size_t)t * K;
		float *w = e->rw + (size_t)t * K;

		void *u = e->row_seq[t]->user;
		float *p = e->rlog + (size_t)t * c->n_experts;

		route(c, p, ids, w);
		if (h->override_route)
			h->override_route(h->ctx, u, ml, e->row_pos[t], tok[t], ids, w, K,
					  p, c->n_experts);
		if (h->on_route)
			h->on_route(h->ctx, u, ml, e->row_pos[t], tok[t], ids, w, K);
	}
	return 0;
}

/* Runs each chosen expert once over all the chunk's tokens routed to it, in
 * expert order, and adds the weighted outputs into e->tmp. */
static int moe(struct eng *e, const struct ld_layer *L, const int *tok, int n)
{
	const struct ld_config *c = &e->m->cfg;
	int H = c->hidden_size, E = c->n_experts, K = c->top_k;
	int ni = c->moe_intermediate_size, ml = L->moe_index;
	size_t mat = (size_t)ni * H;

	matmul(e->rlog, e->xn, L->router, n, H, E);
	route_chunk(e, ml, tok, n);
	memset(e->tmp, 0, (size_t)n * H * sizeof(float));
	for (int x = 0; x < E; x++) {
		int m = 0, rv;
		const float *w;

		for (int t = 0; t < n; t++)
			for (int k = 0; k < K; k++)
				if (e->rid[t * K + k] == x) {
					e->rows[m] = t;
					e->slot[m++] = t * K + k;
				}
		if (!m)
			continue;
		if ((rv = e->src.acquire(e->src.ctx, ml, x, &w)) < 0)
			return rv;
		for (int r = 0; r < m; r++)
			memcpy(e->xe + (size_t)r * H, e->xn + (size_t)e->rows[r] * H,
			       (size_t)H * sizeof(float));
		if (w)
			swiglu(e, e->eo, e->xe, m, w, w + mat, w + 2 * mat, ni);
		else    /* weights the CPU cannot read (xrt): the FFN runs there */
			rv = e->src.run ? e->src.run(e->src.ctx, ml, x, e->xe, m, H, ni, e->eo)
					: -EFAULT;
		if (e->src.release)
			e->src.release(e->src.ctx, ml, x);
		if (rv < 0)
			return rv;
		for (int r = 0; r < m; r++) {
			float wt = e->rw[e->slot[r]];
			float *dst = e->tmp + (size_t)e->rows[r] * H;
			const float *src = e->eo + (size_t)r * H;

			for (int i = 0; i < H; i++)
				dst[i] += wt * src[i];
		}
	}
	return 0;
}

static int layer_fwd(struct eng *e, int li, const int *tok, int n)
{
	const struct ld_config *c = &e->m->cfg;
	const struct ld_layer *L = &e->m->layers[li];
	int H = c->hidden_size, rv = 0;
	float eps = (float)c->rms_eps;

	rmsnorm(e->xn, e->x, L->attn_norm, n, H, eps);
	qkv(e, L, n);
	attend(e, li, n);
	matmul(e->tmp, e->att, L->o, n, e->qd, H);
	for (size_t i = 0; i < (size_t)n * H; i++)
		e->x[i] += e->tmp[i];
	rmsnorm(e->xn, e->x, L->mlp_norm, n, H, eps);
	if (L->moe_index >= 0) {
		if (e->hooks.before_moe)
			e->hooks.before_moe(e->hooks.ctx, L->moe_index, tok, n);
		rv = moe(e, L, tok, n);
	} else {
		swiglu(e, e->tmp, e->xn, n, L->mlp_gate, L->mlp_up, L->mlp_down,
		       c->intermediate_size);
	}
	if (rv < 0)
		return rv;
	for (size_t i = 0; i < (size_t)n * H; i++)
		e->x[i] += e->tmp[i];
	return 0;
}

/* Runs the chunk's rows (row_seq/row_pos/row_tok set) through every layer;
 * then, for each row with row_out >= 0, its logits into that row of logits. */
int eng_cpu_chunk(struct eng *e, int n, float *logits)
{
	const struct ld_config *c = &e->m->cfg;
	int H = c->hidden_size, V = c->vocab_size, rv, m = 0, first = -1;

	for (int t = 0; t < n; t++)
		memcpy(e->x + (size_t)t * H, e->m->embed + (size_t)e->row_tok[t] * H,
		       (size_t)H * sizeof(float));
	for (int li = 0; li < c->n_layers; li++)
		if ((rv = layer_fwd(e, li, e->row_tok, n)) < 0)
			return rv;
	/* The rows that want logits end consecutive sequences (rows are packed
	 * sequence after sequence), so their logits rows are consecutive too. */
	for (int t = 0; t < n; t++)
		if (e->row_out[t] >= 0) {
			if (first < 0)
				first = e->row_out[t];
			memcpy(e->xe + (size_t)m++ * H, e->x + (size_t)t * H,
			       (size_t)H * sizeof(float));
		}
	if (!m || !logits)
		return 0;
	rmsnorm(e->xn, e->xe, e->m->final_norm, m, H, (float)c->rms_eps);
	matmul(logits + (size_t)first * V, e->xn, e->m->lm_head, m, H, V);
	return 0;
}

