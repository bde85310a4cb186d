/* The CUDA backend and the engine's CUDA path, on a GPU: the backend's
 * copies (pinned and staged), the HF fixtures through GPU slots (bf16
 * tolerance, identical routes and greedy tokens), and exactness of the cache
 * on GPU slots: the same output, bit for bit, at every budget and policy.
 * Without a GPU (or without CUDA in the build) it prints why and exits 77,
 * which meson counts as skipped. */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef HAVE_CUDA
int main(void)
{
	printf("skipped: no CUDA device (built without CUDA: nvcc not found at setup)\n");
	return 77;
}
#else

#include <cuda_runtime_api.h>

#include "engine/cuda_kernels.h"
#include "engine/cuda_moe.h"
#include "engine/host_ffn.h"
#include "engine/silu.h"
#include "engine/engine.h"
#include "engine/sample.h"
#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/env.h"
#include "loader/model.h"
#include "loader/store.h"
#include "tests/refs.h"

static char tmpdir[512], err[1024];

struct world {
	struct ld_model *m;
	struct ld_store *st;
	struct ld_backend *be;
	struct cache *c;
	struct eng *e;
};

/* Experts packed as f32 even for a bf16 checkpoint (else bf16 there). */
static bool force_f32;
/* Load every expert at open (all slots): decode then takes the fast way. */
static bool warm;
/* The cache's host_threads (misses computed on the CPU). */
static int host_threads;

/* Packs fixture name once (per process and dtype) and opens model, store, a
 * CUDA backend, a cache of n_slots (0: all) and the engine on top. */
