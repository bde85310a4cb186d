/* Token choice: greedy, or temperature + nucleus (top-p) sampling. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
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

/* Bucket of a probability by its float exponent: 0 for [1, 2), 1 for
 * [1/2, 1), ..., zeros and subnormals 127; NaN and infinities NB - 1. */
#define NB 160

static int bucket(float p)
{
	uint32_t b;
	int e;

	memcpy(&b, &p, sizeof(b));
	e = 127 - (int)(b >> 23 & 0xff);
	return e < 0 ? NB - 1 : e > NB - 1 ? NB - 1 : e;
}

/* idx[0 .. m) (ascending) in by_prob's order, for p >= 0 without NaNs: a
 * stable radix sort on the complemented bits (a non-negative float's bits
 * order as its values), so ties keep ascending ids; tmp: m ints.  Bytes
 * all keys share cost no pass. */
static void sort_desc(int *idx, int m, const float *p, int *tmp)
{
	for (int sh = 0; sh < 32 && m > 1; sh += 8) {
		int cnt[257] = {0};
		uint32_t b;

		for (int i = 0; i < m; i++) {
			memcpy(&b, &p[idx[i]], sizeof(b));
			cnt[((~b >> sh) & 255) + 1]++;
		}
		memcpy(&b, &p[idx[0]], sizeof(b));
		if (cnt[((~b >> sh) & 255) + 1] == m)
			continue;
		for (int k = 0; k < 256; k++)
			cnt[k + 1] += cnt[k];
		for (int i = 0; i < m; i++) {
			memcpy(&b, &p[idx[i]], sizeof(b));
			tmp[cnt[(~b >> sh) & 255]++] = idx[i];
		}
		memcpy(idx, tmp, (size_t)m * sizeof(int));
	}
}

/* The nucleus: how many of the indices sorted by by_prob it takes for
 * their probabilities p, added in that order, to reach top_p (all n if they
 * never do), those indices first in idx, their sum in *acc.  Sorting the
 * whole vocabulary with qsort took 7.9 ms a token (50304 entries).  The
 * indices of the top buckets come first in that order, so when their
 * probabilities reach top_p, sorting them alone gives the same nucleus: the
 * buckets' sums pick how many to take, one more bucket at a time if
 * rounding left them short; the last bucket means every index, as the full
 * sort did.  NaNs (then every p is one) keep qsort_r and its order. */
static int nucleus(const float *p, int n, double top_p, int *idx, int *tmp, double *acc)
{
	double sum[NB] = {0};
	int last = 0;

	for (int i = 0; i < n; i++)
		sum[bucket(p[i])] += p[i];
	for (double s = sum[0]; s < top_p && last < NB - 1; s += sum[++last])
		;
	for (;; last++) {
		int m = 0, keep;

		for (int i = 0; i < n; i++)
			if (last >= NB - 1 || bucket(p[i]) <= last)
				idx[m++] = i;
		if (isnan(p[0]))
			qsort_r(idx, (size_t)m, sizeof(int), by_prob, (void *)p);
		else
			sort_desc(idx, m, p, tmp);
		for (keep = 0, *acc = 0; keep < m && *acc < top_p; keep++)
			*acc += p[idx[keep]];
		if (*acc >= top_p || m == n || last >= NB - 1)
			return keep;
	}
}

int eng_sample(const float *logits, int n, double temperature, double top_p,
	       struct eng_rng *r, float *scratch)
{
	return eng_sample_best(logits, n, -1, temperature, top_p, r, scratch);
}

int eng_sample_best(const float *logits, int n, int best, double temperature, double top_p,
		    struct eng_rng *r, float *scratch)
{
	float *p = scratch;
	int *idx = (int *)(scratch + n);
	int keep = n;
	bool nuc = top_p > 0 && top_p < 1;
	double sum = 0, acc = 1.0, u;

	if (best < 0)
		best = eng_argmax(logits, n);
	if (temperature <= 0)
		return best;
	for (int i = 0; i < n; i++) {
		p[i] = expf((float)((logits[i] - logits[best]) / temperature));
		sum += p[i];
	}
	for (int i = 0; i < n; i++)
		p[i] = (float)(p[i] / sum);
	if (nuc)
		keep = nucleus(p, n, top_p, idx, idx + n, &acc);
	u = eng_rng_uniform(r) * acc;
	/* The nucleus in its order, else every id in order. */
	for (int i = 0; i < keep; i++) {
		u -= p[nuc ? idx[i] : i];
		if (u < 0)
			return nuc ? idx[i] : i;
	}
	return nuc ? idx[keep - 1] : keep - 1;
}
