/* The loader: config.json, safetensors (single and sharded) and the model
 * tensors of each fixture; dtype conversion; and every kind of bad input
 * built by copying a fixture into a temp dir and corrupting it. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/model.h"

static char err[1024];

static const char *fixture(const char *name)
{
	static char buf[4][1024];
	static int i;
	const char *root = getenv("MOED_FIXTURES");

	ck_assert_msg(root != NULL, "MOED_FIXTURES not set");
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", root, name);
	return buf[i];
}

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void spill(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
	FILE *f = fopen(path, "wb");

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_uint_eq(fwrite(a, 1, na, f), na);
	if (nb)
		ck_assert_uint_eq(fwrite(b, 1, nb, f), nb);
	ck_assert_int_eq(fclose(f), 0);
}

/* Copies fixture NAME into a new temp dir (returned, static storage). */
static const char *copy_fixture(const char *name)
{
	static char dir[256];
	char src[1200], dst[1200];
	struct dirent *de;
	DIR *d;

	strcpy(dir, "/tmp/moed-test-loader-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	d = opendir(fixture(name));
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d))) {
		size_t n;
		void *buf;

		if (de->d_name[0] == '.')
			continue;
		snprintf(src, sizeof(src), "%s/%s", fixture(name), de->d_name);
		snprintf(dst, sizeof(dst), "%s/%s", dir, de->d_name);
		buf = slurp(src, &n);
		spill(dst, buf, n, NULL, 0);
		free(buf);
	}
	closedir(d);
	return dir;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *path_in(const char *dir, const char *file)
{
	static char buf[4][1200];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, file);
	return buf[i];
}

typedef void (*edit_fn)(json_t *root, void *arg);

/* Rewrites the JSON header of a safetensors file through fn, keeping the
 * data block as it is (offsets are relative to it). */
static void edit_header(const char *path, edit_fn fn, void *arg)
{
	size_t n, hlen = 0;
	uint8_t *buf = slurp(path, &n), len8[8];
	json_error_t je;
	json_t *root;
	char *js;
	int i;

	for (i = 7; i >= 0; i--)
		hlen = hlen << 8 | buf[i];
	root = json_loadb((char *)buf + 8, hlen, 0, &je);
	ck_assert_ptr_nonnull(root);
	fn(root, arg);
	js = json_dumps(root, JSON_COMPACT);
	ck_assert_ptr_nonnull(js);
	for (i = 0; i < 8; i++)
		len8[i] = (uint8_t)((uint64_t)strlen(js) >> (8 * i));
	{
		size_t jl = strlen(js);
		uint8_t *out = malloc(8 + jl);

		memcpy(out, len8, 8);
		memcpy(out + 8, js, jl);
		spill(path, out, 8 + jl, buf + 8 + hlen, n - 8 - hlen);
		free(out);
	}
	free(js);
	json_decref(root);
	free(buf);
}

static void edit_config(const char *dir, edit_fn fn, void *arg)
{
	json_error_t je;
	json_t *root = json_load_file(path_in(dir, "config.json"), 0, &je);

	ck_assert_ptr_nonnull(root);
	fn(root, arg);
	ck_assert_int_eq(json_dump_file(root, path_in(dir, "config.json"), JSON_INDENT(2)), 0);
	json_decref(root);
}

/* Expects ld_model_open(dir) to fail with an error naming every string. */
static void expect_fail(const char *dir, const char *s1, const char *s2)
{
	struct ld_model *m = NULL;
	int rc = ld_model_open(dir, &m, err, sizeof(err));

	if (getenv("MOED_TEST_VERBOSE"))
		fprintf(stderr, "rc %d: %s\n", rc, err);
	ck_assert_int_lt(rc, 0);
	ck_assert_ptr_null(m);
	ck_assert_msg(strstr(err, s1) != NULL, "error '%s' does not name '%s'", err, s1);
	ck_assert_msg(!s2 || strstr(err, s2) != NULL, "error '%s' does not name '%s'", err, s2);
	ck_assert_ptr_null(strchr(err, '\n'));
}

static struct ld_model *open_ok(const char *dir)
{
	struct ld_model *m = NULL;
	int rc = ld_model_open(dir, &m, err, sizeof(err));

