/* Response objects for the JSON API (see api.h). */
#include "daemon/api.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char api_sse_done[] = "data: [DONE]\n\n";

/* json_object_set_new that remembers a failure (NULL value, ENOMEM). */
static void set(json_t *o, const char *k, json_t *v, bool *ok)
{
	if (!v || json_object_set_new(o, k, v) < 0)
		*ok = false;
}

static json_t *ids_json(const int32_t *ids, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_integer(ids[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *real_json(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *finish_json(enum api_finish f)
{
	return f == API_FINISH_LENGTH ? json_string("length") :
	       f == API_FINISH_STOP ? json_string("stop") : json_null();
}

static json_t *choice_json(const struct api_choice *c, size_t index)
{
	json_t *o = json_object();
	bool ok = o != NULL;

	if (!o)
		return NULL;
	set(o, "index", json_integer((json_int_t)index), &ok);
	set(o, "tokens", ids_json(c->tokens, c->n_tokens), &ok);
	if (c->text)
		set(o, "text", json_string(c->text), &ok);
	set(o, "logprobs", json_null(), &ok);
	set(o, "finish_reason", finish_json(c->finish), &ok);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *moe_json(const struct api_moe_stats *m)
{
	return json_pack("{s:I, s:I, s:I, s:o}", "hits", (json_int_t)m->hits,
			 "misses", (json_int_t)m->misses,
			 "bytes_loaded", (json_int_t)m->bytes_loaded,
			 "predicted_recall", m->predicted_recall < 0 ? json_null() :
			 real_json(m->predicted_recall));
}

static json_t *usage_json(const struct api_completion_resp *r)
{
	size_t comp = r->n_choices ? 0 : r->completion_tokens;

	for (size_t i = 0; i < r->n_choices; i++)
		comp += r->choices[i].n_tokens;
	return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)r->prompt_tokens,
			 "completion_tokens", (json_int_t)comp,
			 "total_tokens", (json_int_t)(r->prompt_tokens + comp));
}

static json_t *envelope(const struct api_completion_resp *r, bool *ok)
{
	json_t *o = json_object();

	*ok = o != NULL;
	if (!o)
		return NULL;
	set(o, "id", json_string(r->id ? r->id : ""), ok);
	set(o, "object", json_string("text_completion"), ok);
	set(o, "created", json_integer(r->created), ok);
	set(o, "model", r->model ? json_string(r->model) : json_null(), ok);
	return o;
}

/* n choices from choices[0], numbered from index; usage (and moe) when
 * asked: a whole response, or one streamed chunk (usage on the last). */
static json_t *completion(const struct api_completion_resp *r, size_t n, size_t index,
			  bool usage)
{
	bool ok;
	json_t *o = envelope(r, &ok), *ch = json_array();

	for (size_t i = 0; ch && i < n; i++)
		if (json_array_append_new(ch, choice_json(&r->choices[i], index + i)) < 0)
			ok = false;
	if (o) {
		set(o, "choices", ch, &ok);
		if (usage) {
			set(o, "usage", usage_json(r), &ok);
			if (r->moe)
				set(o, "moe", moe_json(r->moe), &ok);
		}
	} else {
		json_decref(ch);
	}
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *api_completion_json(const struct api_completion_resp *r)
{
	return completion(r, r->n_choices, 0, true);
}

json_t *api_completion_chunk_json(const struct api_completion_resp *r, size_t index)
{
	return completion(r, r->n_choices > 0 ? 1 : 0, index, r->n_choices == 0);
}

int api_sse_event(const json_t *obj, char **buf, size_t *len)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(9));
	size_t n;

	if (!s)
		return -ENOMEM;
	n = strlen(s);
	*buf = malloc(n + 9);
	if (!*buf) {
		free(s);
		return -ENOMEM;
	}
	memcpy(*buf, "data: ", 6);
	memcpy(*buf + 6, s, n);
	memcpy(*buf + 6 + n, "\n\n", 3);
	*len = n + 8;
	free(s);
	return 0;
}

void api_make_id(char *buf, size_t n, const char *prefix)
{
	static uint64_t counter;
	unsigned char r[12];
	size_t at;

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		uint64_t t = (uint64_t)time(NULL) ^ (++counter * 0x9e3779b97f4a7c15ULL);

		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)(t >> (8 * (i % 8)));
	}
	at = (size_t)snprintf(buf, n, "%s", prefix);
	for (size_t i = 0; i < sizeof(r) && at + 2 < n; i++, at += 2)
		snprintf(buf + at, n - at, "%02x", r[i]);
}

static json_t *logits_json(const float *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, real_json(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *top_json(const struct api_forward_result *r)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < r->n_top; i++)
		if (json_array_append_new(a, json_pack("{s:i, s:o}", "id", (int)r->top_ids[i],
						       "logit", real_json(r->top_logits[i]))) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *routes_json(const struct api_forward_result *r)
{
	json_t *layers = json_array();

	for (size_t l = 0; layers && l < r->n_layers; l++) {
		json_t *pos = json_array();

		for (size_t p = 0; pos && p < r->n_pos; p++)
			if (json_array_append_new(pos, ids_json(r->routes +
				(l * r->n_pos + p) * r->k, r->k)) < 0) {
				json_decref(pos);
				pos = NULL;
			}
		if (json_array_append_new(layers, pos) < 0) {
			json_decref(layers);
			return NULL;
		}
	}
	return layers;
}

json_t *api_forward_json(const struct api_forward_result *res, size_t n)
{
	json_t *arr = json_array(), *root;
	bool ok = arr != NULL;

	for (size_t i = 0; ok && i < n; i++) {
		const struct api_forward_result *r = &res[i];
		json_t *o = json_object();

		if (!o) {
			ok = false;
			break;
		}
		if (r->logits)
			set(o, "logits", logits_json(r->logits, r->n_vocab), &ok);
		else
			set(o, "top", top_json(r), &ok);
		if (r->routes)
			set(o, "routes", routes_json(r), &ok);
		if (json_array_append_new(arr, o) < 0)
			ok = false;
	}
	if (!ok) {
		json_decref(arr);
		return NULL;
	}
	root = json_object();
	if (!root || json_object_set_new(root, "results", arr) < 0) {
		json_decref(root);
		return NULL;
	}
	return root;
}
