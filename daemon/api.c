/* Request parsing and validation for the JSON API (see api.h). */
#include "daemon/api.h"
#include "loader/errfmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct seqs {
	struct api_seq *v;
	size_t n, cap;
};

/* What a sequence list field accepts. */
struct seq_rules {
	const struct api_limits *lim;
	const struct api_tokenizer *tok;
	const char *field;
	bool stop;                       /* scalar allowed; flat ids are singles */
	bool *text;                      /* set when text was given */
	struct api_completion_req *keep; /* stop: the strings are kept here too */
};

/* A request error: the message into err, -EINVAL back. */
#define bad(err, n, ...) ld_fail(err, n, -EINVAL, __VA_ARGS__)

static void seqs_free(struct api_seq *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].ids);
	free(v);
}

/* Takes ownership of ids, also on failure. */
static int seqs_push(struct seqs *s, int32_t *ids, size_t n)
{
	if (s->n == s->cap) {
		size_t c = s->cap ? 2 * s->cap : 4;
		struct api_seq *nv = realloc(s->v, c * sizeof(*nv));

		if (!nv) {
			free(ids);
			return -ENOMEM;
		}
		s->v = nv;
		s->cap = c;
	}
	s->v[s->n++] = (struct api_seq){ .ids = ids, .n = n };
	return 0;
}

static int check_id(const struct seq_rules *r, const char *name, json_int_t id,
		    char *err, size_t en)
{
	if (id < 0 || id >= r->lim->vocab_size)
		return bad(err, en, "%s: token id %lld is outside the vocabulary (size %d)",
			   name, (long long)id, r->lim->vocab_size);
	return 0;
}

static int token(const struct seq_rules *r, json_t *v, const char *name,
		 int32_t *out, char *err, size_t en)
{
	if (!json_is_integer(v))
		return bad(err, en, "%s: token ids must be integers", name);
	*out = (int32_t)json_integer_value(v);
	return check_id(r, name, json_integer_value(v), err, en);
}

/* An array of token ids into one sequence; name is e.g. "prompt[2]". */
static int id_array(const struct seq_rules *r, json_t *a, const char *name,
		    struct seqs *out, char *err, size_t en)
{
	size_t n = json_array_size(a);
	int32_t *ids;
	char el[96];
	int rv;

	if (!json_is_array(a))
		return bad(err, en, "%s: expected an array of token ids", name);
	if (n == 0)
		return bad(err, en, "%s: must not be empty", name);
	if (!(ids = malloc(n * sizeof(*ids))))
		return -ENOMEM;
	for (size_t j = 0; j < n; j++) {
		snprintf(el, sizeof(el), "%s[%zu]", name, j);
		if ((rv = token(r, json_array_get(a, j), el, &ids[j], err, en)) < 0) {
			free(ids);
			return rv;
		}
	}
	return seqs_push(out, ids, n);
}

