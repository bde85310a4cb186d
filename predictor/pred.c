/* The common part of every predictor: open/close, the popularity prior that
 * every learning predictor backs off to, ranking, and the batch table.  The
 * kinds none and pop live here too; freq, cepr and oracle in their files. */
#include "predictor/pred_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Popularity counts halve when one reaches this, so old traffic fades. */
#define POP_SATURATE (1u << 20)
/* Weight of the popularity prior under a predictor's own evidence: small
 * enough that it only orders experts the evidence leaves at 0 (or tied). */
#define POP_EPS 1e-9

static const struct pred_ops *const kinds[] = {
	[PRED_NONE] = &pred_none_ops,
	[PRED_POP] = &pred_pop_ops,
	[PRED_FREQ] = &pred_freq_ops,
	[PRED_CEPR] = &pred_cepr_ops,
	[PRED_ORACLE] = &pred_oracle_ops,
};
#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))

int pred_kind_parse(const char *name, enum pred_kind *kind)
{
	for (size_t i = 0; i < N_KINDS; i++)
		if (!strcmp(name, kinds[i]->name)) {
			*kind = (enum pred_kind)i;
			return 0;
		}
	return -EINVAL;
}

const char *pred_kind_name(enum pred_kind kind)
{
	return (size_t)kind < N_KINDS ? kinds[kind]->name : "?";
}

enum pred_kind pred_get_kind(const struct pred *p) { return p->kind; }
int pred_learns(const struct pred *p) { return p->ops->learns; }

