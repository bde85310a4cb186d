/* moed serve: the front and supervisor.  HTTP on libuv, a worker and a
 * predictor as child processes, systemd notification, SIGTERM drain and
 * SIGHUP reload. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "daemon/cmds.h"
#include "daemon/log.h"
#include "daemon/rt.h"
#include "daemon/serve.h"

static void notify(const char *state)
{
#ifdef HAVE_SYSTEMD
	sd_notify(0, state);
#else
	(void)state;
#endif
}

double serve_now(const struct server *s)
{
	return (double)uv_now(s->loop) / 1000.0;
}

/* Requests need only the worker: without the predictor it runs each batch
 * with on-demand loading (exact output), so a predictor crash or restart
 * degrades speed, not service. */
bool serve_healthy(const struct server *s)
{
	return s->worker_ready && child_running(s->worker) && !s->draining;
}

static bool predictor_ok(const struct server *s)
{
	return s->cfg.predictor.kind == CFG_PRED_NONE || child_running(s->predictor);
}

static void respond_status(struct server *s, struct http_req *req, const char *ep,
			   int status, const char *msg, const char *retry_after)
{
	json_t *e = http_error_json(status, NULL, msg);
	char *body = json_dumps(e, JSON_COMPACT);
	struct http_header h[1];
	size_t nh = 0;

	if (status == 401)
		h[nh++] = (struct http_header){"WWW-Authenticate", "Bearer"};
	else if (retry_after)
		h[nh++] = (struct http_header){"Retry-After", retry_after};
	http_respond_ex(req, status, "application/json", h, nh, body, body ? strlen(body) : 0);
	free(body);
	json_decref(e);
	serve_metrics_request(s, ep, status, 0);
}

static void handle_health(struct server *s, struct http_req *req)
{
	/* A child the supervisor gave up on makes the instance unhealthy (a
	 * load balancer takes it out), even if requests still work. */
	bool gave_up = child_gave_up(s->worker) || child_gave_up(s->predictor);
	bool ok = serve_healthy(s) && !gave_up;
	json_t *j = json_pack("{s:s, s:b, s:s, s:i, s:i}", "status",
			      ok ? (predictor_ok(s) ? "ok" : "degraded") :
			      gave_up ? "unhealthy" :
			      s->draining ? "draining" : "loading",
			      "worker", s->worker_ready && child_running(s->worker),
			      "predictor", s->cfg.predictor.kind == CFG_PRED_NONE ? "off" :
			      child_running(s->predictor) ? "up" : "down",
			      "worker_pid", child_pid(s->worker), "predictor_pid",
			      child_pid(s->predictor));

	http_respond_json(req, ok ? 200 : 503, j);
	serve_metrics_request(s, "/health", ok ? 200 : 503, 0);
}

