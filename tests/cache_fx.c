/* tests/cache_fx.h */
#include <check.h>

#include "tests/cache_fx.h"

uint64_t next_use_tab[8];

uint64_t next_use(void *ctx, int layer, int expert)
{
	ck_assert_ptr_eq(ctx, next_use_tab);
	ck_assert(layer >= 0 && layer < 2);
	return next_use_tab[expert];
}
