/* cuda_bench's engine hooks (bench/bench_route.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_route.h"
#include "loader/clock.h"

const char *const br_mode_name[BR_N] = {"none", "all", "freq", "cepr", "oracle"};

int br_init(struct br_ctx *r, int L, int E, int K)
{
	r->L = L;
	r->E = E;
	r->K = K;
	r->pk = K;
	r->table = malloc((size_t)L * E * sizeof(int));
	r->counts = calloc((size_t)L, sizeof(int));
	r->pnext = malloc((size_t)E * sizeof(int));
	return r->table && r->counts && r->pnext ? 0 : -ENOMEM;
}

void br_fini(struct br_ctx *r)
{
	free(r->table);
	free(r->counts);
	free(r->pnext);
	r->table = r->counts = r->pnext = NULL;
}

int *br_rec_at(const struct br_ctx *r, int id, int pos, int layer)
{
	return r->rec + (((size_t)id * r->maxpos + (size_t)pos) * (size_t)r->L + (size_t)layer) *
		(size_t)r->K;
}

static void seq_clear(struct br_ctx *r, struct br_seq *s)
{
	for (int i = 0; i < r->L * r->K; i++)
		s->cur[i] = s->prev[i] = -1;
	s->has_prev = 0;
}

int br_seq_init(struct br_ctx *r, struct br_seq *s)
{
	s->cur = malloc((size_t)r->L * r->K * sizeof(int));
	s->prev = malloc((size_t)r->L * r->K * sizeof(int));
	if (!s->cur || !s->prev)
		return -ENOMEM;
	seq_clear(r, s);
	return 0;
}

void br_seq_free(struct br_seq *s)
{
	free(s->cur);
	free(s->prev);
	s->cur = s->prev = NULL;
}

static void prefetch(struct br_ctx *r, int layer, int expert)
{
	if (cache_prefetch(r->ca, layer, expert) == 0)
		r->n_pf++;
	else
		r->n_pf_fail++;
}

/* The worker's worker_prefetch_table_layer. */
static void table_layer(struct br_ctx *r, int layer)
{
	if (!r->have_table || layer >= r->L)
		return;
	for (int i = 0; i < r->counts[layer]; i++)
		prefetch(r, layer, r->table[layer * r->want + i]);
}

/* DeepSpeed/accelerate style: the whole next layer, as far as slots allow. */
static void all_layer(struct br_ctx *r, int layer)
{
	for (int x = 0; x < r->E; x++)
		prefetch(r, layer, x);
}

static void before_moe(void *ctx, int layer, const int *tokens, int n)
{
	struct br_ctx *r = ctx;
	int passed = layer > 0 ? layer - 1 : r->L - 1;

	(void)tokens;
	(void)n;
	if (r->phase == BR_PREFILL && r->have_table) {
		/* The worker's before_moe in PH_PREFILL (no wrap-around). */
		if (layer > 0)
			cache_unpin_layer(r->ca, layer - 1);
		table_layer(r, layer);
		table_layer(r, layer + 1);
		return;
	}
	if (r->mode == BR_ALL && r->phase != BR_OFF) {
		cache_unpin_layer(r->ca, passed);
		/* Decode wraps to the next step's layer 0; a prompt call ends. */
		if (layer + 1 < r->L || r->phase == BR_DECODE)
			all_layer(r, layer + 1 < r->L ? layer + 1 : 0);
		return;
	}
	/* Next-layer modes: the layer before has passed, its pins go. */
	if (r->phase == BR_DECODE && r->mode != BR_NONE)
		cache_unpin_layer(r->ca, passed);
}

/* The experts of the layer after `layer` for this token (layer 0 of the
 * next token after the last layer): how many went into r->pnext. */
static int predict_next(struct br_ctx *r, struct br_seq *s, int layer, int pos, int *next)
{
	struct pred_tok t = {.token = r->keyed ? s->tok : -1, .index = -1, .cur = s->cur,
			     .prev = s->has_prev ? s->prev : NULL};
	int np = pos;

	*next = layer + 1;
	if (*next == r->L) {
		*next = 0;
		np = pos + 1;
		t.token = -1;          /* the next token is not sampled yet */
		t.cur = NULL;
		t.prev = s->cur;
	}
	if (r->mode != BR_ORACLE)
		return r->p ? pred_predict_layer(r->p, &t, *next, r->pk, r->pnext) : 0;
	if (!r->rec || s->id < 0 || np >= r->maxpos || br_rec_at(r, s->id, np, *next)[0] < 0)
		return 0;
	memcpy(r->pnext, br_rec_at(r, s->id, np, *next), (size_t)r->K * sizeof(int));
	return r->K;
}

