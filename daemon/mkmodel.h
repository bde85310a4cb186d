/* Synthetic HF-layout MoE checkpoints (`moed mkmodel`): config.json plus
 * model.safetensors, or shards + model.safetensors.index.json, with weights
 * from a seeded PRNG.  Same options and seed -> identical bytes. */
#ifndef DAEMON_MKMODEL_H
#define DAEMON_MKMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loader/hfconfig.h"
#include "loader/safetensors.h"

struct mkmodel_opts {
	const char *out_dir;
	enum ld_family family;
	int n_layers;
	int n_experts;
	int top_k;
	int hidden;
	int n_heads;
	int n_kv_heads;            /* 0: = n_heads */
	int head_dim;              /* 0: hidden / heads */
	int intermediate;          /* expert FFN */
	int dense_intermediate;    /* qwen3_moe dense MLP; 0: 2 * intermediate */
	int vocab;
	enum ld_dtype dtype;
	uint64_t seed;
	uint64_t shard_bytes;      /* start a new shard past this many data bytes */
	bool skewed;               /* token clusters aligned with router rows */
	double rope_theta;         /* 0: the family's usual value */
	int max_position;
	bool dense_layer[LD_MAX_LAYERS]; /* qwen3_moe mlp_only_layers */
	bool progress;             /* one updating line on stderr */
	const char *tokenizer_corpus; /* cmd_mkmodel: train a tokenizer on this file */
};

struct mkmodel_info {
	uint64_t data_bytes;       /* tensor bytes over all files */
	uint64_t n_params;
	size_t n_tensors;
	int n_shards;              /* 1: a single model.safetensors */
};

/* The small demo model: olmoe, 4 layers, 16 experts, top-2, hidden 128,
 * 4 heads (kv = heads), intermediate 256, vocab 512, f32, seed 1, 4096 MiB
 * shards, max_position 4096. */
void mkmodel_defaults(struct mkmodel_opts *o);
/* Validates o; on error -EINVAL and one line in err naming the option
 * ("--top-k: ..."). */
int mkmodel_check(const struct mkmodel_opts *o, char *err, size_t errlen);
/* Checks o, then writes the model directory (created if missing; files of an
 * earlier model there that would conflict are removed).  info may be NULL.
 * On error: negative errno, one line in err. */
int mkmodel_write(const struct mkmodel_opts *o, struct mkmodel_info *info,
		  char *err, size_t errlen);

#endif
