/* Answers to HTTP requests: plain, JSON, errors, chunked streams; the
 * request object and its accessors. */
#include "daemon/http_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct http_req *http_req_new(struct http_conn *c, struct http_msg *m)
{
	struct http_req *req = calloc(1, sizeof(*req));

	if (!req)
		return NULL;
	req->msg = m;
	req->conn = c;
	req->refs = 2;
	req->keep_alive = m->keep_alive;
	req->head_only = m->method_id == HTTP_HEAD;
	req->t_start = c->t_first;
	snprintf(req->remote, sizeof(req->remote), "%s", c->remote);
	return req;
}

void http_req_unref(struct http_req *req)
{
	if (--req->refs > 0)
		return;
	http_msg_free(req->msg);
	free(req);
}

const char *http_status_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

json_t *http_error_json(int status, const char *type, const char *message)
{
	if (!type)
		type = status == 401 ? "authentication_error" :
		       status == 429 ? "rate_limit_error" :
		       status >= 500 ? "server_error" : "invalid_request_error";
	return json_pack("{s:{s:s, s:s, s:i}}", "error", "message", message ? message : "",
			 "type", type, "code", status);
}

static bool token_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s >= 127 || strchr("\"(),/:;<=>?@[\\]{}", *s))
			return false;
	return true;
}

static bool value_ok(const char *s)
{
	return !strpbrk(s, "\r\n");
}

