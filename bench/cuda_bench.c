/* Throughput of the engine's CUDA path over GPU expert slots (issue 6): for
 * all experts resident and for each cache budget (fraction of all experts),
 *   prefill  S prompts of P tokens in one eng_batch (tok/s),
 *   decode   batch 1 and batch B (tok/s),
 * with host-to-GPU bytes and expert acquires per token and the cache
 * counters of each phase.  Budgets run with no prefetch (misses load on
 * demand) and/or with the worker's decode-time next-layer prefetch
 * (daemon/worker_route.c's scheme, done here with the same hooks):
 *   cepr    FLAME's predictor, trained in the resident run on other prompts,
 *           then learning online as the worker does;
 *   oracle  the resident run's own routes replayed: what any predictor
 *           could at best give this engine path.
 * Prefill has no prefetch (the worker's comes from the predictor process's
 * batch table).  Every budget's greedy tokens are compared with the resident
 * run's (the path is exact).  One JSON object per configuration (--json).
 *
 *   cuda_bench [--backend cuda|host] [--policy lru] [--fracs 1,0.5,0.25]
 *              [--prefetch none,cepr,oracle] [--json FILE] [--deadline S]
 *              [--prefill SxP] [--f32-pack] MODEL_DIR PACK
 * With the cuda backend and a bf16 model the pack holds bf16 experts (the
 * backend widens them on load); --f32-pack keeps them f32.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "engine/engine.h"
#include "engine/sample.h"
#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/model.h"
#include "loader/store.h"
#include "predictor/pred.h"

#define NSEQ 17                /* seq 0: batch-1 decode; 1..16: batch decode */
#define MAXPOS 128
#define PROMPT 32
#define WARM 8
#define STEPS 64
#define BATCH 16
#define BPROMPT 8
#define BWARM 4
#define BSTEPS 32
#define TSTEPS 48              /* cepr training: BATCH sequences, decode steps */
#define MAXFRAC 8

enum mode { M_NONE, M_CEPR, M_ORACLE, M_N };
enum phase { PH_OFF, PH_DECODE };
static const char *const mode_name[M_N] = {"none", "cepr", "oracle"};

struct opts {
	const char *backend, *json, *model, *pack;
	enum cache_policy pol;
	double fracs[MAXFRAC];
	int n_fracs, modes[M_N], n_modes, pre_seqs, pre_len;
	double deadline;
	bool f32_pack;             /* --f32-pack: experts stored f32 even for cuda */
};

/* One sequence's routing during decode. */
struct bseq {
	struct eng_seq *s;
	int id;                    /* row of the route record, -1: none */
	int tok, has_prev;
	int *cur, *prev;           /* [L][K], -1 unknown */
};

struct bench {
	struct opts o;
	struct ld_model *m;
	struct ld_store *st;
	int L, E, K, V;
	int *rec;                  /* resident routes [NSEQ][MAXPOS][L][K] */
	int ref[NSEQ][MAXPOS];     /* resident greedy tokens, -1 none */
	int ref_pre[8];
	int have_ref;
	char pred_path[64];
	int have_pred;
	FILE *json;
	double t0;
};

/* One configuration. */
struct run {
	struct bench *b;
	struct cache *ca;
	struct eng *e;
	struct pred *p;
	enum mode mode;
	enum phase phase;
	int record, learn, same;
	int gen[NSEQ][MAXPOS];
	uint64_t n_pf, n_pf_fail;
	int pnext[256];
};

struct res {                   /* one phase */
	int tokens;
	double secs;
	struct cache_stats s;
	uint64_t n_pf;
};

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

static int *rec_at(struct bench *b, int id, int pos, int layer)
{
	return b->rec + (((size_t)id * MAXPOS + (size_t)pos) * (size_t)b->L + (size_t)layer) *
		(size_t)b->K;
}

static void seq_clear(struct bench *b, struct bseq *s)
{
	for (int i = 0; i < b->L * b->K; i++)
		s->cur[i] = s->prev[i] = -1;
	s->has_prev = 0;
}

