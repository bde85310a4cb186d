/* HTTP/1.1 server: connections, input, timers, writes, shutdown.
 * Binding the listener: http_listen.c; answers and request accessors:
 * http_resp.c. */
#include "daemon/http_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK (64 * 1024)
#define LINGER_MS 2000

struct wreq {
	uv_write_t w;
	struct http_conn *conn;
	bool ends_req;
	size_t len;
	char data[];
};

static void conn_process(struct http_conn *c);
static void conn_settle(struct http_conn *c);

void http_log(struct http_server *srv, const char *method, const char *path,
	      const char *remote, int status, uint64_t t0, uint64_t in, uint64_t out)
{
	struct http_access a = {
		.method = method ? method : "-", .path = path ? path : "-",
		.remote = remote, .status = status,
		.duration_s = t0 ? (double)(uv_hrtime() - t0) / 1e9 : 0.0,
		.bytes_in = in, .bytes_out = out,
	};

	if (srv->opts.on_access)
		srv->opts.on_access(srv->ctx, &a);
}

static void set_timer(struct http_conn *c, enum conn_timer mode);

static void server_maybe_free(struct http_server *srv)
{
	http_closed_fn cb = srv->closed_cb;
	void *ctx = srv->ctx;

	if (!srv->closing || srv->n_alloc || srv->listener_open || srv->closer_open)
		return;
	free(srv);
	if (cb)
		cb(ctx);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	struct http_server *srv = c->srv;

	if (--c->handles)
		return;
	http_rx_free(&c->rx);
	free(c->in);
	free(c);
	srv->n_alloc--;
	server_maybe_free(srv);
}

/* Immediate close.  A request the app still holds is detached and its
 * on_close runs. */
void http_conn_close(struct http_conn *c)
{
	struct http_server *srv = c->srv;
	struct http_req *req = c->req;

	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->n_conns--;
	srv->active -= c->open_reqs;
	c->open_reqs = 0;
	if (req) {
		c->req = NULL;
		req->conn = NULL;
		if (!req->ended) {
			http_log(srv, req->msg->method, req->msg->path, req->remote, 499,
				 req->t_start, req->msg->body_len, req->bytes_out);
			/* With a close callback the app lets go of the request in
			 * it, so its reference goes here; without one it keeps the
			 * request until it ends it (a no-op answer). */
			if (req->on_close) {
				req->on_close(req, req->close_ctx);
				if (!req->ended) {
					req->ended = true;
					http_req_unref(req);
				}
			}
		}
		http_req_unref(req);
	}
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	uv_close((uv_handle_t *)&c->kick, conn_handle_closed);
}

static void on_timer(uv_timer_t *t)
{
	struct http_conn *c = t->data;
	char msg[96];

	switch (c->tmode) {
	case T_REQUEST:
		snprintf(msg, sizeof(msg), "request not received within %.3f s",
			 (double)c->srv->opts.request_timeout_ms / 1000.0);
		c->tmode = T_NONE;
		http_conn_fail(c, 408, msg);
		break;
	case T_IDLE:
	case T_LINGER:
		http_conn_close(c);
		break;
	case T_NONE:
		break;
	}
}

static void set_timer(struct http_conn *c, enum conn_timer mode)
{
	uint64_t ms = 0;

	if (c->tmode == mode)
		return;
	c->tmode = mode;
	if (mode == T_NONE) {
		uv_timer_stop(&c->timer);
		return;
	}
	if (mode == T_IDLE)
		ms = c->srv->opts.idle_timeout_ms;
	else if (mode == T_REQUEST)
		ms = c->srv->opts.request_timeout_ms;
	else
		ms = c->srv->opts.request_timeout_ms < LINGER_MS ?
			c->srv->opts.request_timeout_ms : LINGER_MS;
	uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
	struct http_conn *c = s->data;

	if (c->closing)
		return;
	if (status < 0 || c->eof) {
		http_conn_close(c);
		return;
	}
	/* Read until the client's FIN so that unread input does not turn our
	 * close into a reset that could destroy the answer in flight. */
	c->lingering = true;
	set_timer(c, T_LINGER);
	conn_settle(c);
}

static void conn_shutdown(struct http_conn *c)
{
	c->close_after = true;
	if (c->writes || c->lingering || c->closing)
		return;
	if (c->eof) {
		http_conn_close(c);
		return;
	}
	set_timer(c, T_NONE);
	c->shut.data = c;
	if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
		http_conn_close(c);
}

static void on_write(uv_write_t *w, int status)
{
	struct wreq *wr = (struct wreq *)w;
	struct http_conn *c = wr->conn;
	bool ends = wr->ends_req;

	free(wr);
	c->writes--;
	if (c->closing)
		return;
	if (status < 0) {
		http_conn_close(c);
		return;
	}
	if (ends && c->open_reqs) {
		c->open_reqs--;
		c->srv->active--;
	}
	if (c->close_after)
		conn_shutdown(c);
	else
		conn_settle(c);
}