static void on_route(void *ctx, void *user, int layer, int pos, int token,
		     const int *experts, const float *w, int k)
{
	struct br_ctx *r = ctx;
	struct br_seq *s = user;
	int next, n;

	(void)token;
	(void)w;
	if (!s)
		return;
	if (r->record && r->rec && s->id >= 0 && pos < r->maxpos)
		memcpy(br_rec_at(r, s->id, pos, layer), experts, (size_t)k * sizeof(int));
	if (r->phase != BR_DECODE)
		return;
	memcpy(s->cur + (size_t)layer * k, experts, (size_t)k * sizeof(int));
	if (r->mode == BR_NONE || r->mode == BR_ALL)
		return;
	n = predict_next(r, s, layer, pos, &next);
	for (int i = 0; i < n; i++)
		prefetch(r, next, r->pnext[i]);
}

/* Replay: the trace's experts for this (sequence, position, layer), with
 * the router's probabilities for them as weights, renormalised as the
 * family does (the worker's trust-mode override, fed from a trace). */
static int override_route(void *ctx, void *user, int layer, int pos, int token,
			  int *experts, float *w, int k, const float *probs, int n_experts)
{
	struct br_ctx *r = ctx;
	struct br_seq *s = user;
	const int *t;

	(void)token;
	(void)n_experts;
	if (!r->trace || !s || !s->tlen || k != r->trace->top_k)
		return 0;
	t = pred_trace_at(r->trace, s->tbase + (s->toff + (size_t)pos) % s->tlen, layer);
	eng_route_set(t, k, probs, r->norm_topk, experts, w);
	return 1;
}

void br_set_hooks(struct br_ctx *r, struct eng *e)
{
	struct eng_hooks h = {.before_moe = before_moe, .on_route = on_route,
			      .override_route = r->trace ? override_route : NULL, .ctx = r};

	eng_set_hooks(e, &h);
}

/* The predictor process's answer_batch: per layer the union of the call's
 * tokens' predictions, ranked, `want` long; then the worker's admit
 * prefetches layer 0. */
int br_call_begin(struct br_ctx *r, const int *const *tokens, const int *n, int n_seqs)
{
	struct pred_tok *toks;
	size_t total = 0, at = 0;

	r->have_table = 0;
	if (r->phase != BR_PREFILL || !r->p || (r->mode != BR_FREQ && r->mode != BR_CEPR) ||
	    r->want < 1 || r->want > r->E)
		return 0;
	for (int i = 0; i < n_seqs; i++)
		total += (size_t)n[i];
	if (!(toks = calloc(total + 1, sizeof(*toks))))
		return -ENOMEM;
	for (int i = 0; i < n_seqs; i++)
		for (int j = 0; j < n[i]; j++)
			toks[at++] = (struct pred_tok){.token = r->keyed ? tokens[i][j] : -1,
						       .index = -1};
	/* Rows of want (<= E) entries. */
	if (pred_predict_batch(r->p, toks, total, r->want, r->table, r->counts) == 0) {
		r->have_table = 1;
		table_layer(r, 0);
	}
	free(toks);
	return 0;
}

void br_call_end(struct br_ctx *r)
{
	if (r->mode != BR_NONE)
		cache_unpin_all(r->ca);
	r->have_table = 0;
}

void br_end_step(struct br_ctx *r, struct br_seq *const *ss, int n)
{
	for (int i = 0; i < n; i++) {
		struct br_seq *s = ss[i];
		struct pred_tok t = {.token = r->keyed ? s->tok : -1, .index = -1, .cur = s->cur,
				     .prev = s->has_prev ? s->prev : NULL};
		int *tmp;

		if (s->cur[(r->L - 1) * r->K] >= 0) {
			if (r->p && r->learn)
				pred_observe(r->p, &t);
			for (int j = 0; j < 2; j++)
				if (r->obs[j])
					pred_observe(r->obs[j], &t);
		}
		tmp = s->prev;
		s->prev = s->cur;
		s->cur = tmp;
		s->has_prev = 1;
		for (int j = 0; j < r->L * r->K; j++)
			s->cur[j] = -1;
	}
}

void br_dec_feed(struct br_dec *d, const int *next)
{
	for (int i = 0; i < d->n; i++) {
		d->ps[i]->tok = next[i];
		if (d->gen[i] && d->at < d->gen_max)
			d->gen[i][d->at] = next[i];
	}
}

/* eng_greedy's step_done: the step's hooks have run. */
static void dec_step(void *ctx, int step, const int *next)
{
	struct br_dec *d = ctx;

	(void)step;
	br_end_step(d->r, d->ps, d->n);
	d->at++;
	br_dec_feed(d, next);
}

int br_dec_greedy(struct br_dec *d, struct eng_seq **es, int k, int *next)
{
	int *out, rv;

	if (k < 1)
		return 0;
	if (d->n > BR_MAXSEQ)
		return -EINVAL;
	if (!(out = malloc((size_t)k * d->n * sizeof(int))))
		return -ENOMEM;
	if (!(rv = eng_greedy(d->e, es, d->n, next, k, out, dec_step, d)))
		memcpy(next, out + (size_t)(k - 1) * d->n, (size_t)d->n * sizeof(int));
	free(out);
	return rv;
}

