/* Runtime assembly: model -> pack store -> backend slots -> cache -> engine. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon/rt.h"
#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/store.h"

_Static_assert((int)CFG_POLICY_FIFO == CACHE_FIFO && (int)CFG_POLICY_LRU == CACHE_LRU &&
	       (int)CFG_POLICY_LFU == CACHE_LFU && (int)CFG_POLICY_LFUDA == CACHE_LFUDA,
	       "cache.policy values are enum cache_policy's");

static const char *backend_name(const struct moed_config *c)
{
	return cfg_enum_name("device.backend", (int)c->device.backend);
}

static struct ld_backend_conf backend_conf(const struct moed_config *c)
{
	return (struct ld_backend_conf){.index = c->device.index, .xclbin = c->device.xclbin,
					.kernel = c->device.kernel};
}

int rt_check(const struct moed_config *c, char *err, size_t n)
{
	struct ld_backend_conf bc = backend_conf(c);

	return ld_backend_check(backend_name(c), &bc, err, n);
}

size_t rt_slots_for(const struct moed_config *c, const struct ld_config *mc)
{
	size_t all = (size_t)mc->n_moe_layers * (size_t)mc->n_experts;
	size_t bytes = ld_expert_floats(mc) * sizeof(float), n;

	all = all ? all : 1;
	n = all;

	if (c->cache.slots > 0)
		n = (size_t)c->cache.slots;
	else if (c->cache.budget_mib > 0)
		n = cache_slots_for_budget(c->cache.budget_mib, bytes);
	return n < all ? n : all;
}

/* device.host_threads, -1 resolved: with the cuda backend, the CPUs this
 * process may run on less four (the worker's own threads, the predictor,
 * the HTTP loop), at most 12, and none where that is below 8: on the 16-vCPU H200 host
 * 8 threads computed an expert about as fast as the link copies one, 4
 * took twice as long (the GPU would wait for them), 12 was the best and 15
 * slowed the copies (bench/results/cuda_bench_s27.md, section 1). */
int rt_host_threads(const struct moed_config *c)
{
	cpu_set_t s;
	int n;

	if (c->device.backend != CFG_BACKEND_CUDA)
		return 0;
	if (c->device.host_threads >= 0)
		return c->device.host_threads;
	n = sched_getaffinity(0, sizeof(s), &s) ? (int)sysconf(_SC_NPROCESSORS_ONLN) :
						  CPU_COUNT(&s);
	n -= 4;
	return n < 8 ? 0 : n > 12 ? 12 : n;
}

static int open_cache(const struct moed_config *c, struct rt *rt, char *err, size_t n)
{
	const struct ld_config *mc = &rt->model->cfg;
	const struct ld_store_info *si = ld_store_info(rt->store);
	struct cache_opts o = {
		.n_layers = mc->n_moe_layers,
		.n_experts = mc->n_experts,
		.expert_bytes = si->expert_bytes,
		.policy = (enum cache_policy)c->cache.policy,
		.store = rt->store,
		.scan_resistant = c->cache.scan_resistant,
		.host_threads = rt_host_threads(c),
	};
	struct ld_backend_conf bc = backend_conf(c);
	int rv;

	rt->policy = (int)o.policy;
	rt->host_threads = o.host_threads;
	rt->n_slots = o.n_slots = rt_slots_for(c, mc);
	if ((rv = ld_backend_open_conf(backend_name(c), &bc, &rt->backend, err, n)) < 0)
		return rv;
	o.backend = rt->backend;
	if ((rv = cache_open(&o, &rt->cache)) < 0) {
		snprintf(err, n, "cache of %zu slots x %zu bytes on backend %s: %s",
			 o.n_slots, o.expert_bytes, backend_name(c), strerror(-rv));
		return rv;
	}
	/* Slots for every expert on a GPU: load them all now, so that decode
	 * steps run as CUDA graphs from the first request. */
	if ((ld_backend_caps(rt->backend) & LD_BE_DEV_PTR) &&
	    o.n_slots >= (size_t)o.n_layers * (size_t)o.n_experts &&
	    (rv = cache_load_all(rt->cache)) < 0) {
		cache_last_error(rt->cache, err, n);
		return rv;
	}
	return 0;
}

int rt_open(const struct moed_config *c, int max_ctx, struct rt *rt,
	    char *err, size_t n)
{
	struct ld_expert_src src;
	char pack[CFG_PATH_MAX];
	int rv, dt;

	memset(rt, 0, sizeof(*rt));
	if (!c->model.path[0]) {
		snprintf(err, n, "no model: set model.path (--model DIR)");
		return -EINVAL;
	}
	/* A backend that cannot work (no card, no xclbin) fails before packing. */
	if ((rv = rt_check(c, err, n)) < 0)
		return rv;
	if ((rv = ld_model_open(c->model.path, &rt->model, err, n)) < 0)
		return rv;
	if ((rv = cfg_pack_path(c, pack, sizeof(pack))) < 0) {
		snprintf(err, n, "model.pack: path too long");
		goto fail;
	}
	/* On the CUDA backend a bf16 checkpoint's experts stay bf16 in the pack
	 * and in the slots: half the PCIe and HBM bytes of f32. */
	dt = !strcmp(backend_name(c), "cuda") && rt->model->dtype == LD_BF16 ? LD_BF16 : LD_F32;
	if ((rv = ld_store_ensure_dtype(rt->model, pack, dt, &rt->store, err, n)) < 0)
		goto fail;
	if ((rv = open_cache(c, rt, err, n)) < 0)
		goto fail;
	src = cache_expert_src(rt->cache);
	if ((rv = eng_open(rt->model, &src, max_ctx, &rt->eng)) < 0) {
		snprintf(err, n, "engine: %s", strerror(-rv));
		goto fail;
	}
	return 0;
fail:
	rt_close(rt);
	return rv;
}

void rt_close(struct rt *rt)
{
	eng_close(rt->eng);
	cache_close(rt->cache);
	ld_backend_close(rt->backend);
	ld_store_close(rt->store);
	ld_model_close(rt->model);
	memset(rt, 0, sizeof(*rt));
}

int rt_want_per_layer(const struct moed_config *c, const struct ld_config *mc)
{
	int layers = mc->n_moe_layers ? mc->n_moe_layers : 1;
	int want = (int)(rt_slots_for(c, mc) / (size_t)layers);

	if (want < mc->top_k)
		want = mc->top_k;
	return want > mc->n_experts ? mc->n_experts : want;
}

json_t *rt_cache_stats_json(const struct cache_stats *c)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "hits",
			 (json_int_t)c->hits, "misses", (json_int_t)c->misses, "prefetched_used",
			 (json_int_t)c->prefetched_used, "prefetched_unused",
			 (json_int_t)c->prefetched_unused, "prefetched_late",
			 (json_int_t)c->prefetched_late, "prefetch_dropped",
			 (json_int_t)c->prefetch_dropped, "evictions", (json_int_t)c->evictions,
			 "loads", (json_int_t)c->loads, "bytes_loaded", (json_int_t)c->bytes_loaded,
			 "host_runs", (json_int_t)c->host_runs, "stall_seconds", c->stall_seconds);
}
