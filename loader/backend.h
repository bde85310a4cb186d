/* Device backends: where the cache's slots live and how an expert gets from
 * the host store into one.  One small ops table; host (RAM slots, copy
 * thread) is built in, CUDA and XRT implement the same table.
 *
 * A backend owns one slot pool.  At most one load per slot is in flight (the
 * cache guarantees it); a load's completion is a ticket that can be waited
 * on or polled any number of times until the next load into that slot. */
#ifndef LD_BACKEND_H
#define LD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	LD_BE_HOST_PTR = 1u << 0,   /* slot_ptr gives CPU-addressable memory */
	LD_BE_VERIFY = 1u << 1,     /* load_async checks the expert's checksum */
};

enum {
	LD_LOAD_URGENT = 1u << 0,   /* a demand miss: ahead of queued prefetches */
};

struct ld_ticket {
	size_t slot;
	uint64_t seq;               /* 0: no load */
};

struct ld_backend;

struct ld_backend_ops {
	const char *name;
	unsigned caps;
	/* n_slots slots of at least slot_bytes each; one pool per backend. */
	int (*pool_alloc)(struct ld_backend *be, size_t n_slots, size_t slot_bytes);
	/* CPU address of a slot; NULL for device memory. */
	void *(*slot_ptr)(struct ld_backend *be, size_t slot);
	/* Queues a copy of bytes from src (host memory, e.g. the mapped store)
	 * into slot.  With checksum (and LD_BE_VERIFY) the copy is checked
	 * against XXH64 == *checksum and the load fails with -EBADMSG. */
	int (*load_async)(struct ld_backend *be, size_t slot, const void *src, size_t bytes,
			  const uint64_t *checksum, unsigned flags, struct ld_ticket *t);
	/* Blocks until the load is done: 0, or its negative error. */
	int (*wait)(struct ld_backend *be, struct ld_ticket t);
	/* 1 done (*rc its result), 0 still running. */
	int (*poll)(struct ld_backend *be, struct ld_ticket t, int *rc);
	/* Waits for queued loads, then frees the pool. */
	void (*pool_free)(struct ld_backend *be);
	void (*close)(struct ld_backend *be);
};

/* The common part; each backend's struct starts with it. */
struct ld_backend {
	const struct ld_backend_ops *ops;
	size_t n_slots;
	size_t slot_bytes;          /* as asked */
	size_t slot_stride;         /* distance between slots */
	bool pool_locked;           /* pinned/mlock'd (page faults cannot evict it) */
};

/* "host" (always), others when built.  -ENOTSUP with a message otherwise. */
int ld_backend_open(const char *name, struct ld_backend **out, char *err, size_t errlen);
int ld_backend_host_open(struct ld_backend **out, char *err, size_t errlen);

static inline const char *ld_backend_name(const struct ld_backend *be)
{
	return be->ops->name;
}

static inline unsigned ld_backend_caps(const struct ld_backend *be)
{
	return be->ops->caps;
}

static inline void ld_backend_close(struct ld_backend *be)
{
	if (be)
		be->ops->close(be);
}

#endif
