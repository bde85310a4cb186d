/* cepr: FLAME's circular expert prediction.
 *
 * The experts a token used at its previous m layers predict the experts of
 * layer l; "previous" wraps around into the previous token's last layers
 * (circular), so layer 0 is predicted from the last m layers of the token
 * before.  Top-k routing makes whole paths too sparse to count (8 of 64
 * experts at 2 layers almost never repeat), so the path is split into
 * pairs: for each distance d = 1..m a dense table counts, per target layer,
 * how often expert a at layer l-d was followed by expert b at layer l.
 * Every known source expert a votes with P(b | a, d, l), smoothed toward the
 * layer's popularity by one pseudo-observation, and the votes combine as a
 * product of experts weighted by 1/d: score(b) = exp(sum_d sum_a w_d log P).
 * On the olmoe / dsv2lite traces this beat a weighted sum of the votes by
 * 0.3-1.3 points of recall, m = 2 beat m = 1 and m = 3..4 matched it, and a
 * further table linking the previous token's same layer made it worse.
 *
 * Memory is fixed: m * L * E * E 16-bit counts; a row halves when one of its
 * counts saturates.  A row's log-probabilities are kept once computed, until
 * the next observe changes the counts (up to LOG_CACHE_BYTES): a batch table
 * scores every prompt token from the same rows (a 512-token prompt with its
 * table, OLMoE's routing shape, CPU: 164.8 -> 127.7 ms; freq's 125.5;
 * bench/results/cuda_bench_s24.md).  The same logs, the same scores. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "predictor/pred_impl.h"

#define DEFAULT_M 2
#define COUNT_MAX 65535
#define MAX_TABLE_BYTES (1ull << 30)  /* E = 512, L = 64, m = 8 needs 256 MiB */
#define LOG_CACHE_BYTES (64ull << 20)

struct cepr {
	int m;
	uint16_t *T;               /* [m][L][E][E]: source a -> target b */
	uint32_t *R;               /* [m][L][E]: row sums */
	double w[PRED_CEPR_MAX_M]; /* per distance */
	uint64_t stamp;            /* observes so far + 1 */
	double *LP;                /* [m][L][E][E]: log P(b | a), or NULL */
	uint64_t *at;              /* [m][L][E]: the stamp LP's row is of; 0: none */
	double *lp;                /* [E]: a row's logs without LP */
};

static int cepr_init(struct pred *p)
{
	struct cepr *c = calloc(1, sizeof(*c));
	size_t rows;

	if (!c)
		return -ENOMEM;
	p->impl = c;
	c->m = p->o.cepr_m ? p->o.cepr_m : DEFAULT_M;
	if (c->m < 1 || c->m > PRED_CEPR_MAX_M)
		return -EINVAL;
	p->o.cepr_m = c->m;
	for (int d = 0; d < c->m; d++)
		c->w[d] = 1.0 / (d + 1);
	rows = (size_t)c->m * p->L * p->E;
	if ((unsigned long long)rows * p->E * sizeof(*c->T) > MAX_TABLE_BYTES)
		return -EFBIG;
	c->T = calloc(rows * p->E, sizeof(*c->T));
	c->R = calloc(rows, sizeof(*c->R));
	c->stamp = 1;
	if ((unsigned long long)rows * p->E * sizeof(*c->LP) <= LOG_CACHE_BYTES) {
		c->LP = malloc(rows * p->E * sizeof(*c->LP));
		c->at = calloc(rows, sizeof(*c->at));
	}
	c->lp = malloc(p->E * sizeof(*c->lp));
	return c->T && c->R && c->lp && !c->LP == !c->at ? 0 : -ENOMEM;
}

static void cepr_fini(struct pred *p)
{
	struct cepr *c = p->impl;

	if (!c)
		return;
	free(c->T);
	free(c->R);
	free(c->LP);
	free(c->at);
	free(c->lp);
	free(c);
}

/* The source experts at distance d + 1 before target layer l, or NULL. */
static const int *source(const struct pred *p, const struct pred_tok *t, int d, int l)
{
	int s = l - (d + 1);

	if (s >= 0)
		return pred_layer(t->cur, p->k, s);
	s += p->L;                     /* circular: the previous token's last layers */
	return s >= 0 ? pred_layer(t->prev, p->k, s) : NULL;
}

