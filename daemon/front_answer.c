/* The front's answers: completion and chat objects, server-sent events,
 * /v1/forward results, and the end of a request. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/serve.h"

static void request_done(struct server *s, struct sreq *r, int status)
{
	serve_metrics_request(s, r->endpoint, status, serve_now(s) - r->t_start);
	s->n_requests--;
	sreq_free(r);
}

static void moe_of(const struct sreq *r, struct api_moe_stats *m)
{
	uint64_t used = 0, pred = 0;

	memset(m, 0, sizeof(*m));
	for (int i = 0; i < r->n_seqs; i++) {
		const struct proto_moe_counts *c = &r->seqs[i].moe;

		m->hits += c->hits;
		m->misses += c->misses;
		m->bytes_loaded += c->bytes_loaded;
		used += c->experts_used;
		pred += c->experts_predicted_used;
	}
	m->predicted_recall = r->s->cfg.predictor.kind == CFG_PRED_NONE || !used ?
		-1.0 : (double)pred / (double)used;
}

static enum api_finish finish_of(int f)
{
	return f == PROTO_FINISH_STOP ? API_FINISH_STOP :
	       f == PROTO_FINISH_NONE ? API_FINISH_NONE : API_FINISH_LENGTH;
}

static void fill_resp(const struct sreq *r, struct api_completion_resp *resp,
		      struct api_choice *ch, struct api_moe_stats *moe)
{
	memset(resp, 0, sizeof(*resp));
	resp->id = r->id;
	resp->created = r->created;
	resp->model = r->s->model_name;
	resp->choices = ch;
	resp->n_choices = (size_t)r->n_seqs;
	resp->moe = moe;
	moe_of(r, moe);
	for (int i = 0; i < r->n_seqs; i++) {
		const struct sseq *q = &r->seqs[i];

		resp->prompt_tokens += (size_t)q->n_prompt;
		ch[i] = (struct api_choice){.tokens = q->tokens, .n_tokens = (size_t)q->n_tokens,
					    .finish = finish_of(q->finish),
					    .text = r->s->tok ? (q->text ? q->text : "") : NULL};
	}
}

static int first_error(const struct sreq *r)
{
	for (int i = 0; i < r->n_seqs; i++)
		if (r->seqs[i].status < 0 || r->seqs[i].finish == PROTO_FINISH_ERROR)
			return r->seqs[i].status ? r->seqs[i].status : -EIO;
	return 0;
}

static int error_status(int err)
{
	return err == -ECONNRESET ? 503 : err == -ERANGE ? 400 : 500;
}

static void sse(struct sreq *r, json_t *obj)
{
	char *buf;
	size_t len;

	if (obj && r->http && api_sse_event(obj, &buf, &len) == 0) {
		http_stream_write(r->http, buf, len);
		free(buf);
	}
	json_decref(obj);
}

void front_stream_tokens(struct sreq *r, struct sseq *q, int from)
{
	struct api_choice ch[r->n_seqs];
	struct api_completion_resp resp;
	struct api_moe_stats moe;

	const char *delta = q->text ? q->text + q->text_sent : NULL;

	fill_resp(r, &resp, ch, &moe);
	ch[q->index].tokens = q->tokens + from;
	ch[q->index].n_tokens = (size_t)(q->n_tokens - from);
	ch[q->index].text = r->s->tok ? (delta ? delta : "") : NULL;
	resp.choices = &ch[q->index];
	resp.n_choices = 1;
	if (!r->streaming && r->http) {
		http_stream_begin(r->http, 200, "text/event-stream");
		r->streaming = true;
	}
	if (r->chat) {
		/* A token that completes no character yet has nothing to say. */
		if (q->chunk_sent && (!delta || !*delta) && q->finish == PROTO_FINISH_NONE)
			return;
		sse(r, chat_chunk_json(r, q, delta, !q->chunk_sent));
	} else
		sse(r, api_completion_chunk_json(&resp, (size_t)q->index));
	q->chunk_sent = true;
	q->text_sent = q->text_len;
}

/* The top n logits of v, best first (ties: lower id). */
static void top_n(const float *v, int vocab, int n, int32_t *ids, float *val)
{
	for (int i = 0; i < n; i++) {
		int best = -1;

		for (int j = 0; j < vocab; j++) {
			bool taken = false;

			for (int u = 0; u < i && !taken; u++)
				taken = ids[u] == j;
			if (!taken && (best < 0 || v[j] > v[best]))
				best = j;
		}
		ids[i] = best;
		val[i] = v[best];
	}
}

