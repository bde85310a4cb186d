/* Request parsing for the HTTP server: a hand scanner over the header block
 * (caps, bare CR, obs-fold) in front of llhttp (grammar, framing). */
#include "daemon/http_rx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct http_rx *rx_of(llhttp_t *p)
{
	return p->data;
}

static int fail(struct http_rx *rx, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct http_rx *rx, int status, const char *fmt, ...)
{
	va_list ap;

	if (rx->err_status)
		return -1;
	rx->err_status = status;
	va_start(ap, fmt);
	vsnprintf(rx->err_msg, sizeof(rx->err_msg), fmt, ap);
	va_end(ap);
	return -1;
}

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t c = *cap ? *cap : 256;
	char *nb;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	nb = realloc(*buf, c);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = c;
	return 0;
}

static int arena_put(struct http_rx *rx, const char *s, size_t n)
{
	struct http_msg *m = rx->cur;

	if (grow(&m->arena, &m->arena_cap, m->arena_len + n + 1))
		return fail(rx, 500, "out of memory reading the request");
	memcpy(m->arena + m->arena_len, s, n);
	m->arena_len += n;
	return 0;
}

static int on_message_begin(llhttp_t *p)
{
	struct http_rx *rx = rx_of(p);

	if (!rx->cur)
		rx->cur = calloc(1, sizeof(*rx->cur));
	if (!rx->cur)
		return fail(rx, 500, "out of memory reading the request");
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	return arena_put(rx_of(p), at, len);
}

static int on_url_complete(llhttp_t *p)
{
	return arena_put(rx_of(p), "", 1);
}

/* Trailer fields of a chunked body are counted against the header cap and
 * otherwise dropped. */
static int trailer(struct http_rx *rx, size_t len)
{
	rx->trailer_bytes += len;
	if (rx->trailer_bytes > rx->lim.max_header_bytes)
		return fail(rx, 431, "request trailer fields exceed %zu bytes",
			    rx->lim.max_header_bytes);
	return 0;
}

static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	return true;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct http_rx *rx = rx_of(p);
	struct http_msg *m = rx->cur;

	if (rx->head_done)
		return trailer(rx, len);
	if (!rx->in_field) {
		if (m->n_headers >= rx->lim.max_headers)
			return fail(rx, 431, "request has more than %u header fields",
				    rx->lim.max_headers);
		if (m->n_headers == m->headers_cap) {
			unsigned n = m->headers_cap ? 2 * m->headers_cap : 8;
			void *nh = realloc(m->headers, n * sizeof(*m->headers));

			if (!nh)
				return fail(rx, 500, "out of memory reading the request");
			m->headers = nh;
			m->headers_cap = n;
		}
		m->headers[m->n_headers].name = m->arena_len;
		rx->in_field = true;
	}
	return arena_put(rx, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
	struct http_rx *rx = rx_of(p);
	struct http_msg *m = rx->cur;

	if (rx->head_done)
		return 0;
	rx->in_field = false;
	if (arena_put(rx, "", 1))
		return -1;
	/* llhttp lets "Name :" through; a proxy may read it otherwise. */
	if (!is_token(m->arena + m->headers[m->n_headers].name))
		return fail(rx, 400, "invalid header field name");
	m->headers[m->n_headers].value = m->arena_len;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct http_rx *rx = rx_of(p);

	if (rx->head_done)
		return trailer(rx, len);
	return arena_put(rx, at, len);
}

static int on_header_value_complete(llhttp_t *p)
{
	struct http_rx *rx = rx_of(p);
	struct http_msg *m = rx->cur;

	if (rx->head_done)
		return 0;
	/* llhttp keeps trailing whitespace; field values exclude it. */
	while (m->arena_len > m->headers[m->n_headers].value &&
	       (m->arena[m->arena_len - 1] == ' ' || m->arena[m->arena_len - 1] == '\t'))
		m->arena_len--;
	if (arena_put(rx, "", 1))
		return -1;
	m->n_headers++;
	return 0;
}

static int check_head(struct http_rx *rx, llhttp_t *p)
{
	struct http_msg *m = rx->cur;
	const char *host = NULL, *expect;
	unsigned hosts = 0;

	for (unsigned i = 0; i < m->n_headers; i++)
		if (!strcasecmp(m->arena + m->headers[i].name, "host")) {
			host = m->arena + m->headers[i].value;
			hosts++;
		}
	if (p->http_major != 1)
		return fail(rx, 505, "HTTP/%d.%d is not supported", p->http_major,
			    p->http_minor);
	if (p->http_minor >= 1 && !host)
		return fail(rx, 400, "request has no Host header");
	if (hosts > 1)
		return fail(rx, 400, "request has %u Host headers", hosts);
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > rx->lim.max_body_bytes)
		return fail(rx, 413, "request body of %llu bytes exceeds the limit of %zu bytes",
			    (unsigned long long)p->content_length, rx->lim.max_body_bytes);
	expect = http_msg_header(m, "expect");
	if (expect && !strcasecmp(expect, "100-continue"))
		m->expect_continue = true;
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	struct http_rx *rx = rx_of(p);
	struct http_msg *m = rx->cur;

	rx->head_done = true;
	if (check_head(rx, p))
		return -1;
	m->method_id = p->method;
	m->method = llhttp_method_name(p->method);
	m->http_major = p->http_major;
	m->http_minor = p->http_minor;
	/* We never switch protocols: answer an Upgrade or CONNECT, then close. */
	m->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0 &&
	    grow(&m->body, &m->body_cap, p->content_length + 1))
		return fail(rx, 500, "out of memory reading the request");
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct http_rx *rx = rx_of(p);
	struct http_msg *m = rx->cur;

	if (len > rx->lim.max_body_bytes - m->body_len)
		return fail(rx, 413, "request body exceeds the limit of %zu bytes",
			    rx->lim.max_body_bytes);
	if (grow(&m->body, &m->body_cap, m->body_len + len + 1))
		return fail(rx, 500, "out of memory reading the request");
	memcpy(m->body + m->body_len, at, len);
	m->body_len += len;
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct http_rx *rx = rx_of(p);
	struct http_msg *m = rx->cur;
	char *q;

	if (!m->arena)
		return fail(rx, 400, "malformed request: no request target");
	if (!m->body && grow(&m->body, &m->body_cap, 1))
		return fail(rx, 500, "out of memory reading the request");
	m->body[m->body_len] = '\0';
	m->path = m->arena;              /* the URL is the first arena string */
	q = strchr(m->path, '?');
	if (q) {
		*q = '\0';
		m->query = q + 1;
	}
	rx->msg_done = true;
	return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_url_complete = on_url_complete,
	.on_header_field = on_header_field,
	.on_header_field_complete = on_header_field_complete,
	.on_header_value = on_header_value,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

