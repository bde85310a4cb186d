/* The expert cache in sim mode: each policy's eviction order on hand-made
 * sequences, pinning under pressure, a budget below top-k, counters.  The
 * host backend over a real pack: test_cache_host.c. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "loader/cache.h"
#include "tests/cache_fx.h"
#include "tests/suite_run.h"

#define EB 1000                /* sim mode's expert_bytes */

static char err[1024];

static struct cache *sim(enum cache_policy p, size_t n_slots, int n_layers)
{
	struct cache_opts o = {.n_layers = n_layers, .n_experts = 8, .expert_bytes = EB,
			       .n_slots = n_slots, .policy = p};
	struct cache *c = NULL;
	ck_assert_int_eq(cache_open(&o, &c), 0);
	return c;
}

static void use(struct cache *c, int layer, int expert)
{
	const float *w = (const float *)1;
	int rc = cache_acquire(c, layer, expert, &w);
	ck_assert_msg(rc == 0, "acquire(%d, %d) = %d", layer, expert, rc);
	ck_assert_ptr_null(w);         /* sim mode */
	cache_release(c, layer, expert);
}

static void use_seq(struct cache *c, const int *experts, int n)
{
	for (int i = 0; i < n; i++)
		use(c, 0, experts[i]);
}

/* Bit e set when expert e of layer 0 holds a slot. */
static unsigned resident(struct cache *c)
{
	unsigned m = 0;
	for (int e = 0; e < 8; e++)
		if (cache_resident(c, 0, e))
			m |= 1u << e;
	return m;
}

#define SET(...) set_of((int[]){__VA_ARGS__}, sizeof((int[]){__VA_ARGS__}) / sizeof(int))
static unsigned set_of(const int *e, size_t n)
{
	unsigned m = 0;
	for (size_t i = 0; i < n; i++)
		m |= 1u << e[i];
	return m;
}

START_TEST(names_and_budget)
{
	enum cache_policy p;
	const char *names[] = {"fifo", "lru", "lfu", "lfuda", "belady"};
	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
		ck_assert_int_eq(cache_policy_parse(names[i], &p), 0);
		ck_assert_int_eq(p, i);
		ck_assert_str_eq(cache_policy_name(p), names[i]);
	}
	ck_assert_int_eq(cache_policy_parse("LRU", &p), 0);
	ck_assert_int_eq(p, CACHE_LRU);
	ck_assert_int_eq(cache_policy_parse("mru", &p), -EINVAL);
	/* Slots are counted at their page-aligned stride; at least one. */
	ck_assert_uint_eq(cache_slots_for_budget(1.0, 4096), 256);
	ck_assert_uint_eq(cache_slots_for_budget(1.0, 4097), 128);
	ck_assert_uint_eq(cache_slots_for_budget(0.001, 1 << 20), 1);
	ck_assert_uint_eq(cache_slots_for_budget(10.0, 3 << 20), 3);
	/* Bad options. */
	struct cache *c;
	struct cache_opts o = {.n_layers = 1, .n_experts = 8, .expert_bytes = EB,
			       .n_slots = 0, .policy = CACHE_LRU};
	ck_assert_int_eq(cache_open(&o, &c), -EINVAL);
	o.n_slots = 2;
	o.policy = CACHE_BELADY;       /* without next_use */
	ck_assert_int_eq(cache_open(&o, &c), -EINVAL);
}
END_TEST

START_TEST(fifo_order)
{
	struct cache *c = sim(CACHE_FIFO, 3, 1);
	use_seq(c, (int[]){0, 1, 2, 0}, 4);
	use(c, 0, 3);                  /* 0 came in first, its hit does not matter */
	ck_assert_uint_eq(resident(c), SET(1, 2, 3));
	use(c, 0, 4);
	ck_assert_uint_eq(resident(c), SET(2, 3, 4));
	struct cache_stats s;
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.hits, 1);
	ck_assert_uint_eq(s.misses, 5);
	ck_assert_uint_eq(s.evictions, 2);
	ck_assert_uint_eq(s.loads, 5);
	ck_assert_uint_eq(s.bytes_loaded, 5 * EB);
	cache_close(c);
}
END_TEST

