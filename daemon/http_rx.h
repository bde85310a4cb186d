/* The receiving half of the HTTP/1.1 server: bytes in, parsed requests out.
 *
 * No I/O here, so the fuzz target can drive it directly.  The header block is
 * scanned by hand before llhttp sees it: a bare CR, an obs-fold line and a
 * block over max_header_bytes are rejected whatever llhttp's leniency.
 * http_rx_feed stops after each complete message so that pipelined requests
 * are handed out one at a time, in order. */
#ifndef DAEMON_HTTP_RX_H
#define DAEMON_HTTP_RX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

/* One parsed request.  Strings live in `arena` and are NUL-terminated. */
struct http_msg {
	const char *method;              /* "GET", "POST", ... */
	int method_id;                   /* llhttp_method_t */
	uint8_t http_major, http_minor;
	bool keep_alive;                 /* the client allows another request */
	bool expect_continue;            /* "Expect: 100-continue" was sent */
	char *path;                      /* "/v1/completions" (not decoded) */
	char *query;                     /* after '?', NULL when there is none */
	unsigned n_headers, headers_cap;
	struct { uint32_t name, value; } *headers;   /* offsets into arena */
	char *arena;
	size_t arena_len, arena_cap;
	char *body;                      /* NUL-terminated for convenience */
	size_t body_len, body_cap;
};

struct http_rx_limits {
	size_t max_header_bytes;         /* request line + header block */
	unsigned max_headers;
	size_t max_body_bytes;
};

enum http_rx_event {
	HTTP_RX_MORE = 0,                /* all input consumed, message unfinished */
	HTTP_RX_CONTINUE,                /* headers accepted, client wants 100 */
	HTTP_RX_MESSAGE,                 /* a message is complete: http_rx_take */
	HTTP_RX_ERROR,                   /* err_status/err_msg set; stop feeding */
};

struct http_rx {
	llhttp_t p;
	struct http_rx_limits lim;
	struct http_msg *cur;            /* message being received */
	/* header-block scanner */
	bool in_head;
	bool seen_content;
	bool cr;
	size_t line_len;
	size_t head_bytes;
	/* parser progress for the current message */
	bool head_done;
	bool msg_done;
	bool paused_upgrade;
	bool continue_sent;
	bool in_field;                   /* the last header callback was a name */
	size_t trailer_bytes;
	int err_status;
	char err_msg[160];
};

void http_rx_init(struct http_rx *rx, const struct http_rx_limits *lim);
void http_rx_free(struct http_rx *rx);
/* Feeds input, stopping after one complete message; *used gets the bytes
 * consumed.  After HTTP_RX_ERROR the receiver is dead. */
enum http_rx_event http_rx_feed(struct http_rx *rx, const char *data, size_t len,
				size_t *used);
/* True once the first byte of a message has arrived (for the 408 timer). */
bool http_rx_started(const struct http_rx *rx);
/* Takes the completed message (caller frees with http_msg_free) and readies
 * the receiver for the next one. */
struct http_msg *http_rx_take(struct http_rx *rx);

void http_msg_free(struct http_msg *m);
/* Case-insensitive lookup; the first field of that name, or NULL. */
const char *http_msg_header(const struct http_msg *m, const char *name);

#endif
