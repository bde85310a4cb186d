/* moed eval-predictor: replays a routing trace through a predictor and the
 * expert cache (sim mode) and reports recall, precision, hit rate and loads.
 * The loop and the definitions are in predictor/eval.h. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cmds.h"
#include "loader/cache.h"
#include "loader/hfconfig.h"
#include "loader/model.h"
#include "predictor/eval.h"
#include "predictor/pred.h"
#include "predictor/trace.h"

struct eval_args {
	const char *trace, *model, *load_state, *save_state;
	enum pred_kind kind;
	enum cache_policy policy;
	double budget_mib;         /* < 0: not given */
	long slots;                /* < 0: not given */
	int json, have_kind, have_policy;
	struct pred_eval_opts eo;
	struct pred_opts po;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: moed eval-predictor --trace FILE --predictor P --policy X\n"
		"                           (--budget-mib B --model DIR | --slots N [--model DIR])\n"
		"                           [--train-frac F] [--predict-k K] [--cepr-m M]\n"
		"                           [--frozen] [--batch-table] [--load-state FILE]\n"
		"                           [--save-state FILE] [--json]\n\n"
		"Replays FILE (a moed trace or a JSONL trace) through predictor P (none, pop,\n"
		"freq, cepr, oracle) and a simulated cache with policy X (fifo, lru, lfu,\n"
		"lfuda, belady = optimal, knows the future).  Before each layer the predicted experts\n"
		"are prefetched and pinned, then the layer's true experts are used.  The first\n"
		"F of the tokens (default 0.5) train the predictor and warm the cache; all\n"
		"numbers are over the rest.  --slots N is one pool shared by all layers;\n"
		"--model DIR gives the expert size (bytes_per_token) and --budget-mib's slots.\n"
		"--predict-k: experts predicted per layer (default max(top_k, slots / layers)).\n"
		"--frozen: stop learning after the training part (default: keep learning\n"
		"online, each token predicted before it is learned).  --batch-table: predict\n"
		"each batch's whole table before it runs (no in-flight context).\n");
}

static int need(int i, int argc, char **argv)
{
	if (i + 1 < argc)
		return 0;
	fprintf(stderr, "moed eval-predictor: %s needs a value\n", argv[i]);
	return -EINVAL;
}

