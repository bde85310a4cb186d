/* On/off switches from the environment (the MOED_CUDA_* diagnostics). */
#ifndef LD_ENV_H
#define LD_ENV_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* name set to anything but "0": on; unset: dflt. */
static inline bool ld_env_on(const char *name, bool dflt)
{
	const char *v = getenv(name);

	return v ? strcmp(v, "0") != 0 : dflt;
}

#endif
