/* The CUDA backend: slots in one cudaMalloc arena on one device (no managed
 * memory), filled on a dedicated copy stream; each load ends with its slot's
 * event.  The compute stream (dev_stream, which the CUDA engine runs on)
 * waits on a slot's event only when it needs that expert (stream_wait).  A
 * load into a slot waits only for the compute that last read that slot (its
 * "used" event, recorded on the compute stream by slot_used when the cache
 * releases the expert), so a slot is never overwritten under a GEMM still
 * reading it while loads into other slots overlap the compute.
 *
 * Host side: the store's mapping is pinned with cudaHostRegister (read-only
 * flag: a file mapping refuses the default one), so copies run at full PCIe
 * rate straight from it; when registration fails or is disabled, loads go
 * through a ring of pinned staging buffers (a CPU memcpy on the caller's
 * thread, then an async copy).  Weights are copied as stored: f32, or bf16
 * for a bf16 pack (the CUDA engine computes on bf16 slots directly).  The
 * registration outlives the pool, so a cache reopened with another slot
 * count on the same backend does not pin the store again.
 *
 * Prefetches (loads without LD_LOAD_URGENT) wait in a queue on the host,
 * and a feeder thread copies them only while no demand copy is on the copy
 * stream, a piece at a time (PF_PIECE bytes unless MOED_CUDA_PREFETCH_PIECE
 * says otherwise; two pieces on the stream), so a demand miss waits behind
 * at most two pieces, not behind every prefetch issued,
 * and a prefetch still queued can be dropped (cancel, which stops a copy
 * midway) once its layer has run without it.  Waiting on a queued prefetch
 * (wait, stream_wait) copies the rest at once; LD_LOAD_NOW skips the queue.
 * MOED_CUDA_PREFETCH_QUEUE=1: whole prefetches, PF_DEPTH on the stream
 * whatever else is there; =0: every load goes to the copy stream when
 * issued, in that order. */
#include <cuda_runtime_api.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "loader/backend.h"
#include "loader/backend_cuda_prof.h"
#include "loader/env.h"
#include "loader/store.h"

#define NSTAGE 4
#define STAGE_BYTES (8u << 20) /* copies of 4 MiB and up reach full rate */
#define PF_DEPTH 2             /* prefetches on the copy stream at once: one
				* copying, one queued behind it (no gap) */
/* Idle mode's piece: a demand miss waits behind two at most (2 x 19 us).
 * Against 4 MiB pieces, same machine, batch 1: replayed routing +1.8 to
 * +12.9%, synthetic -2.4 to +4.3% (bench/results/cuda_bench_s19.md). */
#define PF_PIECE (1u << 20)
#define PF_PIECE_MIN (64u << 10)

struct cu {
	struct ld_backend base;
	int dev;
	unsigned flags;
	cudaStream_t copy, compute;
	uint8_t *pool;
	cudaEvent_t *done;         /* per slot: its last load finished */
	cudaEvent_t *used;         /* per slot: the last compute reading it */
	uint64_t *sub_seq;         /* per slot: its last load's ticket */
	uint64_t seq;
	pthread_mutex_t mu;
	const uint8_t *reg_base;   /* registered host range */
	size_t reg_bytes;
	void *stage[NSTAGE];
	cudaEvent_t stage_ev[NSTAGE];
	unsigned stage_next;
	bool staged;               /* staging ring allocated */
	bool prof;                 /* MOED_CUDA_PROFILE */
	struct cu_prof *pp;        /* its copy timing, or NULL */
	/* The prefetch queue, oldest first (n_slots long: one load a slot). */
	struct cu_pend {
		size_t slot;
		const void *src;
		size_t bytes;
		uint64_t seq;
		size_t off;            /* copied so far (idle mode's pieces) */
	} *pq;
	size_t pq_len;
	bool *pending;             /* per slot: its last load waits in pq */
	struct ld_ticket fly[PF_DEPTH];  /* prefetches on the copy stream */
	int nfly;
	int queue;                 /* MOED_CUDA_PREFETCH_QUEUE: 0, 1, 2 (idle) */
	struct ld_ticket dem;      /* the last demand copy (idle mode) */
	cudaEvent_t piece[2];      /* the last two pieces' ends (idle mode) */
	size_t piece_bytes;        /* idle mode's piece */
	int pnext;                 /* the older of the two */
	pthread_t feeder;
	pthread_cond_t work;       /* pq not empty, or stop */
	bool feeding, stop;
	int broken;                /* a failed submission of the feeder's */
};

