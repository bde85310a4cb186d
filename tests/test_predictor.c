/* Predictors and traces: trace writer -> reader round trip, JSONL shapes and
 * errors, oracle recall 1.0 (synthetic and the olmoe trace under
 * $MOED_TRACES when present), freq and cepr against popularity on synthetic
 * token- and path-dependent routing, state save/load.  The offline
 * evaluation: test_predictor_eval.c. */
#include "tests/predictor_fx.h"
#include "tests/suite_run.h"

/* ---- traces ---- */

START_TEST(trace_roundtrip)
{
	const char *path = tmp_path("rt.trace");
	struct pred_trace_writer *w;
	struct pred_trace *t;
	int ex[2];

	ck_assert_int_eq(pred_trace_writer_open(path, 3, 300, 2, &w), 0);
	/* batch 7: seq 0 prefill, positions 0..2, layer-major like the engine */
	for (int l = 0; l < 3; l++)
		for (int pos = 0; pos < 3; pos++) {
			ex[0] = 100 * l + pos, ex[1] = 299 - pos;
			ck_assert_int_eq(pred_trace_write(w, 7, 0, l, pos, 1000 + pos, ex, 2), 0);
		}
	/* batch 8: seq 0 decodes pos 3 while seq 5 starts at pos 0 */
	for (int l = 0; l < 3; l++) {
		ex[0] = l, ex[1] = 250;
		ck_assert_int_eq(pred_trace_write(w, 8, 0, l, 3, 42, ex, 2), 0);
		ex[1] = 251;
		ck_assert_int_eq(pred_trace_write(w, 8, 5, l, 0, -1, ex, 2), 0);
	}
	ck_assert_int_eq(pred_trace_write(w, 8, 5, 3, 0, 1, ex, 2), -EINVAL);   /* layer */
	ck_assert_int_eq(pred_trace_write(w, 8, 5, 0, 0, 1, ex, 1), -EINVAL);   /* k */
	ex[0] = 300;
	ck_assert_int_eq(pred_trace_write(w, 8, 5, 0, 0, 1, ex, 2), -EINVAL);   /* expert */
	ck_assert_int_eq(pred_trace_writer_close(w), 0);

	ck_assert_int_eq(pred_trace_load(path, &t, err, sizeof(err)), 0);
	ck_assert_int_eq(t->format, PRED_TRACE_BINARY);
	ck_assert_int_eq(t->n_layers, 3);
	ck_assert_int_eq(t->n_experts, 300);
	ck_assert_int_eq(t->top_k, 2);
	ck_assert_uint_eq(t->n_tokens, 5);
	for (int pos = 0; pos < 3; pos++) {
		ck_assert_uint_eq(t->toks[pos].batch, 7);
		ck_assert_int_eq(t->toks[pos].pos, pos);
		ck_assert_int_eq(t->toks[pos].token, 1000 + pos);
		ck_assert_int_eq(t->toks[pos].prev, pos - 1);
		for (int l = 0; l < 3; l++) {
			ck_assert_int_eq(pred_trace_at(t, pos, l)[0], 100 * l + pos);
			ck_assert_int_eq(pred_trace_at(t, pos, l)[1], 299 - pos);
		}
	}
	ck_assert_int_eq(t->toks[3].token, 42);
	ck_assert_int_eq(t->toks[3].prev, 2);       /* same seq, previous batch */
	ck_assert_uint_eq(t->toks[4].seq, 5);
	ck_assert_int_eq(t->toks[4].token, -1);
	ck_assert_int_eq(t->toks[4].prev, -1);      /* first of its seq */
	ck_assert_int_eq(pred_trace_at(t, 4, 2)[0], 2);
	ck_assert_int_eq(pred_trace_at(t, 4, 2)[1], 251);
	pred_trace_free(t);
	unlink(path);
}
END_TEST

