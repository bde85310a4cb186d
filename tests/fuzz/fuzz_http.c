/* libFuzzer target: the HTTP request path of `moed serve` without sockets.
 *
 * Input byte 0 picks how the rest is cut into reads (1..64 bytes, or all at
 * once), byte 1 picks small or default limits; the rest is the byte stream a
 * client sends.  Every message the receiver yields is checked for its
 * invariants and its body goes through the JSON API parsers. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/api.h"
#include "daemon/http_rx.h"

static void check_msg(const struct http_msg *m, const struct http_rx_limits *lim)
{
	static const struct api_limits al = { .vocab_size = 32000, .max_tokens_cap = 4096,
					      .max_ctx = 8192 };
	struct api_completion_req c;
	struct api_forward_req f;
	char err[256];

	if (!m->method || !m->path || !m->body || m->body_len > lim->max_body_bytes ||
	    m->n_headers > lim->max_headers || m->body[m->body_len] != '\0')
		abort();
	for (unsigned i = 0; i < m->n_headers; i++)
		if (m->headers[i].name >= m->arena_len || m->headers[i].value >= m->arena_len)
			abort();
	(void)http_msg_header(m, "content-type");
	if (api_parse_completion(m->body, m->body_len, &al, NULL, &c, err, sizeof(err)) == 0)
		api_completion_req_free(&c);
	if (api_parse_forward(m->body, m->body_len, &al, NULL, &f, err, sizeof(err)) == 0)
		api_forward_req_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_rx_limits lim = { 16384, 100, 1 << 20 };
	const char *s = (const char *)data + 2;
	size_t n, off = 0, step, rounds = 0;
	struct http_rx rx;

	if (size < 2)
		return 0;
	step = data[0] % 65 ? data[0] % 65 : SIZE_MAX;
	if (data[1] & 1)
		lim = (struct http_rx_limits){ 64, 4, 16 };
	n = size - 2;
	http_rx_init(&rx, &lim);
	while (off < n) {
		size_t k = n - off < step ? n - off : step, used = 0;
		enum http_rx_event ev = http_rx_feed(&rx, s + off, k, &used);

		if (used > k || ++rounds > 4 * n + 16)
			abort();
		off += used;
		if (ev == HTTP_RX_ERROR) {
			if (rx.err_status != 400 && rx.err_status != 413 && rx.err_status != 431 &&
			    rx.err_status != 505)
				abort();
			break;
		}
		if (ev == HTTP_RX_MESSAGE) {
			struct http_msg *m = http_rx_take(&rx);
			bool keep;

			if (!m)
				abort();
			check_msg(m, &lim);
			keep = m->keep_alive;
			http_msg_free(m);
			/* Like the server: stop where it would close the connection. */
			if (!keep)
				break;
		} else if (ev == HTTP_RX_MORE && used != k) {
			abort();
		}
	}
	http_rx_free(&rx);
	return 0;
}
