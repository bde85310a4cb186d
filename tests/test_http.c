/* HTTP server: real sockets on 127.0.0.1 (ephemeral port).  The test's main
 * thread runs the uv loop; a client thread speaks raw HTTP with blocking
 * sockets (receive timeouts only guard against hangs).  Every test ends with
 * the server closed and uv_loop_close() == 0. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "daemon/http.h"
#include "daemon/http_rx.h"

enum mode { M_ECHO, M_DEFER, M_DEFER_NOCB, M_STREAM, M_DEFER_TIMER };

struct fx;
typedef void (*client_fn)(struct fx *);
typedef void (*loop_fn)(struct fx *);

struct fx {
	uv_loop_t loop;
	struct http_server *srv;
	uv_async_t async;
	pthread_t th;
	int port;
	enum mode mode;
	client_fn client;
	atomic_int client_done;
	/* calls from the client thread into the loop */
	loop_fn call;
	atomic_int call_seq, call_done;
	/* what the server side saw */
	atomic_int dispatched;
	atomic_int closes;               /* on_close callbacks */
	struct http_req *held[4];
	int n_held;
	char method[16], path[128], query[128], auth[128];
	int late_rv;                     /* respond after the client left */
	bool answer_in_cb;               /* on_req_close answers (a no-op) */
	int access_status[16];
	atomic_int n_access;
	unsigned active_seen;
	uv_timer_t timer;
	bool timer_used;
	bool server_closed;
	int fails;                       /* client-side check failures */
	char fail_msg[256];
};

#define CLI_CHECK(fx, cond) do { if (!(cond) && !(fx)->fails++) \
	snprintf((fx)->fail_msg, sizeof((fx)->fail_msg), "%s:%d: %s", __FILE__, __LINE__, #cond); \
	} while (0)

/* ---- server side ---- */

static void echo(struct http_req *req)
{
	char buf[4096];
	size_t blen;
	const char *body = http_req_body(req, &blen);
	const char *q = http_req_query(req);
	int n = snprintf(buf, sizeof(buf), "%s %s%s%s|%.*s", http_req_method(req),
			 http_req_path(req), q ? "?" : "", q ? q : "", (int)blen, body);

	http_respond(req, 200, "text/plain", buf, (size_t)n);
}

/* The app lets go of the request here (it ends when this returns). */
static void on_req_close(struct http_req *req, void *ctx)
{
	struct fx *fx = ctx;

	for (int i = 0; i < fx->n_held; i++)
		if (fx->held[i] == req) {
			memmove(fx->held + i, fx->held + i + 1,
				(size_t)(--fx->n_held - i) * sizeof(fx->held[0]));
			break;
		}
	if (fx->answer_in_cb)
		fx->late_rv = http_respond_error(req, 500, NULL, "too late");
	atomic_fetch_add(&fx->closes, 1);
}

static void timer_answer(uv_timer_t *t)
{
	struct fx *fx = t->data;

	/* Answer the oldest held request, then re-arm for the rest. */
	if (fx->n_held == 0)
		return;
	echo(fx->held[0]);
	memmove(fx->held, fx->held + 1, --fx->n_held * sizeof(fx->held[0]));
	if (fx->n_held)
		uv_timer_start(&fx->timer, timer_answer, 20, 0);
}

static void handler(void *ctx, struct http_req *req)
{
	struct fx *fx = ctx;
	const char *q = http_req_query(req), *a = http_req_header(req, "AUTHORIZATION");

	snprintf(fx->method, sizeof(fx->method), "%s", http_req_method(req));
	snprintf(fx->path, sizeof(fx->path), "%s", http_req_path(req));
	snprintf(fx->query, sizeof(fx->query), "%s", q ? q : "(none)");
	snprintf(fx->auth, sizeof(fx->auth), "%s", a ? a : "(none)");
	fx->active_seen = http_server_active_requests(fx->srv);
	atomic_fetch_add(&fx->dispatched, 1);
	switch (fx->mode) {
	case M_ECHO:
		echo(req);
		break;
	case M_DEFER:
	case M_DEFER_NOCB:
	case M_DEFER_TIMER:
		if (fx->mode != M_DEFER_NOCB)
			http_req_on_close(req, on_req_close, fx);
		fx->held[fx->n_held++] = req;
		if (fx->mode == M_DEFER_TIMER && fx->n_held == 1)
			uv_timer_start(&fx->timer, timer_answer, 20, 0);
		break;
	case M_STREAM:
		http_stream_begin(req, 200, "text/event-stream");
		http_stream_write(req, "data: 1\n\n", 9);
		http_stream_write(req, "data: 2\n\n", 9);
		http_stream_end(req);
		break;
	}
}

