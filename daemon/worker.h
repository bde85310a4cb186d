/* The worker's state, shared by worker.c (messages, batches, decode steps)
 * and worker_route.c (the engine hooks: prefetch, routing records, trust). */
#ifndef DAEMON_WORKER_H
#define DAEMON_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/ipc.h"
#include "daemon/rt.h"
#include "daemon/shstats.h"
#include "daemon/spool.h"
#include "daemon/wseq.h"
#include "predictor/pred.h"

#define MAX_PENDING 256
#define N_TABLES 32
/* Sequences decoding together; a batch is admitted only when it fits. */
#define MAX_ACTIVE 256

enum phase { PH_PREFILL, PH_STEP };

struct worker {
	struct moed_config cfg;
	struct rt rt;
	nng_socket in, out, tables_in, trace_out;
	struct pred *pred;         /* decode-time next-layer prediction (cepr) */
	struct pred *freq;         /* trust mode, prompt tokens: P(expert | token) */
	bool trust;                /* predictor.mode = trust: predictions replace the router */
	bool norm_topk;
	int n_layers, k, vocab, n_experts;
	int want_next;             /* decode: experts predicted for the next layer */
	int prefill_chunks;        /* batch.prefill_chunks, -1 resolved */
	size_t expert_bytes;
	struct wseq *act[MAX_ACTIVE];
	int n_act;
	struct proto_msg *pend[MAX_PENDING];
	int n_pend;
	struct proto_msg *tables[N_TABLES];
	int table_next;
	/* The call in flight. */
	const struct proto_table *table;
	enum phase phase;
	int *pnext;                /* predicted experts for the next layer, per call */
	/* Routing of the call's rows, for TRACE: [rows][layers][k]. */
	uint16_t *tr_exp;
	uint64_t *tr_seq;
	uint32_t *tr_pos, *tr_tok;
	int tr_n, tr_cap;
	uint64_t calls;            /* engine calls finished (worker_finish_call) */
	float *logits, *scratch;   /* scratch: one ENG_SAMPLE_SCRATCH per pool thread */
	struct spool *pool;        /* samples a step's sequences together */
	uint8_t *predicted;        /* [n_experts]: in the prefetch set of this layer */
	struct shstats_writer *stats;
};

/* worker_route.c */
int worker_tr_reserve(struct worker *w, int rows);
void worker_prefetch_table_layer(struct worker *w, int layer);
/* Learns from the call's rows, updates the shared stats, publishes a TRACE. */
void worker_finish_call(struct worker *w);
void worker_set_hooks(struct worker *w);

#endif
