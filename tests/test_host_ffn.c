/* engine/host_ffn: the CPU's bf16 experts against the GPU kernels'
 * arithmetic (a warp's order of fused multiply-adds and butterfly,
 * engine/silu.h's SiLU) bit for bit, and against a double-precision
 * reference, for every row count, several thread counts, every kernel this
 * CPU runs and more jobs than the queue holds (its slots reused); the done
 * counter in job order; silu_exp against exp. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/host_ffn.h"
#include "engine/silu.h"
#include "suite_run.h"

/* Two whole steps of a warp (256 elements) and 12 lanes of a third; one
 * and 5: the vectors' masked tails run too. */
#define H 608
#define I 296
#define NX 5
#define JOBS (HOST_FFN_QUEUE * 2 + 7)

static uint16_t W[NX][3 * I * H];
static float X[HOST_FFN_ROWS][H];
/* each (expert, input row)'s output: the GPU's arithmetic; in double */
static float G[NX][HOST_FFN_ROWS][H];
static double D[NX][HOST_FFN_ROWS][H];

static float bf(uint16_t v)
{
	uint32_t u = (uint32_t)v << 16;
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* w . x over n as a warp of engine/cuda_gemv.cuh adds it: lane l's chunks
 * l, l + 32, ... of 8, then lane l += lane l ^ o for o = 16 .. 1. */
static float warp_dot(const uint16_t *w, const float *x, int n)
{
	float a[32] = {0}, b[32];

	for (int l = 0; l < 32; l++)
		for (int c = 8 * l; c < n; c += 256)
			for (int j = 0; j < 8; j++)
				a[l] = fmaf(bf(w[c + j]), x[c + j], a[l]);
	for (int o = 16; o > 0; o >>= 1) {
		for (int l = 0; l < 32; l++)
			b[l] = a[l] + a[l ^ o];
		memcpy(a, b, sizeof(a));
	}
	return a[0];
}

static void gpu_ref(const uint16_t *w, const float *x, float *y)
{
	float mid[I];

	for (int i = 0; i < I; i++)
		mid[i] = silu_mul(warp_dot(w + (size_t)i * H, x, H),
				  warp_dot(w + (size_t)(I + i) * H, x, H));
	for (int r = 0; r < H; r++)
		y[r] = warp_dot(w + (size_t)2 * I * H + (size_t)r * I, mid, I);
}

static void fill(void)
{
	uint32_t s = 12345;

	for (int x = 0; x < NX; x++)
		for (int i = 0; i < 3 * I * H; i++) {
			s = s * 1103515245u + 12345u;
			float f = ((float)(s >> 9) / (float)(1u << 23) - 0.5f) * 0.25f;
			uint32_t u;

			memcpy(&u, &f, sizeof(u));
			W[x][i] = (uint16_t)(u >> 16);
		}
	for (int t = 0; t < HOST_FFN_ROWS; t++)
		for (int i = 0; i < H; i++)
			X[t][i] = sinf((float)(i * (t + 1))) * 2.0f;
}

static void reference(const uint16_t *w, const float *x, double *y)
{
	double mid[I];

	for (int i = 0; i < I; i++) {
		double g = 0, u = 0;

		for (int k = 0; k < H; k++) {
			g += (double)bf(w[(size_t)i * H + k]) * x[k];
			u += (double)bf(w[(size_t)(I + i) * H + k]) * x[k];
		}
		mid[i] = g / (1 + exp(-g)) * u;
	}
	for (int r = 0; r < H; r++) {
		double s = 0;

		for (int i = 0; i < I; i++)
			s += (double)bf(w[(size_t)2 * I * H + (size_t)r * I + i]) * mid[i];
		y[r] = s;
	}
}

static float Y[JOBS][HOST_FFN_ROWS][H];

/* jobs jobs on threads threads with kernels isa (NULL: the default);
 * false when this CPU cannot run isa. */
static bool run(int threads, const char *isa, int jobs)
{
	struct host_ffn *p;
	volatile uint32_t done = 77;
	uint32_t last = 0;

	ck_assert_int_eq(host_ffn_open(threads, H, I, &done, &p), 0);
	ck_assert_uint_eq(done, 0);
	if (isa && strcmp(host_ffn_isa(p, isa), isa)) {
		host_ffn_close(p);
		return false;
	}
	memset(Y, 0, sizeof(Y));
	for (int j = 0; j < jobs; j++) {
		int m = 1 + j % HOST_FFN_ROWS;
		const float *x[HOST_FFN_ROWS];
		float *y[HOST_FFN_ROWS];

		for (int t = 0; t < m; t++)
			x[t] = X[(t + j) % HOST_FFN_ROWS], y[t] = Y[j][t];
		uint32_t num = host_ffn_submit(p, W[j % NX], x, m, y);
		ck_assert_uint_eq(num, last + 1);
		ck_assert(num - __atomic_load_n(&done, __ATOMIC_ACQUIRE) <= HOST_FFN_QUEUE);
		last = num;
	}
	host_ffn_wait(p, last);
	ck_assert_uint_eq(__atomic_load_n(&done, __ATOMIC_ACQUIRE), last);
	for (int j = 0; j < jobs; j++) {
		int m = 1 + j % HOST_FFN_ROWS;

		for (int t = 0; t < HOST_FFN_ROWS; t++) {
			const float *g = G[j % NX][(t + j) % HOST_FFN_ROWS];
			const double *d = D[j % NX][(t + j) % HOST_FFN_ROWS];

			if (t >= m) {   /* rows past m untouched */
				ck_assert_float_eq(Y[j][t][0], 0.0f);
				continue;
			}
			for (int r = 0; r < H; r++) {
				ck_assert_msg(!memcmp(&Y[j][t][r], &g[r], sizeof(float)),
					      "%s, %d threads: job %d row %d out %d: %a, the GPU's %a",
					      host_ffn_isa(p, NULL), threads, j, t, r,
					      (double)Y[j][t][r], (double)g[r]);
				ck_assert_msg(fabs(g[r] - d[r]) <= 1e-4 * (1 + fabs(d[r])),
					      "out %d: %g vs %g", r, (double)g[r], d[r]);
			}
		}
	}
	printf("host_ffn %s, %d threads: %d jobs, the GPU's bits\n", host_ffn_isa(p, NULL), threads,
	       jobs);
	host_ffn_close(p);
	return true;
}

START_TEST(test_matches_gpu)
{
	fill();
	for (int x = 0; x < NX; x++)
		for (int t = 0; t < HOST_FFN_ROWS; t++) {
			gpu_ref(W[x], X[t], G[x][t]);
			reference(W[x], X[t], D[x][t]);
		}
	run(1, NULL, JOBS);
	run(3, NULL, JOBS);
	run(8, NULL, JOBS);
	/* each kernel: a job per (expert, rows) pair at least */
	ck_assert(run(2, "c", NX * HOST_FFN_ROWS));
	const char *vec[] = {"avx2", "avx512"};
	for (int k = 0; k < 2; k++)
		if (!run(2, vec[k], NX * HOST_FFN_ROWS))
			printf("host_ffn %s: skipped: this CPU has no %s\n", vec[k], vec[k]);
}
END_TEST

/* The exponential of engine/silu.h within 2 ulp of exp over its range, and
 * silu_mul where it clamps. */
START_TEST(test_silu_exp)
{
	double worst = 0;

	for (float x = -80.0f; x <= 80.0f; x += 0.0137f) {
		double e = exp((double)x), err = fabs(silu_exp(x) - e) / e;

		worst = err > worst ? err : worst;
	}
	printf("silu_exp: worst relative error %.3g (2^-23 = %.3g)\n", worst, ldexp(1, -23));
	ck_assert_msg(worst < ldexp(1, -22), "silu_exp off by %g", worst);
	ck_assert_float_eq(silu_mul(200.0f, 2.0f), 400.0f);
	ck_assert(fabsf(silu_mul(-200.0f, 1.0f)) < 1e-30f);
	ck_assert(isnan(silu_mul(NAN, 1.0f)));
	ck_assert_float_eq(silu_mul(0.0f, 5.0f), 0.0f);
}
END_TEST

START_TEST(test_bad_args)
{
	struct host_ffn *p = (struct host_ffn *)1;
	volatile uint32_t done;

	ck_assert_int_eq(host_ffn_open(0, H, I, &done, &p), -EINVAL);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(host_ffn_open(2, H, I, NULL, &p), -EINVAL);
	ck_assert_int_eq(host_ffn_open(2, H + 4, I, &done, &p), -EINVAL);   /* not a multiple of 8 */
	host_ffn_close(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("host_ffn");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_matches_gpu);
	tcase_add_test(tc, test_silu_exp);
	tcase_add_test(tc, test_bad_args);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