static void on_access(void *ctx, const struct http_access *a)
{
	struct fx *fx = ctx;
	int i = atomic_fetch_add(&fx->n_access, 1);

	if (i < 16)
		fx->access_status[i] = a->status;
}

static void on_closed(void *ctx)
{
	((struct fx *)ctx)->server_closed = true;
}

static void on_async(uv_async_t *h)
{
	struct fx *fx = h->data;

	if (atomic_load(&fx->call_seq) != atomic_load(&fx->call_done)) {
		fx->call(fx);
		atomic_fetch_add(&fx->call_done, 1);
	}
	if (!atomic_load(&fx->client_done))
		return;
	http_server_close(fx->srv, on_closed);
	uv_close((uv_handle_t *)&fx->async, NULL);
	if (!fx->n_held && !uv_is_closing((uv_handle_t *)&fx->timer))
		uv_close((uv_handle_t *)&fx->timer, NULL);
}

static void *client_main(void *arg)
{
	struct fx *fx = arg;

	fx->client(fx);
	atomic_store(&fx->client_done, 1);
	uv_async_send(&fx->async);
	return NULL;
}

static void run(struct fx *fx, const struct http_opts *opts, enum mode mode,
		client_fn client)
{
	struct http_opts o = opts ? *opts : (struct http_opts){ 0 };
	char err[256];

	o.on_access = on_access;
	fx->mode = mode;
	fx->client = client;
	ck_assert_int_eq(uv_loop_init(&fx->loop), 0);
	fx->srv = http_server_new(&fx->loop, &o, handler, fx);
	ck_assert_ptr_nonnull(fx->srv);
	ck_assert_msg(http_server_listen(fx->srv, "127.0.0.1", 0, err, sizeof(err)) == 0,
		      "%s", err);
	fx->port = http_server_port(fx->srv);
	ck_assert_int_gt(fx->port, 0);
	uv_async_init(&fx->loop, &fx->async, on_async);
	fx->async.data = fx;
	uv_timer_init(&fx->loop, &fx->timer);
	fx->timer.data = fx;
	ck_assert_int_eq(pthread_create(&fx->th, NULL, client_main, fx), 0);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	pthread_join(fx->th, NULL);
	ck_assert_msg(fx->fails == 0, "client: %s", fx->fail_msg);
	ck_assert(fx->server_closed);
	ck_assert_int_eq(uv_loop_close(&fx->loop), 0);
}

/* Runs fn on the loop thread and waits for it. */
static void loop_call(struct fx *fx, loop_fn fn)
{
	int seq = atomic_load(&fx->call_seq) + 1;

	fx->call = fn;
	atomic_store(&fx->call_seq, seq);
	uv_async_send(&fx->async);
	while (atomic_load(&fx->call_done) < seq)
		usleep(1000);
}

static bool wait_for(atomic_int *v, int want)
{
	for (int i = 0; i < 10000 && atomic_load(v) < want; i++)
		usleep(1000);
	return atomic_load(v) >= want;
}

/* ---- client side ---- */

struct cli {
	int fd;
	size_t len;
	char buf[1 << 18];
};

struct resp {
	int status;
	char head[8192];
	char body[1 << 16];
	size_t body_len;
	int chunks;
};

static struct cli *cli_open(int port)
{
	struct cli *c = calloc(1, sizeof(*c));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = 10 };

	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(c->fd);
		free(c);
		return NULL;
	}
	return c;
}

