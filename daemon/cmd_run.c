/* moed run: one-shot inference on token ids. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cmds.h"
#include "daemon/config.h"
#include "daemon/rt.h"
#include "engine/sample.h"
#include "loader/cache.h"
#include "loader/clock.h"
#include "loader/errfmt.h"
#include "predictor/trace.h"
#include "tokenizer/tok.h"

struct run_opts {
	int *tokens, n_tokens;
	int max_tokens;
	double temperature, top_p;
	unsigned long long seed;
	int json;
	const char *trace;
	const char *prompt;        /* text: needs the model's tokenizer.json */
	struct tok *tok;
	char err[512];             /* the first error, printed once by cmd_run */
};

/* Router choices of the prompt, [moe_layer][pos][k], and the trace file. */
struct route_rec {
	int *ids;
	int n_pos, k;
	struct pred_trace_writer *trace;
	int trace_err;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: moed run --model DIR (--tokens 1,2,3 | --prompt TEXT) [--max-tokens N]\n"
		"                [--temperature T] [--top-p P] [--seed S] [--json]\n"
		"                [--budget-mib B | --slots N] [--policy fifo|lru|lfu|lfuda]\n"
		"                [--config FILE] [--set key=value]...\n\n"
		"Prints the generated token ids; --json prints one object with\n"
		"tokens, last_logits, routes and moe counters.\n\nflags:\n");
	cfg_print_flags(f);
}

static int parse_tokens(const char *s, struct run_opts *o)
{
	size_t cap = 16;
	char *end;

	free(o->tokens);
	o->n_tokens = 0;
	if (!(o->tokens = malloc(cap * sizeof(int))))
		return -ENOMEM;
	while (*s) {
		long v = strtol(s, &end, 10);

		if (end == s || v < 0 || v > INT_MAX || (*end && *end != ','))
			return -EINVAL;
		if ((size_t)o->n_tokens == cap) {
			int *t = realloc(o->tokens, (cap *= 2) * sizeof(int));

			if (!t)
				return -ENOMEM;
			o->tokens = t;
		}
		o->tokens[o->n_tokens++] = (int)v;
		s = *end ? end + 1 : end;
	}
	return o->n_tokens ? 0 : -EINVAL;
}

static int num(struct run_opts *o, const char *flag, const char *v, double lo, double hi,
	       double *out)
{
	char *end;
	double d;

	if (!v)
		return ld_fail(o->err, sizeof(o->err), -EINVAL, "%s needs a value", flag);
	d = strtod(v, &end);
	if (end == v || *end || !(d >= lo && d <= hi))
		return ld_fail(o->err, sizeof(o->err), -EINVAL,
			       "%s: '%s' is not a number in [%g, %g]", flag, v, lo, hi);
	*out = d;
	return 0;
}

/* Flags of run itself; cfg_parse_args hands them over. */
static int run_flag(void *ctx, int argc, char **argv)
{
	struct run_opts *o = ctx;
	const char *f = argv[0], *v = argc > 1 ? argv[1] : NULL;
	double d;

	if (!strcmp(f, "--json"))
		return (o->json = 1);
	if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
		usage(stdout);
		exit(0);
	}
	if (!strcmp(f, "--tokens")) {
		if (!v || parse_tokens(v, o) < 0)
			return ld_fail(o->err, sizeof(o->err), -EINVAL,
				       "--tokens: expected ids like 1,2,3");
		return 2;
	}
	if (!strcmp(f, "--prompt")) {
		if (!v)
			return -EINVAL;
		o->prompt = v;
		return 2;
	}
	if (!strcmp(f, "--trace")) {
		if (!v)
			return -EINVAL;
		o->trace = v;
		return 2;
	}
	if (!strcmp(f, "--max-tokens")) {
		if (num(o, f, v, 0, 1 << 20, &d) < 0)
			return -EINVAL;
		o->max_tokens = (int)d;
		return 2;
	}
	if (!strcmp(f, "--temperature"))
		return num(o, f, v, 0, 100, &o->temperature) < 0 ? -EINVAL : 2;
	if (!strcmp(f, "--top-p"))
		return num(o, f, v, 0, 1, &o->top_p) < 0 ? -EINVAL : 2;
	if (!strcmp(f, "--seed")) {
		if (num(o, f, v, 0, 1.8e19, &d) < 0)
			return -EINVAL;
		o->seed = strtoull(v, NULL, 10);
		return 2;
	}
	return -EINVAL;
}

