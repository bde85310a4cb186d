/* JSON API: request validation (every bad field gives a message naming it)
 * and response objects. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/api.h"
#include "tests/suite_run.h"

static const struct api_limits lim = { .vocab_size = 32000, .max_tokens_cap = 4096 };

/* Bytes as token ids: enough to see that text goes through the tokenizer. */
static int byte_tok(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n)
{
	(void)ctx;
	*ids = malloc((len ? len : 1) * sizeof(**ids));
	if (!*ids)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		(*ids)[i] = (unsigned char)text[i];
	*n = len;
	return 0;
}

static const struct api_tokenizer tok = { byte_tok, NULL };

static int parse_c(const char *body, const struct api_limits *l,
		   const struct api_tokenizer *t, struct api_completion_req *r, char *err)
{
	return api_parse_completion(body, strlen(body), l, t, r, err, 256);
}

START_TEST(completion_good)
{
	struct api_completion_req r;
	char err[256] = "";
	const char *body = "{\"prompt\":[1,2,3],\"max_tokens\":5,\"temperature\":0,"
			   "\"top_p\":0.9,\"seed\":42,\"stop\":[[7,8],[9]],\"stream\":true,"
			   "\"model\":\"m1\",\"user\":\"u\",\"n\":1,\"echo\":false,"
			   "\"logprobs\":null,\"stream_options\":{\"include_usage\":true}}";

	ck_assert_msg(parse_c(body, &lim, NULL, &r, err) == 0, "%s", err);
	ck_assert_uint_eq(r.n_prompts, 1);
	ck_assert_uint_eq(r.prompts[0].n, 3);
	ck_assert_int_eq(r.prompts[0].ids[2], 3);
	ck_assert_int_eq(r.max_tokens, 5);
	ck_assert(r.temperature == 0.0);
	ck_assert(r.top_p == 0.9);
	ck_assert(r.has_seed);
	ck_assert_uint_eq(r.seed, 42);
	ck_assert_uint_eq(r.n_stop, 2);
	ck_assert_uint_eq(r.stop[0].n, 2);
	ck_assert_int_eq(r.stop[0].ids[1], 8);
	ck_assert_uint_eq(r.stop[1].n, 1);
	ck_assert(r.stream);
	ck_assert(!r.text_prompt);
	ck_assert_str_eq(r.model, "m1");
	api_completion_req_free(&r);
}
END_TEST

START_TEST(completion_defaults_and_forms)
{
	struct api_completion_req r;
	char err[256] = "";

	ck_assert_int_eq(parse_c("{\"prompt\":[1],\"max_tokens\":null}", &lim, NULL, &r, err), 0);
	ck_assert_int_eq(r.max_tokens, 16);
	ck_assert(r.temperature == 1.0);
	ck_assert(r.top_p == 1.0);
	ck_assert(!r.has_seed && !r.stream);
	ck_assert_uint_eq(r.n_stop, 0);
	ck_assert_str_eq(r.model, "");
	api_completion_req_free(&r);

	ck_assert_int_eq(parse_c("{\"prompt\":[[1,2],[3]],\"stop\":[2,5]}", &lim, NULL, &r,
				 err), 0);
	ck_assert_uint_eq(r.n_prompts, 2);
	ck_assert_uint_eq(r.prompts[1].n, 1);
	ck_assert_uint_eq(r.n_stop, 2);       /* two single-token stops */
	ck_assert_uint_eq(r.stop[1].n, 1);
	ck_assert_int_eq(r.stop[1].ids[0], 5);
	api_completion_req_free(&r);

	ck_assert_int_eq(parse_c("{\"prompt\":[1],\"stop\":2,\"seed\":-3}", &lim, NULL, &r,
				 err), 0);
	ck_assert_uint_eq(r.n_stop, 1);
	ck_assert(r.has_seed);
	ck_assert_uint_eq(r.seed, (uint64_t)-3);
	api_completion_req_free(&r);

	ck_assert_int_eq(parse_c("{\"prompt\":\"hi\",\"stop\":[\"x\"]}", &lim, &tok, &r, err),
			 0);
	ck_assert(r.text_prompt);
	ck_assert_uint_eq(r.prompts[0].n, 2);
	ck_assert_int_eq(r.prompts[0].ids[0], 'h');
	ck_assert_int_eq(r.stop[0].ids[0], 'x');
	api_completion_req_free(&r);

	ck_assert_int_eq(parse_c("{\"prompt\":[\"ab\",\"c\"]}", &lim, &tok, &r, err), 0);
	ck_assert_uint_eq(r.n_prompts, 2);
	api_completion_req_free(&r);
}
END_TEST

struct bad_case {
	const char *body;
	const char *msg;                 /* the error starts with this */
};