static void cli_close(struct cli *c)
{
	if (c) {
		close(c->fd);
		free(c);
	}
}

static bool cli_send(struct cli *c, const char *s, size_t n)
{
	while (n) {
		ssize_t k = send(c->fd, s, n, MSG_NOSIGNAL);

		if (k <= 0)
			return false;
		s += k;
		n -= (size_t)k;
	}
	return true;
}

static bool cli_sends(struct cli *c, const char *s)
{
	return cli_send(c, s, strlen(s));
}

static ssize_t cli_fill(struct cli *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);

	if (n > 0)
		c->len += (size_t)n;
	return n;
}

static void cli_eat(struct cli *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

/* Waits for n buffered bytes; false on EOF/error. */
static bool cli_need(struct cli *c, size_t n)
{
	while (c->len < n)
		if (cli_fill(c) <= 0)
			return false;
	return true;
}

static char *cli_find(struct cli *c, const char *pat)
{
	for (;;) {
		char *p = memmem(c->buf, c->len, pat, strlen(pat));

		if (p)
			return p;
		if (cli_fill(c) <= 0)
			return NULL;
	}
}

static bool body_put(struct resp *r, const char *s, size_t n)
{
	if (r->body_len + n >= sizeof(r->body))
		return false;
	memcpy(r->body + r->body_len, s, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return true;
}

static bool read_chunked(struct cli *c, struct resp *r)
{
	for (;;) {
		char *eol = cli_find(c, "\r\n");
		size_t sz;

		if (!eol || sscanf(c->buf, "%zx", &sz) != 1)
			return false;
		cli_eat(c, (size_t)(eol - c->buf) + 2);
		if (!cli_need(c, sz + 2) || memcmp(c->buf + sz, "\r\n", 2))
			return false;
		if (sz == 0) {
			cli_eat(c, 2);
			return true;
		}
		if (!body_put(r, c->buf, sz))
			return false;
		r->chunks++;
		cli_eat(c, sz + 2);
	}
}

/* One response; false on EOF before a full one. */
static bool read_resp(struct cli *c, struct resp *r)
{
	char *end = cli_find(c, "\r\n\r\n"), *cl;
	size_t hl;

	memset(r, 0, sizeof(*r));
	if (!end)
		return false;
	hl = (size_t)(end - c->buf) + 4;
	if (hl >= sizeof(r->head) || sscanf(c->buf, "HTTP/1.1 %d", &r->status) != 1)
		return false;
	memcpy(r->head, c->buf, hl);
	cli_eat(c, hl);
	if (strcasestr(r->head, "\r\nTransfer-Encoding: chunked\r\n"))
		return read_chunked(c, r);
	cl = strcasestr(r->head, "\r\nContent-Length: ");
	if (cl) {
		size_t n = strtoul(cl + 18, NULL, 10);

		if (!cli_need(c, n) || !body_put(r, c->buf, n))
			return false;
		cli_eat(c, n);
		return true;
	}
	if (r->status < 200 || r->status == 204 || r->status == 304)
		return true;
	while (cli_fill(c) > 0)
		;
	body_put(r, c->buf, c->len);
	cli_eat(c, c->len);
	return true;
}

/* The server closed the connection with nothing more to say. */
static bool cli_eof(struct cli *c)
{
	ssize_t n = c->len ? 1 : cli_fill(c);

	return n == 0 || (n < 0 && errno == ECONNRESET);
}

static bool has_header(const struct resp *r, const char *line)
{
	return strcasestr(r->head, line) != NULL;
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- tests ---- */

static void c_echo(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;
	const char *req = "POST /v1/echo?x=1&y=2 HTTP/1.1\r\nHost: t\r\n"
			  "Authorization: Bearer s3cret\r\nContent-Length: 5\r\n\r\nhello";

	CLI_CHECK(fx, c && cli_sends(c, req) && read_resp(c, &r));
	CLI_CHECK(fx, r.status == 200);
	CLI_CHECK(fx, !strcmp(r.body, "POST /v1/echo?x=1&y=2|hello"));
	CLI_CHECK(fx, has_header(&r, "Content-Type: text/plain\r\n"));
	CLI_CHECK(fx, has_header(&r, "\r\nDate: "));
	cli_close(c);
}

START_TEST(echo_200)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, NULL, M_ECHO, c_echo);
	ck_assert_str_eq(fx->method, "POST");
	ck_assert_str_eq(fx->path, "/v1/echo");
	ck_assert_str_eq(fx->query, "x=1&y=2");
	ck_assert_str_eq(fx->auth, "Bearer s3cret");
	ck_assert_int_eq(fx->active_seen, 1);
	ck_assert_int_eq(fx->n_access, 1);
	ck_assert_int_eq(fx->access_status[0], 200);
	free(fx);
}
END_TEST

static void c_method(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, c && cli_sends(c, "DELETE /nowhere HTTP/1.1\r\nHost: t\r\n\r\n") &&
		  read_resp(c, &r) && r.status == 200);
	CLI_CHECK(fx, !strcmp(r.body, "DELETE /nowhere|"));
	cli_close(c);
}

