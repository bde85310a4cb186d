/* Token choice: greedy, or temperature + nucleus (top-p) sampling. */
#include <math.h>
#include <stdlib.h>

#include "engine/sample.h"

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void eng_rng_seed(struct eng_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t next(struct eng_rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double eng_rng_uniform(struct eng_rng *r)
{
	return (double)(next(r) >> 11) * 0x1.0p-53;
}

int eng_argmax(const float *logits, int n)
{
	int best = 0;

	for (int i = 1; i < n; i++)
		if (logits[i] > logits[best])
			best = i;
	return best;
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
