/* The JSON API: request bodies -> C structs (strict validation, messages
 * that name the field), C results -> response objects.  No I/O here.
 *
 * POST /v1/completions, fields (null counts as absent):
 *   prompt       token ids [1,2,3], a batch [[1,2],[3]], or text ("..." or
 *                ["...", ...]) when a tokenizer is given (else 400).  Required.
 *   max_tokens   integer >= 0, default 16, capped by api_limits.max_tokens_cap
 *   temperature  number >= 0, default 1.0 (OpenAI's default); 0 is greedy
 *   top_p        0 < p <= 1, default 1
 *   seed         integer, optional
 *   stop         a token id, an array of token ids (each one a stop token),
 *                or an array of token id arrays (stop sequences); text only
 *                with a tokenizer
 *   stream       boolean, default false (server-sent events)
 *   model        string, optional; stored, not checked here
 *   n / best_of  only 1;  echo only false;  logprobs only null/0/false;
 *   suffix only null;  presence_penalty / frequency_penalty only 0;
 *   logit_bias only {}  -- other values are a 400 naming the field.
 *   Any other field is ignored (clients send user, stream_options, ...).
 *
 * POST /v1/forward: sequences (or prompt, same forms as above; not both),
 *   top_n (integer 0..vocab; 0/absent = full logits), return_routes (bool).
 *
 * Parsers return 0, -EINVAL (answer 400 with err) or -ENOMEM. */
#ifndef DAEMON_API_H
#define DAEMON_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct api_limits {
	int vocab_size;                  /* every token id must be below this */
	int max_tokens_cap;              /* 0: no cap */
	int max_ctx;                     /* prompt + max_tokens; 0: unchecked */
	int max_prompts;                 /* sequences in one request [64] */
	int max_stop;                    /* stop sequences [16] */
};

/* Text to token ids (malloc'd into *ids), for prompts sent as text.  Returns
 * 0 or a negative errno. */
typedef int (*api_tokenize_fn)(void *ctx, const char *text, size_t len,
			       int32_t **ids, size_t *n);
struct api_tokenizer {
	api_tokenize_fn encode;
	void *ctx;
};

struct api_seq {
	int32_t *ids;
	size_t n;
};

struct api_completion_req {
	struct api_seq *prompts;
	size_t n_prompts;
	int max_tokens;
	double temperature;
	double top_p;
	bool has_seed;
	uint64_t seed;
	struct api_seq *stop;
	size_t n_stop;
	bool stream;
	bool text_prompt;                /* the prompt came as text */
	char model[128];
	char **stop_text;                /* stop given as text (also encoded in stop) */
	size_t n_stop_text;
};

struct api_forward_req {
	struct api_seq *seqs;
	size_t n_seqs;
	int top_n;
	bool return_routes;
};

/* tok may be NULL. */
int api_parse_completion(const char *body, size_t len, const struct api_limits *lim,
			 const struct api_tokenizer *tok,
			 struct api_completion_req *out, char *err, size_t errlen);
void api_completion_req_free(struct api_completion_req *r);
int api_parse_forward(const char *body, size_t len, const struct api_limits *lim,
		      const struct api_tokenizer *tok,
		      struct api_forward_req *out, char *err, size_t errlen);
void api_forward_req_free(struct api_forward_req *r);

/* --- responses (each returns a new reference, NULL on ENOMEM) --- */

enum api_finish { API_FINISH_NONE = 0, API_FINISH_LENGTH, API_FINISH_STOP };

struct api_choice {
	const int32_t *tokens;
	size_t n_tokens;
	const char *text;                /* NULL: no "text" field */
	enum api_finish finish;          /* NONE -> null (mid-stream) */
};

struct api_moe_stats {
	uint64_t hits, misses, bytes_loaded;
	double predicted_recall;         /* < 0: null (no prediction ran) */
};

struct api_completion_resp {
	const char *id;                  /* "cmpl-..." (api_make_id) */
	int64_t created;                 /* unix seconds */
	const char *model;
	const struct api_choice *choices;
	size_t n_choices;
	size_t prompt_tokens;            /* over all prompts */
	const struct api_moe_stats *moe; /* NULL: no "moe" field */
	size_t completion_tokens;        /* closing chunk only (no choices): the total */
};

/* {id, object:"text_completion", created, model, choices:[{index, tokens,
 * text?, finish_reason}], usage:{prompt_tokens, completion_tokens,
 * total_tokens}, moe?:{hits, misses, bytes_loaded, predicted_recall}} */
json_t *api_completion_json(const struct api_completion_resp *r);
/* One streamed piece: the same object with one choice at `index` and no
 * usage; with r->n_choices == 0 it is the closing usage chunk
 * (choices: [], usage, moe). */
json_t *api_completion_chunk_json(const struct api_completion_resp *r, size_t index);
/* "data: <compact json>\n\n" (malloc'd). */
int api_sse_event(const json_t *obj, char **buf, size_t *len);
extern const char api_sse_done[];  /* "data: [DONE]\n\n" */
/* prefix + 24 random hex digits, e.g. "cmpl-3f0c...". */
void api_make_id(char *buf, size_t n, const char *prefix);

struct api_forward_result {
	const float *logits;             /* n_vocab values, or NULL if top is used */
	size_t n_vocab;
	const int32_t *top_ids;          /* n_top ids, best first */
	const float *top_logits;
	size_t n_top;
	const int32_t *routes;           /* [layer][pos][k] or NULL */
	size_t n_layers, n_pos, k;
};

/* {results:[{logits:[...]} | {top:[{id, logit}]}, routes?:[[[...]]]]}
 * Non-finite logits become null. */
json_t *api_forward_json(const struct api_forward_result *res, size_t n);

#endif