START_TEST(handler_sees_method_path)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, NULL, M_ECHO, c_method);
	ck_assert_str_eq(fx->method, "DELETE");
	ck_assert_str_eq(fx->path, "/nowhere");
	ck_assert_str_eq(fx->query, "(none)");
	ck_assert_str_eq(fx->auth, "(none)");
	free(fx);
}
END_TEST

/* Sends raw bytes, expects one error answer with this status, then EOF. */
static void expect_error(struct fx *fx, const char *raw, size_t n, int status)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;
	char code[32];

	CLI_CHECK(fx, c && cli_send(c, raw, n) && read_resp(c, &r));
	CLI_CHECK(fx, r.status == status);
	CLI_CHECK(fx, has_header(&r, "Connection: close\r\n"));
	CLI_CHECK(fx, has_header(&r, "Content-Type: application/json\r\n"));
	CLI_CHECK(fx, strstr(r.body, "\"type\":\"invalid_request_error\""));
	snprintf(code, sizeof(code), "\"code\":%d", status);
	CLI_CHECK(fx, strstr(r.body, code));
	CLI_CHECK(fx, cli_eof(c));
	cli_close(c);
}

static void c_413(struct fx *fx)
{
	/* No body follows: the answer must come from the header alone. */
	const char *req = "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";

	expect_error(fx, req, strlen(req), 413);
}

static void c_413_chunked(struct fx *fx)
{
	char req[4096];
	int n = snprintf(req, sizeof(req), "POST /x HTTP/1.1\r\nHost: t\r\n"
			 "Transfer-Encoding: chunked\r\n\r\n800\r\n");

	memset(req + n, 'a', 0x800);
	memcpy(req + n + 0x800, "\r\n", 2);
	expect_error(fx, req, (size_t)n + 0x800 + 2, 413);
}

START_TEST(body_too_large)
{
	struct http_opts o = { .max_body_bytes = 1024 };
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, &o, M_ECHO, c_413);
	ck_assert_int_eq(fx->dispatched, 0);
	ck_assert_int_eq(fx->access_status[0], 413);
	memset(fx, 0, sizeof(*fx));
	run(fx, &o, M_ECHO, c_413_chunked);
	ck_assert_int_eq(fx->dispatched, 0);
	free(fx);
}
END_TEST

static void c_431(struct fx *fx)
{
	static char req[40000];
	int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");

	memset(req + n, 'v', 20000);
	n += 20000;
	n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n\r\n");
	expect_error(fx, req, (size_t)n, 431);
}

static void c_431_count(struct fx *fx)
{
	static char req[8192];
	int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\n");

	for (int i = 0; i < 150; i++)
		n += snprintf(req + n, sizeof(req) - (size_t)n, "X-%d: v\r\n", i);
	n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
	expect_error(fx, req, (size_t)n, 431);
}

