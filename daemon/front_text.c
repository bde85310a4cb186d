/* Text in, text out: the model's tokenizer.json behind /v1/completions
 * (text prompts, "text" in choices, text stop strings, streamed text
 * deltas), /v1/chat/completions (ChatML and [INST] templates rendered in C),
 * /v1/tokenize and /v1/detokenize. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/serve.h"

int text_open(struct server *s, char *err, size_t n)
{
	char path[CFG_PATH_MAX + 32], cerr[256];
	int rv;

	snprintf(path, sizeof(path), "%s/tokenizer.json", s->cfg.model.path);
	if (access(path, R_OK) != 0)
		return 0;  /* no tokenizer: token ids only */
	if ((rv = tok_open(path, &s->tok, err, n)) < 0)
		return rv;
	if (tok_vocab_size(s->tok) > s->mc.vocab_size) {
		snprintf(err, n, "%s: %d tokens, more than the model's vocab_size %d", path,
			 tok_vocab_size(s->tok), s->mc.vocab_size);
		return -EINVAL;
	}
	s->eos_id = tok_eos_id(s->tok);
	s->im_end_id = tok_token_id(s->tok, "<|im_end|>");
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", s->cfg.model.path);
	rv = tok_chat_detect(path, &s->chat_kind, cerr, sizeof(cerr));
	s->has_chat = rv == 0;
	if (rv < 0)
		snprintf(s->chat_why, sizeof(s->chat_why), "%s", rv == -ENOENT ?
			 "the model has no chat template" : cerr);
	log_msg(LOG_INFO, "tokenizer: %d tokens, eos %d, chat %s", tok_vocab_size(s->tok),
		s->eos_id, s->has_chat ? "yes" : s->chat_why);
	return 0;
}

void text_close(struct server *s)
{
	tok_close(s->tok);
	s->tok = NULL;
}

int text_encode_cb(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n)
{
	struct server *s = ctx;

	return tok_encode(s->tok, text, len, 1, ids, n);
}

static int grow(struct sseq *q, size_t more)
{
	if (q->text_len + more + 1 > q->text_cap) {
		size_t cap = (q->text_len + more + 1) * 2;
		char *t = realloc(q->text, cap);

		if (!t)
			return -ENOMEM;
		q->text = t;
		q->text_cap = cap;
	}
	return 0;
}

static void add_piece(struct sseq *q, const char *p, size_t len)
{
	if (len && grow(q, len) == 0) {
		memcpy(q->text + q->text_len, p, len);
		q->text_len += len;
		q->text[q->text_len] = 0;
	}
}

/* Cuts the output where the first stop string starts; the tokens kept are
 * those whose text ends before it. */
static bool cut_at_stop(struct sseq *q)
{
	const struct sreq *r = q->r;
	char *best = NULL;

	if (!q->text)
		return false;
	for (size_t i = 0; i < r->creq.n_stop_text; i++) {
		char *at = strstr(q->text, r->creq.stop_text[i]);

		if (at && (!best || at < best))
			best = at;
	}
	if (!best)
		return false;
	q->text_len = (size_t)(best - q->text);
	q->text[q->text_len] = 0;
	while (q->n_tokens > 0 && q->text_end[q->n_tokens - 1] > q->text_len)
		q->n_tokens--;
	if (q->text_sent > q->text_len)
		q->text_sent = q->text_len;
	return true;
}

bool text_push(struct server *s, struct sseq *q)
{
	const char *piece;
	size_t len;
	int32_t id = q->tokens[q->n_tokens - 1];

	if (!s->tok)
		return false;
	if (!q->ts_on) {
		tok_stream_init(&q->ts, 1);
		q->ts_on = true;
		if (grow(q, 64) == 0)
			q->text[q->text_len] = 0;
	}
	if (tok_stream_push(s->tok, &q->ts, id, &piece, &len) == 0)
		add_piece(q, piece, len);
	if ((size_t)q->n_tokens > q->text_end_cap) {
		size_t cap = (size_t)q->n_tokens * 2 + 16, *e = realloc(q->text_end, cap * sizeof(*e));

		if (!e)
			return false;
		q->text_end = e;
		q->text_end_cap = cap;
	}
	q->text_end[q->n_tokens - 1] = q->text_len;
	return cut_at_stop(q);
}

void text_flush(struct server *s, struct sseq *q)
{
	const char *piece;
	size_t len;

	if (!s->tok || !q->ts_on)
		return;
	if (q->finish != PROTO_FINISH_STOP && tok_stream_flush(s->tok, &q->ts, &piece, &len) == 0)
		add_piece(q, piece, len);
	tok_stream_free(&q->ts);
	q->ts_on = false;
}

void text_seq_free(struct sseq *q)
{
	if (q->ts_on)
		tok_stream_free(&q->ts);
	free(q->text);
	free(q->text_end);
}

