/* Throughput of the engine's CUDA path over GPU expert slots (issue 6): for
 * all experts resident and for each cache budget (fraction of all experts),
 *   prefill  S prompts of P tokens in one eng_batch (tok/s),
 *   decode   batch 1 and batch 16 (tok/s),
 * with host-to-GPU bytes and expert acquires per token and the cache
 * counters of each phase.  Every budget's greedy tokens are compared with
 * the resident run's (the path is exact).  One JSON object per
 * configuration (--json).  The backend is opened once; each configuration
 * opens its cache (slot count) and engine on it.
 *
 * Prefetch modes (bench/bench_route.c; "prompt call" = any eng_batch of
 * prompts: the timed prefill and the prompt before each decode phase):
 *   none    misses load on demand.
 *   all     DeepSpeed/accelerate-style layer-ahead prefetch: when MoE layer
 *           l starts, layer l-1's prefetch pins go and all E experts of
 *           layer l+1 are cache_prefetch'ed (pinned until l+1 has passed),
 *           as far as slots allow (refusals: "prefetch_refused").  Decode
 *           wraps (the last layer prefetches the next step's layer 0); a
 *           prompt call stops at its last layer.
 *   freq, cepr  the daemon's use of a predictor.  Prompt calls: the
 *           predictor process's batch table (pred_predict_batch over the
 *           call's tokens, want = slots / layers in [top_k, E], as
 *           rt_want_per_layer), its layer 0 prefetched before the call, then
 *           the worker's before_moe (unpin l-1, prefetch table layers l and
 *           l+1), all pins dropped after the call.  Decode: the worker's
 *           next-layer scheme (worker_route.c prefetch_next): after the
 *           router of layer l, top_k experts (--prefetch-k: that many,
 *           the worker's predictor.prefetch_k) of layer l+1 (after the last
 *           layer: layer 0 of the next token) are predicted, prefetched and
 *           pinned until their layer has passed.  cepr: FLAME's predictor
 *           from the token's path, as the worker.  freq: P(expert | layer,
 *           token id) with the id being decoded (layer 0 of the next token:
 *           id unknown, freq's per-layer popularity); the daemon itself
 *           runs freq only in the predictor process (tables) and always
 *           predicts decode with cepr, so freq's decode rows put freq in
 *           cepr's place.  Both are trained in the resident run on the
 *           decode tokens of 16 other prompts (--train-steps each), loaded
 *           into every budget run, and learn online after each decode step.
 *   oracle  decode as cepr, but from the resident run's own routes (the
 *           bound for any predictor on this path); prompt calls: none.
 * Policies: none, all and oracle run with lru only (the list is ignored);
 * freq and cepr run with every policy of --policy.  The resident run: lru.
 *
 * Routing: synthetic (the model's router; mkmodel --skewed) or
 * trace:PATH, replayed: override_route replaces each token's experts with
 * the trace's for that layer (weights: the router's probabilities of them,
 * renormalised when norm_topk_prob).  Consecutive trace tokens feed a
 * sequence's consecutive positions; disjoint parts, in this order: the b1
 * sequence, the 16 b16 sequences, 16 training prompts (also the warm-up's),
 * the prefill prompts (the rest of the trace, wrapped when shorter).
 * Training steps shrink to fit 3/4 of what b1 and b16 leave.  The trace has
 * no token ids: in replay, freq keys on -1 (per-layer popularity).  With
 * override_route set the engine's CUDA fast path (only taken when it is
 * NULL) is off in every replay row, the resident one included: replay
 * rows run the host-synchronised path ("override_route": true;
 * "fast_calls": the engine's forward calls that took the fast path).
 *
 *   cuda_bench [--backend cuda|host] [--policy lru,fifo,lfu] [--fracs 1,0.5,...]
 *              [--prefetch none,all,freq,cepr,oracle] [--routing synthetic|trace:PATH]
 *              [--json FILE] [--deadline S] [--prefill SxP] [--steps1 W,S]
 *              [--steps16 W,S] [--train-steps N] [--prefetch-k K] [--f32-pack]
 *              [--scan 0|1] [--prefill-calls N] MODEL_DIR PACK
 * Modes run in --prefetch's order, each over its policies, then budgets;
 * none starts past --deadline.  --steps1/--steps16: warm-up and timed
 * decode steps at batch 1 (8,64) and 16 (4,32); --train-steps 48.  cuda
 * backend, bf16 model: the pack holds bf16 experts (--f32-pack: f32).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "bench/bench_opts.h"
#include "bench/bench_route.h"
#include "engine/sample.h"
#include "loader/backend.h"
#include "loader/clock.h"
#include "loader/store.h"

#define NSEQ 17                /* seq 0: batch-1 decode; 1..16: batch decode */
#define MAXPOS BO_MAXPOS
#define PROMPT BO_PROMPT
#define BATCH BO_BATCH         /* b16, and the training prompts */
#define BPROMPT BO_BPROMPT