START_TEST(headers_too_large)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, NULL, M_ECHO, c_431);
	ck_assert_int_eq(fx->dispatched, 0);
	memset(fx, 0, sizeof(*fx));
	run(fx, NULL, M_ECHO, c_431_count);
	ck_assert_int_eq(fx->dispatched, 0);
	free(fx);
}
END_TEST

static void c_bare_cr(struct fx *fx)
{
	const char *req = "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rX-B: b\r\n\r\n";

	expect_error(fx, req, strlen(req), 400);
}

static void c_obs_fold(struct fx *fx)
{
	const char *req = "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  folded\r\n\r\n";

	expect_error(fx, req, strlen(req), 400);
}

static void c_garbage(struct fx *fx)
{
	const char *req = "\x01\x02 hello there\r\n\r\n";

	expect_error(fx, req, strlen(req), 400);
}

static void c_no_host(struct fx *fx)
{
	const char *req = "GET / HTTP/1.1\r\n\r\n";

	expect_error(fx, req, strlen(req), 400);
}

static void c_space_colon(struct fx *fx)
{
	const char *req = "GET / HTTP/1.1\r\nHost: t\r\nContent-Length : 0\r\n\r\n";

	expect_error(fx, req, strlen(req), 400);
}

static void c_smuggle(struct fx *fx)
{
	const char *req = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

	expect_error(fx, req, strlen(req), 400);
}

START_TEST(malformed_400)
{
	static const client_fn cases[] = { c_bare_cr, c_obs_fold, c_garbage, c_no_host,
					   c_space_colon, c_smuggle };
	struct fx *fx = calloc(1, sizeof(*fx));

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(fx, 0, sizeof(*fx));
		run(fx, NULL, M_ECHO, cases[i]);
		ck_assert_msg(fx->dispatched == 0, "case %zu reached the handler", i);
		ck_assert_int_eq(fx->access_status[0], 400);
	}
	free(fx);
}
END_TEST

static void c_408(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, c && cli_sends(c, "GET /slow HTTP/1.1\r\nHost: t\r\n"));
	CLI_CHECK(fx, read_resp(c, &r) && r.status == 408);
	CLI_CHECK(fx, strstr(r.body, "\"code\":408"));
	CLI_CHECK(fx, cli_eof(c));
	cli_close(c);
}

START_TEST(request_timeout_408)
{
	struct http_opts o = { .request_timeout_ms = 200 };
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, &o, M_ECHO, c_408);
	ck_assert_int_eq(fx->dispatched, 0);
	ck_assert_int_eq(fx->access_status[0], 408);
	free(fx);
}
END_TEST

static void c_keepalive_idle(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, c && cli_sends(c, GET("/one")) && read_resp(c, &r) && r.status == 200);
	CLI_CHECK(fx, !strcmp(r.body, "GET /one|"));
	CLI_CHECK(fx, !has_header(&r, "Connection: close"));
	CLI_CHECK(fx, cli_sends(c, GET("/two")) && read_resp(c, &r) && r.status == 200);
	CLI_CHECK(fx, !strcmp(r.body, "GET /two|"));
	/* then silence: the idle timeout closes without a word */
	CLI_CHECK(fx, cli_eof(c));
	cli_close(c);
}

START_TEST(keepalive_then_idle_close)
{
	struct http_opts o = { .idle_timeout_ms = 100 };
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, &o, M_ECHO, c_keepalive_idle);
	ck_assert_int_eq(fx->dispatched, 2);
	ck_assert_int_eq(fx->n_access, 2);
	free(fx);
}
END_TEST

static void c_pipeline(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, c && cli_sends(c, GET("/a") "\r\n" GET("/b") GET("/c")));
	CLI_CHECK(fx, read_resp(c, &r) && !strcmp(r.body, "GET /a|"));
	CLI_CHECK(fx, read_resp(c, &r) && !strcmp(r.body, "GET /b|"));
	CLI_CHECK(fx, read_resp(c, &r) && !strcmp(r.body, "GET /c|"));
	cli_close(c);
}

