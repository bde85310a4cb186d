/* The engine's API: opening it over an expert source, sequences and their KV
 * caches, and batches of rows packed into chunks, each run on the CPU
 * (engine_cpu.c) or, when the experts are on a GPU, the CUDA path
 * (engine_cuda_run.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/engine_int.h"
#include "engine/sample.h"

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
	free(e->ulog);
#ifdef HAVE_CUDA
	eng_cuda_close(e->cu);
	free(e->crow);
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

		if (rv == 0 && !(e->crow = calloc(CALL_ROWS, sizeof(*e->crow))))
			rv = -ENOMEM;
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

void eng_route_set(const int *chosen, int k, const float *probs, int norm, int *experts,
		   float *w)
{
	float sum = 0;

	if (experts != chosen)
		memmove(experts, chosen, (size_t)k * sizeof(int));
	for (int a = 1; a < k; a++)           /* insertion sort: k is small */
		for (int b = a; b > 0 && experts[b - 1] > experts[b]; b--) {
			int x = experts[b];
			experts[b] = experts[b - 1];
			experts[b - 1] = x;
		}
	for (int i = 0; i < k; i++)
		sum += (w[i] = probs[experts[i]]);
	for (int i = 0; i < k && norm && sum > 0; i++)
		w[i] /= sum;
}

int eng_max_batch(void)
{
	return CHUNK;
}

float *eng_logits_buffer(struct eng *e)
{
#ifdef HAVE_CUDA
	if (e->cu)
		return eng_cuda_logits_buffer(e->cu);
#endif
	if (!e->ulog)
		e->ulog = calloc((size_t)CHUNK * e->m->cfg.vocab_size, sizeof(float));
	return e->ulog;
}

int eng_row_argmax(const struct eng *e, const float *row)
{
#ifdef HAVE_CUDA
	if (e->cu)
		return eng_cuda_row_argmax(e->cu, row);
#endif
	(void)e, (void)row;
	return -1;
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
#ifdef HAVE_CUDA
/* Sequence s's row at pos with token tok, its logits to row out. */
static struct eng_cuda_row cuda_row(const struct eng_seq *s, int pos, int tok, int out)
{
	return (struct eng_cuda_row){.kc = s->kc, .vc = s->vc, .cap = s->cap, .pos = pos,
				     .tok = tok, .out = out, .user = s->user};
}

static int cuda_chunk(struct eng *e, int n, float *logits)
{
	for (int t = 0; t < n; t++)
		e->crow[t] = cuda_row(e->row_seq[t], e->row_pos[t], e->row_tok[t], e->row_out[t]);
	return eng_cuda_chunk(e->cu, &e->hooks, e->crow, n, logits);
}
#endif

/* Rows one chunk_fwd call takes. */
static int call_rows(const struct eng *e)
{
#ifdef HAVE_CUDA
	if (e->cu)
		return eng_cuda_call_rows(e->cu);
#endif
	(void)e;
	return CHUNK;
}

/* The call's rows in runs of more than one of a sequence: prompt rows,
 * which sweep most experts of every layer (a decode step's one row a
 * sequence does not, however many sequences). */
static int prompt_rows(const struct eng *e, int n)
{
	int p = 0;

	for (int t = 0, r; t < n; t += r) {
		for (r = 1; t + r < n && e->row_seq[t + r] == e->row_seq[t]; r++)
			;
		p += r > 1 ? r : 0;
	}
	return p;
}

int eng_call_chunks(const struct eng *e)
{
	return call_rows(e) / CHUNK;
}

/* Runs the call's rows (row_seq/row_pos/row_tok set) through every layer;
 * then, for each row with row_out >= 0, its logits into that row of logits. */
static int chunk_fwd(struct eng *e, int n, float *logits)
{
	if (e->src.prompt_rows)   /* before any acquire or hook's prefetch */
		e->src.prompt_rows(e->src.ctx, prompt_rows(e, n), (n + CHUNK - 1) / CHUNK);
#ifdef HAVE_CUDA
	if (e->cu)
		return cuda_chunk(e, n, logits);
#endif
	return eng_cpu_chunk(e, n, logits);
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
	int rv, n = 0, i = 0, j = 0, lim = call_rows(e);

	if (n_seqs < 1)
		return -EINVAL;
	if ((rv = check_batch(e, seqs, tokens, n_tokens, n_seqs)) < 0)
		return rv;
	/* Rows are packed seq after seq into calls of chunks; a sequence's
	 * positions advance as its rows pass, so a long prompt spans chunks
	 * (and calls). */
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
		if (n == lim || i == n_seqs) {
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

#ifdef HAVE_CUDA
/* eng_greedy's CUDA way: -ENOTSUP where it does not apply. */
static int cuda_greedy(struct eng *e, struct eng_seq *const *seqs, int n, const int *tokens,
		       int steps, int *out, void (*step_done)(void *, int, const int *),
		       void *ctx)
{
	struct eng_cuda_row rows[CHUNK];

	for (int t = 0; t < n; t++)
		rows[t] = cuda_row(seqs[t], seqs[t]->len, tokens[t], t);
	return eng_cuda_greedy(e->cu, &e->hooks, rows, n, steps, out, step_done, ctx);
}
#endif

int eng_greedy(struct eng *e, struct eng_seq *const *seqs, int n, const int *tokens,
	       int steps, int *out, void (*step_done)(void *ctx, int step, const int *next),
	       void *ctx)
{
	int V = e->m->cfg.vocab_size, cur[CHUNK], rv = -ENOTSUP;
	const int *tp[CHUNK];
	int ns[CHUNK];
	float *lg = eng_logits_buffer(e);

	if (n < 1 || n > CHUNK || steps < 1)
		return -EINVAL;
	for (int t = 0; t < n; t++)
		tp[t] = tokens + t, ns[t] = 1;
	/* The whole run checked first: a failure then is the source's. */
	if ((rv = check_batch(e, seqs, tp, ns, n)) < 0)
		return rv;
	for (int t = 0; t < n; t++)
		if (seqs[t]->len + steps > seqs[t]->cap)
			return -ERANGE;
#ifdef HAVE_CUDA
	if (e->cu && (rv = cuda_greedy(e, seqs, n, tokens, steps, out, step_done, ctx)) == 0)
		for (int t = 0; t < n; t++)
			seqs[t]->len += steps;
	if (e->cu && rv != -ENOTSUP)
		return rv;
#endif
	if (!lg)
		return -ENOMEM;
	memcpy(cur, tokens, (size_t)n * sizeof(int));
	for (int s = 0; s < steps; s++) {
		if ((rv = eng_step(e, seqs, cur, n, lg)) < 0)
			return rv;
		for (int t = 0; t < n; t++) {
			const float *row = lg + (size_t)t * V;
			int best = eng_row_argmax(e, row);

			cur[t] = out[(size_t)s * n + t] = best >= 0 ? best : eng_argmax(row, V);
		}
		if (step_done)
			step_done(ctx, s, out + (size_t)s * n);
	}
	return 0;
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
