/* mkmodel's PRNG and the skewed-routing construction. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/mkmodel_int.h"
#include "loader/rng.h"

#define ZIPF_S 1.2
#define EMBED_NOISE 0.5f
#define ROUTER_GAP 5.0f            /* home-expert logit over the noise (std 1) */
#define HOME_SPREAD 0.3f           /* strength drop across a cluster's home set */

void mk_rng_seed(struct mk_rng *r, uint64_t seed)
{
	ld_xoshiro_seed(r->s, seed);
}

uint64_t mk_rng_next(struct mk_rng *r)
{
	return ld_xoshiro_next(r->s);
}

float mk_rng_normal(struct mk_rng *r)
{
	uint64_t x = mk_rng_next(r);
	uint32_t sum = (uint32_t)(x & 0xffff) + (uint32_t)(x >> 16 & 0xffff) +
		       (uint32_t)(x >> 32 & 0xffff) + (uint32_t)(x >> 48);

	/* Four uniforms (u + 0.5) / 65536: sum has mean 2, variance 1/3. */
	return ((float)(sum + 2) * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

/* Gram-Schmidt on C random vectors (C <= H), in double. */
static int orthonormal(float *u, int C, int H, uint64_t seed)
{
	double *w = malloc((size_t)H * sizeof(*w));
	struct mk_rng r;

	if (!w)
		return -ENOMEM;
	mk_rng_seed(&r, seed);
	for (int c = 0; c < C; c++) {
		double norm = 0;

		do {
			for (int j = 0; j < H; j++)
				w[j] = mk_rng_normal(&r);
			for (int p = 0; p < c; p++) {
				double d = 0;
				for (int j = 0; j < H; j++)
					d += w[j] * u[(size_t)p * H + j];
				for (int j = 0; j < H; j++)
					w[j] -= d * u[(size_t)p * H + j];
			}
			norm = 0;
			for (int j = 0; j < H; j++)
				norm += w[j] * w[j];
		} while (norm < 1e-6);
		for (int j = 0; j < H; j++)
			u[(size_t)c * H + j] = (float)(w[j] / sqrt(norm));
	}
	free(w);
	return 0;
}

int mk_skew_init(struct mk_skew *sk, const struct mkmodel_opts *o)
{
	int E = o->n_experts, k = o->top_k, C = E / 4 < E / k ? E / 4 : E / k;
	double z = 0;

	memset(sk, 0, sizeof(*sk));
	/* Disjoint home sets of k experts where E allows, at most H directions. */
	C = C < 2 ? 2 : C;
	C = C > o->hidden ? o->hidden : C;
	sk->C = C;
	sk->H = o->hidden;
	sk->E = E;
	sk->k = k;
	sk->seed = o->seed;
	sk->embed_scale = sqrtf((float)o->hidden);
	sk->embed_noise = EMBED_NOISE;
	sk->router_gap = ROUTER_GAP;
	sk->u = malloc((size_t)C * (size_t)o->hidden * sizeof(float));
	sk->cum = malloc((size_t)C * sizeof(double));
	if (!sk->u || !sk->cum || orthonormal(sk->u, C, o->hidden, o->seed ^ 0x636c7573746572ull)) {
		mk_skew_free(sk);
		return -ENOMEM;
	}
	for (int c = 0; c < C; c++)
		sk->cum[c] = (z += pow(c + 1, -ZIPF_S));
	for (int c = 0; c < C; c++)
		sk->cum[c] /= z;
	return 0;
}

void mk_skew_free(struct mk_skew *sk)
{
	free(sk->u);
	free(sk->cum);
	sk->u = NULL;
	sk->cum = NULL;
}

static uint64_t mix64(uint64_t z)
{
	return ld_splitmix64(&z);
}

int mk_token_cluster(const struct mk_skew *sk, int64_t token)
{
	double x = (double)(mix64(sk->seed ^ mix64(0x746f6b656eull + (uint64_t)token)) >> 11) *
		   0x1p-53;
	int c = 0;

	while (c < sk->C - 1 && x >= sk->cum[c])
		c++;
	return c;
}

int mk_skew_router_coef(const struct mk_skew *sk, int layer, float *coef)
{
	int E = sk->E, *perm = malloc((size_t)E * sizeof(int));
	/* Home logit ~ b * (u_c . rmsnorm(x)) = b * sqrt(H) * cos(x, u_c) ~ gap * 0.9. */
	float b = sk->router_gap / sqrtf((float)sk->H);
	struct mk_rng r;

	if (!perm)
		return -ENOMEM;
	mk_rng_seed(&r, sk->seed ^ mix64(0x7065726dull + (uint64_t)layer));
	for (int e = 0; e < E; e++)
		perm[e] = e;
	for (int e = E - 1; e > 0; e--) {
		int j = (int)(mk_rng_next(&r) % (uint64_t)(e + 1)), t = perm[e];
		perm[e] = perm[j];
		perm[j] = t;
	}
	memset(coef, 0, (size_t)E * (size_t)sk->C * sizeof(float));
	for (int c = 0; c < sk->C; c++)
		for (int j = 0; j < sk->k; j++) {
			int e = perm[(c * sk->k + j) % E];
			coef[(size_t)e * sk->C + c] += b * (1.0f - HOME_SPREAD * (float)j / (float)sk->k);
		}
	free(perm);
	return 0;
}

void mk_skew_project_out(const struct mk_skew *sk, float *v)
{
	for (int c = 0; c < sk->C; c++) {
		const float *u = sk->u + (size_t)c * sk->H;
		double d = 0;

		for (int j = 0; j < sk->H; j++)
			d += (double)v[j] * u[j];
		for (int j = 0; j < sk->H; j++)
			v[j] -= (float)d * u[j];
	}
}
