/* moed serve, shared between its files: serve.c (process, HTTP routes,
 * signals, health), front.c (requests, batching, worker results) and
 * serve_metrics.c (the /metrics and /v1/experts views). */
#ifndef DAEMON_SERVE_H
#define DAEMON_SERVE_H

#include <nng/nng.h>
#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "daemon/api.h"
#include "daemon/config.h"
#include "daemon/http.h"
#include "daemon/metrics.h"
#include "daemon/supervisor.h"
#include "loader/hfconfig.h"
#include "proto/proto.h"
#include "tokenizer/tok.h"

enum req_kind { REQ_COMPLETION, REQ_FORWARD };

struct sreq;

/* One sequence of a request: one prompt. */
struct sseq {
	uint64_t id;
	struct sreq *r;
	int index;                 /* choice / result index */
	const int32_t *prompt;     /* points into the parsed request */
	int n_prompt;
	int32_t *tokens;           /* generated */
	int n_tokens, cap;
	int finish;                /* enum proto_finish */
	int32_t status;
	float *logits;             /* forward */
	int32_t *routes;           /* forward + return_routes: [layer][pos][k] */
	struct proto_moe_counts moe;
	bool sent;                 /* handed to the worker */
	bool done;
	int table_status;
	/* text, when the model has a tokenizer */
	char *text;                /* decoded output, NUL-terminated */
	size_t text_len, text_cap, text_sent;
	size_t *text_end;          /* [n_tokens]: text length after each token */
	size_t text_end_cap;
	struct tok_stream ts;
	bool ts_on, chunk_sent;
};

struct sreq {
	struct server *s;
	struct http_req *http;     /* NULL once answered or the client left */
	enum req_kind kind;
	struct api_completion_req creq;
	struct api_forward_req freq;
	struct sseq *seqs;
	int n_seqs, n_done;
	bool stream, streaming;
	double t_start;
	char id[48];
	int64_t created;
	const char *endpoint;
	bool chat;                 /* /v1/chat/completions */
	int32_t extra_stop[4];     /* stop tokens not asked for: eos, <|im_end|> */
	int n_extra_stop;
};

struct metrics_set {
	struct metric *requests, *latency, *tokens_in, *tokens_out, *queue_depth;
	struct metric *batch_seqs, *batch_tokens, *restarts, *inflight;
	struct metric *table_status, *recall, *malformed;
};

struct server {
	uv_loop_t *loop;
	struct moed_config cfg;
	char cfg_file[CFG_PATH_MAX + 64];  /* effective config for the children */
	char dir[CFG_PATH_MAX];            /* runtime dir */
	struct ld_config mc;
	char model_name[256];
	struct http_server *http;
	struct metrics *metrics;
	struct metrics_set m;
	struct child *worker, *predictor;
	bool worker_ready, ready_notified, draining;
	bool worker_started;               /* the worker has been ready once */
	int exit_code;
	char auth_token[512];
	bool auth_broken;                  /* token file unreadable: refuse all */
	int argc;                          /* the command line, read again on SIGHUP */
	char **argv;
	struct tok *tok;                   /* NULL: the model has no tokenizer.json */
	bool has_chat;
	enum tok_chat chat_kind;
	char chat_why[256];
	int eos_id, im_end_id;
	long log_tok_in, log_tok_out;      /* for the access line of the answer being sent; -1 */
	/* nng */
	nng_socket work, pred, results;
	pthread_t rx_thread;
	bool rx_run;
	uv_async_t rx_async;
	pthread_mutex_t rx_lock;
	struct rx_item *rx_head, *rx_tail;
	/* requests */
	struct sseq **queued;              /* waiting for a batch */
	int n_queued, queued_cap, queued_tokens;
	struct sseq **inflight;            /* sent to the worker */
	int n_inflight, inflight_cap;
	int n_requests;                    /* open requests */
	uint64_t next_seq, next_batch;
	uv_timer_t batch_timer, drain_timer;
	uv_signal_t sig_term, sig_int, sig_hup;
	double drain_deadline;
};

/* front.c */
int front_open(struct server *s, char *err, size_t n);
void front_close(struct server *s);
/* Queues the request's sequences; answers 429/503 itself when it cannot. */
void front_submit(struct server *s, struct sreq *r);
void sreq_free(struct sreq *r);

/* front_answer.c */
/* Sends q's tokens from index `from` on as one event of r's stream. */
void front_stream_tokens(struct sreq *r, struct sseq *q, int from);
/* Every sequence of r has finished: answers (or ends the stream), frees r. */
void front_complete(struct server *s, struct sreq *r);
/* The worker went away: every sequence it held fails with 503. */
void front_worker_lost(struct server *s);
/* The client left: the worker drops r's sequences it holds (no answer is
 * owed); r completes once nothing of it is left in flight. */
void front_cancel(struct server *s, struct sreq *r);

/* front_text.c */
int text_open(struct server *s, char *err, size_t n);
void text_close(struct server *s);
int text_encode_cb(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n);
/* Decodes q's newest token into q->text; true when a stop string completed
 * (text and tokens are then cut before it). */
bool text_push(struct server *s, struct sseq *q);
void text_flush(struct server *s, struct sseq *q);
void text_seq_free(struct sseq *q);
void text_default_stops(const struct server *s, struct sreq *r);
/* A chat request body -> a completion request body with the rendered
 * conversation's token ids as its prompt. */
int chat_prepare(struct server *s, const char *body, size_t len, char **out,
		 char *err, size_t n);
json_t *chat_json(const struct sreq *r, json_t *usage, json_t *moe);
json_t *chat_chunk_json(const struct sreq *r, const struct sseq *q, const char *delta,
			bool first);
json_t *chat_usage_chunk(const struct sreq *r, json_t *usage, json_t *moe);
void serve_handle_tokenize(struct server *s, struct http_req *req);
void serve_handle_detokenize(struct server *s, struct http_req *req);

/* serve_metrics.c */
void serve_metrics_init(struct server *s);
void serve_metrics_request(struct server *s, const char *endpoint, int status,
			   double seconds);
void serve_handle_metrics(struct server *s, struct http_req *req);
void serve_handle_experts(struct server *s, struct http_req *req);

/* serve.c */
bool serve_healthy(const struct server *s);

/* serve_auth.c.  Reads auth.token_file into s (none set: no token); on
 * failure s->auth_broken is set and every protected request is refused. */
int serve_read_token(struct server *s, char *err, size_t n);
/* Whether req carries the token (constant-time comparison). */
bool serve_authorized(const struct server *s, struct http_req *req);
double serve_now(const struct server *s);

#endif
