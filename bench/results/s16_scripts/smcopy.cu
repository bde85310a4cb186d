// Probe: host-to-GPU copy by SMs reading registered (pinned) host memory vs the copy engine.
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1); } } while (0)

template <int U>
__global__ void k_copy(uint4 *__restrict__ dst, const uint4 *__restrict__ src, size_t n)
{
	size_t stride = (size_t)gridDim.x * blockDim.x;
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	for (; i + (U - 1) * stride < n; i += U * stride) {
		uint4 v[U];
#pragma unroll
		for (int u = 0; u < U; u++) v[u] = __ldcs(src + i + u * stride);
#pragma unroll
		for (int u = 0; u < U; u++) __stcs(dst + i + u * stride, v[u]);
	}
	for (; i < n; i += stride) dst[i] = src[i];
}

int main()
{
	size_t N = (size_t)2 << 30, X = (size_t)12 << 20;
	int fd = open("/dev/shm/smcopy", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, N)) return 1;
	char *h = (char *)mmap(0, N, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	for (size_t i = 0; i < N; i += 4096) h[i] = (char)i;
	CK(cudaHostRegister(h, N, cudaHostRegisterMapped));
	void *hd; CK(cudaHostGetDevicePointer(&hd, h, 0));
	char *d; CK(cudaMalloc(&d, N));
	cudaStream_t s, s2; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
	cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
	int reps = 64; // 64 x 12 MiB = 768 MiB per measure, different sources
	float ms;
	auto dma = [&](size_t sz) {
		cudaEventRecord(a, s);
		for (int r = 0; r < reps; r++) cudaMemcpyAsync(d + r * sz % (N - sz), h + (r * 7919 % 150) * sz % (N - sz), sz, cudaMemcpyHostToDevice, s);
		cudaEventRecord(b, s); cudaEventSynchronize(b); cudaEventElapsedTime(&ms, a, b);
		return reps * sz / (ms * 1e6);
	};
	printf("dma 12MiB: %.1f %.1f GB/s\n", dma(X), dma(X));
	printf("dma 4MiB: %.1f GB/s\n", dma(4 << 20));
	int bl[] = {16, 32, 48, 66, 132, 264, 528};
	int th[] = {256, 512, 1024};
	for (int t : th) for (int g : bl) for (int u : {1, 4, 8}) {
		float best = 0;
		for (int k = 0; k < 2; k++) {
			cudaEventRecord(a, s);
			for (int r = 0; r < reps; r++) {
				const uint4 *src = (const uint4 *)((char *)hd + (r * 7919 % 150) * X % (N - X));
				uint4 *dst = (uint4 *)(d + r * X % (N - X));
				if (u == 1) k_copy<1><<<g, t, 0, s>>>(dst, src, X / 16);
				else if (u == 4) k_copy<4><<<g, t, 0, s>>>(dst, src, X / 16);
				else k_copy<8><<<g, t, 0, s>>>(dst, src, X / 16);
			}
			cudaEventRecord(b, s); CK(cudaEventSynchronize(b)); cudaEventElapsedTime(&ms, a, b);
			float gb = reps * X / (ms * 1e6); best = gb > best ? gb : best;
		}
		printf("sm blocks %d threads %d unroll %d: %.1f GB/s (%.1f us per 12 MiB)\n", g, t, u, best, X / (best * 1e3));
	}
	// one 12 MiB copy alone: latency from launch to done
	for (int k = 0; k < 3; k++) {
		cudaEventRecord(a, s);
		k_copy<4><<<132, 1024, 0, s>>>((uint4 *)d, (const uint4 *)hd, X / 16);
		cudaEventRecord(b, s); cudaEventSynchronize(b); cudaEventElapsedTime(&ms, a, b);
		printf("single sm 12MiB: %.1f us\n", ms * 1e3);
		cudaEventRecord(a, s);
		cudaMemcpyAsync(d, h + X, X, cudaMemcpyHostToDevice, s);
		cudaEventRecord(b, s); cudaEventSynchronize(b); cudaEventElapsedTime(&ms, a, b);
		printf("single dma 12MiB: %.1f us\n", ms * 1e3);
	}
	// concurrent: dma on s2, sm on s
	cudaEventRecord(a, s); cudaStreamWaitEvent(s2, a, 0);
	for (int r = 0; r < reps; r++) {
		k_copy<4><<<66, 1024, 0, s>>>((uint4 *)d, (const uint4 *)((char *)hd + (r % 50) * X), X / 16);
		cudaMemcpyAsync(d + N / 2, h + (size_t)(r % 50 + 60) * X, X, cudaMemcpyHostToDevice, s2);
	}
	cudaEventRecord(b, s2); cudaStreamWaitEvent(s, b, 0); cudaEventRecord(b, s); cudaEventSynchronize(b); cudaEventElapsedTime(&ms, a, b);
	printf("sm(66x1024)+dma concurrent: %.1f GB/s aggregate\n", 2.0 * reps * X / (ms * 1e6));
	unlink("/dev/shm/smcopy");
	return 0;
}
