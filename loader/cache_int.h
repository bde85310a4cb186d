/* The expert cache's internals, shared by loader/cache.c (slots, policies,
 * loads) and loader/cache_src.c (counters and the engine's expert source). */
#ifndef LD_CACHE_INT_H
#define LD_CACHE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "loader/backend.h"
#include "loader/cache.h"

enum { S_EMPTY, S_LOADING, S_READY };

struct slot {
	int layer, expert;         /* -1 when empty */
	int state;
	int use;                   /* acquires not yet released */
	int pins;                  /* cache_pin */
	int ppins;                 /* prefetch pins */
	int fail_rc;               /* why the last load failed */
	bool by_prefetch;          /* loaded by prefetch, not acquired yet */
	bool checking;             /* this load checks the checksum */
	bool cold;                 /* loaded during a scan: evicted first */
	uint64_t t_insert, t_use, freq;
	uint64_t age_key;          /* lfuda: freq + the cache's age at the last use */
	uint64_t call;             /* cold: the call it was loaded in */
	uint64_t miss_call;        /* 1 + the call whose acquire missed and loaded it */
	struct ld_ticket ticket;
};

struct cache {
	struct cache_opts o;
	pthread_mutex_t mu;
	struct slot *slots;
	int *map;                  /* [n_layers * n_experts] -> slot, -1 */
	uint8_t *verified;         /* per expert: checksum already checked once */
	struct cache_stats *st;    /* [n_layers] */
	uint64_t tick;
	uint64_t age;              /* lfuda: the largest age_key evicted so far */
	uint64_t call;             /* forward calls so far (set_prompt_rows) */
	size_t n_loading;
	bool sim, be_verify, host_ptr;
	bool scan;                 /* acquires now serve a scan (set_prompt_rows) */
	bool layer_major;          /* the call runs chunks layer by layer */
	int cur_layer;             /* the layer of the last acquire */
	bool dev_ptr;              /* slots are device memory (LD_BE_DEV_PTR) */
	bool bf16;                 /* bf16 store: slots hold bf16 */
	const void **dtab;         /* resident_all's table, once all are ready */
	char err[512];
};

static inline size_t key(const struct cache *c, int layer, int expert)
{
	return (size_t)layer * (size_t)c->o.n_experts + (size_t)expert;
}

static inline bool valid(const struct cache *c, int layer, int expert)
{
	return layer >= 0 && layer < c->o.n_layers && expert >= 0 && expert < c->o.n_experts;
}

/* Mutex held: records finished loads. */
void cache_reap(struct cache *c);
/* Mutex held (dropped while waiting): until slot s's load is over; 0 when
 * it is ready. */
int cache_wait_loaded(struct cache *c, struct slot *s, int layer);

#endif