START_TEST(lru_order)
{
	struct cache *c = sim(CACHE_LRU, 3, 1);
	use_seq(c, (int[]){0, 1, 2, 0}, 4);
	use(c, 0, 3);                  /* 1 is least recent */
	ck_assert_uint_eq(resident(c), SET(0, 2, 3));
	use(c, 0, 2);
	use(c, 0, 4);                  /* now 0 is */
	ck_assert_uint_eq(resident(c), SET(2, 3, 4));
	cache_close(c);
}
END_TEST

START_TEST(lfu_order)
{
	struct cache *c = sim(CACHE_LFU, 3, 1);
	use_seq(c, (int[]){0, 0, 0, 1, 1, 2}, 6);
	use(c, 0, 3);                  /* 2 has count 1 */
	ck_assert_uint_eq(resident(c), SET(0, 1, 3));
	use(c, 0, 3);                  /* 1 and 3 at 2: the less recent, 1, goes */
	use(c, 0, 4);
	ck_assert_uint_eq(resident(c), SET(0, 3, 4));
	cache_close(c);
}
END_TEST

START_TEST(lfu_per_residency)
{
	struct cache *c = sim(CACHE_LFU, 2, 1);
	use_seq(c, (int[]){0, 0, 0, 1, 1, 1}, 6);
	use(c, 0, 2);                  /* tie at 3: 0 is less recent */
	ck_assert_uint_eq(resident(c), SET(1, 2));
	use(c, 0, 0);                  /* 2 has 1, 1 has 3 */
	ck_assert_uint_eq(resident(c), SET(0, 1));
	/* 0's count restarted at 1 when it came back (it would be 4 over the
	 * run), so 0 goes rather than 1 (3). */
	use(c, 0, 2);
	ck_assert_uint_eq(resident(c), SET(1, 2));
	cache_close(c);
}
END_TEST

/* An expert used often long ago: lfu keeps it for good, so two experts in
 * turn evict each other; lfuda's age rises with each eviction until the
 * old count no longer holds it. */
START_TEST(lfuda_ages)
{
	for (int p = CACHE_LFU; p <= CACHE_LFUDA; p++) {
		struct cache *c = sim((enum cache_policy)p, 2, 1);

		use_seq(c, (int[]){0, 0, 0, 0, 0}, 5);
		use_seq(c, (int[]){1, 2, 1, 2, 1}, 5);
		ck_assert_uint_eq(resident(c), SET(0, 1));
		use(c, 0, 2);   /* lfuda: 0 and 1 both at 5, 0 the less recent */
		ck_assert_uint_eq(resident(c), p == CACHE_LFU ? SET(0, 2) : SET(1, 2));
		cache_close(c);
	}
}
END_TEST

START_TEST(belady_order)
{
	struct cache_opts o = {.n_layers = 1, .n_experts = 8, .expert_bytes = EB,
			       .n_slots = 2, .policy = CACHE_BELADY, .next_use = next_use,
			       .next_use_ctx = next_use_tab};
	struct cache *c;
	ck_assert_int_eq(cache_open(&o, &c), 0);
	use_seq(c, (int[]){0, 1}, 2);
	next_use_tab[0] = 10, next_use_tab[1] = 5;
	use(c, 0, 2);                  /* 0 is needed furthest away */
	ck_assert_uint_eq(resident(c), SET(1, 2));
	next_use_tab[1] = UINT64_MAX, next_use_tab[2] = 3;
	use(c, 0, 3);                  /* 1 is never needed again */
	ck_assert_uint_eq(resident(c), SET(2, 3));
	next_use_tab[2] = next_use_tab[3] = 7;
	use(c, 0, 4);                  /* tie: the less recent, 2 */
	ck_assert_uint_eq(resident(c), SET(3, 4));
	cache_close(c);
}
END_TEST

/* scan_resistant: what a layer of many rows loads is evicted first, the last
 * loaded first, whatever the policy; off, the policy alone decides. */
