/* MOED_CUDA_PROFILE's copy timing for the CUDA backend (backend_cuda_prof.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "loader/backend_cuda_prof.h"

struct cu_prof {
	cudaEvent_t ev[CU_PROF_COPIES][2];
	size_t bytes;
	unsigned n;
};

int cu_prof_open(struct cu_prof **out)
{
	struct cu_prof *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p)
		return 0;
	for (unsigned i = 0; i < CU_PROF_COPIES; i++)
		for (int j = 0; j < 2; j++)
			if (cudaEventCreate(&p->ev[i][j]) != cudaSuccess) {
				cudaGetLastError();
				cu_prof_close(p);
				return -EIO;
			}
	*out = p;
	return 0;
}

bool cu_prof_room(const struct cu_prof *p)
{
	return p && p->n < CU_PROF_COPIES;
}

int cu_prof_begin(struct cu_prof *p, cudaStream_t s)
{
	return cudaEventRecord(p->ev[p->n][0], s) == cudaSuccess ? 0 : -EIO;
}

int cu_prof_end(struct cu_prof *p, cudaStream_t s, size_t bytes)
{
	if (cudaEventRecord(p->ev[p->n][1], s) != cudaSuccess)
		return -EIO;
	p->n++, p->bytes += bytes;
	return 0;
}

/* The copy stream's busy and idle time over the profiled copies. */
static void print(const struct cu_prof *p)
{
	double busy = 0, gap = 0;
	unsigned near = 0, mid = 0, far = 0;
	float ms;

	for (unsigned i = 0; i < p->n; i++) {
		if (cudaEventElapsedTime(&ms, p->ev[i][0], p->ev[i][1]) == cudaSuccess)
			busy += ms;
		if (!i || cudaEventElapsedTime(&ms, p->ev[i - 1][1], p->ev[i][0]) != cudaSuccess)
			continue;
		if (ms < 0.005f)
			near++;
		else if (ms < 1.0f)
			mid++, gap += ms;
		else
			far++;
	}
	cudaGetLastError();
	if (p->n)
		fprintf(stderr, "moed: cuda profile: %u expert copies, %.1f us each (%.1f GB/s); "
			"from one's end to the next's start: %u under 5 us, %u of 5 us to 1 ms "
			"(%.1f us on average), %u longer\n", p->n, busy / p->n * 1e3,
			busy > 0 ? (double)p->bytes / (busy * 1e6) : 0.0, near, mid,
			mid ? gap / mid * 1e3 : 0.0, far);
}

void cu_prof_close(struct cu_prof *p)
{
	if (!p)
		return;
	print(p);
	for (unsigned i = 0; i < CU_PROF_COPIES; i++)
		for (int j = 0; j < 2; j++)
			if (p->ev[i][j])
				cudaEventDestroy(p->ev[i][j]);
	free(p);
}
