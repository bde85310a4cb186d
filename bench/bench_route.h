/* cuda_bench's engine hooks: the prefetch modes (none, all, freq, cepr,
 * oracle), the resident run's route record, predictor learning after each
 * decode step, and replayed routing (a trace's experts replace the
 * router's).  bench/cuda_bench.c's header says what each mode does. */
#ifndef BENCH_ROUTE_H
#define BENCH_ROUTE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/engine.h"
#include "loader/cache.h"
#include "predictor/pred.h"
#include "predictor/trace.h"

enum br_mode { BR_NONE, BR_ALL, BR_FREQ, BR_CEPR, BR_ORACLE, BR_N };
/* PH_PREFILL: any eng_batch of prompts; PH_DECODE: eng_step calls. */
enum br_phase { BR_OFF, BR_PREFILL, BR_DECODE };

extern const char *const br_mode_name[BR_N];

/* One sequence. */
struct br_seq {
	struct eng_seq *s;
	int id;                    /* row of the route record, -1: none */
	int tok, has_prev;         /* tok: the token fed at this decode step */
	int *cur, *prev;           /* [L][K], -1 unknown */
	/* Replay: position p uses trace token tbase + (toff + p) % tlen;
	 * tlen 0: the router decides. */
	size_t tbase, toff, tlen;
};

/* The hooks' state for one configuration. */
struct br_ctx {
	int L, E, K, norm_topk;
	struct cache *ca;
	enum br_mode mode;
	enum br_phase phase;
	struct pred *p;            /* freq or cepr: predicts, learns when learn */
	struct pred *obs[2];       /* also observe every decode token (training) */
	int learn, record;
	int keyed;                 /* freq keyed by token id (0 in replay: -1) */
	int *rec;                  /* resident routes [n_rec][maxpos][L][K] */
	int maxpos;
	const struct pred_trace *trace;  /* replay; NULL: synthetic routing */
	int want;                  /* prefill table: experts per layer */
	int pk;                    /* decode (freq, cepr): experts predicted for
				    * a next layer (predictor.prefetch_k) */
	int *table, *counts, *pnext;     /* [L][E], [L], [E] */
	int have_table;
	uint64_t n_pf, n_pf_fail;  /* prefetches started (or pinned), refused */
};

/* One timed phase: its tokens, seconds and the cache counters' change. */
struct br_res {
	int tokens;
	double secs;
	size_t expert_bytes;       /* one load's; the caller sets it */
	struct cache_stats s;
	uint64_t n_pf;
};

/* Buffers for L, E, K; everything else is the caller's to set. */
int br_init(struct br_ctx *r, int L, int E, int K);
void br_fini(struct br_ctx *r);
/* before_moe and on_route always; override_route only with a trace (the
 * engine's CUDA fast path needs it NULL). */
void br_set_hooks(struct br_ctx *r, struct eng *e);
int *br_rec_at(const struct br_ctx *r, int id, int pos, int layer);

int br_seq_init(struct br_ctx *r, struct br_seq *s);
void br_seq_free(struct br_seq *s);
/* Before and after one eng_batch of prompts (phase BR_PREFILL): freq and
 * cepr build the predictor process's table and prefetch its layer 0; after,
 * every prefetch pin goes (the worker's admit).  -ENOMEM. */
int br_call_begin(struct br_ctx *r, const int *const *tokens, const int *n, int n_seqs);
void br_call_end(struct br_ctx *r);
/* After a decode step: each sequence's token is learned (full path, the
 * previous token linked) and becomes the previous one. */
void br_end_step(struct br_ctx *r, struct br_seq *const *ss, int n);

/* Greedy decode steps of n (<= BR_MAXSEQ) sequences: before each step every
 * sequence's tok is the token it is fed, also written to gen[i][at] (gen[i]
 * not NULL, at < gen_max); after it br_end_step.  at counts the steps. */
#define BR_MAXSEQ 16
struct br_dec {
	struct br_ctx *r;
	struct eng *e;
	struct br_seq **ps;
	int n, at, gen_max;
	int *gen[BR_MAXSEQ];
};
/* The tokens of the next step. */
void br_dec_feed(struct br_dec *d, const int *next);
/* k steps from next (left holding the tokens after them) through
 * eng_greedy: on the CUDA fast way chained on the GPU (MOED_CUDA_CHAIN=0:
 * one step at a time, as the server's worker steps).  0 or its error. */
int br_dec_greedy(struct br_dec *d, struct eng_seq **es, int k, int *next);

void br_res_start(const struct br_ctx *r, struct br_res *x);
void br_res_end(const struct br_ctx *r, struct br_res *x, int tokens);
/* "name": {...} with tok/s, bytes and acquires per token, the counters. */
void br_res_json(FILE *f, const char *name, const struct br_res *x, int last);

/* A trace usable for replay on this shape: layers, experts and top-k
 * equal, every token's experts in range and distinct per layer.  0, or
 * -EINVAL with a line in err naming the file, token and layer. */
int br_trace_check(const struct pred_trace *t, const char *path, int L, int E, int K,
		   char *err, size_t errlen);

#endif
