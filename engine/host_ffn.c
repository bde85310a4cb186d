/* CPU threads computing bf16 experts (engine/host_ffn.h).  Every worker
 * takes a share of each job's gate/up rows, meets the others, then a share
 * of its down rows; the last to finish publishes the job.  Workers spin
 * between jobs for a while (a decode step's next expert is a few hundred
 * microseconds away) and then sleep. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/host_ffn.h"
#include "engine/silu.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define relax() _mm_pause()
#else
#define relax() ((void)0)
#endif

#define SPIN_NS 2000000   /* idle workers spin this long before sleeping */

struct job {
	const uint16_t *w;
	const float *x[HOST_FFN_ROWS];
	float *y[HOST_FFN_ROWS];
	int m;
	atomic_int met, fin;       /* workers past the gate/up rows; finished */
	float *mid;                /* [HOST_FFN_ROWS][ip], arranged */
};

/* The GPU's order of additions (engine/cuda_gemv.cuh's chunk_dot on a warp
 * stream): lane l of 32 takes a row's 8-element chunks l, l + 32, ..., adds
 * each chunk's products in order with fused multiply-adds into its sum, and
 * the 32 sums are added in a butterfly (lane l + o into lane l for o = 16,
 * 8, 4, 2, 1).  With engine/silu.h's silu_mul this gives the GPU kernels'
 * bits.  A vector keeps the sums of lanes in an order of its own (that of
 * a transpose of its loads), so the inputs are arranged to match: lane l's
 * elements of a 256-element step go to position pos_of(l, B), element j
 * of each at step + 32 j + position. */
#define LANES 32
#define STEP (LANES * 8)

/* An ISA's kernel: out[r][t] = w[r] . xa[t] over n (a multiple of 8) for
 * two weight rows r and t < m, xa arranged for its B; and its silu_mul. */
struct isa {
	const char *name;
	int B;   /* 128-bit blocks a vector: lanes come in groups of 4 B */
	void (*dot)(const uint16_t *const *w, int n, const float *const *xa, int m,
		    float (*out)[HOST_FFN_ROWS]);
	void (*silu)(const float *g, const float *u, int m, float *mid, size_t stride);
};

struct host_ffn {
	int T, H, I;
	size_t hp, ip;             /* H and I rounded up to a step */
	volatile uint32_t *done;
	struct job q[HOST_FFN_QUEUE];
	atomic_uint submitted, finished;
	atomic_int sleepers;
	atomic_bool quit;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t *th;
	int started;
	struct isa isa;
	int pos[LANES];            /* lane l's position */
	float *xa;                 /* [T][HOST_FFN_ROWS][hp]: each worker's inputs, arranged */
};

static inline float bf16f(uint16_t v)
{
	union { uint32_t u; float f; } c = {.u = (uint32_t)v << 16};

	return c.f;
}

#define ALWAYS static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 32")

/* Lane l's position for vectors of B blocks: a load of 4 B lanes' chunks
 * transposed by pairs of elements (pairs512's) puts lane B s + b at 4 b +
 * s (a permutation of the index's bits).  B = 1: l. */
ALWAYS int pos_of(int l, int B)
{
	int g = l / (4 * B), k = l % (4 * B);

	return g * 4 * B + 4 * (k % B) + k / B;
}

/* The 32 lanes' sums, s[position] for B, added as the warp's butterfly
 * does (lane l += lane l ^ o for o = 16 .. 1: the position bit of o), into
 * s[0] (lane 0's).  Inlined with B a constant: 31 additions. */
ALWAYS float total(float *s, int B)
{
	int seen = 0;

	UNROLL for (int o = LANES / 2; o > 0; o >>= 1) {
		int q = pos_of(o, B);

		UNROLL for (int i = 0; i < LANES; i++)
			if (!(i & (seen | q)))
				s[i] += s[i | q];
		seen |= q;
	}
	return s[0];
}

/* Where element c of a row goes when arranged (pos: lane -> position). */
static inline size_t arranged(int c, const int *pos)
{
	return (size_t)(c / STEP * STEP + c % 8 * LANES + pos[c % STEP / 8]);
}

