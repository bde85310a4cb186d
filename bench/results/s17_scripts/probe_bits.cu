// Probe: do cublasGemmEx and cublasGemmBatchedEx (batch 1, 8, 64) give the
// same bits for one problem (bf16 x bf16 -> f32, W^T X as the engine calls it)?
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#define CK(x) do { cudaError_t e = (x); if (e) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1); } } while (0)
#define BK(x) do { cublasStatus_t e = (x); if (e) { printf("%s: %d\n", #x, (int)e); exit(1); } } while (0)

__global__ void k_rnd(__nv_bfloat16 *p, size_t n, unsigned seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		unsigned h = (unsigned)i * 2654435761u ^ seed;
		h ^= h >> 13, h *= 0x5bd1e995u, h ^= h >> 15;
		p[i] = __float2bfloat16(((int)(h % 20001u) - 10000) / 7777.0f);
	}
}

static void *rnd(size_t n)
{
	static unsigned seed = 1;
	void *p;
	CK(cudaMalloc(&p, n * 2));
	k_rnd<<<1024, 256>>>((__nv_bfloat16 *)p, n, seed++ * 0x9e3779b9u);
	return p;
}

int main()
{
	cublasHandle_t b;
	const float one = 1.0f, zero = 0.0f;
	int shapes[][2] = {{2048, 2048}, {2048, 1024}, {64, 32}, {128, 64}, {96, 64}};
	int ns[] = {3, 6, 24, 48, 51, 96, 144, 192, 195, 288, 384, 768, 1536, 3072};
	void **dev;
	int bad = 0, all = 0;

	BK(cublasCreate(&b));
	CK(cudaMalloc(&dev, 3 * 64 * sizeof(void *)));
	for (auto &s : shapes)
		for (int n : ns) {
			int out = s[0], in = s[1], bs[] = {1, 8, 64};
			std::vector<void *> w(64), x(64), y(64);
			for (int j = 0; j < 64; j++) {
				w[j] = rnd((size_t)out * in), x[j] = rnd((size_t)n * in);
				CK(cudaMalloc(&y[j], (size_t)out * n * 4));
			}
			size_t sz = (size_t)out * n;
			std::vector<float> ref(sz), got(sz);
			BK(cublasGemmEx(b, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w[3], CUDA_R_16BF, in, x[3],
					CUDA_R_16BF, in, &zero, y[3], CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
			CK(cudaMemcpy(ref.data(), y[3], sz * 4, cudaMemcpyDeviceToHost));
			printf("out %d in %d n %d:", out, in, n);
			for (int bc : bs) {
				int o = bc == 1 ? 3 : 0;
				std::vector<void *> h(3 * 64);
				for (int j = 0; j < bc; j++)
					h[j] = w[o + j], h[64 + j] = x[o + j], h[128 + j] = y[o + j];
				CK(cudaMemset(y[3], 0, sz * 4));
				CK(cudaMemcpy(dev, h.data(), 3 * 64 * sizeof(void *), cudaMemcpyHostToDevice));
				BK(cublasGemmBatchedEx(b, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, (const void *const *)dev,
						       CUDA_R_16BF, in, (const void *const *)(dev + 64), CUDA_R_16BF, in, &zero,
						       dev + 128, CUDA_R_32F, out, bc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
				CK(cudaMemcpy(got.data(), y[3], sz * 4, cudaMemcpyDeviceToHost));
				int same = !memcmp(ref.data(), got.data(), sz * 4);
				double md = 0;
				for (size_t i = 0; i < sz; i++) {
					double d = fabs(ref[i] - got[i]);
					md = d > md ? d : md;
				}
				printf("  b%d %s (%.3g)", bc, same ? "same" : "DIFF", md);
				bad += !same, all++;
			}
			printf("\n"); fflush(stdout);
			for (int j = 0; j < 64; j++)
				cudaFree(w[j]), cudaFree(x[j]), cudaFree(y[j]);
		}
	printf("%d of %d differ\n", bad, all);
	return 0;
}
