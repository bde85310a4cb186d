/* The CPU engine against HF transformers' reference outputs: last-position
 * logits, greedy continuations and router choices on every fixture. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/sample.h"
#include "loader/resident.h"
#include "tests/refs.h"
#include "tests/suite_run.h"

/* Router choices recorded by the on_route hook, [layer][pos][k]. */
struct routes {
	int *ids;
	int n_pos, k;
};

static void on_route(void *ctx, void *seq_user, int layer, int pos, int token,
		     const int *experts, const float *w, int k)
{
	(void)seq_user;
	struct routes *r = ctx;

	(void)token;
	(void)w;
	if (pos < r->n_pos)
		memcpy(r->ids + ((size_t)layer * r->n_pos + pos) * k, experts,
		       (size_t)k * sizeof(int));
}

struct world {
	struct ld_model *m;
	struct ld_resident *res;
	struct eng *e;
};

static void open_world(const char *dir, struct world *w)
{
	char err[512];
	struct ld_expert_src src;
	int rv = ld_model_open(dir, &w->m, err, sizeof(err));

	ck_assert_msg(rv == 0, "ld_model_open: %s", err);
	ck_assert_int_eq(ld_resident_open(w->m, &w->res), 0);
	src = ld_resident_src(w->res);
	ck_assert_int_eq(eng_open(w->m, &src, 128, &w->e), 0);
}

static void close_world(struct world *w)
{
	eng_close(w->e);
	ld_resident_close(w->res);
	ld_model_close(w->m);
}

/* Largest |a-b| relative to the largest |ref|, and largest plain |a-b|. */
static void diff(const float *a, const float *ref, int n, double *rel, double *abs_)
{
	double mx = 0, mref = 0;

	for (int i = 0; i < n; i++) {
		mx = fmax(mx, fabs((double)a[i] - ref[i]));
		mref = fmax(mref, fabs((double)ref[i]));
	}
	*rel = mx / mref;
	*abs_ = mx;
}

static void check_case(struct world *w, const char *name, struct ref_case *rc)
{
	const struct ld_config *c = &w->m->cfg;
	struct eng_seq *s;
	float *logits = calloc((size_t)c->vocab_size, sizeof(float));
	struct routes r = {.n_pos = rc->n_prompt, .k = c->top_k};
	struct eng_hooks h = {.on_route = on_route, .ctx = &r};
	double rel, ab;

	ck_assert_int_eq(rc->n_logits, c->vocab_size);
	ck_assert_int_eq(rc->n_layers, c->n_moe_layers);
	r.ids = calloc((size_t)(c->n_moe_layers * rc->n_prompt * c->top_k), sizeof(int));
	eng_set_hooks(w->e, &h);
	ck_assert_int_eq(eng_seq_new(w->e, &s), 0);
	ck_assert_int_eq(eng_forward(w->e, s, rc->prompt, rc->n_prompt, logits), 0);
	eng_set_hooks(w->e, NULL);
	diff(logits, rc->logits, c->vocab_size, &rel, &ab);
	printf("%s prompt %d: max |dlogit| %.3g (relative %.3g)\n", name,
	       rc->n_prompt, ab, rel);
	if (ref_is_bf16(name))
		ck_assert_msg(ab <= 2e-2, "%s: |dlogit| %g > 2e-2", name, ab);
	else
		ck_assert_msg(rel <= 1e-4, "%s: relative dlogit %g > 1e-4", name, rel);
	for (int i = 0; i < c->n_moe_layers * rc->n_prompt * c->top_k; i++)
		ck_assert_msg(r.ids[i] == rc->routes[i],
			      "%s prompt %d: route differs at layer %d pos %d",
			      name, rc->n_prompt, i / (rc->n_prompt * c->top_k),
			      (i / c->top_k) % rc->n_prompt);
	for (int t = 0; t < rc->n_greedy; t++) {
		int next = eng_argmax(logits, c->vocab_size);

		ck_assert_msg(next == rc->greedy[t], "%s prompt %d: greedy step %d: %d != %d",
			      name, rc->n_prompt, t, next, rc->greedy[t]);
		ck_assert_int_eq(eng_forward(w->e, s, &next, 1, logits), 0);
	}
	eng_seq_free(s);
	free(r.ids);
	free(logits);
}

