/* eval-predictor's replay (see eval.h for the loop and the definitions). */
#include "loader/errfmt.h"
#include "predictor/eval.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "predictor/pred_impl.h"
#include "predictor/trace.h"

struct ev {
	const struct pred_trace *t;
	struct pred *p;
	struct cache *c;
	const struct pred_eval_opts *o;
	int L, E, k, want;
	size_t max_batch;
	int *known;                /* [max_batch][L][k]: what the batch has computed */
	int *predicted;            /* [max_batch][want]: each token's prediction */
	int *n_pred;               /* [max_batch] */
	int *table, *counts;       /* batch_table mode: [L][want], [L] */
	int *list;                 /* [E]: union / distinct experts of a layer */
	uint8_t *mark;             /* [E] */
	struct pred_tok *ctx;      /* [max_batch] */
	/* Belady: when each (layer, expert) is used, as batch ordinals */
	size_t *use_off;           /* [L * E + 1] */
	uint32_t *use_at;          /* batch ordinals, ascending per (layer, expert) */
	size_t *cursor;            /* [L * E] */
	uint64_t now;              /* batch ordinal * L + layer */
	struct pred_eval_result *r;
};

static uint64_t next_use(void *ctx, int layer, int expert)
{
	struct ev *v = ctx;
	size_t key = (size_t)layer * v->E + expert, *cur = &v->cursor[key];

	while (*cur < v->use_off[key + 1] &&
	       (uint64_t)v->use_at[*cur] * v->L + layer < v->now)
		(*cur)++;
	if (*cur == v->use_off[key + 1])
		return UINT64_MAX;
	return (uint64_t)v->use_at[*cur] * v->L + layer;
}

/* Batch ordinal of each token; returns the number of batches. */
static size_t batch_ordinals(const struct pred_trace *t, uint32_t *ord, size_t *max_batch)
{
	size_t nb = 0, run = 0;

	*max_batch = 0;
	for (size_t i = 0; i < t->n_tokens; i++) {
		if (i == 0 || t->toks[i].batch != t->toks[i - 1].batch) {
			nb++;
			run = 0;
		}
		ord[i] = (uint32_t)(nb - 1);
		if (++run > *max_batch)
			*max_batch = run;
	}
	return nb;
}

static int build_uses(struct ev *v, const uint32_t *ord)
{
	const struct pred_trace *t = v->t;
	size_t keys = (size_t)v->L * v->E, total = t->n_tokens * (size_t)v->L * v->k;

	v->use_off = calloc(keys + 1, sizeof(size_t));
	v->cursor = calloc(keys, sizeof(size_t));
	v->use_at = malloc((total ? total : 1) * sizeof(uint32_t));
	if (!v->use_off || !v->cursor || !v->use_at)
		return -ENOMEM;
	for (size_t i = 0; i < t->n_tokens; i++)
		for (int l = 0; l < v->L; l++)
			for (int j = 0; j < v->k; j++)
				v->use_off[(size_t)l * v->E + pred_trace_at(t, i, l)[j] + 1]++;
	for (size_t key = 0; key < keys; key++)
		v->use_off[key + 1] += v->use_off[key];
	memcpy(v->cursor, v->use_off, keys * sizeof(size_t));
	for (size_t i = 0; i < t->n_tokens; i++)
		for (int l = 0; l < v->L; l++)
			for (int j = 0; j < v->k; j++)
				v->use_at[v->cursor[(size_t)l * v->E + pred_trace_at(t, i, l)[j]]++] = ord[i];
	memcpy(v->cursor, v->use_off, keys * sizeof(size_t));
	return 0;
}

/* The previous token's path as known now: whole if it ran in an earlier
 * batch, its computed layers if it is in this one. */
static const int *prev_path(const struct ev *v, size_t i, size_t i0)
{
	int64_t pi = v->t->toks[i].prev;

	if (pi < 0)
		return NULL;
	if ((size_t)pi < i0)
		return pred_trace_at(v->t, (size_t)pi, 0);
	return v->known + ((size_t)pi - i0) * v->L * v->k;
}

/* Appends e to v->list unless marked; returns the new length. */
static int add_unique(struct ev *v, int n, int e)
{
	if (v->mark[e])
		return n;
	v->mark[e] = 1;
	v->list[n] = e;
	return n + 1;
}

static void clear_marks(struct ev *v, int n)
{
	for (int j = 0; j < n; j++)
		v->mark[v->list[j]] = 0;
}

/* Predicts layer l for every token of the batch and prefetches the union,
 * rank by rank across tokens. */
static void predict_prefetch(struct ev *v, size_t nb, int l)
{
	int n = 0, maxn = 0;

	for (size_t b = 0; b < nb; b++) {
		int *out = v->predicted + b * v->want;

		if (v->o->batch_table) {
			v->n_pred[b] = v->counts[l];
			memcpy(out, v->table + (size_t)l * v->want, v->counts[l] * sizeof(int));
		} else {
			v->n_pred[b] = pred_predict_layer(v->p, &v->ctx[b], l, v->want, out);
		}
		if (v->n_pred[b] > maxn)
			maxn = v->n_pred[b];
	}
	for (int rank = 0; rank < maxn; rank++)
		for (size_t b = 0; b < nb; b++)
			if (rank < v->n_pred[b])
				n = add_unique(v, n, v->predicted[b * v->want + rank]);
	for (int j = 0; j < n; j++)
		if (cache_prefetch(v->c, l, v->list[j]) == -ENOSPC)
			break;
	clear_marks(v, n);
}

