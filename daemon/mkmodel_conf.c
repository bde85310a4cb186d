/* mkmodel: option checks, config.json, the shard index and directory chores. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/mkmodel_int.h"
#include "loader/errfmt.h"

#define DIM_MAX (1 << 20)

void mkmodel_defaults(struct mkmodel_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->family = LD_OLMOE;
	o->n_layers = 4;
	o->n_experts = 16;
	o->top_k = 2;
	o->hidden = 128;
	o->n_heads = 4;
	o->intermediate = 256;
	o->vocab = 512;
	o->dtype = LD_F32;
	o->seed = 1;
	o->shard_bytes = (uint64_t)4096 << 20;
	o->max_position = 4096;
}

int mk_head_dim(const struct mkmodel_opts *o)
{
	return o->head_dim ? o->head_dim : o->hidden / o->n_heads;
}

int mk_kv_heads(const struct mkmodel_opts *o)
{
	return o->n_kv_heads ? o->n_kv_heads : o->n_heads;
}

int mk_dense_intermediate(const struct mkmodel_opts *o)
{
	return o->dense_intermediate ? o->dense_intermediate : 2 * o->intermediate;
}

static double rope_theta(const struct mkmodel_opts *o)
{
	if (o->rope_theta > 0)
		return o->rope_theta;
	return o->family == LD_OLMOE ? 10000.0 : 1000000.0;
}

static int range(char *err, size_t errlen, const char *opt, long v, long lo, long hi)
{
	if (v >= lo && v <= hi)
		return 0;
	return ld_fail(err, errlen, -EINVAL, "%s: must be %ld..%ld (got %ld)", opt, lo, hi, v);
}

static int check_heads(const struct mkmodel_opts *o, char *err, size_t errlen)
{
	int rc;

	if ((rc = range(err, errlen, "--heads", o->n_heads, 1, 4096)) ||
	    (rc = range(err, errlen, "--kv-heads", o->n_kv_heads, 0, o->n_heads)) ||
	    (rc = range(err, errlen, "--head-dim", o->head_dim, 0, 65536)))
		return rc;
	if (!o->head_dim && o->hidden % o->n_heads)
		return ld_fail(err, errlen, -EINVAL,
			       "--heads: hidden size %d is not a multiple of %d heads (give --head-dim)",
			       o->hidden, o->n_heads);
	if (o->n_heads % mk_kv_heads(o))
		return ld_fail(err, errlen, -EINVAL, "--kv-heads: %d does not divide --heads %d",
			       o->n_kv_heads, o->n_heads);
	if (o->family == LD_OLMOE && o->head_dim && o->head_dim * o->n_heads != o->hidden)
		return ld_fail(err, errlen, -EINVAL,
			       "--head-dim: olmoe needs head_dim = hidden / heads = %d (got %d)",
			       o->hidden / o->n_heads, o->head_dim);
	if (mk_head_dim(o) % 2)
		return ld_fail(err, errlen, -EINVAL, "--head-dim: RoPE needs an even head dim (got %d)",
			       mk_head_dim(o));
	return 0;
}

static int check_dense(const struct mkmodel_opts *o, char *err, size_t errlen)
{
	int n_dense = 0;

	for (int l = 0; l < LD_MAX_LAYERS; l++) {
		if (!o->dense_layer[l])
			continue;
		if (o->family != LD_QWEN3_MOE)
			return ld_fail(err, errlen, -EINVAL, "--mlp-only-layers: only --family qwen3_moe has dense layers");
		if (l >= o->n_layers)
			return ld_fail(err, errlen, -EINVAL, "--mlp-only-layers: layer %d >= --layers %d",
				       l, o->n_layers);
		n_dense++;
	}
	if (n_dense == o->n_layers)
		return ld_fail(err, errlen, -EINVAL, "--mlp-only-layers: every layer dense, no MoE layer left");
	if (o->dense_intermediate && o->family != LD_QWEN3_MOE)
		return ld_fail(err, errlen, -EINVAL,
			       "--dense-intermediate: only --family qwen3_moe has dense layers");
	return range(err, errlen, "--dense-intermediate", o->dense_intermediate, 0, DIM_MAX);
}

int mkmodel_check(const struct mkmodel_opts *o, char *err, size_t errlen)
{
	int rc;

	if (!o->out_dir || !*o->out_dir)
		return ld_fail(err, errlen, -EINVAL, "--out: required (the model directory to write)");
	if (o->family != LD_MIXTRAL && o->family != LD_QWEN3_MOE && o->family != LD_OLMOE)
		return ld_fail(err, errlen, -EINVAL, "--family: unknown family %d", (int)o->family);
	if (o->dtype != LD_F32 && o->dtype != LD_F16 && o->dtype != LD_BF16)
		return ld_fail(err, errlen, -EINVAL, "--dtype: unknown dtype %d", (int)o->dtype);
	if ((rc = range(err, errlen, "--layers", o->n_layers, 1, LD_MAX_LAYERS)) ||
	    (rc = range(err, errlen, "--experts", o->n_experts, 1, 4096)) ||
	    (rc = range(err, errlen, "--top-k", o->top_k, 1, o->n_experts)) ||
	    (rc = range(err, errlen, "--hidden", o->hidden, 2, 65536)) ||
	    (rc = range(err, errlen, "--intermediate", o->intermediate, 1, DIM_MAX)) ||
	    (rc = range(err, errlen, "--vocab", o->vocab, 2, 1 << 24)) ||
	    (rc = range(err, errlen, "--max-pos", o->max_position, 1, 1 << 24)))
		return rc;
	if ((rc = check_heads(o, err, errlen)) || (rc = check_dense(o, err, errlen)))
		return rc;
	if (!(o->rope_theta >= 0) || isinf(o->rope_theta))
		return ld_fail(err, errlen, -EINVAL, "--rope-theta: must be a positive number (got %g)",
			       o->rope_theta);
	if (!o->shard_bytes)
		return ld_fail(err, errlen, -EINVAL, "--shard-mib: must be positive");
	return 0;
}

char *mk_shard_path(const char *dir, int s, int n_shards)
{
	char *p;

	if (n_shards == 1)
		return asprintf(&p, "%s/model.safetensors", dir) < 0 ? NULL : p;
	return asprintf(&p, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, n_shards) < 0 ? NULL : p;
}

int mk_mkdirs(const char *dir, char *err, size_t errlen)
{
	char *p = strdup(dir);
	struct stat sb;

	if (!p)
		return ld_fail(err, errlen, -ENOMEM, "%s: out of memory", dir);
	for (char *s = p + 1; ; s++) {
		if (*s && *s != '/')
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			int rc = -errno;
			ld_fail(err, errlen, rc, "--out: cannot create %s: %s", p, strerror(errno));
			free(p);
			return rc;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return ld_fail(err, errlen, -ENOTDIR, "--out: %s is not a directory", dir);
	return 0;
}

/* Writes dir/name through a temporary file, fsync and rename. */
static int write_text(const char *dir, const char *name, const char *text, char *err, size_t errlen)
{
	char *path = NULL, *tmp = NULL;
	size_t len = strlen(text);
	int fd = -1, rc = 0;

	if (asprintf(&path, "%s/%s", dir, name) < 0 || asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0) {
		tmp = NULL;
		rc = ld_fail(err, errlen, -ENOMEM, "%s: out of memory", dir);
		goto out;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		rc = ld_fail(err, errlen, -errno, "%s: cannot create temporary file: %s", path,
			     strerror(errno));
		goto out;
	}
	if (fchmod(fd, 0644) < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0 ||
	    close(fd) < 0) {
		rc = ld_fail(err, errlen, errno ? -errno : -EIO, "%s: write: %s", tmp, strerror(errno));
		fd = -1;
		unlink(tmp);
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = ld_fail(err, errlen, -errno, "%s: rename: %s", path, strerror(errno));
		unlink(tmp);
	}
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(path);
	free(tmp);
	return rc;
}

