/* All experts resident in RAM as f32. */
#include <errno.h>
#include <stdlib.h>

#include "loader/resident.h"

struct ld_resident {
	float *w;
	size_t per;
	int n_experts;
};

int ld_resident_open(const struct ld_model *m, struct ld_resident **out)
{
	const struct ld_config *c = &m->cfg;
	struct ld_resident *r = calloc(1, sizeof(*r));
	size_t n = (size_t)c->n_moe_layers * (size_t)c->n_experts;

	if (!r)
		return -ENOMEM;
	r->per = ld_expert_floats(c);
	r->n_experts = c->n_experts;
	if (!(r->w = malloc((n ? n : 1) * r->per * sizeof(float)))) {
		free(r);
		return -ENOMEM;
	}
	for (int l = 0; l < c->n_moe_layers; l++)
		for (int x = 0; x < c->n_experts; x++)
			ld_expert_copy(m, l, x,
				       r->w + ((size_t)l * c->n_experts + x) * r->per);
	*out = r;
	return 0;
}

void ld_resident_close(struct ld_resident *r)
{
	if (!r)
		return;
	free(r->w);
	free(r);
}

static int acquire(void *ctx, int layer, int expert, const float **w)
{
	struct ld_resident *r = ctx;

	*w = r->w + ((size_t)layer * r->n_experts + expert) * r->per;
	return 0;
}

struct ld_expert_src ld_resident_src(struct ld_resident *r)
{
	struct ld_expert_src s = {.acquire = acquire, .release = NULL, .ctx = r};

	return s;
}
