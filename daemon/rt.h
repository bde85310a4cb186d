/* The inference runtime shared by `moed run` and the worker: the model, the
 * pack store, the expert cache on its backend, and the engine on top. */
#ifndef DAEMON_RT_H
#define DAEMON_RT_H

#include <jansson.h>

#include "daemon/config.h"
#include "engine/engine.h"
#include "loader/model.h"

struct rt {
	struct ld_model *model;
	struct ld_store *store;
	struct ld_backend *backend;
	struct cache *cache;
	struct eng *eng;
	size_t n_slots;            /* cache slots (all experts when unbudgeted) */
	int policy;                /* enum cache_policy */
	int host_threads;          /* rt_host_threads' */
};

/* Opens model.path, packs on first use, builds the cache from cache.budget_mib
 * / cache.slots / cache.policy and the engine with room for max_ctx tokens.
 * On error: negative errno and one line in err. */
int rt_open(const struct moed_config *c, int max_ctx, struct rt *rt,
	    char *err, size_t n);
void rt_close(struct rt *rt);
/* The checks of device.* that need no device (ld_backend_check): rt_open
 * does them first; serve does them before starting a worker. */
int rt_check(const struct moed_config *c, char *err, size_t n);
/* device.host_threads for this machine (-1 resolved; 0 off the cuda
 * backend, where nothing uses it). */
int rt_host_threads(const struct moed_config *c);
/* Cache slots for a model: cache.slots, else what cache.budget_mib buys,
 * else one per expert; never more than the model's experts. */
size_t rt_slots_for(const struct moed_config *c, const struct ld_config *mc);
/* Experts worth predicting per layer: the slots' share, at least top-k. */
int rt_want_per_layer(const struct moed_config *c, const struct ld_config *mc);

/* The counters of one layer (or all) as JSON, for `run --json` and
 * /v1/experts.  New reference. */
struct cache_stats;
json_t *rt_cache_stats_json(const struct cache_stats *c);

#endif