static int write_json(const char *dir, const char *name, json_t *j, char *err, size_t errlen)
{
	char *text, *line;
	int rc;

	if (!j)
		return ld_fail(err, errlen, -ENOMEM, "%s/%s: out of memory", dir, name);
	text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(12));
	json_decref(j);
	if (text && (line = realloc(text, strlen(text) + 2))) {
		strcat(line, "\n");
		text = line;
	}
	if (!text)
		return ld_fail(err, errlen, -ENOMEM, "%s/%s: out of memory", dir, name);
	rc = write_text(dir, name, text, err, errlen);
	free(text);
	return rc;
}

int mk_write_index(const struct mkmodel_opts *o, const char *const *names, const int *shards,
		   size_t n, int n_shards, uint64_t total_bytes, char *err, size_t errlen)
{
	json_t *wm = json_object(), *root;
	const char *dir = o->out_dir;

	for (size_t i = 0; wm && i < n; i++) {
		char *p = mk_shard_path(".", shards[i], n_shards);
		if (!p || json_object_set_new(wm, names[i], json_string(p + 2)) < 0) {
			free(p);
			json_decref(wm);
			return ld_fail(err, errlen, -ENOMEM, "%s: out of memory", dir);
		}
		free(p);
	}
	root = json_pack("{s:{s:I,s:I},s:o}", "metadata",
			 "total_parameters", (json_int_t)(total_bytes / ld_dtype_size(o->dtype)),
			 "total_size", (json_int_t)total_bytes, "weight_map", wm);
	return write_json(dir, "model.safetensors.index.json", root, err, errlen);
}

