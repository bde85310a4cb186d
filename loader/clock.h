/* Seconds on the monotonic clock, for intervals (timings, stalls, waits). */
#ifndef LD_CLOCK_H
#define LD_CLOCK_H

#include <time.h>

static inline double ld_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