static void open_world(const char *name, size_t n_slots, enum cache_policy p,
		       unsigned be_flags, struct world *w)
{
	char dir[700], pack[700];
	struct ld_expert_src src;

	snprintf(dir, sizeof(dir), "%s/%s", getenv("MOED_FIXTURES"), name);
	memset(w, 0, sizeof(*w));
	ck_assert_msg(ld_model_open(dir, &w->m, err, sizeof(err)) == 0, "%s", err);
	int dt = w->m->dtype == LD_BF16 && !force_f32 ? LD_BF16 : LD_F32;
	snprintf(pack, sizeof(pack), "%s/%s.%s.pack", tmpdir, name, ld_dtype_name(dt));
	if (access(pack, F_OK))
		ck_assert_msg(ld_store_pack_dtype(w->m, pack, dt, false, err, sizeof(err)) == 0,
			      "%s", err);
	ck_assert_msg(ld_store_open(pack, 0, &w->st, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(ld_store_info(w->st)->dtype, dt);
	ck_assert_msg(ld_backend_cuda_open(0, be_flags, &w->be, err, sizeof(err)) == 0, "%s",
		      err);
	const struct ld_store_info *in = ld_store_info(w->st);
	size_t all = (size_t)in->n_layers * (size_t)in->n_experts;
	struct cache_opts o = {.n_layers = in->n_layers, .n_experts = in->n_experts,
			       .expert_bytes = in->expert_bytes,
			       .n_slots = n_slots ? n_slots : all, .policy = p,
			       .store = w->st, .backend = w->be, .host_threads = host_threads};
	ck_assert_int_eq(cache_open(&o, &w->c), 0);
	if (warm)
		ck_assert_int_eq(cache_load_all(w->c), 0);
	src = cache_expert_src(w->c);
	ck_assert_int_eq(src.mem, LD_EXPERT_CUDA);
	ck_assert_int_eq(eng_open(w->m, &src, 128, &w->e), 0);
}

/* The qwen3moe fixture with every slot, graphs on or off (the fast way or
 * not), every expert loaded at open when load_all. */
static void open_graphs(bool graphs, bool load_all, struct world *w)
{
	warm = load_all;
	setenv("MOED_CUDA_GRAPHS", graphs ? "1" : "0", 1);
	open_world("qwen3moe_f32_sharded", 0, CACHE_LRU, 0, w);
	unsetenv("MOED_CUDA_GRAPHS");
	warm = false;
}

static void close_world(struct world *w)
{
	eng_close(w->e);
	cache_close(w->c);
	ld_backend_close(w->be);
	ld_store_close(w->st);
	ld_model_close(w->m);
}

START_TEST(backend_direct)
{
	struct ld_backend *be, *be2;
	struct ld_ticket t;
	size_t n = 20 << 20;         /* staged through three ring buffers */
	uint8_t *src = aligned_alloc(4096, n), *back = malloc(n);
	int rc;

	for (size_t i = 0; i < n; i++)
		src[i] = (uint8_t)(i * 7 + (i >> 12));
	ck_assert_int_eq(ld_backend_open_index("cuda", 99, &be, err, sizeof(err)), -ENODEV);
	ck_assert_ptr_nonnull(strstr(err, "out of range"));
	ck_assert_int_eq(ld_backend_open_index("cuda", 0, &be, err, sizeof(err)), 0);
	ck_assert_str_eq(ld_backend_name(be), "cuda");
	ck_assert(ld_backend_caps(be) & LD_BE_DEV_PTR);
	ck_assert_ptr_nonnull(be->dev_stream);
	ck_assert_int_eq(be->ops->pool_alloc(be, 3, n), 0);
	ck_assert_int_eq(be->ops->pool_alloc(be, 3, n), -EBUSY);
	ck_assert_uint_eq(be->slot_stride, n);
	/* Staged (nothing registered), then straight from registered memory. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass)
			ck_assert_int_eq(be->ops->host_register(be, src, n), 0);
		ck_assert_int_eq(be->ops->load_async(be, 1, src, n, NULL, 0, &t), 0);
		ck_assert_int_eq(be->ops->wait(be, t), 0);
		ck_assert_int_eq(be->ops->poll(be, t, &rc), 1);
		ck_assert_int_eq(rc, 0);
		ck_assert_int_eq(be->ops->stream_wait(be, t), 0);
		memset(back, 0, n);
		ck_assert_int_eq(cudaMemcpy(back, be->ops->slot_ptr(be, 1), n,
					    cudaMemcpyDeviceToHost), cudaSuccess);
		ck_assert_msg(!memcmp(back, src, n), "pass %d: slot differs from source", pass);
	}
	ck_assert(ld_backend_caps(be) & LD_BE_BF16_SLOTS);
	/* A new pool on the same backend keeps the registration. */
	be->ops->pool_free(be);
	ck_assert_int_eq(be->ops->pool_alloc(be, 4, n), 0);
	ck_assert_int_eq(be->ops->host_register(be, src, n), 0);
	ck_assert_int_eq(be->ops->host_register(be, src, n / 2), -EBUSY);
	ck_assert_int_eq(be->ops->load_async(be, 3, src, n, NULL, 0, &t), 0);
	ck_assert_int_eq(be->ops->wait(be, t), 0);
	memset(back, 0, n);
	ck_assert_int_eq(cudaMemcpy(back, be->ops->slot_ptr(be, 3), n, cudaMemcpyDeviceToHost),
			 cudaSuccess);
	ck_assert_msg(!memcmp(back, src, n), "new pool: slot differs from source");
	uint64_t bad = ld_xxh64(src, n) + 1;
	ck_assert_int_eq(be->ops->load_async(be, 0, src, n, &bad, 0, &t), -EBADMSG);
	ck_assert_int_eq(be->ops->load_async(be, 4, src, n, NULL, 0, &t), -EINVAL);
	ld_backend_close(be);          /* unregisters src */
	ck_assert_int_eq(ld_backend_cuda_open(0, LD_BE_CUDA_NO_REGISTER, &be2, err,
					      sizeof(err)), 0);
	ck_assert_int_eq(be2->ops->pool_alloc(be2, 1, 4096), 0);
	ck_assert_int_eq(be2->ops->host_register(be2, src, n), -ENOTSUP);
	ld_backend_close(be2);
	free(src);
	free(back);
}
END_TEST

/* Prefetches (no LD_LOAD_URGENT) wait on the host, two at a time on the
 * copy stream (idle mode, 2: in pieces, while no demand copy runs): a
 * queued one can be dropped (its slot untouched), polls as not done, starts
 * when waited for; a demand load goes straight to the stream; with
 * MOED_CUDA_PREFETCH_QUEUE=0 every load does.  Pass 3: idle mode in 100 KiB
 * pieces (MOED_CUDA_PREFETCH_PIECE; 64 MiB is not a whole number of them). */
START_TEST(backend_prefetch_queue)
{
	size_t n = 64 << 20;          /* about 1.2 ms a copy: the queue stays */
	uint8_t *src = aligned_alloc(4096, n), *back = malloc(n);
	struct ld_backend *be;
	struct ld_ticket t[6];
	int rc;

	for (size_t i = 0; i < n; i++)
		src[i] = (uint8_t)(i * 13 + (i >> 10));
	for (int q = 3; q >= 0; q--) {
		int on = q != 0;

		setenv("MOED_CUDA_PREFETCH_QUEUE", (const char *[]){"0", "1", "2", "2"}[q], 1);
		if (q == 3)
			setenv("MOED_CUDA_PREFETCH_PIECE", "100", 1);
		ck_assert_int_eq(ld_backend_open_index("cuda", 0, &be, err, sizeof(err)), 0);
		unsetenv("MOED_CUDA_PREFETCH_QUEUE");
		unsetenv("MOED_CUDA_PREFETCH_PIECE");
		ck_assert_int_eq(be->ops->pool_alloc(be, 6, n), 0);
		ck_assert_int_eq(be->ops->host_register(be, src, n), 0);
		ck_assert_int_eq(cudaMemset(be->ops->slot_ptr(be, 4), 0, n), cudaSuccess);
		for (int s = 0; s < 5; s++)
			ck_assert_int_eq(be->ops->load_async(be, (size_t)s, src, n, NULL, 0, &t[s]),
					 0);
		ck_assert_int_eq(be->ops->load_async(be, 5, src, n, NULL, LD_LOAD_URGENT, &t[5]),
				 0);
		size_t copied = 1;

		ck_assert_int_eq(be->ops->cancel(be, t[4], &copied), on);
		ck_assert_uint_eq(copied, !on);   /* behind four: none of it yet */
		if (on)
			ck_assert_int_eq(be->ops->poll(be, t[3], &rc), 0);
		for (int s = 0; s < 6; s++) {
			if (s == 4 && on)
				continue;
			ck_assert_int_eq(be->ops->wait(be, t[s]), 0);
			ck_assert_int_eq(be->ops->poll(be, t[s], &rc), 1);
			ck_assert_int_eq(rc, 0);
			ck_assert_int_eq(cudaMemcpy(back, be->ops->slot_ptr(be, (size_t)s), n,
						    cudaMemcpyDeviceToHost), cudaSuccess);
			ck_assert_msg(!memcmp(back, src, n), "queue %d: slot %d differs", q, s);
		}
		ck_assert_int_eq(be->ops->cancel(be, t[0], &copied), 0);   /* done */
		ck_assert_int_eq(cudaDeviceSynchronize(), cudaSuccess);
		ck_assert_int_eq(cudaMemcpy(back, be->ops->slot_ptr(be, 4), n,
					    cudaMemcpyDeviceToHost), cudaSuccess);
		ck_assert_int_eq(back[0] == 0 && !memcmp(back, back + 1, n - 1), on);
		/* A dropped load's slot takes a new one. */
		ck_assert_int_eq(be->ops->load_async(be, 4, src, n, NULL, 0, &t[4]), 0);
		ck_assert_int_eq(be->ops->stream_wait(be, t[4]), 0);
		ck_assert_int_eq(cudaStreamSynchronize(be->dev_stream), cudaSuccess);
		ck_assert_int_eq(be->ops->poll(be, t[4], &rc), 1);
		/* LD_LOAD_NOW: onto the stream at once, so nothing to cancel. */
		ck_assert_int_eq(be->ops->load_async(be, 0, src, n, NULL, LD_LOAD_NOW, &t[0]), 0);
		ck_assert_int_eq(be->ops->cancel(be, t[0], &copied), 0);
		ck_assert_int_eq(be->ops->wait(be, t[0]), 0);
		ld_backend_close(be);
	}
	free(src);
	free(back);
}
END_TEST

/* Router choices recorded by the on_route hook, [layer][pos][k]. */
struct routes {
	int *ids;
	int n_pos, k;
};

static void on_route(void *ctx, void *seq_user, int layer, int pos, int token,
		     const int *experts, const float *w, int k)
{
	struct routes *r = ctx;

	(void)seq_user, (void)token, (void)w;
	if (pos < r->n_pos)
		memcpy(r->ids + ((size_t)layer * r->n_pos + pos) * k, experts,
		       (size_t)k * sizeof(int));
}

static double max_abs_diff(const float *a, const float *b, int n)
{
	double mx = 0;

	for (int i = 0; i < n; i++)
		mx = fmax(mx, fabs((double)a[i] - b[i]));
	return mx;
}

static void check_case(struct world *w, const char *name, struct ref_case *rc)
{
	const struct ld_config *c = &w->m->cfg;
	struct eng_seq *s;
	float *logits = calloc((size_t)c->vocab_size, sizeof(float));
	struct routes r = {.n_pos = rc->n_prompt, .k = c->top_k};
	struct eng_hooks h = {.on_route = on_route, .ctx = &r};
	int nr = c->n_moe_layers * rc->n_prompt * c->top_k;

	r.ids = calloc((size_t)nr, sizeof(int));
	eng_set_hooks(w->e, &h);
	ck_assert_int_eq(eng_seq_new(w->e, &s), 0);
	ck_assert_int_eq(eng_forward(w->e, s, rc->prompt, rc->n_prompt, logits), 0);
	eng_set_hooks(w->e, NULL);
	double ab = max_abs_diff(logits, rc->logits, c->vocab_size);
	printf("cuda %s prompt %d: max |dlogit| %.3g\n", name, rc->n_prompt, ab);
	ck_assert_msg(ab <= 2e-2, "%s: |dlogit| %g > 2e-2", name, ab);
	for (int i = 0; i < nr; i++)
		ck_assert_msg(r.ids[i] == rc->routes[i], "%s prompt %d: route differs at layer "
			      "%d pos %d", name, rc->n_prompt, i / (rc->n_prompt * c->top_k),
			      (i / c->top_k) % rc->n_prompt);
	for (int t = 0; t < rc->n_greedy; t++) {
		int next = eng_argmax(logits, c->vocab_size);

		ck_assert_msg(next == rc->greedy[t], "%s prompt %d: greedy step %d: %d != %d",
			      name, rc->n_prompt, t, next, rc->greedy[t]);
		ck_assert_int_eq(eng_forward(w->e, s, &next, 1, logits), 0);
	}
	printf("cuda %s prompt %d: routes identical, %d greedy tokens identical\n", name,
	       rc->n_prompt, rc->n_greedy);
	eng_seq_free(s);
	free(r.ids);
	free(logits);
}

START_TEST(fixtures)
{
	const char *name = ref_fixture_names[_i];
	struct ref_fixture f;
	struct world w;

	uint64_t acquires = 0;

	ref_load(name, &f);
	for (int pass = 0; pass < 2; pass++) {
		/* 0: through the cache (graphs off: once the prompts have loaded
		 * every expert the fast way would take over); 1: the fast way. */
		warm = pass;
		setenv("MOED_CUDA_GRAPHS", pass ? "1" : "0", 1);
		open_world(name, 0, CACHE_LRU, 0, &w);
		unsetenv("MOED_CUDA_GRAPHS");
		for (int i = 0; i < f.n_cases; i++)
			check_case(&w, name, &f.cases[i]);
		struct cache_stats st;
		cache_get_stats(w.c, -1, &st);
		printf("cuda %s: %llu fast steps, %llu acquires\n", name,
		       (unsigned long long)eng_fast_steps(w.e),
		       (unsigned long long)(st.hits + st.misses));
		/* The fast way counts one hit per expert used, as acquires do. */
		if (!pass)
			acquires = st.hits + st.misses;
		else
			ck_assert_uint_eq(st.hits + st.misses, acquires);
		if (pass)
			ck_assert_uint_gt(eng_fast_steps(w.e), 0);
		else
			ck_assert_uint_eq(eng_fast_steps(w.e), 0);
		close_world(&w);
		warm = false;
	}
	ref_free(&f);
}
END_TEST

/* Prefetch hook: the first top-k experts of each layer (not the router's
 * choice), pins dropped as the next layer starts, as the worker does. */
static void before_moe(void *ctx, int layer, const int *tokens, int n)
{
	struct world *w = ctx;

	(void)tokens, (void)n;
	cache_unpin_all(w->c);
	for (int x = 0; x < w->m->cfg.top_k; x++)
		cache_prefetch(w->c, layer, (x * 3 + layer) % w->m->cfg.n_experts);
}

#define STEPS 12

/* rc's prompt then STEPS greedy steps with hooks h (or none); all the
 * logits into out. */
static void decode_seq(struct world *w, const struct ref_case *rc, const struct eng_hooks *h,
		       float *out)
{
	int V = w->m->cfg.vocab_size, next;
	struct eng_seq *s;

	eng_set_hooks(w->e, h);
	ck_assert_int_eq(eng_seq_new(w->e, &s), 0);
	ck_assert_int_eq(eng_forward(w->e, s, rc->prompt, rc->n_prompt, out), 0);
	for (int t = 0; t < STEPS; t++) {
		next = eng_argmax(out + (size_t)t * V, V);
		ck_assert_int_eq(eng_forward(w->e, s, &next, 1, out + (size_t)(t + 1) * V), 0);
	}
	eng_seq_free(s);
	eng_set_hooks(w->e, NULL);
}

/* Prompt of case 3 then STEPS greedy steps, with before_moe's prefetches
 * when prefetch; all the logits into out. */
static void run_seq(struct world *w, const struct ref_case *rc, bool prefetch, float *out)
{
	struct eng_hooks h = {.before_moe = before_moe, .ctx = w};

	decode_seq(w, rc, prefetch ? &h : NULL, out);
	cache_unpin_all(w->c);
}

/* The reference of the budget tests: fixture name's case 3 with every
 * expert resident (the fast way), run_seq's logits into *ref (malloc'd, nl
 * floats) and scratch of as many into *got; the vocabulary and the experts. */
static void resident_ref(const char *name, const struct ref_fixture *f, float **ref, float **got,
			 size_t *nl, int *V, int *all)
{
	struct world w;

	warm = true;
	open_world(name, 0, CACHE_LRU, 0, &w);
	warm = false;
	*V = w.m->cfg.vocab_size, *all = w.m->cfg.n_moe_layers * w.m->cfg.n_experts;
	*nl = (size_t)(STEPS + 1) * *V;
	*ref = malloc(*nl * sizeof(float)), *got = malloc(*nl * sizeof(float));
	run_seq(&w, &f->cases[3], false, *ref);
	ck_assert_uint_eq(eng_fast_steps(w.e), STEPS);
	close_world(&w);
}

START_TEST(exact_every_budget)
{
	const char *name = ref_fixture_names[_i];
	struct ref_fixture f;
	struct world w;
	enum cache_policy pol[] = {CACHE_FIFO, CACHE_LRU, CACHE_LFU, CACHE_LFUDA};
	float *ref, *got;
	size_t nl;
	int V, all;

	ref_load(name, &f);
	resident_ref(name, &f, &ref, &got, &nl, &V, &all);
	bool bf16 = ref_is_bf16(name);
	/* bf16 slots against f32 slots of the same values: the prompt's experts
	 * run on tensor cores (eng_cu_split3) in one and in f32 in the other, so
	 * close, with the same greedy tokens, not bit for bit. */
	if (bf16) {
		force_f32 = true;
		open_world(name, 0, CACHE_LRU, 0, &w);
		force_f32 = false;
		run_seq(&w, &f.cases[3], false, got);
		ck_assert_uint_eq(ld_store_info(w.st)->dtype, LD_F32);
		double d = max_abs_diff(ref, got, (int)nl);
		ck_assert_msg(d < 1e-5, "%s: bf16 pack differs from f32 pack by %g", name, d);
		for (int t = 0; t <= STEPS; t++)
			ck_assert_int_eq(eng_argmax(ref + (size_t)t * V, V),
					 eng_argmax(got + (size_t)t * V, V));
		printf("cuda exact %s: bf16 pack and f32 pack: max |dlogit| %.3g, same tokens\n",
		       name, d);
		close_world(&w);
		/* The prompt's experts one wave each instead of all in one wave
		 * (engine_cuda_moe.c's run_split): the same bits. */
		setenv("MOED_CUDA_WAVE_ROWS", "1", 1);
		open_world(name, 0, CACHE_LRU, 0, &w);
		unsetenv("MOED_CUDA_WAVE_ROWS");
		run_seq(&w, &f.cases[3], false, got);
		ck_assert_msg(!memcmp(ref, got, nl * sizeof(float)),
			      "%s: experts in waves of one differ (max %g)", name,
			      max_abs_diff(ref, got, (int)nl));
		printf("cuda exact %s: experts in waves of one: identical\n", name);
		close_world(&w);
	}
	size_t budgets[] = {1, 2, 3, (size_t)all / 4, (size_t)all / 2, (size_t)all - 1};
	for (size_t b = 0; b < sizeof(budgets) / sizeof(budgets[0]); b++)
		for (int p = 0; p < 4; p++)
			for (int pf = 0; pf < 2; pf++) {
				struct cache_stats st;
				unsigned fl = b == 2 && p == 1 ? LD_BE_CUDA_NO_REGISTER : 0;

				open_world(name, budgets[b], pol[p], fl, &w);
				run_seq(&w, &f.cases[3], pf, got);
				cache_get_stats(w.c, -1, &st);
				ck_assert_msg(!memcmp(ref, got, nl * sizeof(float)),
					      "%s: %zu slots, %s, prefetch %d: output differs "
					      "(max %g)", name, budgets[b], cache_policy_name(pol[p]),
					      pf, max_abs_diff(ref, got, (int)nl));
				ck_assert_uint_gt(st.misses + st.prefetched_used, 0);
				ck_assert_uint_eq(eng_fast_steps(w.e), 0);
				printf("cuda exact %s: %zu/%d slots %s prefetch %d%s: identical; "
				       "hits %llu misses %llu loads %llu\n", name, budgets[b], all,
				       cache_policy_name(pol[p]), pf, fl ? " staged" : "",
				       (unsigned long long)st.hits, (unsigned long long)st.misses,
				       (unsigned long long)st.loads);
				close_world(&w);
			}
	free(ref);
	free(got);
	ref_free(&f);
}
END_TEST

/* device.host_threads on a bf16 model at a quarter of the experts: the
 * CPU computes half the decode steps' misses.  HF's logits (within the
 * fixtures' tolerance), routes and greedy tokens; then decode against
 * every expert resident: the same bits (the CPU adds as the GPU's kernels
 * do), with and without prefetch. */
START_TEST(host_experts)
{
	const char *name = ref_fixture_names[_i];
	struct ref_fixture f;
	struct world w;
	struct cache_stats st;

	float *ref, *got;
	size_t nl;
	int V, all;

	if (!ref_is_bf16(name))
		return;
	ref_load(name, &f);
	resident_ref(name, &f, &ref, &got, &nl, &V, &all);
	host_threads = 3;
	open_world(name, (size_t)all / 4, CACHE_LRU, 0, &w);
	for (int i = 0; i < f.n_cases; i++)
		check_case(&w, name, &f.cases[i]);
	cache_get_stats(w.c, -1, &st);
	ck_assert_uint_gt(st.host_runs, 0);
	printf("cuda host experts %s: fixtures match; %llu misses, %llu on the host\n", name,
	       (unsigned long long)st.misses, (unsigned long long)st.host_runs);
	close_world(&w);
	for (int pf = 0; pf < 2; pf++) {
		open_world(name, (size_t)all / 4, CACHE_LRU, 0, &w);
		run_seq(&w, &f.cases[3], pf, got);
		cache_get_stats(w.c, -1, &st);
		ck_assert_uint_gt(st.host_runs, 0);
		ck_assert_msg(!memcmp(ref, got, nl * sizeof(float)),
			      "%s: host experts differ from all resident (max %g)", name,
			      max_abs_diff(ref, got, (int)nl));
		printf("cuda host experts %s prefetch %d: identical to all resident; %llu misses, "
		       "%llu on the host\n", name, pf, (unsigned long long)st.misses,
		       (unsigned long long)st.host_runs);
		close_world(&w);
	}
	host_threads = 0;
	free(ref);
	free(got);
	ref_free(&f);
}
END_TEST

/* bf16 from f, by truncation (test data). */
static uint16_t to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return (uint16_t)(u >> 16);
}

/* The GPU's silu_mul (eng_cu_silu_mul) and engine/silu.h's on the CPU: the
 * same bits over [-100, 100] and at the edges. */
START_TEST(silu_bits)
{
	enum { N = 1 << 20 };
	float *gu = malloc(2 * N * sizeof(float)), *h = malloc(N * sizeof(float)), *dgu, *dh;
	static const float edge[] = {0.0f, -0.0f, 80.0f, -80.0f, 87.5f, -87.5f, 1e-30f, -1e-30f};
	size_t bad = 0;

	ck_assert_ptr_nonnull(gu);
	ck_assert_ptr_nonnull(h);
	for (int i = 0; i < N; i++) {
		gu[i] = i < 8 ? edge[i] : -100.0f + 200.0f * (float)i / N;
		gu[N + i] = 0.5f + (float)(i % 97) / 31.0f;
	}
	ck_assert_int_eq(cudaMalloc((void **)&dgu, 2 * N * sizeof(float)), 0);
	ck_assert_int_eq(cudaMalloc((void **)&dh, N * sizeof(float)), 0);
	cudaMemcpy(dgu, gu, 2 * N * sizeof(float), cudaMemcpyHostToDevice);
	ck_assert_int_eq(eng_cu_silu_mul(dh, dgu, 1, N, NULL), 0);
	ck_assert_int_eq(cudaMemcpy(h, dh, N * sizeof(float), cudaMemcpyDeviceToHost), 0);
	for (int i = 0; i < N; i++) {
		float c = silu_mul(gu[i], gu[N + i]);

		if (memcmp(&c, &h[i], sizeof(c)) && bad++ < 5)
			printf("silu_mul(%a, %a): GPU %a, CPU %a\n", (double)gu[i], (double)gu[N + i],
			       (double)h[i], (double)c);
	}
	ck_assert_msg(!bad, "%zu of %d silu_mul values differ", bad, N);
	printf("cuda silu_mul: %d values, the CPU's bits\n", N);
	cudaFree(dgu), cudaFree(dh);
	free(gu), free(h);
}
END_TEST

/* One bf16 expert for 1-4 rows through the GPU's expert kernels
 * (eng_cu_moe_gu, eng_cu_moe_down) and through engine/host_ffn's pool: the
 * same bits, with rows not a multiple of a warp's 256 elements. */
START_TEST(host_expert_bits)
{
	enum { H = 608, I = 296, M = HOST_FFN_ROWS };
	int m = _i + 1;
	size_t nw = (size_t)3 * I * H;
	uint16_t *w = malloc(nw * sizeof(uint16_t));
	static float x[M][H], y[M][H], eo[M][H];
	int hgrp[64];
	void *dw, *dgrp;
	float *dx, *dhb, *deo;
	uint32_t s = 777;
	volatile uint32_t done;
	struct host_ffn *p;

	ck_assert_ptr_nonnull(w);
	for (size_t i = 0; i < nw; i++) {
		s = s * 1103515245u + 12345u;
		w[i] = to_bf16(((float)(s >> 9) / (float)(1u << 23) - 0.5f) * 0.2f);
	}
	for (int t = 0; t < M; t++)
		for (int i = 0; i < H; i++)
			x[t][i] = sinf((float)(i * (t + 3))) * 1.5f;
	/* one expert (xid 0) taking rows 0 .. m - 1 */
	struct eng_cu_grp hg = eng_cu_grp_at(hgrp, 1, m), g;
	*hg.nact = 1, hg.xid[0] = 0, hg.start[0] = 0, hg.cnt[0] = m;
	for (int e = 0; e < m; e++)
		hg.row[e] = e, hg.wt[e] = 1.0f;
	ck_assert_int_eq(cudaMalloc(&dw, nw * sizeof(uint16_t)), 0);
	ck_assert_int_eq(cudaMalloc(&dgrp, eng_cu_grp_bytes(1, m)), 0);
	ck_assert_int_eq(cudaMalloc((void **)&dx, sizeof(x)), 0);
	ck_assert_int_eq(cudaMalloc((void **)&dhb, (size_t)M * I * sizeof(float)), 0);
	ck_assert_int_eq(cudaMalloc((void **)&deo, sizeof(eo)), 0);
	cudaMemcpy(dw, w, nw * sizeof(uint16_t), cudaMemcpyHostToDevice);
	cudaMemcpy(dgrp, hgrp, eng_cu_grp_bytes(1, m), cudaMemcpyHostToDevice);
	cudaMemcpy(dx, x, sizeof(x), cudaMemcpyHostToDevice);
	g = eng_cu_grp_at(dgrp, 1, m);
	ck_assert_int_eq(eng_cu_moe_gu(dhb, dx, H, I, g, NULL, dw, 1, 0, 1, m, ENG_CU_ALL, NULL), 0);
	ck_assert_int_eq(eng_cu_moe_down(deo, dhb, H, I, g, NULL, dw, 1, 0, 1, m, ENG_CU_ALL, NULL),
			 0);
	ck_assert_int_eq(cudaMemcpy(eo, deo, sizeof(eo), cudaMemcpyDeviceToHost), 0);

	const float *xr[M] = {x[0], x[1], x[2], x[3]};
	float *yr[M] = {y[0], y[1], y[2], y[3]};
	ck_assert_int_eq(host_ffn_open(3, H, I, &done, &p), 0);
	host_ffn_wait(p, host_ffn_submit(p, w, xr, m, yr));
	for (int t = 0; t < m; t++)
		for (int r = 0; r < H; r++)
			ck_assert_msg(!memcmp(&y[t][r], &eo[t][r], sizeof(float)),
				      "%s, %d rows: row %d out %d: CPU %a, GPU %a", host_ffn_isa(p, NULL),
				      m, t, r, (double)y[t][r], (double)eo[t][r]);
	printf("cuda host expert bits: %d rows, %s: the GPU kernels' bits\n", m,
	       host_ffn_isa(p, NULL));
	host_ffn_close(p);
	cudaFree(dw), cudaFree(dgrp), cudaFree(dx), cudaFree(dhb), cudaFree(deo);
	free(w);
}
END_TEST

/* A batched step equals each sequence's own step, bit for bit (the GEMV
 * path's sums do not depend on the row count), through the cache and the
 * fast way; prefill in one call equals token-by-token decode (bit for bit
 * up to ENG_CU_GEMV_MAX tokens, else within GEMM-shape rounding). */
START_TEST(batch_and_prefill)
{
	struct ref_fixture f;
	struct world w;
	struct eng_seq *a[4], *b[4], *d[4], *c1;
	float la[4 * 160], le[4 * 160], lb[160], lc[160], *eb;
	int next[4];

	ref_load("qwen3moe_f32_sharded", &f);
	open_graphs(_i, _i, &w);
	for (int i = 0; i < 4; i++) {
		struct ref_case *rc = &f.cases[i];

		ck_assert_int_eq(eng_seq_new(w.e, &a[i]), 0);
		ck_assert_int_eq(eng_seq_new(w.e, &b[i]), 0);
		ck_assert_int_eq(eng_seq_new(w.e, &d[i]), 0);
		ck_assert_int_eq(eng_seq_new(w.e, &c1), 0);
		ck_assert_int_eq(eng_forward(w.e, a[i], rc->prompt, rc->n_prompt, lb), 0);
		ck_assert_ptr_nonnull(eb = eng_logits_buffer(w.e));
		ck_assert_int_eq(eng_forward(w.e, d[i], rc->prompt, rc->n_prompt, eb), 0);
		ck_assert(!memcmp(lb, eb, sizeof(lb)));
		ck_assert_int_eq(eng_forward(w.e, b[i], rc->prompt, rc->n_prompt, lc), 0);
		ck_assert(!memcmp(lb, lc, sizeof(lb)));
		for (int j = 0; j < rc->n_prompt; j++)
			ck_assert_int_eq(eng_forward(w.e, c1, rc->prompt + j, 1, lc), 0);
		ck_assert_msg(max_abs_diff(lb, lc, 160) < 1e-4, "prefill vs decode %g",
			      max_abs_diff(lb, lc, 160));
		/* GEMV-sized prompts: the chunk's q/k prep in a launch of its own,
		 * decode's inside attention; the same bits. */
		if (rc->n_prompt <= ENG_CU_GEMV_MAX)
			ck_assert_msg(!memcmp(lb, lc, sizeof(lb)), "prefill of %d vs decode: max %g",
				      rc->n_prompt, max_abs_diff(lb, lc, 160));
		eng_seq_free(c1);
		next[i] = rc->greedy[0];
	}
	for (int step = 0; step < 3; step++) {
		/* The engine's own rows (pinned, no host copy) give the same. */
		ck_assert_int_eq(eng_step(w.e, d, next, 4, eb), 0);
		memcpy(le, eb, sizeof(le));
		/* A zero-copy graph step's rows come with the GPU's argmax
		 * (into the engine's rows or the caller's): eng_argmax's. */
		bool gb = _i && ld_env_on("MOED_CUDA_ZOUT", true) &&
			  ld_env_on("MOED_CUDA_ARGMAX", true);
		for (int i = 0; i < 4; i++)
			ck_assert_int_eq(eng_row_argmax(w.e, eb + i * 160),
					 gb ? eng_argmax(eb + i * 160, 160) : -1);
		ck_assert_int_eq(eng_step(w.e, a, next, 4, la), 0);
		ck_assert_msg(!memcmp(la, le, sizeof(la)), "engine rows vs own: max %g",
			      max_abs_diff(la, le, 4 * 160));
		for (int i = 0; i < 4; i++)
			ck_assert_int_eq(eng_row_argmax(w.e, la + i * 160),
					 gb ? eng_argmax(la + i * 160, 160) : -1);
		ck_assert_int_eq(eng_row_argmax(w.e, eb), -1);   /* an earlier call's */
		for (int i = 0; i < 4; i++) {
			ck_assert_int_eq(eng_forward(w.e, b[i], &next[i], 1, lb), 0);
			ck_assert_msg(!memcmp(la + i * 160, lb, sizeof(lb)), "step vs forward "
				      "(fast %d): max %g", _i, max_abs_diff(la + i * 160, lb, 160));
			ck_assert_int_eq(eng_argmax(lb, 160), f.cases[i].greedy[step + 1]);
			next[i] = eng_argmax(lb, 160);
		}
	}
	printf("cuda batch (fast %d): 3 steps of 4 rows = single steps, bit for bit; "
	       "%llu fast steps\n", _i, (unsigned long long)eng_fast_steps(w.e));
	if (_i)
		ck_assert_uint_gt(eng_fast_steps(w.e), 0);
	else
		ck_assert_uint_eq(eng_fast_steps(w.e), 0);
	for (int i = 0; i < 4; i++) {
		eng_seq_free(a[i]);
		eng_seq_free(b[i]);
		eng_seq_free(d[i]);
	}
	close_world(&w);
	ref_free(&f);
}
END_TEST

/* Routes of the row's own sequence (its user pointer), [layer][pos][k]. */
static void on_route_seq(void *ctx, void *seq_user, int layer, int pos, int token,
			 const int *experts, const float *w, int k)
{
	(void)ctx;
	on_route(seq_user, NULL, layer, pos, token, experts, w, k);
}

/* Greedy decode (the fast way chained on the GPU, or step by step without
 * graphs) gives the tokens and hooks' routes of eng_step and eng_argmax
 * step by step, and the reference's greedy tokens. */
START_TEST(greedy_chain)
{
	enum { S = 6 };
	struct ref_fixture f;
	struct world w;
	struct eng_seq *a[2], *b[2];
	struct routes ra[2], rb[2];
	float lb[2 * 160];
	int tok[2], out[S * 2], next[2];

	ref_load("qwen3moe_f32_sharded", &f);
	open_graphs(_i, true, &w);
	struct eng_hooks h = {.on_route = on_route_seq};
	const struct ld_config *c = &w.m->cfg;
	eng_set_hooks(w.e, &h);
	for (int i = 0; i < 2; i++) {
		struct ref_case *rc = &f.cases[i];
		struct routes *r[2] = {&ra[i], &rb[i]};
		struct eng_seq **s[2] = {&a[i], &b[i]};

		for (int j = 0; j < 2; j++) {
			*r[j] = (struct routes){.n_pos = rc->n_prompt + S, .k = c->top_k};
			r[j]->ids = calloc((size_t)c->n_moe_layers * r[j]->n_pos * c->top_k,
					   sizeof(int));
			ck_assert_int_eq(eng_seq_new(w.e, s[j]), 0);
			eng_seq_set_user(*s[j], r[j]);
			ck_assert_int_eq(eng_forward(w.e, *s[j], rc->prompt, rc->n_prompt, lb), 0);
		}
		tok[i] = next[i] = rc->greedy[0];
	}
	uint64_t fast0 = eng_fast_steps(w.e);
	ck_assert_int_eq(eng_greedy(w.e, a, 2, tok, S, out, NULL, NULL), 0);
	printf("cuda greedy (graphs %d): %llu fast steps for %d\n", _i,
	       (unsigned long long)(eng_fast_steps(w.e) - fast0), S);
	ck_assert_uint_eq(eng_fast_steps(w.e) - fast0, _i ? S : 0);
	for (int st = 0; st < S; st++) {
		ck_assert_int_eq(eng_step(w.e, b, next, 2, lb), 0);
		for (int i = 0; i < 2; i++) {
			next[i] = eng_argmax(lb + i * 160, 160);
			ck_assert_int_eq(out[st * 2 + i], next[i]);
			ck_assert_int_eq(out[st * 2 + i], f.cases[i].greedy[st + 1]);
		}
	}
	for (int i = 0; i < 2; i++) {
		size_t nr = (size_t)c->n_moe_layers * ra[i].n_pos * c->top_k;

		ck_assert_int_eq(eng_seq_len(a[i]), eng_seq_len(b[i]));
		ck_assert(!memcmp(ra[i].ids, rb[i].ids, nr * sizeof(int)));
		eng_seq_free(a[i]);
		eng_seq_free(b[i]);
		free(ra[i].ids);
		free(rb[i].ids);
	}
	eng_set_hooks(w.e, NULL);
	/* More rows than a fast step takes: stepped one at a time, not refused. */
	struct eng_seq *m[ENG_CU_GEMV_MAX + 1];
	int mt[ENG_CU_GEMV_MAX + 1], mo[2 * (ENG_CU_GEMV_MAX + 1)];
	for (int i = 0; i <= ENG_CU_GEMV_MAX; i++) {
		ck_assert_int_eq(eng_seq_new(w.e, &m[i]), 0);
		mt[i] = 1 + i;
	}
	ck_assert_int_eq(eng_greedy(w.e, m, ENG_CU_GEMV_MAX + 1, mt, 2, mo, NULL, NULL), 0);
	for (int i = 0; i <= ENG_CU_GEMV_MAX; i++) {
		ck_assert_int_eq(eng_seq_len(m[i]), 2);
		eng_seq_free(m[i]);
	}
	close_world(&w);
	ref_free(&f);
}
END_TEST

/* A batch of three 120-token prompts spans two chunks: the third prompt's
 * logits come from the second, into row 2.  Into the engine's rows (its
 * own pinned rows, copied to from the GPU row by row) and into the
 * caller's: the same bits, and rows 0 and 1 of the first chunk kept; each
 * prompt alone gives its row. */
START_TEST(logits_buffer_chunks)
{
	enum { S = 3, P = 120, V = 160 };
	struct world w;
	struct eng_seq *x[S], *y[S];
	static int tok[S][P];
	const int *tp[S] = {tok[0], tok[1], tok[2]};
	int nt[S] = {P, P, P};
	float own[S * V], mine[S * V], *eb;

	open_world("qwen3moe_f32_sharded", 0, CACHE_LRU, 0, &w);
	for (int s = 0; s < S; s++)
		for (int p = 0; p < P; p++)
			tok[s][p] = (7 * s + 13 * p + 1) % V;
	for (int s = 0; s < S; s++) {
		ck_assert_int_eq(eng_seq_new(w.e, &x[s]), 0);
		ck_assert_int_eq(eng_seq_new(w.e, &y[s]), 0);
	}
	ck_assert_ptr_nonnull(eb = eng_logits_buffer(w.e));
	memset(eb, 0xff, sizeof(mine));
	ck_assert_int_eq(eng_batch(w.e, x, tp, nt, S, eb), 0);
	memcpy(mine, eb, sizeof(mine));
	ck_assert_int_eq(eng_batch(w.e, y, tp, nt, S, own), 0);
	ck_assert_msg(!memcmp(mine, own, sizeof(own)), "engine rows vs own: max %g",
		      max_abs_diff(mine, own, S * V));
	/* Each prompt alone: its batch row within GEMM-shape rounding (the
	 * first chunk's tiled attention takes the two prompts' rows apart). */
	for (int s = 0; s < S; s++) {
		float lz[V];

		eng_seq_free(y[s]);
		ck_assert_int_eq(eng_seq_new(w.e, &y[s]), 0);
		ck_assert_int_eq(eng_forward(w.e, y[s], tok[s], P, lz), 0);
		ck_assert_msg(max_abs_diff(lz, own + s * V, V) < 1e-4, "prompt %d alone: max %g", s,
			      max_abs_diff(lz, own + s * V, V));
	}
	for (int s = 0; s < S; s++) {
		eng_seq_free(x[s]);
		eng_seq_free(y[s]);
	}
	close_world(&w);
}
END_TEST

/* Ten 120-token prompts (1200 rows) in one eng_batch: one call of three
 * chunks run layer by layer, with the bits of a chunk a call
 * (MOED_CUDA_CALL_CHUNKS=1), all resident and with slots for one layer's
 * experts, then a decode step over the caches they wrote; at the budget,
 * fewer loads than a chunk a call (whose next chunk finds the last layer's
 * experts where the first layer's were). */
static void long_call(const char *name, size_t slots, const char *chunks, float *out,
		      uint64_t *loads)
{
	enum { S = 10, P = 120 };
	struct world w;
	struct eng_seq *x[S];
	static int tok[S][P];
	const int *tp[S];
	int nt[S], next[S];
	struct cache_stats st;

	setenv("MOED_CUDA_CALL_CHUNKS", chunks, 1);
	open_world(name, slots, CACHE_LRU, 0, &w);
	unsetenv("MOED_CUDA_CALL_CHUNKS");
	int V = w.m->cfg.vocab_size;
	for (int s = 0; s < S; s++) {
		for (int p = 0; p < P; p++)
			tok[s][p] = (7 * s + 13 * p + 1) % V;
		tp[s] = tok[s], nt[s] = P, next[s] = s;
		ck_assert_int_eq(eng_seq_new(w.e, &x[s]), 0);
	}
	ck_assert_int_eq(eng_batch(w.e, x, tp, nt, S, out), 0);
	ck_assert_int_eq(eng_step(w.e, x, next, S, out + (size_t)S * V), 0);
	cache_get_stats(w.c, -1, &st);
	*loads = st.loads;
	for (int s = 0; s < S; s++)
		eng_seq_free(x[s]);
	close_world(&w);
}

START_TEST(layer_major)
{
	const char *name = ref_fixture_names[_i];
	struct ld_model *m;
	char dir[700];

	snprintf(dir, sizeof(dir), "%s/%s", getenv("MOED_FIXTURES"), name);
	ck_assert_msg(ld_model_open(dir, &m, err, sizeof(err)) == 0, "%s", err);
	size_t n = (size_t)20 * m->cfg.vocab_size, all = (size_t)m->cfg.n_moe_layers *
		   (size_t)m->cfg.n_experts, few = (size_t)m->cfg.n_experts;
	ld_model_close(m);
	float *ref = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
	uint64_t l1, l8, unused;

	long_call(name, 0, "1", ref, &unused);
	long_call(name, 0, "8", got, &unused);
	ck_assert_msg(!memcmp(ref, got, n * sizeof(float)), "%s: layer by layer differs "
		      "(max %g)", name, max_abs_diff(ref, got, (int)n));
	long_call(name, few, "1", got, &l1);
	ck_assert_msg(!memcmp(ref, got, n * sizeof(float)), "%s: a chunk a call at %zu slots "
		      "differs (max %g)", name, few, max_abs_diff(ref, got, (int)n));
	long_call(name, few, "8", got, &l8);
	ck_assert_msg(!memcmp(ref, got, n * sizeof(float)), "%s: layer by layer at %zu slots "
		      "differs (max %g)", name, few, max_abs_diff(ref, got, (int)n));
	printf("cuda layer_major %s: 1200 rows, same bits; at %zu/%zu slots loads %llu "
	       "(a chunk a call: %llu)\n", name, few, all, (unsigned long long)l8,
	       (unsigned long long)l1);
	ck_assert_uint_lt(l8, l1);
	free(ref);
	free(got);
}
END_TEST

/* acquire_ahead on a miss leaves the load unordered (1) until cache_order;
 * the weights then read on the compute stream are the store's. */
START_TEST(ahead_then_order)
{
	struct world w;
	const float *wp = NULL;

	open_world("mixtral_f32", 4, CACHE_LRU, 0, &w);
	size_t eb = ld_store_info(w.st)->expert_bytes;
	uint8_t *back = malloc(eb);
	ck_assert_int_eq(cache_order(w.c, 0, 1), -ENOENT);      /* not acquired */
	ck_assert_int_eq(cache_acquire_ahead(w.c, 0, 1, &wp), 1);
	ck_assert_ptr_nonnull(wp);
	ck_assert_int_eq(cache_order(w.c, 0, 1), 0);
	ck_assert_int_eq(cudaMemcpyAsync(back, wp, eb, cudaMemcpyDeviceToHost,
					 (cudaStream_t)w.be->dev_stream), cudaSuccess);
	ck_assert_int_eq(cudaStreamSynchronize((cudaStream_t)w.be->dev_stream), cudaSuccess);
	ck_assert(!memcmp(back, ld_store_expert(w.st, 0, 1), eb));
	cache_release(w.c, 0, 1);
	ck_assert_int_eq(cache_acquire_ahead(w.c, 0, 1, &wp), 0);   /* loaded: a plain hit */
	cache_release(w.c, 0, 1);
	free(back);
	close_world(&w);
}
END_TEST

/* A row with a NaN or infinite router logit (a model gone wrong) takes K
 * experts like any other, ids 0 .. K-1 as the CPU's route picks them, and
 * nothing is written past its K slots; the other rows route as usual.  All
 * three kernel paths: one row, a few rows (split ranks), more than 32. */
START_TEST(route_nan)
{
	enum { E = 64, K = 8, NMAX = 40, PAD = 64 };
	static const int ns[] = {1, 3, 16, NMAX};
	int n = ns[_i], entries = n * K;
	float hl[NMAX * E], *dl, *dw;
	int hid[NMAX * K + PAD], *did, nact, cnt[E], row[NMAX * K];
	void *gb;

	for (int t = 0; t < n; t++)
		for (int x = 0; x < E; x++)   /* distinct values, row t's best at 7 t % E */
			hl[t * E + x] = (float)((x - 7 * t % E + E) % E) * -0.125f;
	hl[0 * E + 5] = NAN;
	if (n > 2)
		hl[2 * E + 9] = INFINITY;
	ck_assert_int_eq(cudaMalloc((void **)&dl, sizeof(hl)), 0);
	ck_assert_int_eq(cudaMalloc((void **)&did, sizeof(hid)), 0);
	ck_assert_int_eq(cudaMalloc((void **)&dw, sizeof(hid)), 0);
	ck_assert_int_eq(cudaMalloc(&gb, eng_cu_grp_bytes(E, entries)), 0);
	struct eng_cu_grp g = eng_cu_grp_at(gb, E, entries), hg;
	cudaMemcpy(dl, hl, (size_t)n * E * sizeof(float), cudaMemcpyHostToDevice);
	cudaMemset(did, 0xff, sizeof(hid));
	ck_assert_int_eq(eng_cu_route(dl, did, dw, n, E, K, 1, g, 1, NULL, NULL), 0);
	ck_assert_int_eq(cudaMemcpy(hid, did, sizeof(hid), cudaMemcpyDeviceToHost), 0);
	hg = g;
	cudaMemcpy(&nact, hg.nact, sizeof(int), cudaMemcpyDeviceToHost);
	ck_assert(nact > 0 && nact <= E);
	cudaMemcpy(cnt, hg.cnt, (size_t)nact * sizeof(int), cudaMemcpyDeviceToHost);
	cudaMemcpy(row, hg.row, (size_t)entries * sizeof(int), cudaMemcpyDeviceToHost);
	for (int t = 0; t < n; t++)
		for (int k = 0; k < K; k++) {
			int bad = t == 0 || (t == 2 && n > 2);
			/* the finite rows' 8 best: 7 t .. 7 t + 7 (mod E), ascending */
			int want = bad ? k : 0, lo = 7 * t % E, at = 0;
			for (int x = 0; !bad && x < E; x++)
				if ((x - lo + E) % E < K && at++ == k)
					want = x;
			ck_assert_msg(hid[t * K + k] == want, "n %d row %d slot %d: %d, want %d", n,
				      t, k, hid[t * K + k], want);
		}
	for (int i = entries; i < entries + PAD; i++)
		ck_assert_int_eq(hid[i], -1);
	int total = 0;
	for (int j = 0; j < nact; j++)
		total += cnt[j];
	ck_assert_int_eq(total, entries);
	for (int i = 0; i < entries; i++)
		ck_assert(row[i] >= 0 && row[i] < n);
	cudaFree(dl), cudaFree(did), cudaFree(dw), cudaFree(gb);
}
END_TEST

/* override_route's probabilities, [layer][pos][E] as they reached it, and
 * its choice: the K least probable experts (not the router's). */
struct ovr {
	float *probs;
	int n_pos, norm;
};

static int override_low(void *ctx, void *user, int layer, int pos, int token, int *experts,
			float *w, int k, const float *probs, int n_experts)
{
	struct ovr *o = ctx;
	int chosen[32], E = n_experts;

	(void)user, (void)token;
	if (pos < o->n_pos)
		memcpy(o->probs + ((size_t)layer * o->n_pos + pos) * E, probs,
		       (size_t)E * sizeof(float));
	for (int i = 0; i < k; i++) {
		int lo = -1;
		for (int x = 0; x < E; x++) {
			bool taken = false;
			for (int j = 0; j < i; j++)
				taken |= chosen[j] == x;
			if (!taken && (lo < 0 || probs[x] < probs[lo]))
				lo = x;
		}
		chosen[i] = lo;
	}
	eng_route_set(chosen, k, probs, o->norm, experts, w);
	return 1;
}

/* The config of the model in dir (opened and closed again). */
static struct ld_config model_cfg(const char *dir)
{
	struct ld_model *m;

	ck_assert_msg(ld_model_open(dir, &m, err, sizeof(err)) == 0, "%s", err);
	struct ld_config c = m->cfg;
	ld_model_close(m);
	return c;
}

/* Decode steps with override_route: the router's probabilities written
 * zero-copy and watched for (the default) are those copied back after it
 * (MOED_CUDA_ZOUT=0), and so are the logits, bit for bit; each row of them
 * sums to 1.  Case 3 and STEPS greedy steps at half the slots. */
START_TEST(override_probs)
{
	const char *name = ref_fixture_names[_i];
	struct ref_fixture f;

	ref_load(name, &f);
	struct ld_config c = model_cfg(f.dir);
	int V = c.vocab_size, E = c.n_experts, L = c.n_moe_layers;
	size_t nl = (size_t)(STEPS + 1) * V, np = (size_t)L * (STEPS + 64) * E;
	float *out[2] = {malloc(nl * sizeof(float)), malloc(nl * sizeof(float))};
	struct ovr o[2];
	struct world w;

	for (int z = 0; z < 2; z++) {
		o[z] = (struct ovr){.probs = calloc(np, sizeof(float)), .n_pos = STEPS + 64,
				    .norm = c.norm_topk_prob};
		struct eng_hooks h = {.override_route = override_low, .ctx = &o[z]};

		if (!z)
			setenv("MOED_CUDA_ZOUT", "0", 1);
		open_world(name, (size_t)(L * E) / 2, CACHE_LRU, 0, &w);
		unsetenv("MOED_CUDA_ZOUT");
		decode_seq(&w, &f.cases[3], &h, out[z]);
		close_world(&w);
	}
	ck_assert_msg(!memcmp(o[0].probs, o[1].probs, np * sizeof(float)),
		      "%s: zero-copy probabilities differ from copied ones", name);
	ck_assert_msg(!memcmp(out[0], out[1], nl * sizeof(float)), "%s: logits differ (max %g)",
		      name, max_abs_diff(out[0], out[1], (int)nl));
	int rows = 0;
	for (size_t r = 0; r < np / E; r++) {
		double sum = 0;
		for (int x = 0; x < E; x++)
			sum += o[0].probs[r * E + x];
		if (sum == 0)
			continue;   /* a position past the sequence */
		ck_assert_msg(fabs(sum - 1) < 1e-5, "%s: probabilities sum to %g", name, sum);
		rows++;
	}
	ck_assert_int_gt(rows, L * STEPS);
	printf("cuda override %s: %d rows of probabilities, zero-copy = copied, logits "
	       "identical\n", name, rows);
	for (int z = 0; z < 2; z++)
		free(o[z].probs), free(out[z]);
	ref_free(&f);
}
END_TEST

/* A model past the CUDA kernels' limits is refused at open (-EINVAL, with a
 * line saying which limit), not run. */
START_TEST(limits)
{
	struct world w;
	struct eng *e2 = NULL;

	open_world("mixtral_f32", 0, CACHE_LRU, 0, &w);
	struct ld_expert_src src = cache_expert_src(w.c);
	struct ld_config keep = w.m->cfg;
	w.m->cfg.head_dim = 1024;
	ck_assert_int_eq(eng_open(w.m, &src, 128, &e2), -EINVAL);
	ck_assert_ptr_null(e2);
	w.m->cfg = keep;
	w.m->cfg.top_k = 33;
	w.m->cfg.n_experts = 64;
	ck_assert_int_eq(eng_open(w.m, &src, 128, &e2), -EINVAL);
	w.m->cfg = keep;
	close_world(&w);
	/* The experts' weights go to g.wp for at most ENG_CU_WP_MAX experts:
	 * 32 rows of more are refused before a launch. */
	const void *tab[1] = {NULL};
	struct eng_cu_grp g = {.wp = (const void **)tab};
	ck_assert_int_eq(eng_cu_route(NULL, NULL, NULL, 32, ENG_CU_WP_MAX + 4, 8, 0, g, 1, tab,
				      NULL), cudaErrorInvalidValue);
}
END_TEST

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

int main(void)
{
	struct ld_backend *be;
	const char *t = getenv("TMPDIR");
	int rc = ld_backend_open("cuda", &be, err, sizeof(err)), failed;

	if (rc == -ENODEV) {
		printf("skipped: no CUDA device (%s)\n", err);
		return 77;
	}
	if (rc) {
		printf("cuda backend: %s\n", err);
		return 1;
	}
	ld_backend_close(be);
	snprintf(tmpdir, sizeof(tmpdir), "%s/moed-cuda-XXXXXX", t ? t : "/tmp");
	if (!mkdtemp(tmpdir))
		return 1;
	Suite *s = suite_create("cuda");
	TCase *tc = tcase_create("gpu");
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, backend_direct);
	tcase_add_test(tc, backend_prefetch_queue);
	tcase_add_loop_test(tc, fixtures, 0, ref_n_fixtures);
	tcase_add_loop_test(tc, exact_every_budget, 0, ref_n_fixtures);
	tcase_add_test(tc, silu_bits);
	tcase_add_loop_test(tc, host_expert_bits, 0, HOST_FFN_ROWS);
	tcase_add_loop_test(tc, host_experts, 0, ref_n_fixtures);
	tcase_add_loop_test(tc, batch_and_prefill, 0, 2);
	tcase_add_loop_test(tc, greedy_chain, 0, 2);
	tcase_add_test(tc, limits);
	tcase_add_test(tc, logits_buffer_chunks);
	tcase_add_loop_test(tc, layer_major, 0, ref_n_fixtures);
	tcase_add_loop_test(tc, route_nan, 0, 4);
	tcase_add_test(tc, ahead_then_order);
	tcase_add_loop_test(tc, override_probs, 0, ref_n_fixtures);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	/* CUDA does not survive fork() after it is initialised. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_VERBOSE);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? 1 : 0;
}
#endif