static void before_moe(void *ctx, int layer, const int *tokens, int n)
{
	struct run *r = ctx;

	(void)tokens;
	(void)n;
	/* The layer before has passed: its prefetch pins go. */
	if (r->phase == PH_DECODE && r->mode != M_NONE)
		cache_unpin_layer(r->ca, layer > 0 ? layer - 1 : r->b->L - 1);
}

/* The experts of the layer after `layer` for this token (layer 0 of the
 * next token after the last layer): how many went into r->pnext. */
static int predict_next(struct run *r, struct bseq *s, int layer, int pos, int *next)
{
	struct bench *b = r->b;
	struct pred_tok t = {.token = -1, .index = -1, .cur = s->cur,
			     .prev = s->has_prev ? s->prev : NULL};
	int np = pos;

	*next = layer + 1;
	if (*next == b->L) {
		*next = 0;
		np = pos + 1;
		t.cur = NULL;
		t.prev = s->cur;
	}
	if (r->mode == M_CEPR)
		return pred_predict_layer(r->p, &t, *next, b->K, r->pnext);
	if (s->id < 0 || np >= MAXPOS || rec_at(b, s->id, np, *next)[0] < 0)
		return 0;
	memcpy(r->pnext, rec_at(b, s->id, np, *next), (size_t)b->K * sizeof(int));
	return b->K;
}

static void on_route(void *ctx, void *user, int layer, int pos, int token,
		     const int *experts, const float *w, int k)
{
	struct run *r = ctx;
	struct bseq *s = user;
	struct bench *b = r->b;
	int next, n;

	(void)token;
	(void)w;
	if (!s)
		return;
	if (r->record && s->id >= 0 && pos < MAXPOS)
		memcpy(rec_at(b, s->id, pos, layer), experts, (size_t)k * sizeof(int));
	if (r->phase != PH_DECODE)
		return;
	memcpy(s->cur + (size_t)layer * k, experts, (size_t)k * sizeof(int));
	if (r->mode == M_NONE)
		return;
	n = predict_next(r, s, layer, pos, &next);
	for (int i = 0; i < n; i++) {
		if (cache_prefetch(r->ca, next, r->pnext[i]) == 0)
			r->n_pf++;
		else
			r->n_pf_fail++;
	}
}

/* After a decode step: learn each sequence's full path (as the worker does
 * after a call), then it becomes the previous token's. */
static void end_step(struct run *r, struct bseq *const *ss, int n)
{
	struct bench *b = r->b;

	for (int i = 0; i < n; i++) {
		struct bseq *s = ss[i];
		struct pred_tok t = {.token = s->tok, .index = -1, .cur = s->cur,
				     .prev = s->has_prev ? s->prev : NULL};
		int *tmp;

		if (r->p && r->learn && s->cur[(b->L - 1) * b->K] >= 0)
			pred_observe(r->p, &t);
		tmp = s->prev;
		s->prev = s->cur;
		s->cur = tmp;
		s->has_prev = 1;
		for (int j = 0; j < b->L * b->K; j++)
			s->cur[j] = -1;
	}
}

static void snap(struct run *r, struct res *x)
{
	cache_get_stats(r->ca, -1, &x->s);
	x->n_pf = r->n_pf;
	x->secs = now();
}

static void delta(struct run *r, struct res *x, int tokens)
{
	struct cache_stats s;

	cache_get_stats(r->ca, -1, &s);
	x->secs = now() - x->secs;
	x->tokens = tokens;
	x->n_pf = r->n_pf - x->n_pf;
	x->s.hits = s.hits - x->s.hits;
	x->s.misses = s.misses - x->s.misses;
	x->s.prefetched_used = s.prefetched_used - x->s.prefetched_used;
	x->s.prefetched_unused = s.prefetched_unused - x->s.prefetched_unused;
	x->s.evictions = s.evictions - x->s.evictions;
	x->s.loads = s.loads - x->s.loads;
	x->s.bytes_loaded = s.bytes_loaded - x->s.bytes_loaded;
	x->s.stall_seconds = s.stall_seconds - x->s.stall_seconds;
	x->s.prefetch_nospace = s.prefetch_nospace - x->s.prefetch_nospace;
	x->s.pin_steals = s.pin_steals - x->s.pin_steals;
}

