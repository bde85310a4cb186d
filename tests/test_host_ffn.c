/* engine/host_ffn: the CPU's bf16 experts against a double-precision
 * reference, for every row count, several thread counts and more jobs than
 * the queue holds (its slots reused); the done counter in job order. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/host_ffn.h"
#include "suite_run.h"

#define H 96      /* not a multiple of 32: the vector loops' tails run too */
#define I 40
#define NX 5
#define JOBS (HOST_FFN_QUEUE * 2 + 7)

static uint16_t W[NX][3 * I * H];
static float X[HOST_FFN_ROWS][H];

static float bf(uint16_t v)
{
	uint32_t u = (uint32_t)v << 16;
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
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

static void run(int threads)
{
	struct host_ffn *p;
	volatile uint32_t done = 77;
	uint32_t last = 0;

	ck_assert_int_eq(host_ffn_open(threads, H, I, &done, &p), 0);
	ck_assert_uint_eq(done, 0);
	memset(Y, 0, sizeof(Y));
	for (int j = 0; j < JOBS; j++) {
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
	for (int j = 0; j < JOBS; j++) {
		int m = 1 + j % HOST_FFN_ROWS;

		for (int t = 0; t < HOST_FFN_ROWS; t++) {
			double ref[H];

			if (t >= m) {   /* rows past m untouched */
				ck_assert_float_eq(Y[j][t][0], 0.0f);
				continue;
			}
			reference(W[j % NX], X[(t + j) % HOST_FFN_ROWS], ref);
			for (int r = 0; r < H; r++)
				ck_assert_msg(fabs(Y[j][t][r] - ref[r]) <= 1e-4 * (1 + fabs(ref[r])),
					      "job %d row %d out %d: %g vs %g", j, t, r,
					      (double)Y[j][t][r], ref[r]);
		}
	}
	host_ffn_close(p);
}

START_TEST(test_matches_reference)
{
	fill();
	run(1);
	run(3);
	run(8);
}
END_TEST

START_TEST(test_bad_args)
{
	struct host_ffn *p = (struct host_ffn *)1;
	volatile uint32_t done;

	ck_assert_int_eq(host_ffn_open(0, H, I, &done, &p), -EINVAL);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(host_ffn_open(2, H, I, NULL, &p), -EINVAL);
	host_ffn_close(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("host_ffn");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_matches_reference);
	tcase_add_test(tc, test_bad_args);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