static const char *const roles[] = {"system", "user", "assistant"};

/* messages -> the rendered prompt's token ids, as a JSON array. */
static json_t *chat_prompt(struct server *s, json_t *msgs, char *err, size_t n)
{
	size_t count = json_array_size(msgs), i, n_ids = 0;
	struct tok_msg m[count ? count : 1];
	char *text = NULL;
	int32_t *ids = NULL;
	json_t *e, *out = NULL;

	if (!json_is_array(msgs) || !count) {
		snprintf(err, n, "messages: expected a non-empty array of {role, content}");
		return NULL;
	}
	json_array_foreach(msgs, i, e) {
		json_t *role = json_object_get(e, "role"), *content = json_object_get(e, "content");
		bool known = false;

		for (size_t r = 0; r < 3 && json_is_string(role); r++)
			known |= !strcmp(json_string_value(role), roles[r]);
		if (!known) {
			snprintf(err, n, "messages[%zu].role: expected system, user or assistant", i);
			return NULL;
		}
		if (!json_is_string(content)) {
			snprintf(err, n, "messages[%zu].content: expected a string", i);
			return NULL;
		}
		m[i] = (struct tok_msg){json_string_value(role), json_string_value(content)};
	}
	if (tok_chat_render(s->chat_kind, m, count, 1, &text, err, n) < 0)
		return NULL;
	if (tok_encode(s->tok, text, strlen(text), 0, &ids, &n_ids) == 0 && n_ids) {
		out = json_array();
		for (i = 0; i < n_ids; i++)
			json_array_append_new(out, json_integer(ids[i]));
	} else {
		snprintf(err, n, "messages: the rendered conversation encodes to no tokens");
	}
	free(text);
	free(ids);
	return out;
}

int chat_prepare(struct server *s, const char *body, size_t len, char **out,
		 char *err, size_t n)
{
	json_error_t je;
	json_t *root, *prompt;

	if (!s->tok) {
		snprintf(err, n, "this model has no tokenizer.json, so no chat; use /v1/completions "
			 "with token ids");
		return -EINVAL;
	}
	if (!s->has_chat) {
		snprintf(err, n, "chat is not available for this model: %s", s->chat_why);
		return -EINVAL;
	}
	if (!(root = json_loadb(body, len, 0, &je)) || !json_is_object(root)) {
		snprintf(err, n, "request body is not a JSON object: %s", je.text);
		json_decref(root);
		return -EINVAL;
	}
	if (json_object_get(root, "tools") && !json_is_null(json_object_get(root, "tools"))) {
		snprintf(err, n, "tools: not supported");
		json_decref(root);
		return -EINVAL;
	}
	if (json_object_get(root, "prompt")) {
		snprintf(err, n, "prompt: not a chat field; send messages");
		json_decref(root);
		return -EINVAL;
	}
	if (!(prompt = chat_prompt(s, json_object_get(root, "messages"), err, n))) {
		json_decref(root);
		return -EINVAL;
	}
	json_object_del(root, "messages");
	json_object_set_new(root, "prompt", prompt);
	if (json_object_get(root, "max_completion_tokens") && !json_object_get(root, "max_tokens"))
		json_object_set(root, "max_tokens", json_object_get(root, "max_completion_tokens"));
	json_object_del(root, "max_completion_tokens");
	*out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return *out ? 0 : -ENOMEM;
}

/* The tokens a request stops on without being asked: the end of text, and
 * for ChatML the end of a turn. */
void text_default_stops(const struct server *s, struct sreq *r)
{
	if (!s->tok)
		return;
	if (s->eos_id >= 0)
		r->extra_stop[r->n_extra_stop++] = s->eos_id;
	if (r->chat && s->im_end_id >= 0 && s->im_end_id != s->eos_id)
		r->extra_stop[r->n_extra_stop++] = s->im_end_id;
}

static const char *finish_name(int f)
{
	return f == PROTO_FINISH_STOP ? "stop" : f == PROTO_FINISH_NONE ? NULL : "length";
}

static json_t *chat_envelope(const struct sreq *r, const char *object)
{
	return json_pack("{s:s, s:s, s:I, s:s}", "id", r->id, "object", object, "created",
			 (json_int_t)r->created, "model", r->s->model_name);
}

json_t *chat_json(const struct sreq *r, json_t *usage, json_t *moe)
{
	json_t *o = chat_envelope(r, "chat.completion"), *choices = json_array();

	for (int i = 0; i < r->n_seqs; i++) {
		const struct sseq *q = &r->seqs[i];
		const char *f = finish_name(q->finish);

		json_array_append_new(choices, json_pack(
			"{s:i, s:{s:s, s:s}, s:n, s:s?}", "index", i, "message", "role", "assistant",
			"content", q->text ? q->text : "", "logprobs", "finish_reason", f));
	}
	json_object_set_new(o, "choices", choices);
	json_object_set_new(o, "usage", usage);
	json_object_set_new(o, "moe", moe);
	return o;
}

