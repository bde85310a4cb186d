/* The harness of tests/test_http.c (tests/http_fx.h). */
#include "tests/http_fx.h"
void echo(struct http_req *req)
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

void run(struct fx *fx, const struct http_opts *opts, enum mode mode,
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
void loop_call(struct fx *fx, loop_fn fn)
{
	int seq = atomic_load(&fx->call_seq) + 1;

	fx->call = fn;
	atomic_store(&fx->call_seq, seq);
	uv_async_send(&fx->async);
	while (atomic_load(&fx->call_done) < seq)
		usleep(1000);
}

bool wait_for(atomic_int *v, int want)
{
	for (int i = 0; i < 10000 && atomic_load(v) < want; i++)
		usleep(1000);
	return atomic_load(v) >= want;
}

/* ---- client side ---- */


struct cli *cli_open(int port)
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

void cli_close(struct cli *c)
{
	if (c) {
		close(c->fd);
		free(c);
	}
}

bool cli_send(struct cli *c, const char *s, size_t n)
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

bool cli_sends(struct cli *c, const char *s)
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

void cli_eat(struct cli *c, size_t n)
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

char *cli_find(struct cli *c, const char *pat)
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
bool read_resp(struct cli *c, struct resp *r)
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
bool cli_eof(struct cli *c)
{
	ssize_t n = c->len ? 1 : cli_fill(c);

	return n == 0 || (n < 0 && errno == ECONNRESET);
}

bool has_header(const struct resp *r, const char *line)
{
	return strcasestr(r->head, line) != NULL;
}


/* ---- tests ---- */
