/* The expert cache: a fixed number of slots in fast memory (a backend's slot
 * pool), each holding one expert of one layer, filled from the pack store;
 * FIFO, LRU or LFU eviction; pinning; asynchronous prefetch; counters.
 *
 * Threads: one compute thread calls acquire/release/prefetch/pin; loads run on
 * the backend's copy thread(s).  With no backend (sim mode) it keeps the same
 * bookkeeping and counters without moving bytes: eval-predictor uses that, so
 * the evaluation and the worker share one policy implementation. */
#ifndef LD_CACHE_H
#define LD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loader/expert.h"

enum cache_policy {
	CACHE_FIFO = 0,
	CACHE_LRU = 1,
	CACHE_LFU = 2,
	CACHE_LFUDA = 3,           /* LFU with dynamic aging */
	CACHE_BELADY = 4,          /* evaluation only: needs opts.next_use */
};

struct cache_stats {
	uint64_t hits;             /* acquire found it resident (or loading) */
	uint64_t misses;           /* acquire had to load it */
	uint64_t prefetched_used;  /* prefetched, then acquired before eviction */
	uint64_t prefetched_unused;/* prefetched, evicted without an acquire */
	uint64_t prefetched_late;  /* prefetched_used whose load was still in
				    * flight at the acquire: a miss the prefetch
				    * did not hide */
	uint64_t evictions;
	uint64_t loads;            /* prefetches + misses that moved an expert */
	uint64_t bytes_loaded;     /* bytes copied: loads', and the part of a
				    * dropped prefetch copied before the drop */
	double stall_seconds;      /* compute thread waiting on loads */
	uint64_t prefetch_nospace; /* prefetches refused: every slot pinned */
	uint64_t pin_steals;       /* misses that took a slot held only by a
				    * prefetch pin (nothing else was free) */
	uint64_t prefetch_dropped; /* prefetches dropped before their copy
				    * ended, their layer having run without
				    * them (not in loads) */
	uint64_t host_runs;        /* experts not resident (or only queued to
				    * load by a prefetch, then dropped) that the
				    * CPU computed from the store instead
				    * (cache_host_expert): not in misses */
};

struct ld_store;               /* loader/store.h */
struct ld_backend;             /* loader/backend.h */

struct cache_opts {
	int n_layers;              /* MoE layers */
	int n_experts;             /* per layer */
	size_t expert_bytes;
	size_t n_slots;            /* >= 1 */
	enum cache_policy policy;
	const struct ld_store *store;    /* NULL: sim mode */
	struct ld_backend *backend;      /* NULL: sim mode */
	/* Belady: when (layer, expert) is next used; UINT64_MAX for never.  The
	 * victim is the unpinned resident expert used furthest in the future. */
	uint64_t (*next_use)(void *ctx, int layer, int expert);
	void *next_use_ctx;
	/* Skip the per-expert checksum on load (the store was verified whole,
	 * e.g. with ld_store_verify_all). */
	bool skip_verify;
	/* Every prefetch loads at once, in issue order, and is never dropped
	 * (cache_drop_prefetches does nothing): the layer-ahead baseline, which
	 * loads whole layers by design. */
	bool keep_prefetches;
	/* Loads made while acquires serve a forward call of more than
	 * CACHE_SCAN_ROWS prompt rows (cache_set_prompt_rows: a prefill chunk,
	 * which sweeps most experts of every layer) are evicted before any
	 * other, whatever the policy: the current call's the last loaded
	 * first, then earlier calls' the least recently used first.  A long
	 * prompt then evicts its own loads, not the experts decode keeps
	 * using; the next prompt finds the earlier layers' still there; loads
	 * no prompt uses again age out as decode misses take them.  A decode
	 * step's acquire makes such an expert an ordinary one.  Not with
	 * CACHE_BELADY. */
	bool scan_resistant;
	/* CPU threads the CUDA engine may use to compute missed experts of a
	 * decode step from the store instead of loading them (0: never):
	 * handed to the engine through cache_expert_src's host_threads. */
	int host_threads;
};

#define CACHE_SCAN_ROWS 16

struct cache;

int cache_open(const struct cache_opts *o, struct cache **out);
void cache_close(struct cache *c);