static void handle_models(struct server *s, struct http_req *req)
{
	json_t *m = json_pack("{s:s, s:s, s:i, s:s, s:{s:s, s:i, s:i, s:i, s:i, s:i}}",
			      "id", s->model_name, "object", "model", "created", 0,
			      "owned_by", "moed", "moe", "family", ld_family_name(s->mc.family),
			      "layers", s->mc.n_layers, "moe_layers", s->mc.n_moe_layers,
			      "experts", s->mc.n_experts, "top_k", s->mc.top_k,
			      "vocab_size", s->mc.vocab_size);

	json_object_set_new(m, "tokenizer", json_boolean(s->tok != NULL));
	json_object_set_new(m, "chat", json_boolean(s->has_chat));
	json_object_set_new(m, "max_model_len", json_integer(s->cfg.model.max_ctx));

	http_respond_json(req, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", m));
	serve_metrics_request(s, "/v1/models", 200, 0);
}

static struct sreq *new_req(struct server *s, struct http_req *req, enum req_kind kind,
			    const char *ep)
{
	struct sreq *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->s = s;
	r->http = req;
	r->kind = kind;
	r->endpoint = ep;
	r->t_start = serve_now(s);
	r->created = (int64_t)time(NULL);
	api_make_id(r->id, sizeof(r->id), kind == REQ_FORWARD ? "fwd-" :
		    !strcmp(ep, "/v1/chat/completions") ? "chatcmpl-" : "cmpl-");
	return r;
}

static void on_client_gone(struct http_req *req, void *ctx)
{
	struct sreq *r = ctx;

	(void)req;
	r->http = NULL;
	front_cancel(r->s, r);
}

/* The request's body into r (a chat is rendered into a completion first);
 * 0 or negative errno with err set. */
static int parse_generate(struct server *s, struct sreq *r, struct http_req *req,
			  enum req_kind kind, const char *ep, char *err, size_t errlen)
{
	struct api_limits lim = {.vocab_size = s->mc.vocab_size, .max_ctx = s->cfg.model.max_ctx};
	struct api_tokenizer tk = {.encode = text_encode_cb, .ctx = s};
	size_t len;
	const char *body = http_req_body(req, &len);
	char *chat_body = NULL;
	int rv = 0;

	r->chat = !strcmp(ep, "/v1/chat/completions");
	if (r->chat && (rv = chat_prepare(s, body, len, &chat_body, err, errlen)) == 0) {
		body = chat_body;
		len = strlen(chat_body);
	}
	if (rv < 0)
		;
	else if (kind == REQ_FORWARD)
		rv = api_parse_forward(body, len, &lim, s->tok ? &tk : NULL, &r->freq, err, errlen);
	else
		rv = api_parse_completion(body, len, &lim, s->tok ? &tk : NULL, &r->creq, err,
					  errlen);
	if (rv == 0 && kind == REQ_COMPLETION)
		text_default_stops(s, r);
	free(chat_body);
	return rv;
}

/* Whether n more sequences may be queued: 0, or the status to answer with
 * err (*retry: the Retry-After value, or NULL). */
static int admit(const struct server *s, enum req_kind kind, size_t n, char *err,
		 size_t errlen, const char **retry)
{
	*retry = NULL;
	if ((int)n > s->cfg.batch.max_queue) {
		/* It could never fit: a 429 would have the client retry forever. */
		snprintf(err, errlen, "%s: %zu sequences exceed batch.max_queue (%d)",
			 kind == REQ_FORWARD ? "sequences" : "prompt", n,
			 s->cfg.batch.max_queue);
		return 400;
	}
	*retry = "1";
	if (!serve_healthy(s)) {
		snprintf(err, errlen, "%s", s->draining ? "shutting down" :
			 "the model is not ready yet");
		return 503;
	}
	if (s->n_queued + s->n_inflight + (int)n > s->cfg.batch.max_queue) {
		snprintf(err, errlen, "too many requests in the queue; retry later");
		return 429;
	}
	return 0;
}

/* Parses a completion or forward request and queues it. */
static void handle_generate(struct server *s, struct http_req *req, enum req_kind kind,
			    const char *ep)
{
	struct sreq *r = new_req(s, req, kind, ep);
	const char *retry;
	char err[512];
	size_t n;
	int rv, st;

	if (!r) {
		respond_status(s, req, ep, 500, "out of memory", NULL);
		return;
	}
	if ((rv = parse_generate(s, r, req, kind, ep, err, sizeof(err))) < 0) {
		respond_status(s, req, ep, rv == -ENOMEM ? 500 : 400, err, NULL);
		sreq_free(r);
		return;
	}
	n = kind == REQ_FORWARD ? r->freq.n_seqs : r->creq.n_prompts;
	if ((st = admit(s, kind, n, err, sizeof(err), &retry)) ||
	    !(r->seqs = calloc(n, sizeof(*r->seqs)))) {
		respond_status(s, req, ep, st ? st : 500, st ? err : "out of memory",
			       st ? retry : NULL);
		sreq_free(r);
		return;
	}
	r->stream = kind == REQ_COMPLETION && r->creq.stream;
	r->n_seqs = (int)n;
	for (size_t i = 0; i < n; i++) {
		const struct api_seq *p = kind == REQ_FORWARD ? &r->freq.seqs[i] : &r->creq.prompts[i];

		r->seqs[i].prompt = p->ids;
		r->seqs[i].n_prompt = (int)p->n;
	}
	http_req_on_close(req, on_client_gone, r);
	s->n_requests++;
	front_submit(s, r);
}

static void on_request(void *ctx, struct http_req *req)
{
	static const struct {
		const char *path, *method;
		int id;
	} routes[] = {
		{"/health", "GET", 0}, {"/metrics", "GET", 1}, {"/v1/models", "GET", 2},
		{"/v1/experts", "GET", 3}, {"/v1/completions", "POST", 4},
		{"/v1/forward", "POST", 5}, {"/v1/chat/completions", "POST", 6},
		{"/v1/tokenize", "POST", 7}, {"/v1/detokenize", "POST", 8},
	};
	struct server *s = ctx;
	const char *path = http_req_path(req), *method = http_req_method(req);

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(path, routes[i].path))
			continue;
		if (strcmp(method, routes[i].method)) {
			struct http_header allow = {"Allow", routes[i].method};
			json_t *e = http_error_json(405, NULL, "method not allowed");
			char *b = json_dumps(e, JSON_COMPACT);

			http_respond_ex(req, 405, "application/json", &allow, 1, b, strlen(b));
			free(b);
			json_decref(e);
			serve_metrics_request(s, routes[i].path, 405, 0);
			return;
		}
		if (routes[i].id > 0 && !serve_authorized(s, req)) {
			respond_status(s, req, routes[i].path, 401, "missing or wrong bearer token", NULL);
			return;
		}
		switch (routes[i].id) {
		case 0: handle_health(s, req); return;
		case 1: serve_handle_metrics(s, req); return;
		case 2: handle_models(s, req); return;
		case 3: serve_handle_experts(s, req); return;
		case 4: handle_generate(s, req, REQ_COMPLETION, routes[i].path); return;
		case 5: handle_generate(s, req, REQ_FORWARD, routes[i].path); return;
		case 6: handle_generate(s, req, REQ_COMPLETION, routes[i].path); return;
		case 7: serve_handle_tokenize(s, req); return;
		default: serve_handle_detokenize(s, req); return;
		}
	}
	respond_status(s, req, "other", 404, "no such endpoint", NULL);
}