START_TEST(scan_resistant)
{
	for (int p = CACHE_FIFO; p <= CACHE_LFUDA; p++)
		for (int on = 0; on <= 1; on++) {
			struct cache_opts o = {.n_layers = 1, .n_experts = 8, .expert_bytes = EB,
					       .n_slots = 4, .policy = (enum cache_policy)p,
					       .scan_resistant = on};
			struct cache *c;

			ck_assert_int_eq(cache_open(&o, &c), 0);
			use_seq(c, (int[]){0, 1, 2}, 3);        /* decode's */
			cache_set_prompt_rows(c, CACHE_SCAN_ROWS + 1, 1);
			use_seq(c, (int[]){3, 4, 5, 6, 7}, 5);  /* a prompt's */
			ck_assert_msg(resident(c) == (on ? SET(0, 1, 2, 7) : SET(4, 5, 6, 7)),
				      "%s, scan_resistant %d: resident %#x",
				      cache_policy_name((enum cache_policy)p), on, resident(c));
			if (on) {
				/* A decode step's use makes 7 ordinary: the policy's
				 * victim, 0, goes for the next cold load. */
				cache_set_prompt_rows(c, 1, 1);
				use(c, 0, 7);
				cache_set_prompt_rows(c, CACHE_SCAN_ROWS + 1, 1);
				use(c, 0, 3);
				ck_assert_uint_eq(resident(c), SET(1, 2, 3, 7));
			}
			cache_close(c);
		}
}
END_TEST

/* A decode step's misses take an earlier prompt's loads first, the least
 * recently used first, then the policy's victims: loads no prompt uses
 * again age out, and decode's experts stay. */
START_TEST(scan_ages_out)
{
	struct cache_opts o = {.n_layers = 1, .n_experts = 8, .expert_bytes = EB, .n_slots = 4,
			       .policy = CACHE_LRU, .scan_resistant = true};
	struct cache *c;

	ck_assert_int_eq(cache_open(&o, &c), 0);
	use(c, 0, 0);                            /* decode's */
	cache_set_prompt_rows(c, 64, 1);
	use_seq(c, (int[]){1, 2, 3, 4}, 4);      /* 4 takes 3's slot */
	ck_assert_uint_eq(resident(c), SET(0, 1, 2, 4));
	cache_set_prompt_rows(c, 64, 1);
	use(c, 0, 2);                            /* another prompt uses 2 */
	cache_set_prompt_rows(c, 1, 1);
	use(c, 0, 5);                            /* 1, then 4, are least recent */
	ck_assert_uint_eq(resident(c), SET(0, 2, 4, 5));
	use(c, 0, 6);
	ck_assert_uint_eq(resident(c), SET(0, 2, 5, 6));
	use(c, 0, 7);                            /* 2, the last cold one */
	ck_assert_uint_eq(resident(c), SET(0, 5, 6, 7));
	cache_close(c);
}
END_TEST

/* cache_prefetch_layer in a call run layer by layer: the next layer's
 * experts take free slots and other layers' scan loads, never the layer
 * being acquired (its next chunk wants it); pinned until unpinned. */
START_TEST(prefetch_layer)
{
	struct cache_opts o = {.n_layers = 3, .n_experts = 8, .expert_bytes = EB, .n_slots = 14,
			       .policy = CACHE_LRU, .scan_resistant = true};
	struct cache *c;
	int n0 = 0, n1 = 0;

	ck_assert_int_eq(cache_open(&o, &c), 0);
	cache_set_prompt_rows(c, 1024, 2);
	for (int x = 0; x < 8; x++)
		use(c, 0, x);
	ck_assert_int_eq(cache_prefetch_layer(c, 1), 6);   /* the free slots */
	for (int x = 0; x < 8; x++)
		n0 += cache_resident(c, 0, x), n1 += cache_resident(c, 1, x);
	ck_assert_int_eq(n0, 8);
	ck_assert_int_eq(n1, 6);
	for (int x = 0; x < 8; x++)                         /* layer 1 runs */
		use(c, 1, x);
	/* Layer 1's two misses took two of layer 0's slots; layer 2 takes
	 * the other six, not layer 1's two unpinned ones (its six prefetched
	 * are still pinned). */
	ck_assert_int_eq(cache_prefetch_layer(c, 2), 6);
	n0 = 0;
	for (int x = 0; x < 8; x++)
		n0 += cache_resident(c, 0, x), ck_assert(cache_resident(c, 1, x));
	ck_assert_int_eq(n0, 0);
	cache_unpin_layer(c, -1);
	cache_close(c);
}
END_TEST

/* cache_hit_now: an expert an acquire of this call loaded is a miss for the
 * whole call, after its acquire too (the CUDA engine reports routes then);
 * in the next call, a hit; a prefetched one, a hit. */