struct bench {
	struct bench_opts o;
	struct ld_model *m;
	struct ld_store *st;
	struct ld_backend *be;
	struct pred_trace *trace;
	char routing[128];
	int L, E, K, V, tsteps;
	int *rec;                  /* resident routes [NSEQ][MAXPOS][L][K] */
	int ref[NSEQ][MAXPOS];     /* resident greedy tokens, -1 none */
	int ref_pre[8];
	size_t part[BO_NPART][2];  /* replay: bo_plan_trace */
	char pred_path[2][64];     /* trained freq, cepr */
	int have_pred[2];
	FILE *json;
	double t0, be_secs;
};

/* One configuration. */
struct run {
	struct bench *b;
	struct br_ctx h;
	struct eng *e;
	enum cache_policy pol;
	int same;
	int gen[NSEQ][MAXPOS];
};

static int tok(int i, int V)
{
	return (int)(((unsigned)i * 2654435761u >> 7) % (unsigned)V);
}

static int seqs_new(struct run *r, struct br_seq *bs, int n, int id0, int cap)
{
	int rv;

	for (int i = 0; i < n; i++) {
		bs[i].id = id0 < 0 ? -1 : id0 + i;
		if ((rv = br_seq_init(&r->h, &bs[i])))
			return rv;
		bo_set_part(r->b->trace ? r->b->part : NULL, r->b->o.pre_len, &bs[i],
			    id0 < 0 ? BO_TRAIN : id0 == 0 ? BO_B1 : BO_B16, id0 > 0 ? id0 - 1 + i : i);
		if ((rv = eng_seq_new_cap(r->e, cap, &bs[i].s)))
			return rv;
		eng_seq_set_user(bs[i].s, &bs[i]);
	}
	return 0;
}

static void seqs_free(struct br_seq *bs, int n)
{
	for (int i = 0; i < n; i++) {
		eng_seq_free(bs[i].s);
		br_seq_free(&bs[i]);
		memset(&bs[i], 0, sizeof(bs[i]));
	}
}

/* One prompt call (eng_batch) with the mode's prompt-call prefetch. */
static int prompt_call(struct run *r, struct eng_seq *const *es, const int *const *pt,
		       const int *pn, int n, float *logits)
{
	int rv;

	r->h.phase = BR_PREFILL;
	if (!(rv = br_call_begin(&r->h, pt, pn, n)))
		rv = eng_batch(r->e, es, pt, pn, n, logits);
	br_call_end(&r->h);
	r->h.phase = BR_OFF;
	return rv;
}

/* n sequences: prompts of plen tokens (token ids from base), then warm +
 * steps decode steps together, the last `steps` timed into x.  Generated
 * tokens go to r->gen[id0 + i] (id0 >= 0). */
