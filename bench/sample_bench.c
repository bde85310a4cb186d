/* Time of eng_sample (temperature and top-p) on a vocabulary of OLMoE's
 * size: logits a sum of three uniforms times SCALE (larger: more peaked),
 * REPS draws after one.  Prints microseconds per call and a checksum of the
 * tokens drawn (the same seed gives the same tokens).  With ROWS, also the
 * time of a step's ROWS draws (one vocabulary each) as the worker makes
 * them: on a pool of THREADS (daemon/spool.h) against one after another.
 *   sample_bench [SCALE [TOP_P [TEMPERATURE [REPS [ROWS [THREADS]]]]]] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "daemon/spool.h"
#include "engine/sample.h"

#define N 50304

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define MAXROWS 64
#define MAXTH 16

struct step {
	const float *l;
	float *scratch;
	double temp, top_p;
	struct eng_rng rng[MAXROWS];
	long sum;
};

static void draw(void *ctx, int i, int t)
{
	struct step *s = ctx;

	__atomic_fetch_add(&s->sum, eng_sample(s->l, N, s->temp, s->top_p, &s->rng[i],
					       s->scratch + (size_t)t * ENG_SAMPLE_SCRATCH(N)),
			   __ATOMIC_RELAXED);
}

/* ms per step of rows draws, on `threads` threads, reps steps. */
static double steps(struct step *s, int rows, int threads, int reps)
{
	struct spool *p;
	double t0;

	if (spool_open(threads, &p))
		return -1;
	for (int i = 0; i < rows; i++)
		eng_rng_seed(&s->rng[i], (uint64_t)i + 1);
	t0 = now();
	for (int r = 0; r < reps; r++)
		spool_run(p, rows, draw, s);
	t0 = (now() - t0) / reps * 1e3;
	spool_close(p);
	return t0;
}

int main(int argc, char **argv)
{
	static float l[N], scratch[3 * N];
	double scale = argc > 1 ? atof(argv[1]) : 3, top_p = argc > 2 ? atof(argv[2]) : 0.9;
	double temp = argc > 3 ? atof(argv[3]) : 0.8, t0;
	int reps = argc > 4 ? atoi(argv[4]) : 200, rows = argc > 5 ? atoi(argv[5]) : 0;
	int threads = argc > 6 ? atoi(argv[6]) : 8;
	unsigned r = 7;
	long sum = 0;
	struct eng_rng rng;

	if (reps < 1 || !(temp > 0) || rows < 0 || rows > MAXROWS || threads < 1 ||
	    threads > MAXTH) {
		fprintf(stderr, "usage: sample_bench [SCALE [TOP_P [TEMPERATURE [REPS [ROWS "
			"[THREADS]]]]]] (ROWS <= %d, THREADS <= %d)\n", MAXROWS, MAXTH);
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
	if (rows) {
		static float sc[MAXTH * ENG_SAMPLE_SCRATCH(N)];
		static struct step s;
		double one, many;

		s = (struct step){l, sc, temp, top_p, {{{0}}}, 0};
		one = steps(&s, rows, 1, reps / rows + 1);
		sum = s.sum, s.sum = 0;
		many = steps(&s, rows, threads, reps / rows + 1);
		printf("a step of %d draws: %.3f ms one after another, %.3f ms on %d threads "
		       "(tokens sum %ld, %ld)\n", rows, one, many, threads, sum, s.sum);
	}
	return 0;
}
