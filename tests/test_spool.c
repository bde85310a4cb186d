/* daemon/spool: every iteration runs once, on a thread of the pool, the
 * run returns only when all are done, and the pool runs again and again. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "daemon/spool.h"
#include "tests/suite_run.h"

#define N 5000

struct job {
	int hits[N];
	int thread[N];
	int threads;
};

static void mark(void *ctx, int i, int t)
{
	struct job *j = ctx;

	__atomic_fetch_add(&j->hits[i], 1, __ATOMIC_RELAXED);
	j->thread[i] = t;
}

static void check_job(const struct job *j, int n)
{
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(j->hits[i], i < n ? 1 : 0);
		if (i < n)
			ck_assert(j->thread[i] >= 0 && j->thread[i] < j->threads);
	}
}

START_TEST(test_runs)
{
	static struct job j;
	struct spool *p;

	ck_assert_int_eq(spool_open(4, &p), 0);
	ck_assert_int_eq(spool_threads(p), 4);
	j.threads = 4;
	for (int r = 0; r < 60; r++) {
		int n = r % 7 == 0 ? r % 3 : (r * 37) % N;   /* 0, 1 and 2 iterations too */

		for (int i = 0; i < N; i++)
			j.hits[i] = 0, j.thread[i] = -1;
		spool_run(p, n, mark, &j);
		check_job(&j, n);
	}
	spool_close(p);
}
END_TEST

/* A helper takes an iteration and sleeps in it; the caller's thread waits
 * (up to 5 s) until one has, so the run cannot end on the caller's work
 * alone: it must wait for the helper, whose iteration is then done. */
static int claimed;

static void slow(void *ctx, int i, int t)
{
	if (t > 0 && !__atomic_exchange_n(&claimed, 1, __ATOMIC_SEQ_CST))
		usleep(20000);
	for (int k = 0; t == 0 && i == 0 && k < 5000 && !__atomic_load_n(&claimed, __ATOMIC_SEQ_CST);
	     k++)
		usleep(1000);
	mark(ctx, i, t);
}

START_TEST(test_waits)
{
	static struct job j;
	struct spool *p;

	ck_assert_int_eq(spool_open(3, &p), 0);
	j.threads = 3;
	spool_run(p, 50, slow, &j);
	ck_assert(__atomic_load_n(&claimed, __ATOMIC_SEQ_CST));   /* helpers run */
	check_job(&j, 50);
	spool_close(p);
}
END_TEST

START_TEST(test_one_thread)
{
	static struct job j;
	struct spool *p;

	ck_assert_int_eq(spool_open(0, &p), -EINVAL);
	ck_assert_int_eq(spool_open(1, &p), 0);
	j.threads = 1;
	spool_run(p, N, mark, &j);
	check_job(&j, N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(j.thread[i], 0);
	spool_close(p);
	spool_close(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("spool");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_runs);
	tcase_add_test(tc, test_one_thread);
	tcase_add_test(tc, test_waits);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
