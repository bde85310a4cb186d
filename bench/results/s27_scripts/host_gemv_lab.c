/* Feasibility lab: how fast the host CPU runs a bf16 OLMoE expert (H 2048,
 * I 1024) for one row, T threads, with and without H2D copies running. */
#define _GNU_SOURCE
#include <cuda_runtime_api.h>
#include <fcntl.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define H 2048
#define I 1024
#define NX 64
#define EXB ((size_t)3 * I * H * 2)

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static inline __m512 cvt(__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); }
static float hsum(__m512 a) { return _mm512_reduce_add_ps(a); }

/* two rows at a time */
static void dot2(const uint16_t *r0, const uint16_t *r1, const float *x, int n, float *o0, float *o1)
{
	__m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
	for (int i = 0; i < n; i += 32) {
		__m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
		__m512i v = _mm512_loadu_si512(r0 + i), u = _mm512_loadu_si512(r1 + i);
		a0 = _mm512_fmadd_ps(cvt(_mm512_castsi512_si256(v)), x0, a0);
		a1 = _mm512_fmadd_ps(cvt(_mm512_extracti64x4_epi64(v, 1)), x1, a1);
		b0 = _mm512_fmadd_ps(cvt(_mm512_castsi512_si256(u)), x0, b0);
		b1 = _mm512_fmadd_ps(cvt(_mm512_extracti64x4_epi64(u, 1)), x1, b1);
	}
	*o0 = hsum(_mm512_add_ps(a0, a1));
	*o1 = hsum(_mm512_add_ps(b0, b1));
}

static int T;
static const uint16_t *W;
static float xin[H] __attribute__((aligned(64))), hmid[I] __attribute__((aligned(64))), yout[H];
static _Atomic int gen, bar, done, stop;
static volatile int cur;

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg, seen = 0;
	for (;;) {
		int g;
		while ((g = atomic_load(&gen)) == seen)
			if (atomic_load(&stop)) return NULL; else _mm_pause();
		seen = g;
		const uint16_t *w = W + (size_t)cur * (EXB / 2);
		int lo = I * id / T, hi = I * (id + 1) / T;
		for (int i = lo; i < hi; i++) {
			float gg, uu;
			dot2(w + (size_t)i * H, w + (size_t)(I + i) * H, xin, H, &gg, &uu);
			hmid[i] = gg / (1.0f + expf(-gg)) * uu;
		}
		int b = atomic_fetch_add(&bar, 1) + 1;
		int want = (b + T - 1) / T * T;
		while (atomic_load(&bar) < want) _mm_pause();
		const uint16_t *d = w + (size_t)2 * I * H;
		lo = (H / 2) * id / T * 2; hi = (H / 2) * (id + 1) / T * 2;
		for (int r = lo; r < hi; r += 2)
			dot2(d + (size_t)r * I, d + (size_t)(r + 1) * I, hmid, I, &yout[r], &yout[r + 1]);
		atomic_fetch_add(&done, 1);
	}
}

static _Atomic int copying;
static double cbytes, ctime_;
static void *copier(void *arg)
{
	(void)arg;
	void *dst; cudaStream_t s; cudaEvent_t e;
	cudaMalloc(&dst, EXB); cudaStreamCreate(&s); cudaEventCreate(&e);
	double t0 = now(); size_t n = 0; int k = 32;
	while (atomic_load(&copying)) {
		cudaMemcpyAsync(dst, (const char *)W + (size_t)k * EXB, EXB, cudaMemcpyHostToDevice, s);
		cudaStreamSynchronize(s); n++; k = k == NX - 1 ? 32 : k + 1;
	}
	ctime_ = now() - t0; cbytes = (double)n * EXB;
	return NULL;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/shm/lab_experts";
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	if (ftruncate(fd, NX * EXB)) return 1;
	uint16_t *m = mmap(NULL, NX * EXB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	for (size_t i = 0; i < NX * EXB / 2; i++) m[i] = (uint16_t)(0x3c00 + ((uint32_t)(i * 2654435761u) >> 27)) ^ (uint16_t)((i & 1) << 15); /* small bf16 values */
	W = m;
	int reg = cudaHostRegister(m, NX * EXB, cudaHostRegisterDefault) == cudaSuccess;
	printf("registered %d\n", reg);
	for (int i = 0; i < H; i++) xin[i] = sinf(i) * 0.01f;
	{ /* scalar reference of expert 0, row 0 of the output */
		static float hr[I]; double y0 = 0;
		for (int i = 0; i < I; i++) {
			double g = 0, u = 0;
			for (int k = 0; k < H; k++) {
				uint32_t a = (uint32_t)m[(size_t)i * H + k] << 16, b = (uint32_t)m[(size_t)(I + i) * H + k] << 16;
				float fa, fb; memcpy(&fa, &a, 4); memcpy(&fb, &b, 4);
				g += fa * xin[k]; u += fb * xin[k];
			}
			hr[i] = (float)(g / (1 + exp(-g)) * u);
		}
		for (int i = 0; i < I; i++) { uint32_t a = (uint32_t)m[(size_t)2 * I * H + i] << 16; float f; memcpy(&f, &a, 4); y0 += f * hr[i]; }
		printf("reference y0 of expert 0: %g\n", y0);
	}
	int ts[] = {1, 2, 4, 8, 12, 14, 15};
	for (int ti = 0; ti < 7; ti++) {
		T = ts[ti];
		atomic_store(&stop, 0); atomic_store(&gen, 0); atomic_store(&bar, 0);
		pthread_t th[16];
		for (int i = 0; i < T; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
		for (int withcopy = 0; withcopy < 2; withcopy++) {
			pthread_t ct;
			if (withcopy) { atomic_store(&copying, 1); pthread_create(&ct, NULL, copier, NULL); usleep(20000); }
			int reps = 96; cur = 0; atomic_store(&done, 0); atomic_fetch_add(&gen, 1); while (atomic_load(&done) < T) _mm_pause(); printf("T %d expert 0 y0 %g\n", T, yout[0]); double best = 1e9, sum = 0;
			for (int r = 0; r < reps; r++) {
				cur = r % 32;
				atomic_store(&done, 0);
				double t0 = now();
				atomic_fetch_add(&gen, 1);
				while (atomic_load(&done) < T) _mm_pause();
				double dt = now() - t0;
				sum += dt; best = dt < best ? dt : best;
			}
			if (withcopy) { atomic_store(&copying, 0); pthread_join(ct, NULL); }
			printf("T %2d copy %d: mean %.1f us best %.1f us (%.1f GB/s mean)  y0 %g  link %.2f GB/s\n", T, withcopy,
			       sum / reps * 1e6, best * 1e6, EXB / (sum / reps) / 1e9, yout[0], withcopy ? cbytes / ctime_ / 1e9 : 0.0);
			fflush(stdout);
		}
		atomic_store(&stop, 1);
		for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
	}
	unlink(path);
	return 0;
}