static const struct bad_case bad_completions[] = {
	{ "", "request body is empty" },
	{ "{", "request body is not valid JSON" },
	{ "{\"prompt\":[1]} x", "request body is not valid JSON" },
	{ "{\"prompt\":[1],\"prompt\":[2]}", "request body is not valid JSON" },
	{ "[1]", "request body must be a JSON object" },
	{ "{}", "prompt: required" },
	{ "{\"prompt\":null}", "prompt: must be" },
	{ "{\"prompt\":[]}", "prompt: must not be empty" },
	{ "{\"prompt\":{\"a\":1}}", "prompt: must be" },
	{ "{\"prompt\":[[1],[]]}", "prompt[1]: must not be empty" },
	{ "{\"prompt\":[[1,2,3,99999]]}",
	  "prompt[0][3]: token id 99999 is outside the vocabulary (size 32000)" },
	{ "{\"prompt\":[1,-1]}", "prompt[1]: token id -1 is outside the vocabulary" },
	{ "{\"prompt\":[1,2.5]}", "prompt[1]: token ids must be integers" },
	{ "{\"prompt\":[[1],2]}", "prompt[1]: expected an array of token ids" },
	{ "{\"prompt\":[true]}", "prompt[0]: expected token ids" },
	{ "{\"prompt\":\"text\"}", "prompt: text prompts need a tokenizer; send token ids" },
	{ "{\"prompt\":[\"a\"]}", "prompt: text prompts need a tokenizer; send token ids" },
	{ "{\"prompt\":[1],\"max_tokens\":-1}", "max_tokens: -1 is out of range" },
	{ "{\"prompt\":[1],\"max_tokens\":\"8\"}", "max_tokens: must be an integer" },
	{ "{\"prompt\":[1],\"max_tokens\":1.5}", "max_tokens: must be an integer" },
	{ "{\"prompt\":[1],\"max_tokens\":5000}",
	  "max_tokens: 5000 exceeds the server limit of 4096" },
	{ "{\"prompt\":[1],\"temperature\":-0.5}", "temperature: -0.5 must be >= 0" },
	{ "{\"prompt\":[1],\"temperature\":\"hot\"}", "temperature: must be a number" },
	{ "{\"prompt\":[1],\"top_p\":0}", "top_p: 0 must be in (0, 1]" },
	{ "{\"prompt\":[1],\"top_p\":1.5}", "top_p: 1.5 must be in (0, 1]" },
	{ "{\"prompt\":[1],\"seed\":\"x\"}", "seed: must be an integer" },
	{ "{\"prompt\":[1],\"seed\":1.5}", "seed: must be an integer" },
	{ "{\"prompt\":[1],\"stream\":1}", "stream: must be true or false" },
	{ "{\"prompt\":[1],\"n\":2}", "n: only 1 is supported" },
	{ "{\"prompt\":[1],\"best_of\":3}", "best_of: only 1 is supported" },
	{ "{\"prompt\":[1],\"echo\":true}", "echo: not supported" },
	{ "{\"prompt\":[1],\"logprobs\":5}", "logprobs: not supported" },
	{ "{\"prompt\":[1],\"suffix\":\"x\"}", "suffix: not supported" },
	{ "{\"prompt\":[1],\"presence_penalty\":0.5}", "presence_penalty: not supported" },
	{ "{\"prompt\":[1],\"frequency_penalty\":1}", "frequency_penalty: not supported" },
	{ "{\"prompt\":[1],\"logit_bias\":{\"1\":2}}", "logit_bias: not supported" },
	{ "{\"prompt\":[1],\"model\":5}", "model: must be a string" },
	{ "{\"prompt\":[1],\"stop\":\"x\"}",
	  "stop: text stop sequences need a tokenizer; send token ids" },
	{ "{\"prompt\":[1],\"stop\":[[1],[]]}", "stop[1]: must not be empty" },
	{ "{\"prompt\":[1],\"stop\":[40000]}", "stop[0]: token id 40000 is outside" },
	{ "{\"prompt\":[1],\"stop\":[[1],[2,40000]]}", "stop[1][1]: token id 40000" },
	{ "{\"prompt\":[1],\"stop\":{}}", "stop: must be" },
	{ "{\"prompt\":[1],\"stop\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}",
	  "stop: 17 stop sequences exceed the limit of 16" },
};

START_TEST(completion_bad_fields)
{
	const struct bad_case *c = &bad_completions[_i];
	struct api_completion_req r;
	char err[256] = "";
	int rv = parse_c(c->body, &lim, NULL, &r, err);

	ck_assert_msg(rv == -EINVAL, "%s: rv %d", c->body, rv);
	ck_assert_msg(!strncmp(err, c->msg, strlen(c->msg)), "%s: got '%s', want '%s...'",
		      c->body, err, c->msg);
	ck_assert_ptr_null(r.prompts);
}
END_TEST