/* xa = x[0, n) arranged (what lies past n in a step is masked). */
static void arrange(const float *x, int n, const int *pos, float *xa)
{
	for (int c = 0; c < n; c++)
		xa[arranged(c, pos)] = x[c];
}

static void silu_c(const float *g, const float *u, int m, float *mid, size_t stride)
{
	for (int t = 0; t < m; t++)
		mid[(size_t)t * stride] = silu_mul(g[t], u[t]);
}

static void dot_c(const uint16_t *const *w, int n, const float *const *xa, int m,
		  float (*out)[HOST_FFN_ROWS])
{
	for (int r = 0; r < 2; r++)
		for (int t = 0; t < m; t++) {
			float a[LANES] = {0};

			for (int c0 = 0; c0 < n; c0 += STEP)
				for (int l = 0; l < LANES && c0 + 8 * l < n; l++)
					for (int j = 0; j < 8; j++)
						a[l] = fmaf(bf16f(w[r][c0 + 8 * l + j]),
							    xa[t][c0 + j * LANES + l], a[l]);
			out[r][t] = total(a, 1);
		}
}

#if defined(__x86_64__)
/* (silu_mul's fmaf as an instruction) */
__attribute__((target("avx2,fma"))) static void silu_fma(const float *g, const float *u, int m,
							  float *mid, size_t stride)
{
	for (int t = 0; t < m; t++)
		mid[(size_t)t * stride] = silu_mul(g[t], u[t]);
}

/* Where the lanes' chunks start in a step, by position (for B blocks):
 * those at or past what is left of a row are masked. */
ALWAYS void starts(int B, int *st)
{
	UNROLL for (int l = 0; l < LANES; l++)
		st[pos_of(l, B)] = l * 8;
}

/* The kernels below take two weight rows at once and are inlined for each
 * row count M (a constant there): the sums then stay in registers, and the
 * rows' and groups' chains of fused multiply-adds (each lane's in order)
 * interleave. */

/* 16 lanes a group: four 64-byte loads of 4 lanes' chunks (a lane's 4
 * pairs of bf16 in each 128-bit block), transposed in blocks into one
 * vector per pair; a pair's low halves are its even elements. */
ALWAYS __attribute__((target("avx512f"))) void pairs512(const uint16_t *wg, int dw, __m512i *pr)
{
	__m512i z[4], t0, t1, t2, t3;

	UNROLL for (int q = 0; q < 4; q++) {
		int d = dw - 16 * q;   /* dwords of the row left from load q */

		z[q] = d >= 16 ? _mm512_loadu_si512((const void *)(wg + 32 * q)) :
		       _mm512_maskz_loadu_epi32(d > 0 ? (__mmask16)((1u << d) - 1) : 0, wg + 32 * q);
	}
	t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
	t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
	pr[0] = _mm512_unpacklo_epi64(t0, t2), pr[1] = _mm512_unpackhi_epi64(t0, t2);
	pr[2] = _mm512_unpacklo_epi64(t1, t3), pr[3] = _mm512_unpackhi_epi64(t1, t3);
}

ALWAYS __attribute__((target("avx512f"))) void dot512(const uint16_t *const *w, int n,
						      const float *const *xa, const int M,
						      float (*out)[HOST_FFN_ROWS])
{
	const __m512i odd = _mm512_set1_epi32((int)0xffff0000u);
	__m512 a[2][HOST_FFN_ROWS][2];
	int st[LANES];
	float s[LANES];

	starts(4, st);
	UNROLL for (int r = 0; r < 2; r++)
		UNROLL for (int t = 0; t < M; t++)
			a[r][t][0] = a[r][t][1] = _mm512_setzero_ps();
	for (int c0 = 0; c0 < n; c0 += STEP)
		UNROLL for (int g = 0; g < 2; g++) {
			int rem = n - c0;
			__mmask16 on = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(rem),
							       _mm512_loadu_si512(st + 16 * g));
			__m512i pr[2][4];

			UNROLL for (int r = 0; r < 2; r++)
				pairs512(w[r] + c0 + g * 128, rem / 2 - g * 64, pr[r]);
			UNROLL for (int k = 0; k < 8; k++)   /* element k of each lane's chunk */
				UNROLL for (int t = 0; t < M; t++) {
					__m512 x = _mm512_loadu_ps(xa[t] + c0 + k * LANES + 16 * g);

					UNROLL for (int r = 0; r < 2; r++) {
						__m512i v = k % 2 ? _mm512_and_si512(pr[r][k / 2], odd) :
								    _mm512_slli_epi32(pr[r][k / 2], 16);

						a[r][t][g] = _mm512_mask3_fmadd_ps(_mm512_castsi512_ps(v), x,
										   a[r][t][g], on);
					}
				}
		}
	UNROLL for (int r = 0; r < 2; r++)
		UNROLL for (int t = 0; t < M; t++) {
			_mm512_storeu_ps(s, a[r][t][0]);
			_mm512_storeu_ps(s + 16, a[r][t][1]);
			out[r][t] = total(s, 4);
		}
}