	ck_assert_msg(rc == 0, "ld_model_open(%s): %s", dir, err);
	ck_assert_ptr_nonnull(m);
	return m;
}

/* ---- loading the fixtures ---- */

START_TEST(test_mixtral)
{
	struct ld_model *m = open_ok(fixture("mixtral_f32"));
	const struct ld_config *c = &m->cfg;
	const struct ld_tensor *t;
	size_t ih = 48 * 64;
	float *w;

	ck_assert_int_eq(c->family, LD_MIXTRAL);
	ck_assert_str_eq(ld_family_name(c->family), "mixtral");
	ck_assert_int_eq(c->vocab_size, 160);
	ck_assert_int_eq(c->hidden_size, 64);
	ck_assert_int_eq(c->n_layers, 2);
	ck_assert_int_eq(c->n_heads, 4);
	ck_assert_int_eq(c->n_kv_heads, 2);
	ck_assert_int_eq(c->head_dim, 16);          /* null -> hidden / heads */
	ck_assert_int_eq(c->moe_intermediate_size, 48);
	ck_assert_int_eq(c->n_experts, 8);
	ck_assert_int_eq(c->top_k, 2);
	ck_assert(c->norm_topk_prob);
	ck_assert(!c->tie_word_embeddings);
	ck_assert_double_eq(c->rope_theta, 10000.0);
	ck_assert_double_eq(c->rms_eps, 1e-6);
	ck_assert_int_eq(c->max_position, 512);
	ck_assert_int_eq(c->n_moe_layers, 2);
	ck_assert(c->is_moe[0] && c->is_moe[1]);
	ck_assert_int_eq(m->dtype, LD_F32);
	ck_assert_ptr_ne(m->lm_head, m->embed);
	ck_assert_ptr_null(m->layers[0].q_norm);
	ck_assert_ptr_nonnull(m->layers[1].router);
	ck_assert_ptr_null(m->layers[1].mlp_gate);
	ck_assert_int_eq(m->layers[1].moe_index, 1);
	t = ld_st_find(m->st, "model.embed_tokens.weight");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(memcmp(m->embed, t->data, t->nbytes), 0);

	ck_assert_uint_eq(ld_expert_floats(c), 3 * ih);
	w = malloc(ld_expert_floats(c) * sizeof(float));
	ck_assert_ptr_nonnull(w);
	ld_expert_copy(m, 1, 5, w);
	ck_assert_int_eq(m->experts[8 + 5].index, -1);
	t = ld_st_find(m->st, "model.layers.1.block_sparse_moe.experts.5.w1.weight");
	ck_assert_int_eq(memcmp(w, t->data, ih * 4), 0);
	t = ld_st_find(m->st, "model.layers.1.block_sparse_moe.experts.5.w3.weight");
	ck_assert_int_eq(memcmp(w + ih, t->data, ih * 4), 0);
	t = ld_st_find(m->st, "model.layers.1.block_sparse_moe.experts.5.w2.weight");
	ck_assert_int_eq(memcmp(w + 2 * ih, t->data, ih * 4), 0);
	free(w);
	ld_model_close(m);
}
END_TEST

START_TEST(test_qwen3_sharded)
{
	struct ld_model *m = open_ok(fixture("qwen3moe_f32_sharded"));
	const struct ld_config *c = &m->cfg;
	const struct ld_tensor *t;

	ck_assert_int_eq(c->family, LD_QWEN3_MOE);
	ck_assert_int_eq(c->n_layers, 3);
	ck_assert(c->is_moe[0] && !c->is_moe[1] && c->is_moe[2]);
	ck_assert_int_eq(c->n_moe_layers, 2);
	ck_assert_int_eq(c->head_dim, 32);
	ck_assert_int_eq(c->n_kv_heads, 2);
	ck_assert_int_eq(c->n_experts, 8);             /* from num_local_experts */
	ck_assert_int_eq(c->intermediate_size, 80);
	ck_assert_int_eq(c->moe_intermediate_size, 40);
	ck_assert_double_eq(c->rope_theta, 1e6);
	ck_assert(c->norm_topk_prob);
	ck_assert(c->tie_word_embeddings);
	ck_assert_ptr_eq(m->lm_head, m->embed);
	ck_assert_int_eq(m->layers[0].moe_index, 0);
	ck_assert_int_eq(m->layers[1].moe_index, -1);
	ck_assert_int_eq(m->layers[2].moe_index, 1);
	ck_assert_ptr_nonnull(m->layers[1].mlp_gate);
	ck_assert_ptr_nonnull(m->layers[1].mlp_down);
	ck_assert_ptr_null(m->layers[1].router);
	ck_assert_ptr_nonnull(m->layers[2].q_norm);
	ck_assert_uint_eq(ld_st_count(m->st), 79);
	t = ld_st_find(m->st, "model.norm.weight");
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_nonnull(strstr(t->file, "model-00004-of-00004.safetensors"));
	ck_assert_ptr_nonnull(strstr(ld_st_path(m->st), "model.safetensors.index.json"));
	ck_assert_int_eq(memcmp(m->final_norm, t->data, t->nbytes), 0);
	ld_model_close(m);
}
END_TEST

