/* Reference fixture reader for the tests. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/refs.h"

const char *const ref_fixture_names[] = {"mixtral_f32", "qwen3moe_f32_sharded",
					 "olmoe_bf16"};
const int ref_n_fixtures = 3;

static void die(const char *what, const char *path)
{
	fprintf(stderr, "%s: %s\n", path, what);
	abort();
}

static int *ints(json_t *a, int *n)
{
	int *v = calloc(json_array_size(a) + 1, sizeof(int));

	*n = (int)json_array_size(a);
	for (int i = 0; i < *n; i++)
		v[i] = (int)json_integer_value(json_array_get(a, (size_t)i));
	return v;
}

static void load_case(json_t *c, struct ref_case *rc, const char *path)
{
	json_t *lg = json_object_get(c, "last_logits");
	json_t *rt = json_object_get(c, "routes");

	if (!lg || !rt)
		die("case lacks last_logits or routes", path);
	rc->prompt = ints(json_object_get(c, "prompt"), &rc->n_prompt);
	rc->greedy = ints(json_object_get(c, "greedy"), &rc->n_greedy);
	rc->n_logits = (int)json_array_size(lg);
	rc->logits = calloc((size_t)rc->n_logits, sizeof(float));
	for (int i = 0; i < rc->n_logits; i++)
		rc->logits[i] = (float)json_number_value(json_array_get(lg, (size_t)i));
	rc->n_layers = (int)json_array_size(rt);
	rc->k = (int)json_array_size(json_array_get(json_array_get(rt, 0), 0));
	rc->routes = calloc((size_t)(rc->n_layers * rc->n_prompt * rc->k) + 1,
			    sizeof(int));
	for (int l = 0; l < rc->n_layers; l++)
		for (int p = 0; p < rc->n_prompt; p++)
			for (int k = 0; k < rc->k; k++) {
				json_t *v = json_array_get(json_array_get(
					json_array_get(rt, (size_t)l), (size_t)p), (size_t)k);
				rc->routes[(l * rc->n_prompt + p) * rc->k + k] =
					(int)json_integer_value(v);
			}
}

void ref_load(const char *name, struct ref_fixture *f)
{
	const char *base = getenv("MOED_FIXTURES");
	char path[600];
	json_error_t je;
	json_t *root, *cases;

	memset(f, 0, sizeof(*f));
	if (!base)
		die("MOED_FIXTURES is not set", "(env)");
	snprintf(f->dir, sizeof(f->dir), "%s/%s", base, name);
	snprintf(path, sizeof(path), "%s/reference.json", f->dir);
	if (!(root = json_load_file(path, 0, &je)))
		die(je.text, path);
	cases = json_object_get(root, "cases");
	f->n_cases = (int)json_array_size(cases);
	f->cases = calloc((size_t)f->n_cases, sizeof(*f->cases));
	for (int i = 0; i < f->n_cases; i++)
		load_case(json_array_get(cases, (size_t)i), &f->cases[i], path);
	json_decref(root);
}

void ref_free(struct ref_fixture *f)
{
	for (int i = 0; i < f->n_cases; i++) {
		free(f->cases[i].prompt);
		free(f->cases[i].greedy);
		free(f->cases[i].logits);
		free(f->cases[i].routes);
	}
	free(f->cases);
}

int ref_is_bf16(const char *name)
{
	return strstr(name, "bf16") != NULL;
}
