/* Worker counters shared with the front through a small file mapping in the
 * runtime directory (stats.shm): the worker writes after every call under a
 * sequence lock; the front reads a consistent copy for /metrics and
 * /v1/experts. */
#ifndef DAEMON_SHSTATS_H
#define DAEMON_SHSTATS_H

#include <stddef.h>
#include <stdint.h>

#include "loader/cache.h"

struct shstats_head {
	uint64_t magic;
	uint64_t seq;              /* odd while the worker writes */
	uint32_t n_layers, n_experts;
	uint64_t n_slots, expert_bytes;
	uint64_t batches, tables_used, tables_late, tables_none;
	uint64_t malformed, steps, tokens_prefilled, tokens_generated;
	uint64_t experts_used, experts_predicted_used;
	uint64_t prefill_yields;   /* decode steps run between a prefill's calls */
	uint64_t prefill_calls;    /* engine calls prefills ran in */
	char policy[16];
};

/* A consistent snapshot (malloc'd parts). */
struct shstats {
	struct shstats_head h;
	struct cache_stats *layers;  /* [n_layers] */
	uint8_t *resident;           /* [n_layers][n_experts] */
};

struct shstats_writer;

int shstats_writer_open(const char *dir, int n_layers, int n_experts,
			struct shstats_writer **out);
struct shstats_head *shstats_head(struct shstats_writer *w);
/* Copies the cache's counters and residency, then publishes. */
void shstats_publish(struct shstats_writer *w, const struct cache *c);
void shstats_writer_close(struct shstats_writer *w);

/* -ENOENT when no worker has written one yet. */
int shstats_read(const char *dir, struct shstats *out);
void shstats_free(struct shstats *s);

#endif
