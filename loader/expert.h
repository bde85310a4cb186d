/* Where the engine gets expert weights.  The engine reaches experts only
 * through this, so the cache (or a fully resident table) slots in without
 * touching the math. */
#ifndef LD_EXPERT_H
#define LD_EXPERT_H

struct ld_expert_src {
	/* Makes expert (moe_layer, expert) readable and returns its weights
	 * (layout of ld_expert_floats; f32, or bf16 when bf16 is set) in *w; it
	 * stays valid until release. */
	int (*acquire)(void *ctx, int moe_layer, int expert, const float **w);
	void (*release)(void *ctx, int moe_layer, int expert);
	void *ctx;
	/* Where acquire's weights live: LD_EXPERT_HOST (0) CPU memory, or
	 * LD_EXPERT_CUDA device memory of CUDA device `device`, valid for work
	 * queued on `stream` (a cudaStream_t) after acquire returned. */
	int mem;
	int device;
	void *stream;
	/* Optional: for an expert that acquire made resident but whose weights
	 * the CPU cannot read (*w NULL: an FPGA's memory), runs its FFN where
	 * they live on n host rows x[n][hidden] into out[n][hidden]:
	 * out = down(silu(gate x) * up x).  Between acquire and release. */
	int (*run)(void *ctx, int moe_layer, int expert, const float *x, int n, int hidden,
		   int inter, float *out);
	/* Optional: acquire for an expert wanted ahead of its turn (its load
	 * then overlaps earlier experts' compute); -EAGAIN where acquire would
	 * wait for a slot or take a prefetched expert's.  1: the load is still
	 * running (LD_EXPERT_CUDA); queue work reading the expert only after
	 * order(), so that work queued before does not wait for the load (an
	 * error from order() releases the expert). */
	int (*acquire_ahead)(void *ctx, int moe_layer, int expert, const float **w);
	/* Set wherever acquire_ahead may return 1. */
	int (*order)(void *ctx, int moe_layer, int expert);
	/* The weights acquire hands out are bf16 values (LD_EXPERT_CUDA only). */
	int bf16;
	/* Optional: when every expert is resident, loaded and can never be
	 * evicted (slots for all of them), the device pointers of all experts,
	 * [moe_layer * n_experts + expert], valid until the source closes;
	 * else NULL.  The engine then reads experts without acquire/release
	 * and reports its uses with note_hits: per_layer[l] experts used in
	 * MoE layer l (counted as hits). */
	const void *const *(*resident_all)(void *ctx);
	void (*note_hits)(void *ctx, const int *per_layer);
	/* Optional: the experts of moe_layer this call needs are all acquired
	 * (prefetches for it not yet started can go). */
	void (*layer_done)(void *ctx, int moe_layer);
	/* Optional: the acquires that follow, until the next call, serve a
	 * forward call with n prompt rows (rows of sequences that have more
	 * than one in it: a prefill chunk, which uses most experts of every
	 * layer once; the cache keeps them from flushing the rest), in
	 * `chunks` chunks run layer by layer (more than one: each layer's
	 * experts are wanted again by the next chunk). */
	void (*prompt_rows)(void *ctx, int n, int chunks);
	/* Optional: such a call will want (nearly) every expert of moe_layer
	 * next: load them while the current layer runs, held against eviction
	 * until unpin_layer (-1: every layer's). */
	void (*prefetch_layer)(void *ctx, int moe_layer);
	void (*unpin_layer)(void *ctx, int moe_layer);
	/* Optional (LD_EXPERT_CUDA, bf16): for an expert neither resident nor
	 * loading (or only prefetched, its copy still queued), its bf16
	 * weights in host memory, else NULL; with take, the engine computes it
	 * on host_threads CPU threads instead of loading it (counted so; a
	 * queued prefetch of it dropped; NULL if that copy has started). */
	const void *(*host_weights)(void *ctx, int moe_layer, int expert, int take);
	int host_threads;
};

enum { LD_EXPERT_HOST = 0, LD_EXPERT_CUDA = 1 };

#endif