static struct cu *CUB(struct ld_backend *be)
{
	return (struct cu *)be;
}

static int io(cudaError_t e)
{
	return e == cudaSuccess ? 0 : -EIO;
}

static void cu_pool_free(struct ld_backend *be)
{
	struct cu *c = CUB(be);

	/* Queued prefetches are dropped (nothing reads this pool again); the
	 * feeder sleeps on the empty queue. */
	pthread_mutex_lock(&c->mu);
	c->pq_len = 0;
	c->nfly = 0;
	c->dem = (struct ld_ticket){0, 0};
	free(c->pq);
	free(c->pending);
	c->pq = NULL;
	c->pending = NULL;
	pthread_mutex_unlock(&c->mu);
	cudaSetDevice(c->dev);
	cudaStreamSynchronize(c->copy);
	cu_prof_close(c->pp);
	c->pp = NULL;
	if (c->done)
		for (size_t i = 0; i < be->n_slots; i++)
			if (c->done[i])
				cudaEventDestroy(c->done[i]);
	if (c->used)
		for (size_t i = 0; i < be->n_slots; i++)
			if (c->used[i])
				cudaEventDestroy(c->used[i]);
	cudaFree(c->pool);
	free(c->done);
	free(c->used);
	c->used = NULL;
	free(c->sub_seq);
	c->pool = NULL;
	c->done = NULL;
	c->sub_seq = NULL;
	be->n_slots = be->slot_bytes = be->slot_stride = 0;
	be->pool_locked = false;
}

static int cu_pool_alloc(struct ld_backend *be, size_t n_slots, size_t slot_bytes)
{
	struct cu *c = CUB(be);
	size_t stride = (slot_bytes + 4095) / 4096 * 4096;

	if (c->pool)
		return -EBUSY;
	if (!n_slots || !slot_bytes || stride > SIZE_MAX / n_slots)
		return -EINVAL;
	if (cudaSetDevice(c->dev) != cudaSuccess)
		return -EIO;
	if (cudaMalloc((void **)&c->pool, n_slots * stride) != cudaSuccess) {
		cudaGetLastError();
		c->pool = NULL;
		return -ENOMEM;
	}
	be->n_slots = n_slots;
	be->slot_bytes = slot_bytes;
	be->slot_stride = stride;
	be->pool_locked = true;    /* device memory: nothing pages it out */
	c->done = calloc(n_slots, sizeof(*c->done));
	c->sub_seq = calloc(n_slots, sizeof(*c->sub_seq));
	c->used = calloc(n_slots, sizeof(*c->used));
	c->pq = calloc(n_slots, sizeof(*c->pq));
	c->pending = calloc(n_slots, sizeof(*c->pending));
	if (!c->done || !c->sub_seq || !c->used || !c->pq || !c->pending) {
		cu_pool_free(be);
		return -ENOMEM;
	}
	if (c->prof && cu_prof_open(&c->pp)) {
		cu_pool_free(be);
		return -EIO;
	}
	/* A never-recorded event is complete: a first load waits for nothing. */
	for (size_t i = 0; i < n_slots; i++)
		if (cudaEventCreateWithFlags(&c->done[i], cudaEventDisableTiming) != cudaSuccess ||
		    cudaEventCreateWithFlags(&c->used[i], cudaEventDisableTiming) != cudaSuccess) {
			cudaGetLastError();
			cu_pool_free(be);
			return -EIO;
		}
	return 0;
}

static void *cu_slot_ptr(struct ld_backend *be, size_t slot)
{
	struct cu *c = CUB(be);

	return slot < be->n_slots ? c->pool + slot * be->slot_stride : NULL;
}

