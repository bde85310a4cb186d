/* The load queue the host and XRT backends share: one copy thread runs
 * load jobs from a ring (one job per slot at most; urgent ones go to the
 * front), and each load is a ticket (slot, seq) whose result can be waited
 * for or polled.  The backend supplies the copy of one job. */
#ifndef MOED_LOADER_LOADQ_H
#define MOED_LOADER_LOADQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loader/backend.h"

struct ld_loadq_job {
	size_t slot;
	const void *src;
	size_t bytes;
	bool check;                /* compare the copy's XXH64 with sum */
	uint64_t sum;
	uint64_t seq;
};

/* Copies one job into its slot; 0 or negative errno (-EBADMSG: checksum).
 * Runs on the copy thread without the queue's lock. */
typedef int ld_loadq_copy_fn(void *ctx, const struct ld_loadq_job *j);

struct ld_loadq {
	ld_loadq_copy_fn *copy;
	void *ctx;
	pthread_t thread;
	bool running, stop, busy;
	pthread_mutex_t mu;
	pthread_cond_t work;       /* queue not empty, or stop */
	pthread_cond_t done;       /* a load finished */
	size_t n_slots;
	struct ld_loadq_job *q;    /* ring of n_slots */
	size_t head, len;
	uint64_t seq;
	uint64_t *sub_seq;         /* per slot: last load queued */
	uint64_t *done_seq;        /* per slot: last load finished */
	int *status;               /* per slot: result of done_seq */
};

/* Sets up the lock and conditions; no thread yet.  Pair with
 * ld_loadq_destroy. */
void ld_loadq_init(struct ld_loadq *q, ld_loadq_copy_fn *copy, void *ctx);
/* Starts the copy thread: 0 or negative errno. */
int ld_loadq_start(struct ld_loadq *q);
/* Stops and joins the thread (once the queue is empty), then destroys the
 * lock and conditions. */
void ld_loadq_destroy(struct ld_loadq *q);

/* Per-slot state for n_slots slots: 0 or -ENOMEM (nothing kept). */
int ld_loadq_alloc(struct ld_loadq *q, size_t n_slots);
/* Waits until no load is queued or running. */
void ld_loadq_drain(struct ld_loadq *q);
/* Drains, then frees the per-slot state. */
void ld_loadq_free(struct ld_loadq *q);

/* Queues a load into slot (checked by the caller); -EBUSY while a load
 * into that slot is still in flight. */
int ld_loadq_submit(struct ld_loadq *q, size_t slot, const void *src, size_t bytes,
		    const uint64_t *checksum, unsigned flags, struct ld_ticket *t);
/* The result of ticket t; 0 for the zero ticket or one overtaken by a
 * later load into the same slot. */
int ld_loadq_wait(struct ld_loadq *q, struct ld_ticket t);
/* 1 and the result in *rc when t has finished, else 0. */
int ld_loadq_poll(struct ld_loadq *q, struct ld_ticket t, int *rc);

/* Asks the kernel to read src's pages ahead (a mapped store) instead of
 * faulting them in one by one during the copy. */
void ld_loadq_readahead(const void *src, size_t bytes);

#endif