static int is_other_shard(const char *name, int n_shards)
{
	int a, b, len = 0;
	char again[64];

	if (sscanf(name, "model-%5d-of-%5d.safetensors%n", &a, &b, &len) != 2 ||
	    (size_t)len != strlen(name))
		return 0;
	snprintf(again, sizeof(again), "model-%05d-of-%05d.safetensors", a, b);
	return !strcmp(again, name) && (n_shards == 1 || b != n_shards);
}

int mk_remove_stale(const char *dir, int n_shards, char *err, size_t errlen)
{
	const char *other = n_shards == 1 ? "model.safetensors.index.json" : "model.safetensors";
	struct dirent *de;
	DIR *d = opendir(dir);
	int rc = 0;

	if (!d)
		return ld_fail(err, errlen, -errno, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)) && rc == 0)
		if (!strcmp(de->d_name, other) || is_other_shard(de->d_name, n_shards))
			if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
				rc = ld_fail(err, errlen, -errno, "%s/%s: cannot remove stale file: %s",
					     dir, de->d_name, strerror(errno));
	closedir(d);
	return rc;
}

static json_t *family_keys(const struct mkmodel_opts *o)
{
	json_t *dense = json_array();

	for (int l = 0; dense && l < o->n_layers; l++)
		if (o->dense_layer[l])
			json_array_append_new(dense, json_integer(l));
	switch (o->family) {
	case LD_MIXTRAL:
		json_decref(dense);
		return json_pack("{s:[s],s:s,s:i,s:i,s:i,s:f,s:f,s:n}",
				 "architectures", "MixtralForCausalLM", "model_type", "mixtral",
				 "head_dim", mk_head_dim(o), "intermediate_size", o->intermediate,
				 "num_local_experts", o->n_experts, "rms_norm_eps", 1e-5,
				 "router_jitter_noise", 0.0, "sliding_window");
	case LD_QWEN3_MOE:
		return json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:o,s:b,s:f,s:b,s:b,s:n}",
				 "architectures", "Qwen3MoeForCausalLM", "model_type", "qwen3_moe",
				 "head_dim", mk_head_dim(o), "intermediate_size",
				 mk_dense_intermediate(o), "moe_intermediate_size", o->intermediate,
				 "num_local_experts", o->n_experts, "num_experts", o->n_experts,
				 "decoder_sparse_step", 1, "mlp_only_layers", dense,
				 "norm_topk_prob", 1, "rms_norm_eps", 1e-6, "attention_bias", 0,
				 "use_sliding_window", 0, "sliding_window");
	default:
		json_decref(dense);
		return json_pack("{s:[s],s:s,s:i,s:i,s:b,s:f,s:b,s:n}",
				 "architectures", "OlmoeForCausalLM", "model_type", "olmoe",
				 "intermediate_size", o->intermediate, "num_experts", o->n_experts,
				 "norm_topk_prob", 0, "rms_norm_eps", 1e-5, "attention_bias", 0,
				 "clip_qkv");
	}
}

int mk_write_config(const struct mkmodel_opts *o, char *err, size_t errlen)
{
	static const char *const dtypes[] = { "float32", "float16", "bfloat16" };
	const char *dt = dtypes[o->dtype];
	json_t *c = family_keys(o);
	json_t *common = json_pack(
		"{s:f,s:n,s:n,s:n,s:s,s:s,s:s,s:i,s:f,s:i,s:i,s:i,s:i,s:i,s:b,s:{s:f,s:s},"
		"s:f,s:f,s:b,s:b,s:i}",
		"attention_dropout", 0.0, "bos_token_id", "eos_token_id", "pad_token_id",
		"dtype", dt, "torch_dtype", dt, "hidden_act", "silu",
		"hidden_size", o->hidden, "initializer_range", 0.02,
		"max_position_embeddings", o->max_position,
		"num_attention_heads", o->n_heads, "num_experts_per_tok", o->top_k,
		"num_hidden_layers", o->n_layers, "num_key_value_heads", mk_kv_heads(o),
		"output_router_logits", 0,
		"rope_parameters", "rope_theta", rope_theta(o), "rope_type", "default",
		"rope_theta", rope_theta(o), "router_aux_loss_coef", 0.01,
		"tie_word_embeddings", 0, "use_cache", 1, "vocab_size", o->vocab);

	if (!c || !common || json_object_update(c, common) < 0) {
		json_decref(c);
		json_decref(common);
		return ld_fail(err, errlen, -ENOMEM, "%s/config.json: out of memory", o->out_dir);
	}
	json_decref(common);
	return write_json(o->out_dir, "config.json", c, err, errlen);
}
