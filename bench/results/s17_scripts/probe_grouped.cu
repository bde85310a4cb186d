// Probe: a prefill chunk's experts one cublasGemmEx at a time against one
// cublasGemmGroupedBatchedEx, bf16 x bf16 -> f32, the split3 layout (3m rows).
// Prints us per layer (gate/up + down of E experts) and whether bits agree.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#define CK(x) do { cudaError_t e = (x); if (e) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1); } } while (0)
#define BK(x) do { cublasStatus_t e = (x); if (e) { printf("%s: %d\n", #x, (int)e); exit(1); } } while (0)

static const int H = 2048, I = 1024, E = 64;

struct layer {
	std::vector<int> m;            // rows (3 * entries) of each expert
	std::vector<void *> w, xg, yg, xd, yd;
};

static void fill(void *p, size_t n)
{
	std::vector<__nv_bfloat16> h(n);
	for (size_t i = 0; i < n; i++)
		h[i] = __float2bfloat16((float)((rand() % 2001) - 1000) / 1000.0f);
	CK(cudaMemcpy(p, h.data(), n * 2, cudaMemcpyHostToDevice));
}

static void loop(cublasHandle_t b, layer &L, int first, int n)
{
	const float one = 1.0f, zero = 0.0f;
	for (int j = first; j < first + n; j++) {
		BK(cublasGemmEx(b, CUBLAS_OP_T, CUBLAS_OP_N, 2 * I, L.m[j], H, &one, L.w[j], CUDA_R_16BF, H,
				L.xg[j], CUDA_R_16BF, H, &zero, L.yg[j], CUDA_R_32F, 2 * I, CUBLAS_COMPUTE_32F,
				CUBLAS_GEMM_DEFAULT));
		const void *down = (const char *)L.w[j] + (size_t)2 * I * H * 2;
		BK(cublasGemmEx(b, CUBLAS_OP_T, CUBLAS_OP_N, H, L.m[j], I, &one, down, CUDA_R_16BF, I,
				L.xd[j], CUDA_R_16BF, I, &zero, L.yd[j], CUDA_R_32F, H, CUBLAS_COMPUTE_32F,
				CUBLAS_GEMM_DEFAULT));
	}
}

// dev: device pointer arrays, 6 * E
static void grouped(cublasHandle_t b, layer &L, int first, int n, void **dev)
{
	std::vector<cublasOperation_t> ta(n, CUBLAS_OP_T), tb(n, CUBLAS_OP_N);
	std::vector<int> mm(n), nn(n), kk(n), lda(n), ldb(n), ldc(n), gs(n, 1);
	std::vector<float> al(n, 1.0f), be(n, 0.0f);
	std::vector<void *> h(6 * n);
	for (int j = 0; j < n; j++) {
		h[j] = L.w[first + j], h[n + j] = L.xg[first + j], h[2 * n + j] = L.yg[first + j];
		h[3 * n + j] = (char *)L.w[first + j] + (size_t)2 * I * H * 2;
		h[4 * n + j] = L.xd[first + j], h[5 * n + j] = L.yd[first + j];
	}
	CK(cudaMemcpyAsync(dev, h.data(), 6 * n * sizeof(void *), cudaMemcpyHostToDevice, 0));
	for (int j = 0; j < n; j++)
		mm[j] = 2 * I, nn[j] = L.m[first + j], kk[j] = H, lda[j] = H, ldb[j] = H, ldc[j] = 2 * I;
	BK(cublasGemmGroupedBatchedEx(b, ta.data(), tb.data(), mm.data(), nn.data(), kk.data(), al.data(),
				      (const void *const *)dev, CUDA_R_16BF, lda.data(),
				      (const void *const *)(dev + n), CUDA_R_16BF, ldb.data(), be.data(),
				      dev + 2 * n, CUDA_R_32F, ldc.data(), n, gs.data(), CUBLAS_COMPUTE_32F));
	for (int j = 0; j < n; j++)
		mm[j] = H, kk[j] = I, lda[j] = I, ldb[j] = I, ldc[j] = H;
	BK(cublasGemmGroupedBatchedEx(b, ta.data(), tb.data(), mm.data(), nn.data(), kk.data(), al.data(),
				      (const void *const *)(dev + 3 * n), CUDA_R_16BF, lda.data(),
				      (const void *const *)(dev + 4 * n), CUDA_R_16BF, ldb.data(), be.data(),
				      dev + 5 * n, CUDA_R_32F, ldc.data(), n, gs.data(), CUBLAS_COMPUTE_32F));
}

