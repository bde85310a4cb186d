// Probe: host-to-GPU copy rate from a registered /dev/shm mapping (as the CUDA backend pins
// the store) with 1-4 copy streams at once, 12 MiB copies (an expert of the issue's shape)
// and 1 MiB pieces.  Aggregate GB/s over 768 MiB, best of three.
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1); } } while (0)

int main()
{
	size_t N = (size_t)2 << 30, T = (size_t)768 << 20;
	int fd = open("/dev/shm/copylab", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, N)) return 1;
	char *h = (char *)mmap(0, N, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	for (size_t i = 0; i < N; i += 4096) h[i] = (char)i;
	CK(cudaHostRegister(h, N, cudaHostRegisterReadOnly));
	char *d; CK(cudaMalloc(&d, N));
	cudaStream_t s[4];
	for (int i = 0; i < 4; i++) CK(cudaStreamCreateWithFlags(&s[i], cudaStreamNonBlocking));
	cudaEvent_t a, b[4]; CK(cudaEventCreate(&a));
	for (int i = 0; i < 4; i++) CK(cudaEventCreate(&b[i]));
	for (size_t sz : {(size_t)12 << 20, (size_t)1 << 20})
		for (int ns = 1; ns <= 4; ns++) {
			float best = 0;
			for (int k = 0; k < 3; k++) {
				CK(cudaDeviceSynchronize());
				CK(cudaEventRecord(a, s[0]));
				for (int i = 1; i < ns; i++) CK(cudaStreamWaitEvent(s[i], a, 0));
				size_t n = T / sz;
				for (size_t r = 0; r < n; r++) {
					size_t off = (r * 7919 % (N / sz - 1)) * sz;
					CK(cudaMemcpyAsync(d + off, h + off, sz, cudaMemcpyHostToDevice, s[r % ns]));
				}
				for (int i = 1; i < ns; i++) { CK(cudaEventRecord(b[i], s[i])); CK(cudaStreamWaitEvent(s[0], b[i], 0)); }
				CK(cudaEventRecord(b[0], s[0])); CK(cudaEventSynchronize(b[0]));
				float ms; CK(cudaEventElapsedTime(&ms, a, b[0]));
				float gb = (T / sz) * sz / (ms * 1e6); best = gb > best ? gb : best;
			}
			printf("%zu KiB copies, %d stream(s): %.2f GB/s\n", sz >> 10, ns, best);
		}
	int nce = 0; CK(cudaDeviceGetAttribute(&nce, cudaDevAttrAsyncEngineCount, 0));
	printf("async engines: %d\n", nce);
	unlink("/dev/shm/copylab");
	return 0;
}