START_TEST(pipelined_in_order)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	/* Answers come later from a timer, so the next requests wait buffered. */
	run(fx, NULL, M_DEFER_TIMER, c_pipeline);
	ck_assert_int_eq(fx->dispatched, 3);
	ck_assert_int_eq(fx->closes, 0);
	free(fx);
}
END_TEST

static void c_chunked_body(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, c && cli_sends(c, "POST /c HTTP/1.1\r\nHost: t\r\n"
				     "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"));
	CLI_CHECK(fx, cli_sends(c, "6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"));
	CLI_CHECK(fx, read_resp(c, &r) && r.status == 200);
	CLI_CHECK(fx, !strcmp(r.body, "POST /c|hello world"));
	cli_close(c);
}

START_TEST(chunked_request_body)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, NULL, M_ECHO, c_chunked_body);
	ck_assert_int_eq(fx->dispatched, 1);
	free(fx);
}
END_TEST

static void c_stream(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, c && cli_sends(c, GET("/s")) && read_resp(c, &r) && r.status == 200);
	CLI_CHECK(fx, has_header(&r, "Transfer-Encoding: chunked\r\n"));
	CLI_CHECK(fx, has_header(&r, "Content-Type: text/event-stream\r\n"));
	CLI_CHECK(fx, r.chunks == 2);
	CLI_CHECK(fx, !strcmp(r.body, "data: 1\n\ndata: 2\n\n"));
	/* the connection stays usable */
	CLI_CHECK(fx, cli_sends(c, GET("/t")) && read_resp(c, &r) && r.chunks == 2);
	cli_close(c);
}

START_TEST(streaming_response)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, NULL, M_STREAM, c_stream);
	ck_assert_int_eq(fx->dispatched, 2);
	free(fx);
}
END_TEST

static void late_answer(uv_timer_t *t)
{
	struct fx *fx = t->data;

	if (fx->n_held)
		fx->late_rv = http_respond(fx->held[0], 200, "text/plain", "late", 4);
	fx->n_held = 0;
	if (!uv_is_closing((uv_handle_t *)&fx->timer))
		uv_close((uv_handle_t *)&fx->timer, NULL);
}

static void arm_late_answer(struct fx *fx)
{
	uv_timer_start(&fx->timer, late_answer, 1, 0);
}

static void c_disconnect(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);

	CLI_CHECK(fx, c && cli_sends(c, GET("/gone")));
	CLI_CHECK(fx, wait_for(&fx->dispatched, 1));
	cli_close(c);
	CLI_CHECK(fx, wait_for(&fx->closes, 1));
}

/* No close callback: the request outlives the client until answered. */
static void c_disconnect_nocb(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);

	CLI_CHECK(fx, c && cli_sends(c, GET("/gone")));
	CLI_CHECK(fx, wait_for(&fx->dispatched, 1));
	cli_close(c);
	CLI_CHECK(fx, wait_for(&fx->n_access, 1));           /* the 499 line */
	loop_call(fx, arm_late_answer);
}

START_TEST(disconnect_cancels)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	/* callback: the app drops the request in it (ASan: no leak) */
	run(fx, NULL, M_DEFER, c_disconnect);
	ck_assert_int_eq(fx->closes, 1);
	ck_assert_int_eq(fx->n_held, 0);
	ck_assert_int_eq(fx->n_access, 1);
	ck_assert_int_eq(fx->access_status[0], 499);
	/* an answer inside the callback is a no-op */
	memset(fx, 0, sizeof(*fx));
	fx->answer_in_cb = true;
	run(fx, NULL, M_DEFER, c_disconnect);
	ck_assert_int_eq(fx->closes, 1);
	ck_assert_int_eq(fx->late_rv, -ENOTCONN);
	ck_assert_int_eq(fx->n_access, 1);
	/* no callback: a later answer is a no-op that frees the request */
	memset(fx, 0, sizeof(*fx));
	run(fx, NULL, M_DEFER_NOCB, c_disconnect_nocb);
	ck_assert_int_eq(fx->closes, 0);
	ck_assert_int_eq(fx->late_rv, -ENOTCONN);
	ck_assert_int_eq(fx->n_access, 1);
	ck_assert_int_eq(fx->access_status[0], 499);
	free(fx);
}
END_TEST

