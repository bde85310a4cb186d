/* An HF MoE checkpoint in memory: config, dense weights converted to f32,
 * and references to the expert tensors (still in the mapped files). */
#ifndef LD_MODEL_H
#define LD_MODEL_H

#include "loader/hfconfig.h"
#include "loader/safetensors.h"

/* One decoder layer's dense weights, f32, row-major [out][in] as in HF. */
struct ld_layer {
	float *attn_norm;          /* [hidden] input_layernorm */
	float *q, *k, *v, *o;      /* q [heads*hd][hidden], k/v [kv*hd][hidden], o [hidden][heads*hd] */
	float *q_norm, *k_norm;    /* qwen3: [hd]; olmoe: [heads*hd] / [kv*hd]; NULL for mixtral */
	float *mlp_norm;           /* [hidden] post_attention_layernorm */
	float *router;             /* [n_experts][hidden], MoE layers only */
	float *mlp_gate, *mlp_up, *mlp_down; /* dense MLP layers only */
	int moe_index;             /* index among MoE layers, -1 for dense */
};

/* Source tensors of one expert (pointers into the mapping). */
struct ld_expert_ref {
	const struct ld_tensor *gate, *up, *down;
	/* -1: gate/up/down are this expert's own [I][H], [I][H], [H][I] tensors.
	 * >= 0: transformers-5 fused layout; gate == up == gate_up_proj
	 * [E][2I][H] (rows 0..I-1 gate, I..2I-1 up), down == down_proj [E][H][I],
	 * and index is this expert's slice along E. */
	int index;
};

struct ld_model {
	char *dir;
	struct ld_config cfg;
	struct ld_st *st;
	float *embed;              /* [vocab][hidden] */
	float *final_norm;         /* [hidden] */
	float *lm_head;            /* [vocab][hidden]; == embed when tied */
	struct ld_layer *layers;   /* [n_layers] */
	struct ld_expert_ref *experts; /* [n_moe_layers * n_experts] */
	enum ld_dtype dtype;       /* dtype of the checkpoint's expert tensors */
};

/* Opens an HF model directory, validates every tensor the family needs
 * (presence, dtype, shape) and converts the dense ones to f32.  On error:
 * negative errno, one line in err ("FILE: TENSOR: problem"). */
int ld_model_open(const char *dir, struct ld_model **out, char *err, size_t errlen);
void ld_model_close(struct ld_model *m);

/* Floats in one expert: gate [I][H], up [I][H], down [H][I], contiguous. */
size_t ld_expert_floats(const struct ld_config *cfg);
/* Converts expert (moe_layer, expert) to f32 into dst (ld_expert_floats). */
void ld_expert_copy(const struct ld_model *m, int moe_layer, int expert, float *dst);

#endif
