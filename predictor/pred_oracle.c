/* oracle: replays a recorded trace, returning the true experts of the token
 * being predicted (looked up by its index).  The upper bound for the
 * evaluation; it never predicts more than the top_k it knows, so its
 * precision is 1 and its recall 1 whenever want >= top_k. */
#include <errno.h>

#include "predictor/pred_impl.h"
#include "predictor/trace.h"

static int oracle_init(struct pred *p)
{
	const struct pred_trace *t = p->o.oracle_trace;

	if (!t || t->n_layers != p->L || t->n_experts != p->E || t->top_k != p->k)
		return -EINVAL;
	return 0;
}

static void oracle_score(struct pred *p, const struct pred_tok *t, int layer, double *s)
{
	const struct pred_trace *tr = p->o.oracle_trace;
	const int *ex;

	if (t->index < 0 || (uint64_t)t->index >= tr->n_tokens)
		return;
	ex = pred_trace_at(tr, t->index, layer);
	for (int j = 0; j < p->k; j++)
		s[ex[j]] = p->k - j;        /* keeps the router's order */
}

const struct pred_ops pred_oracle_ops = {
	.name = "oracle", .init = oracle_init, .score = oracle_score,
};