/* One line per request; tokens when the answer was a generation. */
static void on_access(void *ctx, const struct http_access *a)
{
	struct server *s = ctx;
	char tok[64] = "";

	if (s->log_tok_in >= 0)
		snprintf(tok, sizeof(tok), " tokens_in=%ld tokens_out=%ld", s->log_tok_in,
			 s->log_tok_out);
	s->log_tok_in = s->log_tok_out = -1;
	log_msg(LOG_INFO, "%s %s %d %.6fs in=%lluB out=%lluB%s %s", a->method, a->path,
		a->status, a->duration_s, (unsigned long long)a->bytes_in,
		(unsigned long long)a->bytes_out, tok, a->remote);
}

static void start_drain(struct server *s, const char *why);
static void shutdown_now(struct server *s);

static void on_child_exit(struct child *c, void *ctx, int64_t status, int sig)
{
	struct server *s = ctx;

	(void)sig;
	if (c != s->worker && c != s->predictor)
		return;  /* stopped by shutdown_now */
	if (c == s->worker && !s->worker_started && status != 0) {
		/* It never came up (bad model file, backend missing...): its
		 * error line is above; restarting would only repeat it. */
		log_msg(LOG_ERR, "serve: the worker could not start (exit status %lld); stopping",
			(long long)status);
		s->exit_code = 1;
		shutdown_now(s);
		return;
	}
	metric_inc(s->m.restarts, (const char *[]){c == s->worker ? "worker" : "predictor"});
	if (c == s->worker)
		front_worker_lost(s);
	if (child_gave_up(c)) {
		/* Given up: /health says unhealthy from now on (the process stays,
		 * so an operator or load balancer sees why); requests still work
		 * without a predictor, and get 503 without a worker. */
		log_msg(LOG_ERR, "unhealthy: the %s keeps crashing; not restarting it",
			c == s->worker ? "worker" : "predictor");
		notify(c == s->worker ? "STATUS=unhealthy: the worker keeps crashing" :
		       "STATUS=unhealthy: the predictor keeps crashing");
	}
}

static int start_children(struct server *s)
{
	static char exe[4096];
	size_t n = sizeof(exe);
	static char *wargv[5], *pargv[5];
	struct child_opts o = {.max_restarts = s->cfg.supervisor.max_restarts,
			       .window_s = s->cfg.supervisor.window_s,
			       .on_exit = on_child_exit, .ctx = s};
	int rv;

	if ((rv = uv_exepath(exe, &n)) < 0)
		return rv;
	wargv[0] = pargv[0] = exe;
	wargv[1] = "worker";
	pargv[1] = "predictor";
	wargv[2] = pargv[2] = "--config";
	wargv[3] = pargv[3] = s->cfg_file;
	o.name = "worker";
	o.argv = wargv;
	if ((rv = child_start(s->loop, &o, &s->worker)) < 0)
		return rv;
	if (s->cfg.predictor.kind == CFG_PRED_NONE)
		return 0;
	o.name = "predictor";
	o.argv = pargv;
	return child_start(s->loop, &o, &s->predictor);
}

