/* SiLU(g) * u, one definition for the CUDA kernels (engine/cuda_common.cuh)
 * and the CPU threads that compute experts for them (engine/host_ffn.c), so
 * that an expert the CPU computes has the GPU's bits.  The exponential is
 * our own: CUDA's expf and the C library's differ in the last bit.  Only
 * explicit fmaf and single operations whose results no compiler may
 * contract differently (silu_exp's last product is exact: q + 1 in
 * [0.7, 1.5) times a power of two, a normal number), each rounded as
 * IEEE 754 says. */
#ifndef ENG_SILU_H
#define ENG_SILU_H

#ifdef __CUDACC__
#define SILU_FN __device__ __forceinline__
#else
#include <math.h>
#include <string.h>
#define SILU_FN static inline
#endif

/* 2^n for an integer-valued n in [-126, 127]. */
SILU_FN float silu_pow2(float n)
{
	unsigned u = (unsigned)((int)n + 127) << 23;
#ifdef __CUDACC__
	return __uint_as_float(u);
#else
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
#endif
}

/* e^x for x in [-80, 80] within about 2 ulp (Cephes' expf: x = n ln 2 + r,
 * |r| <= ln 2 / 2, a degree-7 polynomial in r). */
SILU_FN float silu_exp(float x)
{
	float n = rintf(x * 1.44269504088896341f);
	float r = fmaf(n, -0.693359375f, x), q;

	r = fmaf(n, 2.12194440e-4f, r);
	q = fmaf(1.9875691500e-4f, r, 1.3981999507e-3f);
	q = fmaf(q, r, 8.3334519073e-3f);
	q = fmaf(q, r, 4.1665795894e-2f);
	q = fmaf(q, r, 1.6666665459e-1f);
	q = fmaf(q, r, 5.0000001201e-1f);
	q = fmaf(q, r * r, r);
	return (q + 1.0f) * silu_pow2(n);
}

/* g / (1 + e^-g) * u; e^-g taken at -g clamped to [-80, 80], where
 * 1 + e^-g is 1 or g / (1 + e^-g) is below 2^-110 anyway. */
SILU_FN float silu_mul(float g, float u)
{
	return g / (1.0f + silu_exp(fminf(fmaxf(-g, -80.0f), 80.0f))) * u;
}

#endif
