/* The evaluation of predictors and policies on traces (predictor/eval.c) and
 * the eval-predictor command (tests/predictor_fx.h: synthetic traces). */
#include "tests/predictor_fx.h"
#include "tests/suite_run.h"

/* ---- the evaluation ---- */

/* Runs cmd, which must exit 0 and print one JSON value. */
static json_t *run_json(const char *cmd)
{
	char out[4096];
	json_error_t je;
	FILE *f = popen(cmd, "r");
	size_t n;
	json_t *o;

	ck_assert_ptr_nonnull(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	ck_assert_int_eq(pclose(f), 0);
	out[n] = 0;
	o = json_loads(out, 0, &je);
	ck_assert_msg(o != NULL, "not JSON: %s", out);
	return o;
}

START_TEST(eval_accounting)
{
	struct pred_trace *t = path_trace(1001);
	struct pred_eval_result none_lru = eval(PRED_NONE, t, CACHE_LRU, 30, 0);
	struct pred_eval_result none_bel = eval(PRED_NONE, t, CACHE_BELADY, 30, 0);
	struct pred_eval_result pop = eval(PRED_POP, t, CACHE_LRU, 30, 0);

	/* split: ceil(0.5 * 1001) = 501 trained, 500 scored */
	ck_assert_uint_eq(none_lru.n_train, 501);
	ck_assert_uint_eq(none_lru.n_scored, 500);
	ck_assert_double_eq(none_lru.recall, 0);
	ck_assert(isnan(none_lru.precision));
	ck_assert(isnan(none_lru.bytes_per_token));
	ck_assert_uint_eq(none_lru.hits + none_lru.misses, 500 * 6 * 2);
	/* on-demand only: every load is a miss */
	ck_assert_uint_eq(none_lru.loads, none_lru.misses);
	/* Belady is optimal for demand paging */
	ck_assert_uint_le(none_bel.misses, none_lru.misses);
	ck_assert_int_eq(pop.predict_k, 5);              /* 30 slots / 6 layers */
	ck_assert_uint_eq(pop.predicted, 500 * 6 * 5);
	ck_assert_uint_eq(pop.truth, 500 * 6 * 2);
	ck_assert_double_eq_tol(pop.loads_per_token, (double)pop.loads / 500, 1e-12);
	pred_trace_free(t);
}
END_TEST

START_TEST(eval_batches_and_bytes)
{
	struct pred_trace *t = path_trace(600);
	struct pred_eval_opts o = {.policy = CACHE_LFU, .n_slots = 40, .train_frac = 0.25,
				   .expert_bytes = 3000};
	struct pred_eval_result r;
	struct pred *p;

	for (size_t i = 0; i < t->n_tokens; i++) {     /* batches of 3 sequences */
		t->toks[i].batch = i / 3;
		t->toks[i].seq = i % 3;
	}
	pred_trace_link(t);
	ck_assert_int_eq(t->toks[4].prev, 1);
	p = open_for(PRED_ORACLE, t);
	ck_assert_int_eq(pred_eval_run(t, p, &o, &r, err, sizeof(err)), 0);
	ck_assert_uint_eq(r.n_train, 150);             /* a batch boundary */
	ck_assert_double_eq(r.recall, 1.0);
	ck_assert_double_eq(r.hit_rate, 1.0);
	ck_assert_double_eq_tol(r.bytes_per_token, 3000.0 * r.loads / r.n_scored, 1e-9);
	o.train_frac = 0.999;                          /* leaves nothing to score */
	ck_assert_int_eq(pred_eval_run(t, p, &o, &r, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "no batch"));
	o.train_frac = 1.0;
	ck_assert_int_eq(pred_eval_run(t, p, &o, &r, err, sizeof(err)), -EINVAL);
	pred_close(p);
	pred_trace_free(t);
}
END_TEST

START_TEST(cli_json)
{
	const char *bin = getenv("MOED_BIN"), *path = tmp_path("cli.trace");
	struct pred_trace *t = path_trace(200);
	struct pred_trace_writer *w;
	char cmd[1024];
	json_t *o;

	ck_assert_ptr_nonnull(bin);
	ck_assert_int_eq(pred_trace_writer_open(path, 6, 32, 2, &w), 0);
	for (size_t i = 0; i < t->n_tokens; i++)
		for (int l = 0; l < 6; l++)
			ck_assert_int_eq(pred_trace_write(w, i, 0, l, (int)i, 5, pred_trace_at(t, i, l),
							  2), 0);
	ck_assert_int_eq(pred_trace_writer_close(w), 0);
	snprintf(cmd, sizeof(cmd), "%s eval-predictor --trace %s --predictor cepr --policy lru "
		 "--slots 24 --json", bin, path);
	o = run_json(cmd);
	ck_assert(json_is_real(json_object_get(o, "recall")));
	ck_assert(json_is_real(json_object_get(o, "precision")));
	ck_assert(json_is_real(json_object_get(o, "hit_rate")));
	ck_assert(json_is_real(json_object_get(o, "loads_per_token")));
	ck_assert(json_is_null(json_object_get(o, "bytes_per_token")));
	ck_assert_int_eq(json_integer_value(json_object_get(o, "scored_tokens")), 100);
	json_decref(o);
	/* --slots and --budget-mib together, or neither: usage error */
	snprintf(cmd, sizeof(cmd), "%s eval-predictor --trace %s --predictor cepr --policy lru "
		 ">/dev/null 2>&1", bin, path);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof(cmd), "%s eval-predictor --trace %s --predictor magic --policy lru "
		 "--slots 3 >/dev/null 2>&1", bin, path);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
	pred_trace_free(t);
	unlink(path);
}
END_TEST