START_TEST(test_fixture)
{
	const char *name = ref_fixture_names[_i];
	struct ref_fixture f;
	struct world w;

	ref_load(name, &f);
	ck_assert_int_ge(f.n_cases, 4);
	open_world(f.dir, &w);
	for (int i = 0; i < f.n_cases; i++)
		check_case(&w, name, &f.cases[i]);
	close_world(&w);
	ref_free(&f);
}
END_TEST

/* Prefill in one call equals feeding the same tokens one at a time. */
START_TEST(test_prefill_equals_decode)
{
	struct ref_fixture f;
	struct world w;
	struct eng_seq *a, *b;
	float la[160], lb[160];

	ref_load("mixtral_f32", &f);
	open_world(f.dir, &w);
	struct ref_case *rc = &f.cases[2];
	ck_assert_int_eq(eng_seq_new(w.e, &a), 0);
	ck_assert_int_eq(eng_seq_new(w.e, &b), 0);
	ck_assert_int_eq(eng_forward(w.e, a, rc->prompt, rc->n_prompt, la), 0);
	for (int i = 0; i < rc->n_prompt; i++)
		ck_assert_int_eq(eng_forward(w.e, b, rc->prompt + i, 1, lb), 0);
	for (int i = 0; i < 160; i++)
		ck_assert_float_eq_tol(la[i], lb[i], 1e-5);
	ck_assert_int_eq(eng_seq_len(a), rc->n_prompt);
	eng_seq_free(a);
	eng_seq_free(b);
	close_world(&w);
	ref_free(&f);
}
END_TEST

/* A batched decode step over several sequences gives each sequence exactly
 * what a step of its own gives. */
START_TEST(test_step_equals_forward)
{
	struct ref_fixture f;
	struct world w;
	struct eng_seq *a[4], *b[4];
	float la[4 * 160], lb[160];
	int next[4];

	ref_load("qwen3moe_f32_sharded", &f);
	open_world(f.dir, &w);
	for (int i = 0; i < 4; i++) {
		struct ref_case *rc = &f.cases[i];

		ck_assert_int_eq(eng_seq_new(w.e, &a[i]), 0);
		ck_assert_int_eq(eng_seq_new(w.e, &b[i]), 0);
		ck_assert_int_eq(eng_forward(w.e, a[i], rc->prompt, rc->n_prompt, lb), 0);
		ck_assert_int_eq(eng_forward(w.e, b[i], rc->prompt, rc->n_prompt, lb), 0);
		next[i] = rc->greedy[0];
	}
	/* Steps into the engine's own rows (eng_logits_buffer), forwards into
	 * the test's. */
	float *eb = eng_logits_buffer(w.e);
	ck_assert_ptr_nonnull(eb);
	for (int step = 0; step < 3; step++) {
		ck_assert_int_eq(eng_step(w.e, a, next, 4, eb), 0);
		memcpy(la, eb, sizeof(la));
		for (int i = 0; i < 4; i++) {
			ck_assert_int_eq(eng_forward(w.e, b[i], &next[i], 1, lb), 0);
			for (int v = 0; v < 160; v++)
				ck_assert_float_eq_tol(la[i * 160 + v], lb[v], 1e-5);
			ck_assert_int_eq(eng_argmax(lb, 160), f.cases[i].greedy[step + 1]);
			next[i] = eng_argmax(lb, 160);
		}
	}
	/* The same sequence twice in one step is refused. */
	eng_seq_free(a[1]);
	a[1] = a[0];
	ck_assert_int_lt(eng_step(w.e, a, next, 2, la), 0);
	for (int i = 0; i < 4; i++) {
		if (i != 1)
			eng_seq_free(a[i]);
		eng_seq_free(b[i]);
	}
	close_world(&w);
	ref_free(&f);
}
END_TEST

/* eng_greedy's step_done record: each step's tokens, in order. */
struct steps_seen {
	int n, calls, tok[8][4];
};