static int keep_text(struct api_completion_req *q, const char *t)
{
	char **v = realloc(q->stop_text, (q->n_stop_text + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	q->stop_text = v;
	if (!(v[q->n_stop_text] = strdup(t)))
		return -ENOMEM;
	q->n_stop_text++;
	return 0;
}

static int text(const struct seq_rules *r, json_t *s, const char *name,
		struct seqs *out, char *err, size_t en)
{
	int32_t *ids = NULL;
	size_t n = 0;
	int rv;

	if (!json_is_string(s))
		return bad(err, en, "%s: expected a string", name);
	if (!r->tok || !r->tok->encode)
		return bad(err, en, "%s: text %s need a tokenizer; send token ids", r->field,
			   r->stop ? "stop sequences" : "prompts");
	rv = r->tok->encode(r->tok->ctx, json_string_value(s), json_string_length(s), &ids, &n);
	if (rv == -ENOMEM)
		return rv;
	if (rv < 0)
		return bad(err, en, "%s: the tokenizer failed: %s", name, strerror(-rv));
	if (n == 0) {
		free(ids);
		return bad(err, en, "%s: the text encodes to no tokens", name);
	}
	for (size_t j = 0; j < n; j++)
		if (ids[j] < 0 || ids[j] >= r->lim->vocab_size) {
			rv = bad(err, en, "%s: the tokenizer produced token id %d, outside the "
				 "vocabulary (size %d)", name, ids[j], r->lim->vocab_size);
			free(ids);
			return rv;
		}
	*r->text = true;
	if (r->keep && (rv = keep_text(r->keep, json_string_value(s))) < 0) {
		free(ids);
		return rv;
	}
	return seqs_push(out, ids, n);
}

/* The elements of a non-empty array, all of the kind of the first. */
static int elements(const struct seq_rules *r, json_t *a, struct seqs *out,
		    char *err, size_t en)
{
	json_t *first = json_array_get(a, 0);
	char el[96];
	int rv = 0;

	if (json_is_integer(first) && !r->stop)
		return id_array(r, a, r->field, out, err, en);
	for (size_t i = 0; i < json_array_size(a) && rv == 0; i++) {
		json_t *v = json_array_get(a, i);

		snprintf(el, sizeof(el), "%s[%zu]", r->field, i);
		if (json_is_integer(first)) {            /* stop: single tokens */
			int32_t id, *ids;

			if ((rv = token(r, v, el, &id, err, en)) < 0)
				break;
			if (!(ids = malloc(sizeof(*ids))))
				return -ENOMEM;
			ids[0] = id;
			rv = seqs_push(out, ids, 1);
		} else if (json_is_array(first)) {
			rv = id_array(r, v, el, out, err, en);
		} else if (json_is_string(first)) {
			rv = text(r, v, el, out, err, en);
		} else {
			rv = bad(err, en, "%s: expected token ids, arrays of token ids or text",
				 el);
		}
	}
	return rv;
}

static int parse_seqs(const struct seq_rules *r, json_t *v, struct seqs *out,
		      char *err, size_t en)
{
	int32_t *ids;

	if (json_is_string(v))
		return text(r, v, r->field, out, err, en);
	if (r->stop && json_is_integer(v)) {
		if (!(ids = malloc(sizeof(*ids))))
			return -ENOMEM;
		if (token(r, v, r->field, ids, err, en) < 0) {
			free(ids);
			return -EINVAL;
		}
		return seqs_push(out, ids, 1);
	}
	if (!json_is_array(v))
		return bad(err, en, "%s: must be an array of token ids, an array of token id "
			   "arrays, or text", r->field);
	if (json_array_size(v) == 0)
		return r->stop ? 0 : bad(err, en, "%s: must not be empty", r->field);
	return elements(r, v, out, err, en);
}

static json_t *load(const char *body, size_t len, char *err, size_t en)
{
	json_error_t je;
	json_t *root;

	if (len == 0) {
		bad(err, en, "request body is empty; expected a JSON object");
		return NULL;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		bad(err, en, "request body is not valid JSON: %s (line %d, column %d)",
		    je.text, je.line, je.column);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		bad(err, en, "request body must be a JSON object");
		return NULL;
	}
	return root;
}

/* Integer field in [lo, hi]; absent or null keeps *out. */
static int get_int(json_t *o, const char *key, long long lo, long long hi,
		   long long *out, char *err, size_t en)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return bad(err, en, "%s: must be an integer", key);
	if (json_integer_value(v) < lo || json_integer_value(v) > hi)
		return bad(err, en, "%s: %lld is out of range [%lld, %lld]", key,
			   (long long)json_integer_value(v), lo, hi);
	*out = json_integer_value(v);
	return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, char *err, size_t en)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return bad(err, en, "%s: must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int get_number(json_t *o, const char *key, double *out, char *err, size_t en)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return bad(err, en, "%s: must be a number", key);
	*out = json_number_value(v);
	return 0;
}

/* Fields we know and do not implement: only their neutral values pass. */
static int unsupported(json_t *o, char *err, size_t en)
{
	static const char *const one[] = { "n", "best_of" };
	static const char *const zero[] = { "presence_penalty", "frequency_penalty" };
	json_t *v;

	for (size_t i = 0; i < 2; i++) {
		v = json_object_get(o, one[i]);
		if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 1))
			return bad(err, en, "%s: only 1 is supported", one[i]);
		v = json_object_get(o, zero[i]);
		if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0))
			return bad(err, en, "%s: not supported (only 0)", zero[i]);
	}
	v = json_object_get(o, "echo");
	if (v && !json_is_null(v) && !json_is_false(v))
		return bad(err, en, "echo: not supported");
	v = json_object_get(o, "logprobs");
	if (v && !json_is_null(v) && !json_is_false(v) &&
	    !(json_is_integer(v) && json_integer_value(v) == 0))
		return bad(err, en, "logprobs: not supported");
	v = json_object_get(o, "suffix");
	if (v && !json_is_null(v))
		return bad(err, en, "suffix: not supported");
	v = json_object_get(o, "logit_bias");
	if (v && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0))
		return bad(err, en, "logit_bias: not supported");
	return 0;
}

