/* HTTP server: real sockets on 127.0.0.1 (ephemeral port).  The test's main
 * thread runs the uv loop; a client thread speaks raw HTTP with blocking
 * sockets (receive timeouts only guard against hangs).  Every test ends with
 * the server closed and uv_loop_close() == 0. */
#include "tests/http_fx.h"
#include "tests/suite_run.h"

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

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("server");

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
	return s;
}

int main(void)
{
	return suite_run(http_suite());
}
