/* Internals shared by http.c (server, connections, input) and http_resp.c
 * (answers, streaming, request accessors).  Not for use outside them. */
#ifndef DAEMON_HTTP_INT_H
#define DAEMON_HTTP_INT_H

#include "daemon/http.h"
#include "daemon/http_rx.h"

enum conn_timer { T_NONE, T_IDLE, T_REQUEST, T_LINGER };

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_idle_t kick;                  /* resumes parsing outside app calls */
	uv_shutdown_t shut;
	struct http_server *srv;
	struct http_conn *prev, *next;
	struct http_rx rx;
	char *in;                        /* unparsed input is in[in_off..in_len) */
	size_t in_off, in_len, in_cap;
	struct http_req *req;            /* handed to the app, not yet ended */
	uint64_t t_first;                /* hrtime of the current request's first byte */
	unsigned open_reqs;              /* started, answer not yet fully written */
	unsigned handles;                /* open uv handles; freed at 0 */
	unsigned writes;                 /* uv_write requests in flight */
	enum conn_timer tmode;
	bool reading;
	bool receiving;                  /* a request is partly received */
	bool processing;                 /* inside conn_process */
	bool close_after;                /* close once the writes are flushed */
	bool lingering;                  /* FIN sent, discarding input until EOF */
	bool eof;
	bool closing;
	char remote[64];
};

struct http_server {
	uv_loop_t *loop;
	struct http_opts opts;
	http_handler_fn on_request;
	void *ctx;
	uv_tcp_t listener;
	uv_idle_t closer;                /* closed last: makes close callbacks async */
	bool closer_open;
	bool listener_open;
	bool listening;
	bool draining;
	bool closing;
	int port;
	struct http_conn *conns;
	unsigned n_conns;                /* in the list */
	unsigned n_alloc;                /* not yet freed (includes closing ones) */
	unsigned active;
	http_closed_fn closed_cb;
};

struct http_req {
	struct http_msg *msg;
	struct http_conn *conn;          /* NULL once the client is gone */
	int refs;                        /* the app's and the connection's */
	bool ended;                      /* the app ended it */
	bool streaming;
	bool chunked;
	bool head_only;                  /* HEAD: no body goes out */
	bool keep_alive;
	uint64_t t_start;
	uint64_t bytes_out;
	http_req_close_fn on_close;
	void *close_ctx;
	char remote[64];
};

/* http.c */
/* Copies the parts into one write.  ends_req: the last write of an answer. */
int http_conn_write(struct http_conn *c, const uv_buf_t *parts, int n, bool ends_req);
/* The current request has ended and its last write is queued. */
void http_conn_done(struct http_conn *c, bool keep_alive);
void http_conn_close(struct http_conn *c);
void http_conn_kick(struct http_conn *c);
/* The server's own error answers, with Connection: close. */
void http_conn_fail(struct http_conn *c, int status, const char *msg);
void http_log(struct http_server *srv, const char *method, const char *path,
	      const char *remote, int status, uint64_t t0, uint64_t in, uint64_t out);
/* The listener's connection callback. */
void http_on_connection(uv_stream_t *ls, int status);

/* http_listen.c */
/* "ip:port" or "[ip6]:port" of tcp's peer into out ("-" if unknown). */
void http_peer_name(uv_tcp_t *tcp, char *out, size_t cap);

/* http_resp.c */
struct http_req *http_req_new(struct http_conn *c, struct http_msg *m);
void http_req_unref(struct http_req *req);
/* Formats a response head; returns its length, or -1 if it did not fit or
 * a header had CR/LF. */
int http_head(char *buf, size_t cap, int status, const char *ctype, long long clen,
	      bool chunked, bool keep_alive, bool http10,
	      const struct http_header *hdrs, size_t n);

#endif