/* Acquires and releases each distinct expert the batch uses at layer l. */
static int access_layer(struct ev *v, size_t i0, size_t nb, int l, char *err, size_t en)
{
	int n = 0, rv = 0;

	for (size_t b = 0; b < nb; b++)
		for (int j = 0; j < v->k; j++)
			n = add_unique(v, n, pred_trace_at(v->t, i0 + b, l)[j]);
	for (int j = 0; j < n && !rv; j++) {
		const float *w;

		if ((rv = cache_acquire(v->c, l, v->list[j], &w)) < 0) {
			cache_last_error(v->c, err, en);
			break;
		}
		cache_release(v->c, l, v->list[j]);
	}
	clear_marks(v, n);
	return rv;
}

static void score_layer(struct ev *v, size_t i0, size_t nb, int l)
{
	for (size_t b = 0; b < nb; b++) {
		const int *truth = pred_trace_at(v->t, i0 + b, l), *pr = v->predicted + b * v->want;

		v->r->truth += v->k;
		v->r->predicted += v->n_pred[b];
		for (int j = 0; j < v->n_pred[b]; j++)
			for (int m = 0; m < v->k; m++)
				v->r->correct += pr[j] == truth[m];
	}
}

static void set_contexts(struct ev *v, size_t i0, size_t nb)
{
	for (size_t b = 0; b < nb; b++) {
		int *kn = v->known + b * v->L * v->k;

		for (size_t j = 0; j < (size_t)v->L * v->k; j++)
			kn[j] = -1;
		v->ctx[b] = (struct pred_tok){ .token = v->t->toks[i0 + b].token,
					       .index = (int64_t)(i0 + b), .cur = kn,
					       .prev = prev_path(v, i0 + b, i0) };
	}
	if (v->o->batch_table)         /* before the batch: nothing of it is known */
		pred_predict_batch(v->p, v->ctx, nb, v->want, v->table, v->counts);
}

static int run_batch(struct ev *v, size_t i0, size_t nb, uint32_t ord, int scoring,
		     char *err, size_t en)
{
	int rv;

	set_contexts(v, i0, nb);
	for (int l = 0; l < v->L; l++) {
		v->now = (uint64_t)ord * v->L + l;
		if (v->want > 0)
			predict_prefetch(v, nb, l);
		else
			memset(v->n_pred, 0, nb * sizeof(int));
		if ((rv = access_layer(v, i0, nb, l, err, en)) < 0)
			return rv;
		cache_unpin_all(v->c);
		if (scoring)
			score_layer(v, i0, nb, l);
		for (size_t b = 0; b < nb; b++)
			memcpy(v->known + (b * v->L + l) * v->k, pred_trace_at(v->t, i0 + b, l),
			       v->k * sizeof(int));
	}
	if (scoring && v->o->frozen)
		return 0;
	for (size_t b = 0; b < nb; b++) {
		struct pred_tok tk = v->ctx[b];

		tk.cur = pred_trace_at(v->t, i0 + b, 0);
		tk.prev = v->t->toks[i0 + b].prev >= 0 ?
			  pred_trace_at(v->t, v->t->toks[i0 + b].prev, 0) : NULL;
		pred_observe(v->p, &tk);
	}
	return 0;
}

static int ev_alloc(struct ev *v)
{
	size_t mb = v->max_batch, w = v->want > 0 ? v->want : 1;

	v->known = malloc(mb * v->L * v->k * sizeof(int));
	v->predicted = malloc(mb * w * sizeof(int));
	v->n_pred = calloc(mb, sizeof(int));
	v->table = malloc((size_t)v->L * w * sizeof(int));
	v->counts = calloc(v->L, sizeof(int));
	v->list = malloc(v->E * sizeof(int));
	v->mark = calloc(v->E, 1);
	v->ctx = calloc(mb, sizeof(*v->ctx));
	return v->known && v->predicted && v->n_pred && v->table && v->counts && v->list &&
	       v->mark && v->ctx ? 0 : -ENOMEM;
}

static void ev_free(struct ev *v)
{
	cache_close(v->c);
	free(v->known);
	free(v->predicted);
	free(v->n_pred);
	free(v->table);
	free(v->counts);
	free(v->list);
	free(v->mark);
	free(v->ctx);
	free(v->use_off);
	free(v->use_at);
	free(v->cursor);
}

