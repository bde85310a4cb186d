/* Token choice from logits: greedy, or temperature + top-p with a seed. */
#ifndef ENG_SAMPLE_H
#define ENG_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

struct eng_rng {
	uint64_t s[4];
};

void eng_rng_seed(struct eng_rng *r, uint64_t seed);
double eng_rng_uniform(struct eng_rng *r); /* [0, 1) */
int eng_argmax(const float *logits, int n);
/* Floats of scratch eng_sample needs for n logits. */
#define ENG_SAMPLE_SCRATCH(n) (3 * (size_t)(n))
/* temperature <= 0 means greedy.  scratch: ENG_SAMPLE_SCRATCH(n) floats. */
int eng_sample(const float *logits, int n, double temperature, double top_p,
	       struct eng_rng *r, float *scratch);
/* The same with best = eng_argmax(logits, n) known (eng_row_argmax), or
 * computed when best < 0. */
int eng_sample_best(const float *logits, int n, int best, double temperature, double top_p,
		    struct eng_rng *r, float *scratch);

#endif
