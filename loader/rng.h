/* xoshiro256** seeded through splitmix64: the one PRNG behind mkmodel's
 * weights and the sampler.  Header only; both depend on its exact
 * sequences (mkmodel's output per seed, sampling per request seed). */
#ifndef MOED_LOADER_RNG_H
#define MOED_LOADER_RNG_H

#include <stdint.h>

static inline uint64_t ld_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void ld_xoshiro_seed(uint64_t s[4], uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		s[i] = ld_splitmix64(&seed);
}

static inline uint64_t ld_rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t ld_xoshiro_next(uint64_t s[4])
{
	uint64_t out = ld_rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = ld_rotl64(s[3], 45);
	return out;
}

#endif