// every expert at the largest m (buffers are sized for it): one batched call each
static void batched(cublasHandle_t b, layer &L, void **dev)
{
	const float one = 1.0f, zero = 0.0f;
	int mx = 0;
	std::vector<void *> h(6 * E);
	for (int j = 0; j < E; j++) {
		h[j] = L.w[j], h[E + j] = L.xg[j], h[2 * E + j] = L.yg[j];
		h[3 * E + j] = (char *)L.w[j] + (size_t)2 * I * H * 2, h[4 * E + j] = L.xd[j], h[5 * E + j] = L.yd[j];
		mx = L.m[j] > mx ? L.m[j] : mx;
	}
	CK(cudaMemcpyAsync(dev, h.data(), 6 * E * sizeof(void *), cudaMemcpyHostToDevice, 0));
	BK(cublasGemmBatchedEx(b, CUBLAS_OP_T, CUBLAS_OP_N, 2 * I, mx, H, &one, (const void *const *)dev, CUDA_R_16BF, H,
			       (const void *const *)(dev + E), CUDA_R_16BF, H, &zero, dev + 2 * E, CUDA_R_32F, 2 * I, E,
			       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	BK(cublasGemmBatchedEx(b, CUBLAS_OP_T, CUBLAS_OP_N, H, mx, I, &one, (const void *const *)(dev + 3 * E), CUDA_R_16BF, I,
			       (const void *const *)(dev + 4 * E), CUDA_R_16BF, I, &zero, dev + 5 * E, CUDA_R_32F, H, E,
			       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void snap(layer &L, std::vector<float> &out)
{
	out.clear();
	for (int j = 0; j < E; j++) {
		size_t a = (size_t)L.m[j] * 2 * I, d = (size_t)L.m[j] * H, o = out.size();
		out.resize(o + a + d);
		CK(cudaMemcpy(out.data() + o, L.yg[j], a * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(out.data() + o + a, L.yd[j], d * 4, cudaMemcpyDeviceToHost));
	}
}

int main(int argc, char **argv)
{
	int rows = argc > 1 ? atoi(argv[1]) : 512, skew = argc > 2 ? atoi(argv[2]) : 0;
	cublasHandle_t b;
	cudaEvent_t e0, e1;
	layer L;
	void **dev;

	srand(1);
	BK(cublasCreate(&b));
	CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
	CK(cudaMalloc(&dev, 6 * E * sizeof(void *)));
	// entries per expert: rows * 8 over 64, even or skewed (zipf-like)
	std::vector<double> p(E);
	double s = 0;
	for (int j = 0; j < E; j++)
		s += p[j] = skew ? 1.0 / (j + 1) : 1.0;
	int total = rows * 8, left = total;
	for (int j = 0; j < E; j++) {
		int c = j == E - 1 ? left : (int)(total * p[j] / s);
		c = c < 1 ? 1 : c, left -= c;
		L.m.push_back(3 * c);
	}
	int mxm = 0;
	for (int j = 0; j < E; j++) mxm = L.m[j] > mxm ? L.m[j] : mxm;
	for (int j = 0; j < E; j++) {
		void *q;
		CK(cudaMalloc(&q, (size_t)3 * I * H * 2)); fill(q, (size_t)3 * I * H); L.w.push_back(q);
		CK(cudaMalloc(&q, (size_t)mxm * H * 2)); fill(q, (size_t)mxm * H); L.xg.push_back(q);
		CK(cudaMalloc(&q, (size_t)mxm * 2 * I * 4)); L.yg.push_back(q);
		CK(cudaMalloc(&q, (size_t)mxm * I * 2)); fill(q, (size_t)mxm * I); L.xd.push_back(q);
		CK(cudaMalloc(&q, (size_t)mxm * H * 4)); L.yd.push_back(q);
	}
	std::vector<float> a;
	loop(b, L, 0, E); CK(cudaDeviceSynchronize()); snap(L, a);
	printf("rows %d skew %d: m range %d..%d\n", rows, skew, L.m[E - 1], L.m[0]);
	for (int rep = 0; rep < 2; rep++) {
		float tl, tg;
		CK(cudaEventRecord(e0)); for (int r = 0; r < 20; r++) loop(b, L, 0, E);
		CK(cudaEventRecord(e1)); CK(cudaEventSynchronize(e1)); CK(cudaEventElapsedTime(&tl, e0, e1));
		CK(cudaEventRecord(e0)); for (int r = 0; r < 20; r++) batched(b, L, dev);
		CK(cudaEventRecord(e1)); CK(cudaEventSynchronize(e1)); CK(cudaEventElapsedTime(&tg, e0, e1));
		double fl = 0; int mx = 0;
		for (int j = 0; j < E; j++) fl += 2.0 * L.m[j] * 3.0 * I * H, mx = L.m[j] > mx ? L.m[j] : mx;
		printf("  us a layer: loop %.1f (%.0f TFLOPS), batched at max m %.1f (%.0f TFLOPS of padded work)\n",
		       tl * 50, fl / (tl * 50e-6) / 1e12, tg * 50, 2.0 * mx * E * 3.0 * I * H / (tg * 50e-6) / 1e12);
	}
	return 0;
}