int http_conn_write(struct http_conn *c, const uv_buf_t *parts, int n, bool ends_req)
{
	struct wreq *wr;
	size_t len = 0;
	uv_buf_t b;
	int rv;

	if (c->closing)
		return -ENOTCONN;
	for (int i = 0; i < n; i++)
		len += parts[i].len;
	wr = malloc(sizeof(*wr) + len);
	if (!wr)
		return -ENOMEM;
	wr->conn = c;
	wr->ends_req = ends_req;
	wr->len = 0;
	for (int i = 0; i < n; i++) {
		if (parts[i].len)
			memcpy(wr->data + wr->len, parts[i].base, parts[i].len);
		wr->len += parts[i].len;
	}
	b = uv_buf_init(wr->data, (unsigned)wr->len);
	rv = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (rv < 0) {
		free(wr);
		http_conn_close(c);
		return -ENOTCONN;
	}
	c->writes++;
	return 0;
}

void http_conn_done(struct http_conn *c, bool keep_alive)
{
	if (!keep_alive || c->srv->draining)
		conn_shutdown(c);
	else
		http_conn_kick(c);
}

static void on_kick(uv_idle_t *h)
{
	conn_process(h->data);
}

void http_conn_kick(struct http_conn *c)
{
	if (!c->processing && !c->closing)
		uv_idle_start(&c->kick, on_kick);
}

/* The server's own error answer; the connection closes after it. */
void http_conn_fail(struct http_conn *c, int status, const char *msg)
{
	struct http_msg *m = c->rx.cur;
	bool head = m && c->rx.head_done && m->arena;
	json_t *j = http_error_json(status, NULL, msg);
	char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	size_t blen = body ? strlen(body) : 0;
	char hd[512];
	int hl = http_head(hd, sizeof(hd), status, "application/json", (long long)blen,
			   false, false, false, NULL, 0);

	json_decref(j);
	http_log(c->srv, head ? llhttp_method_name(c->rx.p.method) : NULL,
		 head ? m->arena : NULL, c->remote, status, c->t_first,
		 m ? m->body_len : 0, hl > 0 ? (uint64_t)hl + blen : 0);
	set_timer(c, T_NONE);
	if (hl > 0) {
		uv_buf_t parts[2] = { uv_buf_init(hd, (unsigned)hl),
				      uv_buf_init(body, (unsigned)blen) };

		http_conn_write(c, parts, 2, c->receiving);
	}
	free(body);
	c->receiving = false;
	conn_shutdown(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct http_conn *c = h->data;
	size_t want;

	(void)suggested;
	if (c->lingering)
		c->in_off = c->in_len = 0;
	if (c->in_off) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	want = c->in_len + READ_CHUNK;
	if (c->in_cap < want) {
		char *n = realloc(c->in, want);

		if (n) {
			c->in = n;
			c->in_cap = want;
		}
	}
	*buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct http_conn *c = s->data;

	(void)buf;
	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		/* EOF with an answer owed to the app's request is a disconnect;
		 * otherwise let queued writes finish, then close. */
		c->eof = true;
		uv_read_stop(s);
		c->reading = false;
		if (nread == UV_EOF && !c->req && !c->lingering && c->writes)
			conn_shutdown(c);
		else
			http_conn_close(c);
		return;
	}
	if (c->lingering)
		return;
	c->in_len += (size_t)nread;
	conn_process(c);
}

/* Input the app has not asked for yet: stop reading past this much. */
static size_t input_cap(const struct http_conn *c)
{
	return c->srv->opts.max_header_bytes + READ_CHUNK;
}