int br_trace_check(const struct pred_trace *t, const char *path, int L, int E, int K,
		   char *err, size_t errlen)
{
	if (t->n_layers != L || t->n_experts != E || t->top_k != K) {
		snprintf(err, errlen, "%s: %d layers x %d experts, top-%d; the model has %d x %d, "
			 "top-%d (replay needs the same shape)", path, t->n_layers, t->n_experts,
			 t->top_k, L, E, K);
		return -EINVAL;
	}
	for (size_t i = 0; i < t->n_tokens; i++)
		for (int l = 0; l < L; l++) {
			const int *x = pred_trace_at(t, i, l);

			for (int a = 0; a < K; a++) {
				int dup = 0;

				for (int b = 0; b < a; b++)
					dup |= x[b] == x[a];
				if (x[a] < 0 || x[a] >= E || dup) {
					snprintf(err, errlen, "%s: token %zu layer %d: expert %d %s",
						 path, i, l, x[a], dup ? "repeated" : "out of range");
					return -EINVAL;
				}
			}
		}
	return 0;
}

void br_res_start(const struct br_ctx *r, struct br_res *x)
{
	cache_get_stats(r->ca, -1, &x->s);
	x->n_pf = r->n_pf;
	x->secs = ld_now();
}

void br_res_end(const struct br_ctx *r, struct br_res *x, int tokens)
{
	struct cache_stats s;

	cache_get_stats(r->ca, -1, &s);
	x->secs = ld_now() - x->secs;
	x->tokens = tokens;
	x->n_pf = r->n_pf - x->n_pf;
	x->s.hits = s.hits - x->s.hits;
	x->s.misses = s.misses - x->s.misses;
	x->s.prefetched_used = s.prefetched_used - x->s.prefetched_used;
	x->s.prefetched_unused = s.prefetched_unused - x->s.prefetched_unused;
	x->s.prefetched_late = s.prefetched_late - x->s.prefetched_late;
	x->s.evictions = s.evictions - x->s.evictions;
	x->s.loads = s.loads - x->s.loads;
	x->s.bytes_loaded = s.bytes_loaded - x->s.bytes_loaded;
	x->s.stall_seconds = s.stall_seconds - x->s.stall_seconds;
	x->s.prefetch_nospace = s.prefetch_nospace - x->s.prefetch_nospace;
	x->s.pin_steals = s.pin_steals - x->s.pin_steals;
	x->s.prefetch_dropped = s.prefetch_dropped - x->s.prefetch_dropped;
	x->s.host_runs = s.host_runs - x->s.host_runs;
}

void br_res_json(FILE *f, const char *name, const struct br_res *x, int last)
{
	double t = x->tokens ? (double)x->tokens : 1;
	/* Bytes missed: misses, prefetches used while still loading (the ones
	 * prefetch did not hide) and misses the CPU computed instead
	 * (host_runs: not copied), whole experts.  bytes_per_token: every byte
	 * copied, dropped prefetches' parts too. */

	fprintf(f, "\"%s\": {\"tokens\": %d, \"seconds\": %.6f, \"tok_s\": %.3f, "
		"\"bytes_per_token\": %.1f, \"acquires_per_token\": %.4f, \"hits\": %llu, "
		"\"misses\": %llu, \"loads\": %llu, \"bytes_loaded\": %llu, "
		"\"prefetched_used\": %llu, \"prefetched_unused\": %llu, \"prefetched_late\": %llu, "
		"\"missed_bytes_per_token\": %.1f, \"prefetches\": %llu, "
		"\"prefetch_nospace\": %llu, \"pin_steals\": %llu, \"prefetch_dropped\": %llu, "
		"\"evictions\": %llu, \"host_runs\": %llu, "
		"\"stall_seconds\": %.6f}%s", name, x->tokens, x->secs,
		x->secs > 0 ? x->tokens / x->secs : 0, (double)x->s.bytes_loaded / t,
		(double)(x->s.hits + x->s.misses) / t, (unsigned long long)x->s.hits,
		(unsigned long long)x->s.misses, (unsigned long long)x->s.loads,
		(unsigned long long)x->s.bytes_loaded, (unsigned long long)x->s.prefetched_used,
		(unsigned long long)x->s.prefetched_unused, (unsigned long long)x->s.prefetched_late,
		(double)(x->s.misses + x->s.prefetched_late + x->s.host_runs) *
			(double)x->expert_bytes / t,
		(unsigned long long)x->n_pf,
		(unsigned long long)x->s.prefetch_nospace, (unsigned long long)x->s.pin_steals,
		(unsigned long long)x->s.prefetch_dropped,
		(unsigned long long)x->s.evictions, (unsigned long long)x->s.host_runs,
		x->s.stall_seconds, last ? "" : ", ");
}
