/* Time of eng_sample (temperature and top-p) on a vocabulary of OLMoE's
 * size: logits a sum of three uniforms times SCALE (larger: more peaked),
 * REPS draws after one.  Prints microseconds per call and a checksum of the
 * tokens drawn (the same seed gives the same tokens).
 *   sample_bench [SCALE [TOP_P [TEMPERATURE [REPS]]]] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/sample.h"

#define N 50304

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	static float l[N], scratch[3 * N];
	double scale = argc > 1 ? atof(argv[1]) : 3, top_p = argc > 2 ? atof(argv[2]) : 0.9;
	double temp = argc > 3 ? atof(argv[3]) : 0.8, t0;
	int reps = argc > 4 ? atoi(argv[4]) : 200;
	unsigned r = 7;
	long sum = 0;
	struct eng_rng rng;

	if (reps < 1 || !(temp > 0)) {
		fprintf(stderr, "usage: sample_bench [SCALE [TOP_P [TEMPERATURE [REPS]]]]\n");
		return 2;
	}
	for (int i = 0; i < N; i++) {
		float v = 0;

		for (int k = 0; k < 3; k++) {
			r = r * 1664525u + 1013904223u;
			v += (float)(r >> 8) / (float)(1u << 24) - 0.5f;
		}
		l[i] = v * (float)scale;
	}
	eng_rng_seed(&rng, 1);
	sum += eng_sample(l, N, temp, top_p, &rng, scratch);
	t0 = now();
	for (int i = 0; i < reps; i++)
		sum += eng_sample(l, N, temp, top_p, &rng, scratch);
	printf("scale %g top_p %g temperature %g: %.1f us per call (tokens sum %ld)\n", scale,
	       top_p, temp, (now() - t0) / reps * 1e6, sum);
	return 0;
}