static int stage_init(struct cu *c)
{
	for (int i = 0; i < NSTAGE; i++) {
		if (cudaHostAlloc(&c->stage[i], STAGE_BYTES, cudaHostAllocDefault) != cudaSuccess ||
		    cudaEventCreateWithFlags(&c->stage_ev[i], cudaEventDisableTiming) !=
			    cudaSuccess) {
			cudaGetLastError();
			return -ENOMEM;
		}
	}
	c->staged = true;
	return 0;
}

/* Through the pinned ring: each buffer is refilled once its last copy is done. */
static int staged_copy(struct cu *c, uint8_t *dst, const uint8_t *src, size_t bytes)
{
	int rc;

	if (!c->staged && (rc = stage_init(c)))
		return rc;
	for (size_t off = 0; off < bytes; off += STAGE_BYTES) {
		size_t n = bytes - off < STAGE_BYTES ? bytes - off : STAGE_BYTES;
		unsigned i = c->stage_next++ % NSTAGE;

		if ((rc = io(cudaEventSynchronize(c->stage_ev[i]))))
			return rc;
		memcpy(c->stage[i], src + off, n);
		if ((rc = io(cudaMemcpyAsync(dst + off, c->stage[i], n, cudaMemcpyHostToDevice,
					     c->copy))) ||
		    (rc = io(cudaEventRecord(c->stage_ev[i], c->copy))))
			return rc;
	}
	return 0;
}

static bool registered(const struct cu *c, const void *src, size_t bytes)
{
	const uint8_t *p = src;

	return c->reg_base && p >= c->reg_base && bytes <= c->reg_bytes &&
		(size_t)(p - c->reg_base) <= c->reg_bytes - bytes;
}

static int copy_in(struct cu *c, uint8_t *dst, const void *src, size_t bytes)
{
	if (registered(c, src, bytes))
		return io(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->copy));
	return staged_copy(c, dst, src, bytes);
}

/* Queues bytes [off, off + n) of load e on the copy stream (mutex held):
 * the first part after the compute that last read the slot, the last one
 * followed by the slot's event. */
static int submit_part(struct cu *c, const struct cu_pend *e, size_t off, size_t n)
{
	uint8_t *dst = c->pool + e->slot * c->base.slot_stride;
	bool whole = !off && n == e->bytes, last = off + n == e->bytes;
	struct cu_prof *p = whole && cu_prof_room(c->pp) ? c->pp : NULL;
	int rc;

	if ((rc = io(cudaSetDevice(c->dev))))
		return rc;
	if (!off && !(rc = io(cudaStreamWaitEvent(c->copy, c->used[e->slot], 0))) && p)
		rc = cu_prof_begin(p, c->copy);
	if (!rc)
		rc = copy_in(c, dst + off, (const uint8_t *)e->src + off, n);
	if (!rc && p)
		rc = cu_prof_end(p, c->copy, n);
	if (!rc && last)
		rc = io(cudaEventRecord(c->done[e->slot], c->copy));
	c->pending[e->slot] = !last;
	c->sub_seq[e->slot] = e->seq;
	return rc;
}

/* The rest of load e, at once; a demand copy from now on (mutex held). */
static int submit(struct cu *c, const struct cu_pend *e)
{
	c->dem = (struct ld_ticket){e->slot, e->seq};
	return submit_part(c, e, e->off, e->bytes - e->off);
}

/* Takes entry i out of the prefetch queue (mutex held). */
static struct cu_pend pq_take(struct cu *c, size_t i)
{
	struct cu_pend e = c->pq[i];

	memmove(&c->pq[i], &c->pq[i + 1], (c->pq_len - i - 1) * sizeof(*c->pq));
	c->pq_len--;
	return e;
}

/* The queue entry of ticket t, or -1 (mutex held). */
static long pq_find(const struct cu *c, struct ld_ticket t)
{
	if (!c->pending || t.slot >= c->base.n_slots || !c->pending[t.slot] ||
	    c->sub_seq[t.slot] != t.seq)
		return -1;
	for (size_t i = 0; i < c->pq_len; i++)
		if (c->pq[i].slot == t.slot)
			return (long)i;
	return -1;
}