static int seqs_new(struct run *r, struct bseq *bs, int n, int id0, int cap)
{
	struct bench *b = r->b;
	int rv;

	for (int i = 0; i < n; i++) {
		bs[i].id = id0 < 0 ? -1 : id0 + i;
		bs[i].cur = malloc((size_t)b->L * b->K * sizeof(int));
		bs[i].prev = malloc((size_t)b->L * b->K * sizeof(int));
		if (!bs[i].cur || !bs[i].prev)
			return -ENOMEM;
		seq_clear(b, &bs[i]);
		if ((rv = eng_seq_new_cap(r->e, cap, &bs[i].s)))
			return rv;
		eng_seq_set_user(bs[i].s, &bs[i]);
	}
	return 0;
}

static void seqs_free(struct bseq *bs, int n)
{
	for (int i = 0; i < n; i++) {
		eng_seq_free(bs[i].s);
		free(bs[i].cur);
		free(bs[i].prev);
		memset(&bs[i], 0, sizeof(bs[i]));
	}
}

/* n sequences: prompts of plen tokens (token ids from base), then warm +
 * steps decode steps together, the last `steps` timed into x.  Generated
 * tokens go to r->gen[id0 + i] (id0 >= 0). */
static int decode(struct run *r, int n, int id0, int base, int plen, int warm, int steps,
		  float *logits, struct res *x)
{
	struct bench *b = r->b;
	struct bseq bs[BATCH] = {0};
	struct eng_seq *es[BATCH];
	struct bseq *ps[BATCH];
	int prompts[BATCH][PROMPT], next[BATCH], rv;
	const int *pt[BATCH];
	int pn[BATCH];

	if ((rv = seqs_new(r, bs, n, id0, plen + warm + steps + 1)))
		goto out;
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < plen; j++)
			prompts[i][j] = tok(base + i * 37 + j, b->V);
		es[i] = bs[i].s;
		ps[i] = &bs[i];
		pt[i] = prompts[i];
		pn[i] = plen;
	}
	r->phase = PH_OFF;
	if ((rv = eng_batch(r->e, es, pt, pn, n, logits)))
		goto out;
	for (int i = 0; i < n; i++)
		next[i] = eng_argmax(logits + (size_t)i * b->V, b->V);
	r->phase = PH_DECODE;
	for (int st = 0; st < warm + steps && !rv; st++) {
		if (st == warm)
			snap(r, x);
		for (int i = 0; i < n; i++) {
			bs[i].tok = next[i];
			if (id0 >= 0 && plen + st < MAXPOS)
				r->gen[id0 + i][plen + st] = next[i];
		}
		if (!(rv = eng_step(r->e, es, next, n, logits)))
			end_step(r, ps, n);
		for (int i = 0; i < n; i++)
			next[i] = eng_argmax(logits + (size_t)i * b->V, b->V);
	}
	if (!rv)
		delta(r, x, n * steps);
out:
	r->phase = PH_OFF;
	seqs_free(bs, n);
	return rv;
}

/* S prompts of P tokens in one eng_batch, timed. */
static int prefill(struct run *r, float *logits, struct res *x, int *argmax)
{
	struct bench *b = r->b;
	int S = b->o.pre_seqs, P = b->o.pre_len, rv = 0;
	struct eng_seq *s[8] = {0};
	int *tk = malloc((size_t)S * P * sizeof(int)), n[8];
	const int *tp[8];

	if (!tk)
		return -ENOMEM;
	for (int i = 0; i < S && !rv; i++) {
		for (int j = 0; j < P; j++)
			tk[i * P + j] = tok(20000 + i * P + j, b->V);
		tp[i] = tk + (size_t)i * P;
		n[i] = P;
		rv = eng_seq_new_cap(r->e, P, &s[i]);
	}
	if (!rv) {
		snap(r, x);
		if (!(rv = eng_batch(r->e, s, tp, n, S, logits)))
			delta(r, x, S * P);
		for (int i = 0; i < S && !rv; i++)
			argmax[i] = eng_argmax(logits + (size_t)i * b->V, b->V);
	}
	for (int i = 0; i < S; i++)
		eng_seq_free(s[i]);
	free(tk);
	return rv;
}