static void step_done(void *ctx, int step, const int *next)
{
	struct steps_seen *s = ctx;

	ck_assert_int_eq(step, s->calls);
	memcpy(s->tok[s->calls++], next, (size_t)s->n * sizeof(int));
}

/* Greedy decode of two sequences gives the reference's greedy tokens, step
 * by step, and advances each sequence by the steps; a run past a
 * sequence's capacity or with a token outside the vocabulary is refused
 * before any step. */
START_TEST(test_greedy)
{
	struct ref_fixture f;
	struct world w;
	struct eng_seq *s[2];
	struct steps_seen seen = {.n = 2};
	float lb[160];
	int tok[2], out[6 * 2], bad[2] = {0, 160};

	ref_load("qwen3moe_f32_sharded", &f);
	open_world(f.dir, &w);
	for (int i = 0; i < 2; i++) {
		struct ref_case *rc = &f.cases[i];

		ck_assert_int_eq(eng_seq_new_cap(w.e, rc->n_prompt + 6, &s[i]), 0);
		ck_assert_int_eq(eng_forward(w.e, s[i], rc->prompt, rc->n_prompt, lb), 0);
		tok[i] = rc->greedy[0];
	}
	ck_assert_int_eq(eng_greedy(w.e, s, 2, tok, 7, out, NULL, NULL), -ERANGE);
	ck_assert_int_eq(eng_greedy(w.e, s, 2, bad, 1, out, NULL, NULL), -EINVAL);
	ck_assert_int_eq(eng_greedy(w.e, s, 0, tok, 1, out, NULL, NULL), -EINVAL);
	ck_assert_int_eq(eng_greedy(w.e, s, 2, tok, 0, out, NULL, NULL), -EINVAL);
	ck_assert_int_eq(eng_greedy(w.e, s, 2, tok, 6, out, step_done, &seen), 0);
	ck_assert_int_eq(seen.calls, 6);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(eng_seq_len(s[i]), f.cases[i].n_prompt + 6);
		for (int st = 0; st < 6; st++) {
			ck_assert_int_eq(out[st * 2 + i], f.cases[i].greedy[st + 1]);
			ck_assert_int_eq(seen.tok[st][i], out[st * 2 + i]);
		}
		eng_seq_free(s[i]);
	}
	close_world(&w);
	ref_free(&f);
}
END_TEST

/* A prompt longer than a chunk (eng_max_batch() rows), alone and batched
 * with another, gives what feeding it in pieces gives. */
