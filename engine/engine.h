/* CPU forward pass of the supported MoE families, f32 compute; the same API
 * runs on a GPU (engine_cuda.c) when the expert source is a CUDA one
 * (ld_expert_src.mem == LD_EXPERT_CUDA, e.g. a cache on the cuda backend). */
#ifndef ENG_ENGINE_H
#define ENG_ENGINE_H

#include <stdint.h>

#include "loader/expert.h"
#include "loader/model.h"

struct eng;
struct eng_seq;

/* Called by the forward pass; any pointer may be NULL. */
struct eng_hooks {
	/* Before MoE layer moe_layer runs on tokens[0..n) (prefetch point). */
	void (*before_moe)(void *ctx, int moe_layer, const int *tokens, int n);
	/* The router's choice for one token: k experts (ascending ids) and
	 * their weights.  pos is the token's position in its sequence, seq_user
	 * the pointer given to eng_seq_set_user. */
	void (*on_route)(void *ctx, void *seq_user, int moe_layer, int pos,
			 int token, const int *experts, const float *weights, int k);
	/* Trust mode: may replace the router's choice (ids ascending, with
	 * their weights); probs are the router's softmax over all n_experts.
	 * Returns 1 if it replaced them. */
	int (*override_route)(void *ctx, void *seq_user, int moe_layer, int pos,
			      int token, int *experts, float *weights, int k,
			      const float *probs, int n_experts);
	void *ctx;
};

/* For an override_route hook: experts = chosen[0..k) in ascending order,
 * w = their router probabilities (probs over all experts), renormalised to
 * sum 1 when norm (the family's norm_topk_prob).  chosen may be experts. */
void eng_route_set(const int *chosen, int k, const float *probs, int norm, int *experts,
		   float *w);

/* max_ctx: the longest sequence (prompt + generated) a seq can hold. */
int eng_open(const struct ld_model *m, const struct ld_expert_src *src,
	     int max_ctx, struct eng **out);
void eng_close(struct eng *e);
void eng_set_hooks(struct eng *e, const struct eng_hooks *h);
int eng_max_ctx(const struct eng *e);

/* A sequence with room for max_ctx tokens, or for cap (<= max_ctx). */
int eng_seq_new(struct eng *e, struct eng_seq **out);
int eng_seq_new_cap(struct eng *e, int cap, struct eng_seq **out);
void eng_seq_free(struct eng_seq *s);
int eng_seq_len(const struct eng_seq *s);
void eng_seq_reset(struct eng_seq *s);
void eng_seq_set_user(struct eng_seq *s, void *user);
void *eng_seq_user(const struct eng_seq *s);

/* Runs tokens[0..n) at the sequence's next positions and writes the logits of
 * the last one (vocab floats) into logits.  -ERANGE past max_ctx, -EINVAL for
 * a token outside the vocabulary, or the expert source's error. */
int eng_forward(struct eng *e, struct eng_seq *s, const int *tokens, int n,
		float *logits);

/* Runs n_tokens[i] tokens of tokens[i] on seqs[i] (distinct sequences), at
 * their next positions, sharing each expert's load and GEMM across every
 * row routed to it; logits gets the last position of each sequence (n_seqs
 * rows of vocab floats).  Prefill of several prompts and decode steps are
 * both this. */
int eng_batch(struct eng *e, struct eng_seq *const *seqs, const int *const *tokens,
	      const int *n_tokens, int n_seqs, float *logits);

/* One decode step for n sequences at once: token i goes to seqs[i] at its
 * next position; logits gets n rows of vocab floats.  Experts are loaded once
 * per step for all the rows routed to them.  n <= eng_max_batch(). */
int eng_step(struct eng *e, struct eng_seq *const *seqs, const int *tokens,
	     int n, float *logits);
int eng_max_batch(void);
/* Chunks of eng_max_batch() rows one forward call runs layer by layer, so
 * that they share each layer's expert loads: 1 on the CPU, 8 on CUDA
 * (MOED_CUDA_CALL_CHUNKS). */
int eng_call_chunks(const struct eng *e);

/* Greedy decode: `steps` decode steps of the n sequences, the first with
 * tokens[i] for seqs[i], each later one with the argmax of the step before;
 * out[s * n + i] gets that argmax after step s (eng_argmax's answer), and
 * step_done (when not NULL) is called with those n tokens once step s is
 * done.  The same tokens, hooks' calls and cache work as `steps` eng_step
 * calls; no logits are given back.  On the CUDA fast way (every expert
 * resident; MOED_CUDA_CHAIN) the steps run back to back on the GPU, each
 * taking its tokens there from the step before, and a step's before_moe
 * calls come after it ran (there is nothing to load ahead there). */
int eng_greedy(struct eng *e, struct eng_seq *const *seqs, int n, const int *tokens,
	       int steps, int *out, void (*step_done)(void *ctx, int step, const int *next),
	       void *ctx);

/* eng_max_batch() rows of vocab floats that the engine owns (until
 * eng_close).  Passed as the logits of eng_forward, eng_batch or eng_step,
 * it saves a copy on the CUDA path: they are the pinned memory the GPU
 * copies into (a decode step's logits land there with no host copy).
 * NULL when it cannot be allocated. */
float *eng_logits_buffer(struct eng *e);

/* Forward calls that ran as one CUDA graph with every expert resident (the
 * CUDA path's fast way, engine/engine_cuda_run.c); 0 on the CPU. */
uint64_t eng_fast_steps(const struct eng *e);
/* The argmax of a row of logits that the last engine call wrote (the same
 * answer as eng_argmax on it), when the GPU made it with the logits (a
 * CUDA graph step's rows), else -1: the caller then scans the row. */
int eng_row_argmax(const struct eng *e, const float *row);

#endif