static int sampling(json_t *o, const struct api_limits *lim,
		    struct api_completion_req *r, char *err, size_t en)
{
	long long mt = 16, seed = 0;
	long long cap = lim->max_tokens_cap > 0 ? lim->max_tokens_cap : 0x7fffffff;
	json_t *v;
	int rv;

	if ((rv = get_int(o, "max_tokens", 0, 0x7fffffff, &mt, err, en)) < 0)
		return rv;
	if (mt > cap)
		return bad(err, en, "max_tokens: %lld exceeds the server limit of %lld", mt, cap);
	r->max_tokens = (int)mt;
	if ((rv = get_number(o, "temperature", &r->temperature, err, en)) < 0)
		return rv;
	if (r->temperature < 0)
		return bad(err, en, "temperature: %g must be >= 0", r->temperature);
	if ((rv = get_number(o, "top_p", &r->top_p, err, en)) < 0)
		return rv;
	if (!(r->top_p > 0 && r->top_p <= 1))
		return bad(err, en, "top_p: %g must be in (0, 1]", r->top_p);
	v = json_object_get(o, "seed");
	if (v && !json_is_null(v)) {
		if ((rv = get_int(o, "seed", -0x7fffffffffffffffLL - 1, 0x7fffffffffffffffLL,
				  &seed, err, en)) < 0)
			return rv;
		r->has_seed = true;
		r->seed = (uint64_t)seed;
	}
	if ((rv = get_bool(o, "stream", &r->stream, err, en)) < 0)
		return rv;
	v = json_object_get(o, "model");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v))
			return bad(err, en, "model: must be a string");
		if (json_string_length(v) >= sizeof(r->model))
			return bad(err, en, "model: longer than %zu bytes", sizeof(r->model) - 1);
		memcpy(r->model, json_string_value(v), json_string_length(v) + 1);
	}
	return 0;
}

/* The sequence field `key` into out, with count and context checks. */
static int sequences(json_t *o, const char *key, const struct api_limits *lim,
		     const struct api_tokenizer *tok, bool *text_flag, int extra,
		     struct seqs *out, char *err, size_t en)
{
	struct seq_rules r = { .lim = lim, .tok = tok, .field = key, .text = text_flag };
	int maxp = lim->max_prompts > 0 ? lim->max_prompts : 64;
	int rv = parse_seqs(&r, json_object_get(o, key), out, err, en);

	if (rv < 0)
		return rv;
	if (out->n > (size_t)maxp)
		return bad(err, en, "%s: %zu sequences exceed the limit of %d", key, out->n, maxp);
	for (size_t i = 0; lim->max_ctx > 0 && i < out->n; i++)
		if (out->v[i].n + (size_t)extra > (size_t)lim->max_ctx)
			return bad(err, en, "%s[%zu]: %zu tokens plus max_tokens %d exceed the "
				   "context length %d", key, i, out->v[i].n, extra, lim->max_ctx);
	return 0;
}

