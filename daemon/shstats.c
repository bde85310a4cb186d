/* Worker -> front counters through a shared file mapping. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/shstats.h"

#define MAGIC 0x5354415453444f4dULL  /* "MODSTATS" */

struct shstats_writer {
	void *map;
	size_t size;
	int n_layers, n_experts;
};

static size_t map_size(int n_layers, int n_experts)
{
	return sizeof(struct shstats_head) + (size_t)n_layers * sizeof(struct cache_stats) +
	       (size_t)n_layers * (size_t)n_experts;
}

static void path_of(const char *dir, char *buf, size_t n)
{
	snprintf(buf, n, "%s/stats.shm", dir);
}

int shstats_writer_open(const char *dir, int n_layers, int n_experts,
			struct shstats_writer **out)
{
	char path[4200], tmp[4300];
	struct shstats_writer *w = calloc(1, sizeof(*w));
	int fd, rv;

	if (!w)
		return -ENOMEM;
	w->n_layers = n_layers;
	w->n_experts = n_experts;
	w->size = map_size(n_layers, n_experts);
	path_of(dir, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	/* A fresh file renamed into place: a reader never sees a half-sized one. */
	if ((fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600)) < 0)
		goto fail_errno;
	if (ftruncate(fd, (off_t)w->size) < 0)
		goto fail_fd;
	w->map = mmap(NULL, w->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (w->map == MAP_FAILED)
		goto fail_fd;
	close(fd);
	struct shstats_head *h = w->map;
	h->magic = MAGIC;
	h->n_layers = (uint32_t)n_layers;
	h->n_experts = (uint32_t)n_experts;
	if (rename(tmp, path) < 0) {
		rv = -errno;
		munmap(w->map, w->size);
		unlink(tmp);
		free(w);
		return rv;
	}
	*out = w;
	return 0;
fail_fd:
	rv = -errno;
	close(fd);
	unlink(tmp);
	free(w);
	return rv;
fail_errno:
	rv = -errno;
	free(w);
	return rv;
}

struct shstats_head *shstats_head(struct shstats_writer *w)
{
	return w->map;
}

void shstats_publish(struct shstats_writer *w, const struct cache *c)
{
	struct shstats_head *h = w->map;
	struct cache_stats *ls = (struct cache_stats *)(h + 1);
	uint8_t *res = (uint8_t *)(ls + w->n_layers);

	__atomic_add_fetch(&h->seq, 1, __ATOMIC_ACQ_REL);
	for (int l = 0; l < w->n_layers; l++) {
		cache_get_stats(c, l, &ls[l]);
		for (int x = 0; x < w->n_experts; x++)
			res[(size_t)l * w->n_experts + x] = (uint8_t)cache_resident(c, l, x);
	}
	__atomic_add_fetch(&h->seq, 1, __ATOMIC_ACQ_REL);
}

void shstats_writer_close(struct shstats_writer *w)
{
	if (!w)
		return;
	munmap(w->map, w->size);
	free(w);
}

/* Copies under the sequence lock; retries while the worker writes. */
static int snapshot(const void *map, size_t size, struct shstats *out)
{
	const struct shstats_head *h = map;
	size_t nl = h->n_layers, ne = h->n_experts;

	if (h->magic != MAGIC || map_size((int)nl, (int)ne) != size)
		return -EBADMSG;
	out->layers = calloc(nl + 1, sizeof(struct cache_stats));
	out->resident = calloc(nl * ne + 1, 1);
	if (!out->layers || !out->resident)
		return -ENOMEM;
	for (int tries = 0; tries < 1000; tries++) {
		uint64_t s0 = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);

		if (s0 & 1)
			continue;
		memcpy(&out->h, h, sizeof(*h));
		memcpy(out->layers, h + 1, nl * sizeof(struct cache_stats));
		memcpy(out->resident, (const char *)(h + 1) + nl * sizeof(struct cache_stats), nl * ne);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&h->seq, __ATOMIC_ACQUIRE) == s0)
			return 0;
	}
	return -EAGAIN;
}

int shstats_read(const char *dir, struct shstats *out)
{
	char path[4200];
	struct stat st;
	void *map;
	int fd, rv;

	memset(out, 0, sizeof(*out));
	path_of(dir, path, sizeof(path));
	if ((fd = open(path, O_RDONLY)) < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(struct shstats_head)) {
		close(fd);
		return -EBADMSG;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return -errno;
	rv = snapshot(map, (size_t)st.st_size, out);
	munmap(map, (size_t)st.st_size);
	if (rv < 0)
		shstats_free(out);
	return rv;
}

void shstats_free(struct shstats *s)
{
	free(s->layers);
	free(s->resident);
	s->layers = NULL;
	s->resident = NULL;
}
