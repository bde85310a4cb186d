/* The expert cache: slot table, (layer, expert) -> slot map, policies,
 * pinning, loads through a backend, counters.  One mutex guards everything;
 * it is dropped while a thread waits for a load, and a slot being waited on
 * is held (use count) so that nobody can reuse it meanwhile.
 *
 * Policy metadata, per residency (reset when an expert is loaded):
 *   fifo:   t_insert, the logical time the load started;
 *   lru:    t_use, the time of the last acquire (or the load);
 *   lfu:    freq, acquires during this residency (a miss counts 1, a
 *           prefetch 0), ties to the least recently used;
 *   lfuda:  LFU with dynamic aging (Arlitt et al., Squid's heap LFUDA):
 *           age_key = freq + the cache's age at the last acquire (or load),
 *           the age being the largest age_key evicted, so that experts
 *           counted in an earlier phase do not stay for good; ties as lfu;
 *   belady: next_use() furthest in the future, ties to the least recent.
 * Before any of them, scan_resistant's cold slots (loaded while a call of
 * many prompt rows ran): the current call's, the latest t_insert first, then
 * earlier calls', the least recent t_use first, then (chunks run layer by
 * layer) the current call's of the layer being acquired.
 * Remaining ties go to the lowest slot index.  The logical clock ticks once
 * per acquire and per prefetch.
 *
 * Checksums: the first load of each expert in this process is checked (by
 * the backend during the copy when it has LD_BE_VERIFY, else by reading the
 * store first); later loads of it are not: the store is mapped read-only and
 * replaced only by rename, and hashing halves the copy rate from RAM. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/cache_int.h"
#include "loader/clock.h"
#include "loader/store.h"

/* ---- slot transitions (mutex held) ---- */

static void fail_slot(struct cache *c, struct slot *s, int rc)
{
	const char *path = c->o.store ? ld_store_path(c->o.store) : "cache";

	if (rc == -EBADMSG)
		snprintf(c->err, sizeof(c->err), "%s: layer %d expert %d: checksum mismatch "
			 "after load: corrupt pack (repack with moed pack)", path, s->layer,
			 s->expert);
	else
		snprintf(c->err, sizeof(c->err), "%s: layer %d expert %d: load failed: %s",
			 path, s->layer, s->expert, strerror(-rc));
	c->map[key(c, s->layer, s->expert)] = -1;
	s->layer = s->expert = -1;
	s->state = S_EMPTY;
	s->fail_rc = rc;
	s->pins = s->ppins = 0;
	s->by_prefetch = false;
}

/* Records the end of load t into slot s, unless already recorded. */
static void complete(struct cache *c, struct slot *s, struct ld_ticket t, int rc)
{
	if (s->state != S_LOADING || s->ticket.seq != t.seq)
		return;
	c->n_loading--;
	if (rc == 0) {
		s->state = S_READY;
		if (s->checking)
			c->verified[key(c, s->layer, s->expert)] = 1;
	} else
		fail_slot(c, s, rc);
}

void cache_reap(struct cache *c)
{
	struct ld_backend *be = c->o.backend;

	for (size_t i = 0; i < c->o.n_slots && c->n_loading; i++) {
		struct slot *s = &c->slots[i];
		int rc;
		if (s->state == S_LOADING && be->ops->poll(be, s->ticket, &rc))
			complete(c, s, s->ticket, rc);
	}
}

int cache_wait_loaded(struct cache *c, struct slot *s, int layer)
{
	while (s->state == S_LOADING) {
		struct ld_ticket t = s->ticket;
		pthread_mutex_unlock(&c->mu);
		double t0 = ld_now();
		int rc = c->o.backend->ops->wait(c->o.backend, t);
		double dt = ld_now() - t0;
		pthread_mutex_lock(&c->mu);
		c->st[layer].stall_seconds += dt;
		complete(c, s, t, rc);
	}
	return s->state == S_READY ? 0 : s->fail_rc;
}