START_TEST(test_olmoe_bf16)
{
	struct ld_model *m = open_ok(fixture("olmoe_bf16"));
	const struct ld_config *c = &m->cfg;
	const struct ld_tensor *t;
	size_t ih = 40 * 64, i;
	const uint8_t *p;
	uint32_t bits;
	float *w, f;

	ck_assert_int_eq(c->family, LD_OLMOE);
	ck_assert_int_eq(c->n_kv_heads, 4);
	ck_assert_int_eq(c->head_dim, 16);
	ck_assert(!c->norm_topk_prob);
	ck_assert_double_eq(c->clip_qkv, 0);
	ck_assert_double_eq(c->rope_theta, 10000.0);
	ck_assert_int_eq(m->dtype, LD_BF16);
	ck_assert_ptr_nonnull(m->layers[0].q_norm);
	ck_assert_ptr_nonnull(m->layers[0].k_norm);
	t = ld_st_find(m->st, "model.embed_tokens.weight");
	p = t->data;
	for (i = 0; i < 160 * 64; i += 97) {
		bits = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
		memcpy(&f, &bits, 4);
		ck_assert_float_eq(m->embed[i], f);
	}
	w = malloc(ld_expert_floats(c) * sizeof(float));
	ld_expert_copy(m, 1, 7, w);
	t = ld_st_find(m->st, "model.layers.1.mlp.experts.7.down_proj.weight");
	p = t->data;
	bits = (uint32_t)(p[2 * (ih - 1)] | p[2 * (ih - 1) + 1] << 8) << 16;
	memcpy(&f, &bits, 4);
	ck_assert_float_eq(w[3 * ih - 1], f);
	ck_assert_float_eq(w[3 * ih - 1], 0.1328125f); /* value in the fixture */
	free(w);
	ld_model_close(m);
}
END_TEST

START_TEST(test_convert)
{
	static const uint8_t bf[] = { 0xc0, 0x3f, 0x49, 0x40, 0x80, 0xff, 0x00, 0x80 };
	static const uint16_t h[] = { 0x3c00, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x7e00,
				      0xc000, 0x7bff, 0x8000, 0x0400, 0x3555 };
	uint8_t hb[2 * 11], f32b[4] = { 0x00, 0x00, 0xc0, 0x3f };
	float o[11];
	int i;

	ld_to_f32(o, bf, LD_BF16, 4);
	ck_assert_float_eq(o[0], 1.5f);
	ck_assert_float_eq(o[1], 3.140625f);
	ck_assert(isinf(o[2]) && o[2] < 0);
	ck_assert(o[3] == 0 && signbit(o[3]));
	for (i = 0; i < 11; i++) {
		hb[2 * i] = (uint8_t)h[i];
		hb[2 * i + 1] = (uint8_t)(h[i] >> 8);
	}
	ld_to_f32(o, hb, LD_F16, 11);
	ck_assert_float_eq(o[0], 1.0f);
	ck_assert_float_eq(o[1], ldexpf(1, -24));     /* smallest subnormal */
	ck_assert_float_eq(o[2], ldexpf(1023, -24));  /* largest subnormal */
	ck_assert(isinf(o[3]) && o[3] > 0);
	ck_assert(isinf(o[4]) && o[4] < 0);
	ck_assert(isnan(o[5]));
	ck_assert_float_eq(o[6], -2.0f);
	ck_assert_float_eq(o[7], 65504.0f);
	ck_assert(o[8] == 0 && signbit(o[8]));
	ck_assert_float_eq(o[9], ldexpf(1, -14));     /* smallest normal */
	ck_assert_float_eq(o[10], 0x1.554p-2f);
	ld_to_f32(o, f32b, LD_F32, 1);
	ck_assert_float_eq(o[0], 1.5f);
	ck_assert_uint_eq(ld_dtype_size(LD_BF16), 2);
	ck_assert_str_eq(ld_dtype_name(LD_F16), "F16");
}
END_TEST

