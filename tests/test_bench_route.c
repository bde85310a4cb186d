/* cuda_bench's hooks (bench/bench_route.c) and trace split (bench/bench_opts.c):
 * replayed routing reaches the engine (the right trace token per position,
 * weights from the router's probabilities), the `all` mode's pins and
 * refusals on a sim cache, the freq table's prefetch, the trace checks,
 * the split into disjoint parts and --prefetch-k's parsing. */
#include <check.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench_opts.c"
#include "bench/bench_route.c"
#include "loader/resident.h"
#include "tests/suite_run.h"

/* Trace token i, layer l: two distinct experts of 8, listed descending. */
static struct pred_trace *make_trace(int n)
{
	struct pred_trace *t;

	ck_assert_int_eq(pred_trace_new(2, 8, 2, (size_t)n, &t), 0);
	for (int i = 0; i < n; i++)
		for (int l = 0; l < 2; l++) {
			int *x = t->experts + ((size_t)i * 2 + l) * 2;
			x[0] = (i + 3 * l + 5) % 8;
			x[1] = (i + 3 * l) % 8;
			if (x[0] < x[1]) {
				int s = x[0];
				x[0] = x[1];
				x[1] = s;
			}
		}
	return t;
}

START_TEST(replay_reaches_engine)
{
	char dir[600], err[512];
	struct ld_model *m;
	struct ld_resident *res;
	struct eng *e;
	struct eng_seq *es;
	struct br_ctx r = {0};
	struct br_seq s = {.id = 0, .tbase = 3, .toff = 1, .tlen = 4};
	struct pred_trace *t = make_trace(10);
	int toks[6] = {5, 17, 42, 99, 3, 7}, rec[16 * 2 * 2];
	float logits[512];

	snprintf(dir, sizeof(dir), "%s/olmoe_bf16", getenv("MOED_FIXTURES"));
	ck_assert_msg(ld_model_open(dir, &m, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_le(m->cfg.vocab_size, 512);
	ck_assert_int_eq(br_trace_check(t, "t", m->cfg.n_moe_layers, m->cfg.n_experts,
					m->cfg.top_k, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_resident_open(m, &res), 0);
	struct ld_expert_src src = ld_resident_src(res);
	ck_assert_int_eq(eng_open(m, &src, 64, &e), 0);
	ck_assert_int_eq(br_init(&r, 2, 8, 2), 0);
	r.trace = t;
	r.record = 1;
	r.rec = rec;
	r.maxpos = 16;
	ck_assert_int_eq(br_seq_init(&r, &s), 0);
	br_set_hooks(&r, e);
	ck_assert_int_eq(eng_seq_new(e, &es), 0);
	eng_seq_set_user(es, &s);
	ck_assert_int_eq(eng_forward(e, es, toks, 6, logits), 0);
	for (int p = 0; p < 6; p++)
		for (int l = 0; l < 2; l++) {
			const int *want = pred_trace_at(t, 3 + (size_t)(1 + p) % 4, l);
			const int *got = br_rec_at(&r, 0, p, l);

			/* Ascending, as the engine wants them. */
			ck_assert_int_eq(got[0], want[1]);
			ck_assert_int_eq(got[1], want[0]);
		}
	eng_seq_free(es);
	br_seq_free(&s);
	br_fini(&r);
	eng_close(e);
	ld_resident_close(res);
	ld_model_close(m);
	pred_trace_free(t);
}
END_TEST

START_TEST(replay_weights)
{
	struct pred_trace *t = make_trace(4);
	struct br_ctx r = {.trace = t, .L = 2, .E = 8, .K = 2};
	struct br_seq s = {.tlen = 4};
	float probs[8] = {0.05f, 0.1f, 0.2f, 0.05f, 0.3f, 0.1f, 0.1f, 0.1f}, w[2];
	int ex[2] = {0, 1};

	/* Token 2, layer 1: experts 5 and 2 (listed 5, 2). */
	ck_assert_int_eq(override_route(&r, &s, 1, 2, 0, ex, w, 2, probs, 8), 1);
	ck_assert_int_eq(ex[0], 2);
	ck_assert_int_eq(ex[1], 5);
	ck_assert_float_eq_tol(w[0], 0.2f, 1e-7);
	ck_assert_float_eq_tol(w[1], 0.1f, 1e-7);
	r.norm_topk = 1;
	ck_assert_int_eq(override_route(&r, &s, 1, 2, 0, ex, w, 2, probs, 8), 1);
	ck_assert_float_eq_tol(w[0], 0.2f / 0.3f, 1e-6);
	ck_assert_float_eq_tol(w[1], 0.1f / 0.3f, 1e-6);
	s.tlen = 0;                /* no part: the router decides */
	ck_assert_int_eq(override_route(&r, &s, 1, 2, 0, ex, w, 2, probs, 8), 0);
	pred_trace_free(t);
}
END_TEST

static struct cache *sim(size_t slots)
{
	struct cache_opts o = {.n_layers = 2, .n_experts = 8, .expert_bytes = 1,
			       .n_slots = slots, .policy = CACHE_LRU};
	struct cache *c;

	ck_assert_int_eq(cache_open(&o, &c), 0);
	return c;
}

START_TEST(all_mode_pins)
{
	struct br_ctx r = {.L = 2, .E = 8, .K = 2, .mode = BR_ALL, .phase = BR_DECODE};

	r.ca = sim(10);
	before_moe(&r, 0, NULL, 0);            /* layer 1, all 8 */
	ck_assert_uint_eq(r.n_pf, 8);
	for (int x = 0; x < 8; x++)
		ck_assert(cache_resident(r.ca, 1, x));
	before_moe(&r, 1, NULL, 0);            /* wraps to layer 0: 2 slots free */
	ck_assert_uint_eq(r.n_pf, 10);
	ck_assert_uint_eq(r.n_pf_fail, 6);
	r.phase = BR_PREFILL;                  /* a prompt call does not wrap */
	before_moe(&r, 1, NULL, 0);
	ck_assert_uint_eq(r.n_pf + r.n_pf_fail, 16);
	cache_close(r.ca);
}
END_TEST

START_TEST(freq_table_prefetch)
{
	struct br_ctx r = {0};
	int cur[4] = {5, 6, 1, 2}, pt[3] = {7, 8, 9}, n = 3;
	const int *tp[1] = {pt};
	struct pred_tok tk = {.token = -1, .index = -1, .cur = cur};

	ck_assert_int_eq(br_init(&r, 2, 8, 2), 0);
	r.ca = sim(6);
	r.mode = BR_FREQ;
	r.phase = BR_PREFILL;
	r.want = 2;
	ck_assert_int_eq(pred_open(PRED_FREQ, 2, 8, 2, NULL, &r.p), 0);
	for (int i = 0; i < 5; i++)
		pred_observe(r.p, &tk);
	ck_assert_int_eq(br_call_begin(&r, tp, &n, 1), 0);
	ck_assert(r.have_table);
	ck_assert(cache_resident(r.ca, 0, 5) && cache_resident(r.ca, 0, 6));
	ck_assert(!cache_resident(r.ca, 1, 1));
	before_moe(&r, 0, NULL, 0);            /* table layers 0 and 1 */
	ck_assert(cache_resident(r.ca, 1, 1) && cache_resident(r.ca, 1, 2));
	br_call_end(&r);
	ck_assert(!r.have_table);
	pred_close(r.p);
	cache_close(r.ca);
	br_fini(&r);
}
END_TEST

START_TEST(trace_checks)
{
	struct pred_trace *t = make_trace(3);
	char err[256];

	ck_assert_int_eq(br_trace_check(t, "t", 2, 8, 2, err, sizeof(err)), 0);
	ck_assert_int_eq(br_trace_check(t, "t", 2, 16, 2, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "same shape"));
	t->experts[3] = t->experts[2];
	ck_assert_int_eq(br_trace_check(t, "t", 2, 8, 2, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "token 0 layer 1"));
	t->experts[3] = 8;
	ck_assert_int_eq(br_trace_check(t, "t", 2, 8, 2, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "out of range"));
	pred_trace_free(t);
}
END_TEST

START_TEST(trace_split)
{
	struct bench_opts o = {.w1 = 4, .s1 = 32, .w16 = 2, .s16 = 16, .tsteps = 48,
			       .pre_len = 256};
	size_t part[BO_NPART][2], end = 0;
	struct br_seq s;
	char err[256];
	int ts;

	ck_assert_int_eq(bo_plan_trace(&o, 897, "t", part, &ts, err, sizeof(err)), 0);
	ck_assert_int_eq(ts, 11);
	/* Consecutive, disjoint, inside the trace. */
	size_t n[BO_NPART] = {1, BO_BATCH, BO_BATCH, 1};
	for (int p = 0; p < BO_NPART; p++) {
		ck_assert_uint_eq(part[p][0], end);
		end += n[p] * part[p][1];
	}
	ck_assert_uint_eq(end, 897);
	ck_assert_uint_eq(part[BO_B1][1], 68);
	ck_assert_uint_eq(part[BO_B16][1], 26);
	bo_set_part(part, o.pre_len, &s, BO_B16, 15);
	ck_assert_uint_eq(s.tbase + s.toff + s.tlen, part[BO_TRAIN][0]);
	bo_set_part(part, o.pre_len, &s, BO_PRE, 1);
	ck_assert_uint_eq(s.toff, 256);
	bo_set_part(NULL, o.pre_len, &s, BO_PRE, 1);
	ck_assert_uint_eq(s.tlen, 0);
	o.w1 = 8, o.s1 = 64, o.w16 = 4, o.s16 = 32;
	ck_assert_int_eq(bo_plan_trace(&o, 897, "t", part, &ts, err, sizeof(err)), -ERANGE);
}
END_TEST

/* cuda_bench with option opt set to v (v NULL: without it). */
static int parse_opt(struct bench_opts *o, const char *opt, const char *v)
{
	char *with[] = {"cuda_bench", (char *)opt, (char *)v, "m", "p", NULL};
	char *without[] = {"cuda_bench", "m", "p", NULL};

	optind = 0;   /* getopt from the start again */
	return v ? bo_parse(5, with, o) : bo_parse(3, without, o);
}

/* --prefetch-k: a count of at least 1, else the usage error; absent, 0
 * (top_k). */
static int parse_k(struct bench_opts *o, const char *k)
{
	return parse_opt(o, "--prefetch-k", k);
}

START_TEST(prefetch_k_option)
{
	struct bench_opts o;

	ck_assert_int_eq(parse_k(&o, NULL), 0);
	ck_assert_int_eq(o.prefetch_k, 0);
	ck_assert_int_eq(parse_k(&o, "4"), 0);
	ck_assert_int_eq(o.prefetch_k, 4);
	ck_assert_int_eq(parse_k(&o, "0"), -EINVAL);
	ck_assert_int_eq(parse_k(&o, "-2"), -EINVAL);
	ck_assert_int_eq(parse_k(&o, "many"), -EINVAL);
}
END_TEST

/* --scan 0|1 (default 1) and --prefill-calls N >= 1 (default 1); anything
 * else is the usage error. */
START_TEST(scan_and_prefill_calls_options)
{
	struct bench_opts o;

	ck_assert_int_eq(parse_opt(&o, "--scan", NULL), 0);
	ck_assert(o.scan);
	ck_assert_int_eq(o.pre_calls, 1);
	ck_assert_int_eq(parse_opt(&o, "--scan", "0"), 0);
	ck_assert(!o.scan);
	ck_assert_int_eq(parse_opt(&o, "--scan", "2"), -EINVAL);
	ck_assert_int_eq(parse_opt(&o, "--scan", "yes"), -EINVAL);
	ck_assert_int_eq(parse_opt(&o, "--prefill-calls", "3"), 0);
	ck_assert_int_eq(o.pre_calls, 3);
	ck_assert_int_eq(parse_opt(&o, "--prefill-calls", "0"), -EINVAL);
	ck_assert_int_eq(parse_opt(&o, "--prefill-calls", "x"), -EINVAL);
}
END_TEST

/* --host-threads N, 0..256 (default 0); anything else is the usage error. */
START_TEST(host_threads_option)
{
	struct bench_opts o;

	ck_assert_int_eq(parse_opt(&o, "--host-threads", NULL), 0);
	ck_assert_int_eq(o.host_threads, 0);
	ck_assert_int_eq(parse_opt(&o, "--host-threads", "12"), 0);
	ck_assert_int_eq(o.host_threads, 12);
	ck_assert_int_eq(parse_opt(&o, "--host-threads", "-1"), -EINVAL);
	ck_assert_int_eq(parse_opt(&o, "--host-threads", "257"), -EINVAL);
	ck_assert_int_eq(parse_opt(&o, "--host-threads", "many"), -EINVAL);
	ck_assert_int_eq(parse_opt(&o, "--host-threads", ""), -EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bench_route");
	TCase *tc = tcase_create("hooks");

	tcase_add_test(tc, replay_reaches_engine);
	tcase_add_test(tc, replay_weights);
	tcase_add_test(tc, all_mode_pins);
	tcase_add_test(tc, freq_table_prefetch);
	tcase_add_test(tc, trace_checks);
	tcase_add_test(tc, trace_split);
	tcase_add_test(tc, prefetch_k_option);
	tcase_add_test(tc, scan_and_prefill_calls_options);
	tcase_add_test(tc, host_threads_option);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