/* Resident run: every expert loaded off the clock; with cepr asked for, the
 * predictor learns from BATCH other prompts and is saved for the budgets. */
static int resident_prep(struct run *r, float *logits)
{
	struct bench *b = r->b;
	const struct ld_config *c = &b->m->cfg;
	struct res x;
	char err[256];
	int rv;

	for (int l = 0; l < c->n_moe_layers; l++)
		for (int e = 0; e < c->n_experts; e++) {
			const float *w;
			if ((rv = cache_acquire(r->ca, l, e, &w)))
				return rv;
			cache_release(r->ca, l, e);
		}
	if (!b->o.modes[M_CEPR])
		return 0;
	if ((rv = pred_open(PRED_CEPR, b->L, b->E, b->K, NULL, &r->p)))
		return rv;
	r->learn = 1;
	if ((rv = decode(r, BATCH, -1, 5000, BPROMPT, 0, TSTEPS, logits, &x)))
		return rv;
	snprintf(b->pred_path, sizeof(b->pred_path), "/tmp/cuda_bench_cepr.%d", (int)getpid());
	if ((rv = pred_save(r->p, b->pred_path, err, sizeof(err)))) {
		fprintf(stderr, "cuda_bench: %s\n", err);
		return rv;
	}
	b->have_pred = 1;
	fprintf(stderr, "cuda_bench: cepr trained on %d tokens (%.2f s)\n", BATCH * TSTEPS,
		x.secs);
	pred_close(r->p);
	r->p = NULL;
	r->learn = 0;
	return 0;
}

static void put_res(FILE *f, const char *name, const struct res *x, int last)
{
	double t = x->tokens ? (double)x->tokens : 1;

	fprintf(f, "\"%s\": {\"tokens\": %d, \"seconds\": %.6f, \"tok_s\": %.3f, "
		"\"bytes_per_token\": %.1f, \"acquires_per_token\": %.4f, \"hits\": %llu, "
		"\"misses\": %llu, \"loads\": %llu, \"bytes_loaded\": %llu, "
		"\"prefetched_used\": %llu, \"prefetched_unused\": %llu, \"prefetches\": %llu, "
		"\"prefetch_nospace\": %llu, \"pin_steals\": %llu, \"evictions\": %llu, "
		"\"stall_seconds\": %.6f}%s", name, x->tokens, x->secs,
		x->secs > 0 ? x->tokens / x->secs : 0, (double)x->s.bytes_loaded / t,
		(double)(x->s.hits + x->s.misses) / t, (unsigned long long)x->s.hits,
		(unsigned long long)x->s.misses, (unsigned long long)x->s.loads,
		(unsigned long long)x->s.bytes_loaded, (unsigned long long)x->s.prefetched_used,
		(unsigned long long)x->s.prefetched_unused, (unsigned long long)x->n_pf,
		(unsigned long long)x->s.prefetch_nospace, (unsigned long long)x->s.pin_steals,
		(unsigned long long)x->s.evictions, x->s.stall_seconds, last ? "" : ", ");
}

static int open_backend(struct bench *b, struct ld_backend **be)
{
	char err[512];
	int rv;

#ifdef HAVE_CUDA
	if (!strcmp(b->o.backend, "cuda"))
		rv = ld_backend_cuda_open(0, 0, be, err, sizeof(err));
	else
#endif
		rv = ld_backend_open(b->o.backend, be, err, sizeof(err));
	if (rv)
		fprintf(stderr, "cuda_bench: %s\n", err);
	return rv;
}

static void sync_dev(struct bench *b)
{
#ifdef HAVE_CUDA
	if (!strcmp(b->o.backend, "cuda"))
		cudaDeviceSynchronize();
#else
	(void)b;
#endif
}

