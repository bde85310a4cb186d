/* Shared by the cache tests (tests/cache_fx.c): Belady's oracle of next
 * uses, read from a table the test fills. */
#ifndef TESTS_CACHE_FX_H
#define TESTS_CACHE_FX_H

#include <stdint.h>

/* next_use_tab[expert] for any layer < 2; ctx must be next_use_tab. */
extern uint64_t next_use_tab[8];
uint64_t next_use(void *ctx, int layer, int expert);

#endif
