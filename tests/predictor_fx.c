/* Helpers of the predictor tests (tests/predictor_fx.h). */
#include "tests/predictor_fx.h"

char err[1024];

/* ---- helpers ---- */

static uint64_t rng = 88172645463325252ull;
uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

char *tmp_path(const char *name)
{
	static char buf[4][512];
	static int i;
	char *p = buf[i++ % 4];

	snprintf(p, 512, "/tmp/moed_test_pred_%d_%s", (int)getpid(), name);
	return p;
}

void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* Sets experts of token i at layer l to k distinct ids, e0 first, then
 * the following ones mod E (skipping nothing: distinct by construction). */
void set_run(struct pred_trace *t, size_t i, int l, int e0)
{
	int *ex = (int *)pred_trace_at(t, i, l);

	for (int j = 0; j < t->top_k; j++)
		ex[j] = (e0 + j) % t->n_experts;
}

/* Token-dependent routing: 40 token ids, each with a fixed expert run per
 * layer (noise 10%); the token stream is uniform, so popularity is flat. */
struct pred_trace *token_trace(size_t n)
{
	struct pred_trace *t;

	ck_assert_int_eq(pred_trace_new(4, 32, 2, n, &t), 0);
	for (size_t i = 0; i < n; i++) {
		int tok = (int)rnd(40);

		t->toks[i].token = tok;
		for (int l = 0; l < 4; l++)
			set_run(t, i, l, rnd(10) ? (tok * 7 + l * 13) % 32 : (int)rnd(32));
	}
	return t;
}

/* Path-dependent routing: layer l's first expert is a fixed permutation of
 * the previous layer's (circular: layer 0 follows the previous token's last
 * layer), 15% noise; token ids unknown. */
struct pred_trace *path_trace(size_t n)
{
	struct pred_trace *t;
	int perm[6][32], prev = 0;

	for (int l = 0; l < 6; l++)
		for (int e = 0; e < 32; e++)
			perm[l][e] = (e * 5 + l * 11 + 3) % 32;
	ck_assert_int_eq(pred_trace_new(6, 32, 2, n, &t), 0);
	for (size_t i = 0; i < n; i++)
		for (int l = 0; l < 6; l++) {
			int e = rnd(100) < 15 ? (int)rnd(32) : perm[l][prev];

			set_run(t, i, l, e);
			prev = e;
		}
	return t;
}

struct pred *open_for(enum pred_kind kind, const struct pred_trace *t)
{
	struct pred_opts o = {.oracle_trace = t};
	struct pred *p;

	ck_assert_int_eq(pred_open(kind, t->n_layers, t->n_experts, t->top_k, &o, &p), 0);
	return p;
}

struct pred_eval_result eval(enum pred_kind kind, const struct pred_trace *t,
				    enum cache_policy pol, size_t slots, int predict_k)
{
	struct pred_eval_opts o = {.policy = pol, .n_slots = slots, .train_frac = 0.5,
				   .predict_k = predict_k};
	struct pred_eval_result r;
	struct pred *p = open_for(kind, t);
	int rv = pred_eval_run(t, p, &o, &r, err, sizeof(err));

	ck_assert_msg(rv == 0, "eval %s: %d %s", pred_kind_name(kind), rv, err);
	pred_close(p);
	return r;
}

