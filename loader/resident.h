/* Every expert converted to f32 and held in RAM: the expert source with no
 * cache at all.  The reference the cache's exactness is checked against. */
#ifndef LD_RESIDENT_H
#define LD_RESIDENT_H

#include "loader/expert.h"
#include "loader/model.h"

struct ld_resident;

int ld_resident_open(const struct ld_model *m, struct ld_resident **out);
void ld_resident_close(struct ld_resident *r);
struct ld_expert_src ld_resident_src(struct ld_resident *r);

#endif
