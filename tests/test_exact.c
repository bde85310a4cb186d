/* Exactness, the cache's invariant: the engine's output through the expert
 * cache (pack store, host backend) is bit-identical to the output with every
 * expert resident, at every budget and policy, on every fixture. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/sample.h"
#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/resident.h"
#include "loader/store.h"
#include "tests/refs.h"
#include "tests/suite_run.h"

#define STEPS 8

/* Logits of the prompt and STEPS greedy steps, [STEPS + 1][vocab]. */
static float *run(const struct ld_model *m, const struct ld_expert_src *src,
		  const struct ref_case *rc)
{
	int V = m->cfg.vocab_size, next;
	float *out = calloc((size_t)(STEPS + 1) * V, sizeof(float));
	struct eng *e;
	struct eng_seq *s;

	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(eng_open(m, src, rc->n_prompt + STEPS + 1, &e), 0);
	ck_assert_int_eq(eng_seq_new(e, &s), 0);
	ck_assert_int_eq(eng_forward(e, s, rc->prompt, rc->n_prompt, out), 0);
	for (int t = 1; t <= STEPS; t++) {
		next = eng_argmax(out + (size_t)(t - 1) * V, V);
		ck_assert_int_eq(eng_forward(e, s, &next, 1, out + (size_t)t * V), 0);
	}
	eng_seq_free(s);
	eng_close(e);
	return out;
}

START_TEST(test_exact_every_budget)
{
	const char *name = ref_fixture_names[_i];
	struct ref_fixture f;
	struct ld_model *m;
	struct ld_resident *res;
	struct ld_store *st;
	struct ld_expert_src src;
	char err[512], dir[] = "/tmp/moed-exact-XXXXXX", pack[600];
	float *ref, *got;
	int n_all, V;

	ref_load(name, &f);
	ck_assert_int_eq(ld_model_open(f.dir, &m, err, sizeof(err)), 0);
	V = m->cfg.vocab_size;
	n_all = m->cfg.n_moe_layers * m->cfg.n_experts;
	ck_assert_int_eq(ld_resident_open(m, &res), 0);
	src = ld_resident_src(res);
	ref = run(m, &src, &f.cases[3]);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(pack, sizeof(pack), "%s/moed.pack", dir);
	ck_assert_msg(ld_store_ensure(m, pack, &st, err, sizeof(err)) == 0, "%s", err);
	int budgets[] = {1, 2, 3, n_all / 2, n_all - 1, n_all};
	for (int p = CACHE_FIFO; p <= CACHE_LFU; p++)
		for (size_t b = 0; b < sizeof(budgets) / sizeof(budgets[0]); b++) {
			struct ld_backend *be;
			struct cache *c;
			struct cache_stats cs;
			struct cache_opts o = {
				.n_layers = m->cfg.n_moe_layers, .n_experts = m->cfg.n_experts,
				.expert_bytes = ld_store_info(st)->expert_bytes,
				.n_slots = (size_t)budgets[b], .policy = (enum cache_policy)p,
				.store = st,
			};

			ck_assert_int_eq(ld_backend_host_open(&be, err, sizeof(err)), 0);
			o.backend = be;
			ck_assert_int_eq(cache_open(&o, &c), 0);
			src = cache_expert_src(c);
			got = run(m, &src, &f.cases[3]);
			ck_assert_msg(!memcmp(got, ref, (size_t)(STEPS + 1) * V * sizeof(float)),
				      "%s: policy %s, %d slots: output differs from all-resident",
				      name, cache_policy_name((enum cache_policy)p), budgets[b]);
			cache_get_stats(c, -1, &cs);
			if (budgets[b] < n_all / 2)
				ck_assert_uint_gt(cs.evictions, 0);  /* the cache really worked */
			free(got);
			cache_close(c);
			ld_backend_close(be);
		}
	ld_store_close(st);
	unlink(pack);
	rmdir(dir);
	free(ref);
	ld_resident_close(res);
	ld_model_close(m);
	ref_free(&f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("exact");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_exact_every_budget, 0, ref_n_fixtures);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
