/* cepr: FLAME's circular expert prediction.
 *
 * The experts a token used at its previous m layers predict the experts of
 * layer l; "previous" wraps around into the previous token's last layers
 * (circular), so layer 0 is predicted from the last m layers of the token
 * before.  Top-k routing makes whole paths too sparse to count (8 of 64
 * experts at 2 layers almost never repeat), so the path is split into
 * pairs: for each distance d = 1..m a dense table counts, per target layer,
 * how often expert a at layer l-d was followed by expert b at layer l.  The
 * score of b is the sum over d of w_d * mean over a in S(l-d) of
 * P(b | a, d, l), w_d = 1/d, and each row is smoothed toward the layer's
 * popularity by one pseudo-observation.  A further table links the same
 * layer of the previous token to this one (experts a token reuses from the
 * token before: 42% in the olmoe trace).
 *
 * Memory is fixed: (m + 1) * L * E * E 16-bit counts; a row halves when one
 * of its counts saturates. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "predictor/pred_impl.h"

#define DEFAULT_M 2
#define COUNT_MAX 65535

struct cepr {
	int m;
	int D;                     /* tables: distances 1..m, then same-layer */
	uint16_t *T;               /* [D][L][E][E]: source a -> target b */
	uint32_t *R;               /* [D][L][E]: row sums */
	double w[PRED_CEPR_MAX_M + 1];
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
	c->D = c->m + 1;
	double wp = getenv("CEPR_WPOW") ? atof(getenv("CEPR_WPOW")) : 1;
	for (int d = 0; d < c->m; d++)
		c->w[d] = pow(d + 1, -wp);
	c->w[c->m] = getenv("CEPR_SAME") ? atof(getenv("CEPR_SAME")) : 1.0;
	rows = (size_t)c->D * p->L * p->E;
	c->T = calloc(rows * p->E, sizeof(*c->T));
	c->R = calloc(rows, sizeof(*c->R));
	return c->T && c->R ? 0 : -ENOMEM;
}

static void cepr_fini(struct pred *p)
{
	struct cepr *c = p->impl;

	if (!c)
		return;
	free(c->T);
	free(c->R);
	free(c);
}

/* The source experts of table d for target layer l, or NULL. */
static const int *source(const struct pred *p, const struct cepr *c, const struct pred_tok *t,
			 int d, int l)
{
	int s;

	if (d == c->m)                 /* same layer, previous token */
		return pred_layer(t->prev, p->k, l);
	s = l - (d + 1);
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

	for (int l = 0; l < p->L; l++) {
		const int *to = pred_layer(t->cur, p->k, l);

		for (int d = 0; to && d < c->D; d++) {
			const int *from = source(p, c, t, d, l);

			for (int j = 0; from && j < p->k; j++)
				count(p, c, ((size_t)d * p->L + l) * p->E + from[j], to);
		}
	}
}

static void cepr_score(struct pred *p, const struct pred_tok *t, int layer, double *s)
{
	struct cepr *c = p->impl;
	const uint32_t *pop = p->pop + (size_t)layer * p->E;
	double ptot = (double)p->pop_total[layer];

	for (int d = 0; d < c->D; d++) {
		const int *from = source(p, c, t, d, layer);

		for (int j = 0; from && j < p->k; j++) {
			size_t row = ((size_t)d * p->L + layer) * p->E + from[j];
			const uint16_t *T = c->T + row * p->E;
			/* one pseudo-observation (k counts) of the prior */
			double w = c->w[d] / p->k / (c->R[row] + p->k);

			if (!c->R[row])
				continue;
			for (int b = 0; b < p->E; b++)
				s[b] += w * (T[b] + (ptot > 0 ? p->k * pop[b] / ptot : 0));
		}
	}
}

static void cepr_save(const struct pred *p, struct pbuf *b)
{
	const struct cepr *c = p->impl;
	size_t rows = (size_t)c->D * p->L * p->E;

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
	size_t rows = (size_t)c->D * p->L * p->E;

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