/* With --model the expert size comes from config.json and the budget buys
 * cache_slots_for_budget slots (olmoe fixture: 2 x 8 experts, top-2,
 * 3 * 40 * 64 floats = 30720 bytes, 32 KiB slots). */
START_TEST(cli_model_bytes)
{
	const char *bin = getenv("MOED_BIN"), *fx = getenv("MOED_FIXTURES");
	const char *path = tmp_path("model.trace");
	struct pred_trace_writer *w;
	char cmd[2048];
	double bpt;
	json_t *o;

	ck_assert_ptr_nonnull(bin);
	ck_assert_ptr_nonnull(fx);
	ck_assert_int_eq(pred_trace_writer_open(path, 2, 8, 2, &w), 0);
	for (int i = 0; i < 100; i++)
		for (int l = 0; l < 2; l++) {
			int ex[2] = {(int)rnd(4), 4 + (int)rnd(4)};

			ck_assert_int_eq(pred_trace_write(w, i, 0, l, i, i % 7, ex, 2), 0);
		}
	ck_assert_int_eq(pred_trace_writer_close(w), 0);
	snprintf(cmd, sizeof(cmd), "%s eval-predictor --trace %s --predictor freq --policy fifo "
		 "--budget-mib 0.125 --model %s/olmoe_bf16 --json", bin, path, fx);
	o = run_json(cmd);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "slots")), 4);
	bpt = json_real_value(json_object_get(o, "bytes_per_token"));
	ck_assert_double_gt(bpt, 0);   /* JSON keeps 6 digits */
	ck_assert_double_eq_tol(bpt, 30720 * json_real_value(json_object_get(o, "loads_per_token")),
				bpt * 1e-5);
	json_decref(o);
	/* a model of another shape than the trace (every fixture is 2 x 8 top-2) */
	ck_assert_int_eq(pred_trace_writer_open(path, 2, 16, 2, &w), 0);
	for (int l = 0; l < 2; l++)
		ck_assert_int_eq(pred_trace_write(w, 0, 0, l, 0, 1, (int[]){1, 15}, 2), 0);
	ck_assert_int_eq(pred_trace_writer_close(w), 0);
	snprintf(cmd, sizeof(cmd), "%s eval-predictor --trace %s --predictor freq --policy fifo "
		 "--budget-mib 1 --model %s/olmoe_bf16 >/dev/null 2>&1", bin, path, fx);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 1);
	unlink(path);
}
END_TEST

static Suite *predictor_eval_suite(void)
{
	Suite *s = suite_create("predictor_eval");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, eval_accounting);
	tcase_add_test(tc, eval_batches_and_bytes);
	tcase_add_test(tc, cli_json);
	tcase_add_test(tc, cli_model_bytes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return suite_run(predictor_eval_suite());
}
