/* The expert cache's lifecycle (options checked, slots and the backend's
 * pool set up, torn down) and its names and sizes; the slots, policies and
 * loads: loader/cache.c. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/cache_int.h"
#include "loader/safetensors.h"
#include "loader/store.h"

size_t cache_slots_for_budget(double budget_mib, size_t expert_bytes)
{
	/* Slots are page-aligned in every backend, so count the stride. */
	size_t stride = (expert_bytes + 4095) / 4096 * 4096;
	double n = stride ? budget_mib * 1048576.0 / (double)stride : 0;

	return n >= 1 ? (size_t)n : 1;
}

static const char *const policy_names[] = {"fifo", "lru", "lfu", "lfuda", "belady"};
#define N_POLICIES (sizeof(policy_names) / sizeof(policy_names[0]))

int cache_policy_parse(const char *name, enum cache_policy *p)
{
	for (size_t i = 0; i < N_POLICIES; i++)
		if (!strcasecmp(name, policy_names[i])) {
			*p = (enum cache_policy)i;
			return 0;
		}
	return -EINVAL;
}

const char *cache_policy_name(enum cache_policy p)
{
	return (unsigned)p < N_POLICIES ? policy_names[p] : "?";
}

static int check_opts(const struct cache_opts *o)
{
	if (o->n_layers <= 0 || o->n_experts <= 0 || !o->expert_bytes || !o->n_slots ||
	    o->n_slots > INT32_MAX || (unsigned)o->policy > CACHE_BELADY ||
	    (o->policy == CACHE_BELADY && !o->next_use) || (!o->store != !o->backend))
		return -EINVAL;
	if (o->store) {
		const struct ld_store_info *in = ld_store_info(o->store);
		if (in->n_layers != o->n_layers || in->n_experts != o->n_experts ||
		    in->expert_bytes != o->expert_bytes)
			return -EINVAL;
	}
	return 0;
}

/* Pins the store's experts for the backend's copies, where it can (best
 * effort: it falls back to staging). */
static void register_store(struct cache *c)
{
	const struct cache_opts *o = &c->o;
	const uint8_t *first, *last;

	if (!o->backend->ops->host_register)
		return;
	first = ld_store_expert(o->store, 0, 0);
	last = ld_store_expert(o->store, o->n_layers - 1, o->n_experts - 1);
	o->backend->ops->host_register(o->backend, first,
				       (size_t)(last - first) + o->expert_bytes);
}

int cache_open(const struct cache_opts *o, struct cache **out)
{
	struct cache *c;
	size_t nk = (size_t)o->n_layers * (size_t)o->n_experts;
	int rc;

	*out = NULL;
	if ((rc = check_opts(o)))
		return rc;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->o = *o;
	c->sim = !o->backend;
	c->cur_layer = -1;
	pthread_mutex_init(&c->mu, NULL);
	c->slots = calloc(o->n_slots, sizeof(*c->slots));
	c->map = malloc(nk * sizeof(*c->map));
	c->verified = calloc(nk, 1);
	c->st = calloc((size_t)o->n_layers, sizeof(*c->st));
	if (!c->slots || !c->map || !c->verified || !c->st) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < nk; i++)
		c->map[i] = -1;
	for (size_t i = 0; i < o->n_slots; i++)
		c->slots[i].layer = c->slots[i].expert = -1;
	if (!c->sim) {
		unsigned caps = ld_backend_caps(o->backend);
		c->be_verify = !o->skip_verify && (caps & LD_BE_VERIFY);
		c->verified = memset(c->verified, o->skip_verify ? 1 : 0, nk);
		c->host_ptr = caps & LD_BE_HOST_PTR;
		c->dev_ptr = caps & LD_BE_DEV_PTR;
		/* A bf16 pack: only on a backend whose engine reads bf16 slots. */
		c->bf16 = ld_store_info(o->store)->dtype == LD_BF16;
		if (c->bf16 && !(caps & LD_BE_BF16_SLOTS)) {
			rc = -EINVAL;
			goto fail;
		}
		if ((rc = o->backend->ops->pool_alloc(o->backend, o->n_slots, o->expert_bytes)))
			goto fail;
		register_store(c);
	}
	*out = c;
	return 0;
fail:
	free(c->slots);
	free(c->map);
	free(c->verified);
	free(c->st);
	pthread_mutex_destroy(&c->mu);
	free(c);
	return rc;
}

void cache_close(struct cache *c)
{
	if (!c)
		return;
	if (!c->sim) {
		pthread_mutex_lock(&c->mu);
		for (size_t i = 0; i < c->o.n_slots; i++)
			if (c->slots[i].state == S_LOADING) {
				c->slots[i].use++;
				cache_wait_loaded(c, &c->slots[i], c->slots[i].layer);
			}
		pthread_mutex_unlock(&c->mu);
		c->o.backend->ops->pool_free(c->o.backend);
	}
	free(c->slots);
	free(c->map);
	free(c->verified);
	free(c->st);
	free(c->dtab);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