START_TEST(test_st_api)
{
	struct ld_st *st = NULL;
	const struct ld_tensor *t;
	size_t i;

	ck_assert_int_eq(ld_st_open_file(path_in(fixture("mixtral_f32"), "model.safetensors"),
					 &st, err, sizeof(err)), 0);
	ck_assert_uint_eq(ld_st_count(st), 65);
	for (i = 0; i < ld_st_count(st); i++) {
		t = ld_st_at(st, i);
		ck_assert_ptr_eq(ld_st_find(st, t->name), t);
	}
	ck_assert_ptr_null(ld_st_at(st, 65));
	ck_assert_ptr_null(ld_st_find(st, "nope"));
	t = ld_st_find(st, "model.layers.0.self_attn.k_proj.weight");
	ck_assert_int_eq(t->ndim, 2);
	ck_assert_int_eq(t->shape[0], 32);
	ck_assert_int_eq(t->shape[1], 64);
	ck_assert_uint_eq(t->nbytes, 32 * 64 * 4);
	ld_st_close(st);
	ld_st_close(NULL);
}
END_TEST

/* ---- config spellings ---- */

static void cfg_old_rope(json_t *root, void *arg)
{
	json_object_del(root, "rope_parameters");
	json_object_del(root, "rope_theta");
	if (arg)
		json_object_set_new(root, "rope_theta", json_real(5e5));
}

static void cfg_qwen_v4(json_t *root, void *arg)
{
	(void)arg;
	json_object_del(root, "num_local_experts");
	json_object_set_new(root, "num_experts", json_integer(8));
	json_object_set_new(root, "decoder_sparse_step", json_integer(2));
	json_object_set_new(root, "mlp_only_layers", json_array());
	json_object_del(root, "norm_topk_prob");
}

