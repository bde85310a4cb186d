/* Routing traces: which experts every token used at every MoE layer.
 *
 * The writer emits moed's binary format (predictor/TRACE_FORMAT.md); the
 * loader reads that format or the JSONL traces of /work/shared/traces (one
 * decode token a line, a JSON array of [layer, expert] pairs) and returns the
 * whole trace in memory as a sequence of tokens. */
#ifndef PRED_TRACE_H
#define PRED_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PRED_TRACE_MAGIC "MOEDTRCE"
#define PRED_TRACE_VERSION 1
#define PRED_TRACE_MAX_EXPERTS 65535   /* ids are stored as u16 */

enum pred_trace_format { PRED_TRACE_BINARY = 0, PRED_TRACE_JSONL = 1, PRED_TRACE_MEMORY = 2 };

struct pred_trace_tok {
	uint64_t batch;            /* batch id (JSONL: the line index) */
	uint32_t seq;              /* sequence id, stable across batches (JSONL: 0) */
	int32_t pos;               /* position in its sequence (JSONL: line index) */
	int32_t token;             /* token id; -1 when the trace has none (JSONL) */
	int64_t prev;              /* index of the previous token of the same seq, -1 if none */
};

struct pred_trace {
	int n_layers;              /* MoE layers, 0..n_layers-1 */
	int n_experts;             /* per layer */
	int top_k;                 /* experts per token per layer */
	size_t n_tokens;
	struct pred_trace_tok *toks;   /* [n_tokens] */
	int *experts;              /* [n_tokens][n_layers][top_k] */
	int *layer_ids;            /* [n_layers]: the layer ids as the file named them */
	enum pred_trace_format format;
	size_t n_incomplete;       /* binary: tokens dropped for missing layers */
};

/* The top_k experts of token i at layer l. */
static inline const int *pred_trace_at(const struct pred_trace *t, size_t i, int l)
{
	return t->experts + (i * (size_t)t->n_layers + (size_t)l) * (size_t)t->top_k;
}

/* Loads a whole trace, detecting the format from its first bytes.  On error:
 * negative errno and one line in err naming the file (and line or record). */
int pred_trace_load(const char *path, struct pred_trace **out, char *err, size_t errlen);
/* An empty in-memory trace of n_tokens tokens (tests, tools): batch = pos =
 * index, seq 0, token -1, prev = index - 1, experts all 0; fill as needed. */
int pred_trace_new(int n_layers, int n_experts, int top_k, size_t n_tokens,
		   struct pred_trace **out);
void pred_trace_free(struct pred_trace *t);
/* The JSONL reader behind pred_trace_load (f at the start of the file). */
int pred_trace_load_jsonl(FILE *f, const char *path, struct pred_trace **out,
			  char *err, size_t errlen);
/* Sets every token's prev from (seq, order); used by the loaders. */
void pred_trace_link(struct pred_trace *t);

struct pred_trace_writer;

int pred_trace_writer_open(const char *path, int n_layers, int n_experts, int top_k,
			   struct pred_trace_writer **out);
/* One record: the k (== top_k) experts that token (seq, pos) of batch used
 * at MoE layer `layer`.  token -1 if unknown. */
int pred_trace_write(struct pred_trace_writer *w, uint64_t batch, uint32_t seq, int layer,
		     int pos, int token, const int *experts, int k);
/* Flushes and closes; returns the first write error, if any. */
int pred_trace_writer_close(struct pred_trace_writer *w);

#endif
