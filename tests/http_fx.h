/* The harness of tests/test_http.c: the server on a uv loop in the test's
 * thread, a raw-HTTP client in another (tests/http_fx.c). */
#ifndef TESTS_HTTP_FX_H
#define TESTS_HTTP_FX_H

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

/* Answers req with its method, path and body (mode M_ECHO). */
void echo(struct http_req *req);
/* Serves in mode on an ephemeral port with client running in a thread,
 * until the client is done and the server closed; then checks the loop. */
void run(struct fx *fx, const struct http_opts *opts, enum mode mode, client_fn client);
void loop_call(struct fx *fx, loop_fn fn);
bool wait_for(atomic_int *v, int want);
/* The client side: a blocking socket to 127.0.0.1:port and its input. */
struct cli *cli_open(int port);
void cli_close(struct cli *c);
bool cli_send(struct cli *c, const char *s, size_t n);
bool cli_sends(struct cli *c, const char *s);
void cli_eat(struct cli *c, size_t n);
char *cli_find(struct cli *c, const char *pat);
/* One response (Content-Length or chunked) into r. */
bool read_resp(struct cli *c, struct resp *r);
bool cli_eof(struct cli *c);
bool has_header(const struct resp *r, const char *line);

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

#endif