int pred_open(enum pred_kind kind, int n_layers, int n_experts, int top_k,
	      const struct pred_opts *o, struct pred **out)
{
	struct pred *p;
	int rv = -ENOMEM;

	if ((size_t)kind >= N_KINDS || n_layers < 1 || n_experts < 1 || n_experts > 65535 ||
	    top_k < 1 || top_k > n_experts)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->kind = kind;
	p->ops = kinds[kind];
	p->L = n_layers;
	p->E = n_experts;
	p->k = top_k;
	if (o)
		p->o = *o;
	p->pop = calloc((size_t)n_layers * n_experts, sizeof(*p->pop));
	p->pop_total = calloc(n_layers, sizeof(*p->pop_total));
	p->s = calloc(n_experts, sizeof(*p->s));
	p->sums = calloc((size_t)n_layers * n_experts, sizeof(*p->sums));
	p->guess = calloc(n_experts, sizeof(*p->guess));
	p->roll = calloc((size_t)n_layers * top_k, sizeof(*p->roll));
	p->row_cur = calloc((size_t)n_layers * top_k, sizeof(int));
	p->row_prev = calloc((size_t)n_layers * top_k, sizeof(int));
	if (!p->pop || !p->pop_total || !p->s || !p->sums || !p->guess || !p->roll ||
	    !p->row_cur || !p->row_prev)
		goto fail;
	if (p->ops->init && (rv = p->ops->init(p)) < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	pred_close(p);
	return rv;
}

void pred_close(struct pred *p)
{
	if (!p)
		return;
	if (p->ops->fini)
		p->ops->fini(p);
	free(p->pop);
	free(p->pop_total);
	free(p->s);
	free(p->sums);
	free(p->guess);
	free(p->roll);
	free(p->row_cur);
	free(p->row_prev);
	free(p);
}

void pred_observe_rows(struct pred *p, const uint16_t *experts, const uint64_t *seq_ids,
		       const uint32_t *tokens, size_t n)
{
	size_t per = (size_t)p->L * p->k;

	for (size_t r = 0; r < n; r++) {
		struct pred_tok t = {.token = (int)tokens[r], .index = -1, .cur = p->row_cur};

		for (size_t i = 0; i < per; i++)
			p->row_cur[i] = experts[r * per + i];
		if (r > 0 && seq_ids[r - 1] == seq_ids[r]) {
			for (size_t i = 0; i < per; i++)
				p->row_prev[i] = experts[(r - 1) * per + i];
			t.prev = p->row_prev;
		}
		pred_observe(p, &t);
	}
}

static void pop_observe(struct pred *p, const struct pred_tok *t)
{
	for (int l = 0; l < p->L; l++) {
		const int *ex = pred_layer(t->cur, p->k, l);
		uint32_t *row = p->pop + (size_t)l * p->E;

		for (int j = 0; ex && j < p->k; j++) {
			p->pop_total[l]++;
			if (++row[ex[j]] < POP_SATURATE)
				continue;
			p->pop_total[l] = 0;
			for (int e = 0; e < p->E; e++)
				p->pop_total[l] += row[e] /= 2;
		}
	}
}

void pred_observe(struct pred *p, const struct pred_tok *t)
{
	if (!p->ops->learns || !t->cur)
		return;
	pop_observe(p, t);
	p->ops->observe(p, t);
}

/* Fills p->s for layer; returns 0 when the predictor has nothing to say. */
static int layer_scores(struct pred *p, const struct pred_tok *t, int layer)
{
	const uint32_t *row = p->pop + (size_t)layer * p->E;
	double tot = (double)p->pop_total[layer];

	if (!p->ops->score)
		return 0;
	memset(p->s, 0, p->E * sizeof(*p->s));
	p->ops->score(p, t, layer, p->s);
	if (p->ops->backoff && tot > 0)
		for (int e = 0; e < p->E; e++)
			p->s[e] += POP_EPS * row[e] / tot;
	return 1;
}

/* The want best-scoring experts with score > 0, best first (ties: lower id). */
static int top_scores(const double *s, int n_experts, int want, int *out)
{
	int n = 0;

	for (int e = 0; e < n_experts; e++) {
		int i;

		if (!(s[e] > 0) || (n == want && s[e] <= s[out[n - 1]]))
			continue;
		i = n < want ? n++ : n - 1;
		while (i > 0 && s[out[i - 1]] < s[e]) {
			out[i] = out[i - 1];
			i--;
		}
		out[i] = e;
	}
	return n;
}

int pred_predict_layer(struct pred *p, const struct pred_tok *t, int layer, int want, int *out)
{
	if (layer < 0 || layer >= p->L || want <= 0)
		return 0;
	if (want > p->E)
		want = p->E;
	if (!layer_scores(p, t, layer))
		return 0;
	return top_scores(p->s, p->E, want, out);
}

/* Adds token t's normalised per-layer distributions to p->sums, rolling
 * its unknown layers forward with its own top_k guesses (in p->roll) so a
 * path predictor has a path to continue. */
static void batch_token(struct pred *p, const struct pred_tok *t)
{
	struct pred_tok rt = *t;

	rt.cur = p->roll;
	for (size_t j = 0; j < (size_t)p->L * p->k; j++)
		p->roll[j] = -1;
	for (int l = 0; l < p->L; l++) {
		const int *known = pred_layer(t->cur, p->k, l);
		int *dst = p->roll + (size_t)l * p->k, n;
		double *acc = p->sums + (size_t)l * p->E, sum = 0;

		if (known) {           /* the truth is known: it is the need */
			memcpy(dst, known, p->k * sizeof(int));
			for (int j = 0; j < p->k; j++)
				acc[known[j]] += 1.0 / p->k;
			continue;
		}
		if (!layer_scores(p, &rt, l))
			continue;
		for (int e = 0; e < p->E; e++)
			sum += p->s[e];
		for (int e = 0; sum > 0 && e < p->E; e++)
			acc[e] += p->s[e] / sum;
		n = top_scores(p->s, p->E, p->k, p->guess);
		if (n == p->k)         /* a partial guess is no path: leave -1 */
			memcpy(dst, p->guess, p->k * sizeof(int));
	}
}

int pred_predict_batch(struct pred *p, const struct pred_tok *toks, size_t n, int want,
		       int *table, int *counts)
{
	int stride = want;             /* the caller's row length, even past E */

	if (want > p->E)
		want = p->E;
	for (int l = 0; l < p->L; l++)
		counts[l] = 0;
	if (!p->ops->score || want <= 0)
		return 0;
	memset(p->sums, 0, (size_t)p->L * p->E * sizeof(*p->sums));
	for (size_t i = 0; i < n; i++)
		batch_token(p, &toks[i]);
	for (int l = 0; l < p->L; l++)
		counts[l] = top_scores(p->sums + (size_t)l * p->E, p->E, want,
				       table + (size_t)l * stride);
	return 0;
}

/* ---- none and pop ---- */

static void pop_score(struct pred *p, const struct pred_tok *t, int layer, double *s)
{
	const uint32_t *row = p->pop + (size_t)layer * p->E;

	(void)t;
	for (int e = 0; e < p->E; e++)
		s[e] = row[e];
}

static void nothing_observe(struct pred *p, const struct pred_tok *t) { (void)p; (void)t; }

const struct pred_ops pred_none_ops = { .name = "none" };

const struct pred_ops pred_pop_ops = {
	.name = "pop", .learns = 1, .observe = nothing_observe, .score = pop_score,
};
