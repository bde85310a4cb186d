/* config.json of an HF checkpoint -> the numbers the engine needs. */
#ifndef LD_HFCONFIG_H
#define LD_HFCONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum ld_family { LD_MIXTRAL = 0, LD_QWEN3_MOE = 1, LD_OLMOE = 2 };

#define LD_MAX_LAYERS 256

struct ld_config {
	enum ld_family family;
	int vocab_size;
	int hidden_size;
	int n_layers;
	int n_heads;
	int n_kv_heads;
	int head_dim;             /* explicit, or hidden_size / n_heads */
	int intermediate_size;    /* dense MLP (qwen3_moe mlp_only layers) */
	int moe_intermediate_size;/* expert MLP */
	int n_experts;
	int top_k;
	bool norm_topk_prob;
	bool tie_word_embeddings;
	double rms_eps;
	double rope_theta;
	int max_position;
	double clip_qkv;          /* olmoe; 0 = none */
	bool is_moe[LD_MAX_LAYERS];/* per layer: MoE block or dense MLP */
	int n_moe_layers;
};

/* Parses DIR/config.json (path given).  Reads old and new spellings
 * (rope_theta / rope_parameters.rope_theta, num_experts / num_local_experts,
 * head_dim null or absent).  On error: negative errno, one line in err naming
 * the file and the key. */
int ld_config_read(const char *path, struct ld_config *cfg, char *err, size_t errlen);
const char *ld_family_name(enum ld_family f);

#endif