/* Whether load t is on the copy stream, not yet finished (mutex held). */
static bool copying(const struct cu *c, struct ld_ticket t)
{
	bool r = t.seq && c->sub_seq[t.slot] == t.seq && !c->pending[t.slot] &&
		 cudaEventQuery(c->done[t.slot]) == cudaErrorNotReady;

	cudaGetLastError();
	return r;
}

/* Idle mode, mutex held: the head's next piece when no demand copy and at
 * most one piece is on the stream; 1 when one was queued, else 0. */
static int feed_piece(struct cu *c)
{
	struct cu_pend *e = &c->pq[0];
	size_t n = e->bytes - e->off < c->piece_bytes ? e->bytes - e->off : c->piece_bytes;
	int rc;

	if (copying(c, c->dem) || cudaEventQuery(c->piece[c->pnext]) == cudaErrorNotReady) {
		cudaGetLastError();
		return 0;
	}
	if ((rc = submit_part(c, e, e->off, n)) ||
	    (rc = io(cudaEventRecord(c->piece[c->pnext], c->copy))))
		c->broken = rc;
	c->pnext ^= 1;
	if ((e->off += n) == e->bytes)
		pq_take(c, 0);
	return 1;
}

/* Forgets the prefetches on the copy stream that have finished (mutex held). */
static void fly_retire(struct cu *c)
{
	int k = 0;

	for (int i = 0; i < c->nfly; i++)
		if (copying(c, c->fly[i]))
			c->fly[k++] = c->fly[i];
	c->nfly = k;
}

/* The feeder: keeps PF_DEPTH queued prefetches on the copy stream (idle
 * mode: feed_piece's), checking every 10 us while it cannot add one and
 * sleeping while the queue is empty. */