START_TEST(test_config_spellings)
{
	const char *dir = copy_fixture("mixtral_f32");
	struct ld_config c;

	edit_config(dir, cfg_old_rope, (void *)1);
	ck_assert_int_eq(ld_config_read(path_in(dir, "config.json"), &c, err, sizeof(err)), 0);
	ck_assert_double_eq(c.rope_theta, 5e5);
	edit_config(dir, cfg_old_rope, NULL);
	ck_assert_int_eq(ld_config_read(path_in(dir, "config.json"), &c, err, sizeof(err)), 0);
	ck_assert_double_eq(c.rope_theta, 1e6);           /* MixtralConfig default */
	rm_tree(dir);

	dir = copy_fixture("qwen3moe_f32_sharded");
	edit_config(dir, cfg_qwen_v4, NULL);
	ck_assert_int_eq(ld_config_read(path_in(dir, "config.json"), &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.n_experts, 8);
	ck_assert(!c.norm_topk_prob);                      /* Qwen3MoeConfig default */
	ck_assert(!c.is_moe[0] && c.is_moe[1] && !c.is_moe[2]);
	ck_assert_int_eq(c.n_moe_layers, 1);
	rm_tree(dir);
}
END_TEST

/* One bad config.json value per loop iteration: KEY set to JSON. */
static const struct { const char *fx, *key, *json, *want; } bad_cfg[] = {
	{ "mixtral_f32", "hidden_size", "\"64\"", "hidden_size" },
	{ "mixtral_f32", "num_attention_heads", "0", "num_attention_heads" },
	{ "mixtral_f32", "num_experts_per_tok", "9", "num_experts_per_tok" },
	{ "mixtral_f32", "num_hidden_layers", "1000", "num_hidden_layers" },
	{ "mixtral_f32", "num_key_value_heads", "3", "num_key_value_heads" },
	{ "mixtral_f32", "rms_norm_eps", "-1", "rms_norm_eps" },
	{ "mixtral_f32", "tie_word_embeddings", "1", "tie_word_embeddings" },
	{ "mixtral_f32", "rope_parameters", "{\"rope_theta\": \"x\"}", "rope_parameters.rope_theta" },
	{ "mixtral_f32", "rope_parameters", "{\"rope_type\": \"yarn\"}", "rope_type" },
	{ "mixtral_f32", "model_type", "\"llama\"", "unsupported architecture 'llama'" },
	{ "olmoe_bf16", "clip_qkv", "\"big\"", "clip_qkv" },
	{ "qwen3moe_f32_sharded", "mlp_only_layers", "[\"a\"]", "mlp_only_layers" },
	{ "qwen3moe_f32_sharded", "decoder_sparse_step", "0", "decoder_sparse_step" },
};

static void cfg_set(json_t *root, void *arg)
{
	int i = *(int *)arg;
	json_error_t je;
	json_t *v = json_loads(bad_cfg[i].json, JSON_DECODE_ANY, &je);

	ck_assert_ptr_nonnull(v);
	json_object_set_new(root, bad_cfg[i].key, v);
}

START_TEST(test_bad_config)
{
	const char *dir = copy_fixture(bad_cfg[_i].fx);

	edit_config(dir, cfg_set, &_i);
	expect_fail(dir, path_in(dir, "config.json"), bad_cfg[_i].want);
	rm_tree(dir);
}
END_TEST

static void cfg_arch_only(json_t *root, void *arg)
{
	(void)arg;
	json_object_del(root, "model_type");
	json_object_set_new(root, "architectures", json_pack("[s]", "FooForCausalLM"));
}

static void cfg_no_head_dim(json_t *root, void *arg)
{
	(void)arg;
	json_object_del(root, "head_dim");
	json_object_set_new(root, "num_attention_heads", json_integer(6));
	json_object_set_new(root, "num_key_value_heads", json_integer(2));
}

START_TEST(test_bad_config_misc)
{
	const char *dir = copy_fixture("mixtral_f32");

	edit_config(dir, cfg_arch_only, NULL);
	expect_fail(dir, "config.json: unsupported architecture 'FooForCausalLM' (supported:", NULL);
	rm_tree(dir);
	dir = copy_fixture("qwen3moe_f32_sharded");
	edit_config(dir, cfg_no_head_dim, NULL);
	expect_fail(dir, path_in(dir, "config.json"), "head_dim");
	rm_tree(dir);
	dir = copy_fixture("mixtral_f32");
	unlink(path_in(dir, "config.json"));
	expect_fail(dir, path_in(dir, "config.json"), "No such file");
	spill(path_in(dir, "config.json"), "{\"model_type\": ", 15, NULL, 0);
	expect_fail(dir, path_in(dir, "config.json"), "line");
	rm_tree(dir);
}
END_TEST
/* ---- broken safetensors ---- */

static void hdr_del(json_t *root, void *name)
{
	ck_assert_int_eq(json_object_del(root, name), 0);
}

struct set_arg { const char *name, *key, *json; };

static void hdr_set(json_t *root, void *arg)
{
	struct set_arg *a = arg;
	json_t *e = json_object_get(root, a->name);
	json_error_t je;

	ck_assert_ptr_nonnull(e);
	json_object_set_new(e, a->key, json_loads(a->json, JSON_DECODE_ANY, &je));
}

static void hdr_overlap(json_t *root, void *arg)
{
	json_t *a = json_object_get(root, "model.layers.0.block_sparse_moe.experts.0.w1.weight");
	json_t *b = json_object_get(root, "model.layers.0.block_sparse_moe.experts.1.w1.weight");

	(void)arg;
	json_object_set(b, "data_offsets", json_object_get(a, "data_offsets"));
}

static void truncate_to(const char *path, off_t len)
{
	ck_assert_int_eq(truncate(path, len), 0);
}

START_TEST(test_truncated)
{
	const char *dir = copy_fixture("mixtral_f32");
	const char *st = path_in(dir, "model.safetensors");
	struct stat sb;

	ck_assert_int_eq(stat(st, &sb), 0);
	truncate_to(st, sb.st_size / 2);
	expect_fail(dir, st, "data_offsets");
	ck_assert_ptr_nonnull(strstr(err, ".weight: "));  /* names the tensor */
	truncate_to(st, 5);
	expect_fail(dir, st, "truncated");
	truncate_to(st, 0);
	expect_fail(dir, st, "truncated");
	rm_tree(dir);
}
END_TEST

START_TEST(test_header_len_beyond)
{
	const char *dir = copy_fixture("olmoe_bf16");
	const char *st = path_in(dir, "model.safetensors");
	uint8_t len8[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
	int fd = open(st, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, len8, 8, 0), 8);
	expect_fail(dir, st, "header length");
	memcpy(len8, "\0\0\x10\0\0\0\0\0", 8);  /* 1 MiB: within the cap, not the file */
	ck_assert_int_eq(pwrite(fd, len8, 8, 0), 8);
	expect_fail(dir, st, "beyond file size");
	memcpy(len8, "\x10\0\0\0\0\0\0\0", 8);  /* inside the file: JSON cut short */
	ck_assert_int_eq(pwrite(fd, len8, 8, 0), 8);
	close(fd);
	expect_fail(dir, st, "header JSON");
	rm_tree(dir);
}
END_TEST

START_TEST(test_overlap)
{
	const char *dir = copy_fixture("mixtral_f32");
	const char *st = path_in(dir, "model.safetensors");

	edit_header(st, hdr_overlap, NULL);
	expect_fail(dir, st, "overlaps");
	ck_assert_ptr_nonnull(strstr(err, "model.layers.0.block_sparse_moe.experts.0.w1.weight"));
	ck_assert_ptr_nonnull(strstr(err, "model.layers.0.block_sparse_moe.experts.1.w1.weight"));
	rm_tree(dir);
}
END_TEST

START_TEST(test_shape_len_mismatch)
{
	const char *dir = copy_fixture("mixtral_f32");
	const char *st = path_in(dir, "model.safetensors");
	struct set_arg a = { "model.layers.1.block_sparse_moe.experts.3.w2.weight", "shape", "[64,47]" };

	edit_header(st, hdr_set, &a);
	expect_fail(dir, st, "model.layers.1.block_sparse_moe.experts.3.w2.weight: shape x dtype size");
	rm_tree(dir);
}
END_TEST

START_TEST(test_bad_entries)
{
	static const struct set_arg cases[] = {
		{ "model.norm.weight", "dtype", "\"I8\"" },
		{ "model.norm.weight", "dtype", "7" },
		{ "model.norm.weight", "shape", "[1,1,1,1,64]" },
		{ "model.norm.weight", "shape", "[-64]" },
		{ "model.norm.weight", "shape", "\"64\"" },
		{ "model.norm.weight", "data_offsets", "[8, 4]" },
		{ "model.norm.weight", "data_offsets", "[0]" },
		{ "model.norm.weight", "data_offsets", "[0, 99999999999]" },
		{ "model.norm.weight", "shape", "[4294967296,4294967296,4294967296]" },
	};
	const char *dir = copy_fixture("mixtral_f32");
	const char *st = path_in(dir, "model.safetensors");
	size_t n, i;
	void *orig = slurp(st, &n);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		edit_header(st, hdr_set, (void *)&cases[i]);
		expect_fail(dir, st, "model.norm.weight: ");
		if (i == 0)
			ck_assert_ptr_nonnull(strstr(err, "'I8'"));
		spill(st, orig, n, NULL, 0);
	}
	free(orig);
	rm_tree(dir);
}
END_TEST