/* Slots that a budget in MiB buys (at least 1). */
size_t cache_slots_for_budget(double budget_mib, size_t expert_bytes);
int cache_policy_parse(const char *name, enum cache_policy *p);
const char *cache_policy_name(enum cache_policy p);

/* Starts loading (layer, expert) if not resident and pins it; no-op (but
 * pins) if resident.  -ENOSPC if every slot is pinned. */
int cache_prefetch(struct cache *c, int layer, int expert);
/* Blocks until resident (loading synchronously on a miss) and pins it while in
 * use.  *w gets the weights (NULL in sim mode). */
int cache_acquire(struct cache *c, int layer, int expert, const float **w);
/* As cache_acquire, for an expert wanted ahead of its turn: -EAGAIN instead
 * of waiting for a slot or taking one that holds a prefetch pin.  On a
 * device backend (stream_wait) it returns 1 while the expert's load is
 * still running: work reading it must be queued after cache_order(). */
int cache_acquire_ahead(struct cache *c, int layer, int expert, const float **w);
/* For an acquired (layer, expert): orders work queued on the compute stream
 * from now on after its load (or waits for the load on a host backend).
 * When the load failed: its error, and the expert is released. */
int cache_order(struct cache *c, int layer, int expert);
void cache_release(struct cache *c, int layer, int expert);
/* Pins (refcount) so eviction skips it; unpin drops one reference. */
void cache_pin(struct cache *c, int layer, int expert);
void cache_unpin(struct cache *c, int layer, int expert);
/* Drops every pin taken by prefetch (call when a batch has passed). */
void cache_unpin_all(struct cache *c);
/* Every expert of layer the current step needs is acquired: prefetches into
 * it still queued in the backend (one with cancel; a copy in pieces may have
 * begun) are dropped and their slots freed, so the copy engine moves no
 * more of an expert known to be unused this step. */
void cache_drop_prefetches(struct cache *c, int layer);
/* The acquires that follow serve a forward call of n prompt rows
 * (scan_resistant) in `chunks` chunks run layer by layer. */
void cache_set_prompt_rows(struct cache *c, int n, int chunks);
/* Prefetches every expert of layer (each held by a prefetch pin, as
 * cache_prefetch's) in expert order, taking the victims an acquire would
 * but never the last acquired layer's, stopping at the first it cannot
 * place; the loads issued. */
int cache_prefetch_layer(struct cache *c, int layer);
/* Drops the prefetch pins of one layer's experts (the batch passed it). */
void cache_unpin_layer(struct cache *c, int layer);
/* 1 when (layer, expert) holds a slot that no acquire of the current call
 * (since the last cache_set_prompt_rows) loaded: a use of it in this call,
 * before its acquire or after, is a hit. */
int cache_hit_now(const struct cache *c, int layer, int expert);
/* 1 when (layer, expert) holds a slot (ready or still loading). */
int cache_resident(const struct cache *c, int layer, int expert);

/* With a slot for every expert: starts loading every one not resident and
 * waits for all (0), so that the engine can run them without acquires (see
 * ld_expert_src.resident_all).  -ENOSPC with fewer slots, or a load's error. */
int cache_load_all(struct cache *c);

/* layer -1: totals. */
void cache_get_stats(const struct cache *c, int layer, struct cache_stats *s);
void cache_reset_stats(struct cache *c);
/* The last failure in words, naming the store, layer and expert. */
void cache_last_error(const struct cache *c, char *buf, size_t n);
/* For a backend that computes where its slots live (xrt): runs acquired
 * expert (layer, expert)'s FFN on x[n][hidden] into out[n][hidden].
 * -ENOTSUP when the backend cannot, -EINVAL when not acquired. */
int cache_run_expert(struct cache *c, int layer, int expert, const float *x, int n,
		     int hidden, int inter, float *out);
/* For an expert (layer, expert) neither resident nor loading, or whose
 * prefetch is still queued in the backend (then dropped with take; NULL if
 * its copy has started): its weights in the store (the slots' layout), for
 * the CPU to compute it without a load (take: it will, counted in
 * host_runs); else NULL (acquire it).  NULL too before the expert's
 * checksum was checked (its first load checks it) and in sim mode. */
const void *cache_host_expert(struct cache *c, int layer, int expert, bool take);
/* The engine's expert source backed by this cache (with .run where the
 * backend has run_expert). */
struct ld_expert_src cache_expert_src(struct cache *c);

#endif
