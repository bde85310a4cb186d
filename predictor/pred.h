/* Expert predictors behind one interface.  Each returns, for one MoE layer, a
 * ranked set of experts, as many as the caller wants (the cache budget per
 * layer) or fewer when it has no evidence for more.
 *
 *   none    predicts nothing (on-demand loading only).
 *   pop     per-layer popularity (the back-off of freq and cepr; a baseline).
 *   freq    P(expert | layer, token id), bounded count table; backs off to
 *           pop for unseen tokens and for token id -1 (traces without ids).
 *   cepr    FLAME's circular expert prediction: the experts at the previous
 *           m layers of this token, continuing into the previous token's
 *           last layers, vote through pairwise transition counts
 *           (m * L * E * E 16-bit counts; open fails with -EFBIG past 1 GiB).
 *   oracle  replays a recorded trace (evaluation only: the upper bound).
 *
 * Learning is online, from the true routing (pred_observe), in fixed memory:
 * counts halve when they saturate.  Not thread-safe: one thread per pred. */
#ifndef PRED_PRED_H
#define PRED_PRED_H

#include <stddef.h>
#include <stdint.h>

struct pred_trace;

enum pred_kind { PRED_NONE = 0, PRED_POP = 1, PRED_FREQ = 2, PRED_CEPR = 3, PRED_ORACLE = 4 };

#define PRED_CEPR_MAX_M 8

struct pred_opts {
	int cepr_m;                /* cepr: previous layers used, 1..PRED_CEPR_MAX_M (0: 2) */
	size_t freq_entries;       /* freq: (token, layer) table entries (0: 65536) */
	const struct pred_trace *oracle_trace; /* oracle: the trace it replays */
};

/* What is known about one token.  cur and prev are [n_layers][top_k] expert
 * ids; a layer whose first entry is -1 is not known (yet).  During decode in
 * exact mode, cur holds the layers already computed and prev the whole
 * previous token of the same sequence. */
struct pred_tok {
	int token;                 /* token id, -1 unknown */
	int64_t index;             /* oracle: the token's index in oracle_trace, -1 unknown */
	const int *cur;            /* NULL: nothing known */
	const int *prev;           /* NULL: no previous token */
};

struct pred;

int pred_open(enum pred_kind kind, int n_layers, int n_experts, int top_k,
	      const struct pred_opts *o, struct pred **out);
void pred_close(struct pred *p);
int pred_kind_parse(const char *name, enum pred_kind *kind);
const char *pred_kind_name(enum pred_kind kind);
enum pred_kind pred_get_kind(const struct pred *p);
/* Whether observe changes anything (false for none and oracle). */
int pred_learns(const struct pred *p);

/* Learns from one token's true routing; t->cur must hold every layer. */
void pred_observe(struct pred *p, const struct pred_tok *t);
/* Learns from n tokens' routing laid out as a TRACE carries it: experts
 * [n][layers][top_k], each token's sequence id and token id; a token follows
 * the row before it when both have the same sequence id.  Allocates nothing. */
void pred_observe_rows(struct pred *p, const uint16_t *experts, const uint64_t *seq_ids,
		       const uint32_t *tokens, size_t n);

/* Up to want experts for `layer`, best first, into out; returns how many. */
int pred_predict_layer(struct pred *p, const struct pred_tok *t, int layer, int want, int *out);

/* The table for a whole batch before it runs: table[l * want + j], counts[l]
 * = experts listed for layer l (the union of the tokens' needs, ranked by
 * summed probability).  Unknown layers are rolled out from the predictor's
 * own top_k guesses, so cepr here sees only the previous token's path. */
int pred_predict_batch(struct pred *p, const struct pred_tok *toks, size_t n, int want,
		       int *table, int *counts);

/* Learned state to/from a versioned, checksummed file.  load requires the
 * same kind, shape and options; on error the predictor is unchanged and err
 * names the file and the problem. */
int pred_save(const struct pred *p, const char *path, char *err, size_t errlen);
int pred_load(struct pred *p, const char *path, char *err, size_t errlen);

#endif
