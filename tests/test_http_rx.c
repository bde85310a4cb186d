/* The HTTP request parser (daemon/http_rx.c) on its own: byte-wise and
 * pipelined input, strict where llhttp is lenient. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/http_rx.h"
#include "tests/suite_run.h"

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

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

static Suite *http_rx_suite(void)
{
	Suite *s = suite_create("http_rx");
	TCase *rx = tcase_create("rx");

	tcase_add_test(rx, rx_bytewise_and_pipelined);
	tcase_add_test(rx, rx_strict_despite_lenient_llhttp);
	suite_add_tcase(s, rx);
	return s;
}

int main(void)
{
	return suite_run(http_rx_suite());
}