static void on_http_closed(void *ctx)
{
	(void)ctx;
}

static void shutdown_now(struct server *s)
{
	log_msg(LOG_INFO, "stopping: %d requests still open", s->n_requests);
	uv_timer_stop(&s->drain_timer);
	uv_close((uv_handle_t *)&s->drain_timer, NULL);
	uv_close((uv_handle_t *)&s->sig_term, NULL);
	uv_close((uv_handle_t *)&s->sig_int, NULL);
	uv_close((uv_handle_t *)&s->sig_hup, NULL);
	child_stop(s->worker);
	child_stop(s->predictor);
	s->worker = s->predictor = NULL;
	front_close(s);
	http_server_close(s->http, on_http_closed);
}

/* Ticks every 100 ms: READY=1 once healthy; during a drain, stops when no
 * request is open or drain_s has passed. */
static void on_tick(uv_timer_t *t)
{
	struct server *s = t->data;

	if (!s->ready_notified && serve_healthy(s) && predictor_ok(s)) {
		s->ready_notified = true;
		notify("READY=1\nSTATUS=serving");
		log_msg(LOG_INFO, "ready: serving %s on %s", s->model_name, s->cfg.http.listen);
	}
	if (s->draining && ((s->n_requests == 0 && http_server_active_requests(s->http) == 0) ||
			    serve_now(s) > s->drain_deadline))
		shutdown_now(s);
}

static void start_drain(struct server *s, const char *why)
{
	if (s->draining)
		return;
	log_msg(LOG_INFO, "%s: draining (at most %.1f s)", why,
		s->cfg.shutdown.drain_s);
	notify("STOPPING=1");
	s->draining = true;
	s->drain_deadline = serve_now(s) + s->cfg.shutdown.drain_s;
	http_server_stop_accepting(s->http);
}

static void on_sigterm(uv_signal_t *h, int sig)
{
	char why[32];

	snprintf(why, sizeof(why), "signal %d", sig);
	start_drain(h->data, why);
}

/* SIGHUP: the token file and the log level are re-read; everything else
 * needs a restart. */
/* SIGHUP: the command line (and the --config files it names) is read again;
 * log.level and auth.token_file take effect, everything else needs a
 * restart. */
static void on_sighup(uv_signal_t *h, int sig)
{
	struct server *s = h->data;
	struct moed_config c;
	char err[512];

	(void)sig;
	notify("RELOADING=1");
	cfg_defaults(&c);
	if (cfg_parse_args(&c, s->argc, s->argv, cmd_help_flag, (void *)"", err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "reload: %s (nothing changed)", err);
	} else {
		log_set_level((int)c.log.level);
		s->cfg.log.level = c.log.level;
		memcpy(s->cfg.auth.token_file, c.auth.token_file, sizeof(c.auth.token_file));
		if (serve_read_token(s, err, sizeof(err)) < 0)
			log_msg(LOG_ERR, "reload: %s (auth now refuses every request)", err);
		else
			log_msg(LOG_INFO, "reloaded the auth token and log level");
	}
	notify("READY=1");
}

static int write_effective_config(struct server *s, char *err, size_t n)
{
	FILE *f;

	snprintf(s->cfg_file, sizeof(s->cfg_file), "%s/effective-config.json", s->dir);
	if (!(f = fopen(s->cfg_file, "w"))) {
		snprintf(err, n, "%s: %s", s->cfg_file, strerror(errno));
		return -errno;
	}
	chmod(s->cfg_file, 0600);
	cfg_dump_json(&s->cfg, f);
	return fclose(f) == 0 ? 0 : -EIO;
}

