/* Runtime assembly: model -> store -> cache -> engine. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/rt.h"
#include "loader/resident.h"

int rt_open(const struct moed_config *c, int max_ctx, struct rt *rt,
	    char *err, size_t n)
{
	struct ld_expert_src src;
	int rv;

	memset(rt, 0, sizeof(*rt));
	if (!c->model.path[0]) {
		snprintf(err, n, "no model: set model.path (--model DIR)");
		return -EINVAL;
	}
	if ((rv = ld_model_open(c->model.path, &rt->model, err, n)) < 0)
		return rv;
	if ((rv = ld_resident_open(rt->model, &rt->res)) < 0) {
		snprintf(err, n, "%s: cannot hold the experts in memory: %s",
			 c->model.path, strerror(-rv));
		goto fail;
	}
	src = ld_resident_src(rt->res);
	rt->n_slots = (size_t)rt->model->cfg.n_moe_layers * rt->model->cfg.n_experts;
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
	ld_resident_close(rt->res);
	ld_model_close(rt->model);
	memset(rt, 0, sizeof(*rt));
}
