/* mkmodel: synthetic models that the loader opens, deterministic bytes,
 * dtypes, sharding, skewed routing and option errors. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/cmds.h"
#include "daemon/mkmodel.h"
#include "loader/model.h"
#include "loader/st_write.h"
#include "tests/suite_run.h"

static char tmpdir[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	snprintf(tmpdir, sizeof(tmpdir), "%s/test_mkmodel.XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *path(const char *a, const char *b)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s%s%s", tmpdir, a, b ? "/" : "", b ? b : "");
	return buf[i];
}

static void tiny(struct mkmodel_opts *o, enum ld_family fam, const char *sub)
{
	mkmodel_defaults(o);
	o->out_dir = path(sub, NULL);
	o->family = fam;
	o->n_layers = 3;
	o->n_experts = 4;
	o->top_k = 2;
	o->hidden = 32;
	o->n_heads = 4;
	o->n_kv_heads = 2;
	o->intermediate = 24;
	o->vocab = 64;
	if (fam == LD_QWEN3_MOE) {
		o->head_dim = 16;
		o->dense_layer[1] = true;
		o->dense_intermediate = 40;
	}
}

static struct ld_model *write_open(const struct mkmodel_opts *o, struct mkmodel_info *info)
{
	struct ld_model *m = NULL;
	char err[512] = "";
	int rc = mkmodel_write(o, info, err, sizeof(err));

	ck_assert_msg(rc == 0, "mkmodel_write: %d %s", rc, err);
	rc = ld_model_open(o->out_dir, &m, err, sizeof(err));
	ck_assert_msg(rc == 0, "ld_model_open: %d %s", rc, err);
	return m;
}

static void check_shape(const struct ld_model *m, const char *name, int ndim, int64_t d0,
			int64_t d1)
{
	const struct ld_tensor *t = ld_st_find(m->st, name);

	ck_assert_msg(t != NULL, "missing %s", name);
	ck_assert_int_eq(t->ndim, ndim);
	ck_assert_int_eq(t->shape[0], d0);
	if (ndim == 2)
		ck_assert_int_eq(t->shape[1], d1);
}

static void check_config_json(const struct mkmodel_opts *o, const char *model_type,
			      const char *arch, const char *experts_key)
{
	char file[600];
	json_error_t jerr;
	json_t *c;

	snprintf(file, sizeof(file), "%s/config.json", o->out_dir);
	c = json_load_file(file, 0, &jerr);

	ck_assert_msg(c != NULL, "config.json: %s", jerr.text);
	ck_assert_str_eq(json_string_value(json_object_get(c, "model_type")), model_type);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(c, "architectures"), 0)),
			 arch);
	ck_assert_int_eq(json_integer_value(json_object_get(c, experts_key)), o->n_experts);
	ck_assert_str_eq(json_string_value(json_object_get(c, "dtype")), "float32");
	ck_assert_str_eq(json_string_value(json_object_get(c, "torch_dtype")), "float32");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "rope_parameters"),
							   "rope_type")), "default");
	ck_assert(json_real_value(json_object_get(json_object_get(c, "rope_parameters"),
						  "rope_theta")) > 0);
	json_decref(c);
}

START_TEST(families_open)
{
	static const enum ld_family fams[] = { LD_MIXTRAL, LD_QWEN3_MOE, LD_OLMOE };
	enum ld_family fam = fams[_i];
	struct mkmodel_opts o;
	struct mkmodel_info info;
	struct ld_model *m;
	const struct ld_config *c;
	int hd;

	tiny(&o, fam, "m");
	m = write_open(&o, &info);
	c = &m->cfg;
	hd = fam == LD_QWEN3_MOE ? 16 : 8;
	ck_assert_int_eq(c->family, fam);
	ck_assert_int_eq(c->vocab_size, 64);
	ck_assert_int_eq(c->hidden_size, 32);
	ck_assert_int_eq(c->n_layers, 3);
	ck_assert_int_eq(c->n_heads, 4);
	ck_assert_int_eq(c->n_kv_heads, 2);
	ck_assert_int_eq(c->head_dim, hd);
	ck_assert_int_eq(c->moe_intermediate_size, 24);
	ck_assert_int_eq(c->n_experts, 4);
	ck_assert_int_eq(c->top_k, 2);
	ck_assert_int_eq(c->max_position, 4096);
	ck_assert(!c->tie_word_embeddings);
	ck_assert_int_eq(info.n_shards, 1);
	ck_assert_int_eq(m->dtype, LD_F32);
	check_shape(m, "model.embed_tokens.weight", 2, 64, 32);
	check_shape(m, "lm_head.weight", 2, 64, 32);
	check_shape(m, "model.norm.weight", 1, 32, 0);
	check_shape(m, "model.layers.2.self_attn.q_proj.weight", 2, 4 * hd, 32);
	check_shape(m, "model.layers.2.self_attn.k_proj.weight", 2, 2 * hd, 32);
	check_shape(m, "model.layers.2.self_attn.o_proj.weight", 2, 32, 4 * hd);
	if (fam == LD_MIXTRAL) {
		ck_assert(c->norm_topk_prob);
		ck_assert(fabs(c->rope_theta - 1e6) < 1e-3);
		ck_assert_int_eq(c->n_moe_layers, 3);
		check_shape(m, "model.layers.0.block_sparse_moe.gate.weight", 2, 4, 32);
		check_shape(m, "model.layers.0.block_sparse_moe.experts.3.w1.weight", 2, 24, 32);
		check_shape(m, "model.layers.0.block_sparse_moe.experts.3.w2.weight", 2, 32, 24);
		check_shape(m, "model.layers.0.block_sparse_moe.experts.3.w3.weight", 2, 24, 32);
		ck_assert_ptr_null(ld_st_find(m->st, "model.layers.0.self_attn.q_norm.weight"));
		check_config_json(&o, "mixtral", "MixtralForCausalLM", "num_local_experts");
	} else {
		check_shape(m, "model.layers.0.mlp.gate.weight", 2, 4, 32);
		ck_assert_ptr_nonnull(ld_st_find(m->st, "model.layers.0.mlp.experts.3.gate_proj.weight"));
		check_shape(m, "model.layers.0.mlp.experts.3.up_proj.weight", 2, 24, 32);
		check_shape(m, "model.layers.0.mlp.experts.3.down_proj.weight", 2, 32, 24);
	}
	if (fam == LD_QWEN3_MOE) {
		ck_assert(c->norm_topk_prob);
		ck_assert_int_eq(c->intermediate_size, 40);
		ck_assert(c->is_moe[0] && !c->is_moe[1] && c->is_moe[2]);
		ck_assert_int_eq(c->n_moe_layers, 2);
		check_shape(m, "model.layers.1.mlp.gate_proj.weight", 2, 40, 32);
		check_shape(m, "model.layers.1.mlp.down_proj.weight", 2, 32, 40);
		check_shape(m, "model.layers.0.self_attn.q_norm.weight", 1, 16, 0);
		check_shape(m, "model.layers.0.self_attn.k_norm.weight", 1, 16, 0);
		check_config_json(&o, "qwen3_moe", "Qwen3MoeForCausalLM", "num_experts");
	}
	if (fam == LD_OLMOE) {
		ck_assert(!c->norm_topk_prob);
		ck_assert(fabs(c->rope_theta - 1e4) < 1e-6);
		check_shape(m, "model.layers.0.self_attn.q_norm.weight", 1, 32, 0);
		check_shape(m, "model.layers.0.self_attn.k_norm.weight", 1, 16, 0);
		check_config_json(&o, "olmoe", "OlmoeForCausalLM", "num_experts");
	}
	/* Norm weights near 1, linear weights small and not constant. */
	ck_assert(fabsf(m->final_norm[0] - 1.0f) < 0.25f);
	ck_assert(fabsf(m->layers[0].q[0]) < 0.5f && m->layers[0].q[0] != m->layers[0].q[1]);
	ld_model_close(m);
}
END_TEST

