/* The engine's CUDA path (engine/engine_cuda.c), used by engine.c when the
 * expert source hands out device memory (ld_expert_src.mem == LD_EXPERT_CUDA).
 * Internal to the engine module. */
#ifndef ENG_ENGINE_CUDA_H
#define ENG_ENGINE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* Rows per chunk the CUDA path is sized for (engine.c's CHUNK). */
#define ENG_CUDA_MAX_ROWS 512
/* Chunks one eng_cuda_chunk call may take: it runs them layer by layer, so
 * that at a budget a layer's experts are loaded once for all of them. */
#define ENG_CUDA_CALL_CHUNKS 8

struct eng_cuda;

/* One row of a chunk: its sequence's device KV caches, their capacity, the
 * row's position and token, which logits row it fills (-1: none) and the
 * sequence's user pointer (for the hooks). */
struct eng_cuda_row {
	float *kc, *vc;
	int cap, pos, tok, out;
	void *user;
};

/* Uploads the dense weights (bf16 for bf16 checkpoints, else f32), sizes the
 * device scratch for max_ctx and ENG_CUDA_MAX_ROWS rows. */
int eng_cuda_open(const struct ld_model *m, const struct ld_expert_src *src, int max_ctx,
		  struct eng_cuda **out);
void eng_cuda_close(struct eng_cuda *g);
/* Device K and V caches of n floats each. */
int eng_cuda_kv_alloc(struct eng_cuda *g, size_t n, float **kc, float **vc);
void eng_cuda_kv_free(struct eng_cuda *g, float *kc, float *vc);
/* Runs rows[0..n) through every layer; the logits of each row with out >= 0
 * go to logits + out * vocab (when logits is not NULL).  n at most
 * eng_cuda_call_rows(): more than ENG_CUDA_MAX_ROWS are chunks of that many,
 * each through a layer before any goes on to the next, with the bits each
 * would give run alone. */
int eng_cuda_call_rows(const struct eng_cuda *g);
int eng_cuda_chunk(struct eng_cuda *g, const struct eng_hooks *h,
		   const struct eng_cuda_row *rows, int n, float *logits);
/* eng_greedy's CUDA way for rows[0..n) (rows[t].out == t): steps chained on
 * the GPU (engine_cuda_chain.c); -ENOTSUP when the fast way with the GPU's
 * argmax does not apply, more than ENG_CU_GEMV_MAX rows among it (the
 * caller then steps one at a time). */
int eng_cuda_greedy(struct eng_cuda *g, const struct eng_hooks *h,
		    const struct eng_cuda_row *rows, int n, int steps, int *out,
		    void (*step_done)(void *ctx, int step, const int *next), void *ctx);
/* The pinned host rows the logits are copied into (ENG_CUDA_MAX_ROWS of
 * vocab floats): eng_logits_buffer's. */
float *eng_cuda_logits_buffer(struct eng_cuda *g);
/* Chunks run the fast way (one CUDA graph, every expert resident). */
uint64_t eng_cuda_fast_steps(const struct eng_cuda *g);
/* eng_row_argmax's answer for the CUDA engine. */
int eng_cuda_row_argmax(const struct eng_cuda *g, const float *row);

#endif