START_TEST(hit_now)
{
	struct cache *c = sim(CACHE_LRU, 4, 1);

	cache_set_prompt_rows(c, 1, 1);
	ck_assert(!cache_hit_now(c, 0, 0));
	use(c, 0, 0);
	ck_assert(cache_resident(c, 0, 0));
	ck_assert(!cache_hit_now(c, 0, 0));
	ck_assert_int_eq(cache_prefetch(c, 0, 1), 0);
	ck_assert(cache_hit_now(c, 0, 1));
	cache_set_prompt_rows(c, 1, 1);
	ck_assert(cache_hit_now(c, 0, 0));
	cache_close(c);
}
END_TEST

/* A call of two chunks run layer by layer: the second chunk's new expert of
 * layer 1 takes an earlier layer's load, not one of layer 1's that the
 * chunk acquires next (a chunk at a time, the last loaded goes first). */
START_TEST(scan_layer_major)
{
	for (int chunks = 1; chunks <= 2; chunks++) {
		struct cache_opts o = {.n_layers = 2, .n_experts = 8, .expert_bytes = EB,
				       .n_slots = 4, .policy = CACHE_LRU, .scan_resistant = true};
		struct cache *c;
		struct cache_stats s;

		ck_assert_int_eq(cache_open(&o, &c), 0);
		cache_set_prompt_rows(c, 1024, chunks);
		for (int l = 0; l < 2; l++) {
			use(c, l, 0), use(c, l, 1);                 /* chunk 0 */
			if (l == 1)
				use(c, l, 2);                       /* chunk 1's new one */
			use(c, l, 0), use(c, l, 1);                 /* chunk 1 */
		}
		cache_get_stats(c, 1, &s);
		ck_assert_uint_eq(s.misses, chunks == 2 ? 3 : 4);
		ck_assert_uint_eq(s.hits, chunks == 2 ? 2 : 1);
		ck_assert(cache_resident(c, 0, 0));
		ck_assert_int_eq(cache_resident(c, 0, 1), chunks == 1);
		cache_close(c);
	}
}
END_TEST

/* The same prompt twice through 3 slots: scan_resistant keeps the first
 * loads (the earliest layers) for the second; LRU alone keeps none. */
START_TEST(scan_repeated)
{
	for (int on = 0; on <= 1; on++) {
		struct cache_opts o = {.n_layers = 1, .n_experts = 8, .expert_bytes = EB,
				       .n_slots = 3, .policy = CACHE_LRU, .scan_resistant = on};
		struct cache *c;
		struct cache_stats s;

		ck_assert_int_eq(cache_open(&o, &c), 0);
		cache_set_prompt_rows(c, 64, 1);
		use_seq(c, (int[]){0, 1, 2, 3, 4}, 5);
		cache_reset_stats(c);
		cache_set_prompt_rows(c, 64, 1);           /* the next prompt */
		use_seq(c, (int[]){0, 1, 2, 3, 4}, 5);
		cache_get_stats(c, -1, &s);
		ck_assert_uint_eq(s.hits, (on ? 2 : 0));
		ck_assert_uint_eq(resident(c), on ? SET(0, 1, 4) : SET(2, 3, 4));
		cache_close(c);
	}
	/* Belady needs no help and gets none. */
	struct cache_opts o = {.n_layers = 1, .n_experts = 8, .expert_bytes = EB, .n_slots = 2,
			       .policy = CACHE_BELADY, .next_use = next_use,
			       .next_use_ctx = next_use_tab, .scan_resistant = true};
	struct cache *c;
	ck_assert_int_eq(cache_open(&o, &c), 0);
	cache_set_prompt_rows(c, 64, 1);
	memset(next_use_tab, 0, sizeof(next_use_tab));
	use_seq(c, (int[]){0, 1}, 2);
	next_use_tab[0] = 10, next_use_tab[1] = 5;
	use(c, 0, 2);                  /* 0 is needed furthest away */
	ck_assert_uint_eq(resident(c), SET(1, 2));
	cache_close(c);
}
END_TEST