static void evict(struct cache *c, struct slot *s)
{
	if (s->layer < 0)
		return;
	struct cache_stats *st = &c->st[s->layer];
	/* lfuda: what newer experts start from (a scan's loads leave it). */
	if (!s->cold && s->age_key > c->age)
		c->age = s->age_key;
	st->evictions++;
	if (s->by_prefetch)
		st->prefetched_unused++;
	c->map[key(c, s->layer, s->expert)] = -1;
	s->layer = s->expert = -1;
	s->state = S_EMPTY;
	s->by_prefetch = false;
}

/* Smaller rank is evicted first.  Scans' loads (cold) before the rest: the
 * current call's, the last loaded first (the first loaded hold the earliest
 * layers, which the next prompt reaches first; a hit does not move them),
 * then earlier calls', least recently used first (so that those no prompt
 * uses again age out), then, in a call of chunks run layer by layer, the
 * current call's of the layer being acquired (its next chunk wants them
 * again; the last loaded first); then the policy's order. */
static void rank(struct cache *c, const struct slot *s, uint64_t r[3])
{
	r[1] = 0, r[2] = 0;
	if (s->cold && s->call == c->call) {
		r[0] = c->layer_major && s->layer == c->cur_layer ? 2 : 0;
		r[1] = UINT64_MAX - s->t_insert;
		return;
	}
	if (s->cold) {
		r[0] = 1, r[1] = s->t_use;
		return;
	}
	r[0] = 3;
	switch (c->o.policy) {
	case CACHE_FIFO:
		r[1] = s->t_insert;
		break;
	case CACHE_LRU:
		r[1] = s->t_use;
		break;
	case CACHE_LFU:
		r[1] = s->freq, r[2] = s->t_use;
		break;
	case CACHE_LFUDA:
		r[1] = s->age_key, r[2] = s->t_use;
		break;
	case CACHE_BELADY:
		r[1] = UINT64_MAX - c->o.next_use(c->o.next_use_ctx, s->layer, s->expert);
		r[2] = s->t_use;
		break;
	}
}

