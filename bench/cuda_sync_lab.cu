// What a dependency between two steps of a decode costs: a kernel boundary
// (the next kernel launched with PDL, as the engine does, or plainly) against
// a barrier across one resident grid (a persistent kernel's).  Each step is
// a token of work (block b reads what block b + 1 wrote the step before and
// writes its own), so the time is the dependency's.  Prints us per step.
//   cuda_sync_lab
#include <stdio.h>
#include <stdlib.h>

#include "bench/graph_time.h"
#include "engine/cuda_common.cuh"

#define STEPS 112                  // 7 kernels per layer, 16 layers

int eng_cu_pdl = 1;

__device__ __forceinline__ void step_work(int *buf, int s, int G)
{
	if (!threadIdx.x)
		buf[s * G + blockIdx.x] = buf[(s - 1) * G + (blockIdx.x + 1) % G] + 1;
}

__global__ void k_step(int *buf, int s, int G)
{
	pdl_wait();
	pdl_launch();
	step_work(buf, s, G);
}

__device__ __forceinline__ unsigned ld_acquire(const unsigned *p)
{
	unsigned v;

	asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
	return v;
}

// Every block of the grid arrives before any leaves: bar[0] counts arrivals,
// bar[1] is the generation the last one to arrive moves on.
__device__ __forceinline__ void grid_barrier(unsigned *bar)
{
	__syncthreads();
	if (!threadIdx.x) {
		unsigned g = ld_acquire(bar + 1);

		__threadfence();
		if (atomicAdd(bar, 1u) == gridDim.x - 1) {
			bar[0] = 0;
			__threadfence();
			atomicAdd(bar + 1, 1u);
		} else
			while (ld_acquire(bar + 1) == g)
				;
	}
	__syncthreads();
}

__global__ void k_persist(int *buf, int G, unsigned *bar)
{
	for (int s = 1; s <= STEPS; s++) {
		step_work(buf, s, G);
		grid_barrier(bar);
	}
}

struct ctx {
	int *buf, G, pdl, persist;
	unsigned *bar;
	cudaStream_t st;
};

static int body(void *p, int i)
{
	struct ctx *c = (struct ctx *)p;

	if (c->persist) {
		k_persist<<<c->G, 256, 0, c->st>>>(c->buf, c->G, c->bar);
		return (int)cudaGetLastError();
	}
	eng_cu_pdl = c->pdl;
	return launch(k_step, c->G, 256, 0, c->st, c->buf, i % STEPS + 1, c->G);
}

int main(void)
{
	struct ctx c = {0};
	int G[] = {132, 264, 528};

	cudaStreamCreateWithFlags(&c.st, cudaStreamNonBlocking);
	cudaMalloc(&c.buf, (STEPS + 1) * 528 * sizeof(int));
	cudaMalloc(&c.bar, 2 * sizeof(unsigned));
	printf("us per dependent step (%d steps), by grid size\n", STEPS);
	for (int g = 0; g < 3; g++) {
		double us[3];

		c.G = G[g];
		for (int v = 0; v < 3; v++) {
			cudaMemset(c.buf, 0, (STEPS + 1) * 528 * sizeof(int));
			cudaMemset(c.bar, 0, 2 * sizeof(unsigned));
			c.persist = v == 2, c.pdl = v == 1;
			us[v] = bench_graph_us(c.st, v == 2 ? 4 : STEPS, body, &c);
			if (v == 2)
				us[v] /= STEPS;
			int last[528];
			cudaMemcpy(last, c.buf + STEPS * c.G, c.G * sizeof(int), cudaMemcpyDeviceToHost);
			for (int b = 0; b < c.G; b++)
				if (last[b] != STEPS) {
					printf("  wrong: grid %d variant %d block %d: %d\n", c.G, v, b,
					       last[b]);
					break;
				}
		}
		printf("grid %3d: kernels %.3f, kernels+PDL %.3f, grid barrier %.3f\n", c.G, us[0],
		       us[1], us[2]);
	}
	return 0;
}
