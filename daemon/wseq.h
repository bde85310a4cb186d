/* One sequence inside the worker: its KV cache, sampling state, stop rules,
 * routing of the token in flight, and per-request expert counters. */
#ifndef DAEMON_WSEQ_H
#define DAEMON_WSEQ_H

#include <stdint.h>

#include "engine/engine.h"
#include "engine/sample.h"
#include "proto/proto.h"

struct wseq {
	uint64_t id, batch;
	struct eng_seq *s;
	struct eng_rng rng;
	uint32_t flags;            /* PROTO_SEQ_* */
	float temperature, top_p;
	int kind;                  /* enum proto_kind */
	int n_prompt, max_tokens;
	uint32_t *gen;             /* generated ids, as RESULT carries them */
	int n_gen, n_sent;         /* how many; how many already streamed */
	uint32_t *stop;
	int n_stop;
	int next;                  /* token to feed at the next step */
	int finish;                /* enum proto_finish; NONE while running */
	int status;                /* 0 or negative errno */
	int table_status;          /* enum proto_table_status of its batch */
	float *logits;             /* FORWARD: last-position logits */
	/* Routing of the token in flight and of the one before, [layers][k]. */
	int *cur, *prev;
	uint8_t *pmask;            /* [n_experts]: predicted for layer pmask_layer */
	int pmask_layer;
	int row0;                  /* trace row of this seq's first token in the call */
	int overridden;            /* trust mode: override_route replaced this row's experts */
	struct proto_moe_counts moe;
	/* [layers][experts]: 1 + the engine call whose load of the expert
	 * moe.bytes_loaded has counted (a load the call's rows share counts
	 * once) */
	uint64_t *charged;
};

/* Builds a sequence from a BATCH entry; its KV cache holds prompt + output. */
int wseq_new(struct eng *e, const struct proto_seq *ps, uint64_t batch, int kind,
	     int n_layers, int n_experts, int k, struct wseq **out);
void wseq_free(struct wseq *w);
/* Chooses the next token from logits (best: their argmax when known, from
 * eng_row_argmax, else -1), records it, and decides whether the sequence
 * is done (max_tokens, or a stop token). */
void wseq_take(struct wseq *w, const float *logits, int best, int vocab, float *scratch);

#endif