static void *feed(void *arg)
{
	struct cu *c = arg;

	/* Its 10 us naps at about 10 us, not the default 50 us of slack. */
	prctl(PR_SET_TIMERSLACK, 1000UL);
	cudaSetDevice(c->dev);
	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		if (!c->pq_len) {
			pthread_cond_wait(&c->work, &c->mu);
			continue;
		}
		if (c->queue == 2 && feed_piece(c))
			continue;
		fly_retire(c);
		if (c->queue == 1 && c->nfly < PF_DEPTH) {
			struct cu_pend e = pq_take(c, 0);
			int rc = submit_part(c, &e, 0, e.bytes);

			if (rc)
				c->broken = rc;   /* every ticket reports it */
			else
				c->fly[c->nfly++] = (struct ld_ticket){e.slot, e.seq};
			continue;
		}
		pthread_mutex_unlock(&c->mu);
		nanosleep(&(struct timespec){0, 10000}, NULL);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static int cu_load_async(struct ld_backend *be, size_t slot, const void *src, size_t bytes,
			 const uint64_t *checksum, unsigned flags, struct ld_ticket *t)
{
	struct cu *c = CUB(be);
	int rc = 0;

	if (slot >= be->n_slots || bytes > be->slot_bytes || !src)
		return -EINVAL;
	/* No LD_BE_VERIFY: a checksum, when given, is checked on the host. */
	if (checksum && ld_xxh64(src, bytes) != *checksum)
		return -EBADMSG;
	pthread_mutex_lock(&c->mu);
	uint64_t seq = ++c->seq;
	if (!c->queue || (flags & (LD_LOAD_URGENT | LD_LOAD_NOW))) {
		struct cu_pend e = {slot, src, bytes, seq, 0};

		if ((rc = (flags & LD_LOAD_URGENT) ? submit(c, &e) : submit_part(c, &e, 0, bytes)))
			goto out;
	} else {
		if (!c->feeding) {
			if (pthread_create(&c->feeder, NULL, feed, c)) {
				rc = -EAGAIN;
				goto out;
			}
			c->feeding = true;
		}
		c->pq[c->pq_len++] = (struct cu_pend){slot, src, bytes, seq, 0};
		c->pending[slot] = true;
		c->sub_seq[slot] = seq;
		pthread_cond_signal(&c->work);
	}
	*t = (struct ld_ticket){.slot = slot, .seq = seq};
out:
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* A queued prefetch someone now waits for: onto the copy stream at once
 * (mutex held); 0 when t is not queued. */
static int start_now(struct cu *c, struct ld_ticket t)
{
	long i = pq_find(c, t);

	if (i < 0)
		return 0;
	struct cu_pend e = pq_take(c, (size_t)i);
	return submit(c, &e);
}

static int cu_cancel(struct ld_backend *be, struct ld_ticket t, size_t *copied)
{
	struct cu *c = CUB(be);
	long i;

	pthread_mutex_lock(&c->mu);
	if ((i = pq_find(c, t)) >= 0) {
		*copied = pq_take(c, (size_t)i).off;
		c->pending[t.slot] = false;
	}
	pthread_mutex_unlock(&c->mu);
	return i >= 0;
}

/* The event of ticket t, or NULL when a later load overtook it (done); a
 * queued prefetch is started first (queued NULL: someone waits for it), or
 * *queued says it still waits (left as it was when the backend is broken). */
static cudaEvent_t event_of(struct cu *c, struct ld_ticket t, bool *queued, int *rc)
{
	cudaEvent_t ev = NULL;

	*rc = 0;
	pthread_mutex_lock(&c->mu);
	if (c->broken)
		*rc = c->broken;
	else if (queued)
		*queued = pq_find(c, t) >= 0;
	else
		*rc = start_now(c, t);
	if (!c->broken && !*rc && !(queued && *queued) && c->sub_seq[t.slot] == t.seq)
		ev = c->done[t.slot];
	pthread_mutex_unlock(&c->mu);
	return ev;
}

/* After load t: the caller blocks (cu_wait), or the compute stream's later
 * work waits (cu_stream_wait). */
static int after_load(struct cu *c, struct ld_ticket t, bool stream)
{
	cudaEvent_t ev;
	int rc;

	if (!t.seq || t.slot >= c->base.n_slots)
		return t.seq ? -EINVAL : 0;
	if (!(ev = event_of(c, t, NULL, &rc)))
		return rc;
	cudaSetDevice(c->dev);
	return io(stream ? cudaStreamWaitEvent(c->compute, ev, 0) : cudaEventSynchronize(ev));
}

static int cu_wait(struct ld_backend *be, struct ld_ticket t)
{
	return after_load(CUB(be), t, false);
}

static int cu_poll(struct ld_backend *be, struct ld_ticket t, int *rc)
{
	struct cu *c = CUB(be);
	cudaEvent_t ev;
	bool queued = false;

	*rc = 0;
	if (!t.seq || t.slot >= be->n_slots || !(ev = event_of(c, t, &queued, rc)))
		return !queued;
	cudaSetDevice(c->dev);
	cudaError_t e = cudaEventQuery(ev);
	if (e == cudaErrorNotReady)
		return 0;
	*rc = io(e);
	return 1;
}

static int cu_stream_wait(struct ld_backend *be, struct ld_ticket t)
{
	return after_load(CUB(be), t, true);
}

static int cu_slot_used(struct ld_backend *be, size_t slot)
{
	struct cu *c = CUB(be);
	int rc;

	if (slot >= be->n_slots)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	if (!(rc = io(cudaSetDevice(c->dev))))
		rc = io(cudaEventRecord(c->used[slot], c->compute));
	pthread_mutex_unlock(&c->mu);
	return rc;
}

static int cu_host_register(struct ld_backend *be, const void *base, size_t bytes)
{
	struct cu *c = CUB(be);

	if (c->flags & LD_BE_CUDA_NO_REGISTER)
		return -ENOTSUP;
	if (c->reg_base)
		return base == c->reg_base && bytes == c->reg_bytes ? 0 : -EBUSY;
	cudaSetDevice(c->dev);
	if (cudaHostRegister((void *)base, bytes, cudaHostRegisterReadOnly) != cudaSuccess) {
		cudaGetLastError();
		if (cudaHostRegister((void *)base, bytes, cudaHostRegisterDefault) != cudaSuccess) {
			cudaGetLastError();
			return -ENOMEM;
		}
	}
	c->reg_base = base;
	c->reg_bytes = bytes;
	return 0;
}

static void cu_close(struct ld_backend *be)
{
	struct cu *c = CUB(be);

	if (c->pool)
		cu_pool_free(be);
	if (c->feeding) {
		pthread_mutex_lock(&c->mu);
		c->stop = true;
		pthread_cond_signal(&c->work);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->feeder, NULL);
	}
	cudaSetDevice(c->dev);
	if (c->copy)
		cudaStreamSynchronize(c->copy);
	if (c->reg_base)
		cudaHostUnregister((void *)c->reg_base);
	for (int i = 0; i < NSTAGE && c->staged; i++) {
		cudaFreeHost(c->stage[i]);
		cudaEventDestroy(c->stage_ev[i]);
	}
	if (c->copy)
		cudaStreamDestroy(c->copy);
	if (c->compute)
		cudaStreamDestroy(c->compute);
	for (int i = 0; i < 2; i++)
		if (c->piece[i])
			cudaEventDestroy(c->piece[i]);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->work);
	free(c);
}