static void count(const struct pred *p, struct cepr *c, size_t row, const int *to)
{
	uint16_t *T = c->T + row * p->E;
	int sat = 0;

	for (int j = 0; j < p->k; j++)
		sat |= ++T[to[j]] == COUNT_MAX;
	c->R[row] += p->k;
	if (!sat)
		return;
	c->R[row] = 0;
	for (int b = 0; b < p->E; b++)
		c->R[row] += T[b] /= 2;
}

static void cepr_observe(struct pred *p, const struct pred_tok *t)
{
	struct cepr *c = p->impl;

	c->stamp++;                    /* counts and popularity change */
	for (int l = 0; l < p->L; l++) {
		const int *to = pred_layer(t->cur, p->k, l);

		for (int d = 0; to && d < c->m; d++) {
			const int *from = source(p, t, d, l);

			for (int j = 0; from && j < p->k; j++)
				count(p, c, ((size_t)d * p->L + l) * p->E + from[j], to);
		}
	}
}

/* log P(b | a) for row (d, layer, a), smoothed by one pseudo-observation (k
 * counts) of the add-half popularity pop (total ptot), so no log(0). */
static const double *row_logs(const struct pred *p, struct cepr *c, size_t row,
			      const uint32_t *pop, double ptot)
{
	const uint16_t *T = c->T + row * p->E;
	double norm = 1.0 / (c->R[row] + p->k), *lp = c->lp;

	if (c->LP) {
		lp = c->LP + row * p->E;
		if (c->at[row] == c->stamp)
			return lp;
		c->at[row] = c->stamp;
	}
	for (int b = 0; b < p->E; b++)
		lp[b] = log((T[b] + p->k * (pop[b] + 0.5) / ptot) * norm);
	return lp;
}

static void cepr_score(struct pred *p, const struct pred_tok *t, int layer, double *s)
{
	struct cepr *c = p->impl;
	const uint32_t *pop = p->pop + (size_t)layer * p->E;
	double ptot = (double)p->pop_total[layer] + 0.5 * p->E, top = -INFINITY;
	int votes = 0;

	for (int d = 0; d < c->m; d++) {
		const int *from = source(p, t, d, layer);

		for (int j = 0; from && j < p->k; j++) {
			size_t row = ((size_t)d * p->L + layer) * p->E + from[j];

			if (!c->R[row])
				continue;
			votes++;
			const double *lp = row_logs(p, c, row, pop, ptot);
			for (int b = 0; b < p->E; b++)
				s[b] += c->w[d] * lp[b];
		}
	}
	if (!votes) {
		memset(s, 0, p->E * sizeof(*s));
		return;
	}
	for (int b = 0; b < p->E; b++)
		top = s[b] > top ? s[b] : top;
	for (int b = 0; b < p->E; b++)
		s[b] = exp(s[b] - top);        /* > 0, the best is 1 */
}

static void cepr_save(const struct pred *p, struct pbuf *b)
{
	const struct cepr *c = p->impl;
	size_t rows = (size_t)c->m * p->L * p->E;

	for (size_t r = 0; r < rows; r++) {
		const uint16_t *T = c->T + r * p->E;

		pbuf_u32(b, c->R[r]);
		if (c->R[r])
			for (int e = 0; e < p->E; e++)
				pbuf_u16(b, T[e]);
	}
}

static int cepr_load(struct pred *p, struct rbuf *r)
{
	struct cepr *c = p->impl;
	size_t rows = (size_t)c->m * p->L * p->E;

	for (size_t i = 0; i < rows && !r->bad; i++) {
		uint16_t *T = c->T + i * p->E;
		uint64_t sum = 0;

		c->R[i] = rbuf_u32(r);
		for (int e = 0; c->R[i] && e < p->E; e++)
			sum += T[e] = rbuf_u16(r);
		if (!r->bad && sum != c->R[i])
			return -EINVAL;
	}
	return r->bad ? -EINVAL : 0;
}

static uint32_t cepr_param(const struct pred *p)
{
	return (uint32_t)((const struct cepr *)p->impl)->m;
}

const struct pred_ops pred_cepr_ops = {
	.name = "cepr", .backoff = 1, .learns = 1, .init = cepr_init, .fini = cepr_fini,
	.observe = cepr_observe, .score = cepr_score, .save = cepr_save, .load = cepr_load,
	.param = cepr_param,
};