static void reset(struct http_rx *rx)
{
	rx->in_head = true;
	rx->seen_content = false;
	rx->cr = false;
	rx->line_len = 0;
	rx->head_bytes = 0;
	rx->head_done = false;
	rx->msg_done = false;
	rx->continue_sent = false;
	rx->in_field = false;
	rx->trailer_bytes = 0;
}

void http_rx_init(struct http_rx *rx, const struct http_rx_limits *lim)
{
	memset(rx, 0, sizeof(*rx));
	rx->lim = *lim;
	llhttp_init(&rx->p, HTTP_REQUEST, &settings);
	rx->p.data = rx;
	reset(rx);
}

void http_rx_free(struct http_rx *rx)
{
	http_msg_free(rx->cur);
	rx->cur = NULL;
}

/* Scans header-block bytes; returns how many belong to the block (all of
 * them, or up to and including the LF of the empty line that ends it), or
 * -1 with the error set. */
static long scan_head(struct http_rx *rx, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (++rx->head_bytes > rx->lim.max_header_bytes)
			return fail(rx, 431, "request header block exceeds %zu bytes",
				    rx->lim.max_header_bytes);
		if (rx->cr) {
			rx->cr = false;
			if (c != '\n')
				return fail(rx, 400, "bare CR in the request header block");
		} else if (c == '\r') {
			rx->cr = true;
			continue;
		}
		if (c == '\n') {
			if (rx->line_len == 0 && rx->seen_content) {
				rx->in_head = false;
				return (long)(i + 1);
			}
			rx->line_len = 0;
			continue;
		}
		if (rx->line_len == 0 && rx->seen_content && (c == ' ' || c == '\t'))
			return fail(rx, 400, "obsolete line folding in the request header block");
		rx->line_len++;
		rx->seen_content = true;
	}
	return (long)n;
}

static enum http_rx_event execute(struct http_rx *rx, const char *data, size_t n,
				  size_t *used)
{
	llhttp_errno_t e = llhttp_execute(&rx->p, data, n);

	if (e == HPE_OK) {
		*used = n;
		return HTTP_RX_MORE;
	}
	if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && rx->msg_done) {
		*used = (size_t)(llhttp_get_error_pos(&rx->p) - data);
		return HTTP_RX_MESSAGE;
	}
	fail(rx, 400, "malformed request: %s", llhttp_get_error_reason(&rx->p));
	return HTTP_RX_ERROR;
}

enum http_rx_event http_rx_feed(struct http_rx *rx, const char *data, size_t len,
				size_t *used)
{
	size_t off = 0;

	*used = 0;
	while (!rx->err_status && !rx->msg_done && off < len) {
		size_t n = len - off, k = 0;
		bool was_head = rx->in_head;
		enum http_rx_event ev;

		if (rx->in_head) {
			long h = scan_head(rx, data + off, n);

			if (h < 0)
				break;
			n = (size_t)h;
		}
		ev = execute(rx, data + off, n, &k);
		off += k;
		*used = off;
		if (ev != HTTP_RX_MORE)
			return ev;
		if (was_head && !rx->in_head && !rx->head_done) {
			fail(rx, 400, "malformed request: header block did not parse");
			break;
		}
		if (rx->head_done && rx->cur->expect_continue && !rx->continue_sent) {
			rx->continue_sent = true;
			return HTTP_RX_CONTINUE;
		}
	}
	if (rx->err_status)
		return HTTP_RX_ERROR;
	return rx->msg_done ? HTTP_RX_MESSAGE : HTTP_RX_MORE;
}

bool http_rx_started(const struct http_rx *rx)
{
	return rx->head_bytes > 0 || !rx->in_head;
}

struct http_msg *http_rx_take(struct http_rx *rx)
{
	struct http_msg *m = rx->msg_done ? rx->cur : NULL;

	if (!m)
		return NULL;
	rx->cur = NULL;
	reset(rx);
	llhttp_resume(&rx->p);
	return m;
}

void http_msg_free(struct http_msg *m)
{
	if (!m)
		return;
	free(m->headers);
	free(m->arena);
	free(m->body);
	free(m);
}

const char *http_msg_header(const struct http_msg *m, const char *name)
{
	for (unsigned i = 0; i < m->n_headers; i++)
		if (!strcasecmp(m->arena + m->headers[i].name, name))
			return m->arena + m->headers[i].value;
	return NULL;
}
