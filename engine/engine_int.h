/* Internals shared by engine/engine.c (API, batching) and engine_cpu.c
 * (the CPU forward pass). */
#ifndef ENG_ENGINE_INT_H
#define ENG_ENGINE_INT_H

#include "engine/engine.h"

/* Prompts run in chunks of this many tokens, so scratch is sized once. */
#define CHUNK 512
/* Rows one forward call may take: a chunk on the CPU, ENG_CUDA_CALL_CHUNKS
 * chunks on the CUDA path (which runs them layer by layer). */
#define CALL_ROWS (CHUNK * 8)

#ifdef HAVE_CUDA
#include "engine/engine_cuda.h"
_Static_assert(CHUNK <= ENG_CUDA_MAX_ROWS, "the CUDA path sizes its rows by CHUNK");
_Static_assert(CALL_ROWS >= ENG_CUDA_MAX_ROWS * ENG_CUDA_CALL_CHUNKS,
	       "a call's rows fit the row arrays");
#endif

struct eng {
	const struct ld_model *m;
	struct ld_expert_src src;
	struct eng_hooks hooks;
	int max_ctx, qd, kvd, inter;
	float *inv_freq;           /* [head_dim / 2] */
	struct eng_cuda *cu;       /* the CUDA path, when experts are on a GPU */
	/* scratch, [CHUNK][...] */
	float *x, *xn, *q, *k, *v, *att, *tmp, *rlog, *rw;
	float *xe, *g, *u, *eo, *scores;
	int *rid, *cnt, *rows;     /* routes [CHUNK][k], per-expert counts, rows */
	int *slot;                 /* [CHUNK][k]: which k-slot a row came from */
	float *ulog;               /* eng_logits_buffer's, on the CPU path */
	/* The rows of the call in flight: their sequence, position, token, and
	 * which logits row they fill (-1: none). */
	struct eng_seq *row_seq[CALL_ROWS];
	int row_pos[CALL_ROWS], row_tok[CALL_ROWS], row_out[CALL_ROWS];
#ifdef HAVE_CUDA
	struct eng_cuda_row *crow; /* the same for the CUDA path, CALL_ROWS */
#endif
};

struct eng_seq {
	struct eng *e;
	void *user;
	int len, cap;
	float *kc, *vc;            /* [n_layers][max_ctx][kvd] */
};

/* The CPU forward pass of the chunk's n rows (row_seq/row_pos/row_tok
 * set), logits as chunk_fwd's. */
int eng_cpu_chunk(struct eng *e, int n, float *logits);

#endif
