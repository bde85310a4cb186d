/* Switches and numbers from the environment (the MOED_CUDA_* diagnostics). */
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

/* name as a whole decimal number in [lo, hi]; unset, other text or out of
 * range: dflt. */
static inline long ld_env_long(const char *name, long lo, long hi, long dflt)
{
	const char *v = getenv(name);
	char *end;
	long k = v ? strtol(v, &end, 10) : 0;

	return v && end != v && !*end && k >= lo && k <= hi ? k : dflt;
}

#endif