/* Compares this run's generated tokens with the resident run's. */
static int same_tokens(struct bench *b, struct run *r, const int *pre)
{
	for (int i = 0; i < b->o.pre_seqs; i++)
		if (pre[i] != b->ref_pre[i])
			return 0;
	return !memcmp(r->gen, b->ref, sizeof(b->ref));
}

static int distinct(const int *t, int n)
{
	int d = 0;

	for (int i = 0; i < n; i++) {
		int j = 0;
		while (j < i && t[j] != t[i])
			j++;
		d += j == i;
	}
	return d;
}

static void report(struct bench *b, struct run *r, double frac, size_t slots, size_t all,
		   double setup, const struct res *pre, const struct res *d1, const struct res *db)
{
	FILE *f = b->json;
	/* -1: this is the reference run. */
	double ident = r->record ? -1 : r->same;

	printf("| %s | %s | %.1f%% (%zu/%zu) | %.1f | %.2f | %.2f | %.1f | %.1f | %.3f | %s |\n",
	       cache_policy_name(b->o.pol), mode_name[r->mode], 100.0 * (double)slots / (double)all,
	       slots, all, pre->tokens / pre->secs, d1->tokens / d1->secs, db->tokens / db->secs,
	       (double)d1->s.bytes_loaded / d1->tokens / 1048576.0,
	       (double)db->s.bytes_loaded / db->tokens / 1048576.0,
	       (double)d1->s.hits / (double)(d1->s.hits + d1->s.misses ? d1->s.hits + d1->s.misses : 1),
	       ident < 0 ? "ref" : ident ? "yes" : "NO");
	fflush(stdout);
	if (!f)
		return;
	fprintf(f, "{\"backend\": \"%s\", \"policy\": \"%s\", \"prefetch\": \"%s\", "
		"\"frac\": %.4f, \"slots\": %zu, \"all_experts\": %zu, \"expert_bytes\": %zu, "
		"\"layers\": %d, \"experts\": %d, \"top_k\": %d, \"setup_seconds\": %.3f, "
		"\"tokens_identical\": %s, \"d1_distinct_tokens\": %d, \"prefetch_refused\": %llu, ",
		b->o.backend, cache_policy_name(b->o.pol), mode_name[r->mode], frac, slots, all,
		ld_store_info(b->st)->expert_bytes, b->L, b->E, b->K, setup,
		ident < 0 ? "null" : ident ? "true" : "false",
		distinct(r->gen[0] + PROMPT, WARM + STEPS), (unsigned long long)r->n_pf_fail);
	put_res(f, "prefill", pre, 0);
	put_res(f, "decode_b1", d1, 0);
	put_res(f, "decode_b16", db, 1);
	fprintf(f, "}\n");
	fflush(f);
}