static int rank_cmp(const uint64_t a[3], const uint64_t b[3])
{
	for (int i = 0; i < 3; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return 0;
}

/* A slot to (re)load: an empty one, else the policy's victim among the
 * unpinned ready ones but layer `spare`'s; with steal, slots held only by
 * prefetch pins too. */
static int victim_but(struct cache *c, bool steal, int spare)
{
	uint64_t best[3] = {UINT64_MAX, UINT64_MAX, UINT64_MAX}, r[3] = {0, 0, 0};
	int found = -1;

	if (c->n_loading)
		cache_reap(c);
	for (size_t i = 0; i < c->o.n_slots; i++) {
		const struct slot *s = &c->slots[i];
		if (s->use || s->pins || (s->ppins && !steal))
			continue;
		if (s->state == S_EMPTY)
			return (int)i;
		if (s->state != S_READY || s->layer == spare)
			continue;
		rank(c, s, r);
		if (found < 0 || rank_cmp(r, best) < 0) {
			found = (int)i;
			memcpy(best, r, sizeof(best));
		}
	}
	return found;
}

static int victim(struct cache *c, bool steal)
{
	return victim_but(c, steal, -1);
}

/* A load made during a scan (cache_set_prompt_rows) is cold. */
static void mark_cold(const struct cache *c, struct slot *s)
{
	s->cold = c->scan, s->call = c->call;
}

static int start_load(struct cache *c, int si, int layer, int expert, bool prefetch)
{
	struct slot *s = &c->slots[si];
	struct cache_stats *st = &c->st[layer];
	size_t k = key(c, layer, expert);
	int rc = 0;

	*s = (struct slot){.layer = layer, .expert = expert, .state = S_READY,
			   .by_prefetch = prefetch, .t_insert = c->tick, .t_use = c->tick,
			   .freq = prefetch ? 0 : 1, .age_key = c->age + (prefetch ? 0 : 1)};
	c->map[k] = si;
	if (c->sim)
		goto counted;
	if (!c->be_verify && !c->verified[k]) {
		if ((rc = ld_store_verify_expert(c->o.store, layer, expert, c->err,
						 sizeof(c->err)))) {
			c->map[k] = -1;
			*s = (struct slot){.layer = -1, .expert = -1, .fail_rc = rc};
			return rc;
		}
		c->verified[k] = 1;
	}
	uint64_t sum = ld_store_expert_checksum(c->o.store, layer, expert);
	s->checking = !c->verified[k];
	rc = c->o.backend->ops->load_async(c->o.backend, (size_t)si,
					   ld_store_expert(c->o.store, layer, expert),
					   c->o.expert_bytes, s->checking ? &sum : NULL,
					   !prefetch ? LD_LOAD_URGENT :
					   c->o.keep_prefetches ? LD_LOAD_NOW : 0, &s->ticket);
	if (rc) {
		fail_slot(c, s, rc);
		return rc;
	}
	s->state = S_LOADING;
	c->n_loading++;
counted:
	st->loads++;
	st->bytes_loaded += c->o.expert_bytes;
	return 0;
}

/* Whether slot s's load is in flight now (polled, so that a finished one
 * is recorded as such). */
static bool still_loading(struct cache *c, struct slot *s)
{
	int rc;

	if (s->state == S_LOADING && c->o.backend->ops->poll(c->o.backend, s->ticket, &rc))
		complete(c, s, s->ticket, rc);
	return s->state == S_LOADING;
}

/* Waits for some load into an unpinned slot; 0 if there was one. */
static int wait_any_unpinned(struct cache *c, int layer)
{
	for (size_t i = 0; i < c->o.n_slots; i++) {
		struct slot *s = &c->slots[i];
		if (s->state != S_LOADING || s->use || s->pins)
			continue;
		s->use++;
		cache_wait_loaded(c, s, layer);
		s->use--;
		return 0;
	}
	return -ENOSPC;
}

/* ---- public ---- */

/* Prefetches (layer, expert), held by a prefetch pin, into a victim not of
 * layer spare; mutex held.  1: a load started, 0: already there, -ENOSPC
 * (counted) or the load's error. */
static int prefetch_but(struct cache *c, int layer, int expert, int spare)
{
	int rc, si;

	c->tick++;
	if ((si = c->map[key(c, layer, expert)]) >= 0) {
		c->slots[si].ppins++;
		return 0;
	}
	if ((si = victim_but(c, false, spare)) < 0) {
		c->st[layer].prefetch_nospace++;
		return -ENOSPC;
	}
	evict(c, &c->slots[si]);
	if ((rc = start_load(c, si, layer, expert, true)))
		return rc;
	mark_cold(c, &c->slots[si]);
	c->slots[si].ppins = 1;
	return 1;
}

int cache_prefetch(struct cache *c, int layer, int expert)
{
	int rc;

	if (!valid(c, layer, expert))
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	rc = prefetch_but(c, layer, expert, -1);
	pthread_mutex_unlock(&c->mu);
	return rc < 0 ? rc : 0;
}

int cache_prefetch_layer(struct cache *c, int layer)
{
	int n = 0, rc = 0;

	if (!valid(c, layer, 0))
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	/* The victims the call's own misses would take, but never the layer
	 * being acquired: the call's next chunk wants it. */
	for (int x = 0; x < c->o.n_experts && rc >= 0; x++)
		n += (rc = prefetch_but(c, layer, x, c->cur_layer)) > 0;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* Finds or loads (layer, expert) into a slot; mutex held.  ahead: -EAGAIN
 * rather than steal a prefetch pin or wait. */
static int lookup(struct cache *c, int layer, int expert, bool ahead, int *out)
{
	struct cache_stats *st = &c->st[layer];
	int si, rc;

	c->cur_layer = layer;
	for (;;) {
		if ((si = c->map[key(c, layer, expert)]) >= 0) {
			struct slot *s = &c->slots[si];
			st->hits++;
			if (s->by_prefetch) {
				st->prefetched_used++;
				st->prefetched_late += still_loading(c, s);
			}
			s->by_prefetch = false;
			s->t_use = c->tick;
			s->freq++;
			s->age_key = c->age + s->freq;
			s->cold &= c->scan;   /* a decode step's use: an ordinary expert */
			break;
		}
		if ((si = victim(c, false)) < 0 && ahead)
			return -EAGAIN;
		if (si < 0 && (si = victim(c, true)) >= 0)
			st->pin_steals++;
		if (si >= 0) {
			evict(c, &c->slots[si]);
			if ((rc = start_load(c, si, layer, expert, false)))
				return rc;
			mark_cold(c, &c->slots[si]);
			c->slots[si].miss_call = c->call + 1;
			st->misses++;
			break;
		}
		if (wait_any_unpinned(c, layer) < 0) {
			snprintf(c->err, sizeof(c->err), "cache: layer %d expert %d: all %zu "
				 "slots pinned or in use", layer, expert, c->o.n_slots);
			return -ENOSPC;
		}
	}
	*out = si;
	return 0;
}

/* Slot s usable by work queued from now on: a device backend orders its
 * compute stream after the load, others wait for it; mutex held. */
static int ready(struct cache *c, struct slot *s, int layer)
{
	int rc;

	if (s->state == S_LOADING && c->o.backend->ops->stream_wait)
		complete(c, s, s->ticket, c->o.backend->ops->stream_wait(c->o.backend,
									   s->ticket));
	if (s->state == S_LOADING && (rc = cache_wait_loaded(c, s, layer)))
		return rc;
	if (s->state != S_READY)     /* stream_wait failed */
		return s->fail_rc ? s->fail_rc : -EIO;
	return 0;
}

static int acquire(struct cache *c, int layer, int expert, bool ahead, const float **w)
{
	int si, rc;

	*w = NULL;
	if (!valid(c, layer, expert))
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	c->tick++;
	if ((rc = lookup(c, layer, expert, ahead, &si)))
		goto out;
	struct slot *s = &c->slots[si];
	s->use++;
	/* Ahead on a device backend: the load stays unordered until
	 * cache_order(), so work queued before then does not wait for it. */
	if (ahead && s->state == S_LOADING && c->o.backend->ops->stream_wait)
		rc = 1;
	else if ((rc = ready(c, s, layer)))
		s->use--;
	if (rc >= 0 && (c->host_ptr || c->dev_ptr))
		*w = c->o.backend->ops->slot_ptr(c->o.backend, (size_t)si);
out:
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int cache_order(struct cache *c, int layer, int expert)
{
	int si, rc = -ENOENT;

	if (!valid(c, layer, expert))
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	if ((si = c->map[key(c, layer, expert)]) >= 0 && c->slots[si].use > 0 &&
	    (rc = ready(c, &c->slots[si], layer)))
		c->slots[si].use--;   /* the load failed: no longer acquired */
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int cache_acquire(struct cache *c, int layer, int expert, const float **w)
{
	return acquire(c, layer, expert, false, w);
}

int cache_acquire_ahead(struct cache *c, int layer, int expert, const float **w)
{
	return acquire(c, layer, expert, true, w);
}

void cache_release(struct cache *c, int layer, int expert)
{
	if (!valid(c, layer, expert))
		return;
	pthread_mutex_lock(&c->mu);
	int si = c->map[key(c, layer, expert)];
	if (si >= 0 && c->slots[si].use > 0) {
		struct ld_backend *be = c->o.backend;
		/* The GEMMs reading the slot are queued, not done: a reload of
		 * this slot waits for them (a failure here leaves no ordering, so
		 * keep the slot out of reach). */
		if (c->dev_ptr && be->ops->slot_used && be->ops->slot_used(be, (size_t)si)) {
			snprintf(c->err, sizeof(c->err), "cache: layer %d expert %d: recording "
				 "the slot's last use failed; slot %d retired", layer, expert, si);
			c->slots[si].pins++;
		}
		c->slots[si].use--;
	}
	pthread_mutex_unlock(&c->mu);
}

void cache_pin(struct cache *c, int layer, int expert)
{
	if (!valid(c, layer, expert))
		return;
	pthread_mutex_lock(&c->mu);
	int si = c->map[key(c, layer, expert)];
	if (si >= 0)
		c->slots[si].pins++;
	pthread_mutex_unlock(&c->mu);
}

void cache_unpin(struct cache *c, int layer, int expert)
{
	if (!valid(c, layer, expert))
		return;
	pthread_mutex_lock(&c->mu);
	int si = c->map[key(c, layer, expert)];
	if (si >= 0 && c->slots[si].pins > 0)
		c->slots[si].pins--;
	pthread_mutex_unlock(&c->mu);
}

void cache_set_prompt_rows(struct cache *c, int n, int chunks)
{
	pthread_mutex_lock(&c->mu);
	c->scan = c->o.scan_resistant && c->o.policy != CACHE_BELADY && n > CACHE_SCAN_ROWS;
	c->layer_major = chunks > 1;
	c->call++;
	pthread_mutex_unlock(&c->mu);
}

void cache_unpin_layer(struct cache *c, int layer)
{
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->o.n_slots; i++)
		if (layer < 0 || c->slots[i].layer == layer)
			c->slots[i].ppins = 0;
	pthread_mutex_unlock(&c->mu);
}

void cache_unpin_all(struct cache *c)
{
	cache_unpin_layer(c, -1);
}

/* Whether slot s may hold a prefetch that drop_queued can drop. */
static bool droppable(const struct cache *c, const struct slot *s)
{
	return !c->sim && !c->o.keep_prefetches && c->o.backend->ops->cancel && s->by_prefetch &&
	       s->state == S_LOADING && !s->use && !s->pins;
}

/* Slot s's prefetch dropped if its copy is still queued in the backend (the
 * slot emptied; the part of it already copied stays counted); mutex held. */
static bool drop_queued(struct cache *c, struct slot *s)
{
	struct ld_backend *be = c->o.backend;
	size_t copied = 0;

	if (!droppable(c, s) || !be->ops->cancel(be, s->ticket, &copied))
		return false;
	struct cache_stats *st = &c->st[s->layer];
	c->map[key(c, s->layer, s->expert)] = -1;
	*s = (struct slot){.layer = -1, .expert = -1, .state = S_EMPTY};
	c->n_loading--;
	st->loads--;
	st->bytes_loaded -= c->o.expert_bytes - copied;
	st->prefetch_dropped++;
	return true;
}

void cache_drop_prefetches(struct cache *c, int layer)
{
	if (!valid(c, layer, 0))
		return;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->o.n_slots; i++)
		if (c->slots[i].layer == layer)
			drop_queued(c, &c->slots[i]);
	pthread_mutex_unlock(&c->mu);
}

const void *cache_host_expert(struct cache *c, int layer, int expert, bool take)
{
	const void *w = NULL;
	int si;

	if (c->sim || !valid(c, layer, expert))
		return NULL;
	pthread_mutex_lock(&c->mu);
	si = c->map[key(c, layer, expert)];
	if (c->verified[key(c, layer, expert)] &&
	    (si < 0 || (take ? drop_queued(c, &c->slots[si]) : droppable(c, &c->slots[si])))) {
		c->st[layer].host_runs += take;
		w = ld_store_expert(c->o.store, layer, expert);
	}
	pthread_mutex_unlock(&c->mu);
	return w;
}

/* Whether (layer, expert) holds a slot; with `now`, one that no acquire of
 * the current call loaded. */
static int held(const struct cache *c, int layer, int expert, bool now)
{
	struct cache *m = (struct cache *)c;   /* the mutex only */
	int r, si;

	if (!valid(c, layer, expert))
		return 0;
	pthread_mutex_lock(&m->mu);
	si = c->map[key(c, layer, expert)];
	r = si >= 0 && !(now && c->slots[si].miss_call == c->call + 1);
	pthread_mutex_unlock(&m->mu);
	return r;
}

int cache_resident(const struct cache *c, int layer, int expert)
{
	return held(c, layer, expert, false);
}

int cache_hit_now(const struct cache *c, int layer, int expert)
{
	return held(c, layer, expert, true);
}

