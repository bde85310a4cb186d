/* Synthetic MoE checkpoints: a plan of tensors (names and shapes as HF
 * transformers saves each family), split into shards, then generated and
 * streamed tensor by tensor in chunks, so memory stays small for any size.
 *
 * Every tensor has its own PRNG stream seeded from (seed, name), so the
 * bytes do not depend on the sharding or the chunk size. */
#include "daemon/mkmodel.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/mkmodel_int.h"
#include "loader/errfmt.h"
#include "loader/st_write.h"

#define CHUNK_FLOATS ((size_t)1 << 20)
#define SKEW_O_SCALE 0.2f
#define SKEW_DOWN_SCALE 0.5f

enum gen { G_NORMAL, G_NORM, G_EMBED, G_ROUTER, G_LMHEAD };

struct mk_tensor {
	char name[96];
	int ndim;
	int64_t rows, cols;        /* 1-D: rows 1 */
	enum gen gen;
	float std;
	int layer;
	int shard;
	uint64_t nbytes;
};

struct plan {
	struct mk_tensor *t;
	size_t n, cap;
	int n_shards;
	uint64_t total;
};

/* Chunk buffers and progress of one write. */
struct gen_ctx {
	const struct mkmodel_opts *o;
	struct mk_skew sk;
	float *coef;               /* router of the current layer: [E][C] */
	float *fbuf;
	uint16_t *hbuf;            /* f16/bf16 conversion */
	size_t buf_floats;
	uint64_t done, total;
	int last_pct;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* Weights that keep activations near unit scale, within the usual init range. */
static float lin_std(int64_t fan_in)
{
	float s = 1.0f / sqrtf((float)fan_in);

	return s < 0.02f ? 0.02f : s > 0.1f ? 0.1f : s;
}

/* Branches writing into the residual stream: 2L of them, each scaled so the
 * stream's variance grows by about the embedding's over the whole depth
 * (GPT-2 style); otherwise deep random models collapse onto one direction. */
static float residual_scale(const struct mkmodel_opts *o)
{
	return 1.0f / sqrtf(2.0f * (float)o->n_layers);
}

static void put(struct plan *p, enum gen gen, float std, int layer, int ndim,
		int64_t d0, int64_t d1, enum ld_dtype dt, const char *fmt, ...)
	__attribute__((format(printf, 9, 10)));

static void put(struct plan *p, enum gen gen, float std, int layer, int ndim,
		int64_t d0, int64_t d1, enum ld_dtype dt, const char *fmt, ...)
{
	struct mk_tensor *t = &p->t[p->n++];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->ndim = ndim;
	t->rows = ndim == 1 ? 1 : d0;
	t->cols = ndim == 1 ? d0 : d1;
	t->gen = gen;
	t->std = std;
	t->layer = layer;
	t->nbytes = (uint64_t)t->rows * (uint64_t)t->cols * ld_dtype_size(dt);
	p->total += t->nbytes;
}

static void plan_attention(struct plan *p, const struct mkmodel_opts *o, int l, int hd)
{
	int64_t H = o->hidden, q = (int64_t)o->n_heads * hd, kv = (int64_t)mk_kv_heads(o) * hd;
	/* Skewed: a small attention output keeps the residual near the embedding. */
	float o_scale = residual_scale(o) * (o->skewed ? SKEW_O_SCALE : 1.0f);
	enum ld_dtype dt = o->dtype;
	const char *pre = "model.layers";

	put(p, G_NORM, 0.05f, l, 1, H, 0, dt, "%s.%d.input_layernorm.weight", pre, l);
	put(p, G_NORMAL, lin_std(H), l, 2, q, H, dt, "%s.%d.self_attn.q_proj.weight", pre, l);
	put(p, G_NORMAL, lin_std(H), l, 2, kv, H, dt, "%s.%d.self_attn.k_proj.weight", pre, l);
	put(p, G_NORMAL, lin_std(H), l, 2, kv, H, dt, "%s.%d.self_attn.v_proj.weight", pre, l);
	put(p, G_NORMAL, lin_std(q) * o_scale, l, 2, H, q, dt, "%s.%d.self_attn.o_proj.weight",
	    pre, l);
	if (o->family == LD_QWEN3_MOE) {
		put(p, G_NORM, 0.05f, l, 1, hd, 0, dt, "%s.%d.self_attn.q_norm.weight", pre, l);
		put(p, G_NORM, 0.05f, l, 1, hd, 0, dt, "%s.%d.self_attn.k_norm.weight", pre, l);
	} else if (o->family == LD_OLMOE) {
		put(p, G_NORM, 0.05f, l, 1, q, 0, dt, "%s.%d.self_attn.q_norm.weight", pre, l);
		put(p, G_NORM, 0.05f, l, 1, kv, 0, dt, "%s.%d.self_attn.k_norm.weight", pre, l);
	}
	put(p, G_NORM, 0.05f, l, 1, H, 0, dt, "%s.%d.post_attention_layernorm.weight", pre, l);
}

static void plan_mlp(struct plan *p, const struct mkmodel_opts *o, int l)
{
	int64_t H = o->hidden, I = o->intermediate, DI = mk_dense_intermediate(o);
	float down_scale = residual_scale(o) * (o->skewed ? SKEW_DOWN_SCALE : 1.0f);
	/* Skewed: router noise of unit logit scale under the cluster signal. */
	float router_std = o->skewed ? 1.0f / sqrtf((float)H) : lin_std(H);
	enum ld_dtype dt = o->dtype;
	const char *pre = "model.layers";

	if (o->dense_layer[l]) {
		put(p, G_NORMAL, lin_std(H), l, 2, DI, H, dt, "%s.%d.mlp.gate_proj.weight", pre, l);
		put(p, G_NORMAL, lin_std(H), l, 2, DI, H, dt, "%s.%d.mlp.up_proj.weight", pre, l);
		put(p, G_NORMAL, lin_std(DI) * down_scale, l, 2, H, DI, dt,
		    "%s.%d.mlp.down_proj.weight", pre, l);
		return;
	}
	if (o->family == LD_MIXTRAL) {
		put(p, o->skewed ? G_ROUTER : G_NORMAL, router_std, l, 2, o->n_experts, H, dt,
		    "%s.%d.block_sparse_moe.gate.weight", pre, l);
		for (int j = 0; j < o->n_experts; j++) {
			const char *e = "block_sparse_moe.experts";
			put(p, G_NORMAL, lin_std(H), l, 2, I, H, dt, "%s.%d.%s.%d.w1.weight",
			    pre, l, e, j);
			put(p, G_NORMAL, lin_std(I) * down_scale, l, 2, H, I, dt,
			    "%s.%d.%s.%d.w2.weight", pre, l, e, j);
			put(p, G_NORMAL, lin_std(H), l, 2, I, H, dt, "%s.%d.%s.%d.w3.weight",
			    pre, l, e, j);
		}
		return;
	}
	put(p, o->skewed ? G_ROUTER : G_NORMAL, router_std, l, 2, o->n_experts, H, dt,
	    "%s.%d.mlp.gate.weight", pre, l);
	for (int j = 0; j < o->n_experts; j++) {
		put(p, G_NORMAL, lin_std(H), l, 2, I, H, dt,
		    "%s.%d.mlp.experts.%d.gate_proj.weight", pre, l, j);
		put(p, G_NORMAL, lin_std(H), l, 2, I, H, dt,
		    "%s.%d.mlp.experts.%d.up_proj.weight", pre, l, j);
		put(p, G_NORMAL, lin_std(I) * down_scale, l, 2, H, I, dt,
		    "%s.%d.mlp.experts.%d.down_proj.weight", pre, l, j);
	}
}

/* HF order within a layer does not matter to loaders; we keep a layer's
 * tensors together so shards split between layers as save_pretrained does. */
static int plan_build(struct plan *p, const struct mkmodel_opts *o)
{
	int hd = mk_head_dim(o);
	uint64_t cur = 0;

	p->cap = 3 + (size_t)o->n_layers * (10 + 3 * (size_t)o->n_experts);
	if (!(p->t = calloc(p->cap, sizeof(*p->t))))
		return -ENOMEM;
	put(p, o->skewed ? G_EMBED : G_NORMAL, 1.0f, -1, 2, o->vocab, o->hidden, o->dtype,
	    "model.embed_tokens.weight");
	for (int l = 0; l < o->n_layers; l++) {
		plan_attention(p, o, l, hd);
		plan_mlp(p, o, l);
	}
	put(p, G_NORM, 0.05f, -1, 1, o->hidden, 0, o->dtype, "model.norm.weight");
	put(p, o->skewed ? G_LMHEAD : G_NORMAL, lin_std(o->hidden), -1, 2, o->vocab, o->hidden,
	    o->dtype, "lm_head.weight");
	p->n_shards = 1;
	for (size_t i = 0; i < p->n; i++) {
		if (cur && cur + p->t[i].nbytes > o->shard_bytes) {
			p->n_shards++;
			cur = 0;
		}
		p->t[i].shard = p->n_shards - 1;
		cur += p->t[i].nbytes;
	}
	return 0;
}

static void gen_rows(struct gen_ctx *g, const struct mk_tensor *t, struct mk_rng *r,
		     int64_t row0, int64_t n, float *out)
{
	const struct mk_skew *sk = &g->sk;
	int64_t cols = t->cols;

	for (int64_t i = 0; i < n; i++) {
		float *v = out + i * cols;
		const float *u;

		for (int64_t j = 0; j < cols; j++)
			v[j] = t->std * mk_rng_normal(r) + (t->gen == G_NORM ? 1.0f : 0.0f);
		switch (t->gen) {
		case G_EMBED:
			u = sk->u + (size_t)mk_token_cluster(sk, row0 + i) * (size_t)cols;
			for (int64_t j = 0; j < cols; j++)
				v[j] = sk->embed_scale * u[j] + sk->embed_noise * v[j];
			break;
		case G_ROUTER:
			for (int c = 0; c < sk->C; c++) {
				float a = g->coef[(row0 + i) * sk->C + c];
				u = sk->u + (size_t)c * (size_t)cols;
				for (int64_t j = 0; a != 0.0f && j < cols; j++)
					v[j] += a * u[j];
			}
			break;
		case G_LMHEAD:
			mk_skew_project_out(sk, v);
			break;
		default:
			break;
		}
	}
}

static void progress(struct gen_ctx *g, int final)
{
	double gib = 1024.0 * 1024.0 * 1024.0, mib = 1024.0 * 1024.0;
	int pct = g->total ? (int)(100 * g->done / g->total) : 100;
	int big = g->total >= (1ull << 30);

	if (!g->o->progress || (pct == g->last_pct && !final))
		return;
	g->last_pct = pct;
	fprintf(stderr, "\rwriting model: %d%% (%.1f %s / %.1f %s)   ", pct,
		(double)g->done / (big ? gib : mib), big ? "GiB" : "MiB",
		(double)g->total / (big ? gib : mib), big ? "GiB" : "MiB");
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

static int write_tensor(struct gen_ctx *g, const struct mk_tensor *t, struct ld_stw *w)
{
	int64_t per = (int64_t)(g->buf_floats / (size_t)t->cols), n;
	enum ld_dtype dt = g->o->dtype;
	struct mk_rng r;
	int rc = 0;

	mk_rng_seed(&r, g->o->seed ^ fnv1a(t->name));
	if (t->gen == G_ROUTER && (rc = mk_skew_router_coef(&g->sk, t->layer, g->coef)) < 0)
		return rc;
	for (int64_t row = 0; row < t->rows && rc == 0; row += n) {
		n = t->rows - row < per ? t->rows - row : per;
		gen_rows(g, t, &r, row, n, g->fbuf);
		if (dt == LD_F32) {
			rc = ld_stw_write(w, g->fbuf, (size_t)(n * t->cols) * sizeof(float));
		} else {
			ld_from_f32(g->hbuf, g->fbuf, dt, (size_t)(n * t->cols));
			rc = ld_stw_write(w, g->hbuf, (size_t)(n * t->cols) * 2);
		}
		g->done += (uint64_t)(n * t->cols) * ld_dtype_size(dt);
		progress(g, 0);
	}
	return rc;
}

static int write_shard(struct gen_ctx *g, const struct plan *p, int s, char *err, size_t errlen)
{
	char *path = mk_shard_path(g->o->out_dir, s, p->n_shards);
	struct ld_stw *w = NULL;
	int rc;

	if (!path)
		return ld_fail(err, errlen, -ENOMEM, "%s: out of memory", g->o->out_dir);
	if ((rc = ld_stw_open(path, &w, err, errlen)) < 0)
		goto out;
	for (size_t i = 0; i < p->n && rc == 0; i++) {
		const struct mk_tensor *t = &p->t[i];
		int64_t shape[2] = { t->ndim == 1 ? t->cols : t->rows, t->cols };
		if (t->shard == s)
			rc = ld_stw_add(w, t->name, g->o->dtype, t->ndim, shape);
	}
	if (rc == 0)
		rc = ld_stw_begin(w);
	for (size_t i = 0; i < p->n && rc == 0; i++)
		if (p->t[i].shard == s)
			rc = write_tensor(g, &p->t[i], w);
	if (rc < 0 && !*ld_stw_error(w)) {
		/* Our own failure (memory), not the writer's: keep its message. */
		ld_stw_abort(w);
		ld_fail(err, errlen, rc, "%s: out of memory", path);
	} else {
		rc = ld_stw_close(w, err, errlen);
	}
out:
	free(path);
	return rc;
}

static int gen_init(struct gen_ctx *g, const struct mkmodel_opts *o, const struct plan *p)
{
	size_t maxcols = 0;

	memset(g, 0, sizeof(*g));
	g->o = o;
	g->total = p->total;
	g->last_pct = -1;
	for (size_t i = 0; i < p->n; i++)
		if ((size_t)p->t[i].cols > maxcols)
			maxcols = (size_t)p->t[i].cols;
	g->buf_floats = maxcols > CHUNK_FLOATS ? maxcols : CHUNK_FLOATS;
	g->fbuf = malloc(g->buf_floats * sizeof(float));
	g->hbuf = malloc(g->buf_floats * sizeof(uint16_t));
	if (!g->fbuf || !g->hbuf)
		return -ENOMEM;
	if (!o->skewed)
		return 0;
	if (mk_skew_init(&g->sk, o) < 0)
		return -ENOMEM;
	g->coef = calloc((size_t)o->n_experts * (size_t)g->sk.C, sizeof(float));
	return g->coef ? 0 : -ENOMEM;
}

static void gen_free(struct gen_ctx *g)
{
	mk_skew_free(&g->sk);
	free(g->coef);
	free(g->fbuf);
	free(g->hbuf);
}

int mkmodel_write(const struct mkmodel_opts *o, struct mkmodel_info *info,
		  char *err, size_t errlen)
{
	struct plan p = {0};
	struct gen_ctx g;
	int rc;

	memset(&g, 0, sizeof(g));
	if ((rc = mkmodel_check(o, err, errlen)) < 0)
		return rc;
	if ((rc = mk_mkdirs(o->out_dir, err, errlen)) < 0)
		return rc;
	if (plan_build(&p, o) < 0 || gen_init(&g, o, &p) < 0) {
		rc = ld_fail(err, errlen, -ENOMEM, "%s: out of memory", o->out_dir);
		goto out;
	}
	if (p.n_shards > MK_MAX_SHARDS) {
		rc = ld_fail(err, errlen, -EINVAL, "--shard-mib: %d shards needed, at most %d",
			     p.n_shards, MK_MAX_SHARDS);
		goto out;
	}
	for (int s = 0; s < p.n_shards && rc == 0; s++)
		rc = write_shard(&g, &p, s, err, errlen);
	if (rc == 0 && p.n_shards > 1) {
		const char **names = malloc(p.n * sizeof(*names));
		int *shards = malloc(p.n * sizeof(*shards));
		for (size_t i = 0; names && shards && i < p.n; i++) {
			names[i] = p.t[i].name;
			shards[i] = p.t[i].shard;
		}
		rc = names && shards ? mk_write_index(o, names, shards, p.n, p.n_shards, p.total,
						       err, errlen)
				     : ld_fail(err, errlen, -ENOMEM, "%s: out of memory", o->out_dir);
		free(names);
		free(shards);
	}
	if (rc == 0)
		rc = mk_remove_stale(o->out_dir, p.n_shards, err, errlen);
	if (rc == 0)
		rc = mk_write_config(o, err, errlen);
	progress(&g, 1);
	if (rc == 0 && info) {
		info->data_bytes = p.total;
		info->n_params = p.total / ld_dtype_size(o->dtype);
		info->n_tensors = p.n;
		info->n_shards = p.n_shards;
	}
out:
	gen_free(&g);
	free(p.t);
	return rc;
}