static int stops(json_t *o, const struct api_limits *lim, const struct api_tokenizer *tok,
		 struct api_completion_req *req, struct seqs *out, char *err, size_t en)
{
	struct seq_rules sr = { .lim = lim, .tok = tok, .field = "stop", .stop = true,
				.text = &(bool){ false }, .keep = req };
	int maxs = lim->max_stop > 0 ? lim->max_stop : 16;
	json_t *v = json_object_get(o, "stop");
	int rv;

	if (!v || json_is_null(v))
		return 0;
	if ((rv = parse_seqs(&sr, v, out, err, en)) < 0)
		return rv;
	if (out->n > (size_t)maxs)
		return bad(err, en, "stop: %zu stop sequences exceed the limit of %d", out->n, maxs);
	return 0;
}

int api_parse_completion(const char *body, size_t len, const struct api_limits *lim,
			 const struct api_tokenizer *tok,
			 struct api_completion_req *out, char *err, size_t errlen)
{
	struct seqs p = { 0 }, s = { 0 };
	json_t *root;
	int rv = -EINVAL;

	memset(out, 0, sizeof(*out));
	out->temperature = 1.0;
	out->top_p = 1.0;
	if (!(root = load(body, len, err, errlen)))
		return -EINVAL;
	if ((rv = unsupported(root, err, errlen)) < 0 ||
	    (rv = sampling(root, lim, out, err, errlen)) < 0)
		goto fail;
	if (!json_object_get(root, "prompt")) {
		rv = bad(err, errlen, "prompt: required");
		goto fail;
	}
	if ((rv = sequences(root, "prompt", lim, tok, &out->text_prompt, out->max_tokens,
			    &p, err, errlen)) < 0 ||
	    (rv = stops(root, lim, tok, out, &s, err, errlen)) < 0)
		goto fail;
	json_decref(root);
	out->prompts = p.v;
	out->n_prompts = p.n;
	out->stop = s.v;
	out->n_stop = s.n;
	return 0;
fail:
	json_decref(root);
	seqs_free(p.v, p.n);
	seqs_free(s.v, s.n);
	api_completion_req_free(out);
	return rv;
}

void api_completion_req_free(struct api_completion_req *r)
{
	seqs_free(r->prompts, r->n_prompts);
	seqs_free(r->stop, r->n_stop);
	for (size_t i = 0; i < r->n_stop_text; i++)
		free(r->stop_text[i]);
	free(r->stop_text);
	memset(r, 0, sizeof(*r));
}

int api_parse_forward(const char *body, size_t len, const struct api_limits *lim,
		      const struct api_tokenizer *tok,
		      struct api_forward_req *out, char *err, size_t errlen)
{
	struct seqs q = { 0 };
	bool has_seq, has_prompt, text_flag = false;
	long long top = 0;
	json_t *root;
	int rv = -EINVAL;

	memset(out, 0, sizeof(*out));
	if (!(root = load(body, len, err, errlen)))
		return -EINVAL;
	has_seq = json_object_get(root, "sequences") != NULL;
	has_prompt = json_object_get(root, "prompt") != NULL;
	if (has_seq == has_prompt) {
		rv = bad(err, errlen, has_seq ? "sequences: give sequences or prompt, not both"
					     : "sequences: required (or prompt)");
		goto fail;
	}
	if ((rv = sequences(root, has_seq ? "sequences" : "prompt", lim, tok, &text_flag, 0,
			    &q, err, errlen)) < 0 ||
	    (rv = get_int(root, "top_n", 0, lim->vocab_size, &top, err, errlen)) < 0 ||
	    (rv = get_bool(root, "return_routes", &out->return_routes, err, errlen)) < 0)
		goto fail;
	json_decref(root);
	out->top_n = (int)top;
	out->seqs = q.v;
	out->n_seqs = q.n;
	return 0;
fail:
	json_decref(root);
	seqs_free(q.v, q.n);
	memset(out, 0, sizeof(*out));
	return rv;
}

void api_forward_req_free(struct api_forward_req *r)
{
	seqs_free(r->seqs, r->n_seqs);
	memset(r, 0, sizeof(*r));
}