static void on_route(void *ctx, void *seq_user, int layer, int pos, int token,
		     const int *experts, const float *w, int k)
{
	struct route_rec *r = ctx;

	(void)seq_user;
	(void)w;
	if (r->ids && pos < r->n_pos)
		memcpy(r->ids + ((size_t)layer * r->n_pos + pos) * k, experts,
		       (size_t)k * sizeof(int));
	/* Batch 0 is the prompt; each decode step is the next batch. */
	if (r->trace && !r->trace_err)
		r->trace_err = pred_trace_write(r->trace,
						pos < r->n_pos ? 0 : (uint64_t)(pos - r->n_pos + 1),
						0, layer, pos, token, experts, k);
}

static json_t *stats_json(struct rt *rt)
{
	const struct ld_config *c = &rt->model->cfg;
	json_t *o = json_object(), *layers = json_array();
	struct cache_stats s;

	json_object_set_new(o, "slots", json_integer((json_int_t)rt->n_slots));
	json_object_set_new(o, "policy", json_string(cache_policy_name(rt->policy)));
	for (int l = -1; l < c->n_moe_layers; l++) {
		json_t *x;

		cache_get_stats(rt->cache, l, &s);
		x = rt_cache_stats_json(&s);
		if (l < 0)
			json_object_update(o, x), json_decref(x);
		else
			json_array_append_new(layers, x);
	}
	json_object_set_new(o, "layers", layers);
	return o;
}

/* Wall time of the prompt's forward and of the decode steps. */
struct run_time {
	double prefill, decode;
	int steps;
};

static json_t *timing_json(struct rt *rt, const struct run_time *tm)
{
	json_t *o = json_object();

	json_object_set_new(o, "prefill_seconds", json_real(tm->prefill));
	json_object_set_new(o, "decode_seconds", json_real(tm->decode));
	json_object_set_new(o, "decode_steps", json_integer(tm->steps));
	json_object_set_new(o, "decode_tok_s", json_real(tm->decode > 0 ? tm->steps / tm->decode
							  : 0));
	json_object_set_new(o, "fast_steps", json_integer((json_int_t)eng_fast_steps(rt->eng)));
	return o;
}

static void print_json(struct rt *rt, const struct run_opts *o,
		       const struct route_rec *r, const int *gen, int n_gen,
		       const float *last_logits, const struct run_time *tm)
{
	const struct ld_config *c = &rt->model->cfg;
	json_t *root = json_object(), *t = json_array(), *lg = json_array();
	json_t *routes = json_array();

	for (int i = 0; i < n_gen; i++)
		json_array_append_new(t, json_integer(gen[i]));
	for (int i = 0; i < c->vocab_size; i++)
		json_array_append_new(lg, json_real(last_logits[i]));
	for (int l = 0; l < c->n_moe_layers; l++) {
		json_t *layer = json_array();

		for (int p = 0; p < o->n_tokens; p++) {
			json_t *ks = json_array();

			for (int k = 0; k < c->top_k; k++)
				json_array_append_new(ks, json_integer(
					r->ids[((size_t)l * o->n_tokens + p) * c->top_k + k]));
			json_array_append_new(layer, ks);
		}
		json_array_append_new(routes, layer);
	}
	json_object_set_new(root, "tokens", t);
	if (o->tok) {
		char *text = NULL;
		size_t len = 0;

		if (tok_decode(o->tok, gen, (size_t)n_gen, 1, &text, &len) == 0)
			json_object_set_new(root, "text", json_stringn(text, len));
		free(text);
	}
	json_object_set_new(root, "last_logits", lg);
	json_object_set_new(root, "routes", routes);
	json_object_set_new(root, "moe", stats_json(rt));
	json_object_set_new(root, "timing", timing_json(rt, tm));
	json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(9));
	putchar('\n');
	json_decref(root);
}