static void do_stop(struct fx *fx)
{
	http_server_stop_accepting(fx->srv);
	fx->active_seen = http_server_active_requests(fx->srv);
}

static void answer_held(struct fx *fx)
{
	echo(fx->held[0]);
	fx->n_held = 0;
}

static void c_drain(struct fx *fx)
{
	struct cli *busy = cli_open(fx->port), *idle = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, busy && idle && cli_sends(busy, GET("/busy")));
	CLI_CHECK(fx, wait_for(&fx->dispatched, 1));
	loop_call(fx, do_stop);
	CLI_CHECK(fx, cli_eof(idle));
	CLI_CHECK(fx, cli_open(fx->port) == NULL);         /* no longer listening */
	loop_call(fx, answer_held);
	CLI_CHECK(fx, read_resp(busy, &r) && r.status == 200);
	CLI_CHECK(fx, has_header(&r, "Connection: close\r\n"));
	CLI_CHECK(fx, cli_eof(busy));
	cli_close(busy);
	cli_close(idle);
}

START_TEST(drain_on_stop_accepting)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, NULL, M_DEFER, c_drain);
	ck_assert_int_eq(fx->active_seen, 1);
	ck_assert_int_eq(fx->closes, 0);
	free(fx);
}
END_TEST

static void c_continue(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, c && cli_sends(c, "PUT /up HTTP/1.1\r\nHost: t\r\n"
				     "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"));
	CLI_CHECK(fx, read_resp(c, &r) && r.status == 100);
	CLI_CHECK(fx, cli_sends(c, "abc") && read_resp(c, &r) && r.status == 200);
	CLI_CHECK(fx, !strcmp(r.body, "PUT /up|abc"));
	cli_close(c);
}

static void c_http10(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, c && cli_sends(c, "GET /old HTTP/1.0\r\n\r\n") && read_resp(c, &r));
	CLI_CHECK(fx, r.status == 200 && has_header(&r, "Connection: close\r\n"));
	CLI_CHECK(fx, cli_eof(c));
	cli_close(c);
}

static void c_stream10(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;

	CLI_CHECK(fx, c && cli_sends(c, "GET /s HTTP/1.0\r\n\r\n") && read_resp(c, &r));
	CLI_CHECK(fx, r.status == 200 && has_header(&r, "Connection: close\r\n"));
	CLI_CHECK(fx, !has_header(&r, "Transfer-Encoding"));
	CLI_CHECK(fx, !strcmp(r.body, "data: 1\n\ndata: 2\n\n"));
	cli_close(c);
}

static void c_head(struct fx *fx)
{
	struct cli *c = cli_open(fx->port);
	struct resp r;
	char *end;

	CLI_CHECK(fx, c && cli_sends(c, "HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n" GET("/g")));
	/* HEAD: the length of the GET body ("HEAD /h|" is 8), no body bytes */
	CLI_CHECK(fx, (end = cli_find(c, "\r\n\r\n")) != NULL);
	CLI_CHECK(fx, memmem(c->buf, c->len, "Content-Length: 8\r\n", 19) != NULL);
	if (end)
		cli_eat(c, (size_t)(end - c->buf) + 4);
	CLI_CHECK(fx, read_resp(c, &r) && r.status == 200 && !strcmp(r.body, "GET /g|"));
	cli_close(c);
}

START_TEST(continue_http10_head)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	run(fx, NULL, M_ECHO, c_continue);
	ck_assert_int_eq(fx->dispatched, 1);
	memset(fx, 0, sizeof(*fx));
	run(fx, NULL, M_ECHO, c_http10);
	ck_assert_int_eq(fx->dispatched, 1);
	memset(fx, 0, sizeof(*fx));
	run(fx, NULL, M_STREAM, c_stream10);
	ck_assert_int_eq(fx->dispatched, 1);
	memset(fx, 0, sizeof(*fx));
	run(fx, NULL, M_ECHO, c_head);
	ck_assert_int_eq(fx->dispatched, 2);
	ck_assert_str_eq(fx->method, "GET");
	free(fx);
}
END_TEST