__attribute__((target("avx512f"))) static void dot_avx512(const uint16_t *const *w, int n,
							   const float *const *xa, int m,
							   float (*out)[HOST_FFN_ROWS])
{
	switch (m) {
	case 1: dot512(w, n, xa, 1, out); break;
	case 2: dot512(w, n, xa, 2, out); break;
	case 3: dot512(w, n, xa, 3, out); break;
	default: dot512(w, n, xa, 4, out);
	}
}

/* The same with 8 lanes a group (128-bit halves), the missing chunks
 * masked by blending. */
ALWAYS __attribute__((target("avx2,fma"))) void pairs256(const uint16_t *wg, int dw, __m256i *pr)
{
	__m256i z[4], t0, t1, t2, t3;

	UNROLL for (int q = 0; q < 4; q++) {
		int d = dw - 8 * q;
		__m256i lm = _mm256_cmpgt_epi32(_mm256_set1_epi32(d),
						_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));

		z[q] = d >= 8 ? _mm256_loadu_si256((const void *)(wg + 16 * q)) :
		       _mm256_maskload_epi32((const int *)(wg + 16 * q), lm);
	}
	t0 = _mm256_unpacklo_epi32(z[0], z[1]), t1 = _mm256_unpackhi_epi32(z[0], z[1]);
	t2 = _mm256_unpacklo_epi32(z[2], z[3]), t3 = _mm256_unpackhi_epi32(z[2], z[3]);
	pr[0] = _mm256_unpacklo_epi64(t0, t2), pr[1] = _mm256_unpackhi_epi64(t0, t2);
	pr[2] = _mm256_unpacklo_epi64(t1, t3), pr[3] = _mm256_unpackhi_epi64(t1, t3);
}

ALWAYS __attribute__((target("avx2,fma"))) void dot256(const uint16_t *const *w, int n,
						       const float *const *xa, const int M,
						       float (*out)[HOST_FFN_ROWS])
{
	const __m256i odd = _mm256_set1_epi32((int)0xffff0000u);
	__m256 a[2][HOST_FFN_ROWS][4];
	int st[LANES];
	float s[LANES];

	starts(2, st);
	UNROLL for (int r = 0; r < 2; r++)
		UNROLL for (int t = 0; t < M; t++)
			UNROLL for (int g = 0; g < 4; g++)
				a[r][t][g] = _mm256_setzero_ps();
	for (int c0 = 0; c0 < n; c0 += STEP)
		UNROLL for (int g = 0; g < 4; g++) {
			int rem = n - c0;
			__m256 on = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
				_mm256_set1_epi32(rem), _mm256_loadu_si256((const void *)(st + 8 * g))));
			__m256i pr[2][4];

			UNROLL for (int r = 0; r < 2; r++)
				pairs256(w[r] + c0 + g * 64, rem / 2 - g * 32, pr[r]);
			UNROLL for (int k = 0; k < 8; k++)
				UNROLL for (int t = 0; t < M; t++) {
					__m256 x = _mm256_loadu_ps(xa[t] + c0 + k * LANES + 8 * g);

					UNROLL for (int r = 0; r < 2; r++) {
						__m256i v = k % 2 ? _mm256_and_si256(pr[r][k / 2], odd) :
								    _mm256_slli_epi32(pr[r][k / 2], 16);
						__m256 f = _mm256_fmadd_ps(_mm256_castsi256_ps(v), x,
									   a[r][t][g]);

						a[r][t][g] = _mm256_blendv_ps(a[r][t][g], f, on);
					}
				}
		}
	UNROLL for (int r = 0; r < 2; r++)
		UNROLL for (int t = 0; t < M; t++) {
			UNROLL for (int g = 0; g < 4; g++)
				_mm256_storeu_ps(s + 8 * g, a[r][t][g]);
			out[r][t] = total(s, 2);
		}
}