/* Samples from logits and steps s until max_tokens tokens are in gen.
 * Greedy (temperature 0): the steps but the last through eng_greedy (on the
 * CUDA fast way chained on the GPU), the last one for last_logits. */
static int decode(struct eng *e, struct eng_seq *s, const struct run_opts *o, int V,
		  struct eng_rng *rng, float *logits, float *scratch, int *gen, int *n_gen,
		  int *steps)
{
	int rv, k = o->max_tokens - *n_gen - 2;

	if (o->temperature <= 0 && k > 0) {
		gen[*n_gen] = eng_sample_best(logits, V, eng_row_argmax(e, logits), 0, 1, rng,
					      scratch);
		if ((rv = eng_greedy(e, &s, 1, gen + *n_gen, k, gen + *n_gen + 1, NULL, NULL)) < 0)
			return rv;
		*n_gen += k + 1;
		*steps += k + 1;
		if ((rv = eng_forward(e, s, &gen[*n_gen - 1], 1, logits)) < 0)
			return rv;
	}
	while (*n_gen < o->max_tokens) {
		int next = eng_sample_best(logits, V, eng_row_argmax(e, logits), o->temperature,
					   o->top_p, rng, scratch);

		gen[(*n_gen)++] = next;
		if (*n_gen == o->max_tokens)
			break;
		if ((rv = eng_forward(e, s, &next, 1, logits)) < 0)
			return rv;
		++*steps;
	}
	return 0;
}

/* The tokens as text (with a tokenizer) or as ids. */
static void print_plain(const struct run_opts *o, const int *gen, int n_gen)
{
	if (o->tok) {
		char *text = NULL;
		size_t len = 0;

		if (tok_decode(o->tok, gen, (size_t)n_gen, 1, &text, &len) == 0)
			printf("%.*s\n", (int)len, text);
		free(text);
		return;
	}
	for (int i = 0; i < n_gen; i++)
		printf("%s%d", i ? " " : "", gen[i]);
	putchar('\n');
}

/* Closes --trace; a write error becomes the result when rv was 0. */
static int close_trace(struct route_rec *r, struct run_opts *o, int rv)
{
	int trv = pred_trace_writer_close(r->trace), err = r->trace_err ? r->trace_err : trv;

	if (rv == 0 && err) {
		ld_errf(o->err, sizeof(o->err), "--trace %s: write failed: %s", o->trace,
			strerror(-err));
		rv = err;
	}
	return rv;
}

static int generate(struct rt *rt, struct run_opts *o)
{
	const struct ld_config *c = &rt->model->cfg;
	struct route_rec r = {.n_pos = o->n_tokens, .k = c->top_k};
	struct eng_hooks h = {.on_route = on_route, .ctx = &r};
	struct eng_seq *s = NULL;
	struct eng_rng rng;
	float *logits = eng_logits_buffer(rt->eng);   /* the engine's: no copy on the GPU path */
	float *last = calloc((size_t)c->vocab_size, sizeof(float));
	float *scratch = calloc(ENG_SAMPLE_SCRATCH(c->vocab_size), sizeof(float));
	int *gen = calloc((size_t)o->max_tokens + 1, sizeof(int)), n_gen = 0, rv;
	struct run_time tm = {0};
	double t0;

	r.ids = calloc((size_t)c->n_moe_layers * o->n_tokens * c->top_k + 1, sizeof(int));
	if (!logits || !last || !scratch || !gen || !r.ids) {
		rv = -ENOMEM;
		goto out;
	}
	if (o->trace && (rv = pred_trace_writer_open(o->trace, c->n_moe_layers, c->n_experts,
						     c->top_k, &r.trace)) < 0) {
		ld_errf(o->err, sizeof(o->err), "--trace %s: %s", o->trace, strerror(-rv));
		goto out;
	}
	eng_rng_seed(&rng, o->seed);
	eng_set_hooks(rt->eng, &h);
	if ((rv = eng_seq_new(rt->eng, &s)) < 0)
		goto out;
	t0 = ld_now();
	if ((rv = eng_forward(rt->eng, s, o->tokens, o->n_tokens, logits)) < 0)
		goto out;
	tm.prefill = ld_now() - t0;
	memcpy(last, logits, (size_t)c->vocab_size * sizeof(float));
	t0 = ld_now();
	if ((rv = decode(rt->eng, s, o, c->vocab_size, &rng, logits, scratch, gen, &n_gen,
			 &tm.steps)) < 0)
		goto out;
	tm.decode = ld_now() - t0;
	if (o->json)
		print_json(rt, o, &r, gen, n_gen, last, &tm);
	else
		print_plain(o, gen, n_gen);
out:
	if (r.trace)
		rv = close_trace(&r, o, rv);
	eng_set_hooks(rt->eng, NULL);
	eng_seq_free(s);
	free(r.ids);
	free(gen);
	free(scratch);
	free(last);
	return rv;
}