START_TEST(prefetch_counters)
{
	struct cache *c = sim(CACHE_LFU, 2, 2);
	struct cache_stats s, l0, l1;
	const float *w;

	ck_assert_int_eq(cache_prefetch(c, 1, 0), 0);
	ck_assert(cache_resident(c, 1, 0));
	ck_assert_int_eq(cache_acquire(c, 1, 0, &w), 0);
	cache_release(c, 1, 0);
	ck_assert_int_eq(cache_prefetch(c, 1, 1), 0);
	cache_unpin_all(c);
	/* LFU: (1,1) was prefetched and never used, count 0; it goes. */
	use(c, 0, 5);
	ck_assert(!cache_resident(c, 1, 1));
	ck_assert(cache_resident(c, 1, 0));
	cache_get_stats(c, -1, &s);
	cache_get_stats(c, 0, &l0);
	cache_get_stats(c, 1, &l1);
	ck_assert_uint_eq(s.loads, 3);
	ck_assert_uint_eq(s.hits, 1);
	ck_assert_uint_eq(s.misses, 1);
	ck_assert_uint_eq(s.prefetched_used, 1);
	ck_assert_uint_eq(s.prefetched_unused, 1);
	ck_assert_uint_eq(s.prefetched_late, 0);   /* sim: loads land at once */
	ck_assert_uint_eq(s.evictions, 1);
	ck_assert_uint_eq(s.bytes_loaded, 3 * EB);
	/* Per layer: the miss was layer 0's; the eviction hit layer 1's expert. */
	ck_assert_uint_eq(l0.misses, 1);
	ck_assert_uint_eq(l0.loads, 1);
	ck_assert_uint_eq(l0.evictions, 0);
	ck_assert_uint_eq(l1.loads, 2);
	ck_assert_uint_eq(l1.hits, 1);
	ck_assert_uint_eq(l1.evictions, 1);
	ck_assert_uint_eq(l1.prefetched_unused, 1);
	ck_assert(s.stall_seconds == 0.0);
	cache_reset_stats(c);
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.loads, 0);
	cache_close(c);
}
END_TEST

START_TEST(pin_pressure)
{
	struct cache *c = sim(CACHE_LRU, 3, 1);
	const float *w;

	use(c, 0, 0);
	cache_pin(c, 0, 0);
	use(c, 0, 1);
	cache_pin(c, 0, 1);
	/* Everything else goes through the one free slot. */
	for (int e = 2; e < 8; e++) {
		use(c, 0, e);
		ck_assert_uint_eq(resident(c), SET(0, 1, e));
	}
	struct cache_stats s;
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.evictions, 5);
	/* Pin the third: nothing can be loaded any more. */
	cache_pin(c, 0, 7);
	ck_assert_int_eq(cache_acquire(c, 0, 3, &w), -ENOSPC);
	cache_last_error(c, err, sizeof(err));
	ck_assert_ptr_nonnull(strstr(err, "pinned"));
	ck_assert_int_eq(cache_prefetch(c, 0, 3), -ENOSPC);
	cache_get_stats(c, 0, &s);
	ck_assert_uint_eq(s.prefetch_nospace, 1);
	/* Hits still work, and unpinning frees a slot (0 is the LRU one). */
	use(c, 0, 1);
	cache_unpin(c, 0, 0);
	use(c, 0, 3);
	ck_assert_uint_eq(resident(c), SET(1, 3, 7));
	cache_close(c);
}
END_TEST

/* acquire_ahead neither steals a prefetched expert's slot nor waits. */
START_TEST(acquire_ahead_no_steal)
{
	struct cache *c = sim(CACHE_LRU, 2, 1);
	struct cache_stats s;
	const float *w;

	ck_assert_int_eq(cache_prefetch(c, 0, 0), 0);
	ck_assert_int_eq(cache_acquire_ahead(c, 0, 1, &w), 0);
	/* Slot 0 prefetch-pinned, slot 1 held: no slot without stealing. */
	ck_assert_int_eq(cache_acquire_ahead(c, 0, 2, &w), -EAGAIN);
	ck_assert_uint_eq(resident(c), SET(0, 1));
	ck_assert_int_eq(cache_acquire_ahead(c, 0, 0, &w), 0);  /* a hit */
	cache_release(c, 0, 0);
	cache_release(c, 0, 1);
	/* 1 is released and unpinned: ahead may take its slot now. */
	ck_assert_int_eq(cache_acquire_ahead(c, 0, 2, &w), 0);
	ck_assert_uint_eq(resident(c), SET(0, 2));
	/* A plain acquire still steals the prefetch pin when it must. */
	ck_assert_int_eq(cache_prefetch(c, 0, 3), -ENOSPC);
	ck_assert_int_eq(cache_acquire(c, 0, 4, &w), 0);
	ck_assert_uint_eq(resident(c), SET(2, 4));
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.pin_steals, 1);
	ck_assert_uint_eq(s.misses, 3);
	cache_close(c);
}
END_TEST