static int decode(struct run *r, int n, int id0, int base, int plen, int warm, int steps,
		  float *logits, struct br_res *x)
{
	struct bench *b = r->b;
	struct br_seq bs[BATCH] = {0};
	struct eng_seq *es[BATCH];
	struct br_seq *ps[BATCH];
	int prompts[BATCH][PROMPT], next[BATCH], pn[BATCH], rv;
	const int *pt[BATCH];

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
	if ((rv = prompt_call(r, es, pt, pn, n, logits)))
		goto out;
	for (int i = 0; i < n; i++)
		next[i] = eng_argmax(logits + (size_t)i * b->V, b->V);
	r->h.phase = BR_DECODE;
	struct br_dec d = {&r->h, r->e, ps, n, plen, MAXPOS, {0}};
	for (int i = 0; i < n && id0 >= 0; i++)
		d.gen[i] = r->gen[id0 + i];
	br_dec_feed(&d, next);
	if (!(rv = br_dec_greedy(&d, es, warm, next))) {
		br_res_start(&r->h, x);
		if (!(rv = br_dec_greedy(&d, es, steps, next)))
			br_res_end(&r->h, x, n * steps);
	}
out:
	r->h.phase = BR_OFF;
	if (r->h.mode != BR_NONE && r->h.ca)
		cache_unpin_all(r->h.ca);
	seqs_free(bs, n);
	return rv;
}

/* S prompts of P tokens in one eng_batch, timed: prompts first ..
 * first + S - 1 (0: the ones whose tokens every run compares). */
static int prefill(struct run *r, float *logits, struct br_res *x, int *argmax, int first)
{
	struct bench *b = r->b;
	int S = b->o.pre_seqs, P = b->o.pre_len, rv = 0;
	struct br_seq bs[8] = {0};
	struct eng_seq *s[8] = {0};
	int *tk = malloc((size_t)S * P * sizeof(int)), n[8];
	const int *tp[8];

	if (!tk)
		return -ENOMEM;
	for (int i = 0; i < S && !rv; i++) {
		for (int j = 0; j < P; j++)
			tk[i * P + j] = tok(20000 + (first + i) * P + j, b->V);
		tp[i] = tk + (size_t)i * P;
		n[i] = P;
		bs[i].id = -1;
		bo_set_part(b->trace ? b->part : NULL, P, &bs[i], BO_PRE, first + i);
		if (!(rv = br_seq_init(&r->h, &bs[i])) && !(rv = eng_seq_new_cap(r->e, P, &s[i])))
			eng_seq_set_user(s[i], &bs[i]);
	}
	if (!rv) {
		br_res_start(&r->h, x);
		if (!(rv = prompt_call(r, s, tp, n, S, logits)))
			br_res_end(&r->h, x, S * P);
		for (int i = 0; i < S && !rv; i++)
			argmax[i] = eng_argmax(logits + (size_t)i * b->V, b->V);
	}
	for (int i = 0; i < S; i++) {
		eng_seq_free(s[i]);
		br_seq_free(&bs[i]);
	}
	free(tk);
	return rv;
}

/* Resident run: every expert loaded off the clock; with freq or cepr asked
 * for, they learn from BATCH other prompts and are saved for the budgets. */