static void conn_settle(struct http_conn *c)
{
	bool want_read;

	if (c->closing)
		return;
	want_read = c->lingering || (!c->eof && !c->close_after &&
				     c->in_len - c->in_off < input_cap(c));
	if (want_read && !c->reading) {
		if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
			c->reading = true;
	} else if (!want_read && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	if (c->lingering || c->close_after || c->receiving)
		return;
	if (c->req) {
		set_timer(c, T_NONE);
		return;
	}
	if (c->srv->draining && !c->open_reqs && c->in_off == c->in_len)
		http_conn_close(c);
	else
		set_timer(c, T_IDLE);
}

static void dispatch(struct http_conn *c)
{
	struct http_msg *m = http_rx_take(&c->rx);
	struct http_req *req;

	req = m ? http_req_new(c, m) : NULL;
	if (!req) {
		http_msg_free(m);
		http_conn_fail(c, 500, "out of memory");
		return;
	}
	c->receiving = false;
	set_timer(c, T_NONE);
	c->req = req;
	c->srv->on_request(c->srv->ctx, req);
}

static void note_start(struct http_conn *c)
{
	if (c->receiving || !http_rx_started(&c->rx))
		return;
	c->receiving = true;
	c->t_first = uv_hrtime();
	c->open_reqs++;
	c->srv->active++;
	set_timer(c, T_REQUEST);
}

static void conn_process(struct http_conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

	uv_idle_stop(&c->kick);
	if (c->processing || c->closing)
		return;
	c->processing = true;
	while (!c->req && !c->closing && !c->close_after && !c->lingering &&
	       c->in_off < c->in_len) {
		size_t used;
		enum http_rx_event ev = http_rx_feed(&c->rx, c->in + c->in_off,
						     c->in_len - c->in_off, &used);

		c->in_off += used;
		note_start(c);
		if (ev == HTTP_RX_CONTINUE) {
			uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);

			http_conn_write(c, &b, 1, false);
		} else if (ev == HTTP_RX_ERROR) {
			http_conn_fail(c, c->rx.err_status, c->rx.err_msg);
		} else if (ev == HTTP_RX_MESSAGE) {
			dispatch(c);
		}
	}
	c->processing = false;
	conn_settle(c);
}

void http_on_connection(uv_stream_t *ls, int status)
{
	struct http_server *srv = ls->data;
	struct http_conn *c;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->srv = srv;
	uv_tcp_init(srv->loop, &c->tcp);
	uv_timer_init(srv->loop, &c->timer);
	uv_idle_init(srv->loop, &c->kick);
	c->tcp.data = c->timer.data = c->kick.data = c;
	c->handles = 3;
	http_rx_init(&c->rx, &(struct http_rx_limits){
		.max_header_bytes = srv->opts.max_header_bytes,
		.max_headers = srv->opts.max_headers,
		.max_body_bytes = srv->opts.max_body_bytes });
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	srv->n_conns++;
	srv->n_alloc++;
	if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0 ||
	    (srv->opts.max_conns && srv->n_conns > srv->opts.max_conns)) {
		http_conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	http_peer_name(&c->tcp, c->remote, sizeof(c->remote));
	conn_settle(c);
}

struct http_server *http_server_new(uv_loop_t *loop, const struct http_opts *opts,
				    http_handler_fn on_request, void *ctx)
{
	struct http_server *srv = calloc(1, sizeof(*srv));

	if (!srv)
		return NULL;
	srv->loop = loop;
	if (opts)
		srv->opts = *opts;
	if (!srv->opts.max_header_bytes)
		srv->opts.max_header_bytes = 16 * 1024;
	if (!srv->opts.max_headers)
		srv->opts.max_headers = 100;
	if (!srv->opts.max_body_bytes)
		srv->opts.max_body_bytes = 1024 * 1024;
	if (!srv->opts.request_timeout_ms)
		srv->opts.request_timeout_ms = 60000;
	if (!srv->opts.idle_timeout_ms)
		srv->opts.idle_timeout_ms = 30000;
	srv->on_request = on_request;
	srv->ctx = ctx;
	uv_tcp_init(loop, &srv->listener);
	srv->listener.data = srv;
	srv->listener_open = true;
	uv_idle_init(loop, &srv->closer);
	srv->closer.data = srv;
	srv->closer_open = true;
	return srv;
}

static void listener_closed(uv_handle_t *h)
{
	struct http_server *srv = h->data;

	srv->listener_open = false;
	server_maybe_free(srv);
}

static void closer_closed(uv_handle_t *h)
{
	struct http_server *srv = h->data;

	srv->closer_open = false;
	server_maybe_free(srv);
}

static void close_listener(struct http_server *srv)
{
	if (srv->listener_open && !uv_is_closing((uv_handle_t *)&srv->listener))
		uv_close((uv_handle_t *)&srv->listener, listener_closed);
}

void http_server_stop_accepting(struct http_server *srv)
{
	struct http_conn *c, *next;

	srv->draining = true;
	close_listener(srv);
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (!c->req && !c->receiving && !c->open_reqs)
			http_conn_close(c);
	}
}

unsigned http_server_active_requests(const struct http_server *srv)
{
	return srv->active;
}

unsigned http_server_connections(const struct http_server *srv)
{
	return srv->n_conns;
}

void http_server_close(struct http_server *srv, http_closed_fn cb)
{
	srv->closing = true;
	srv->draining = true;
	srv->closed_cb = cb;
	close_listener(srv);
	while (srv->conns)
		http_conn_close(srv->conns);
	uv_close((uv_handle_t *)&srv->closer, closer_closed);
}
