/* bench/graph_time.h */
#include "bench/graph_time.h"

double bench_graph_us(cudaStream_t st, int reps, int (*body)(void *ctx, int i), void *ctx)
{
	cudaGraph_t gr = NULL;
	cudaGraphExec_t gx = NULL;
	cudaEvent_t a, b;
	float ms = -1;
	int rc = 0;

	cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
	for (int i = 0; i < reps && !rc; i++)
		rc = body(ctx, i);
	if (cudaStreamEndCapture(st, &gr) != cudaSuccess || rc ||
	    cudaGraphInstantiate(&gx, gr, 0) != cudaSuccess) {
		if (gr)
			cudaGraphDestroy(gr);
		return -1;
	}
	cudaEventCreate(&a);
	cudaEventCreate(&b);
	cudaGraphLaunch(gx, st);
	cudaEventRecord(a, st);
	for (int i = 0; i < 3; i++)
		cudaGraphLaunch(gx, st);
	cudaEventRecord(b, st);
	if (cudaEventSynchronize(b) != cudaSuccess)
		ms = -1;
	else
		cudaEventElapsedTime(&ms, a, b);
	cudaEventDestroy(a);
	cudaEventDestroy(b);
	cudaGraphExecDestroy(gx);
	cudaGraphDestroy(gr);
	return ms < 0 ? -1 : ms * 1000.0 / (3 * reps);
}