START_TEST(test_missing_tensor)
{
	const char *dir = copy_fixture("mixtral_f32");
	const char *st = path_in(dir, "model.safetensors");
	char want[1400];

	edit_header(st, hdr_del, "model.layers.1.self_attn.q_proj.weight");
	snprintf(want, sizeof(want), "%s: model.layers.1.self_attn.q_proj.weight: missing tensor", st);
	expect_fail(dir, want, NULL);
	ck_assert_str_eq(err, want);
	rm_tree(dir);

	dir = copy_fixture("mixtral_f32");
	st = path_in(dir, "model.safetensors");
	edit_header(st, hdr_del, "lm_head.weight");      /* not tied: needed */
	expect_fail(dir, st, "lm_head.weight: missing tensor");
	rm_tree(dir);

	dir = copy_fixture("olmoe_bf16");
	st = path_in(dir, "model.safetensors");
	edit_header(st, hdr_del, "model.layers.1.mlp.experts.6.up_proj.weight");
	expect_fail(dir, st, "model.layers.1.mlp.experts.6.up_proj.weight: missing tensor");
	rm_tree(dir);
}
END_TEST

START_TEST(test_wrong_shape)
{
	const char *dir = copy_fixture("mixtral_f32");
	const char *st = path_in(dir, "model.safetensors");
	struct set_arg a = { "model.layers.0.self_attn.q_proj.weight", "shape", "[32,128]" };
	char want[1400];

	edit_header(st, hdr_set, &a);
	snprintf(want, sizeof(want),
		 "%s: model.layers.0.self_attn.q_proj.weight: shape [32,128], expected [64,64]", st);
	expect_fail(dir, want, NULL);
	ck_assert_str_eq(err, want);
	rm_tree(dir);
}
END_TEST

