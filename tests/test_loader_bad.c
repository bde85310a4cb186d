/* The loader on broken safetensors files (tests/loader_fx.h builds them
 * from the fixtures) and on transformers 5's fused expert layout. */
#include "tests/loader_fx.h"
#include "tests/suite_run.h"

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

static Suite *loader_bad_suite(void)
{
	Suite *s = suite_create("loader_bad");
	TCase *tc = tcase_create("load");

	tcase_set_timeout(tc, 60);
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
	return suite_run(loader_bad_suite());
}