START_TEST(completion_limits)
{
	struct api_limits l = lim;
	struct api_completion_req r;
	char err[256], body[1024];
	int n;

	l.max_ctx = 20;
	ck_assert_int_eq(parse_c("{\"prompt\":[1,2,3,4,5,6,7,8,9,10]}", &l, NULL, &r, err),
			 -EINVAL);
	ck_assert_str_eq(err, "prompt[0]: 10 tokens plus max_tokens 16 exceed the context "
		       "length 20");
	ck_assert_int_eq(parse_c("{\"prompt\":[1,2,3,4],\"max_tokens\":16}", &l, NULL, &r,
				 err), 0);
	api_completion_req_free(&r);

	n = snprintf(body, sizeof(body), "{\"prompt\":[");
	for (int i = 0; i < 65; i++)
		n += snprintf(body + n, sizeof(body) - (size_t)n, "%s[1]", i ? "," : "");
	snprintf(body + n, sizeof(body) - (size_t)n, "]}");
	ck_assert_int_eq(parse_c(body, &lim, NULL, &r, err), -EINVAL);
	ck_assert_str_eq(err, "prompt: 65 sequences exceed the limit of 64");
}
END_TEST

static int parse_f(const char *body, struct api_forward_req *r, char *err)
{
	return api_parse_forward(body, strlen(body), &lim, NULL, r, err, 256);
}

START_TEST(forward_parse)
{
	static const struct bad_case bad[] = {
		{ "{}", "sequences: required (or prompt)" },
		{ "{\"sequences\":[[1]],\"prompt\":[1]}", "sequences: give sequences or prompt" },
		{ "{\"sequences\":[[99999]]}",
		  "sequences[0][0]: token id 99999 is outside the vocabulary (size 32000)" },
		{ "{\"sequences\":[]}", "sequences: must not be empty" },
		{ "{\"sequences\":[[1]],\"top_n\":-1}", "top_n: -1 is out of range" },
		{ "{\"sequences\":[[1]],\"top_n\":32001}", "top_n: 32001 is out of range" },
		{ "{\"sequences\":[[1]],\"return_routes\":\"yes\"}",
		  "return_routes: must be true or false" },
	};
	struct api_forward_req r;
	char err[256] = "";

	ck_assert_msg(parse_f("{\"sequences\":[[1,2],[3]],\"top_n\":5,\"return_routes\":true}",
			      &r, err) == 0, "%s", err);
	ck_assert_uint_eq(r.n_seqs, 2);
	ck_assert_uint_eq(r.seqs[0].n, 2);
	ck_assert_int_eq(r.top_n, 5);
	ck_assert(r.return_routes);
	api_forward_req_free(&r);
	ck_assert_int_eq(parse_f("{\"prompt\":[4,5]}", &r, err), 0);
	ck_assert_uint_eq(r.n_seqs, 1);
	ck_assert_int_eq(r.top_n, 0);
	ck_assert(!r.return_routes);
	api_forward_req_free(&r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(parse_f(bad[i].body, &r, err), -EINVAL);
		ck_assert_msg(!strncmp(err, bad[i].msg, strlen(bad[i].msg)), "%s: got '%s'",
			      bad[i].body, err);
	}
}
END_TEST

START_TEST(completion_response)
{
	static const int32_t t0[] = { 5, 6 }, t1[] = { 7 };
	const struct api_choice ch[] = {
		{ t0, 2, "ab", API_FINISH_LENGTH }, { t1, 1, NULL, API_FINISH_STOP },
	};
	const struct api_moe_stats moe = { 10, 2, 4096, 0.75 };
	struct api_completion_resp r = { .id = "cmpl-x", .created = 1700000000, .model = "mix",
					  .choices = ch, .n_choices = 2, .prompt_tokens = 4,
					  .moe = &moe };
	json_t *j = api_completion_json(&r), *choices, *usage, *m;
	const char *id, *obj, *model, *fin;
	json_int_t created, pt, ct, tt, hits, misses, bytes;
	double recall;

	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(json_unpack(j, "{s:s, s:s, s:I, s:s, s:o, s:o, s:o}", "id", &id,
				     "object", &obj, "created", &created, "model", &model,
				     "choices", &choices, "usage", &usage, "moe", &m), 0);
	ck_assert_str_eq(id, "cmpl-x");
	ck_assert_str_eq(obj, "text_completion");
	ck_assert_int_eq(created, 1700000000);
	ck_assert_uint_eq(json_array_size(choices), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(choices, 0), "text")),
			 "ab");
	ck_assert_ptr_null(json_object_get(json_array_get(choices, 1), "text"));
	ck_assert_int_eq(json_unpack(json_array_get(choices, 1), "{s:s}", "finish_reason",
				     &fin), 0);
	ck_assert_str_eq(fin, "stop");
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(
		json_array_get(choices, 0), "tokens"), 1)), 6);
	ck_assert_int_eq(json_unpack(usage, "{s:I, s:I, s:I}", "prompt_tokens", &pt,
				     "completion_tokens", &ct, "total_tokens", &tt), 0);
	ck_assert_int_eq(pt, 4);
	ck_assert_int_eq(ct, 3);
	ck_assert_int_eq(tt, 7);
	ck_assert_int_eq(json_unpack(m, "{s:I, s:I, s:I, s:f}", "hits", &hits, "misses",
				     &misses, "bytes_loaded", &bytes, "predicted_recall",
				     &recall), 0);
	ck_assert_int_eq(hits, 10);
	ck_assert_int_eq(bytes, 4096);
	ck_assert(recall == 0.75);
	json_decref(j);
}
END_TEST

