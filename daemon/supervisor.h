/* Child processes of `moed serve`: spawned with libuv, restarted with
 * exponential backoff after a crash, given up on after max_restarts crashes
 * within window_s. */
#ifndef DAEMON_SUPERVISOR_H
#define DAEMON_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct child;

/* Called on the loop when the child exits (status, or -signal). */
typedef void (*child_exit_fn)(struct child *c, void *ctx, int64_t status, int signal);

struct child_opts {
	const char *name;          /* "worker", "predictor" */
	char **argv;               /* NULL-terminated; argv[0] the executable */
	int max_restarts;
	double window_s;
	child_exit_fn on_exit;
	void *ctx;
};

int child_start(uv_loop_t *loop, const struct child_opts *o, struct child **out);
/* Sends sig to a running child. */
void child_kill(struct child *c, int sig);
bool child_running(const struct child *c);
bool child_gave_up(const struct child *c);
int child_pid(const struct child *c);
uint64_t child_restarts(const struct child *c);
/* Stops restarting; SIGTERM to a running child; frees once it has exited
 * and its handles are closed. */
void child_stop(struct child *c);

#endif
