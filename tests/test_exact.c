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

/* A fixture's model with its experts packed in a temporary directory. */
struct packed {
	struct ref_fixture f;
	struct ld_model *m;
	struct ld_store *st;
	char dir[32], pack[64];
};

static void packed_open(const char *name, struct packed *p)
{
	char err[512];

	ref_load(name, &p->f);
	ck_assert_int_eq(ld_model_open(p->f.dir, &p->m, err, sizeof(err)), 0);
	snprintf(p->dir, sizeof(p->dir), "/tmp/moed-exact-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(p->dir));
	snprintf(p->pack, sizeof(p->pack), "%s/moed.pack", p->dir);
	ck_assert_msg(ld_store_ensure(p->m, p->pack, &p->st, err, sizeof(err)) == 0, "%s", err);
}

static void packed_close(struct packed *p)
{
	ld_store_close(p->st);
	unlink(p->pack);
	rmdir(p->dir);
	ld_model_close(p->m);
	ref_free(&p->f);
}

/* A host-backend cache of n_slots over st. */
static void open_cache(const struct ld_model *m, struct ld_store *st, int n_slots,
		       enum cache_policy p, bool scan, struct ld_backend **be, struct cache **c)
{
	char err[512];
	struct cache_opts o = {
		.n_layers = m->cfg.n_moe_layers, .n_experts = m->cfg.n_experts,
		.expert_bytes = ld_store_info(st)->expert_bytes, .n_slots = (size_t)n_slots,
		.policy = p, .store = st, .scan_resistant = scan,
	};

	ck_assert_int_eq(ld_backend_host_open(be, err, sizeof(err)), 0);
	o.backend = *be;
	ck_assert_int_eq(cache_open(&o, c), 0);
}

START_TEST(test_exact_every_budget)
{
	const char *name = ref_fixture_names[_i];
	struct packed pk;
	struct ld_resident *res;
	struct ld_expert_src src;
	float *ref, *got;

	packed_open(name, &pk);
	struct ld_model *m = pk.m;
	int V = m->cfg.vocab_size, n_all = m->cfg.n_moe_layers * m->cfg.n_experts;
	ck_assert_int_eq(ld_resident_open(m, &res), 0);
	src = ld_resident_src(res);
	ref = run(m, &src, &pk.f.cases[3]);
	int budgets[] = {1, 2, 3, n_all / 2, n_all - 1, n_all};
	for (int p = CACHE_FIFO; p <= CACHE_LFUDA; p++)
		for (size_t b = 0; b < sizeof(budgets) / sizeof(budgets[0]); b++)
			for (int scan = 0; scan <= 1; scan++) {
				struct ld_backend *be;
				struct cache *c;
				struct cache_stats cs;

				open_cache(m, pk.st, budgets[b], (enum cache_policy)p, scan, &be, &c);
				src = cache_expert_src(c);
				got = run(m, &src, &pk.f.cases[3]);
				ck_assert_msg(!memcmp(got, ref,
						      (size_t)(STEPS + 1) * V * sizeof(float)),
					      "%s: policy %s, %d slots, scan_resistant %d: output "
					      "differs from all-resident", name,
					      cache_policy_name((enum cache_policy)p), budgets[b], scan);
				cache_get_stats(c, -1, &cs);
				if (budgets[b] < n_all / 2)
					ck_assert_uint_gt(cs.evictions, 0);  /* the cache worked */
				free(got);
				cache_close(c);
				ld_backend_close(be);
			}
	free(ref);
	ld_resident_close(res);
	packed_close(&pk);
}
END_TEST

/* The fixture's longest prompt twice (two sequences) through half the
 * experts' slots, LRU: with scan_resistant the engine's prompt layers leave
 * the first prompt's first loads for the second; without, each layer's loads
 * evict the earliest and the second prompt misses more.  The same logits. */
START_TEST(test_scan_second_prompt)
{
	struct packed pk;
	uint64_t misses[2], hits[2];
	float *out[2];

	packed_open(ref_fixture_names[_i], &pk);
	const struct ref_case *rc = &pk.f.cases[3];
	struct ld_model *m = pk.m;
	ck_assert_int_gt(rc->n_prompt, CACHE_SCAN_ROWS);
	int V = m->cfg.vocab_size, slots = m->cfg.n_moe_layers * m->cfg.n_experts / 2;
	for (int scan = 0; scan <= 1; scan++) {
		struct ld_backend *be;
		struct cache *c;
		struct cache_stats cs;
		struct eng *e;
		struct eng_seq *s[2];

		open_cache(m, pk.st, slots, CACHE_LRU, scan, &be, &c);
		struct ld_expert_src src = cache_expert_src(c);
		ck_assert_int_eq(eng_open(m, &src, rc->n_prompt + 1, &e), 0);
		out[scan] = calloc((size_t)V, sizeof(float));
		ck_assert_ptr_nonnull(out[scan]);
		for (int i = 0; i < 2; i++) {
			ck_assert_int_eq(eng_seq_new(e, &s[i]), 0);
			if (i)
				cache_reset_stats(c);
			ck_assert_int_eq(eng_forward(e, s[i], rc->prompt, rc->n_prompt, out[scan]),
					 0);
		}
		cache_get_stats(c, -1, &cs);
		misses[scan] = cs.misses, hits[scan] = cs.hits;
		eng_seq_free(s[0]);
		eng_seq_free(s[1]);
		eng_close(e);
		cache_close(c);
		ld_backend_close(be);
	}
	ck_assert_msg(misses[1] < misses[0] && hits[1] > hits[0],
		      "%s: second prompt's misses %llu (hits %llu) with scan_resistant, %llu "
		      "(%llu) without", ref_fixture_names[_i], (unsigned long long)misses[1],
		      (unsigned long long)hits[1], (unsigned long long)misses[0],
		      (unsigned long long)hits[0]);
	ck_assert(!memcmp(out[0], out[1], (size_t)V * sizeof(float)));
	free(out[0]);
	free(out[1]);
	packed_close(&pk);
}
END_TEST

/* An expert source over the resident table that records what the engine
 * says about prompt rows. */
struct rec_src {
	struct ld_expert_src in;
	int last, calls;
};

static int rec_acquire(void *ctx, int layer, int expert, const float **w)
{
	struct rec_src *r = ctx;

	return r->in.acquire(r->in.ctx, layer, expert, w);
}

static void rec_release(void *ctx, int layer, int expert)
{
	struct rec_src *r = ctx;

	if (r->in.release)
		r->in.release(r->in.ctx, layer, expert);
}

static void rec_prompt_rows(void *ctx, int n, int chunks)
{
	struct rec_src *r = ctx;

	ck_assert_int_eq(chunks, 1);   /* on the CPU a call is one chunk */
	r->last = n;
	r->calls++;
}

/* The engine tells the source each call's prompt rows: a prompt's, not a
 * decode step's single rows however many sequences, and in a mixed call
 * only the prompt's. */
START_TEST(test_prompt_rows_hint)
{
	struct ref_fixture f;
	struct ld_model *m;
	struct ld_resident *res;
	struct rec_src r = {0};
	struct eng *e;
	struct eng_seq *s[20];
	char err[512];
	int one[20], tok[20], five[5] = {1, 2, 3, 4, 5};
	const int *tp[20];

	ref_load(ref_fixture_names[0], &f);
	ck_assert_int_eq(ld_model_open(f.dir, &m, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_resident_open(m, &res), 0);
	r.in = ld_resident_src(res);
	struct ld_expert_src src = {.acquire = rec_acquire, .release = rec_release,
				    .prompt_rows = rec_prompt_rows, .ctx = &r};
	ck_assert_int_eq(eng_open(m, &src, f.cases[3].n_prompt + 8, &e), 0);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(eng_seq_new(e, &s[i]), 0);
		one[i] = 1, tok[i] = i + 1, tp[i] = &tok[i];
	}
	ck_assert_int_eq(eng_forward(e, s[0], f.cases[3].prompt, f.cases[3].n_prompt, NULL), 0);
	ck_assert_int_eq(r.last, f.cases[3].n_prompt);
	ck_assert_int_eq(eng_batch(e, s, tp, one, 20, NULL), 0);
	ck_assert_int_eq(r.last, 0);
	tp[1] = five, one[1] = 5;
	ck_assert_int_eq(eng_batch(e, s, tp, one, 3, NULL), 0);
	ck_assert_int_eq(r.last, 5);
	ck_assert_int_eq(r.calls, 3);
	for (int i = 0; i < 20; i++)
		eng_seq_free(s[i]);
	eng_close(e);
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
	tcase_add_loop_test(tc, test_scan_second_prompt, 0, ref_n_fixtures);
	tcase_add_test(tc, test_prompt_rows_hint);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
