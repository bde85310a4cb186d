/* Why moed converts bf16 weights to f32 at load: the cost of a decode-step
 * GEMV on f32 weights against converting bf16 weights on the fly first.
 *   bench/convert_bench [rows cols reps]
 * Prints both times per GEMV and their ratio (one run, same machine). */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/clock.h"
#include "loader/safetensors.h"

int main(int argc, char **argv)
{
	int rows = argc > 1 ? atoi(argv[1]) : 1024, cols = argc > 2 ? atoi(argv[2]) : 2048;
	int reps = argc > 3 ? atoi(argv[3]) : 200;
	size_t n = (size_t)rows * cols;
	float *w = malloc(n * sizeof(float)), *tmp = malloc(n * sizeof(float));
	uint16_t *wb = malloc(n * sizeof(uint16_t));
	float *x = malloc((size_t)cols * sizeof(float)), *y = malloc((size_t)rows * sizeof(float));
	double t0, f32_s, bf16_s, sink = 0;

	if (!w || !tmp || !wb || !x || !y)
		return 1;
	srand(1);
	for (size_t i = 0; i < n; i++) {
		w[i] = (float)rand() / RAND_MAX - 0.5f;
		memcpy(&wb[i], (char *)&w[i] + 2, 2);  /* truncation is fine here */
	}
	for (int i = 0; i < cols; i++)
		x[i] = (float)rand() / RAND_MAX;
	t0 = ld_now();
	for (int r = 0; r < reps; r++) {
		cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1, w, cols, x, 1, 0, y, 1);
		sink += y[r % rows];
	}
	f32_s = (ld_now() - t0) / reps;
	t0 = ld_now();
	for (int r = 0; r < reps; r++) {
		ld_to_f32(tmp, wb, LD_BF16, n);
		cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1, tmp, cols, x, 1, 0, y, 1);
		sink += y[r % rows];
	}
	bf16_s = (ld_now() - t0) / reps;
	printf("gemv %dx%d, %d reps: f32 weights %.1f us; bf16 converted per use %.1f us; "
	       "ratio %.2f (checksum %.3f)\n", rows, cols, reps, f32_s * 1e6, bf16_s * 1e6,
	       bf16_s / f32_s, sink);
	return 0;
}
