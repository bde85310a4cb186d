/* config.json -> struct ld_config, with HF transformers' defaults per family
 * for absent keys (MixtralConfig, Qwen3MoeConfig, OlmoeConfig). */
#include "loader/hfconfig.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define BIG (1 << 24)

struct fam {
	const char *model_type, *arch;
	int vocab, hidden, inter, layers, heads, kv; /* kv -1: = heads */
	int max_pos, top_k, experts, moe_inter;      /* moe_inter -1: = inter */
	double rms_eps, rope_theta;
};

static const struct fam fams[] = {
	[LD_MIXTRAL] = { "mixtral", "MixtralForCausalLM", 32000, 4096, 14336, 32, 32, 8,
			 4096 * 32, 2, 8, -1, 1e-5, 1e6 },
	[LD_QWEN3_MOE] = { "qwen3_moe", "Qwen3MoeForCausalLM", 151936, 2048, 6144, 24, 32, 4,
			   32768, 8, 128, 768, 1e-6, 10000.0 },
	[LD_OLMOE] = { "olmoe", "OlmoeForCausalLM", 50304, 2048, 2048, 16, 16, -1,
		       4096, 8, 64, -1, 1e-5, 10000.0 },
};
#define NFAMS (sizeof(fams) / sizeof(fams[0]))

struct rd {
	const char *path;
	char *err;
	size_t errlen;
};

static int fail(struct rd *r, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct rd *r, int rc, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (r->err && r->errlen) {
		n = snprintf(r->err, r->errlen, "%s: ", r->path);
		if (n < 0 || (size_t)n >= r->errlen)
			return rc;
		va_start(ap, fmt);
		vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return rc;
}

const char *ld_family_name(enum ld_family f)
{
	return (unsigned)f < NFAMS ? fams[f].model_type : "?";
}

/* Absent or null -> def.  Otherwise an integer in [lo, hi]. */
static int get_int(struct rd *r, json_t *o, const char *key, int def, int lo, int hi, int *out)
{
	json_t *v = json_object_get(o, key);
	json_int_t x;

	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v))
		return fail(r, -EINVAL, "%s: expected an integer", key);
	x = json_integer_value(v);
	if (x < lo || x > hi)
		return fail(r, -ERANGE, "%s: value %lld out of range [%d, %d]", key, (long long)x, lo, hi);
	*out = (int)x;
	return 0;
}

/* Absent or null -> def.  Otherwise a finite number > lo (or >= lo if incl). */
static int get_num(struct rd *r, json_t *o, const char *key, double def, double lo, int incl,
		   double *out)
{
	json_t *v = json_object_get(o, key);
	double x;

	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_number(v))
		return fail(r, -EINVAL, "%s: expected a number", key);
	x = json_number_value(v);
	if (!isfinite(x) || x < lo || (!incl && x == lo))
		return fail(r, -ERANGE, "%s: value %g out of range (must be %s %g)", key, x,
			    incl ? ">=" : ">", lo);
	*out = x;
	return 0;
}

