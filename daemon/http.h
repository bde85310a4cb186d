/* HTTP/1.1 server on libuv (parsing by llhttp, see http_rx.h).
 *
 * Everything here runs on the loop thread: every function, every callback.
 *
 * Requests on one connection are handed to the app one at a time and
 * answered in order (pipelined requests wait in the input buffer).  The app
 * answers whenever it likes, possibly much later.  Lifetime contract:
 *
 *   every struct http_req passed to on_request is ended exactly once by the
 *   app: http_respond / http_respond_ex / http_respond_json /
 *   http_respond_error / http_stream_end, or http_req_release; after that
 *   call the pointer is gone.
 *
 * If the client goes away first (EOF or error on the socket, server close):
 *   - with a callback registered by http_req_on_close: it runs once, and the
 *     request ends when it returns.  The app drops its pointer inside the
 *     callback (an answer or release called inside it is a harmless no-op;
 *     any use after it returns is a use-after-free).
 *   - without one: the request stays valid; respond/stream calls return
 *     -ENOTCONN and do nothing, and the ending call (or http_req_release)
 *     frees it as usual.
 * A client half-close (shutdown of its write side) while its answer is owed
 * counts as going away.
 *
 * Limits: header block (request line + fields) over max_header_bytes or more
 * than max_headers fields -> 431; a bare CR or obs-fold in the header block,
 * malformed syntax, HTTP/1.1 without Host -> 400; body over max_body_bytes ->
 * 413 (on Content-Length before reading the body); a request not fully
 * received within request_timeout_ms of its first byte -> 408.  Each of
 * these answers with a JSON error and closes the connection.  A connection
 * with nothing in flight for idle_timeout_ms is closed without a word. */
#ifndef DAEMON_HTTP_H
#define DAEMON_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

struct http_server;
struct http_req;

/* One line of access log, given when a request ends: answered (status of
 * the answer), failed by the server (400/408/413/431, method and path may be
 * "-"), or abandoned by the client before the answer (status 499, nginx's
 * "client closed request").  duration_s runs from the first byte of the
 * request to the last byte of the answer queued for writing. */
struct http_access {
	const char *method;
	const char *path;
	const char *remote;              /* "127.0.0.1:53122", "[::1]:53122" */
	int status;
	double duration_s;
	uint64_t bytes_in;               /* request body bytes */
	uint64_t bytes_out;              /* response bytes, head included */
};

typedef void (*http_handler_fn)(void *ctx, struct http_req *req);
typedef void (*http_access_fn)(void *ctx, const struct http_access *a);
typedef void (*http_req_close_fn)(struct http_req *req, void *ctx);
typedef void (*http_closed_fn)(void *ctx);

/* Zero fields take the defaults in brackets. */
struct http_opts {
	size_t max_header_bytes;         /* [16 KiB] */
	unsigned max_headers;            /* [100] */
	size_t max_body_bytes;           /* [1 MiB] */
	uint64_t request_timeout_ms;     /* [60 s] */
	uint64_t idle_timeout_ms;        /* [30 s] keep-alive wait for a request */
	unsigned max_conns;              /* [0 = unlimited] more are closed at once */
	http_access_fn on_access;        /* optional; gets the server's ctx */
};

struct http_header {
	const char *name;
	const char *value;
};

/* The server does not listen until http_server_listen.  NULL on ENOMEM. */
struct http_server *http_server_new(uv_loop_t *loop, const struct http_opts *opts,
				    http_handler_fn on_request, void *ctx);
/* host: IPv4/IPv6 literal ("::1" or "[::1]"), a name, or "" / "*" for all
 * IPv4 addresses.  port 0 picks a free one (see http_server_port).  Returns
 * 0 or a negative errno (libuv's codes), with a message in err. */
int http_server_listen(struct http_server *srv, const char *host, int port,
		       char *err, size_t errlen);
int http_server_port(const struct http_server *srv);
/* For drain on SIGTERM: closes the listening socket and idle connections;
 * requests in flight are served and their connections then closed. */
void http_server_stop_accepting(struct http_server *srv);
/* Requests from their first byte until their answer is fully written. */
unsigned http_server_active_requests(const struct http_server *srv);
unsigned http_server_connections(const struct http_server *srv);
/* Closes every connection (in-flight requests get on_close) and the
 * listener; frees the server, then calls cb(ctx) from the loop.  cb may be
 * NULL.  Call once. */
void http_server_close(struct http_server *srv, http_closed_fn cb);

/* Request accessors: valid until the request is ended. */
const char *http_req_method(const struct http_req *req);
const char *http_req_path(const struct http_req *req);     /* no query */
const char *http_req_query(const struct http_req *req);    /* NULL if none */
/* Case-insensitive; the first field of that name or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);
unsigned http_req_header_count(const struct http_req *req);
int http_req_header_at(const struct http_req *req, unsigned i,
		       const char **name, const char **value);
/* The body, NUL-terminated (the NUL is not counted in *len). */
const char *http_req_body(const struct http_req *req, size_t *len);
const char *http_req_remote(const struct http_req *req);
bool http_req_connected(const struct http_req *req);
/* Bytes queued on the socket and not yet written: backpressure for streams. */
size_t http_req_write_queue_bytes(const struct http_req *req);
/* cb runs at most once, when the client goes away before the request is
 * ended; the request ends when cb returns (see the lifetime contract at the
 * top).  -ENOTCONN (and no registration) if the client is already gone. */
int http_req_on_close(struct http_req *req, http_req_close_fn cb, void *ctx);
/* Ends the request without an answer (the connection is then closed if it
 * is still open, since the client is owed an answer). */
void http_req_release(struct http_req *req);

/* Answers; each ends the request.  Return 0, -ENOTCONN when the client is
 * gone, -EINVAL on a header with CR/LF (a 500 is sent instead), -ENOMEM. */
int http_respond(struct http_req *req, int status, const char *content_type,
		 const void *body, size_t len);
int http_respond_ex(struct http_req *req, int status, const char *content_type,
		    const struct http_header *headers, size_t n_headers,
		    const void *body, size_t len);
/* Steals the reference to json; compact, reals with 9 significant digits
 * (enough for float32). */
int http_respond_json(struct http_req *req, int status, json_t *json);
/* {"error": {"message", "type", "code"}}; type NULL picks one by status. */
int http_respond_error(struct http_req *req, int status, const char *type,
		       const char *message);

/* Streaming: chunked transfer coding (HTTP/1.0 clients: raw bytes, then
 * close).  Only http_stream_end ends the request. */
int http_stream_begin(struct http_req *req, int status, const char *content_type);
int http_stream_begin_ex(struct http_req *req, int status, const char *content_type,
			 const struct http_header *headers, size_t n_headers);
int http_stream_write(struct http_req *req, const void *data, size_t len);
int http_stream_end(struct http_req *req);

/* The JSON error body used by http_respond_error (new reference). */
json_t *http_error_json(int status, const char *type, const char *message);
const char *http_status_reason(int status);

#endif