/* --prompt: the model's tokenizer.json turns the text into --tokens. */
static int encode_prompt(const struct moed_config *cfg, struct run_opts *o)
{
	char path[CFG_PATH_MAX + 32], err[512];
	int32_t *ids = NULL;
	size_t n = 0;

	if (o->n_tokens) {
		fprintf(stderr, "moed run: give --tokens or --prompt, not both\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/tokenizer.json", cfg->model.path);
	if (tok_open(path, &o->tok, err, sizeof(err)) < 0) {
		fprintf(stderr, "moed run: --prompt needs a tokenizer: %s\n", err);
		return 1;
	}
	if (tok_encode(o->tok, o->prompt, strlen(o->prompt), 1, &ids, &n) < 0 || !n) {
		fprintf(stderr, "moed run: --prompt: the text encodes to no tokens\n");
		free(ids);
		return 2;
	}
	free(o->tokens);
	o->tokens = malloc(n * sizeof(int));
	for (size_t i = 0; o->tokens && i < n; i++)
		o->tokens[i] = ids[i];
	o->n_tokens = o->tokens ? (int)n : 0;
	free(ids);
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct moed_config cfg;
	struct run_opts o = {.max_tokens = 16, .top_p = 1.0};
	struct rt rt;
	char err[1024];
	int rv;

	cfg_defaults(&cfg);
	if (cfg_parse_args(&cfg, argc - 1, argv + 1, run_flag, &o, err, sizeof(err)) < 0) {
		fprintf(stderr, "moed run: %s\n", o.err[0] ? o.err : err);
		free(o.tokens);
		return 2;
	}
	if (o.prompt && (rv = encode_prompt(&cfg, &o)) != 0) {
		free(o.tokens);
		tok_close(o.tok);
		return rv;
	}
	if (!o.n_tokens) {
		fprintf(stderr, "moed run: --tokens or --prompt is required\n");
		return 2;
	}
	if (rt_open(&cfg, o.n_tokens + o.max_tokens, &rt, err, sizeof(err)) < 0) {
		fprintf(stderr, "moed run: %s\n", err);
		free(o.tokens);
		return 1;
	}
	for (int i = 0; i < o.n_tokens; i++)
		if (o.tokens[i] >= rt.model->cfg.vocab_size) {
			fprintf(stderr, "moed run: --tokens: id %d is outside the vocabulary (size %d)\n",
				o.tokens[i], rt.model->cfg.vocab_size);
			rt_close(&rt);
			free(o.tokens);
			return 2;
		}
	rv = generate(&rt, &o);
	if (rv < 0)
		fprintf(stderr, "moed run: %s\n", o.err[0] ? o.err : strerror(-rv));
	rt_close(&rt);
	free(o.tokens);
	tok_close(o.tok);
	return rv < 0 ? 1 : 0;
}