START_TEST(test_shards)
{
	const char *dir = copy_fixture("qwen3moe_f32_sharded");
	const char *s4 = path_in(dir, "model-00004-of-00004.safetensors");

	edit_header(s4, hdr_del, "model.norm.weight");
	expect_fail(dir, s4, "model.norm.weight: missing tensor");
	unlink(path_in(dir, "model-00003-of-00004.safetensors"));
	expect_fail(dir, path_in(dir, "model-00003-of-00004.safetensors"), "No such file");
	unlink(path_in(dir, "model.safetensors.index.json"));
	expect_fail(dir, dir, "no model.safetensors");
	spill(path_in(dir, "model.safetensors.index.json"),
	      "{\"weight_map\": {\"a\": \"../x.safetensors\"}}", 41, NULL, 0);
	expect_fail(dir, "model.safetensors.index.json", "weight_map.a");
	rm_tree(dir);
}
END_TEST

/* ---- transformers-5 fused expert layout ---- */

struct item { char name[128]; int ndim; int64_t shape[3]; const void *data; size_t nbytes; };

static void write_st(const char *path, const struct item *it, int n, const char *dtype)
{
	json_t *root = json_object();
	size_t off = 0, jl;
	uint8_t len8[8];
	char *js;
	FILE *f;
	int i, d;

	for (i = 0; i < n; i++) {
		json_t *sh = json_array();
		for (d = 0; d < it[i].ndim; d++)
			json_array_append_new(sh, json_integer(it[i].shape[d]));
		json_object_set_new(root, it[i].name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", dtype,
			"shape", sh, "data_offsets", (json_int_t)off, (json_int_t)(off + it[i].nbytes)));
		off += it[i].nbytes;
	}
	js = json_dumps(root, JSON_COMPACT);
	jl = strlen(js);
	for (i = 0; i < 8; i++)
		len8[i] = (uint8_t)((uint64_t)jl >> (8 * i));
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	fwrite(len8, 1, 8, f);
	fwrite(js, 1, jl, f);
	for (i = 0; i < n; i++)
		ck_assert_uint_eq(fwrite(it[i].data, 1, it[i].nbytes, f), it[i].nbytes);
	ck_assert_int_eq(fclose(f), 0);
	free(js);
	json_decref(root);
}

/* Builds olmoe's checkpoint with gate_up_proj / down_proj per layer and
 * checks every expert copies out identical to the per-expert original. */
