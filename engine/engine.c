/* CPU forward pass: embeddings, RMSNorm, RoPE, GQA attention with a KV cache,
 * router, SwiGLU experts, lm_head.  f32 throughout; GEMMs through cblas.
 * The math follows HF transformers' Mixtral, Qwen3-MoE and OLMoE code. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* Prompts run in chunks of this many tokens, so scratch is sized once. */
#define CHUNK 256

#ifdef HAVE_CUDA
#include "engine/engine_cuda.h"
_Static_assert(CHUNK <= ENG_CUDA_MAX_ROWS, "the CUDA path sizes its rows by CHUNK");
#endif

struct eng {
	const struct ld_model *m;
	struct ld_expert_src src;
	struct eng_hooks hooks;
	int max_ctx, qd, kvd, inter;
	float *inv_freq;           /* [head_dim / 2] */
	struct eng_cuda *cu;       /* the CUDA path, when experts are on a GPU */
	/* scratch, [CHUNK][...] */
	float *x, *xn, *q, *k, *v, *att, *tmp, *rlog, *rw;
	float *xe, *g, *u, *eo, *scores;
	int *rid, *cnt, *rows;     /* routes [CHUNK][k], per-expert counts, rows */
	int *slot;                 /* [CHUNK][k]: which k-slot a row came from */
	/* The rows of the chunk in flight: their sequence, position, token, and
	 * which logits row they fill (-1: none). */
	struct eng_seq *row_seq[CHUNK];
	int row_pos[CHUNK], row_tok[CHUNK], row_out[CHUNK];
};

struct eng_seq {
	struct eng *e;
	void *user;
	int len, cap;
	float *kc, *vc;            /* [n_layers][max_ctx][kvd] */
};

static void *zalloc(size_t n, size_t size)
{
	return calloc(n ? n : 1, size);
}

void eng_close(struct eng *e)
{
	if (!e)
		return;
	float *bufs[] = {e->inv_freq, e->x, e->xn, e->q, e->k, e->v, e->att,
			 e->tmp, e->rlog, e->rw, e->xe, e->g, e->u, e->eo, e->scores};
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		free(bufs[i]);
	free(e->rid);
	free(e->cnt);
	free(e->rows);
	free(e->slot);
#ifdef HAVE_CUDA
	eng_cuda_close(e->cu);
#endif
	free(e);
}

static int alloc_scratch(struct eng *e)
{
	const struct ld_config *c = &e->m->cfg;
	size_t H = (size_t)c->hidden_size, E = (size_t)c->n_experts;
	size_t K = (size_t)c->top_k, ni = (size_t)e->inter;

	e->x = zalloc(CHUNK * H, sizeof(float));
	e->xn = zalloc(CHUNK * H, sizeof(float));
	e->tmp = zalloc(CHUNK * H, sizeof(float));
	e->q = zalloc(CHUNK * (size_t)e->qd, sizeof(float));
	e->att = zalloc(CHUNK * (size_t)e->qd, sizeof(float));
	e->k = zalloc(CHUNK * (size_t)e->kvd, sizeof(float));
	e->v = zalloc(CHUNK * (size_t)e->kvd, sizeof(float));
	e->rlog = zalloc(CHUNK * E, sizeof(float));
	e->rw = zalloc(CHUNK * K, sizeof(float));
	e->xe = zalloc(CHUNK * H, sizeof(float));
	e->eo = zalloc(CHUNK * H, sizeof(float));
	e->g = zalloc(CHUNK * ni, sizeof(float));
	e->u = zalloc(CHUNK * ni, sizeof(float));
	e->scores = zalloc((size_t)e->max_ctx, sizeof(float));
	e->inv_freq = zalloc((size_t)c->head_dim / 2, sizeof(float));
	e->rid = zalloc(CHUNK * K, sizeof(int));
	e->cnt = zalloc(E, sizeof(int));
	e->rows = zalloc(CHUNK * K, sizeof(int));
	e->slot = zalloc(CHUNK * K, sizeof(int));
	if (!e->x || !e->xn || !e->tmp || !e->q || !e->att || !e->k || !e->v ||
	    !e->rlog || !e->rw || !e->xe || !e->eo || !e->g || !e->u ||
	    !e->scores || !e->inv_freq || !e->rid || !e->cnt || !e->rows ||
	    !e->slot)
		return -ENOMEM;
	return 0;
}

