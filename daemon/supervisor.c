/* Spawning and restarting children. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/supervisor.h"

#define MAX_CRASHES 64

struct child {
	uv_loop_t *loop;
	struct child_opts o;
	uv_process_t proc;
	uv_timer_t timer;
	bool running, stopping, gave_up;
	double crashes[MAX_CRASHES];   /* times of recent crashes, seconds */
	int n_crashes;
	uint64_t restarts;
	int backoff_ms;
	int pending_closes;
	double started;                /* when the running process was spawned */
};

/* A child that ran this long before exiting restarts without backoff. */
#define STABLE_S 10.0

static void spawn(struct child *c);

static double now_s(const struct child *c)
{
	return (double)uv_now(c->loop) / 1000.0;
}

static void maybe_free(struct child *c)
{
	if (c->stopping && !c->running && c->pending_closes == 0)
		free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct child *c = h->data;

	c->pending_closes--;
	maybe_free(c);
}

static void on_timer(uv_timer_t *t)
{
	struct child *c = t->data;

	if (!c->stopping)
		spawn(c);
}

/* Keeps the crash times inside the window; true when too many remain. */
static bool too_many_crashes(struct child *c)
{
	double now = now_s(c);
	int kept = 0;

	for (int i = 0; i < c->n_crashes; i++)
		if (now - c->crashes[i] <= c->o.window_s)
			c->crashes[kept++] = c->crashes[i];
	c->n_crashes = kept;
	if (c->n_crashes < MAX_CRASHES)
		c->crashes[c->n_crashes++] = now;
	return c->n_crashes > c->o.max_restarts;
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	struct child *c = p->data;

	c->running = false;
	c->pending_closes++;
	uv_close((uv_handle_t *)p, on_handle_closed);
	if (!c->stopping)
		log_msg(sig ? LOG_ERR : LOG_WARNING, "%s (pid %d) exited: status %lld signal %d",
			c->o.name, p->pid, (long long)status, sig);
	/* Decided before on_exit, so that it can see child_gave_up(). */
	if (!c->stopping && too_many_crashes(c)) {
		c->gave_up = true;
		log_msg(LOG_ERR, "%s crashed %d times within %.0f s: giving up on it",
			c->o.name, c->n_crashes, c->o.window_s);
	}
	if (c->o.on_exit)
		c->o.on_exit(c, c->o.ctx, status, sig);
	if (c->stopping) {
		maybe_free(c);
		return;
	}
	if (c->gave_up)
		return;
	if (now_s(c) - c->started >= STABLE_S)
		c->backoff_ms = 0;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 100;
	if (c->backoff_ms > 5000)
		c->backoff_ms = 5000;
	c->restarts++;
	uv_timer_start(&c->timer, on_timer, (uint64_t)c->backoff_ms, 0);
}

static void spawn(struct child *c)
{
	uv_process_options_t po;
	uv_stdio_container_t stdio[3];
	int rv;

	memset(&po, 0, sizeof(po));
	for (int i = 0; i < 3; i++) {
		stdio[i].flags = UV_INHERIT_FD;
		stdio[i].data.fd = i;
	}
	stdio[0].flags = UV_IGNORE;
	po.file = c->o.argv[0];
	po.args = c->o.argv;
	po.exit_cb = on_exit_cb;
	po.stdio_count = 3;
	po.stdio = stdio;
	c->proc.data = c;
	if ((rv = uv_spawn(c->loop, &c->proc, &po)) < 0) {
		log_msg(LOG_ERR, "cannot start %s: %s", c->o.name, uv_strerror(rv));
		c->pending_closes++;
		uv_close((uv_handle_t *)&c->proc, on_handle_closed);
		c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 100;
		uv_timer_start(&c->timer, on_timer, (uint64_t)c->backoff_ms, 0);
		return;
	}
	c->running = true;
	c->started = now_s(c);
	log_msg(LOG_INFO, "started %s (pid %d)", c->o.name, c->proc.pid);
}

int child_start(uv_loop_t *loop, const struct child_opts *o, struct child **out)
{
	struct child *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->o = *o;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	spawn(c);
	*out = c;
	return 0;
}

void child_kill(struct child *c, int sig)
{
	if (c && c->running)
		uv_process_kill(&c->proc, sig);
}

bool child_running(const struct child *c)
{
	return c && c->running;
}

bool child_gave_up(const struct child *c)
{
	return c && c->gave_up;
}

int child_pid(const struct child *c)
{
	return c && c->running ? c->proc.pid : 0;
}

uint64_t child_restarts(const struct child *c)
{
	return c ? c->restarts : 0;
}

void child_stop(struct child *c)
{
	if (!c)
		return;
	c->stopping = true;
	uv_timer_stop(&c->timer);
	c->pending_closes++;
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	if (c->running)
		uv_process_kill(&c->proc, SIGTERM);
	else
		maybe_free(c);
}