/* ---- the receiver alone ---- */

static const struct http_rx_limits rx_lim = { 16384, 100, 1 << 20 };

/* Feeds everything in pieces of `step`; returns the last event. */
static enum http_rx_event feed_all(struct http_rx *rx, const char *s, size_t n, size_t step,
				   size_t *total)
{
	enum http_rx_event ev = HTTP_RX_MORE;
	size_t off = 0;

	while (off < n && ev == HTTP_RX_MORE) {
		size_t k = n - off < step ? n - off : step, used;

		ev = http_rx_feed(rx, s + off, k, &used);
		off += used;
	}
	*total = off;
	return ev;
}

START_TEST(rx_bytewise_and_pipelined)
{
	const char *two = "POST /p?q HTTP/1.1\r\nHost: t\r\nX-Sp: v  \r\n"
			  "Content-Length: 3\r\n\r\nabc" GET("/next");
	struct http_rx rx;
	struct http_msg *m;
	size_t used;

	http_rx_init(&rx, &rx_lim);
	ck_assert_int_eq(feed_all(&rx, two, strlen(two), 1, &used), HTTP_RX_MESSAGE);
	m = http_rx_take(&rx);
	ck_assert_str_eq(m->method, "POST");
	ck_assert_str_eq(m->path, "/p");
	ck_assert_str_eq(m->query, "q");
	ck_assert_str_eq(http_msg_header(m, "x-sp"), "v");
	ck_assert_str_eq(m->body, "abc");
	ck_assert(m->keep_alive);
	http_msg_free(m);
	ck_assert_int_eq(http_rx_feed(&rx, two + used, strlen(two) - used, &used),
			 HTTP_RX_MESSAGE);
	ck_assert_uint_eq(used, strlen(GET("/next")));
	m = http_rx_take(&rx);
	ck_assert_str_eq(m->path, "/next");
	ck_assert_ptr_null(m->query);
	http_msg_free(m);
	http_rx_free(&rx);
}
END_TEST

/* The scanner rejects bare CR and obs-fold even when llhttp is told to be
 * lenient about header values. */
START_TEST(rx_strict_despite_lenient_llhttp)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n\tb\r\n\r\n",
		"GET / HTTP/1.1\r\n Host: t\r\n\r\n",
		"GET / HTTP/1.1\rHost: t\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (size_t step = 1; step <= 64; step *= 64) {
			struct http_rx rx;
			size_t used;

			http_rx_init(&rx, &rx_lim);
			llhttp_set_lenient_headers(&rx.p, 1);
			ck_assert_int_eq(feed_all(&rx, bad[i], strlen(bad[i]), step, &used),
					 HTTP_RX_ERROR);
			ck_assert_int_eq(rx.err_status, 400);
			ck_assert_msg(strstr(rx.err_msg, "bare CR") ||
				      strstr(rx.err_msg, "folding"), "%zu: %s", i, rx.err_msg);
			http_rx_free(&rx);
		}
	}
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("server");
	TCase *rx = tcase_create("rx");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, echo_200);
	tcase_add_test(tc, handler_sees_method_path);
	tcase_add_test(tc, body_too_large);
	tcase_add_test(tc, headers_too_large);
	tcase_add_test(tc, malformed_400);
	tcase_add_test(tc, request_timeout_408);
	tcase_add_test(tc, keepalive_then_idle_close);
	tcase_add_test(tc, pipelined_in_order);
	tcase_add_test(tc, chunked_request_body);
	tcase_add_test(tc, streaming_response);
	tcase_add_test(tc, disconnect_cancels);
	tcase_add_test(tc, drain_on_stop_accepting);
	tcase_add_test(tc, continue_http10_head);
	suite_add_tcase(s, tc);
	tcase_add_test(rx, rx_bytewise_and_pipelined);
	tcase_add_test(rx, rx_strict_despite_lenient_llhttp);
	suite_add_tcase(s, rx);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(http_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