static int resident_prep(struct run *r, float *logits)
{
	static const enum pred_kind kind[2] = {PRED_FREQ, PRED_CEPR};
	struct bench *b = r->b;
	struct br_res x;
	char err[256];
	int rv = 0;

	for (int l = 0; l < b->L; l++)
		for (int e = 0; e < b->E; e++) {
			const float *w;
			if ((rv = cache_acquire(r->h.ca, l, e, &w)))
				return rv;
			cache_release(r->h.ca, l, e);
		}
	for (int i = 0; i < 2 && !rv; i++)
		if (b->o.modes[i ? BR_CEPR : BR_FREQ])
			rv = pred_open(kind[i], b->L, b->E, b->K, NULL, &r->h.obs[i]);
	if (rv || (!r->h.obs[0] && !r->h.obs[1]))
		return rv;
	if ((rv = decode(r, BATCH, -1, 5000, BPROMPT, 0, b->tsteps, logits, &x)))
		return rv;
	for (int i = 0; i < 2; i++) {
		if (!r->h.obs[i])
			continue;
		snprintf(b->pred_path[i], sizeof(b->pred_path[i]), "/tmp/cuda_bench_%s.%d",
			 pred_kind_name(kind[i]), (int)getpid());
		if ((rv = pred_save(r->h.obs[i], b->pred_path[i], err, sizeof(err)))) {
			fprintf(stderr, "cuda_bench: %s\n", err);
			return rv;
		}
		b->have_pred[i] = 1;
		pred_close(r->h.obs[i]);
		r->h.obs[i] = NULL;
	}
	fprintf(stderr, "cuda_bench: predictors trained on %d decode tokens (%.2f s)\n",
		BATCH * b->tsteps, x.secs);
	return 0;
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

/* The JSON object's fields before the phases. */
static void put_head(FILE *f, struct bench *b, struct run *r, double frac, size_t slots,
		     size_t all, double setup, int ref)
{
	const struct bench_opts *o = &b->o;

	fprintf(f, "{\"backend\": \"%s\", \"routing\": \"%s\", \"override_route\": %s, "
		"\"policy\": \"%s\", \"prefetch\": \"%s\", \"frac\": %.4f, \"slots\": %zu, "
		"\"all_experts\": %zu, \"expert_bytes\": %zu, \"layers\": %d, \"experts\": %d, "
		"\"top_k\": %d, \"table_want\": %d, \"prefetch_k\": %d, \"scan_resistant\": %s, "
		"\"host_threads\": %d, "
		"\"prefill_calls\": %d, "
		"\"backend_open_seconds\": %.3f, "
		"\"setup_seconds\": %.3f, \"steps\": {\"b1\": [%d, %d, %d], \"b16\": [%d, %d, %d], "
		"\"prefill\": [%d, %d], \"train\": [%d, %d, %d]}, \"tokens_identical\": %s, "
		"\"d1_distinct_tokens\": %d, \"prefetch_refused\": %llu, \"freq_keyed\": %s, "
		"\"fast_calls\": %llu, ",
		o->backend, b->routing, b->trace ? "true" : "false", cache_policy_name(r->pol),
		br_mode_name[r->h.mode], frac, slots, all, ld_store_info(b->st)->expert_bytes,
		b->L, b->E, b->K, r->h.want, r->h.pk, o->scan ? "true" : "false", o->host_threads,
		o->pre_calls,
		b->be_secs, setup, PROMPT, o->w1, o->s1, BPROMPT,
		o->w16, o->s16, o->pre_seqs, o->pre_len, BATCH, BPROMPT, b->tsteps,
		ref ? "null" : r->same ? "true" : "false",
		distinct(r->gen[0] + PROMPT, o->w1 + o->s1), (unsigned long long)r->h.n_pf_fail,
		r->h.keyed ? "true" : "false", (unsigned long long)eng_fast_steps(r->e));
	if (b->trace)
		fprintf(f, "\"trace_tokens\": %zu, \"trace_parts\": {\"b1\": [%zu, %zu], "
			"\"b16\": [%zu, %zu], \"train\": [%zu, %zu], \"prefill\": [%zu, %zu]}, ",
			b->trace->n_tokens, b->part[BO_B1][0], b->part[BO_B1][1], b->part[BO_B16][0],
			b->part[BO_B16][1], b->part[BO_TRAIN][0], b->part[BO_TRAIN][1],
			b->part[BO_PRE][0], b->part[BO_PRE][1]);
}

static void report(struct bench *b, struct run *r, double frac, size_t slots, size_t all,
		   double setup, const struct br_res *pre, const struct br_res *d1, const struct br_res *db)
{
	int ref = frac >= 1;

	printf("| %s | %s | %s | %.1f%% (%zu/%zu) | %.1f | %.2f | %.2f | %.1f | %.1f | %.3f | %s |\n",
	       b->routing, cache_policy_name(r->pol), br_mode_name[r->h.mode],
	       100.0 * (double)slots / (double)all, slots, all, pre->tokens / pre->secs,
	       d1->tokens / d1->secs, db->tokens / db->secs,
	       (double)d1->s.bytes_loaded / d1->tokens / 1048576.0,
	       (double)db->s.bytes_loaded / db->tokens / 1048576.0,
	       (double)d1->s.hits / (double)(d1->s.hits + d1->s.misses ? d1->s.hits + d1->s.misses : 1),
	       ref ? "ref" : r->same ? "yes" : "NO");
	fflush(stdout);
	if (!b->json)
		return;
	put_head(b->json, b, r, frac, slots, all, setup, ref);
	br_res_json(b->json, "prefill", pre, 0);
	br_res_json(b->json, "decode_b1", d1, 0);
	br_res_json(b->json, "decode_b16", db, 1);
	fprintf(b->json, "}\n");
	fflush(b->json);
}

/* Cache, engine, hooks and (freq/cepr) the trained predictor. */
static int setup_run(struct bench *b, struct run *r, size_t slots)
{
	int ctx = b->o.pre_len, rv;
	char err[256];

	r->h.norm_topk = b->m->cfg.norm_topk_prob;
	r->h.keyed = !b->trace;
	r->h.rec = b->rec;
	r->h.maxpos = MAXPOS;
	r->h.trace = b->trace;
	/* The predictor process's table length: rt_want_per_layer. */
	r->h.want = (int)(slots / (size_t)b->L);
	r->h.want = r->h.want < b->K ? b->K : r->h.want > b->E ? b->E : r->h.want;
	r->h.pk = b->o.prefetch_k ? (b->o.prefetch_k < b->E ? b->o.prefetch_k : b->E) : b->K;
	struct cache_opts o = {.n_layers = b->L, .n_experts = b->E,
			       .expert_bytes = ld_store_info(b->st)->expert_bytes,
			       .n_slots = slots, .policy = r->pol, .store = b->st,
			       .backend = b->be, .skip_verify = true,
			       /* The baseline loads whole layers, used or not. */
			       .keep_prefetches = r->h.mode == BR_ALL,
			       .scan_resistant = b->o.scan, .host_threads = b->o.host_threads};
	if ((rv = cache_open(&o, &r->h.ca)))
		return rv;
	struct ld_expert_src src = cache_expert_src(r->h.ca);
	int need[3] = {PROMPT + b->o.w1 + b->o.s1, BPROMPT + b->o.w16 + b->o.s16,
		       BPROMPT + b->tsteps};
	for (int i = 0; i < 3; i++)
		ctx = ctx > need[i] + 8 ? ctx : need[i] + 8;
	if ((rv = eng_open(b->m, &src, ctx, &r->e)))
		return rv;
	br_set_hooks(&r->h, r->e);
	if (r->h.mode != BR_FREQ && r->h.mode != BR_CEPR)
		return 0;
	int i = r->h.mode == BR_CEPR;
	if ((rv = pred_open(i ? PRED_CEPR : PRED_FREQ, b->L, b->E, b->K, NULL, &r->h.p)))
		return rv;
	if ((rv = pred_load(r->h.p, b->pred_path[i], err, sizeof(err))))
		fprintf(stderr, "cuda_bench: %s\n", err);
	r->h.learn = 1;
	return rv;
}

static int run(struct bench *b, double frac, enum br_mode mode, enum cache_policy pol)
{
	size_t all = (size_t)b->L * (size_t)b->E;
	size_t slots = frac >= 1 ? all : (size_t)((double)all * frac);
	struct run *r = calloc(1, sizeof(*r));
	float *logits = malloc((size_t)BATCH * b->V * sizeof(float)), *lg = logits;
	size_t eb = ld_store_info(b->st)->expert_bytes;
	struct br_res pre = {.expert_bytes = eb}, d1 = pre, db = pre, w = pre;
	int pam[8] = {0}, rv = -ENOMEM;
	double t0 = ld_now();
	char err[256];

	if (!r || !logits || (rv = br_init(&r->h, b->L, b->E, b->K)))
		goto out;
	r->b = b;
	r->pol = pol;
	r->h.mode = mode;
	memset(r->gen, 0xff, sizeof(r->gen));
	slots = slots ? slots : 1;
	if ((rv = setup_run(b, r, slots)))
		goto out;
	/* The engine's own rows when it has them, as moed's worker uses (on
	 * the CUDA path, pinned: no host copy of a step's logits). */
	if ((lg = eng_logits_buffer(r->e)) == NULL)
		lg = logits;
	if (frac >= 1 && (rv = resident_prep(r, lg)))
		goto out;
	/* Warm-up off the clock (cuBLAS handles, first launches; all resident:
	 * also a prefill, whose kernels the decode does not load). */
	if ((rv = decode(r, 1, -1, 9000, 16, 0, 2, lg, &w)) ||
	    (frac >= 1 && (rv = prefill(r, lg, &pre, pam, 0))))
		goto out;
	/* --prefill-calls: other prompts first, off the clock (a cache that
	 * earlier prompts have passed through). */
	for (int k = 1; k < b->o.pre_calls && !rv; k++)
		rv = prefill(r, lg, &w, pam, k * b->o.pre_seqs);
	if (rv)
		goto out;
#ifdef HAVE_CUDA
	if (!strcmp(b->o.backend, "cuda"))
		cudaDeviceSynchronize();
#endif
	double setup = ld_now() - t0;
	r->h.record = frac >= 1;
	if ((rv = prefill(r, lg, &pre, pam, 0)) ||
	    (rv = decode(r, 1, 0, 0, PROMPT, b->o.w1, b->o.s1, lg, &d1)) ||
	    (rv = decode(r, BATCH, 1, 1000, BPROMPT, b->o.w16, b->o.s16, lg, &db)))
		goto out;
	if (frac >= 1) {
		memcpy(b->ref, r->gen, sizeof(b->ref));
		memcpy(b->ref_pre, pam, sizeof(pam));
	} else {
		r->same = same_tokens(b, r, pam);
	}
	report(b, r, frac, slots, all, setup, &pre, &d1, &db);
out:
	if (rv) {
		fprintf(stderr, "cuda_bench: %s %s %s %.3f: error %d\n", b->routing,
			cache_policy_name(pol), br_mode_name[mode], frac, rv);
		if (r && r->h.ca) {
			cache_last_error(r->h.ca, err, sizeof(err));
			fprintf(stderr, "cuda_bench: cache: %s\n", err);
		}
	}
	if (r) {
		eng_close(r->e);
		cache_close(r->h.ca);
		pred_close(r->h.p);
		for (int i = 0; i < 2; i++)
			pred_close(r->h.obs[i]);
		br_fini(&r->h);
	}
	free(logits);
	free(r);
	return rv;
}


/* Model, store, routing record, trace and backend. */
static int open_all(struct bench *b)
{
	char err[512];
	int rv;
	double t;

	if ((rv = ld_model_open(b->o.model, &b->m, err, sizeof(err))) ||
	    (rv = ld_store_ensure_dtype(b->m, b->o.pack, !strcmp(b->o.backend, "cuda") &&
					b->m->dtype == LD_BF16 && !b->o.f32_pack ? LD_BF16 : LD_F32,
					&b->st, err, sizeof(err))))
		goto fail;
	b->L = b->m->cfg.n_moe_layers;
	b->E = b->m->cfg.n_experts;
	b->K = b->m->cfg.top_k;
	b->V = b->m->cfg.vocab_size;
	b->tsteps = b->o.tsteps;
	snprintf(b->routing, sizeof(b->routing), "synthetic");
	if (b->o.trace) {
		const char *base = strrchr(b->o.trace, '/');

		if ((rv = pred_trace_load(b->o.trace, &b->trace, err, sizeof(err))) ||
		    (rv = br_trace_check(b->trace, b->o.trace, b->L, b->E, b->K, err, sizeof(err))) ||
		    (rv = bo_plan_trace(&b->o, b->trace->n_tokens, b->o.trace, b->part, &b->tsteps,
					err, sizeof(err))))
			goto fail;
		snprintf(b->routing, sizeof(b->routing), "replay:%s", base ? base + 1 : b->o.trace);
	}
	if (!(b->rec = malloc((size_t)NSEQ * MAXPOS * b->L * b->K * sizeof(int))) ||
	    (b->o.json && !(b->json = fopen(b->o.json, "a")))) {
		snprintf(err, sizeof(err), "%s: %s", b->o.json ? b->o.json : "routes",
			 strerror(errno));
		rv = -errno;
		goto fail;
	}
	memset(b->rec, 0xff, (size_t)NSEQ * MAXPOS * b->L * b->K * sizeof(int));
	memset(b->ref, 0xff, sizeof(b->ref));
	t = ld_now();
#ifdef HAVE_CUDA
	if (!strcmp(b->o.backend, "cuda"))
		rv = ld_backend_cuda_open(0, 0, &b->be, err, sizeof(err));
	else
#endif
		rv = ld_backend_open(b->o.backend, &b->be, err, sizeof(err));
	b->be_secs = ld_now() - t;
	if (!rv)
		return 0;
fail:
	fprintf(stderr, "cuda_bench: %s\n", err);
	return rv ? rv : -EINVAL;
}

/* Resident first (reference tokens, routes, training), then each prefetch
 * mode in --prefetch's order, over its policies, over the budgets. */
static int run_all(struct bench *b)
{
	const struct bench_opts *o = &b->o;
	int rv = run(b, 1, BR_NONE, CACHE_LRU);

	for (int i = 0; i < o->n_modes && !rv; i++) {
		enum br_mode m = o->order[i];
		int pred = m == BR_FREQ || m == BR_CEPR;

		if (pred && !b->have_pred[m == BR_CEPR])
			continue;
		for (int p = 0; p < (pred ? o->n_pols : 1) && !rv; p++) {
			enum cache_policy pol = pred ? o->pols[p] : CACHE_LRU;

			for (int f = 0; f < o->n_fracs && !rv; f++) {
				if (o->fracs[f] >= 1)
					continue;
				if (o->deadline > 0 && ld_now() - b->t0 > o->deadline) {
					printf("| %s | %s | %s | %.1f%% | skipped: past --deadline "
					       "%.0f s |\n", b->routing, cache_policy_name(pol),
					       br_mode_name[m], 100 * o->fracs[f], o->deadline);
					continue;
				}
				rv = run(b, o->fracs[f], m, pol);
			}
		}
	}
	return rv;
}

int main(int argc, char **argv)
{
	struct bench *b = calloc(1, sizeof(*b));
	int rv;

	if (!b || bo_parse(argc, argv, &b->o)) {
		fputs(bo_usage, stderr);
		free(b);
		return 2;
	}
	b->t0 = ld_now();
	if (!(rv = open_all(b))) {
		fprintf(stderr, "cuda_bench: model, store and backend open (%.2f s, backend %.2f s)"
			"; routing %s\n", ld_now() - b->t0, b->be_secs, b->routing);
		printf("| routing | policy | prefetch | budget (slots) | prefill tok/s (%dx%d) "
		       "| decode tok/s b1 | decode tok/s b%d | H2D MiB/token b1 "
		       "| H2D MiB/token b%d | hit rate b1 | tokens = resident |\n"
		       "|---|---|---|---|---|---|---|---|---|---|---|\n",
		       b->o.pre_seqs, b->o.pre_len, BATCH, BATCH);
		rv = run_all(b);
	}
	for (int i = 0; i < 2; i++)
		if (b->have_pred[i])
			unlink(b->pred_path[i]);
	if (b->json)
		fclose(b->json);
	ld_backend_close(b->be);
	ld_store_close(b->st);
	ld_model_close(b->m);
	pred_trace_free(b->trace);
	free(b->rec);
	free(b);
	return rv ? 1 : 0;
}