static int run(struct bench *b, double frac, enum mode mode)
{
	const struct ld_config *c = &b->m->cfg;
	size_t all = (size_t)c->n_moe_layers * (size_t)c->n_experts;
	size_t slots = frac >= 1 ? all : (size_t)((double)all * frac);
	struct run *r = calloc(1, sizeof(*r));
	struct ld_backend *be = NULL;
	float *logits = malloc((size_t)BATCH * b->V * sizeof(float));
	struct res pre = {0}, d1 = {0}, db = {0};
	int pam[8] = {0}, rv = -ENOMEM, ctx = b->o.pre_len;
	double t0 = now();
	char err[256];

	if (!r || !logits)
		goto out;
	r->b = b;
	r->mode = mode;
	memset(r->gen, 0xff, sizeof(r->gen));
	slots = slots ? slots : 1;
	if ((rv = open_backend(b, &be)))
		goto out;
	struct cache_opts o = {.n_layers = c->n_moe_layers, .n_experts = c->n_experts,
			       .expert_bytes = ld_store_info(b->st)->expert_bytes,
			       .n_slots = slots, .policy = b->o.pol, .store = b->st,
			       .backend = be, .skip_verify = true};
	if ((rv = cache_open(&o, &r->ca)))
		goto out;
	struct ld_expert_src src = cache_expert_src(r->ca);
	ctx = ctx > PROMPT + WARM + STEPS + 8 ? ctx : PROMPT + WARM + STEPS + 8;
	if ((rv = eng_open(b->m, &src, ctx, &r->e)))
		goto out;
	struct eng_hooks h = {.before_moe = before_moe, .on_route = on_route, .ctx = r};
	eng_set_hooks(r->e, &h);
	if (frac >= 1 && (rv = resident_prep(r, logits)))
		goto out;
	if (mode == M_CEPR) {
		if ((rv = pred_open(PRED_CEPR, b->L, b->E, b->K, NULL, &r->p)) ||
		    (rv = pred_load(r->p, b->pred_path, err, sizeof(err))))
			goto out;
		r->learn = 1;
	}
	/* Warm-up off the clock (cuBLAS handles, first launches). */
	{
		struct res w;
		if ((rv = decode(r, 1, -1, 9000, 16, 0, 2, logits, &w)))
			goto out;
	}
	sync_dev(b);
	double setup = now() - t0;
	r->record = frac >= 1;
	if ((rv = prefill(r, logits, &pre, pam)) ||
	    (rv = decode(r, 1, 0, 0, PROMPT, WARM, STEPS, logits, &d1)) ||
	    (rv = decode(r, BATCH, 1, 1000, BPROMPT, BWARM, BSTEPS, logits, &db)))
		goto out;
	if (frac >= 1 && mode == M_NONE) {
		memcpy(b->ref, r->gen, sizeof(b->ref));
		memcpy(b->ref_pre, pam, sizeof(pam));
		b->have_ref = 1;
	} else {
		r->same = same_tokens(b, r, pam);
	}
	report(b, r, frac, slots, all, setup, &pre, &d1, &db);
out:
	if (rv) {
		fprintf(stderr, "cuda_bench: %s %s %.3f: error %d\n", cache_policy_name(b->o.pol),
			mode_name[mode], frac, rv);
		if (r && r->ca) {
			cache_last_error(r->ca, err, sizeof(err));
			fprintf(stderr, "cuda_bench: cache: %s\n", err);
		}
	}
	if (r) {
		eng_close(r->e);
		cache_close(r->ca);
		pred_close(r->p);
	}
	ld_backend_close(be);
	free(logits);
	free(r);
	return rv;
}

static int parse_list(char *s, struct opts *o, int modes)
{
	for (char *t = strtok(s, ","); t; t = strtok(NULL, ",")) {
		if (!modes) {
			if (o->n_fracs == MAXFRAC)
				return -EINVAL;
			o->fracs[o->n_fracs++] = atof(t);
			continue;
		}
		int m = 0;
		while (m < M_N && strcmp(t, mode_name[m]))
			m++;
		if (m == M_N)
			return -EINVAL;
		o->modes[m] = 1;
	}
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"backend", 1, 0, 'b'}, {"policy", 1, 0, 'p'}, {"fracs", 1, 0, 'f'},
		{"prefetch", 1, 0, 'x'}, {"json", 1, 0, 'j'}, {"deadline", 1, 0, 'd'},
		{"prefill", 1, 0, 'P'}, {"f32-pack", 0, 0, 'F'}, {0, 0, 0, 0}};
	int ch;

	*o = (struct opts){.backend = "cuda", .pol = CACHE_LRU, .pre_seqs = 4, .pre_len = 512};
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if ((ch == 'b' && (o->backend = optarg, 0)) ||
		    (ch == 'p' && cache_policy_parse(optarg, &o->pol)) ||
		    (ch == 'f' && parse_list(optarg, o, 0)) ||
		    (ch == 'x' && parse_list(optarg, o, 1)) ||
		    (ch == 'j' && (o->json = optarg, 0)) || (ch == 'F' && (o->f32_pack = true, 0)) ||
		    (ch == 'd' && (o->deadline = atof(optarg), 0)) ||
		    (ch == 'P' && (sscanf(optarg, "%dx%d", &o->pre_seqs, &o->pre_len) != 2 ||
				   o->pre_seqs < 1 || o->pre_seqs > 8 || o->pre_len < 1)) ||
		    ch == '?')
			return -EINVAL;
	}
	if (argc - optind != 2)
		return -EINVAL;
	o->model = argv[optind];
	o->pack = argv[optind + 1];
	if (!o->n_fracs)
		o->fracs[o->n_fracs++] = 1;
	if (!o->n_modes)
		for (int m = 0; m < M_N; m++)
			o->n_modes += o->modes[m];
	if (!o->n_modes)
		o->modes[M_NONE] = o->n_modes = 1;
	return 0;
}