START_TEST(trace_binary_errors)
{
	const char *path = tmp_path("bad.trace");
	struct pred_trace_writer *w;
	struct pred_trace *t;
	int ex[2] = {1, 2};
	FILE *f;
	long sz;

	/* a crash mid-record: the cut record's token is dropped, not an error */
	ck_assert_int_eq(pred_trace_writer_open(path, 2, 4, 2, &w), 0);
	for (int pos = 0; pos < 2; pos++)
		for (int l = 0; l < 2; l++)
			ck_assert_int_eq(pred_trace_write(w, 0, 0, l, pos, 9, ex, 2), 0);
	ck_assert_int_eq(pred_trace_writer_close(w), 0);
	f = fopen(path, "r+");
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	fclose(f);
	ck_assert_int_eq(truncate(path, sz - 3), 0);
	ck_assert_int_eq(pred_trace_load(path, &t, err, sizeof(err)), 0);
	ck_assert_uint_eq(t->n_tokens, 1);
	ck_assert_uint_eq(t->n_incomplete, 1);
	pred_trace_free(t);

	write_text(path, "MOEDTRCE\x02");            /* short header */
	ck_assert_int_eq(pred_trace_load(path, &t, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, path));
	write_text(path, "hello");
	ck_assert_int_eq(pred_trace_load(path, &t, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "neither"));
	ck_assert_int_eq(pred_trace_load("/nonexistent/x", &t, err, sizeof(err)), -ENOENT);
	unlink(path);
}
END_TEST

START_TEST(jsonl_shapes)
{
	const char *path = tmp_path("shapes.jsonl");
	struct pred_trace *t;

	/* layer ids 1, 3, 4 (a dense layer 2 is absent), top-2, max expert 9 */
	write_text(path, "[[1, 5], [1, 0], [3, 9], [3, 2], [4, 1], [4, 7]]\n"
			 "\n"
			 "[[1, 6], [1, 5], [3, 2], [3, 3], [4, 0], [4, 4]]\n");
	ck_assert_int_eq(pred_trace_load(path, &t, err, sizeof(err)), 0);
	ck_assert_int_eq(t->format, PRED_TRACE_JSONL);
	ck_assert_int_eq(t->n_layers, 3);
	ck_assert_int_eq(t->n_experts, 10);
	ck_assert_int_eq(t->top_k, 2);
	ck_assert_uint_eq(t->n_tokens, 2);
	ck_assert_int_eq(t->layer_ids[1], 3);
	ck_assert_int_eq(t->toks[1].token, -1);
	ck_assert_int_eq(t->toks[1].prev, 0);
	ck_assert_int_eq(pred_trace_at(t, 0, 1)[0], 9);
	ck_assert_int_eq(pred_trace_at(t, 1, 2)[1], 4);
	pred_trace_free(t);
	unlink(path);
}
END_TEST