START_TEST(test_long_prompt_chunks)
{
	struct ref_fixture f;
	struct ld_model *m;
	struct ld_resident *res;
	struct ld_expert_src src;
	struct eng *e;
	struct eng_seq *a, *b, *c, *seqs[2];
	enum { L = 600 };
	static int toks[L];
	int other[5] = {1, 2, 3, 4, 5}, nt[2] = {L, 5};
	const int *tp[2] = {toks, other};
	float la[2 * 160], lb[160], lc[160];
	char err[256];

	ck_assert_int_lt(eng_max_batch(), L);
	for (int i = 0; i < L; i++)
		toks[i] = (i * 37 + 11) % 160;
	ref_load("mixtral_f32", &f);
	ck_assert_int_eq(ld_model_open(f.dir, &m, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_resident_open(m, &res), 0);
	src = ld_resident_src(res);
	ck_assert_int_eq(eng_open(m, &src, L, &e), 0);
	ck_assert_int_eq(eng_seq_new(e, &a), 0);
	ck_assert_int_eq(eng_seq_new(e, &b), 0);
	ck_assert_int_eq(eng_seq_new(e, &c), 0);
	seqs[0] = a;
	seqs[1] = c;
	ck_assert_int_eq(eng_batch(e, seqs, tp, nt, 2, la), 0);
	ck_assert_int_eq(eng_seq_len(a), L);
	ck_assert_int_eq(eng_seq_len(c), 5);
	ck_assert_int_eq(eng_forward(e, b, toks, 100, lb), 0);
	ck_assert_int_eq(eng_forward(e, b, toks + 100, L - 100, lb), 0);
	for (int v = 0; v < 160; v++)
		ck_assert_float_eq_tol(la[v], lb[v], 1e-4);
	eng_seq_reset(c);
	ck_assert_int_eq(eng_forward(e, c, other, 5, lc), 0);
	for (int v = 0; v < 160; v++)
		ck_assert_float_eq_tol(la[160 + v], lc[v], 1e-4);
	eng_seq_free(a);
	eng_seq_free(b);
	eng_seq_free(c);
	eng_close(e);
	ld_resident_close(res);
	ld_model_close(m);
	ref_free(&f);
}
END_TEST

START_TEST(test_bad_input)
{
	struct ref_fixture f;
	struct world w;
	struct eng_seq *s;
	float l[160];
	int bad = 160, neg = -1, ok[200] = {0};

	ref_load("mixtral_f32", &f);
	open_world(f.dir, &w);
	ck_assert_int_eq(eng_seq_new(w.e, &s), 0);
	ck_assert_int_lt(eng_forward(w.e, s, &bad, 1, l), 0);
	ck_assert_int_lt(eng_forward(w.e, s, &neg, 1, l), 0);
	ck_assert_int_lt(eng_forward(w.e, s, ok, 0, l), 0);
	ck_assert_int_lt(eng_forward(w.e, s, ok, 129, l), 0); /* max_ctx 128 */
	ck_assert_int_eq(eng_seq_len(s), 0);
	eng_seq_free(s);
	close_world(&w);
	ref_free(&f);
}
END_TEST

START_TEST(test_sampling)
{
	float logits[8] = {0, 1, 2, 3, 4, 5, 6, 7}, scratch[24];
	struct eng_rng a, b;
	int seen[8] = {0};

	ck_assert_int_eq(eng_sample(logits, 8, 0, 1, NULL, scratch), 7);
	eng_rng_seed(&a, 42);
	eng_rng_seed(&b, 42);
	for (int i = 0; i < 200; i++) {
		int x = eng_sample(logits, 8, 1.0, 1.0, &a, scratch);

		/* The argmax given (eng_row_argmax's) draws the same. */
		ck_assert_int_eq(x, eng_sample_best(logits, 8, 7, 1.0, 1.0, &b, scratch));
		seen[x]++;
	}
	ck_assert_int_gt(seen[6], 0);  /* temperature 1 does sample */
	ck_assert_int_gt(seen[7], seen[3]);
	/* top_p small enough keeps only the best token. */
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(eng_sample(logits, 8, 1.0, 0.1, &a, scratch), 7);
}
END_TEST

/* The nucleus as eng_sample drew it when it sorted the whole vocabulary:
 * the reference the top buckets must match draw for draw.  Entries carry
 * their id; probability down, id up (NaNs: qsort's order, whatever). */
struct pe {
	float p;
	int id;
};

static int pe_order(const void *a, const void *b)
{
	const struct pe *x = a, *y = b;

	return x->p != y->p ? (x->p > y->p ? -1 : 1) : x->id - y->id;
}

static int ref_sample(const float *logits, int n, double temperature, double top_p,
		      struct eng_rng *r, struct pe *e)
{
	int best = eng_argmax(logits, n), keep = 0;
	double total = 0, acc = 0, u;

	for (int i = 0; i < n; i++) {
		e[i] = (struct pe){expf((float)((logits[i] - logits[best]) / temperature)), i};
		total += e[i].p;
	}
	for (int i = 0; i < n; i++)
		e[i].p = (float)(e[i].p / total);
	qsort(e, (size_t)n, sizeof(*e), pe_order);
	while (keep < n && acc < top_p)
		acc += e[keep++].p;
	u = eng_rng_uniform(r) * acc;
	for (int i = 0; i < keep; i++)
		if ((u -= e[i].p) < 0)
			return e[i].id;
	return e[keep - 1].id;
}

/* Top-p sampling against the full sort: vocabularies of 300 (many draws,
 * so that draws land on the nucleus' last entries) and of OLMoE's 50304;
 * peaked and flat logits, ties, -inf, a NaN, top_p from tiny to nearly 1. */
static void nucleus_case(float *l, int n, int draws, float scale, bool nan, unsigned *r,
			 float *s1, struct pe *s2)
{
	static const double tps[] = {0.05, 0.5, 0.9, 0.99, 0.9999999};

	for (int i = 0; i < n; i++) {
		float v = 0;

		for (int k = 0; k < 3; k++) {
			*r = *r * 1664525u + 1013904223u;
			v += (float)(*r >> 8) / (float)(1u << 24) - 0.5f;
		}
		l[i] = v * scale;
	}
	l[11] = l[12] = l[13];          /* ties go to the lower id */
	l[20] = -INFINITY;
	if (nan)
		l[30] = NAN;
	for (size_t t = 0; t < sizeof(tps) / sizeof(tps[0]); t++)
		for (int k = 0; k < 2; k++) {
			double temp = k ? 1.3 : 0.7;
			struct eng_rng a, b;

			eng_rng_seed(&a, 99 + t);
			eng_rng_seed(&b, 99 + t);
			for (int d = 0; d < draws; d++)
				ck_assert_msg(eng_sample(l, n, temp, tps[t], &a, s1) ==
					      ref_sample(l, n, temp, tps[t], &b, s2),
					      "n %d scale %g top_p %g temperature %g draw %d", n,
					      scale, tps[t], temp, d);
		}
}

START_TEST(test_nucleus)
{
	enum { N = 50304 };
	static float l[N], s1[3 * N];
	static struct pe s2[N];
	static const float scales[] = {0.3f, 3, 12, 40};
	unsigned r = 7;

	for (int sc = 0; sc < 4; sc++) {
		nucleus_case(l, 300, 400, scales[sc], false, &r, s1, s2);
		nucleus_case(l, N, 3, scales[sc], false, &r, s1, s2);
	}
	nucleus_case(l, 300, 5, 3, true, &r, s1, s2);
}
END_TEST

/* eng_argmax against a plain scan (first index of the largest; NaNs never
 * win except at index 0) on short rows of ties, zeros of both signs,
 * infinities and NaNs, every length across its 8-wide passes. */
START_TEST(test_argmax)
{
	float x[40];
	unsigned r = 12345;

	for (int it = 0; it < 20000; it++) {
		int n = 1 + it % 40, want = 0;

		for (int i = 0; i < n; i++) {
			r = r * 1103515245u + 12345u;
			int k = (int)(r >> 16) % 9;
			x[i] = k == 0 ? NAN : k == 1 ? -0.0f : k == 2 ? 0.0f : k == 3 ? INFINITY :
				k == 4 ? -INFINITY : (float)(k - 6);
		}
		for (int i = 1; i < n; i++)
			if (x[i] > x[want])
				want = i;
		ck_assert_int_eq(eng_argmax(x, n), want);
	}
}
END_TEST

/* The override hooks' helper: ids sorted, router weights, renormalised or
 * not. */
START_TEST(test_route_set)
{
	const float probs[6] = {0.05f, 0.1f, 0.4f, 0.05f, 0.3f, 0.1f};
	const int chosen[3] = {4, 0, 2};
	int ids[3];
	float w[3];

	eng_route_set(chosen, 3, probs, 0, ids, w);
	ck_assert(ids[0] == 0 && ids[1] == 2 && ids[2] == 4);
	ck_assert(w[0] == 0.05f && w[1] == 0.4f && w[2] == 0.3f);
	eng_route_set(ids, 3, probs, 1, ids, w);
	ck_assert(ids[0] == 0 && ids[1] == 2 && ids[2] == 4);
	ck_assert_float_eq_tol(w[0] + w[1] + w[2], 1.0f, 1e-6f);
	ck_assert_float_eq_tol(w[1], 0.4f / 0.75f, 1e-6f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("engine");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_fixture, 0, ref_n_fixtures);
	tcase_add_test(tc, test_prefill_equals_decode);
	tcase_add_test(tc, test_step_equals_forward);
	tcase_add_test(tc, test_greedy);
	tcase_add_test(tc, test_long_prompt_chunks);
	tcase_add_test(tc, test_bad_input);
	tcase_add_test(tc, test_sampling);
	tcase_add_test(tc, test_nucleus);
	tcase_add_test(tc, test_argmax);
	tcase_add_test(tc, test_route_set);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