int eng_open(const struct ld_model *m, const struct ld_expert_src *src,
	     int max_ctx, struct eng **out)
{
	const struct ld_config *c = &m->cfg;
	struct eng *e;
	int hd = c->head_dim;

	if (max_ctx < 1 || !src || !src->acquire)
		return -EINVAL;
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	e->m = m;
	e->src = *src;
	e->max_ctx = max_ctx;
	e->qd = c->n_heads * hd;
	e->kvd = c->n_kv_heads * hd;
	e->inter = c->intermediate_size > c->moe_intermediate_size ?
		c->intermediate_size : c->moe_intermediate_size;
	if (alloc_scratch(e) < 0) {
		eng_close(e);
		return -ENOMEM;
	}
	/* HF: 1 / base ** (arange(0, dim, 2).float() / dim), in f32. */
	for (int i = 0; i < hd / 2; i++)
		e->inv_freq[i] = 1.0f / powf((float)c->rope_theta,
					     (float)(2 * i) / (float)hd);
	if (src->mem == LD_EXPERT_CUDA) {
#ifdef HAVE_CUDA
		int rv = eng_cuda_open(m, src, max_ctx, &e->cu);
#else
		int rv = -ENOTSUP;     /* built without CUDA */
#endif
		if (rv < 0) {
			eng_close(e);
			return rv;
		}
	}
	*out = e;
	return 0;
}

void eng_set_hooks(struct eng *e, const struct eng_hooks *h)
{
	if (h)
		e->hooks = *h;
	else
		memset(&e->hooks, 0, sizeof(e->hooks));
}

int eng_max_ctx(const struct eng *e)
{
	return e->max_ctx;
}

int eng_seq_new(struct eng *e, struct eng_seq **out)
{
	return eng_seq_new_cap(e, e->max_ctx, out);
}