static int check_args(const struct pred_trace *t, const struct pred *p,
		      const struct pred_eval_opts *o, char *err, size_t n)
{
	if (p->L != t->n_layers || p->E != t->n_experts || p->k != t->top_k) {
		ld_errf(err, n, "predictor shape %dx%d top-%d does not match the trace's %dx%d top-%d",
		        p->L, p->E, p->k, t->n_layers, t->n_experts, t->top_k);
		return -EINVAL;
	}
	if (!(o->train_frac >= 0 && o->train_frac < 1) || o->n_slots < 1 || o->predict_k < 0) {
		ld_errf(err, n, "train fraction %g (needs [0, 1)), slots %zu (needs >= 1) or "
		        "predict-k %d (needs >= 0) out of range", o->train_frac, o->n_slots,
		        o->predict_k);
		return -EINVAL;
	}
	return 0;
}

static int open_cache(struct ev *v, char *err, size_t n)
{
	struct cache_opts co = {
		.n_layers = v->L, .n_experts = v->E,
		/* sim mode needs a size; bytes are only reported when known */
		.expert_bytes = v->o->expert_bytes ? v->o->expert_bytes : 1,
		.n_slots = v->o->n_slots, .policy = v->o->policy,
		.next_use = next_use, .next_use_ctx = v,
	};
	int rv = cache_open(&co, &v->c);

	if (rv < 0)
		ld_errf(err, n, "cache (policy %s, %zu slots): %s", cache_policy_name(v->o->policy),
		        v->o->n_slots, strerror(-rv));
	return rv;
}

static void finish(struct ev *v, const struct cache_stats *s0, const struct cache_stats *s1)
{
	struct pred_eval_result *r = v->r;
	double nt = (double)r->n_scored;

	r->hits = s1->hits - s0->hits;
	r->misses = s1->misses - s0->misses;
	r->loads = s1->loads - s0->loads;
	r->bytes_loaded = v->o->expert_bytes ? s1->bytes_loaded - s0->bytes_loaded : 0;
	r->prefetched_unused = s1->prefetched_unused - s0->prefetched_unused;
	r->recall = r->truth ? (double)r->correct / r->truth : 0;
	r->precision = r->predicted ? (double)r->correct / r->predicted : NAN;
	r->hit_rate = r->hits + r->misses ? (double)r->hits / (r->hits + r->misses) : 0;
	r->loads_per_token = r->loads / nt;
	r->bytes_per_token = v->o->expert_bytes ? r->bytes_loaded / nt : NAN;
}

static int replay(struct ev *v, const uint32_t *ord, char *err, size_t n)
{
	const struct pred_trace *t = v->t;
	struct cache_stats s0 = {0}, s1;
	size_t split = (size_t)ceil(v->o->train_frac * t->n_tokens), i0 = 0;
	int rv, scoring = 0;

	while (i0 < t->n_tokens) {
		size_t nb = 1;

		while (i0 + nb < t->n_tokens && ord[i0 + nb] == ord[i0])
			nb++;
		if (!scoring && i0 >= split) {
			scoring = 1;
			v->r->n_train = i0;
			cache_get_stats(v->c, -1, &s0);
		}
		if ((rv = run_batch(v, i0, nb, ord[i0], scoring, err, n)) < 0)
			return rv;
		i0 += nb;
	}
	if (!scoring) {
		ld_errf(err, n, "train fraction %g leaves no batch of the %zu tokens to score",
		        v->o->train_frac, t->n_tokens);
		return -EINVAL;
	}
	v->r->n_scored = t->n_tokens - v->r->n_train;
	cache_get_stats(v->c, -1, &s1);
	finish(v, &s0, &s1);
	return 0;
}

int pred_eval_run(const struct pred_trace *t, struct pred *p, const struct pred_eval_opts *o,
		  struct pred_eval_result *r, char *err, size_t errlen)
{
	struct ev v = { .t = t, .p = p, .o = o, .r = r, .L = t->n_layers, .E = t->n_experts,
			.k = t->top_k };
	uint32_t *ord = NULL;
	int rv;

	memset(r, 0, sizeof(*r));
	if ((rv = check_args(t, p, o, err, errlen)) < 0)
		return rv;
	if (t->n_tokens == 0 || t->n_tokens > UINT32_MAX) {
		ld_errf(err, errlen, "trace has %zu tokens", t->n_tokens);
		return -EINVAL;
	}
	v.want = o->predict_k ? o->predict_k : (int)(o->n_slots / v.L);
	if (!o->predict_k && v.want < v.k)
		v.want = v.k;
	if (v.want > v.E)
		v.want = v.E;
	if (p->kind == PRED_NONE)
		v.want = 0;
	r->n_tokens = t->n_tokens;
	r->n_slots = o->n_slots;
	r->predict_k = v.want;
	rv = -ENOMEM;
	if (!(ord = malloc(t->n_tokens * sizeof(*ord))))
		goto fail;
	batch_ordinals(t, ord, &v.max_batch);
	if ((rv = ev_alloc(&v)) < 0 || (o->policy == CACHE_BELADY && (rv = build_uses(&v, ord)) < 0))
		goto fail;
	if ((rv = open_cache(&v, err, errlen)) < 0 || (rv = replay(&v, ord, err, errlen)) < 0)
		goto fail;
	free(ord);
	ev_free(&v);
	return 0;
fail:
	if (rv == -ENOMEM)
		ld_errf(err, errlen, "out of memory");
	free(ord);
	ev_free(&v);
	return rv;
}