START_TEST(prefetch_pins)
{
	struct cache *c = sim(CACHE_LRU, 3, 2);
	const float *w;
	struct cache_stats s;

	for (int e = 0; e < 3; e++)
		ck_assert_int_eq(cache_prefetch(c, 0, e), 0);
	/* A prefetch cannot evict what an earlier prefetch pinned. */
	ck_assert_int_eq(cache_prefetch(c, 0, 3), -ENOSPC);
	ck_assert_uint_eq(resident(c), SET(0, 1, 2));
	/* A miss that has no other choice takes a prefetch-pinned slot (the
	 * engine must always make progress); it is counted. */
	ck_assert_int_eq(cache_acquire(c, 0, 4, &w), 0);
	cache_release(c, 0, 4);
	ck_assert_uint_eq(resident(c), SET(1, 2, 4));
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.pin_steals, 1);
	ck_assert_uint_eq(s.prefetch_nospace, 1);
	/* Once the batch has passed, prefetches evict freely. */
	cache_unpin_all(c);
	ck_assert_int_eq(cache_prefetch(c, 0, 5), 0);
	ck_assert_int_eq(cache_prefetch(c, 1, 0), 0);
	ck_assert_int_eq(cache_prefetch(c, 1, 1), 0);
	ck_assert(cache_resident(c, 1, 0) && cache_resident(c, 1, 1));
	/* Unpinning one layer frees only that layer's slots. */
	cache_unpin_layer(c, 0);
	ck_assert_int_eq(cache_prefetch(c, 1, 2), 0);
	ck_assert_uint_eq(resident(c), 0);
	ck_assert(cache_resident(c, 1, 0) && cache_resident(c, 1, 1));
	ck_assert_int_eq(cache_prefetch(c, 1, 3), -ENOSPC);
	cache_close(c);
}
END_TEST

START_TEST(budget_below_topk)
{
	struct cache *c = sim(CACHE_LRU, 1, 1);
	const float *w;

	/* top-k 4 through one slot: one expert at a time. */
	for (int round = 0; round < 3; round++)
		for (int e = 0; e < 4; e++)
			use(c, 0, e);
	/* Holding one and asking for another cannot work with one slot. */
	ck_assert_int_eq(cache_acquire(c, 0, 5, &w), 0);
	ck_assert_int_eq(cache_acquire(c, 0, 5, &w), 0);   /* the same: a hit */
	ck_assert_int_eq(cache_acquire(c, 0, 6, &w), -ENOSPC);
	cache_release(c, 0, 5);
	ck_assert_int_eq(cache_acquire(c, 0, 6, &w), -ENOSPC);  /* still held once */
	cache_release(c, 0, 5);
	ck_assert_int_eq(cache_acquire(c, 0, 6, &w), 0);
	cache_release(c, 0, 6);
	struct cache_stats s;
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.misses, 14);
	ck_assert_uint_eq(s.hits, 1);
	cache_close(c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cache");
	TCase *tc = tcase_create("sim");

	tcase_add_test(tc, names_and_budget);
	tcase_add_test(tc, fifo_order);
	tcase_add_test(tc, lru_order);
	tcase_add_test(tc, lfu_order);
	tcase_add_test(tc, lfu_per_residency);
	tcase_add_test(tc, lfuda_ages);
	tcase_add_test(tc, belady_order);
	tcase_add_test(tc, prefetch_counters);
	tcase_add_test(tc, pin_pressure);
	tcase_add_test(tc, prefetch_pins);
	tcase_add_test(tc, acquire_ahead_no_steal);
	tcase_add_test(tc, budget_below_topk);
	tcase_add_test(tc, scan_resistant);
	tcase_add_test(tc, scan_repeated);
	tcase_add_test(tc, scan_ages_out);
	tcase_add_test(tc, scan_layer_major);
	tcase_add_test(tc, hit_now);
	tcase_add_test(tc, prefetch_layer);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