json_t *chat_chunk_json(const struct sreq *r, const struct sseq *q, const char *delta,
			bool first)
{
	json_t *o = chat_envelope(r, "chat.completion.chunk");
	json_t *d = json_object();
	const char *f = finish_name(q->finish);

	if (first)
		json_object_set_new(d, "role", json_string("assistant"));
	if (delta && *delta)
		json_object_set_new(d, "content", json_string(delta));
	json_object_set_new(o, "choices", json_pack("[{s:i, s:o, s:n, s:s?}]", "index", q->index,
						    "delta", d, "logprobs", "finish_reason", f));
	return o;
}

json_t *chat_usage_chunk(const struct sreq *r, json_t *usage, json_t *moe)
{
	json_t *o = chat_envelope(r, "chat.completion.chunk");

	json_object_set_new(o, "choices", json_array());
	json_object_set_new(o, "usage", usage);
	json_object_set_new(o, "moe", moe);
	return o;
}

static void tok_error(struct server *s, struct http_req *req, const char *ep, int status,
		      const char *msg)
{
	http_respond_error(req, status, NULL, msg);
	serve_metrics_request(s, ep, status, 0);
}

void serve_handle_tokenize(struct server *s, struct http_req *req)
{
	size_t len, n = 0;
	const char *body = http_req_body(req, &len);
	json_t *root = json_loadb(body, len, 0, NULL), *p, *add, *ids;
	int32_t *out = NULL;

	if (!s->tok) {
		tok_error(s, req, "/v1/tokenize", 400, "this model has no tokenizer.json");
	} else if (!root || !json_is_string(p = json_object_get(root, "prompt"))) {
		tok_error(s, req, "/v1/tokenize", 400, "prompt: expected a string");
	} else if ((add = json_object_get(root, "add_special_tokens")) && !json_is_boolean(add)) {
		tok_error(s, req, "/v1/tokenize", 400, "add_special_tokens: expected true or false");
	} else if (tok_encode(s->tok, json_string_value(p), json_string_length(p),
			      add ? json_is_true(add) : 1, &out, &n) < 0) {
		tok_error(s, req, "/v1/tokenize", 500, "the tokenizer failed");
	} else {
		ids = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(ids, json_integer(out[i]));
		http_respond_json(req, 200, json_pack("{s:o, s:I, s:i}", "tokens", ids, "count",
						      (json_int_t)n, "max_model_len",
						      s->cfg.model.max_ctx));
		serve_metrics_request(s, "/v1/tokenize", 200, 0);
	}
	free(out);
	json_decref(root);
}

void serve_handle_detokenize(struct server *s, struct http_req *req)
{
	size_t len, n, tl;
	const char *body = http_req_body(req, &len);
	json_t *root = json_loadb(body, len, 0, NULL), *t, *e, *skip;
	int32_t *ids = NULL;
	char *text = NULL, msg[160];
	bool ok = true;

	if (!s->tok) {
		tok_error(s, req, "/v1/detokenize", 400, "this model has no tokenizer.json");
		goto out;
	}
	if (!root || !json_is_array(t = json_object_get(root, "tokens"))) {
		tok_error(s, req, "/v1/detokenize", 400, "tokens: expected an array of token ids");
		goto out;
	}
	if ((skip = json_object_get(root, "skip_special_tokens")) && !json_is_boolean(skip)) {
		tok_error(s, req, "/v1/detokenize", 400, "skip_special_tokens: expected true or false");
		goto out;
	}
	ids = calloc(json_array_size(t) + 1, sizeof(int32_t));
	json_array_foreach(t, n, e) {
		if (!json_is_integer(e) || json_integer_value(e) < 0 ||
		    json_integer_value(e) >= tok_vocab_size(s->tok)) {
			snprintf(msg, sizeof(msg), "tokens[%zu]: not a token id of this tokenizer "
				 "(0..%d)", n, tok_vocab_size(s->tok) - 1);
			tok_error(s, req, "/v1/detokenize", 400, msg);
			ok = false;
			break;
		}
		ids[n] = (int32_t)json_integer_value(e);
	}
	if (ok && tok_decode(s->tok, ids, json_array_size(t), json_is_true(skip), &text, &tl) == 0) {
		http_respond_json(req, 200, json_pack("{s:s%}", "prompt", text, tl));
		serve_metrics_request(s, "/v1/detokenize", 200, 0);
	} else if (ok) {
		tok_error(s, req, "/v1/detokenize", 500, "the tokenizer failed");
	}
out:
	free(ids);
	free(text);
	json_decref(root);
}
