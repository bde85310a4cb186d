/* The host backend: slots in RAM (one anonymous mapping, mlock'd where the
 * limits allow), filled by one copy thread from the mapped store.  Copying
 * from the store's MAP_SHARED mapping faults its pages in from disk when
 * they are not in the page cache, so a store bigger than RAM works: this is
 * disk-to-RAM offloading.  The copy is checked against the expert's XXH64
 * chunk by chunk while the chunk is still in the CPU cache. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "loader/backend.h"
#ifdef HAVE_XRT
#include "loader/backend_xrt.h"
#endif
#include "loader/loadq.h"
#include "loader/store.h"

#define CHUNK (256u << 10)     /* copy+hash step; fits in L2 */

struct host {
	struct ld_backend base;
	uint8_t *pool;
	size_t pool_bytes;
	struct ld_loadq lq;
};

static struct host *H(struct ld_backend *be)
{
	return (struct host *)be;
}

/* Copies one expert, hashing each chunk of the destination right after it
 * is written. */
static int copy_job(void *ctx, const struct ld_loadq_job *j)
{
	struct host *h = ctx;
	uint8_t *dst = h->pool + j->slot * h->base.slot_stride;
	const uint8_t *src = j->src;
	struct ld_xxh64 x;

	ld_loadq_readahead(src, j->bytes);
	ld_xxh64_init(&x);
	for (size_t off = 0; off < j->bytes; off += CHUNK) {
		size_t n = j->bytes - off < CHUNK ? j->bytes - off : CHUNK;
		memcpy(dst + off, src + off, n);
		if (j->check)
			ld_xxh64_update(&x, dst + off, n);
	}
	if (j->check && ld_xxh64_digest(&x) != j->sum)
		return -EBADMSG;
	return 0;
}

static void host_pool_free(struct ld_backend *be)
{
	struct host *h = H(be);

	ld_loadq_free(&h->lq);
	if (h->pool)
		munmap(h->pool, h->pool_bytes);
	h->pool = NULL;
	be->n_slots = be->slot_bytes = be->slot_stride = 0;
	be->pool_locked = false;
}

static int host_pool_alloc(struct ld_backend *be, size_t n_slots, size_t slot_bytes)
{
	struct host *h = H(be);
	size_t stride = (slot_bytes + 4095) / 4096 * 4096;

	if (h->pool)
		return -EBUSY;
	if (!n_slots || !slot_bytes || stride > SIZE_MAX / n_slots)
		return -EINVAL;
	void *p = mmap(NULL, n_slots * stride, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	h->pool = p;
	h->pool_bytes = n_slots * stride;
	be->n_slots = n_slots;
	be->slot_bytes = slot_bytes;
	be->slot_stride = stride;
	if (ld_loadq_alloc(&h->lq, n_slots) < 0) {
		host_pool_free(be);
		return -ENOMEM;
	}
	madvise(p, h->pool_bytes, MADV_HUGEPAGE);
	/* Best effort: RLIMIT_MEMLOCK is often small; unlocked slots still work. */
	be->pool_locked = mlock(p, h->pool_bytes) == 0;
	return 0;
}

static void *host_slot_ptr(struct ld_backend *be, size_t slot)
{
	struct host *h = H(be);

	return slot < be->n_slots ? h->pool + slot * be->slot_stride : NULL;
}

static int host_load_async(struct ld_backend *be, size_t slot, const void *src,
			   size_t bytes, const uint64_t *checksum, unsigned flags,
			   struct ld_ticket *t)
{
	if (slot >= be->n_slots || bytes > be->slot_bytes || !src)
		return -EINVAL;
	return ld_loadq_submit(&H(be)->lq, slot, src, bytes, checksum, flags, t);
}

static int host_wait(struct ld_backend *be, struct ld_ticket t)
{
	return ld_loadq_wait(&H(be)->lq, t);
}

static int host_poll(struct ld_backend *be, struct ld_ticket t, int *rc)
{
	return ld_loadq_poll(&H(be)->lq, t, rc);
}

static void host_close(struct ld_backend *be)
{
	struct host *h = H(be);

	if (h->pool)
		host_pool_free(be);
	ld_loadq_destroy(&h->lq);
	free(h);
}

static const struct ld_backend_ops host_ops = {
	.name = "host",
	.caps = LD_BE_HOST_PTR | LD_BE_VERIFY,
	.pool_alloc = host_pool_alloc,
	.slot_ptr = host_slot_ptr,
	.load_async = host_load_async,
	.wait = host_wait,
	.poll = host_poll,
	.pool_free = host_pool_free,
	.close = host_close,
};

int ld_backend_host_open(struct ld_backend **out, char *err, size_t errlen)
{
	struct host *h = calloc(1, sizeof(*h));
	int rc;

	*out = NULL;
	if (!h) {
		snprintf(err, errlen, "host backend: out of memory");
		return -ENOMEM;
	}
	h->base.ops = &host_ops;
	ld_loadq_init(&h->lq, copy_job, h);
	if ((rc = ld_loadq_start(&h->lq)) < 0) {
		snprintf(err, errlen, "host backend: copy thread: %s", strerror(-rc));
		host_close(&h->base);
		return rc;
	}
	*out = &h->base;
	return 0;
}

int ld_backend_open(const char *name, struct ld_backend **out, char *err, size_t errlen)
{
	return ld_backend_open_index(name, 0, out, err, errlen);
}

int ld_backend_open_index(const char *name, int index, struct ld_backend **out, char *err,
			  size_t errlen)
{
	struct ld_backend_conf conf = {.index = index};

	return ld_backend_open_conf(name, &conf, out, err, errlen);
}

/* The message for a backend this moed has no code for. */
static int not_built(const char *name, char *err, size_t errlen)
{
	const char *avail = "host"
#ifdef HAVE_CUDA
		", cuda"
#endif
#ifdef HAVE_XRT
		", xrt"
#endif
		;

	if (!strcmp(name, "xrt"))
		snprintf(err, errlen, "backend 'xrt': moed was built without XRT (install "
			 "libxrt-dev and rebuild; meson -Dxrt=enabled insists on it)");
	else
		snprintf(err, errlen, "backend '%s': not built into this moed (available: %s)",
			 name, avail);
	return -ENOTSUP;
}

int ld_backend_open_conf(const char *name, const struct ld_backend_conf *conf,
			 struct ld_backend **out, char *err, size_t errlen)
{
	int index = conf ? conf->index : 0;

	(void)index;
	if (!strcmp(name, "host"))
		return ld_backend_host_open(out, err, errlen);
#ifdef HAVE_CUDA
	if (!strcmp(name, "cuda"))
		return ld_backend_cuda_open(index, 0, out, err, errlen);
#endif
#ifdef HAVE_XRT
	if (!strcmp(name, "xrt"))
		return ld_backend_xrt_open(conf, out, err, errlen);
#endif
	*out = NULL;
	return not_built(name, err, errlen);
}

int ld_backend_check(const char *name, const struct ld_backend_conf *conf, char *err,
		     size_t errlen)
{
	(void)conf;
	if (!strcmp(name, "host"))
		return 0;
#ifdef HAVE_CUDA
	if (!strcmp(name, "cuda"))
		return 0;
#endif
#ifdef HAVE_XRT
	if (!strcmp(name, "xrt"))
		return ld_backend_xrt_check(conf, err, errlen);
#endif
	return not_built(name, err, errlen);
}
