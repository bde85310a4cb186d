/* Offline evaluation: replays a routing trace through a predictor and the
 * expert cache (sim mode: the worker's policy code, no bytes moved), the way
 * the worker runs a batch:
 *
 *   for each batch, for each MoE layer l:
 *     predict layer l for every token of the batch (context: the token id,
 *       the token's layers < l and its previous token, as known by then),
 *     prefetch the union of the predictions, best ranks first (pinned),
 *     acquire + release each distinct expert the batch truly uses at l,
 *     drop the prefetch pins;
 *   then the predictor learns the batch's true routing.
 *
 * The first train_frac of the tokens (rounded up to a batch boundary) trains
 * the predictor and warms the cache; everything is scored on the rest only. */
#ifndef PRED_EVAL_H
#define PRED_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "loader/cache.h"

struct pred;
struct pred_trace;

struct pred_eval_opts {
	enum cache_policy policy;  /* CACHE_BELADY: next uses come from the trace */
	size_t n_slots;            /* one pool shared by all layers */
	size_t expert_bytes;       /* 0: unknown, bytes_per_token is NAN */
	double train_frac;         /* in [0, 1) */
	int predict_k;             /* experts per layer per token; 0: max(top_k, slots / layers) */
	int frozen;                /* no learning while scoring (default: keeps learning online,
				    * always predicting a token before observing it) */
	int batch_table;           /* predict a whole batch's table before it runs, no
				    * in-flight context (SiDA's mode) instead of per layer */
};

struct pred_eval_result {
	size_t n_tokens, n_train, n_scored;
	size_t n_slots;
	int predict_k;
	uint64_t truth;            /* true (token, layer, expert) uses scored */
	uint64_t predicted;        /* experts predicted for them */
	uint64_t correct;          /* predicted and true */
	uint64_t hits, misses, loads, bytes_loaded, prefetched_unused;
	double recall;             /* correct / truth */
	double precision;          /* correct / predicted; NAN when nothing was predicted */
	double hit_rate;           /* hits / (hits + misses) */
	double loads_per_token;    /* (prefetch loads + miss loads) / scored tokens */
	double bytes_per_token;    /* NAN without expert_bytes */
};

/* p must have the trace's shape.  On error: negative errno and a line in err. */
int pred_eval_run(const struct pred_trace *t, struct pred *p, const struct pred_eval_opts *o,
		  struct pred_eval_result *r, char *err, size_t errlen);

#endif