START_TEST(stream_chunks)
{
	static const int32_t t[] = { 9 };
	const struct api_choice ch = { t, 1, NULL, API_FINISH_NONE };
	const struct api_moe_stats moe = { 1, 1, 0, -1 };
	struct api_completion_resp r = { .id = "cmpl-y", .created = 1, .choices = &ch,
					  .n_choices = 1, .prompt_tokens = 3 };
	json_t *j = api_completion_chunk_json(&r, 0);
	char *buf;
	size_t len;

	ck_assert_int_eq(api_sse_event(j, &buf, &len), 0);
	ck_assert_uint_eq(len, strlen(buf));
	ck_assert_str_eq(buf, "data: {\"id\":\"cmpl-y\",\"object\":\"text_completion\","
		       "\"created\":1,\"model\":null,\"choices\":[{\"index\":0,\"tokens\":[9],"
		       "\"logprobs\":null,\"finish_reason\":null}]}\n\n");
	free(buf);
	json_decref(j);

	r.n_choices = 0;
	r.moe = &moe;
	j = api_completion_chunk_json(&r, 0);
	ck_assert_uint_eq(json_array_size(json_object_get(j, "choices")), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "usage"),
							    "prompt_tokens")), 3);
	ck_assert(json_is_null(json_object_get(json_object_get(j, "moe"), "predicted_recall")));
	json_decref(j);
	ck_assert_str_eq(api_sse_done, "data: [DONE]\n\n");
}
END_TEST

START_TEST(forward_response)
{
	static const float logits[] = { 0.5f, -INFINITY, 2.0f };
	static const int32_t top_ids[] = { 2, 0 };
	static const float top_l[] = { 2.0f, 0.5f };
	static const int32_t routes[] = { 1, 2, 3, 4, 5, 6, 7, 0 }; /* 2 layers, 2 pos, k 2 */
	const struct api_forward_result res[] = {
		{ .logits = logits, .n_vocab = 3 },
		{ .top_ids = top_ids, .top_logits = top_l, .n_top = 2, .routes = routes,
		  .n_layers = 2, .n_pos = 2, .k = 2 },
	};
	json_t *j = api_forward_json(res, 2);
	char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));

	ck_assert_str_eq(s, "{\"results\":[{\"logits\":[0.5,null,2.0]},"
		       "{\"top\":[{\"id\":2,\"logit\":2.0},{\"id\":0,\"logit\":0.5}],"
		       "\"routes\":[[[1,2],[3,4]],[[5,6],[7,0]]]}]}");
	free(s);
	json_decref(j);
}
END_TEST

START_TEST(make_id)
{
	char a[64], b[64];

	api_make_id(a, sizeof(a), "cmpl-");
	api_make_id(b, sizeof(b), "cmpl-");
	ck_assert_uint_eq(strlen(a), 5 + 24);
	ck_assert(!strncmp(a, "cmpl-", 5));
	ck_assert_uint_eq(strspn(a + 5, "0123456789abcdef"), 24);
	ck_assert_str_ne(a, b);
}
END_TEST

static Suite *api_suite(void)
{
	Suite *s = suite_create("api");
	TCase *tc = tcase_create("api");

	tcase_add_test(tc, completion_good);
	tcase_add_test(tc, completion_defaults_and_forms);
	tcase_add_loop_test(tc, completion_bad_fields, 0,
			    sizeof(bad_completions) / sizeof(bad_completions[0]));
	tcase_add_test(tc, completion_limits);
	tcase_add_test(tc, forward_parse);
	tcase_add_test(tc, completion_response);
	tcase_add_test(tc, stream_chunks);
	tcase_add_test(tc, forward_response);
	tcase_add_test(tc, make_id);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return suite_run(api_suite());
}