static size_t put(char *buf, size_t cap, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Appends; on overflow returns cap + 1 so the caller sees it once. */
static size_t put(char *buf, size_t cap, size_t at, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (at >= cap)
		return cap + 1;
	va_start(ap, fmt);
	n = vsnprintf(buf + at, cap - at, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= cap - at ? cap + 1 : at + (size_t)n;
}

int http_head(char *buf, size_t cap, int status, const char *ctype, long long clen,
	      bool chunked, bool keep_alive, bool http10,
	      const struct http_header *hdrs, size_t n)
{
	char date[64];
	struct tm tm;
	time_t now = time(NULL);
	size_t at;

	if ((ctype && !value_ok(ctype)) || status < 100 || status > 999)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!token_ok(hdrs[i].name) || !value_ok(hdrs[i].value))
			return -1;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	at = put(buf, cap, 0, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
		 http_status_reason(status), date);
	if (ctype)
		at = put(buf, cap, at, "Content-Type: %s\r\n", ctype);
	if (clen >= 0)
		at = put(buf, cap, at, "Content-Length: %lld\r\n", clen);
	if (chunked)
		at = put(buf, cap, at, "Transfer-Encoding: chunked\r\n");
	if (!keep_alive)
		at = put(buf, cap, at, "Connection: close\r\n");
	else if (http10)
		at = put(buf, cap, at, "Connection: keep-alive\r\n");
	for (size_t i = 0; i < n; i++)
		at = put(buf, cap, at, "%s: %s\r\n", hdrs[i].name, hdrs[i].value);
	at = put(buf, cap, at, "\r\n");
	return at > cap || at > 0x7fffffff ? -1 : (int)at;
}

static size_t head_size(const char *ctype, const struct http_header *hdrs, size_t n)
{
	size_t sz = 384 + (ctype ? strlen(ctype) : 0);

	for (size_t i = 0; i < n; i++)
		sz += strlen(hdrs[i].name) + strlen(hdrs[i].value) + 4;
	return sz;
}

static bool is_http10(const struct http_req *req)
{
	return req->msg->http_major < 1 ||
	       (req->msg->http_major == 1 && req->msg->http_minor == 0);
}

/* Logs, detaches from the connection and drops both references; the
 * answer's last write is already queued. */
static void req_end(struct http_req *req, int status)
{
	struct http_conn *c = req->conn;

	req->ended = true;
	if (c) {
		http_log(c->srv, req->msg->method, req->msg->path, req->remote, status,
			 req->t_start, req->msg->body_len, req->bytes_out);
		c->req = NULL;
		req->conn = NULL;
		http_conn_done(c, req->keep_alive);
		http_req_unref(req);
	}
	http_req_unref(req);
}

static int send_error_500(struct http_req *req)
{
	json_t *j = http_error_json(500, NULL, "server produced an invalid response header");

	http_respond_json(req, 500, j);
	return -EINVAL;
}

int http_respond_ex(struct http_req *req, int status, const char *ctype,
		    const struct http_header *hdrs, size_t n,
		    const void *body, size_t len)
{
	struct http_conn *c = req->conn;
	bool nobody = status == 204 || status == 304 || (status >= 100 && status < 200);
	size_t cap = head_size(ctype, hdrs, n);
	char *head;
	int hl, rv;

	if (!c) {
		req_end(req, 0);
		return -ENOTCONN;
	}
	if (req->ended || req->streaming)
		return -EINVAL;
	if (!(head = malloc(cap))) {
		http_req_release(req);
		return -ENOMEM;
	}
	req->keep_alive = req->keep_alive && !c->srv->draining;
	hl = http_head(head, cap, status, ctype, nobody ? -1 : (long long)len, false,
		       req->keep_alive, is_http10(req), hdrs, n);
	if (hl < 0) {
		free(head);
		return send_error_500(req);
	}
	if (nobody || req->head_only)
		len = 0;
	req->ended = true;               /* a failed write must not call on_close */
	rv = http_conn_write(c, (uv_buf_t[]){ uv_buf_init(head, (unsigned)hl),
					      uv_buf_init((char *)body, (unsigned)len) },
			     2, true);
	free(head);
	req->bytes_out = (uint64_t)hl + len;
	req_end(req, status);
	return rv;
}

int http_respond(struct http_req *req, int status, const char *ctype,
		 const void *body, size_t len)
{
	return http_respond_ex(req, status, ctype, NULL, 0, body, len);
}

int http_respond_json(struct http_req *req, int status, json_t *json)
{
	char *s = json ? json_dumps(json, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
	int rv;

	json_decref(json);
	if (!s) {
		json_t *e = http_error_json(500, NULL, "cannot encode the response");

		s = e ? json_dumps(e, JSON_COMPACT) : NULL;
		json_decref(e);
		status = 500;
		if (!s) {
			http_req_release(req);
			return -ENOMEM;
		}
	}
	rv = http_respond(req, status, "application/json", s, strlen(s));
	free(s);
	return rv;
}

int http_respond_error(struct http_req *req, int status, const char *type,
		       const char *message)
{
	return http_respond_json(req, status, http_error_json(status, type, message));
}

int http_stream_begin_ex(struct http_req *req, int status, const char *ctype,
			 const struct http_header *hdrs, size_t n)
{
	struct http_conn *c = req->conn;
	size_t cap = head_size(ctype, hdrs, n);
	char *head;
	int hl, rv;

	if (req->ended || req->streaming)
		return -EINVAL;
	if (!c)
		return -ENOTCONN;
	if (!(head = malloc(cap)))
		return -ENOMEM;
	req->chunked = !is_http10(req);
	req->keep_alive = req->keep_alive && req->chunked && !c->srv->draining;
	hl = http_head(head, cap, status, ctype, -1, req->chunked, req->keep_alive,
		       is_http10(req), hdrs, n);
	if (hl < 0) {
		free(head);
		return send_error_500(req);
	}
	req->streaming = true;
	rv = http_conn_write(c, (uv_buf_t[]){ uv_buf_init(head, (unsigned)hl) }, 1, false);
	free(head);
	req->bytes_out += (uint64_t)hl;
	return rv;
}

int http_stream_begin(struct http_req *req, int status, const char *ctype)
{
	return http_stream_begin_ex(req, status, ctype, NULL, 0);
}

int http_stream_write(struct http_req *req, const void *data, size_t len)
{
	char sz[24];
	int sl;

	if (req->ended || !req->streaming)
		return -EINVAL;
	if (!req->conn)
		return -ENOTCONN;
	if (!len || req->head_only)
		return 0;
	if (!req->chunked) {
		req->bytes_out += len;
		return http_conn_write(req->conn, (uv_buf_t[]){ uv_buf_init((char *)data,
			(unsigned)len) }, 1, false);
	}
	sl = snprintf(sz, sizeof(sz), "%zx\r\n", len);
	req->bytes_out += (uint64_t)sl + len + 2;
	return http_conn_write(req->conn, (uv_buf_t[]){ uv_buf_init(sz, (unsigned)sl),
				uv_buf_init((char *)data, (unsigned)len),
				uv_buf_init("\r\n", 2) }, 3, false);
}

int http_stream_end(struct http_req *req)
{
	static char last[] = "0\r\n\r\n";
	bool term = req->chunked && !req->head_only;
	int rv;

	if (!req->conn) {
		req_end(req, 0);
		return -ENOTCONN;
	}
	if (req->ended || !req->streaming)
		return -EINVAL;
	req->ended = true;
	rv = http_conn_write(req->conn, (uv_buf_t[]){ uv_buf_init(last, term ? 5 : 0) }, 1,
			     true);
	req->bytes_out += term ? 5 : 0;
	req_end(req, 200);
	return rv;
}

void http_req_release(struct http_req *req)
{
	struct http_conn *c = req->conn;

	if (c && !req->ended) {
		/* The client is owed an answer that will not come. */
		req->ended = true;
		http_log(c->srv, req->msg->method, req->msg->path, req->remote, 0,
			 req->t_start, req->msg->body_len, req->bytes_out);
		c->req = NULL;
		req->conn = NULL;
		http_req_unref(req);
		http_conn_close(c);
	}
	req->ended = true;
	http_req_unref(req);
}

const char *http_req_method(const struct http_req *req)
{
	return req->msg->method;
}

const char *http_req_path(const struct http_req *req)
{
	return req->msg->path;
}

const char *http_req_query(const struct http_req *req)
{
	return req->msg->query;
}

const char *http_req_header(const struct http_req *req, const char *name)
{
	return http_msg_header(req->msg, name);
}

unsigned http_req_header_count(const struct http_req *req)
{
	return req->msg->n_headers;
}

int http_req_header_at(const struct http_req *req, unsigned i,
		       const char **name, const char **value)
{
	const struct http_msg *m = req->msg;

	if (i >= m->n_headers)
		return -ERANGE;
	*name = m->arena + m->headers[i].name;
	*value = m->arena + m->headers[i].value;
	return 0;
}

const char *http_req_body(const struct http_req *req, size_t *len)
{
	if (len)
		*len = req->msg->body_len;
	return req->msg->body;
}

const char *http_req_remote(const struct http_req *req)
{
	return req->remote;
}

bool http_req_connected(const struct http_req *req)
{
	return req->conn != NULL;
}

size_t http_req_write_queue_bytes(const struct http_req *req)
{
	return req->conn ? req->conn->tcp.write_queue_size : 0;
}

int http_req_on_close(struct http_req *req, http_req_close_fn cb, void *ctx)
{
	if (!req->conn)
		return -ENOTCONN;
	req->on_close = cb;
	req->close_ctx = ctx;
	return 0;
}