static int setup(struct server *s, char *err, size_t n)
{
	char path[CFG_PATH_MAX + 16], host[256];
	const char *base;
	int rv, port;
	struct http_opts ho = {
		.max_header_bytes = (size_t)s->cfg.http.max_header_bytes,
		.max_headers = (unsigned)s->cfg.http.max_headers,
		.max_body_bytes = (size_t)s->cfg.http.max_body_bytes,
		.request_timeout_ms = (uint64_t)(s->cfg.http.request_timeout_s * 1000),
		.idle_timeout_ms = (uint64_t)(s->cfg.http.idle_timeout_s * 1000),
		.on_access = on_access,
	};

	if (!s->cfg.model.path[0]) {
		snprintf(err, n, "no model: set model.path (--model DIR)");
		return -EINVAL;
	}
	if (s->cfg.predictor.kind == CFG_PRED_ORACLE) {
		/* It needs to know each token's place in a recorded trace, which
		 * live traffic does not have. */
		snprintf(err, n, "predictor.kind oracle replays a recorded trace and is for "
			 "`moed eval-predictor`; serve with none, freq or cepr");
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "%s/config.json", s->cfg.model.path);
	if ((rv = ld_config_read(path, &s->mc, err, n)) < 0 || (rv = text_open(s, err, n)) < 0)
		return rv;
	/* A backend that cannot work here (no card, no xclbin): fail now, not
	 * with a worker that would only crash-loop. */
	if ((rv = rt_check(&s->cfg, err, n)) < 0)
		return rv;
	base = strrchr(s->cfg.model.path, '/');
	snprintf(s->model_name, sizeof(s->model_name), "%s",
		 base && base[1] ? base + 1 : s->cfg.model.path);
	if ((rv = serve_read_token(s, err, n)) < 0)
		return rv;
	if ((rv = cfg_runtime_dir(&s->cfg, s->dir, sizeof(s->dir))) < 0 ||
	    (rv = front_open(s, err, n)) < 0 || (rv = write_effective_config(s, err, n)) < 0)
		return rv;
	if ((rv = cfg_split_listen(s->cfg.http.listen, host, sizeof(host), &port)) < 0) {
		snprintf(err, n, "http.listen: '%s' is not host:port", s->cfg.http.listen);
		return rv;
	}
	if (!(s->http = http_server_new(s->loop, &ho, on_request, s)))
		return -ENOMEM;
	if ((rv = http_server_listen(s->http, host, port, err, n)) < 0)
		return rv;
	log_msg(LOG_INFO, "listening on %s:%d", host, http_server_port(s->http));
	if ((rv = start_children(s)) < 0) {
		snprintf(err, n, "cannot start the children: %s", uv_strerror(rv));
		return rv;
	}
	return 0;
}

static void init_handles(struct server *s)
{
	uv_timer_init(s->loop, &s->drain_timer);
	s->drain_timer.data = s;
	uv_timer_start(&s->drain_timer, on_tick, 100, 100);
	uv_signal_init(s->loop, &s->sig_term);
	uv_signal_init(s->loop, &s->sig_int);
	uv_signal_init(s->loop, &s->sig_hup);
	s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
	uv_signal_start(&s->sig_term, on_sigterm, SIGTERM);
	uv_signal_start(&s->sig_int, on_sigterm, SIGINT);
	uv_signal_start(&s->sig_hup, on_sighup, SIGHUP);
}

static const char usage_text[] =
	"usage: moed serve [--config FILE] [--set key=value]... [flags]\n\nServes model.path over HTTP on http.listen, with a worker and a predictor\nas child processes.\n";

int cmd_serve(int argc, char **argv)
{
	static struct server srv;
	struct server *s = &srv;
	char err[1024];

	cfg_defaults(&s->cfg);
	s->argc = argc - 1;
	s->argv = argv + 1;
	if (cfg_parse_args(&s->cfg, argc - 1, argv + 1, cmd_help_flag, (void *)usage_text, err,
			   sizeof(err)) < 0) {
		fprintf(stderr, "moed serve: %s\n", err);
		return 2;
	}
	log_set_level((int)s->cfg.log.level);
	signal(SIGPIPE, SIG_IGN);
	s->eos_id = s->im_end_id = -1;
	s->log_tok_in = s->log_tok_out = -1;
	s->loop = uv_default_loop();
	s->metrics = metrics_new();
	serve_metrics_init(s);
	init_handles(s);
	if (setup(s, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "serve: %s", err);
		return 1;
	}
	uv_run(s->loop, UV_RUN_DEFAULT);
	text_close(s);
	metrics_free(s->metrics);
	log_msg(LOG_INFO, "stopped");
	return s->exit_code;
}