static const struct ld_backend_ops cuda_ops = {
	.name = "cuda",
	.caps = LD_BE_DEV_PTR | LD_BE_BF16_SLOTS,
	.pool_alloc = cu_pool_alloc,
	.slot_ptr = cu_slot_ptr,
	.load_async = cu_load_async,
	.wait = cu_wait,
	.poll = cu_poll,
	.pool_free = cu_pool_free,
	.close = cu_close,
	.stream_wait = cu_stream_wait,
	.slot_used = cu_slot_used,
	.host_register = cu_host_register,
	.cancel = cu_cancel,
};

/* Which device, or why none: -ENODEV with the runtime's reason. */
static int pick_device(int index, char *err, size_t errlen)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);

	if (e != cudaSuccess || n < 1) {
		snprintf(err, errlen, "cuda backend: no CUDA device (%s); use device.backend "
			 "= \"host\" on this machine",
			 e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
		cudaGetLastError();
		return -ENODEV;
	}
	if (index < 0 || index >= n) {
		snprintf(err, errlen, "cuda backend: device.index %d: out of range (%d CUDA "
			 "device%s)", index, n, n == 1 ? "" : "s");
		return -ENODEV;
	}
	if ((e = cudaSetDevice(index)) != cudaSuccess) {
		snprintf(err, errlen, "cuda backend: device %d: %s", index, cudaGetErrorString(e));
		return -ENODEV;
	}
	return 0;
}

int ld_backend_cuda_open(int index, unsigned flags, struct ld_backend **out, char *err,
			 size_t errlen)
{
	struct cu *c;
	int rc;

	*out = NULL;
	if ((rc = pick_device(index, err, errlen)))
		return rc;
	if (!(c = calloc(1, sizeof(*c)))) {
		snprintf(err, errlen, "cuda backend: out of memory");
		return -ENOMEM;
	}
	c->base.ops = &cuda_ops;
	c->dev = c->base.dev_index = index;
	c->flags = flags;
	c->prof = ld_env_on("MOED_CUDA_PROFILE", false);
	c->queue = (int)ld_env_long("MOED_CUDA_PREFETCH_QUEUE", 0, 2, 2);
	/* The idle mode's piece in KiB, PF_PIECE_MIN up to 64 MiB. */
	c->piece_bytes = (size_t)ld_env_long("MOED_CUDA_PREFETCH_PIECE", PF_PIECE_MIN >> 10,
					     65536, PF_PIECE >> 10) << 10;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->work, NULL);
	cudaError_t e = cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking);
	if (e == cudaSuccess)
		e = cudaStreamCreateWithFlags(&c->compute, cudaStreamNonBlocking);
	for (int i = 0; i < 2 && e == cudaSuccess; i++)
		e = cudaEventCreateWithFlags(&c->piece[i], cudaEventDisableTiming);
	if (e != cudaSuccess) {
		snprintf(err, errlen, "cuda backend: device %d: streams: %s", index,
			 cudaGetErrorString(e));
		cu_close(&c->base);
		return -EIO;
	}
	c->base.dev_stream = c->compute;
	*out = &c->base;
	return 0;
}
