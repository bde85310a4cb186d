// Probe: host cost of the CUDA calls a budget layer makes (us per call, 400 calls, queued
// behind a long kernel so none waits on the GPU).
#include <cstdio>
#include <chrono>
#include <cuda_runtime.h>
__global__ void k_spin(long long ns) { long long t = clock64(); while (clock64() - t < ns) ; }
__global__ void k_nop(float *x) { if (threadIdx.x == 0 && x) x[0] += 1; }
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main()
{
	cudaStream_t s, c; cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); cudaStreamCreateWithFlags(&c, cudaStreamNonBlocking);
	const int N = 400;
	cudaEvent_t ev[N]; for (int i = 0; i < N; i++) cudaEventCreateWithFlags(&ev[i], cudaEventDisableTiming);
	float *d; cudaMalloc(&d, 1 << 20); void *h; cudaHostAlloc(&h, 1 << 20, 0);
	cudaLaunchAttribute at[1]; at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization; at[0].val.programmaticStreamSerializationAllowed = 1;
	cudaLaunchConfig_t cf = {}; cf.gridDim = dim3(132); cf.blockDim = dim3(256); cf.stream = s; cf.attrs = at; cf.numAttrs = 1;
	for (int rep = 0; rep < 2; rep++) {
		k_spin<<<1, 1, 0, s>>>(2000000000LL); k_spin<<<1, 1, 0, c>>>(2000000000LL);
		double t0 = now(); for (int i = 0; i < N; i++) cudaEventRecord(ev[i], s);
		double t1 = now(); for (int i = 0; i < N; i++) cudaStreamWaitEvent(c, ev[i], 0);
		double t2 = now(); for (int i = 0; i < N; i++) cudaMemcpyAsync(d, h, 512, cudaMemcpyHostToDevice, s);
		double t3 = now(); for (int i = 0; i < N; i++) k_nop<<<132, 256, 0, s>>>(d);
		double t4 = now(); for (int i = 0; i < N; i++) cudaLaunchKernelEx(&cf, k_nop, d);
		double t5 = now(); for (int i = 0; i < N; i++) cudaEventQuery(ev[i]);
		double t6 = now(); for (int i = 0; i < N; i++) cudaMemcpyAsync(d, h, 12 << 10, cudaMemcpyHostToDevice, c);
		double t7 = now(); for (int i = 0; i < N; i++) cudaSetDevice(0);
		double t8 = now();
		printf("us per call: eventRecord %.2f streamWaitEvent %.2f memcpyAsync512 %.2f launch %.2f launchEx(PDL) %.2f eventQuery %.2f memcpyAsync12K %.2f setDevice %.2f\n",
		       (t1 - t0) / N * 1e6, (t2 - t1) / N * 1e6, (t3 - t2) / N * 1e6, (t4 - t3) / N * 1e6, (t5 - t4) / N * 1e6, (t6 - t5) / N * 1e6, (t7 - t6) / N * 1e6, (t8 - t7) / N * 1e6);
		cudaDeviceSynchronize();
	}
	// round trip: a kernel writes a mapped host word; host sees it (us from launch)
	volatile int *f; cudaHostAlloc((void **)&f, 64, cudaHostAllocMapped);
	return 0;
}