__attribute__((target("avx2,fma"))) static void dot_avx2(const uint16_t *const *w, int n,
							  const float *const *xa, int m,
							  float (*out)[HOST_FFN_ROWS])
{
	switch (m) {
	case 1: dot256(w, n, xa, 1, out); break;
	case 2: dot256(w, n, xa, 2, out); break;
	case 3: dot256(w, n, xa, 3, out); break;
	default: dot256(w, n, xa, 4, out);
	}
}
#endif

static const struct isa isas[] = {
#if defined(__x86_64__)
	{"avx512", 4, dot_avx512, silu_fma},
	{"avx2", 2, dot_avx2, silu_fma},
#endif
	{"c", 1, dot_c, silu_c},
};

static bool isa_ok(const struct isa *k)
{
#if defined(__x86_64__)
	if (k->B == 4)
		return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
	if (k->B == 2)
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
	return true;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Until job `want` is submitted (true) or the pool closes (false). */
static bool await_job(struct host_ffn *p, uint32_t want)
{
	uint64_t t0 = 0;

	for (unsigned k = 0;; k++) {
		if ((int32_t)(atomic_load(&p->submitted) - want) >= 0)
			return true;
		if (atomic_load(&p->quit))
			return false;
		relax();
		if (k % 1024)
			continue;
		if (!t0)
			t0 = now_ns();
		else if (now_ns() - t0 > SPIN_NS)
			break;
	}
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add(&p->sleepers, 1);
	while ((int32_t)(atomic_load(&p->submitted) - want) < 0 && !atomic_load(&p->quit))
		pthread_cond_wait(&p->cv, &p->mu);
	atomic_fetch_sub(&p->sleepers, 1);
	pthread_mutex_unlock(&p->mu);
	return !atomic_load(&p->quit) || (int32_t)(atomic_load(&p->submitted) - want) >= 0;
}

struct wstart {
	struct host_ffn *p;
	int id;
};

static void run_share(struct host_ffn *p, struct job *j, int id, uint32_t num)
{
	int T = p->T, H = p->H, I = p->I, m = j->m;
	int lo = (int)((long)I * id / T), hi = (int)((long)I * (id + 1) / T);
	const float *xa[HOST_FFN_ROWS], *mid[HOST_FFN_ROWS];
	float o[2][HOST_FFN_ROWS];

	for (int t = 0; t < m; t++) {
		float *a = p->xa + ((size_t)id * HOST_FFN_ROWS + (size_t)t) * p->hp;

		arrange(j->x[t], H, p->pos, a);
		xa[t] = a, mid[t] = j->mid + (size_t)t * p->ip;
	}
	for (int i = lo; i < hi; i++) {
		const uint16_t *gu[2] = {j->w + (size_t)i * H, j->w + ((size_t)I + i) * H};

		p->isa.dot(gu, H, xa, m, o);
		/* straight to where the down rows read it */
		p->isa.silu(o[0], o[1], m, j->mid + arranged(i, p->pos), p->ip);
	}
	atomic_fetch_add(&j->met, 1);
	/* (yielding now and then: more workers than free cores must not
	 * spin away the time the last one needs) */
	for (unsigned k = 1; atomic_load(&j->met) < T; k++)
		k % 256 ? relax() : (void)sched_yield();
	lo = (int)((long)H * id / T), hi = (int)((long)H * (id + 1) / T);
	const uint16_t *down = j->w + (size_t)2 * I * H;
	for (int r = lo; r < hi; r += 2) {   /* (an odd share's last row twice) */
		const uint16_t *d[2] = {down + (size_t)r * I, down + (size_t)(r + (r + 1 < hi)) * I};

		p->isa.dot(d, I, mid, m, o);
		for (int t = 0; t < m; t++) {
			j->y[t][r] = o[0][t];
			if (r + 1 < hi)
				j->y[t][r + 1] = o[1][t];
		}
	}
	if (atomic_fetch_add(&j->fin, 1) == T - 1) {
		/* Every worker is past this job's barrier: the slot can go. */
		atomic_store(&j->met, 0);
		atomic_store(&j->fin, 0);
		__atomic_store_n(p->done, num, __ATOMIC_RELEASE);
		atomic_store(&p->finished, num);
	}
}

static void *worker(void *arg)
{
	struct wstart *ws = arg;
	struct host_ffn *p = ws->p;
	int id = ws->id;

	free(ws);
	for (uint32_t num = 1; await_job(p, num); num++)
		run_share(p, &p->q[num % HOST_FFN_QUEUE], id, num);
	return NULL;
}

static void use(struct host_ffn *p, const struct isa *k)
{
	p->isa = *k;
	for (int l = 0; l < LANES; l++)
		p->pos[l] = pos_of(l, k->B);
}

const char *host_ffn_isa(struct host_ffn *p, const char *name)
{
	for (size_t k = 0; name && k < sizeof(isas) / sizeof(isas[0]); k++)
		if (!strcmp(isas[k].name, name) && isa_ok(&isas[k]) &&
		    atomic_load(&p->submitted) == atomic_load(&p->finished))
			use(p, &isas[k]);
	return p->isa.name;
}

int host_ffn_open(int threads, int H, int I, volatile uint32_t *done, struct host_ffn **out)
{
	struct host_ffn *p;

	*out = NULL;
	if (threads < 1 || threads > 256 || H < 8 || I < 8 || H % 8 || I % 8 || !done)
		return -EINVAL;
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->T = threads, p->H = H, p->I = I, p->done = done;
	p->hp = ((size_t)H + STEP - 1) / STEP * STEP, p->ip = ((size_t)I + STEP - 1) / STEP * STEP;
	*done = 0;
	for (size_t k = 0; !p->isa.dot; k++)   /* the first this CPU has ("c": all) */
		if (isa_ok(&isas[k]))
			use(p, &isas[k]);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->th = calloc((size_t)threads, sizeof(*p->th));
	p->xa = calloc((size_t)threads * HOST_FFN_ROWS * p->hp, sizeof(float));
	for (int k = 0; k < HOST_FFN_QUEUE && p->th; k++)
		if (!(p->q[k].mid = calloc(HOST_FFN_ROWS * p->ip, sizeof(float))))
			break;
	if (!p->th || !p->xa || !p->q[HOST_FFN_QUEUE - 1].mid) {
		host_ffn_close(p);
		return -ENOMEM;
	}
	for (; p->started < threads; p->started++) {
		struct wstart *ws = malloc(sizeof(*ws));

		if (ws)
			*ws = (struct wstart){p, p->started};
		if (!ws || pthread_create(&p->th[p->started], NULL, worker, ws)) {
			free(ws);
			host_ffn_close(p);
			return -EAGAIN;
		}
	}
	*out = p;
	return 0;
}

void host_ffn_close(struct host_ffn *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->quit, true);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int k = 0; k < p->started; k++)
		pthread_join(p->th[k], NULL);
	for (int k = 0; k < HOST_FFN_QUEUE; k++)
		free(p->q[k].mid);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->xa);
	free(p->th);
	free(p);
}

uint32_t host_ffn_submit(struct host_ffn *p, const void *w, const float *const *x, int m,
			 float *const *y)
{
	uint32_t num = atomic_load(&p->submitted) + 1;
	struct job *j = &p->q[num % HOST_FFN_QUEUE];

	/* Job num - QUEUE used this slot: wait until it is done. */
	while ((int32_t)(atomic_load(&p->finished) - (num - HOST_FFN_QUEUE)) < 0)
		relax();
	j->w = w;
	j->m = m < 1 ? 1 : m > HOST_FFN_ROWS ? HOST_FFN_ROWS : m;
	for (int t = 0; t < j->m; t++)
		j->x[t] = x[t], j->y[t] = y[t];
	atomic_store(&p->submitted, num);
	if (atomic_load(&p->sleepers)) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	return num;
}

void host_ffn_wait(struct host_ffn *p, uint32_t job)
{
	while ((int32_t)(atomic_load(&p->finished) - job) < 0)
		relax();
}
