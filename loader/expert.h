/* Where the engine gets expert weights.  The engine reaches experts only
 * through this, so the cache (or a fully resident table) slots in without
 * touching the math. */
#ifndef LD_EXPERT_H
#define LD_EXPERT_H

struct ld_expert_src {
	/* Makes expert (moe_layer, expert) readable and returns its f32 weights
	 * (layout of ld_expert_floats) in *w; it stays valid until release. */
	int (*acquire)(void *ctx, int moe_layer, int expert, const float **w);
	void (*release)(void *ctx, int moe_layer, int expert);
	void *ctx;
};

#endif
