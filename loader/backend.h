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
	LD_BE_DEV_PTR = 1u << 2,    /* slot_ptr gives a device address (CUDA) */
	LD_BE_BF16_SLOTS = 1u << 3, /* slots may hold a bf16 pack's experts as
				     * stored (the CUDA engine reads bf16) */
};

enum {
	LD_LOAD_URGENT = 1u << 0,   /* a demand miss: ahead of queued prefetches */
	LD_LOAD_NOW = 1u << 1,      /* a prefetch not to hold back (CUDA: onto the
				     * copy stream in issue order, not queued) */
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
	/* Optional (NULL where absent). */
	/* Orders the device's compute stream after load t instead of blocking
	 * the caller: 0, or a negative error. */
	int (*stream_wait)(struct ld_backend *be, struct ld_ticket t);
	/* Marks the work queued on the compute stream so far as the last that
	 * reads slot: a later load into slot waits for that work and no other.
	 * 0, or a negative error. */
	int (*slot_used)(struct ld_backend *be, size_t slot);
	/* Pins host memory that loads will read from (the store's mapping),
	 * best effort: 0 when pinned, else a negative error and loads still work. */
	int (*host_register)(struct ld_backend *be, const void *base, size_t bytes);
	/* Drops load t if it is still queued (a prefetch): 1, and no more of
	 * it is copied; *copied: the bytes of it already copied or on their way
	 * (a backend copying in pieces; the slot's contents are then undefined).
	 * 0 when it is on its way whole or done. */
	int (*cancel)(struct ld_backend *be, struct ld_ticket t, size_t *copied);
	/* Runs the expert FFN of the expert in slot where its weights live (a
	 * backend whose slots the CPU cannot read, xrt): x and out host memory,
	 * [n][hidden]; out = down(silu(gate x) * up x), the pack's f32 layout.
	 * 0, or a negative error. */
	int (*run_expert)(struct ld_backend *be, size_t slot, const float *x, int n,
			  int hidden, int inter, float *out);
};

/* The common part; each backend's struct starts with it. */
struct ld_backend {
	const struct ld_backend_ops *ops;
	size_t n_slots;
	size_t slot_bytes;          /* as asked */
	size_t slot_stride;         /* distance between slots */
	bool pool_locked;           /* pinned/mlock'd (page faults cannot evict it) */
	int dev_index;              /* LD_BE_DEV_PTR: the device */
	void *dev_stream;           /* LD_BE_DEV_PTR: compute stream (cudaStream_t) */
};

/* "host" (always), others when built.  -ENOTSUP with a message otherwise. */
int ld_backend_open(const char *name, struct ld_backend **out, char *err, size_t errlen);
int ld_backend_host_open(struct ld_backend **out, char *err, size_t errlen);
/* As ld_backend_open, on device index (device.index) where that applies. */
int ld_backend_open_index(const char *name, int index, struct ld_backend **out, char *err,
			  size_t errlen);
/* The device.* settings a backend may need; a NULL conf or field means the
 * default (index 0, kernel "moe_expert"). */
struct ld_backend_conf {
	int index;                  /* device.index (cuda, xrt) */
	const char *xclbin;         /* device.xclbin (xrt) */
	const char *kernel;         /* device.kernel (xrt) */
};
int ld_backend_open_conf(const char *name, const struct ld_backend_conf *conf,
			 struct ld_backend **out, char *err, size_t errlen);
/* What can be checked without taking the device (built in?  xrt: the xclbin,
 * XRT's driver, a card present): 0, or a negative errno and one line in err.
 * Lets a supervisor fail at start instead of restarting a doomed worker. */
int ld_backend_check(const char *name, const struct ld_backend_conf *conf, char *err,
		     size_t errlen);
/* CUDA device index (built with HAVE_CUDA): one cudaMalloc slot arena, a copy
 * stream and a compute stream.  -ENODEV with a message when no CUDA device is
 * usable.  flags: LD_BE_CUDA_NO_REGISTER (always use the staging ring). */
enum { LD_BE_CUDA_NO_REGISTER = 1u << 0 };
int ld_backend_cuda_open(int index, unsigned flags, struct ld_backend **out, char *err,
			 size_t errlen);

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
