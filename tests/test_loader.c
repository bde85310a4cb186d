/* The loader: config.json, safetensors (single and sharded) and the model
 * tensors of each fixture; dtype conversion; config spellings and bad
 * configs (a fixture copied into a temp dir and edited).  Broken
 * safetensors files: test_loader_bad.c. */
#include "loader/env.h"
#include "tests/loader_fx.h"
#include "tests/suite_run.h"

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

/* ld_env_long: a whole decimal number in range, else the default. */
START_TEST(test_env_long)
{
	static const struct {
		const char *v;
		long want;
	} cases[] = {{"7", 7}, {"1", 1}, {"9", 9}, {"0", 5}, {"10", 5}, {"-3", 5},
		     {"7x", 5}, {"", 5}, {"x", 5}, {" 8", 8}};

	unsetenv("MOED_TEST_ENV_LONG");
	ck_assert_int_eq(ld_env_long("MOED_TEST_ENV_LONG", 1, 9, 5), 5);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("MOED_TEST_ENV_LONG", cases[i].v, 1);
		ck_assert_msg(ld_env_long("MOED_TEST_ENV_LONG", 1, 9, 5) == cases[i].want,
			      "'%s'", cases[i].v);
	}
	setenv("MOED_TEST_ENV_LONG", "3", 1);
	ck_assert_int_eq(ld_env_long("MOED_TEST_ENV_LONG", 4, 3, 5), 5);   /* empty range */
	unsetenv("MOED_TEST_ENV_LONG");
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
	tcase_add_test(tc, test_env_long);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return suite_run(loader_suite());
}
