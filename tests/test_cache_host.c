/* The expert cache over the host backend and a real pack: contents,
 * checksum failures, loading every expert, prefetch, concurrent prefetch +
 * acquire. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/model.h"
#include "loader/store.h"
#include "tests/cache_fx.h"
#include "tests/suite_run.h"

static char err[1024];

/* ---- host backend over a real pack ---- */

static char tmpdir[256], pack[512];
static struct ld_model *model;
static struct ld_store *store;
static float *want[2][8];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static void host_setup(void)
{
	const char *t = getenv("TMPDIR"), *fx = getenv("MOED_FIXTURES");
	char dir[512];

	ck_assert_ptr_nonnull(fx);
	snprintf(tmpdir, sizeof(tmpdir), "%s/moed-cache-XXXXXX", t ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(dir, sizeof(dir), "%s/mixtral_f32", fx);
	ck_assert_msg(ld_model_open(dir, &model, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(model->cfg.n_moe_layers, 2);
	ck_assert_int_eq(model->cfg.n_experts, 8);
	snprintf(pack, sizeof(pack), "%s/m.pack", tmpdir);
	ck_assert_msg(ld_store_pack(model, pack, false, err, sizeof(err)) == 0, "%s", err);
	size_t n = ld_expert_floats(&model->cfg);
	for (int l = 0; l < 2; l++)
		for (int e = 0; e < 8; e++) {
			want[l][e] = malloc(n * sizeof(float));
			ld_expert_copy(model, l, e, want[l][e]);
		}
}

static void host_teardown(void)
{
	for (int l = 0; l < 2; l++)
		for (int e = 0; e < 8; e++)
			free(want[l][e]);
	ld_model_close(model);
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A cache of o's slots, policy and flags over the pack and a new host
 * backend. */
static struct cache *host_cache_opts(struct cache_opts o, struct ld_backend **be)
{
	struct cache *c = NULL;
	ck_assert_msg(ld_store_open(pack, 0, &store, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ld_backend_open("host", be, err, sizeof(err)), 0);
	o.n_layers = 2, o.n_experts = 8;
	o.expert_bytes = ld_store_info(store)->expert_bytes;
	o.store = store, o.backend = *be;
	o.next_use = next_use, o.next_use_ctx = next_use_tab;
	ck_assert_int_eq(cache_open(&o, &c), 0);
	return c;
}

static struct cache *host_cache(enum cache_policy p, size_t n_slots, struct ld_backend **be,
				bool skip_verify)
{
	return host_cache_opts((struct cache_opts){.n_slots = n_slots, .policy = p,
						   .skip_verify = skip_verify}, be);
}

static void host_done(struct cache *c, struct ld_backend *be)
{
	cache_close(c);
	ld_backend_close(be);
	ld_store_close(store);
}

static void check_use(struct cache *c, int l, int e)
{
	const float *w = NULL;
	int rc = cache_acquire(c, l, e, &w);
	ck_assert_msg(rc == 0, "acquire(%d, %d) = %d", l, e, rc);
	ck_assert_ptr_nonnull(w);
	ck_assert_uint_eq((uintptr_t)w % 4096, 0);
	ck_assert_msg(!memcmp(w, want[l][e], ld_store_info(store)->expert_bytes),
		      "layer %d expert %d: slot differs from ld_expert_copy", l, e);
	cache_release(c, l, e);
}

START_TEST(host_contents)
{
	struct ld_backend *be;
	struct cache *c = host_cache((enum cache_policy)_i, 3, &be, false);
	unsigned x = 12345;

	ck_assert_str_eq(ld_backend_name(be), "host");
	ck_assert(ld_backend_caps(be) & LD_BE_HOST_PTR);
	for (int i = 0; i < 300; i++) {
		x = x * 1103515245u + 12345u;
		int l = (int)(x >> 16) % 2, e = (int)(x >> 20) % 8;
		next_use_tab[e] = x % 100;   /* any values do for Belady here */
		check_use(c, l, e);
	}
	struct cache_stats s;
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.hits + s.misses, 300);
	ck_assert_uint_eq(s.loads, s.misses);
	ck_assert_uint_eq(s.bytes_loaded, s.loads * ld_store_info(store)->expert_bytes);
	ck_assert_uint_eq(s.evictions, s.misses - 3);
	host_done(c, be);
}
END_TEST

/* cache_load_all: every expert loaded once, after which acquires only hit;
 * refused without a slot for each.  The host backend has no device table. */
START_TEST(host_load_all)
{
	struct ld_backend *be;
	struct cache *c = host_cache(CACHE_LRU, 15, &be, false);
	struct cache_stats s;

	ck_assert_int_eq(cache_load_all(c), -ENOSPC);
	host_done(c, be);
	c = host_cache(CACHE_LRU, 16, &be, false);
	ck_assert_int_eq(cache_load_all(c), 0);
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.loads, 16);
	ck_assert_uint_eq(s.hits + s.misses, 0);
	for (int l = 0; l < 2; l++)
		for (int e = 0; e < 8; e++) {
			ck_assert(cache_resident(c, l, e));
			check_use(c, l, e);
		}
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.hits, 16);
	ck_assert_uint_eq(s.misses, 0);
	ck_assert_uint_eq(s.prefetched_used, 0);   /* a warm-up is not a prediction */
	ck_assert_uint_eq(s.loads, 16);
	ck_assert_ptr_null(cache_expert_src(c).resident_all);
	host_done(c, be);
}
END_TEST

START_TEST(host_one_slot)
{
	struct ld_backend *be;
	struct cache *c = host_cache(CACHE_LRU, 1, &be, false);

	/* top-k 2 with one slot: acquire, use, release, one after the other. */
	for (int round = 0; round < 2; round++)
		for (int l = 0; l < 2; l++)
			for (int e = 0; e < 8; e++)
				check_use(c, l, e);
	host_done(c, be);
}
END_TEST

START_TEST(host_prefetch)
{
	struct ld_backend *be;
	struct cache *c = host_cache(CACHE_FIFO, 4, &be, false);
	struct cache_stats s;

	for (int e = 0; e < 4; e++)
		ck_assert_int_eq(cache_prefetch(c, 1, e), 0);
	ck_assert_int_eq(cache_prefetch(c, 1, 4), -ENOSPC);
	for (int e = 3; e >= 0; e--)
		check_use(c, 1, e);
	cache_get_stats(c, 1, &s);
	ck_assert_uint_eq(s.hits, 4);
	ck_assert_uint_eq(s.misses, 0);
	ck_assert_uint_eq(s.prefetched_used, 4);
	cache_unpin_all(c);
	/* Prefetch and close without waiting: close drains the loads. */
	ck_assert_int_eq(cache_prefetch(c, 0, 7), 0);
	host_done(c, be);
}
END_TEST

static off_t expert_offset(int l, int e)
{
	struct ld_pack_entry ent;
	int fd = open(pack, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &ent, sizeof(ent), sizeof(struct ld_pack_header) +
			       (off_t)(l * 8 + e) * (off_t)sizeof(ent)), (ssize_t)sizeof(ent));
	close(fd);
	return (off_t)ent.offset;
}

static void corrupt_expert(int l, int e)
{
	unsigned char b;
	off_t off = expert_offset(l, e) + 100;
	int fd = open(pack, O_RDWR);
	ck_assert_int_eq(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void check_corrupt_load(struct cache *c)
{
	const float *w;

	ck_assert_int_eq(cache_acquire(c, 1, 3, &w), -EBADMSG);
	ck_assert_ptr_null(w);
	cache_last_error(c, err, sizeof(err));
	ck_assert_msg(strstr(err, "layer 1 expert 3") && strstr(err, "checksum") &&
		      strstr(err, pack), "%s", err);
	ck_assert(!cache_resident(c, 1, 3));
	check_use(c, 1, 2);
	/* Through a prefetch: the failure shows at acquire. */
	ck_assert_int_eq(cache_prefetch(c, 1, 3), 0);
	ck_assert_int_eq(cache_acquire(c, 1, 3, &w), -EBADMSG);
	check_use(c, 0, 3);
}

START_TEST(host_corrupt)
{
	struct ld_backend *be;
	corrupt_expert(1, 3);
	struct cache *c = host_cache(CACHE_LRU, 2, &be, false);
	check_corrupt_load(c);
	host_done(c, be);
	/* skip_verify trusts the pack: the damaged bytes come through. */
	c = host_cache(CACHE_LRU, 2, &be, true);
	const float *w;
	ck_assert_int_eq(cache_acquire(c, 1, 3, &w), 0);
	ck_assert(memcmp(w, want[1][3], ld_store_info(store)->expert_bytes) != 0);
	cache_release(c, 1, 3);
	host_done(c, be);
}
END_TEST

/* A backend that cannot check copies (like a DMA engine): the cache checks
 * the store's bytes itself before the first load of each expert. */
START_TEST(host_corrupt_noverify_backend)
{
	struct ld_backend *be;
	static struct ld_backend_ops ops;
	corrupt_expert(1, 3);
	ck_assert_msg(ld_store_open(pack, 0, &store, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ld_backend_open("host", &be, err, sizeof(err)), 0);
	ops = *be->ops;
	ops.caps &= ~(unsigned)LD_BE_VERIFY;
	be->ops = &ops;
	struct cache_opts o = {.n_layers = 2, .n_experts = 8,
			       .expert_bytes = ld_store_info(store)->expert_bytes,
			       .n_slots = 2, .policy = CACHE_LRU, .store = store, .backend = be};
	struct cache *c;
	ck_assert_int_eq(cache_open(&o, &c), 0);
	const float *w;
	ck_assert_int_eq(cache_acquire(c, 1, 3, &w), -EBADMSG);
	cache_last_error(c, err, sizeof(err));
	ck_assert_msg(strstr(err, "layer 1 expert 3") && strstr(err, "checksum"), "%s", err);
	ck_assert_int_eq(cache_prefetch(c, 1, 3), -EBADMSG);
	check_use(c, 1, 2);
	check_use(c, 0, 3);
	host_done(c, be);
}
END_TEST

/* A device backend's ordering, on the host backend: stream_wait counts its
 * calls and waits for the load (then fails when told to: the host backend
 * refuses a new load into a slot whose copy still runs, a device queues it). */
static struct ld_backend_ops dev_ops;
static int stream_waits, stream_fail;

static int fake_stream_wait(struct ld_backend *be, struct ld_ticket t)
{
	int rc = be->ops->wait(be, t);

	stream_waits++;
	return stream_fail ? -EIO : rc;
}

/* acquire_ahead leaves a miss's load unordered (1) until cache_order, which
 * orders it once; a failed order releases the expert; hits and plain
 * acquires are as before. */
START_TEST(host_ahead_order)
{
	struct ld_backend *be;
	const float *w = NULL;
	struct cache *c = host_cache(CACHE_LRU, 2, &be, false);

	dev_ops = *be->ops;
	dev_ops.stream_wait = fake_stream_wait;
	be->ops = &dev_ops;
	stream_waits = stream_fail = 0;
	ck_assert_int_eq(cache_order(c, 0, 1), -ENOENT);          /* not acquired */
	ck_assert_int_eq(cache_order(c, 2, 1), -EINVAL);          /* no such layer */
	ck_assert_int_eq(cache_acquire_ahead(c, 0, 1, &w), 1);
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(stream_waits, 0);
	ck_assert_int_eq(cache_order(c, 0, 1), 0);
	ck_assert_int_eq(stream_waits, 1);
	ck_assert(!memcmp(w, want[0][1], ld_store_info(store)->expert_bytes));
	ck_assert_int_eq(cache_order(c, 0, 1), 0);                /* ordered once */
	ck_assert_int_eq(stream_waits, 1);
	cache_release(c, 0, 1);
	ck_assert_int_eq(cache_acquire_ahead(c, 0, 1, &w), 0);    /* a loaded hit */
	cache_release(c, 0, 1);
	ck_assert_int_eq(cache_acquire(c, 0, 2, &w), 0);          /* plain: ordered now */
	ck_assert_int_eq(stream_waits, 2);
	cache_release(c, 0, 2);
	stream_fail = 1;
	ck_assert_int_eq(cache_acquire_ahead(c, 1, 5, &w), 1);
	ck_assert_int_eq(cache_order(c, 1, 5), -EIO);
	ck_assert(!cache_resident(c, 1, 5));
	stream_fail = 0;
	/* Nothing left held: both slots take new experts. */
	check_use(c, 1, 6);
	check_use(c, 1, 7);
	host_done(c, be);
}
END_TEST

/* The host backend with a poll that says "still loading" while poll_busy
 * and a cancel that counts its calls (cancels). */
static const struct ld_backend_ops *real_ops;
static int poll_busy, cancels;

static int fake_poll(struct ld_backend *be, struct ld_ticket t, int *rc)
{
	if (poll_busy)
		return 0;
	*rc = real_ops->wait(be, t);   /* landed by now, for certain */
	return 1;
}

/* Pretends fake_copied bytes of the load (which ran on the host) were
 * copied before the cancel. */
static size_t fake_copied;

static int fake_cancel(struct ld_backend *be, struct ld_ticket t, size_t *copied)
{
	real_ops->wait(be, t);
	cancels++;
	*copied = fake_copied;
	return 1;
}

/* be's poll and cancel from the fakes above. */
static void fake_ops(struct ld_backend *be)
{
	real_ops = be->ops;
	dev_ops = *be->ops;
	dev_ops.poll = fake_poll;
	dev_ops.cancel = fake_cancel;
	be->ops = &dev_ops;
	poll_busy = 1;
	cancels = 0;
	fake_copied = 0;
}

/* A prefetch counts late when its load is still in flight at the acquire
 * (the backend's poll says so), and not when it has landed. */
START_TEST(host_prefetch_late)
{
	struct ld_backend *be;
	struct cache *c = host_cache(CACHE_LRU, 4, &be, false);
	struct cache_stats s;

	fake_ops(be);
	ck_assert_int_eq(cache_prefetch(c, 1, 0), 0);
	check_use(c, 1, 0);
	poll_busy = 0;
	ck_assert_int_eq(cache_prefetch(c, 1, 1), 0);
	check_use(c, 1, 1);
	check_use(c, 1, 0);            /* a plain hit: counted once */
	cache_get_stats(c, 1, &s);
	ck_assert_uint_eq(s.prefetched_used, 2);
	ck_assert_uint_eq(s.prefetched_late, 1);
	ck_assert_uint_eq(s.misses, 0);
	host_done(c, be);
}
END_TEST

/* cache_drop_prefetches: a layer's prefetches whose loads the backend can
 * still cancel go (their slots free, not counted as loads, the part copied
 * counted in bytes); an acquired one, another layer's, or any with
 * keep_prefetches stay. */
START_TEST(host_drop_prefetches)
{
	for (int keep = 0; keep < 2; keep++) {
		struct ld_backend *be;
		struct cache *c = host_cache_opts((struct cache_opts){.n_slots = 4,
			.policy = CACHE_LRU, .keep_prefetches = keep}, &be);
		struct cache_stats s;

		size_t eb = ld_store_info(store)->expert_bytes;

		fake_ops(be);
		fake_copied = eb / 4;
		ck_assert_int_eq(cache_prefetch(c, 1, 2), 0);
		ck_assert_int_eq(cache_prefetch(c, 1, 3), 0);
		ck_assert_int_eq(cache_prefetch(c, 0, 4), 0);
		check_use(c, 1, 3);
		cache_drop_prefetches(c, 1);
		ck_assert_int_eq(cancels, keep ? 0 : 1);
		ck_assert_int_eq(cache_resident(c, 1, 2), keep);
		ck_assert(cache_resident(c, 1, 3));
		ck_assert(cache_resident(c, 0, 4));
		cache_get_stats(c, 1, &s);
		ck_assert_uint_eq(s.prefetch_dropped, keep ? 0 : 1);
		ck_assert_uint_eq(s.loads, keep ? 2 : 1);
		ck_assert_uint_eq(s.bytes_loaded, s.loads * eb + (keep ? 0 : eb / 4));
		poll_busy = 0;
		check_use(c, 1, 2);            /* loaded again (or kept) */
		cache_get_stats(c, 1, &s);
		ck_assert_uint_eq(s.misses, keep ? 0 : 1);
		host_done(c, be);
	}
}
END_TEST

/* cache_host_expert: the store's bytes of an expert that is not resident
 * (once its checksum was checked), or whose prefetch the backend can still
 * cancel (dropped on take); NULL for a resident one or one never checked;
 * only take counts. */
START_TEST(host_expert_from_store)
{
	struct ld_backend *be;
	struct cache *c = host_cache(CACHE_LRU, 4, &be, false);
	struct cache_stats s;

	fake_ops(be);
	poll_busy = 0;
	ck_assert_ptr_null(cache_host_expert(c, 1, 5, true));   /* never checked */
	check_use(c, 1, 5);
	ck_assert_ptr_null(cache_host_expert(c, 1, 5, true));   /* resident */
	for (int x = 0; x < 4; x++)
		check_use(c, 1, x);
	ck_assert(!cache_resident(c, 1, 5));
	ck_assert_ptr_eq(cache_host_expert(c, 1, 5, false), ld_store_expert(store, 1, 5));
	cache_get_stats(c, 1, &s);
	ck_assert_uint_eq(s.host_runs, 0);
	ck_assert_ptr_eq(cache_host_expert(c, 1, 5, true), ld_store_expert(store, 1, 5));
	cache_get_stats(c, 1, &s);
	ck_assert_uint_eq(s.host_runs, 1);
	ck_assert_uint_eq(s.misses, 5);
	ck_assert(!cache_resident(c, 1, 5));
	/* (1, 0) was checked by its load: prefetched again, still queued */
	poll_busy = 1;
	ck_assert_int_eq(cache_prefetch(c, 1, 0), 0);   /* resident: a pin only */
	for (int x = 6; x < 8; x++)
		check_use(c, 1, x);
	ck_assert_int_eq(cache_prefetch(c, 1, 1), 0);
	cache_unpin_all(c);
	ck_assert_ptr_nonnull(cache_host_expert(c, 1, 1, false));
	ck_assert_int_eq(cancels, 0);
	ck_assert_ptr_eq(cache_host_expert(c, 1, 1, true), ld_store_expert(store, 1, 1));
	ck_assert_int_eq(cancels, 1);
	ck_assert(!cache_resident(c, 1, 1));
	cache_get_stats(c, 1, &s);
	ck_assert_uint_eq(s.host_runs, 2);
	ck_assert_uint_eq(s.prefetch_dropped, 1);
	poll_busy = 0;
	host_done(c, be);
}
END_TEST

START_TEST(backend_direct)
{
	struct ld_backend *be;
	struct ld_ticket t;
	int rc;
	static char src[10000];

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (char)(i * 7);
	uint64_t sum = ld_xxh64(src, sizeof(src)), bad = sum + 1;
	ck_assert_int_eq(ld_backend_open("cuda-nope", &be, err, sizeof(err)), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err, "cuda-nope"));
	ck_assert_int_eq(ld_backend_open("host", &be, err, sizeof(err)), 0);
	ck_assert_int_eq(be->ops->pool_alloc(be, 2, sizeof(src)), 0);
	ck_assert_int_eq(be->ops->pool_alloc(be, 2, sizeof(src)), -EBUSY);
	ck_assert_uint_eq(be->slot_stride, 12288);
	ck_assert_int_eq(be->ops->load_async(be, 1, src, sizeof(src), &sum, LD_LOAD_URGENT, &t), 0);
	ck_assert_int_eq(be->ops->wait(be, t), 0);
	ck_assert_int_eq(be->ops->wait(be, t), 0);      /* waiting twice is fine */
	ck_assert_int_eq(be->ops->poll(be, t, &rc), 1);
	ck_assert_int_eq(rc, 0);
	ck_assert(!memcmp(be->ops->slot_ptr(be, 1), src, sizeof(src)));
	ck_assert_int_eq(be->ops->load_async(be, 0, src, sizeof(src), &bad, 0, &t), 0);
	ck_assert_int_eq(be->ops->wait(be, t), -EBADMSG);
	ck_assert_int_eq(be->ops->load_async(be, 0, src, sizeof(src), NULL, 0, &t), 0);
	ck_assert_int_eq(be->ops->wait(be, t), 0);
	ck_assert_int_eq(be->ops->load_async(be, 2, src, sizeof(src), NULL, 0, &t), -EINVAL);
	ck_assert_int_eq(be->ops->load_async(be, 0, src, sizeof(src) + 1, NULL, 0, &t), -EINVAL);
	ck_assert_ptr_null(be->ops->slot_ptr(be, 2));
	be->ops->pool_free(be);
	ld_backend_close(be);
}
END_TEST

/* ---- concurrency ---- */

struct pf_arg {
	struct cache *c;
	int n;
};

static void *prefetcher(void *p)
{
	struct pf_arg *a = p;
	unsigned x = 777;

	for (int i = 0; i < a->n; i++) {
		x = x * 1103515245u + 12345u;
		int rc = cache_prefetch(a->c, (int)(x >> 16) % 2, (int)(x >> 20) % 8);
		ck_assert(rc == 0 || rc == -ENOSPC);
		if (i % 3 == 2)
			cache_unpin_all(a->c);
	}
	return NULL;
}

START_TEST(host_concurrent)
{
	struct ld_backend *be;
	struct cache *c = host_cache((enum cache_policy)_i, 4, &be, false);
	struct pf_arg a = {.c = c, .n = 3000};
	pthread_t th;
	unsigned x = 4242;

	ck_assert_int_eq(pthread_create(&th, NULL, prefetcher, &a), 0);
	for (int i = 0; i < 3000; i++) {
		x = x * 1103515245u + 12345u;
		check_use(c, (int)(x >> 16) % 2, (int)(x >> 20) % 8);
	}
	pthread_join(th, NULL);
	struct cache_stats s;
	cache_get_stats(c, -1, &s);
	ck_assert_uint_eq(s.hits + s.misses, 3000);
	ck_assert_uint_le(s.prefetched_used + s.prefetched_unused, s.loads - s.misses);
	host_done(c, be);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cache_host");
	TCase *th = tcase_create("host");

	tcase_add_checked_fixture(th, host_setup, host_teardown);
	tcase_set_timeout(th, 240);
	tcase_add_loop_test(th, host_contents, CACHE_FIFO, CACHE_BELADY + 1);
	tcase_add_test(th, host_one_slot);
	tcase_add_test(th, host_load_all);
	tcase_add_test(th, host_prefetch);
	tcase_add_test(th, host_corrupt);
	tcase_add_test(th, host_corrupt_noverify_backend);
	tcase_add_test(th, host_ahead_order);
	tcase_add_test(th, host_prefetch_late);
	tcase_add_test(th, host_drop_prefetches);
	tcase_add_test(th, host_expert_from_store);
	tcase_add_test(th, backend_direct);
	tcase_add_loop_test(th, host_concurrent, CACHE_FIFO, CACHE_LFUDA + 1);
	suite_add_tcase(s, th);
	return suite_run(s);
}
