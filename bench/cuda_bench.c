/* Throughput of the engine's CUDA path over GPU expert slots: prefill tok/s,
 * decode tok/s at batch 1 and at batch B, and host-to-GPU bytes per decoded
 * token, for each cache budget (fraction of all experts) and policy given.
 * No prediction: misses load on demand.  Results in bench/results/.
 *
 *   cuda_bench MODEL_DIR PACK POLICY FRACTION...
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "engine/engine.h"
#include "engine/sample.h"
#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/model.h"
#include "loader/store.h"

#define PROMPT 128
#define STEPS 32
#define BATCH 16
#define BSTEPS 16

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int tok(int i, int V)
{
	return (int)(((unsigned)i * 2654435761u >> 7) % (unsigned)V);
}

static uint64_t loaded(struct cache *c)
{
	struct cache_stats s;

	cache_get_stats(c, -1, &s);
	return s.bytes_loaded;
}

/* Batch-B decode: B sequences with 4-token prompts, then BSTEPS steps. */
static int decode_batch(struct eng *e, int V, float *logits, double *tps)
{
	struct eng_seq *s[BATCH] = {0};
	int next[BATCH], p[4], rv = 0;

	for (int b = 0; b < BATCH && !rv; b++) {
		for (int i = 0; i < 4; i++)
			p[i] = tok(b * 31 + i, V);
		if (!(rv = eng_seq_new_cap(e, 4 + BSTEPS + 1, &s[b])))
			rv = eng_forward(e, s[b], p, 4, logits);
		next[b] = eng_argmax(logits, V);
	}
	double t0 = now();
	for (int st = 0; st < BSTEPS && !rv; st++) {
		rv = eng_step(e, s, next, BATCH, logits);
		for (int b = 0; b < BATCH; b++)
			next[b] = eng_argmax(logits + (size_t)b * V, V);
	}
	*tps = (double)BATCH * BSTEPS / (now() - t0);
	for (int b = 0; b < BATCH; b++)
		eng_seq_free(s[b]);
	return rv;
}

static int run(struct ld_model *m, struct ld_store *st, enum cache_policy pol, double frac)
{
	const struct ld_config *c = &m->cfg;
	size_t all = (size_t)c->n_moe_layers * (size_t)c->n_experts, eb;
	size_t slots = frac >= 1 ? all : (size_t)((double)all * frac);
	int V = c->vocab_size, prompt[PROMPT], next, rv;
	struct ld_backend *be = NULL;
	struct cache *ca = NULL;
	struct eng *e = NULL;
	struct eng_seq *s = NULL;
	float *logits = malloc((size_t)BATCH * V * sizeof(float));
	char err[512];
	double tp, t0, pre, dec, dec_b;

	eb = ld_store_info(st)->expert_bytes;
	slots = slots ? slots : 1;
	if ((rv = ld_backend_cuda_open(0, 0, &be, err, sizeof(err)))) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	struct cache_opts o = {.n_layers = c->n_moe_layers, .n_experts = c->n_experts,
			       .expert_bytes = eb, .n_slots = slots, .policy = pol, .store = st,
			       .backend = be, .skip_verify = true};
	if ((rv = cache_open(&o, &ca)))
		goto out;
	struct ld_expert_src src = cache_expert_src(ca);
	if ((rv = eng_open(m, &src, PROMPT + STEPS + 8, &e)) ||
	    (rv = eng_seq_new(e, &s)))
		goto out;
	for (int i = 0; i < PROMPT; i++)
		prompt[i] = tok(i, V);
	/* Warm-up (and, all resident, every expert loaded once) off the clock. */
	if ((rv = eng_forward(e, s, prompt, PROMPT, logits)))
		goto out;
	if (frac >= 1)
		for (int l = 0; l < c->n_moe_layers; l++)
			for (int x = 0; x < c->n_experts; x++) {
				const float *w;
				if ((rv = cache_acquire(ca, l, x, &w)))
					goto out;
				cache_release(ca, l, x);
			}
	cudaDeviceSynchronize();
	eng_seq_reset(s);
	t0 = now();
	if ((rv = eng_forward(e, s, prompt, PROMPT, logits)))
		goto out;
	pre = PROMPT / (now() - t0);
	uint64_t b0 = loaded(ca);
	t0 = now();
	for (int i = 0; i < STEPS && !rv; i++) {
		next = eng_argmax(logits, V);
		rv = eng_forward(e, s, &next, 1, logits);
	}
	dec = STEPS / (now() - t0);
	tp = (double)(loaded(ca) - b0) / STEPS;
	if (rv || (rv = decode_batch(e, V, logits, &dec_b)))
		goto out;
	printf("| %s | %.1f%% (%zu/%zu slots) | %.1f | %.1f | %.1f | %.1f |\n",
	       cache_policy_name(pol), 100.0 * (double)slots / (double)all, slots, all, pre, dec,
	       dec_b, tp / 1048576.0);
	fflush(stdout);
out:
	if (rv)
		fprintf(stderr, "cuda_bench: %s %.3f: error %d\n", cache_policy_name(pol), frac,
			rv);
	eng_seq_free(s);
	eng_close(e);
	cache_close(ca);
	ld_backend_close(be);
	free(logits);
	return rv;
}

int main(int argc, char **argv)
{
	struct ld_model *m;
	struct ld_store *st;
	enum cache_policy pol;
	char err[512];
	int rv = 0;

	if (argc < 5 || cache_policy_parse(argv[3], &pol)) {
		fprintf(stderr, "usage: cuda_bench MODEL_DIR PACK fifo|lru|lfu FRACTION...\n");
		return 2;
	}
	if (ld_model_open(argv[1], &m, err, sizeof(err)) ||
	    ld_store_ensure(m, argv[2], &st, err, sizeof(err))) {
		fprintf(stderr, "cuda_bench: %s\n", err);
		return 1;
	}
	printf("| policy | budget | prefill tok/s (%d) | decode tok/s b1 | decode tok/s b%d "
	       "| H2D MiB/token b1 |\n|---|---|---|---|---|---|\n", PROMPT, BATCH);
	for (int i = 4; i < argc && !rv; i++)
		rv = run(m, st, pol, atof(argv[i]));
	ld_store_close(st);
	ld_model_close(m);
	return rv ? 1 : 0;
}