int main(int argc, char **argv)
{
	struct bench *b = calloc(1, sizeof(*b));
	char err[512];
	int rv = 0;

	if (!b || parse(argc, argv, &b->o)) {
		fprintf(stderr, "usage: cuda_bench [--backend cuda|host] [--policy fifo|lru|lfu] "
			"[--fracs 1,0.5,...] [--prefetch none,cepr,oracle] [--json FILE] "
			"[--deadline SECONDS] [--prefill SxP] [--f32-pack] MODEL_DIR PACK\n");
		return 2;
	}
	b->t0 = now();
	if (ld_model_open(b->o.model, &b->m, err, sizeof(err)) ||
	    ld_store_ensure_dtype(b->m, b->o.pack, !strcmp(b->o.backend, "cuda") &&
				  b->m->dtype == LD_BF16 && !b->o.f32_pack ? LD_BF16 : LD_F32,
				  &b->st, err, sizeof(err))) {
		fprintf(stderr, "cuda_bench: %s\n", err);
		return 1;
	}
	b->L = b->m->cfg.n_moe_layers;
	b->E = b->m->cfg.n_experts;
	b->K = b->m->cfg.top_k;
	b->V = b->m->cfg.vocab_size;
	b->rec = malloc((size_t)NSEQ * MAXPOS * b->L * b->K * sizeof(int));
	if (!b->rec || (b->o.json && !(b->json = fopen(b->o.json, "a")))) {
		perror("cuda_bench");
		return 1;
	}
	memset(b->rec, 0xff, (size_t)NSEQ * MAXPOS * b->L * b->K * sizeof(int));
	memset(b->ref, 0xff, sizeof(b->ref));
	fprintf(stderr, "cuda_bench: model and store open (%.2f s)\n", now() - b->t0);
	printf("| policy | prefetch | budget (slots) | prefill tok/s (%dx%d) | decode tok/s b1 "
	       "| decode tok/s b%d | H2D MiB/token b1 | H2D MiB/token b%d | hit rate b1 "
	       "| tokens = resident |\n|---|---|---|---|---|---|---|---|---|---|\n",
	       b->o.pre_seqs, b->o.pre_len, BATCH, BATCH);
	/* Resident first (reference tokens, routes, cepr training), then each
	 * prefetch mode over every budget. */
	rv = run(b, 1, M_NONE);
	for (int m = 0; m < M_N && !rv; m++) {
		if (!b->o.modes[m] || (m == M_CEPR && !b->have_pred))
			continue;
		for (int i = 0; i < b->o.n_fracs && !rv; i++) {
			if (b->o.fracs[i] >= 1)
				continue;
			if (b->o.deadline > 0 && now() - b->t0 > b->o.deadline) {
				printf("| %s | %s | %.1f%% | skipped: past --deadline %.0f s |\n",
				       cache_policy_name(b->o.pol), mode_name[m],
				       100 * b->o.fracs[i], b->o.deadline);
				continue;
			}
			rv = run(b, b->o.fracs[i], (enum mode)m);
		}
	}
	if (b->have_pred)
		unlink(b->pred_path);
	if (b->json)
		fclose(b->json);
	ld_store_close(b->st);
	ld_model_close(b->m);
	free(b->rec);
	free(b);
	return rv ? 1 : 0;
}
