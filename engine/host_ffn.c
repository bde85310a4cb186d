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
#include <time.h>

#include "engine/host_ffn.h"

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
	float *mid;                /* [HOST_FFN_ROWS][I] */
};

struct host_ffn {
	int T, H, I;
	volatile uint32_t *done;
	struct job q[HOST_FFN_QUEUE];
	atomic_uint submitted, finished;
	atomic_int sleepers;
	atomic_bool quit;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t *th;
	int started;
	void (*dot)(const uint16_t *w, int n, const float *const *x, int m, float *out);
};

static inline float bf16f(uint16_t v)
{
	union { uint32_t u; float f; } c = {.u = (uint32_t)v << 16};

	return c.f;
}

/* out[t] = w . x[t] over n; eight partial sums a row. */
static void dot_c(const uint16_t *w, int n, const float *const *x, int m, float *out)
{
	for (int t = 0; t < m; t++) {
		float a[8] = {0};

		for (int i = 0; i + 8 <= n; i += 8)
			for (int k = 0; k < 8; k++)
				a[k] += bf16f(w[i + k]) * x[t][i + k];
		for (int i = n & ~7; i < n; i++)
			a[i & 7] += bf16f(w[i]) * x[t][i];
		out[t] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
	}
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static __m512 cvt512(__m256i v)
{
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

/* The same with 16 lanes; the weights read once for all m rows. */
__attribute__((target("avx512f"))) static void dot_avx512(const uint16_t *w, int n,
							   const float *const *x, int m,
							   float *out)
{
	__m512 a[HOST_FFN_ROWS][2];
	int i, e = n & ~31;

	for (int t = 0; t < m; t++)
		a[t][0] = a[t][1] = _mm512_setzero_ps();
	for (i = 0; i < e; i += 32) {
		__m512i v = _mm512_loadu_si512((const void *)(w + i));
		__m512 lo = cvt512(_mm512_castsi512_si256(v));
		__m512 hi = cvt512(_mm512_extracti64x4_epi64(v, 1));

		for (int t = 0; t < m; t++) {
			a[t][0] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x[t] + i), a[t][0]);
			a[t][1] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x[t] + i + 16), a[t][1]);
		}
	}
	for (int t = 0; t < m; t++) {
		float s = _mm512_reduce_add_ps(_mm512_add_ps(a[t][0], a[t][1]));

		for (int k = e; k < n; k++)
			s += bf16f(w[k]) * x[t][k];
		out[t] = s;
	}
}

__attribute__((target("avx2,fma"))) static __m256 cvt256(__m128i v)
{
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

__attribute__((target("avx2,fma"))) static void dot_avx2(const uint16_t *w, int n,
							  const float *const *x, int m, float *out)
{
	__m256 a[HOST_FFN_ROWS][2];
	int i, e = n & ~15;

	for (int t = 0; t < m; t++)
		a[t][0] = a[t][1] = _mm256_setzero_ps();
	for (i = 0; i < e; i += 16) {
		__m256i v = _mm256_loadu_si256((const void *)(w + i));
		__m256 lo = cvt256(_mm256_castsi256_si128(v));
		__m256 hi = cvt256(_mm256_extracti128_si256(v, 1));

		for (int t = 0; t < m; t++) {
			a[t][0] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x[t] + i), a[t][0]);
			a[t][1] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x[t] + i + 8), a[t][1]);
		}
	}
	for (int t = 0; t < m; t++) {
		__m256 s8 = _mm256_add_ps(a[t][0], a[t][1]);
		__m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
		float f[4], s;

		_mm_storeu_ps(f, s4);
		s = (f[0] + f[1]) + (f[2] + f[3]);
		for (int k = e; k < n; k++)
			s += bf16f(w[k]) * x[t][k];
		out[t] = s;
	}
}
#endif

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
	const float *mid[HOST_FFN_ROWS];
	float g[HOST_FFN_ROWS], u[HOST_FFN_ROWS], o[HOST_FFN_ROWS];

	for (int i = lo; i < hi; i++) {
		p->dot(j->w + (size_t)i * H, H, j->x, m, g);
		p->dot(j->w + ((size_t)I + i) * H, H, j->x, m, u);
		for (int t = 0; t < m; t++)
			j->mid[(size_t)t * I + i] = g[t] / (1.0f + expf(-g[t])) * u[t];
	}
	atomic_fetch_add(&j->met, 1);
	/* (yielding now and then: more workers than free cores must not
	 * spin away the time the last one needs) */
	for (unsigned k = 1; atomic_load(&j->met) < T; k++)
		k % 256 ? relax() : (void)sched_yield();
	for (int t = 0; t < m; t++)
		mid[t] = j->mid + (size_t)t * I;
	lo = (int)((long)H * id / T), hi = (int)((long)H * (id + 1) / T);
	const uint16_t *down = j->w + (size_t)2 * I * H;
	for (int r = lo; r < hi; r++) {
		p->dot(down + (size_t)r * I, I, mid, m, o);
		for (int t = 0; t < m; t++)
			j->y[t][r] = o[t];
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

int host_ffn_open(int threads, int H, int I, volatile uint32_t *done, struct host_ffn **out)
{
	struct host_ffn *p;

	*out = NULL;
	if (threads < 1 || threads > 256 || H < 1 || I < 1 || !done)
		return -EINVAL;
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->T = threads, p->H = H, p->I = I, p->done = done;
	*done = 0;
	p->dot = dot_c;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx512f"))
		p->dot = dot_avx512;
	else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		p->dot = dot_avx2;
#endif
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->th = calloc((size_t)threads, sizeof(*p->th));
	for (int k = 0; k < HOST_FFN_QUEUE && p->th; k++)
		if (!(p->q[k].mid = malloc((size_t)HOST_FFN_ROWS * (size_t)I * sizeof(float))))
			break;
	if (!p->th || !p->q[HOST_FFN_QUEUE - 1].mid) {
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
