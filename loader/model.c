/* HF MoE checkpoint -> struct ld_model.  Tensor names are those of the HF
 * checkpoints (see tests/fixtures/fixtures_info.json). */
#include "loader/model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 256

struct mk {
	struct ld_model *m;
	char *err;
	size_t errlen;
	bool have_dtype;       /* m->dtype set by the first expert tensor */
};

static int fail(struct mk *k, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct mk *k, int rc, const char *fmt, ...)
{
	va_list ap;

	if (k->err && k->errlen) {
		va_start(ap, fmt);
		vsnprintf(k->err, k->errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static void fmt_shape(char *buf, size_t len, int ndim, const int64_t *d)
{
	size_t n = 0;
	int i;

	n += (size_t)snprintf(buf, len, "[");
	for (i = 0; i < ndim && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? "," : "", (long long)d[i]);
	if (n < len)
		snprintf(buf + n, len - n, "]");
}

/* Finds name and checks its shape against want[0..ndim). */
static int need(struct mk *k, const char *name, int ndim, const int64_t *want,
		const struct ld_tensor **out)
{
	const struct ld_tensor *t = ld_st_find(k->m->st, name);
	char got[96], exp[96];
	int i;

	if (!t)
		return fail(k, -ENOENT, "%s: %s: missing tensor", ld_st_path(k->m->st), name);
	for (i = 0; i < ndim && t->ndim == ndim; i++)
		if (t->shape[i] != want[i])
			break;
	if (t->ndim != ndim || i < ndim) {
		fmt_shape(got, sizeof(got), t->ndim, t->shape);
		fmt_shape(exp, sizeof(exp), ndim, want);
		return fail(k, -EINVAL, "%s: %s: shape %s, expected %s", t->file, name, got, exp);
	}
	*out = t;
	return 0;
}

static int need2(struct mk *k, const char *name, int64_t d0, int64_t d1, const struct ld_tensor **out)
{
	int64_t d[2] = { d0, d1 };

	return need(k, name, d1 < 0 ? 1 : 2, d, out);
}

/* Loads a 1-D (d1 < 0) or 2-D tensor and converts it to a new f32 array. */
static int dense(struct mk *k, float **dst, int64_t d0, int64_t d1, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int dense(struct mk *k, float **dst, int64_t d0, int64_t d1, const char *fmt, ...)
{
	const struct ld_tensor *t;
	char name[NAME_MAX_LEN];
	va_list ap;
	size_t n;
	int rc;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	if ((rc = need2(k, name, d0, d1, &t)) < 0)
		return rc;
	n = t->nbytes / ld_dtype_size(t->dtype);
	*dst = malloc(n ? n * sizeof(float) : 1);
	if (!*dst)
		return fail(k, -ENOMEM, "%s: %s: out of memory (%zu floats)", t->file, name, n);
	ld_to_f32(*dst, t->data, t->dtype, n);
	return 0;
}

static int attention(struct mk *k, int i, struct ld_layer *L)
{
	const struct ld_config *c = &k->m->cfg;
	int64_t H = c->hidden_size, q = (int64_t)c->n_heads * c->head_dim;
	int64_t kv = (int64_t)c->n_kv_heads * c->head_dim;
	const char *p = "model.layers";
	int rc;

	if ((rc = dense(k, &L->attn_norm, H, -1, "%s.%d.input_layernorm.weight", p, i)) < 0 ||
	    (rc = dense(k, &L->mlp_norm, H, -1, "%s.%d.post_attention_layernorm.weight", p, i)) < 0 ||
	    (rc = dense(k, &L->q, q, H, "%s.%d.self_attn.q_proj.weight", p, i)) < 0 ||
	    (rc = dense(k, &L->k, kv, H, "%s.%d.self_attn.k_proj.weight", p, i)) < 0 ||
	    (rc = dense(k, &L->v, kv, H, "%s.%d.self_attn.v_proj.weight", p, i)) < 0 ||
	    (rc = dense(k, &L->o, H, q, "%s.%d.self_attn.o_proj.weight", p, i)) < 0)
		return rc;
	if (c->family == LD_QWEN3_MOE) {
		if ((rc = dense(k, &L->q_norm, c->head_dim, -1, "%s.%d.self_attn.q_norm.weight", p, i)) < 0 ||
		    (rc = dense(k, &L->k_norm, c->head_dim, -1, "%s.%d.self_attn.k_norm.weight", p, i)) < 0)
			return rc;
	} else if (c->family == LD_OLMOE) {
		if ((rc = dense(k, &L->q_norm, q, -1, "%s.%d.self_attn.q_norm.weight", p, i)) < 0 ||
		    (rc = dense(k, &L->k_norm, kv, -1, "%s.%d.self_attn.k_norm.weight", p, i)) < 0)
			return rc;
	}
	return 0;
}

static int dense_mlp(struct mk *k, int i, struct ld_layer *L)
{
	const struct ld_config *c = &k->m->cfg;
	int64_t H = c->hidden_size, I = c->intermediate_size;
	int rc;

	if ((rc = dense(k, &L->mlp_gate, I, H, "model.layers.%d.mlp.gate_proj.weight", i)) < 0 ||
	    (rc = dense(k, &L->mlp_up, I, H, "model.layers.%d.mlp.up_proj.weight", i)) < 0 ||
	    (rc = dense(k, &L->mlp_down, H, I, "model.layers.%d.mlp.down_proj.weight", i)) < 0)
		return rc;
	return 0;
}

/* All expert tensors share one dtype: the cache sizes its slots by it. */
static int expert_dtype(struct mk *k, const struct ld_tensor *t)
{
	if (!k->have_dtype) {
		k->m->dtype = t->dtype;
		k->have_dtype = true;
	} else if (t->dtype != k->m->dtype) {
		return fail(k, -EINVAL, "%s: %s: dtype %s, other expert tensors are %s", t->file,
			    t->name, ld_dtype_name(t->dtype), ld_dtype_name(k->m->dtype));
	}
	return 0;
}

static int experts_split(struct mk *k, int i, const char *pre, struct ld_expert_ref *ex)
{
	const struct ld_config *c = &k->m->cfg;
	int64_t H = c->hidden_size, I = c->moe_intermediate_size;
	bool mx = c->family == LD_MIXTRAL;
	const char *g = mx ? "w1" : "gate_proj", *u = mx ? "w3" : "up_proj", *d = mx ? "w2" : "down_proj";
	char name[NAME_MAX_LEN];
	int j, rc;

	for (j = 0; j < c->n_experts; j++) {
		ex[j].index = -1;
		snprintf(name, sizeof(name), "model.layers.%d.%s.experts.%d.%s.weight", i, pre, j, g);
		if ((rc = need2(k, name, I, H, &ex[j].gate)) < 0 || (rc = expert_dtype(k, ex[j].gate)) < 0)
			return rc;
		snprintf(name, sizeof(name), "model.layers.%d.%s.experts.%d.%s.weight", i, pre, j, u);
		if ((rc = need2(k, name, I, H, &ex[j].up)) < 0 || (rc = expert_dtype(k, ex[j].up)) < 0)
			return rc;
		snprintf(name, sizeof(name), "model.layers.%d.%s.experts.%d.%s.weight", i, pre, j, d);
		if ((rc = need2(k, name, H, I, &ex[j].down)) < 0 || (rc = expert_dtype(k, ex[j].down)) < 0)
			return rc;
	}
	return 0;
}

static int experts_fused(struct mk *k, int i, const char *pre, struct ld_expert_ref *ex)
{
	const struct ld_config *c = &k->m->cfg;
	int64_t gu[3] = { c->n_experts, 2 * (int64_t)c->moe_intermediate_size, c->hidden_size };
	int64_t dn[3] = { c->n_experts, c->hidden_size, c->moe_intermediate_size };
	const struct ld_tensor *tgu, *tdn;
	char name[NAME_MAX_LEN];
	int j, rc;

	snprintf(name, sizeof(name), "model.layers.%d.%s.experts.gate_up_proj", i, pre);
	if ((rc = need(k, name, 3, gu, &tgu)) < 0 || (rc = expert_dtype(k, tgu)) < 0)
		return rc;
	snprintf(name, sizeof(name), "model.layers.%d.%s.experts.down_proj", i, pre);
	if ((rc = need(k, name, 3, dn, &tdn)) < 0 || (rc = expert_dtype(k, tdn)) < 0)
		return rc;
	for (j = 0; j < c->n_experts; j++) {
		ex[j].gate = ex[j].up = tgu;
		ex[j].down = tdn;
		ex[j].index = j;
	}
	return 0;
}

static bool has(struct mk *k, const char *fmt, int i, const char *pre)
{
	char name[NAME_MAX_LEN];

	snprintf(name, sizeof(name), fmt, i, pre);
	return ld_st_find(k->m->st, name) != NULL;
}

/* Router and experts of layer i.  Mixtral's block is "block_sparse_moe" in
 * checkpoints but "mlp" in transformers 5's own layout: accept both. */
static int moe(struct mk *k, int i, struct ld_layer *L)
{
	const struct ld_config *c = &k->m->cfg;
	static const char *const mx_pre[] = { "block_sparse_moe", "mlp" };
	const char *const *pre = c->family == LD_MIXTRAL ? mx_pre : mx_pre + 1;
	int npre = c->family == LD_MIXTRAL ? 2 : 1, p, rc;
	struct ld_expert_ref *ex = &k->m->experts[(size_t)L->moe_index * c->n_experts];
	const char *split0 = c->family == LD_MIXTRAL ? "w1" : "gate_proj";
	char name[NAME_MAX_LEN];

	for (p = 0; p < npre; p++)
		if (has(k, "model.layers.%d.%s.gate.weight", i, pre[p]))
			break;
	if (p == npre)
		p = 0;
	if ((rc = dense(k, &L->router, c->n_experts, c->hidden_size, "model.layers.%d.%s.gate.weight",
			i, pre[p])) < 0)
		return rc;
	snprintf(name, sizeof(name), "model.layers.%%d.%%s.experts.0.%s.weight", split0);
	if (has(k, name, i, pre[p]))
		return experts_split(k, i, pre[p], ex);
	if (has(k, "model.layers.%d.%s.experts.gate_up_proj", i, pre[p]))
		return experts_fused(k, i, pre[p], ex);
	return experts_split(k, i, pre[p], ex); /* reports the missing tensor */
}

static int load_layers(struct mk *k)
{
	struct ld_model *m = k->m;
	const struct ld_config *c = &m->cfg;
	int i, mi = 0, rc;

	m->layers = calloc((size_t)c->n_layers, sizeof(*m->layers));
	m->experts = calloc((size_t)c->n_moe_layers * c->n_experts + 1, sizeof(*m->experts));
	if (!m->layers || !m->experts)
		return fail(k, -ENOMEM, "%s: out of memory", m->dir);
	for (i = 0; i < c->n_layers; i++) {
		struct ld_layer *L = &m->layers[i];

		L->moe_index = c->is_moe[i] ? mi++ : -1;
		if ((rc = attention(k, i, L)) < 0)
			return rc;
		rc = c->is_moe[i] ? moe(k, i, L) : dense_mlp(k, i, L);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int load_globals(struct mk *k)
{
	struct ld_model *m = k->m;
	const struct ld_config *c = &m->cfg;
	int rc;

	if ((rc = dense(k, &m->embed, c->vocab_size, c->hidden_size, "model.embed_tokens.weight")) < 0 ||
	    (rc = dense(k, &m->final_norm, c->hidden_size, -1, "model.norm.weight")) < 0)
		return rc;
	/* Tied: HF uses the embedding even if the file also holds lm_head. */
	if (c->tie_word_embeddings) {
		m->lm_head = m->embed;
		return 0;
	}
	return dense(k, &m->lm_head, c->vocab_size, c->hidden_size, "lm_head.weight");
}

int ld_model_open(const char *dir, struct ld_model **out, char *err, size_t errlen)
{
	struct ld_model *m = calloc(1, sizeof(*m));
	struct mk k = { m, err, errlen, false };
	char *cfgpath = NULL;
	int rc;

	*out = NULL;
	if (!m || !(m->dir = strdup(dir)) || asprintf(&cfgpath, "%s/config.json", dir) < 0) {
		cfgpath = NULL;
		rc = fail(&k, -ENOMEM, "%s: out of memory", dir);
		goto fail;
	}
	if ((rc = ld_config_read(cfgpath, &m->cfg, err, errlen)) < 0 ||
	    (rc = ld_st_open_dir(dir, &m->st, err, errlen)) < 0 ||
	    (rc = load_globals(&k)) < 0 || (rc = load_layers(&k)) < 0)
		goto fail;
	free(cfgpath);
	*out = m;
	return 0;
fail:
	free(cfgpath);
	ld_model_close(m);
	return rc;
}

void ld_model_close(struct ld_model *m)
{
	int i;

	if (!m)
		return;
	for (i = 0; m->layers && i < m->cfg.n_layers; i++) {
		struct ld_layer *L = &m->layers[i];
		float *p[] = { L->attn_norm, L->q, L->k, L->v, L->o, L->q_norm, L->k_norm,
			       L->mlp_norm, L->router, L->mlp_gate, L->mlp_up, L->mlp_down };
		for (size_t j = 0; j < sizeof(p) / sizeof(p[0]); j++)
			free(p[j]);
	}
	if (m->lm_head != m->embed)
		free(m->lm_head);
	free(m->embed);
	free(m->final_norm);
	free(m->layers);
	free(m->experts);
	ld_st_close(m->st);
	free(m->dir);
	free(m);
}

size_t ld_expert_floats(const struct ld_config *cfg)
{
	return 3 * (size_t)cfg->moe_intermediate_size * (size_t)cfg->hidden_size;
}

void ld_expert_copy(const struct ld_model *m, int moe_layer, int expert, float *dst)
{
	const struct ld_config *c = &m->cfg;
	const struct ld_expert_ref *e = &m->experts[(size_t)moe_layer * c->n_experts + expert];
	size_t ih = (size_t)c->moe_intermediate_size * c->hidden_size;
	const uint8_t *gu, *dn;
	size_t gs, ds;

	if (e->index < 0) {
		ld_to_f32(dst, e->gate->data, e->gate->dtype, ih);
		ld_to_f32(dst + ih, e->up->data, e->up->dtype, ih);
		ld_to_f32(dst + 2 * ih, e->down->data, e->down->dtype, ih);
		return;
	}
	gs = ld_dtype_size(e->gate->dtype);
	ds = ld_dtype_size(e->down->dtype);
	gu = (const uint8_t *)e->gate->data + (size_t)e->index * 2 * ih * gs;
	dn = (const uint8_t *)e->down->data + (size_t)e->index * ih * ds;
	ld_to_f32(dst, gu, e->gate->dtype, ih);
	ld_to_f32(dst + ih, gu + ih * gs, e->gate->dtype, ih);
	ld_to_f32(dst + 2 * ih, dn, e->down->dtype, ih);
}
