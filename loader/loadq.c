/* The load queue shared by the host and XRT backends (loader/loadq.h). */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loader/loadq.h"

static void *copy_main(void *arg)
{
	struct ld_loadq *q = arg;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (!q->len && !q->stop)
			pthread_cond_wait(&q->work, &q->mu);
		if (!q->len)
			break;
		struct ld_loadq_job j = q->q[q->head];
		q->head = (q->head + 1) % q->n_slots;
		q->len--;
		q->busy = true;
		pthread_mutex_unlock(&q->mu);
		int rc = q->copy(q->ctx, &j);
		pthread_mutex_lock(&q->mu);
		q->busy = false;
		q->status[j.slot] = rc;
		q->done_seq[j.slot] = j.seq;
		pthread_cond_broadcast(&q->done);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

void ld_loadq_init(struct ld_loadq *q, ld_loadq_copy_fn *copy, void *ctx)
{
	*q = (struct ld_loadq){.copy = copy, .ctx = ctx};
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->work, NULL);
	pthread_cond_init(&q->done, NULL);
}

int ld_loadq_start(struct ld_loadq *q)
{
	int rc = pthread_create(&q->thread, NULL, copy_main, q);

	if (rc)
		return -rc;
	q->running = true;
	return 0;
}

void ld_loadq_destroy(struct ld_loadq *q)
{
	if (q->running) {
		pthread_mutex_lock(&q->mu);
		q->stop = true;
		pthread_cond_signal(&q->work);
		pthread_mutex_unlock(&q->mu);
		pthread_join(q->thread, NULL);
		q->running = false;
	}
	pthread_cond_destroy(&q->work);
	pthread_cond_destroy(&q->done);
	pthread_mutex_destroy(&q->mu);
}

int ld_loadq_alloc(struct ld_loadq *q, size_t n_slots)
{
	q->q = calloc(n_slots, sizeof(*q->q));
	q->sub_seq = calloc(n_slots, sizeof(*q->sub_seq));
	q->done_seq = calloc(n_slots, sizeof(*q->done_seq));
	q->status = calloc(n_slots, sizeof(*q->status));
	if (!q->q || !q->sub_seq || !q->done_seq || !q->status) {
		ld_loadq_free(q);
		return -ENOMEM;
	}
	q->n_slots = n_slots;
	return 0;
}

void ld_loadq_drain(struct ld_loadq *q)
{
	pthread_mutex_lock(&q->mu);
	while (q->len || q->busy)
		pthread_cond_wait(&q->done, &q->mu);
	pthread_mutex_unlock(&q->mu);
}

void ld_loadq_free(struct ld_loadq *q)
{
	ld_loadq_drain(q);
	free(q->q);
	free(q->sub_seq);
	free(q->done_seq);
	free(q->status);
	q->q = NULL;
	q->sub_seq = q->done_seq = NULL;
	q->status = NULL;
	q->n_slots = q->head = 0;
}

int ld_loadq_submit(struct ld_loadq *q, size_t slot, const void *src, size_t bytes,
		    const uint64_t *checksum, unsigned flags, struct ld_ticket *t)
{
	size_t n = q->n_slots;
	int rc = 0;

	if (slot >= n)
		return -EINVAL;
	pthread_mutex_lock(&q->mu);
	if (q->done_seq[slot] != q->sub_seq[slot]) {
		rc = -EBUSY;   /* a load into this slot is still in flight */
		goto out;
	}
	struct ld_loadq_job j = {.slot = slot, .src = src, .bytes = bytes,
				 .check = checksum != NULL, .sum = checksum ? *checksum : 0,
				 .seq = ++q->seq};
	if (flags & LD_LOAD_URGENT) {
		q->head = (q->head + n - 1) % n;
		q->q[q->head] = j;
	} else {
		q->q[(q->head + q->len) % n] = j;
	}
	q->len++;
	q->sub_seq[slot] = j.seq;
	*t = (struct ld_ticket){.slot = slot, .seq = j.seq};
	pthread_cond_signal(&q->work);
out:
	pthread_mutex_unlock(&q->mu);
	return rc;
}

/* Result of ticket t; 0 for a ticket overtaken by a later load. */
static int result(const struct ld_loadq *q, struct ld_ticket t)
{
	return q->done_seq[t.slot] == t.seq ? q->status[t.slot] : 0;
}

int ld_loadq_wait(struct ld_loadq *q, struct ld_ticket t)
{
	int rc;

	if (!t.seq || t.slot >= q->n_slots)
		return t.seq ? -EINVAL : 0;
	pthread_mutex_lock(&q->mu);
	while (q->done_seq[t.slot] < t.seq)
		pthread_cond_wait(&q->done, &q->mu);
	rc = result(q, t);
	pthread_mutex_unlock(&q->mu);
	return rc;
}

int ld_loadq_poll(struct ld_loadq *q, struct ld_ticket t, int *rc)
{
	int done;

	*rc = 0;
	if (!t.seq || t.slot >= q->n_slots)
		return 1;
	pthread_mutex_lock(&q->mu);
	done = q->done_seq[t.slot] >= t.seq;
	if (done)
		*rc = result(q, t);
	pthread_mutex_unlock(&q->mu);
	return done;
}

void ld_loadq_readahead(const void *src, size_t bytes)
{
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)src & ~(uintptr_t)(page - 1);

	madvise((void *)a, bytes + ((uintptr_t)src - a), MADV_WILLNEED);
}
