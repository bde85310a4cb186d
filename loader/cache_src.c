/* The cache's counters and the engine's expert source over it
 * (struct ld_expert_src): acquire/release, acquire ahead, running an expert
 * where the backend keeps it, and the table of every expert for the CUDA
 * engine's fast path once all are resident. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/cache_int.h"

static void add_stats(struct cache_stats *d, const struct cache_stats *s)
{
	d->hits += s->hits;
	d->misses += s->misses;
	d->prefetched_used += s->prefetched_used;
	d->prefetched_unused += s->prefetched_unused;
	d->prefetched_late += s->prefetched_late;
	d->evictions += s->evictions;
	d->loads += s->loads;
	d->bytes_loaded += s->bytes_loaded;
	d->stall_seconds += s->stall_seconds;
	d->prefetch_nospace += s->prefetch_nospace;
	d->pin_steals += s->pin_steals;
	d->prefetch_dropped += s->prefetch_dropped;
	d->host_runs += s->host_runs;
}

void cache_get_stats(const struct cache *c, int layer, struct cache_stats *s)
{
	struct cache *m = (struct cache *)c;

	memset(s, 0, sizeof(*s));
	if (layer >= c->o.n_layers)
		return;
	pthread_mutex_lock(&m->mu);
	for (int l = 0; l < c->o.n_layers; l++)
		if (layer < 0 || l == layer)
			add_stats(s, &c->st[l]);
	pthread_mutex_unlock(&m->mu);
}

void cache_reset_stats(struct cache *c)
{
	pthread_mutex_lock(&c->mu);
	memset(c->st, 0, (size_t)c->o.n_layers * sizeof(*c->st));
	pthread_mutex_unlock(&c->mu);
}

void cache_last_error(const struct cache *c, char *buf, size_t n)
{
	struct cache *m = (struct cache *)c;

	pthread_mutex_lock(&m->mu);
	snprintf(buf, n, "%s", c->err);
	pthread_mutex_unlock(&m->mu);
}

static int src_acquire(void *ctx, int layer, int expert, const float **w)
{
	return cache_acquire(ctx, layer, expert, w);
}

static int src_acquire_ahead(void *ctx, int layer, int expert, const float **w)
{
	return cache_acquire_ahead(ctx, layer, expert, w);
}

static int src_order(void *ctx, int layer, int expert)
{
	return cache_order(ctx, layer, expert);
}

static void src_release(void *ctx, int layer, int expert)
{
	cache_release(ctx, layer, expert);
}

static void src_prompt_rows(void *ctx, int n, int chunks)
{
	cache_set_prompt_rows(ctx, n, chunks);
}

static void src_prefetch_layer(void *ctx, int layer)
{
	cache_prefetch_layer(ctx, layer);
}

static void src_unpin_layer(void *ctx, int layer)
{
	cache_unpin_layer(ctx, layer);
}

static void src_layer_done(void *ctx, int layer)
{
	cache_drop_prefetches(ctx, layer);
}

int cache_run_expert(struct cache *c, int layer, int expert, const float *x, int n,
		     int hidden, int inter, float *out)
{
	struct ld_backend *be = c->o.backend;
	int si, rc;

	if (!valid(c, layer, expert) || c->sim || !be->ops->run_expert)
		return valid(c, layer, expert) ? -ENOTSUP : -EINVAL;
	pthread_mutex_lock(&c->mu);
	si = c->map[key(c, layer, expert)];
	/* Only between acquire and release: the use count keeps the slot. */
	rc = si >= 0 && c->slots[si].use > 0 && c->slots[si].state == S_READY ? 0 : -EINVAL;
	pthread_mutex_unlock(&c->mu);
	if (rc == 0)
		rc = be->ops->run_expert(be, (size_t)si, x, n, hidden, inter, out);
	if (rc < 0) {
		pthread_mutex_lock(&c->mu);
		snprintf(c->err, sizeof(c->err), "%s backend: layer %d expert %d: expert run "
			 "failed: %s", ld_backend_name(be), layer, expert, strerror(-rc));
		pthread_mutex_unlock(&c->mu);
	}
	return rc;
}

static int src_run(void *ctx, int layer, int expert, const float *x, int n, int hidden,
		   int inter, float *out)
{
	return cache_run_expert(ctx, layer, expert, x, n, hidden, inter, out);
}

/* The table of every expert's device pointer, built once all are ready in a
 * pool that holds them all (nothing can be evicted after that). */
static const void *const *src_resident_all(void *ctx)
{
	struct cache *c = ctx;
	size_t nk = (size_t)c->o.n_layers * (size_t)c->o.n_experts;
	const void **t = NULL;

	pthread_mutex_lock(&c->mu);
	if (c->dtab || c->o.n_slots < nk)
		goto out;
	if (c->n_loading)
		cache_reap(c);
	for (size_t k = 0; k < nk; k++)
		if (c->map[k] < 0 || c->slots[c->map[k]].state != S_READY)
			goto out;
	if (!(t = malloc(nk * sizeof(*t))))
		goto out;
	for (size_t k = 0; k < nk; k++)
		t[k] = c->o.backend->ops->slot_ptr(c->o.backend, (size_t)c->map[k]);
	c->dtab = t;
out:
	pthread_mutex_unlock(&c->mu);
	return c->dtab;
}

static void src_note_hits(void *ctx, const int *per_layer)
{
	struct cache *c = ctx;

	pthread_mutex_lock(&c->mu);
	for (int l = 0; l < c->o.n_layers; l++)
		c->st[l].hits += (uint64_t)per_layer[l];
	pthread_mutex_unlock(&c->mu);
}

int cache_load_all(struct cache *c)
{
	int rc = 0;

	if (c->o.n_slots < (size_t)c->o.n_layers * (size_t)c->o.n_experts)
		return -ENOSPC;
	for (int l = 0; l < c->o.n_layers && !rc; l++)
		for (int x = 0; x < c->o.n_experts && !rc; x++)
			rc = cache_prefetch(c, l, x);
	cache_unpin_all(c);
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->o.n_slots && !rc; i++) {
		if (!c->sim && c->slots[i].state == S_LOADING)
			rc = cache_wait_loaded(c, &c->slots[i], c->slots[i].layer);
		c->slots[i].by_prefetch = false;   /* a warm-up, not a prediction */
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

static const void *src_host_weights(void *ctx, int layer, int expert, int take)
{
	return cache_host_expert(ctx, layer, expert, take);
}

struct ld_expert_src cache_expert_src(struct cache *c)
{
	struct ld_expert_src s = {.acquire = src_acquire, .release = src_release,
				  .prompt_rows = src_prompt_rows, .ctx = c};

	if (!c->sim && c->o.backend->ops->run_expert)
		s.run = src_run;

	if (c->dev_ptr) {
		s.acquire_ahead = src_acquire_ahead;
		s.order = src_order;
		s.bf16 = c->bf16;
		s.resident_all = src_resident_all;
		s.note_hits = src_note_hits;
		s.layer_done = src_layer_done;
		s.prefetch_layer = src_prefetch_layer;
		s.unpin_layer = src_unpin_layer;
		if (c->o.host_threads > 0 && c->bf16) {
			s.host_weights = src_host_weights;
			s.host_threads = c->o.host_threads;
		}
		s.mem = LD_EXPERT_CUDA;
		s.device = c->o.backend->dev_index;
		s.stream = c->o.backend->dev_stream;
	}
	return s;
}

