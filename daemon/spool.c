/* daemon/spool.h: helpers wait on a generation counter; a run bumps it and
 * everyone, the caller included, takes iterations from a shared counter. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "daemon/spool.h"

struct helper {
	struct spool *p;
	int t;                     /* its thread number, 1 .. */
	pthread_t th;
};

struct spool {
	int nth;                   /* helper threads (threads - 1) */
	struct helper *h;
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	unsigned gen;              /* runs started */
	int stop, running;         /* running: helpers still in this run */
	int n, next;               /* next: taken atomically */
	spool_fn fn;
	void *ctx;
};

static void take(struct spool *p, int t)
{
	for (;;) {
		int i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);

		if (i >= p->n)
			return;
		p->fn(p->ctx, i, t);
	}
}

static void *helper_main(void *arg)
{
	const struct helper *h = arg;
	struct spool *p = h->p;
	unsigned seen = 0;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->gen == seen && !p->stop)
			pthread_cond_wait(&p->go, &p->mu);
		if (p->stop)
			break;
		seen = p->gen;
		pthread_mutex_unlock(&p->mu);
		take(p, h->t);
		pthread_mutex_lock(&p->mu);
		if (--p->running == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int spool_open(int threads, struct spool **out)
{
	struct spool *p;

	if (threads < 1)
		return -EINVAL;
	if (!(p = calloc(1, sizeof(*p))) || !(p->h = calloc((size_t)threads, sizeof(*p->h)))) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	for (; p->nth < threads - 1; p->nth++) {
		struct helper *h = &p->h[p->nth];

		h->p = p, h->t = p->nth + 1;
		if (pthread_create(&h->th, NULL, helper_main, h) != 0)
			break;   /* fewer helpers: still correct */
	}
	*out = p;
	return 0;
}

void spool_run(struct spool *p, int n, spool_fn fn, void *ctx)
{
	if (p->nth == 0 || n < 2) {
		for (int i = 0; i < n; i++)
			fn(ctx, i, 0);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn, p->ctx = ctx, p->n = n, p->next = 0;
	p->running = p->nth;
	p->gen++;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	take(p, 0);
	pthread_mutex_lock(&p->mu);
	while (p->running)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

int spool_threads(const struct spool *p)
{
	return p->nth + 1;
}

void spool_close(struct spool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nth; i++)
		pthread_join(p->h[i].th, NULL);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	free(p->h);
	free(p);
}