static void jsonl_rejects(const char *text, const char *want)
{
	const char *path = tmp_path("bad.jsonl");
	struct pred_trace *t = NULL;

	write_text(path, text);
	ck_assert_int_eq(pred_trace_load(path, &t, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(t);
	ck_assert_msg(strstr(err, want) && strstr(err, path), "'%s' lacks '%s'", err, want);
	unlink(path);
}

START_TEST(jsonl_errors)
{
	const char *ok = "[[0, 1], [0, 2], [1, 3], [1, 4]]\n";
	char buf[512];

	snprintf(buf, sizeof(buf), "%s%s[[0, 1], [0, 2], [1, 3]\n", ok, ok);
	jsonl_rejects(buf, "line 3");                       /* bad JSON */
	snprintf(buf, sizeof(buf), "%s[[0, 1], [0, 2]]\n", ok);
	jsonl_rejects(buf, "line 2: layer 1 has 0 experts"); /* missing layer */
	snprintf(buf, sizeof(buf), "%s[[0, 1], [0, 1], [1, 3], [1, 4]]\n", ok);
	jsonl_rejects(buf, "line 2: layer 0 lists expert 1 twice");
	snprintf(buf, sizeof(buf), "%s%s[[0, 1], [0, 2], [1, 3], [1, 4], [1, 5]]\n", ok, ok);
	jsonl_rejects(buf, "line 3: layer 1 has more than 2");
	snprintf(buf, sizeof(buf), "%s[[0, 1], [0, \"2\"], [1, 3], [1, 4]]\n", ok);
	jsonl_rejects(buf, "line 2: item 1");
	jsonl_rejects("[[0, -1]]\n", "line 1");
	jsonl_rejects("[]\n", "line 1");
	jsonl_rejects("\n\n", "neither");
}
END_TEST

/* ---- predictors ---- */

START_TEST(oracle_exact)
{
	struct pred_trace *t = path_trace(300);
	struct pred *p = open_for(PRED_ORACLE, t);
	int out[32];

	for (size_t i = 0; i < t->n_tokens; i += 7)
		for (int l = 0; l < t->n_layers; l++) {
			struct pred_tok tk = {.token = -1, .index = (int64_t)i};
			int n = pred_predict_layer(p, &tk, l, 5, out);

			ck_assert_int_eq(n, t->top_k);          /* never pads */
			for (int j = 0; j < n; j++)
				ck_assert_int_eq(out[j], pred_trace_at(t, i, l)[j]);
		}
	{   /* a batch table: per layer the union of two tokens' experts; rows
	     * keep the caller's stride even when want exceeds n_experts */
		struct pred_tok two[2] = {{.token = -1, .index = 10}, {.token = -1, .index = 11}};
		int want = t->n_experts + 3, *table = malloc(t->n_layers * want * sizeof(int));
		int counts[6];

		ck_assert_int_eq(pred_predict_batch(p, two, 2, want, table, counts), 0);
		for (int l = 0; l < t->n_layers; l++) {
			ck_assert_int_ge(counts[l], t->top_k);
			for (int i = 10; i <= 11; i++)
				for (int j = 0; j < t->top_k; j++) {
					int e = pred_trace_at(t, i, l)[j], found = 0;

					for (int c = 0; c < counts[l]; c++)
						found |= table[l * want + c] == e;
					ck_assert_msg(found, "layer %d token %d expert %d", l, i, e);
				}
		}
		free(table);
	}
	pred_close(p);
	for (int pol = CACHE_FIFO; pol <= CACHE_BELADY; pol++) {
		struct pred_eval_result r = eval(PRED_ORACLE, t, pol, 20, 0);

		ck_assert_double_eq(r.recall, 1.0);
		ck_assert_double_eq(r.precision, 1.0);
		ck_assert_double_eq(r.hit_rate, 1.0);
	}
	pred_trace_free(t);
}
END_TEST

START_TEST(oracle_olmoe_trace)
{
	const char *dir = getenv("MOED_TRACES");
	char path[1024];
	struct pred_trace *t;

	snprintf(path, sizeof(path), "%s/nvmoe-olmoe-all.tokens.jsonl", dir ? dir : "");
	if (!dir || access(path, R_OK) != 0) {
		fprintf(stderr, "oracle_olmoe_trace: skipped, no %s\n", path);
		return;
	}
	ck_assert_msg(pred_trace_load(path, &t, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(t->n_layers, 16);
	ck_assert_int_eq(t->n_experts, 64);
	ck_assert_int_eq(t->top_k, 8);
	ck_assert_uint_eq(t->n_tokens, 897);
	for (int i = 0; i < 2; i++) {
		enum cache_policy pol = i ? CACHE_BELADY : CACHE_LRU;
		struct pred_eval_result r = eval(PRED_ORACLE, t, pol, 256, 0);

		ck_assert_double_eq(r.recall, 1.0);
		ck_assert_double_eq(r.hit_rate, 1.0);
		ck_assert_uint_eq(r.n_scored, 448);
	}
	pred_trace_free(t);
}
END_TEST

START_TEST(freq_beats_popularity)
{
	struct pred_trace *t = token_trace(4000);
	struct pred_eval_result pop = eval(PRED_POP, t, CACHE_LRU, 16, 2);
	struct pred_eval_result fr = eval(PRED_FREQ, t, CACHE_LRU, 16, 2);

	ck_assert_msg(fr.recall > pop.recall + 0.4, "freq %.3f pop %.3f", fr.recall, pop.recall);
	ck_assert_msg(fr.hit_rate > pop.hit_rate, "freq %.3f pop %.3f", fr.hit_rate,
		      pop.hit_rate);
	/* without token ids freq is popularity exactly */
	for (size_t i = 0; i < t->n_tokens; i++)
		t->toks[i].token = -1;
	fr = eval(PRED_FREQ, t, CACHE_LRU, 16, 2);
	pop = eval(PRED_POP, t, CACHE_LRU, 16, 2);
	ck_assert_double_eq(fr.recall, pop.recall);
	pred_trace_free(t);
}
END_TEST

START_TEST(cepr_beats_popularity)
{
	struct pred_trace *t = path_trace(4000);
	struct pred_eval_result pop = eval(PRED_POP, t, CACHE_LRU, 24, 2);
	struct pred_eval_result ce = eval(PRED_CEPR, t, CACHE_LRU, 24, 2);
	struct pred_eval_opts o = {.policy = CACHE_LRU, .n_slots = 24, .train_frac = 0.5,
				   .predict_k = 2, .batch_table = 1};
	struct pred_eval_result bt;
	struct pred *p;

	ck_assert_msg(ce.recall > pop.recall + 0.4, "cepr %.3f pop %.3f", ce.recall, pop.recall);
	ck_assert_msg(ce.hit_rate > pop.hit_rate, "cepr %.3f pop %.3f", ce.hit_rate,
		      pop.hit_rate);
	/* a batch table only has the previous token's path, rolled forward */
	p = open_for(PRED_CEPR, t);
	ck_assert_int_eq(pred_eval_run(t, p, &o, &bt, err, sizeof(err)), 0);
	ck_assert_msg(bt.recall > pop.recall + 0.2 && bt.recall < ce.recall,
		      "table %.3f pop %.3f in-flight %.3f", bt.recall, pop.recall, ce.recall);
	pred_close(p);
	pred_trace_free(t);
}
END_TEST

/* Every layer's prediction for tokens of t, flattened. */
static int *all_predictions(struct pred *p, const struct pred_trace *t, int want, size_t *n)
{
	int *buf = malloc(t->n_tokens * t->n_layers * (want + 1) * sizeof(int));
	int *known = malloc(t->n_layers * t->top_k * sizeof(int));

	*n = 0;
	for (size_t i = 1; i < t->n_tokens; i++) {
		for (int j = 0; j < t->n_layers * t->top_k; j++)
			known[j] = -1;
		for (int l = 0; l < t->n_layers; l++) {
			struct pred_tok tk = {.token = t->toks[i].token, .index = (int64_t)i,
					      .cur = known, .prev = pred_trace_at(t, i - 1, 0)};
			int c = pred_predict_layer(p, &tk, l, want, buf + *n + 1);

			buf[*n] = c;
			*n += c + 1;
			memcpy(known + l * t->top_k, pred_trace_at(t, i, l), t->top_k * sizeof(int));
		}
	}
	free(known);
	return buf;
}

static void train_range(struct pred *p, const struct pred_trace *t, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		struct pred_tok tk = {.token = t->toks[i].token, .index = -1,
				      .cur = pred_trace_at(t, i, 0),
				      .prev = i ? pred_trace_at(t, i - 1, 0) : NULL};

		pred_observe(p, &tk);
	}
}

static void train(struct pred *p, const struct pred_trace *t)
{
	train_range(p, t, 0, t->n_tokens);
}

/* cepr keeps a row's logs until the next observe: predictions made between
 * two halves of training must not leak into those after the second, which
 * equal a predictor's that never predicted before. */
START_TEST(cepr_logs_follow_learning)
{
	struct pred_trace *t = path_trace(2000);
	struct pred *a = open_for(PRED_CEPR, t), *b = open_for(PRED_CEPR, t);
	size_t na, nb, half = t->n_tokens / 2;
	int *pa, *pb;

	train_range(a, t, 0, half);
	free(all_predictions(a, t, 5, &na));
	train_range(a, t, half, t->n_tokens);
	pa = all_predictions(a, t, 5, &na);
	train(b, t);
	pb = all_predictions(b, t, 5, &nb);
	ck_assert_uint_eq(na, nb);
	ck_assert_int_eq(memcmp(pa, pb, na * sizeof(int)), 0);
	free(pa);
	free(pb);
	pred_close(a);
	pred_close(b);
	pred_trace_free(t);
}
END_TEST

static void check_state_roundtrip(enum pred_kind kind, struct pred_trace *t)
{
	const char *path = tmp_path("state");
	struct pred *a = open_for(kind, t), *b = open_for(kind, t);
	int *pa, *pb;
	size_t na, nb;

	train(a, t);
	ck_assert_msg(pred_save(a, path, err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(pred_load(b, path, err, sizeof(err)) == 0, "%s", err);
	pa = all_predictions(a, t, 5, &na);
	pb = all_predictions(b, t, 5, &nb);
	ck_assert_uint_eq(na, nb);
	ck_assert_int_eq(memcmp(pa, pb, na * sizeof(int)), 0);
	/* the learned state is not trivial: it differs from a fresh one */
	pred_close(b);
	b = open_for(kind, t);
	free(pb);
	pb = all_predictions(b, t, 5, &nb);
	ck_assert(na != nb || memcmp(pa, pb, na * sizeof(int)) != 0);
	free(pa);
	free(pb);
	pred_close(a);
	pred_close(b);
	unlink(path);
}

START_TEST(state_roundtrip)
{
	struct pred_trace *t = token_trace(600);

	check_state_roundtrip(PRED_FREQ, t);
	check_state_roundtrip(PRED_POP, t);
	pred_trace_free(t);
	t = path_trace(600);
	check_state_roundtrip(PRED_CEPR, t);
	pred_trace_free(t);
}
END_TEST

static void flip_byte(const char *path, long off)
{
	FILE *f = fopen(path, "r+");
	int c;

	ck_assert_ptr_nonnull(f);
	if (off < 0) {
		fseek(f, 0, SEEK_END);
		off += ftell(f);
	}
	fseek(f, off, SEEK_SET);
	c = fgetc(f);
	fseek(f, off, SEEK_SET);
	fputc(c ^ 0x40, f);
	fclose(f);
}

START_TEST(state_corrupt_rejected)
{
	const char *path = tmp_path("cstate"), *copy = tmp_path("cstate2");
	struct pred_trace *t = path_trace(400);
	struct pred *a = open_for(PRED_CEPR, t), *b = open_for(PRED_CEPR, t);
	struct pred *f = open_for(PRED_FREQ, t);
	struct pred_opts o3 = {.cepr_m = 3};
	struct pred *m3;
	int before[8], after[8], nb, na;
	struct pred_tok tk = {.token = -1, .index = -1, .cur = pred_trace_at(t, 5, 0),
			      .prev = pred_trace_at(t, 4, 0)};
	char cmd[1200];

	train(a, t);
	train(b, t);                       /* b: learned, must survive bad loads */
	nb = pred_predict_layer(b, &tk, 3, 8, before);
	ck_assert_int_eq(pred_save(a, path, err, sizeof(err)), 0);
	snprintf(cmd, sizeof(cmd), "cp %s %s", path, copy);

	ck_assert_int_eq(system(cmd), 0);
	flip_byte(copy, 100);              /* a count inside the tables */
	ck_assert_int_eq(pred_load(b, copy, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "checksum"));
	ck_assert_int_eq(system(cmd), 0);
	flip_byte(copy, 0);                /* magic */
	ck_assert_int_eq(pred_load(b, copy, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not a moed predictor state"));
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(truncate(copy, 300), 0);
	ck_assert_int_eq(pred_load(b, copy, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(truncate(copy, 10), 0);
	ck_assert_int_eq(pred_load(b, copy, err, sizeof(err)), -EINVAL);
	/* a valid file of another kind or shape */
	ck_assert_int_eq(pred_load(f, path, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "state of cepr"));
	ck_assert_int_eq(pred_open(PRED_CEPR, t->n_layers, t->n_experts, t->top_k, &o3, &m3), 0);
	ck_assert_int_eq(pred_load(m3, path, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(pred_load(b, "/nonexistent/state", err, sizeof(err)), -ENOENT);

	na = pred_predict_layer(b, &tk, 3, 8, after);
	ck_assert_int_eq(na, nb);
	ck_assert_int_eq(memcmp(before, after, na * sizeof(int)), 0);
	pred_close(a);
	pred_close(b);
	pred_close(f);
	pred_close(m3);
	pred_trace_free(t);
	unlink(path);
	unlink(copy);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("predictor");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, trace_roundtrip);
	tcase_add_test(tc, trace_binary_errors);
	tcase_add_test(tc, jsonl_shapes);
	tcase_add_test(tc, jsonl_errors);
	tcase_add_test(tc, oracle_exact);
	tcase_add_test(tc, oracle_olmoe_trace);
	tcase_add_test(tc, freq_beats_popularity);
	tcase_add_test(tc, cepr_beats_popularity);
	tcase_add_test(tc, state_roundtrip);
	tcase_add_test(tc, cepr_logs_follow_learning);
	tcase_add_test(tc, state_corrupt_rejected);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return suite_run(suite());
}