int eng_seq_new_cap(struct eng *e, int cap, struct eng_seq **out)
{
	const struct ld_config *c = &e->m->cfg;
	size_t n = (size_t)c->n_layers * (size_t)cap * (size_t)e->kvd;
	struct eng_seq *s;

	if (cap < 1 || cap > e->max_ctx)
		return -ERANGE;
	if (!(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	s->e = e;
	s->cap = cap;
#ifdef HAVE_CUDA
	if (e->cu) {
		if (eng_cuda_kv_alloc(e->cu, n, &s->kc, &s->vc) < 0) {
			free(s);
			return -ENOMEM;
		}
		*out = s;
		return 0;
	}
#endif
	s->kc = malloc(n * sizeof(float));
	s->vc = malloc(n * sizeof(float));
	if (!s->kc || !s->vc) {
		eng_seq_free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void eng_seq_free(struct eng_seq *s)
{
	if (!s)
		return;
#ifdef HAVE_CUDA
	if (s->e->cu) {
		eng_cuda_kv_free(s->e->cu, s->kc, s->vc);
		free(s);
		return;
	}
#endif
	free(s->kc);
	free(s->vc);
	free(s);
}

int eng_seq_len(const struct eng_seq *s)
{
	return s->len;
}

void eng_seq_reset(struct eng_seq *s)
{
	s->len = 0;
}

void eng_seq_set_user(struct eng_seq *s, void *user)
{
	s->user = user;
}

void *eng_seq_user(const struct eng_seq *s)
{
	return s->user;
}

int eng_max_batch(void)
{
	return CHUNK;
}

uint64_t eng_fast_steps(const struct eng *e)
{
#ifdef HAVE_CUDA
	return e->cu ? eng_cuda_fast_steps(e->cu) : 0;
#else
	(void)e;
	return 0;
#endif
}

/* y[n][out] = x[n][in] . W[out][in]^T */
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

			for (int j = 0; j < len; j++) {
				const float *k = kc + (size_t)j * e->kvd + kvo;
				float d = 0;

				for (int i = 0; i < hd; i++)
					d += q[i] * k[i];
				e->scores[j] = d * scale;
				mx = fmaxf(mx, e->scores[j]);
			}
			for (int j = 0; j < len; j++) {
				e->scores[j] = expf(e->scores[j] - mx);
				sum += e->scores[j];
			}
			memset(o, 0, (size_t)hd * sizeof(float));
			for (int j = 0; j < len; j++) {
				const float *v = vc + (size_t)j * e->kvd + kvo;
				float p = e->scores[j] / sum;

				for (int i = 0; i < hd; i++)
					o[i] += p * v[i];
			}
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

#ifdef HAVE_CUDA
static int cuda_chunk(struct eng *e, int n, float *logits)
{
	struct eng_cuda_row rows[CHUNK];

	for (int t = 0; t < n; t++)
		rows[t] = (struct eng_cuda_row){
			.kc = e->row_seq[t]->kc, .vc = e->row_seq[t]->vc,
			.cap = e->row_seq[t]->cap, .pos = e->row_pos[t], .tok = e->row_tok[t],
			.out = e->row_out[t], .user = e->row_seq[t]->user};
	return eng_cuda_chunk(e->cu, &e->hooks, rows, n, logits);
}
#endif

/* Runs the chunk's rows (row_seq/row_pos/row_tok set) through every layer;
 * then, for each row with row_out >= 0, its logits into that row of logits. */
static int chunk_fwd(struct eng *e, int n, float *logits)
{
	const struct ld_config *c = &e->m->cfg;
	int H = c->hidden_size, V = c->vocab_size, rv, m = 0, first = -1;

#ifdef HAVE_CUDA
	if (e->cu)
		return cuda_chunk(e, n, logits);
#endif

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

static int check_batch(const struct eng *e, struct eng_seq *const *seqs,
		       const int *const *tokens, const int *n_tokens, int n_seqs)
{
	for (int i = 0; i < n_seqs; i++) {
		if (n_tokens[i] < 1)
			return -EINVAL;
		if (seqs[i]->len + n_tokens[i] > seqs[i]->cap)
			return -ERANGE;
		for (int j = 0; j < n_tokens[i]; j++)
			if (tokens[i][j] < 0 || tokens[i][j] >= e->m->cfg.vocab_size)
				return -EINVAL;
		for (int u = 0; u < i; u++)
			if (seqs[u] == seqs[i])
				return -EINVAL;
	}
	return 0;
}

int eng_batch(struct eng *e, struct eng_seq *const *seqs, const int *const *tokens,
	      const int *n_tokens, int n_seqs, float *logits)
{
	int rv, n = 0, i = 0, j = 0;

	if (n_seqs < 1)
		return -EINVAL;
	if ((rv = check_batch(e, seqs, tokens, n_tokens, n_seqs)) < 0)
		return rv;
	/* Rows are packed seq after seq into chunks; a sequence's positions
	 * advance as its rows pass, so a long prompt spans chunks. */
	while (i < n_seqs) {
		/* len moves only after every chunk ran: positions count from it. */
		e->row_seq[n] = seqs[i];
		e->row_pos[n] = seqs[i]->len + j;
		e->row_tok[n] = tokens[i][j];
		e->row_out[n] = j == n_tokens[i] - 1 ? i : -1;
		n++;
		if (++j == n_tokens[i]) {
			i++;
			j = 0;
		}
		if (n == CHUNK || i == n_seqs) {
			if ((rv = chunk_fwd(e, n, logits)) < 0)
				return rv;
			n = 0;
		}
	}
	for (i = 0; i < n_seqs; i++)
		seqs[i]->len += n_tokens[i];
	return 0;
}

int eng_forward(struct eng *e, struct eng_seq *s, const int *tokens, int n,
		float *logits)
{
	return eng_batch(e, &s, &tokens, &n, 1, logits);
}

int eng_step(struct eng *e, struct eng_seq *const *seqs, const int *tokens,
	     int n, float *logits)
{
	const int *toks[CHUNK];
	int ones[CHUNK];

	if (n < 1 || n > CHUNK)
		return -EINVAL;
	for (int t = 0; t < n; t++) {
		toks[t] = tokens + t;
		ones[t] = 1;
	}
	return eng_batch(e, seqs, toks, ones, n, logits);
}
