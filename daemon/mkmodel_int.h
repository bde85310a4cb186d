/* Internals of mkmodel shared by daemon/mkmodel*.c (not a public API). */
#ifndef DAEMON_MKMODEL_INT_H
#define DAEMON_MKMODEL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/mkmodel.h"

#define MK_MAX_SHARDS 99999

/* xoshiro256** seeded through splitmix64. */
struct mk_rng {
	uint64_t s[4];
};

void mk_rng_seed(struct mk_rng *r, uint64_t seed);
uint64_t mk_rng_next(struct mk_rng *r);
/* Irwin-Hall(4), rescaled: mean 0, variance 1, within +-3.47; no libm. */
float mk_rng_normal(struct mk_rng *r);

/* Skewed routing: C orthonormal cluster directions u_c; token t belongs to
 * cluster c(t) (Zipf-popular clusters), its embedding is embed_scale * u_c
 * + noise; in each MoE layer every cluster has a "home" set of top_k
 * experts (a per-layer permutation) whose router rows carry u_c. */
struct mk_skew {
	int C, H, E, k;
	uint64_t seed;
	float *u;                  /* [C][H] */
	double *cum;               /* [C] cumulative cluster probability */
	float embed_scale, embed_noise, router_gap;
};

int mk_skew_init(struct mk_skew *sk, const struct mkmodel_opts *o);
void mk_skew_free(struct mk_skew *sk);
int mk_token_cluster(const struct mk_skew *sk, int64_t token);
/* coef[e * C + c]: how much of u_c router row e of decoder layer `layer` gets. */
int mk_skew_router_coef(const struct mk_skew *sk, int layer, float *coef);
/* Removes the u_c components of v[H] (lm_head rows: logits then depend on
 * the token, not only on its cluster). */
void mk_skew_project_out(const struct mk_skew *sk, float *v);

int mk_head_dim(const struct mkmodel_opts *o);
int mk_kv_heads(const struct mkmodel_opts *o);
int mk_dense_intermediate(const struct mkmodel_opts *o);

/* DIR/model.safetensors (n_shards 1) or DIR/model-0000S-of-0000N.safetensors
 * (s from 0); malloc'd. */
char *mk_shard_path(const char *dir, int s, int n_shards);
int mk_mkdirs(const char *dir, char *err, size_t errlen);
int mk_write_index(const struct mkmodel_opts *o, const char *const *names, const int *shards,
		   size_t n, int n_shards, uint64_t total_bytes, char *err, size_t errlen);
/* Removes files of an earlier model in dir that the new one does not use:
 * the single file or the index, and shards of another count. */
int mk_remove_stale(const char *dir, int n_shards, char *err, size_t errlen);
int mk_write_config(const struct mkmodel_opts *o, char *err, size_t errlen);

#endif