static void *slurp(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "%s: %s", p, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static int same_file(const char *a, const char *b)
{
	size_t la, lb;
	void *pa = slurp(a, &la), *pb = slurp(b, &lb);
	int same = la == lb && !memcmp(pa, pb, la);

	free(pa);
	free(pb);
	return same;
}

START_TEST(same_seed_same_bytes)
{
	struct mkmodel_opts a, b, c;
	char err[512];

	tiny(&a, LD_QWEN3_MOE, "a");
	tiny(&b, LD_QWEN3_MOE, "b");
	tiny(&c, LD_QWEN3_MOE, "c");
	a.skewed = b.skewed = c.skewed = true;
	c.seed = 2;
	ck_assert_int_eq(mkmodel_write(&a, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(mkmodel_write(&b, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(mkmodel_write(&c, NULL, err, sizeof(err)), 0);
	ck_assert(same_file(path("a", "model.safetensors"), path("b", "model.safetensors")));
	ck_assert(same_file(path("a", "config.json"), path("b", "config.json")));
	ck_assert(!same_file(path("a", "model.safetensors"), path("c", "model.safetensors")));
	ck_assert(same_file(path("a", "config.json"), path("c", "config.json")));
}
END_TEST

/* bf16/f16 files hold the f32 model's values rounded to the narrower type. */
START_TEST(half_dtypes)
{
	static const enum ld_dtype dts[] = { LD_BF16, LD_F16 };
	struct mkmodel_opts o32, o16;
	struct ld_model *m32, *m16;
	double tol = dts[_i] == LD_BF16 ? 1.0 / 128 : 1.0 / 1024;
	float *e32, *e16;
	size_t nf;

	tiny(&o32, LD_OLMOE, "f32");
	tiny(&o16, LD_OLMOE, "half");
	o16.dtype = dts[_i];
	m32 = write_open(&o32, NULL);
	m16 = write_open(&o16, NULL);
	ck_assert_int_eq(m16->dtype, dts[_i]);
	ck_assert_int_eq(ld_st_find(m16->st, "model.embed_tokens.weight")->dtype, dts[_i]);
	for (int i = 0; i < 64 * 32; i++)
		ck_assert(fabs(m16->embed[i] - m32->embed[i]) <= tol * fabs(m32->embed[i]) + 1e-7);
	nf = ld_expert_floats(&m32->cfg);
	e32 = malloc(nf * sizeof(float));
	e16 = malloc(nf * sizeof(float));
	ld_expert_copy(m32, 1, 3, e32);
	ld_expert_copy(m16, 1, 3, e16);
	for (size_t i = 0; i < nf; i++)
		ck_assert(fabs(e16[i] - e32[i]) <= tol * fabs(e32[i]) + 1e-7);
	free(e32);
	free(e16);
	ld_model_close(m32);
	ld_model_close(m16);
}
END_TEST

START_TEST(sharded_index)
{
	struct mkmodel_opts o1, os;
	struct mkmodel_info info;
	struct ld_model *m1, *ms;
	struct stat sb;
	float *a, *b;
	size_t nf;

	tiny(&o1, LD_MIXTRAL, "one");
	tiny(&os, LD_MIXTRAL, "sharded");
	os.shard_bytes = 16 << 10;
	m1 = write_open(&o1, NULL);
	ms = write_open(&os, &info);
	ck_assert_int_gt(info.n_shards, 3);
	ck_assert_int_eq(stat(path("sharded", "model.safetensors.index.json"), &sb), 0);
	ck_assert_int_ne(stat(path("sharded", "model.safetensors"), &sb), 0);
	ck_assert_int_eq(stat(path("sharded", "model-00001-of-00004.safetensors"), &sb) == 0,
			 info.n_shards == 4);
	/* Same values whatever the split. */
	ck_assert(!memcmp(m1->embed, ms->embed, 64 * 32 * sizeof(float)));
	ck_assert(!memcmp(m1->lm_head, ms->lm_head, 64 * 32 * sizeof(float)));
	nf = ld_expert_floats(&m1->cfg);
	a = malloc(nf * sizeof(float));
	b = malloc(nf * sizeof(float));
	ld_expert_copy(m1, 2, 1, a);
	ld_expert_copy(ms, 2, 1, b);
	ck_assert(!memcmp(a, b, nf * sizeof(float)));
	free(a);
	free(b);
	ld_model_close(m1);
	ld_model_close(ms);
	/* Rewriting as one file removes the index and the shards. */
	os.shard_bytes = 1 << 30;
	ms = write_open(&os, &info);
	ck_assert_int_eq(info.n_shards, 1);
	ck_assert_int_ne(stat(path("sharded", "model.safetensors.index.json"), &sb), 0);
	ck_assert_int_ne(stat(path("sharded", "model-00001-of-00004.safetensors"), &sb), 0);
	ld_model_close(ms);
}
END_TEST

static void rmsnorm(const float *x, const float *w, int n, float *out)
{
	double ss = 0;

	for (int i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	ss = 1.0 / sqrt(ss / n + 1e-6);
	for (int i = 0; i < n; i++)
		out[i] = (float)(x[i] * ss) * w[i];
}

static int cmp_desc(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* Share of the top-k picks that the busiest quarter of the experts takes,
 * with every token's router logits computed on its own embedding. */
static double top_quarter_share(const struct ld_model *m, int layer)
{
	const struct ld_config *c = &m->cfg;
	int H = c->hidden_size, E = c->n_experts;
	const struct ld_layer *L = &m->layers[layer];
	float *h = malloc((size_t)H * sizeof(float)), *logit = malloc((size_t)E * sizeof(float));
	long *count = calloc((size_t)E, sizeof(long)), top = 0, all = 0;

	for (int t = 0; t < c->vocab_size; t++) {
		rmsnorm(m->embed + (size_t)t * H, L->mlp_norm, H, h);
		for (int e = 0; e < E; e++) {
			double s = 0;
			for (int j = 0; j < H; j++)
				s += (double)L->router[(size_t)e * H + j] * h[j];
			logit[e] = (float)s;
		}
		for (int k = 0; k < c->top_k; k++) {
			int best = 0;
			for (int e = 1; e < E; e++)
				if (logit[e] > logit[best])
					best = e;
			count[best]++;
			logit[best] = -INFINITY;
		}
	}
	qsort(count, (size_t)E, sizeof(long), cmp_desc);
	for (int e = 0; e < E; e++) {
		all += count[e];
		top += e < E / 4 ? count[e] : 0;
	}
	free(h);
	free(logit);
	free(count);
	return (double)top / (double)all;
}

START_TEST(skewed_routing)
{
	static const enum ld_family fams[] = { LD_MIXTRAL, LD_QWEN3_MOE, LD_OLMOE };
	struct mkmodel_opts o, u;
	struct ld_model *m, *mu;

	tiny(&o, fams[_i], "skew");
	tiny(&u, fams[_i], "flat");
	o.n_experts = u.n_experts = 16;
	o.hidden = u.hidden = 64;
	o.vocab = u.vocab = 512;
	o.head_dim = u.head_dim = 0;
	o.skewed = true;
	m = write_open(&o, NULL);
	mu = write_open(&u, NULL);
	for (int l = 0; l < m->cfg.n_layers; l++) {
		double s, su;
		if (!m->cfg.is_moe[l])
			continue;
		s = top_quarter_share(m, l);
		su = top_quarter_share(mu, l);
		fprintf(stderr, "%s layer %d: top-quarter experts take %.1f%% of picks (%.1f%% unskewed)\n",
			ld_family_name(fams[_i]), l, 100 * s, 100 * su);
		ck_assert_msg(s > 0.5, "layer %d: top quarter share %.3f", l, s);
	}
	ld_model_close(m);
	ld_model_close(mu);
}
END_TEST

/* Runs cmd_mkmodel in a child; returns its exit code, stderr in errbuf. */
static int run_cli(char **argv, char *errbuf, size_t errlen)
{
	char *errfile = path("stderr.txt", NULL), *outfile = path("stdout.txt", NULL);
	int argc = 0, status;
	pid_t pid;
	FILE *f;
	size_t n;

	while (argv[argc])
		argc++;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int efd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int ofd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (efd < 0 || ofd < 0 || dup2(efd, 2) < 0 || dup2(ofd, 1) < 0)
			_exit(99);
		status = cmd_mkmodel(argc, argv);
		fflush(NULL);
		_exit(status);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	f = fopen(errfile, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(errbuf, 1, errlen - 1, f);
	errbuf[n] = 0;
	fclose(f);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(cli_errors)
{
	static const char *const cases[][3] = {
		{"--layers", "0", "--layers"},
		{"--layers", "x", "--layers"},
		{"--family", "llama", "--family"},
		{"--dtype", "f8", "--dtype"},
		{"--top-k", "20", "--top-k"},
		{"--kv-heads", "3", "--kv-heads"},
		{"--heads", "5", "--heads"},
		{"--shard-mib", "-1", "--shard-mib"},
		{"--rope-theta", "nan", "--rope-theta"},
		{"--bogus", "1", "--bogus"},
		{"--mlp-only-layers", "1", "--mlp-only-layers"},
		{"--dense-intermediate", "64", "--dense-intermediate"},
		{"--head-dim", "16", "--head-dim"},
		{"--seed", "-3", "--seed"},
	};
	char err[1024];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[] = { "mkmodel", "--out", path("cli", NULL), (char *)cases[i][0],
				 (char *)cases[i][1], NULL };
		int rc = run_cli(argv, err, sizeof(err));
		ck_assert_msg(rc == 2, "%s %s: exit %d", cases[i][0], cases[i][1], rc);
		ck_assert_msg(strstr(err, cases[i][2]) != NULL, "%s: '%s'", cases[i][0], err);
		ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "not one line: '%s'", err);
	}
	{
		char *argv[] = { "mkmodel", "--layers", "2", NULL };
		ck_assert_int_eq(run_cli(argv, err, sizeof(err)), 2);
		ck_assert_ptr_nonnull(strstr(err, "--out"));
	}
	{
		char *argv[] = { "mkmodel", "--out", NULL };
		ck_assert_int_eq(run_cli(argv, err, sizeof(err)), 2);
		ck_assert_ptr_nonnull(strstr(err, "--out"));
	}
}
END_TEST

/* A good run: exit 0, nothing on a non-TTY stderr, a model the loader opens. */
START_TEST(cli_ok)
{
	char *argv[] = { "mkmodel", "--out", path("cli", NULL), "--family=qwen3_moe",
			 "--layers", "2", "--experts", "8", "--top-k", "2", "--hidden", "32",
			 "--heads", "2", "--kv-heads", "1", "--head-dim", "8", "--intermediate", "16",
			 "--dense-intermediate", "48", "--mlp-only-layers", "0", "--vocab", "40",
			 "--dtype", "bf16", "--seed", "7", "--skewed", "--rope-theta", "5e5",
			 "--max-pos", "256", "--shard-mib", "0.01", NULL };
	struct ld_model *m;
	char err[1024];

	ck_assert_int_eq(run_cli(argv, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(ld_model_open(path("cli", NULL), &m, err, sizeof(err)), 0);
	ck_assert_int_eq(m->cfg.n_experts, 8);
	ck_assert_int_eq(m->cfg.head_dim, 8);
	ck_assert_int_eq(m->cfg.intermediate_size, 48);
	ck_assert_int_eq(m->cfg.max_position, 256);
	ck_assert(!m->cfg.is_moe[0] && m->cfg.is_moe[1]);
	ck_assert(fabs(m->cfg.rope_theta - 5e5) < 1e-6);
	ck_assert_int_eq(m->dtype, LD_BF16);
	ld_model_close(m);
}
END_TEST

/* The writer refuses what would make a bad file, and leaves nothing behind. */
START_TEST(st_write_errors)
{
	const int64_t shape[2] = { 2, 3 };
	float data[7] = { 1, 2, 3, 4, 5, 6, 7 };
	const char *file = path("w.safetensors", NULL);
	struct ld_stw *w;
	struct ld_st *st;
	struct stat sb;
	char err[512];
	glob_t g;

	ck_assert_int_eq(ld_stw_open(file, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_stw_add(w, "a", LD_F32, 2, shape), 0);
	ck_assert_int_eq(ld_stw_add(w, "a", LD_F32, 2, shape), 0);
	ck_assert_int_eq(ld_stw_begin(w), -EEXIST);
	ck_assert_int_eq(ld_stw_close(w, err, sizeof(err)), -EEXIST);
	ck_assert_ptr_nonnull(strstr(err, "declared twice"));
	ck_assert_int_ne(stat(file, &sb), 0);

	ck_assert_int_eq(ld_stw_open(file, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_stw_add(w, "a", LD_F32, 2, shape), 0);
	ck_assert_int_eq(ld_stw_begin(w), 0);
	ck_assert_int_eq(ld_stw_add(w, "b", LD_F32, 2, shape), -EINVAL);
	ck_assert_int_eq(ld_stw_close(w, err, sizeof(err)), -EINVAL);
	ck_assert_int_ne(stat(file, &sb), 0);

	ck_assert_int_eq(ld_stw_open(file, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_stw_add(w, "a", LD_F32, 2, shape), 0);
	ck_assert_int_eq(ld_stw_begin(w), 0);
	ck_assert_int_eq(ld_stw_write(w, data, 20), 0);
	ck_assert_int_eq(ld_stw_write(w, data, 8), -EOVERFLOW);
	ck_assert_int_ne(ld_stw_close(w, err, sizeof(err)), 0);
	ck_assert_int_ne(stat(file, &sb), 0);

	ck_assert_int_eq(ld_stw_open(file, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_stw_add(w, "a", LD_F32, 2, shape), 0);
	ck_assert_int_eq(ld_stw_add(w, "s\\\"q", LD_F32, 0, NULL), 0);
	ck_assert_int_eq(ld_stw_begin(w), 0);
	ck_assert_int_eq(ld_stw_write(w, data, 12), 0);
	ck_assert_int_eq(ld_stw_close(w, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "12 of 28"));
	ck_assert_int_ne(stat(file, &sb), 0);

	/* Split writes, a scalar and a name needing JSON escapes read back. */
	ck_assert_int_eq(ld_stw_open(file, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_stw_add(w, "a", LD_F32, 2, shape), 0);
	ck_assert_int_eq(ld_stw_add(w, "s\\\"q", LD_F32, 0, NULL), 0);
	ck_assert_int_eq(ld_stw_begin(w), 0);
	ck_assert_int_eq(ld_stw_write(w, data, 10), 0);
	ck_assert_int_eq(ld_stw_write(w, (char *)data + 10, 18), 0);
	ck_assert_int_eq(ld_stw_close(w, err, sizeof(err)), 0);
	ck_assert_msg(ld_st_open_file(file, &st, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ld_st_count(st), 2);
	ck_assert(!memcmp(ld_st_find(st, "a")->data, data, 24));
	ck_assert_int_eq(ld_st_find(st, "s\\\"q")->ndim, 0);
	ck_assert(!memcmp(ld_st_find(st, "s\\\"q")->data, &data[6], 4));
	ld_st_close(st);
	/* No temporary file left by the failed writes. */
	ck_assert_int_eq(glob(path("w.safetensors.tmp.*", NULL), 0, NULL, &g), GLOB_NOMATCH);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("mkmodel");
	TCase *tc = tcase_create("mkmodel");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, families_open, 0, 3);
	tcase_add_test(tc, same_seed_same_bytes);
	tcase_add_loop_test(tc, half_dtypes, 0, 2);
	tcase_add_test(tc, sharded_index);
	tcase_add_loop_test(tc, skewed_routing, 0, 3);
	tcase_add_test(tc, cli_errors);
	tcase_add_test(tc, cli_ok);
	tcase_add_test(tc, st_write_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return suite_run(suite());
}