static int number(const char *flag, const char *v, double lo, double hi, double *out)
{
	char *end;
	double d = strtod(v, &end);

	if (end == v || *end || !(d >= lo && d <= hi)) {
		fprintf(stderr, "moed eval-predictor: %s '%s': expected a number in [%g, %g]\n",
			flag, v, lo, hi);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

/* One flag with a value; 1 if the flag is not one of these. */
static int value_flag(struct eval_args *a, const char *f, const char *v)
{
	double d;
	int rv = 0;

	if (!strcmp(f, "--trace"))
		a->trace = v;
	else if (!strcmp(f, "--model"))
		a->model = v;
	else if (!strcmp(f, "--load-state"))
		a->load_state = v;
	else if (!strcmp(f, "--save-state"))
		a->save_state = v;
	else if (!strcmp(f, "--predictor")) {
		if ((rv = pred_kind_parse(v, &a->kind)) < 0)
			fprintf(stderr, "moed eval-predictor: --predictor '%s': expected none, pop, "
				"freq, cepr or oracle\n", v);
		a->have_kind = 1;
	} else if (!strcmp(f, "--policy")) {
		if ((rv = cache_policy_parse(v, &a->policy)) < 0)
			fprintf(stderr, "moed eval-predictor: --policy '%s': expected fifo, lru, "
				"lfu, lfuda or belady\n", v);
		a->have_policy = 1;
	} else if (!strcmp(f, "--budget-mib"))
		rv = number(f, v, 1e-9, 1e12, &a->budget_mib);
	else if (!strcmp(f, "--slots") && !(rv = number(f, v, 1, 1e9, &d)))
		a->slots = (long)d;
	else if (!strcmp(f, "--train-frac"))
		rv = number(f, v, 0, 0.999999, &a->eo.train_frac);
	else if (!strcmp(f, "--predict-k") && !(rv = number(f, v, 1, 65535, &d)))
		a->eo.predict_k = (int)d;
	else if (!strcmp(f, "--cepr-m") && !(rv = number(f, v, 1, PRED_CEPR_MAX_M, &d)))
		a->po.cepr_m = (int)d;
	else if (strcmp(f, "--slots") && strcmp(f, "--predict-k") && strcmp(f, "--cepr-m"))
		return 1;
	return rv;
}

static int parse(int argc, char **argv, struct eval_args *a)
{
	*a = (struct eval_args){ .budget_mib = -1, .slots = -1, .eo.train_frac = 0.5 };
	for (int i = 1; i < argc; i++) {
		int rv;

		if (!strcmp(argv[i], "--json")) {
			a->json = 1;
			continue;
		} else if (!strcmp(argv[i], "--frozen")) {
			a->eo.frozen = 1;
			continue;
		} else if (!strcmp(argv[i], "--batch-table")) {
			a->eo.batch_table = 1;
			continue;
		}
		if (need(i, argc, argv) < 0)
			return -EINVAL;
		if ((rv = value_flag(a, argv[i], argv[i + 1])) < 0)
			return rv;
		if (rv) {
			fprintf(stderr, "moed eval-predictor: unknown option '%s'\n", argv[i]);
			return -EINVAL;
		}
		i++;
	}
	if (!a->trace || !a->have_kind || !a->have_policy ||
	    (a->slots < 0) == (a->budget_mib < 0) || (a->budget_mib >= 0 && !a->model)) {
		fprintf(stderr, "moed eval-predictor: needs --trace, --predictor, --policy and "
			"either --slots N or --budget-mib B with --model DIR\n");
		return -EINVAL;
	}
	return 0;
}

/* Expert bytes from DIR/config.json, checked against the trace's shape. */
static int model_bytes(const char *dir, const struct pred_trace *t, size_t *bytes)
{
	char path[4096], err[512];
	struct ld_config cfg;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	if (ld_config_read(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "moed eval-predictor: %s\n", err);
		return -EINVAL;
	}
	if (cfg.n_moe_layers != t->n_layers || cfg.n_experts != t->n_experts ||
	    cfg.top_k != t->top_k) {
		fprintf(stderr, "moed eval-predictor: %s: %d MoE layers x %d experts top-%d, but "
			"the trace has %d x %d top-%d\n", path, cfg.n_moe_layers, cfg.n_experts,
			cfg.top_k, t->n_layers, t->n_experts, t->top_k);
		return -EINVAL;
	}
	*bytes = ld_expert_floats(&cfg) * sizeof(float);
	return 0;
}

static json_t *num_or_null(double v)
{
	return isnan(v) ? json_null() : json_real(v);
}

static void print_json(const struct eval_args *a, const struct pred_eval_result *r)
{
	json_t *o = json_object();
	char *s;

	json_object_set_new(o, "recall", json_real(r->recall));
	json_object_set_new(o, "precision", num_or_null(r->precision));
	json_object_set_new(o, "hit_rate", json_real(r->hit_rate));
	json_object_set_new(o, "loads_per_token", json_real(r->loads_per_token));
	json_object_set_new(o, "bytes_per_token", num_or_null(r->bytes_per_token));
	json_object_set_new(o, "predictor", json_string(pred_kind_name(a->kind)));
	json_object_set_new(o, "policy", json_string(cache_policy_name(a->policy)));
	json_object_set_new(o, "slots", json_integer((json_int_t)r->n_slots));
	json_object_set_new(o, "predict_k", json_integer(r->predict_k));
	json_object_set_new(o, "tokens", json_integer((json_int_t)r->n_tokens));
	json_object_set_new(o, "train_tokens", json_integer((json_int_t)r->n_train));
	json_object_set_new(o, "scored_tokens", json_integer((json_int_t)r->n_scored));
	json_object_set_new(o, "hits", json_integer((json_int_t)r->hits));
	json_object_set_new(o, "misses", json_integer((json_int_t)r->misses));
	json_object_set_new(o, "loads", json_integer((json_int_t)r->loads));
	json_object_set_new(o, "online", json_boolean(!a->eo.frozen));
	s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(o);
}

static void print_text(const struct eval_args *a, const struct pred_trace *t,
		       const struct pred_eval_result *r)
{
	size_t cells = (size_t)t->n_layers * t->n_experts;
	int no_ids = 1;

	for (size_t i = 0; i < t->n_tokens && no_ids; i++)
		no_ids = t->toks[i].token < 0;
	printf("trace:           %s (%s, %zu tokens, %d MoE layers x %d experts, top-%d)\n",
	       a->trace, t->format == PRED_TRACE_JSONL ? "jsonl" : "moed", t->n_tokens,
	       t->n_layers, t->n_experts, t->top_k);
	printf("predictor:       %s%s%s\n", pred_kind_name(a->kind),
	       a->eo.frozen ? ", frozen after training" : ", learning online while scoring",
	       no_ids && a->kind == PRED_FREQ ?
	       " (no token ids in the trace: freq = per-layer popularity)" : "");
	printf("cache:           %s, %zu slots (%.1f%% of %zu layer-experts), %d predicted per "
	       "layer%s\n", cache_policy_name(a->policy), r->n_slots, 100.0 * r->n_slots / cells,
	       cells, r->predict_k, a->eo.batch_table ? " (batch table)" : "");
	printf("scored:          the last %zu of %zu tokens (%.0f%%); the first %zu trained the "
	       "predictor and warmed the cache\n", r->n_scored, r->n_tokens,
	       100.0 * r->n_scored / r->n_tokens, r->n_train);
	printf("recall:          %.4f\n", r->recall);
	if (isnan(r->precision))
		printf("precision:       n/a (nothing predicted)\n");
	else
		printf("precision:       %.4f\n", r->precision);
	printf("hit_rate:        %.4f (%llu hits, %llu misses)\n", r->hit_rate,
	       (unsigned long long)r->hits, (unsigned long long)r->misses);
	printf("loads_per_token: %.2f (%.2f prefetched + %.2f on miss)\n", r->loads_per_token,
	       (double)(r->loads - r->misses) / r->n_scored, (double)r->misses / r->n_scored);
	if (isnan(r->bytes_per_token))
		printf("bytes_per_token: n/a (needs --model)\n");
	else
		printf("bytes_per_token: %.0f\n", r->bytes_per_token);
}

static int run(struct eval_args *a, struct pred_trace *t)
{
	struct pred_eval_result r;
	struct pred *p = NULL;
	char err[512];
	int rv;

	a->po.oracle_trace = t;
	if ((rv = pred_open(a->kind, t->n_layers, t->n_experts, t->top_k, &a->po, &p)) < 0) {
		fprintf(stderr, "moed eval-predictor: cannot open predictor %s: %s\n",
			pred_kind_name(a->kind), strerror(-rv));
		return rv;
	}
	if (a->load_state && (rv = pred_load(p, a->load_state, err, sizeof(err))) < 0)
		goto fail;
	a->eo.policy = a->policy;
	if ((rv = pred_eval_run(t, p, &a->eo, &r, err, sizeof(err))) < 0)
		goto fail;
	if (a->save_state && (rv = pred_save(p, a->save_state, err, sizeof(err))) < 0)
		goto fail;
	if (a->json)
		print_json(a, &r);
	else
		print_text(a, t, &r);
	pred_close(p);
	return 0;
fail:
	fprintf(stderr, "moed eval-predictor: %s\n", err);
	pred_close(p);
	return rv;
}

int cmd_eval_predictor(int argc, char **argv)
{
	struct pred_trace *t = NULL;
	struct eval_args a;
	char err[512];
	int rv;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
	if (parse(argc, argv, &a) < 0) {
		usage(stderr);
		return 2;
	}
	if ((rv = pred_trace_load(a.trace, &t, err, sizeof(err))) < 0) {
		fprintf(stderr, "moed eval-predictor: %s\n", err);
		return 1;
	}
	if (a.model && (rv = model_bytes(a.model, t, &a.eo.expert_bytes)) < 0)
		goto out;
	a.eo.n_slots = a.slots > 0 ? (size_t)a.slots :
		       cache_slots_for_budget(a.budget_mib, a.eo.expert_bytes);
	rv = run(&a, t);
out:
	pred_trace_free(t);
	return rv < 0 ? 1 : 0;
}
