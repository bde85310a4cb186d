/* A small pool of threads that runs a loop's iterations together, for the
 * worker's per-sequence sampling after each decode step (a top-p draw over
 * a large vocabulary costs about a millisecond; a batch of 16 drawn one
 * after another took longer than the GPU's step). */
#ifndef MOED_SPOOL_H
#define MOED_SPOOL_H

struct spool;

/* fn(ctx, i, t): iteration i on thread t (0 the caller's, then 1 ..
 * threads - 1), called once for each i. */
typedef void (*spool_fn)(void *ctx, int i, int t);

/* threads >= 1 (1: everything on the caller's thread).  0 or -errno. */
int spool_open(int threads, struct spool **out);
/* Runs fn for i < n on the pool and the calling thread; returns when all
 * are done.  One run at a time. */
void spool_run(struct spool *p, int n, spool_fn fn, void *ctx);
int spool_threads(const struct spool *p);
void spool_close(struct spool *p);

#endif