static int get_bool(struct rd *r, json_t *o, const char *key, bool def, bool *out)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return fail(r, -EINVAL, "%s: expected true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int family_of(struct rd *r, json_t *root, enum ld_family *fam)
{
	json_t *mt = json_object_get(root, "model_type"), *ar = json_object_get(root, "architectures");
	const char *name = NULL;
	size_t i, k;

	if (mt && !json_is_null(mt) && !json_is_string(mt))
		return fail(r, -EINVAL, "model_type: expected a string");
	if (json_is_string(mt)) {
		name = json_string_value(mt);
		for (k = 0; k < NFAMS; k++)
			if (!strcmp(name, fams[k].model_type))
				goto found;
	} else if (json_is_array(ar)) {
		for (i = 0; i < json_array_size(ar); i++) {
			json_t *a = json_array_get(ar, i);
			if (!json_is_string(a))
				return fail(r, -EINVAL, "architectures[%zu]: expected a string", i);
			if (!name)
				name = json_string_value(a);
			for (k = 0; k < NFAMS; k++)
				if (!strcmp(json_string_value(a), fams[k].arch))
					goto found;
		}
	}
	if (!name)
		return fail(r, -EINVAL, "model_type: missing (and no architectures)");
	return fail(r, -ENOTSUP, "unsupported architecture '%s' (supported: mixtral, qwen3_moe, olmoe)",
		    name);
found:
	*fam = (enum ld_family)k;
	return 0;
}

/* rope_parameters (transformers 5) or the older top-level rope_theta and
 * rope_scaling.  Only unscaled RoPE is implemented. */
static int read_rope(struct rd *r, json_t *root, double def, struct ld_config *c)
{
	json_t *rp = json_object_get(root, "rope_parameters");
	json_t *rs = json_object_get(root, "rope_scaling"), *ty = NULL;
	int rc;

	if (rp && !json_is_null(rp) && !json_is_object(rp))
		return fail(r, -EINVAL, "rope_parameters: expected an object");
	if (rs && !json_is_null(rs) && !json_is_object(rs))
		return fail(r, -EINVAL, "rope_scaling: expected an object");
	if ((rc = get_num(r, root, "rope_theta", def, 0, 0, &c->rope_theta)) < 0)
		return rc;
	if (json_object_get(rp, "rope_theta")) {
		if ((rc = get_num(r, rp, "rope_theta", def, 0, 0, &c->rope_theta)) < 0)
			return fail(r, rc, "rope_parameters.rope_theta: expected a number > 0");
	}
	ty = json_object_get(rp, "rope_type");
	if (!ty)
		ty = json_object_get(rs, "rope_type");
	if (!ty)
		ty = json_object_get(rs, "type");
	if (ty && !json_is_null(ty) && (!json_is_string(ty) || strcmp(json_string_value(ty), "default")))
		return fail(r, -ENOTSUP, "rope_type: '%s' not supported (only 'default')",
			    json_is_string(ty) ? json_string_value(ty) : "?");
	return 0;
}

static int read_experts(struct rd *r, json_t *root, const struct fam *f, struct ld_config *c)
{
	const char *key = c->family == LD_MIXTRAL ? "num_local_experts" : "num_experts";
	const char *alias = c->family == LD_MIXTRAL ? "num_experts" : "num_local_experts";
	int lo = c->family == LD_QWEN3_MOE ? 0 : 1, rc;

	if (!json_object_get(root, key) && json_object_get(root, alias))
		key = alias;
	if ((rc = get_int(r, root, key, f->experts, lo, 1 << 16, &c->n_experts)) < 0)
		return rc;
	if ((rc = get_int(r, root, "num_experts_per_tok", f->top_k, 1, 1 << 16, &c->top_k)) < 0)
		return rc;
	if (c->n_experts > 0 && c->top_k > c->n_experts)
		return fail(r, -ERANGE, "num_experts_per_tok: %d is more than %s (%d)",
			    c->top_k, key, c->n_experts);
	if (c->family == LD_MIXTRAL) {
		c->norm_topk_prob = true; /* Mixtral always renormalises the top-k */
		return 0;
	}
	return get_bool(r, root, "norm_topk_prob", false, &c->norm_topk_prob);
}

static int read_dims(struct rd *r, json_t *root, const struct fam *f, struct ld_config *c)
{
	int rc;

	if ((rc = get_int(r, root, "vocab_size", f->vocab, 1, BIG, &c->vocab_size)) < 0 ||
	    (rc = get_int(r, root, "hidden_size", f->hidden, 1, 1 << 20, &c->hidden_size)) < 0 ||
	    (rc = get_int(r, root, "intermediate_size", f->inter, 1, BIG, &c->intermediate_size)) < 0 ||
	    (rc = get_int(r, root, "num_hidden_layers", f->layers, 1, LD_MAX_LAYERS, &c->n_layers)) < 0 ||
	    (rc = get_int(r, root, "num_attention_heads", f->heads, 1, 1 << 16, &c->n_heads)) < 0 ||
	    (rc = get_int(r, root, "max_position_embeddings", f->max_pos, 1, INT_MAX, &c->max_position)) < 0)
		return rc;
	/* HF: absent -> the family default; null -> num_attention_heads */
	if (!json_object_get(root, "num_key_value_heads"))
		c->n_kv_heads = f->kv > 0 ? f->kv : c->n_heads;
	else if ((rc = get_int(r, root, "num_key_value_heads", c->n_heads, 1, 1 << 16, &c->n_kv_heads)) < 0)
		return rc;
	if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
		return fail(r, -EINVAL, "num_key_value_heads: %d does not divide num_attention_heads (%d)",
			    c->n_kv_heads, c->n_heads);
	if ((rc = get_int(r, root, "head_dim", 0, 1, 1 << 16, &c->head_dim)) < 0)
		return rc;
	if (!c->head_dim) {
		if (c->hidden_size % c->n_heads)
			return fail(r, -EINVAL, "head_dim: absent and hidden_size %d not divisible by num_attention_heads %d",
				    c->hidden_size, c->n_heads);
		c->head_dim = c->hidden_size / c->n_heads;
	}
	if (c->family == LD_QWEN3_MOE)
		return get_int(r, root, "moe_intermediate_size", f->moe_inter, 1, BIG,
			       &c->moe_intermediate_size);
	c->moe_intermediate_size = c->intermediate_size;
	return 0;
}

/* qwen3_moe: layer i is MoE iff not in mlp_only_layers, experts > 0 and
 * (i + 1) % decoder_sparse_step == 0 (Qwen3MoeDecoderLayer). */
static int read_layers(struct rd *r, json_t *root, struct ld_config *c)
{
	json_t *mlo = json_object_get(root, "mlp_only_layers");
	int step = 1, i, rc;
	size_t k;

	if (c->family == LD_QWEN3_MOE) {
		if ((rc = get_int(r, root, "decoder_sparse_step", 1, 1, INT_MAX, &step)) < 0)
			return rc;
		if (mlo && !json_is_null(mlo) && !json_is_array(mlo))
			return fail(r, -EINVAL, "mlp_only_layers: expected a list of integers");
	}
	c->n_moe_layers = 0;
	for (i = 0; i < c->n_layers; i++) {
		c->is_moe[i] = c->n_experts > 0 && (i + 1) % step == 0;
		c->n_moe_layers += c->is_moe[i];
	}
	if (c->family != LD_QWEN3_MOE)
		return 0;
	for (k = 0; k < json_array_size(mlo); k++) {
		json_t *v = json_array_get(mlo, k);
		json_int_t x;

		if (!json_is_integer(v))
			return fail(r, -EINVAL, "mlp_only_layers[%zu]: expected an integer", k);
		x = json_integer_value(v);
		/* HF ignores indices that name no layer */
		if (x >= 0 && x < c->n_layers && c->is_moe[x]) {
			c->is_moe[x] = false;
			c->n_moe_layers--;
		}
	}
	return 0;
}

int ld_config_read(const char *path, struct ld_config *cfg, char *err, size_t errlen)
{
	struct rd r = { path, err, errlen };
	struct ld_config c;
	const struct fam *f;
	json_error_t jerr;
	json_t *root;
	FILE *fp;
	int rc;

	memset(&c, 0, sizeof(c));
	if (!(fp = fopen(path, "re")))
		return fail(&r, -errno, "%s", strerror(errno));
	root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
	fclose(fp);
	if (!root)
		return fail(&r, -EINVAL, "line %d: %s", jerr.line, jerr.text);
	if (!json_is_object(root)) {
		rc = fail(&r, -EINVAL, "not a JSON object");
		goto out;
	}
	if ((rc = family_of(&r, root, &c.family)) < 0)
		goto out;
	f = &fams[c.family];
	if ((rc = read_dims(&r, root, f, &c)) < 0 ||
	    (rc = read_experts(&r, root, f, &c)) < 0 ||
	    (rc = read_layers(&r, root, &c)) < 0 ||
	    (rc = read_rope(&r, root, f->rope_theta, &c)) < 0 ||
	    (rc = get_num(&r, root, "rms_norm_eps", f->rms_eps, 0, 0, &c.rms_eps)) < 0 ||
	    (rc = get_bool(&r, root, "tie_word_embeddings", false, &c.tie_word_embeddings)) < 0)
		goto out;
	if (c.family == LD_OLMOE &&
	    (rc = get_num(&r, root, "clip_qkv", 0, 0, 1, &c.clip_qkv)) < 0)
		goto out;
	*cfg = c;
out:
	json_decref(root);
	return rc;
}