START_TEST(test_fused_experts)
{
	struct ld_model *m = open_ok(fixture("olmoe_bf16")), *fm;
	const char *dir = copy_fixture("olmoe_bf16");
	size_t ih = 40 * 64, nf = ld_expert_floats(&m->cfg), i, bytes = ih * 2;
	struct item *it = calloc(ld_st_count(m->st), sizeof(*it));
	uint8_t *buf[2][2];
	float *a = malloc(nf * 4), *b = malloc(nf * 4);
	int n = 0, l, j, E = 8;

	for (i = 0; i < ld_st_count(m->st); i++) {
		const struct ld_tensor *t = ld_st_at(m->st, i);
		if (strstr(t->name, ".experts."))
			continue;
		snprintf(it[n].name, sizeof(it[n].name), "%s", t->name);
		it[n].ndim = t->ndim;
		memcpy(it[n].shape, t->shape, sizeof(int64_t) * 2);
		it[n].data = t->data;
		it[n++].nbytes = t->nbytes;
	}
	for (l = 0; l < 2; l++) {
		char nm[128];
		buf[l][0] = malloc(E * 2 * bytes);
		buf[l][1] = malloc(E * bytes);
		for (j = 0; j < E; j++) {
			static const char *const w[] = { "gate_proj", "up_proj", "down_proj" };
			for (int k = 0; k < 3; k++) {
				snprintf(nm, sizeof(nm), "model.layers.%d.mlp.experts.%d.%s.weight", l, j, w[k]);
				const struct ld_tensor *t = ld_st_find(m->st, nm);
				ck_assert_ptr_nonnull(t);
				memcpy(k < 2 ? buf[l][0] + (2 * j + k) * bytes : buf[l][1] + j * bytes,
				       t->data, bytes);
			}
		}
		snprintf(it[n].name, sizeof(it[n].name), "model.layers.%d.mlp.experts.gate_up_proj", l);
		it[n].ndim = 3;
		it[n].shape[0] = E; it[n].shape[1] = 80; it[n].shape[2] = 64;
		it[n].data = buf[l][0];
		it[n++].nbytes = E * 2 * bytes;
		snprintf(it[n].name, sizeof(it[n].name), "model.layers.%d.mlp.experts.down_proj", l);
		it[n].ndim = 3;
		it[n].shape[0] = E; it[n].shape[1] = 64; it[n].shape[2] = 40;
		it[n].data = buf[l][1];
		it[n++].nbytes = E * bytes;
	}
	write_st(path_in(dir, "model.safetensors"), it, n, "BF16");
	fm = open_ok(dir);
	ck_assert_int_eq(fm->dtype, LD_BF16);
	for (l = 0; l < 2; l++)
		for (j = 0; j < E; j++) {
			ck_assert_int_eq(fm->experts[l * E + j].index, j);
			ld_expert_copy(m, l, j, a);
			ld_expert_copy(fm, l, j, b);
			ck_assert_int_eq(memcmp(a, b, nf * 4), 0);
		}
	ld_model_close(fm);
	/* wrong fused shape is reported like any other */
	it[n - 1].shape[2] = 20;
	it[n - 1].nbytes /= 2;
	write_st(path_in(dir, "model.safetensors"), it, n, "BF16");
	expect_fail(dir, "model.layers.1.mlp.experts.down_proj: shape [8,64,20], expected [8,64,40]", NULL);
	for (l = 0; l < 2; l++) {
		free(buf[l][0]);
		free(buf[l][1]);
	}
	free(a);
	free(b);
	free(it);
	ld_model_close(m);
	rm_tree(dir);
}
END_TEST

static Suite *loader_suite(void)
{
	Suite *s = suite_create("loader");
	TCase *tc = tcase_create("load");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_mixtral);
	tcase_add_test(tc, test_qwen3_sharded);
	tcase_add_test(tc, test_olmoe_bf16);
	tcase_add_test(tc, test_convert);
	tcase_add_test(tc, test_st_api);
	tcase_add_test(tc, test_config_spellings);
	tcase_add_loop_test(tc, test_bad_config, 0, (int)(sizeof(bad_cfg) / sizeof(bad_cfg[0])));
	tcase_add_test(tc, test_bad_config_misc);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_header_len_beyond);
	tcase_add_test(tc, test_overlap);
	tcase_add_test(tc, test_shape_len_mismatch);
	tcase_add_test(tc, test_bad_entries);
	tcase_add_test(tc, test_missing_tensor);
	tcase_add_test(tc, test_wrong_shape);
	tcase_add_test(tc, test_shards);
	tcase_add_test(tc, test_fused_experts);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(loader_suite());
	int nf;

	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