static void respond_forward(struct server *s, struct sreq *r)
{
	struct api_forward_result res[r->n_seqs];
	int n = r->freq.top_n, vocab = s->mc.vocab_size;
	int32_t *ids = calloc((size_t)r->n_seqs * (n + 1), sizeof(int32_t));
	float *val = calloc((size_t)r->n_seqs * (n + 1), sizeof(float));

	for (int i = 0; i < r->n_seqs; i++) {
		struct sseq *q = &r->seqs[i];

		memset(&res[i], 0, sizeof(res[i]));
		if (n > 0 && ids && val && q->logits) {
			top_n(q->logits, vocab, n, ids + i * (n + 1), val + i * (n + 1));
			res[i].top_ids = ids + i * (n + 1);
			res[i].top_logits = val + i * (n + 1);
			res[i].n_top = (size_t)n;
		} else {
			res[i].logits = q->logits;
			res[i].n_vocab = q->logits ? (size_t)vocab : 0;
		}
		if (q->routes) {
			res[i].routes = q->routes;
			res[i].n_layers = (size_t)s->mc.n_moe_layers;
			res[i].n_pos = (size_t)q->n_prompt;
			res[i].k = (size_t)s->mc.top_k;
		}
	}
	http_respond_json(r->http, 200, api_forward_json(res, (size_t)r->n_seqs));
	free(ids);
	free(val);
}

static json_t *usage_json_of(const struct sreq *r)
{
	json_int_t p = 0, c = 0;

	for (int i = 0; i < r->n_seqs; i++) {
		p += r->seqs[i].n_prompt;
		c += r->seqs[i].n_tokens;
	}
	return json_pack("{s:I, s:I, s:I}", "prompt_tokens", p, "completion_tokens", c,
			 "total_tokens", p + c);
}

static json_t *moe_json_of(const struct sreq *r)
{
	struct api_moe_stats m;

	moe_of(r, &m);
	return json_pack("{s:I, s:I, s:I, s:o}", "hits", (json_int_t)m.hits, "misses",
			 (json_int_t)m.misses, "bytes_loaded", (json_int_t)m.bytes_loaded,
			 "predicted_recall", m.predicted_recall < 0 ? json_null() :
			 json_real(m.predicted_recall));
}

/* Every sequence of r has finished: answer (or end the stream). */
void front_complete(struct server *s, struct sreq *r)
{
	struct api_choice ch[r->n_seqs];
	struct api_completion_resp resp;
	struct api_moe_stats moe;
	int err = first_error(r), status = err ? error_status(err) : 200;

	if (!r->http) {
		request_done(s, r, 499);
		return;
	}
	s->log_tok_in = s->log_tok_out = 0;
	for (int i = 0; i < r->n_seqs; i++) {
		s->log_tok_in += r->seqs[i].n_prompt;
		s->log_tok_out += r->seqs[i].n_tokens;
	}
	if (r->streaming) {
		if (err) {
			json_t *e = http_error_json(status, NULL, strerror(-err));
			sse(r, e);
		} else {
			fill_resp(r, &resp, ch, &moe);
			for (int i = 0; i < r->n_seqs; i++)
				resp.completion_tokens += (size_t)r->seqs[i].n_tokens;
			resp.n_choices = 0;
			sse(r, r->chat ? chat_usage_chunk(r, usage_json_of(r), moe_json_of(r)) :
			    api_completion_chunk_json(&resp, 0));
		}
		http_stream_write(r->http, api_sse_done, strlen(api_sse_done));
		http_stream_end(r->http);
	} else if (err) {
		http_respond_error(r->http, status, NULL, err == -ECONNRESET ?
				   "the worker restarted while serving this request; retry" :
				   strerror(-err));
	} else if (r->kind == REQ_FORWARD) {
		respond_forward(s, r);
	} else if (r->chat) {
		http_respond_json(r->http, 200, chat_json(r, usage_json_of(r), moe_json_of(r)));
	} else {
		fill_resp(r, &resp, ch, &moe);
		http_respond_json(r->http, 200, api_completion_json(&resp));
	}
	r->http = NULL;
	request_done(s, r, status);
}
