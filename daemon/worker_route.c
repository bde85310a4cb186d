/* The worker's engine hooks: prefetch from the batch table before each MoE
 * layer, next-layer prediction during decode (FLAME's CEPR), the routing
 * record for TRACEs and counters, and trust mode's router override. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/worker.h"
#include "loader/cache.h"


int worker_tr_reserve(struct worker *w, int rows)
{
	size_t per = (size_t)w->n_layers * w->k;

	if (w->tr_n + rows <= w->tr_cap)
		return 0;
	int cap = (w->tr_n + rows) * 2;
	void *a = realloc(w->tr_exp, (size_t)cap * per * sizeof(uint16_t));
	if (!a)
		return -ENOMEM;
	w->tr_exp = a;
	if (!(a = realloc(w->tr_seq, (size_t)cap * sizeof(uint64_t))))
		return -ENOMEM;
	w->tr_seq = a;
	if (!(a = realloc(w->tr_pos, (size_t)cap * sizeof(uint32_t))))
		return -ENOMEM;
	w->tr_pos = a;
	if (!(a = realloc(w->tr_tok, (size_t)cap * sizeof(uint32_t))))
		return -ENOMEM;
	w->tr_tok = a;
	w->tr_cap = cap;
	return 0;
}

/* Pins the table's experts for one layer (async loads). */
void worker_prefetch_table_layer(struct worker *w, int layer)
{
	const struct proto_table *t = w->table;

	if (!t || layer >= t->n_layers)
		return;
	for (uint32_t i = t->layer_start[layer]; i < t->layer_start[layer + 1]; i++)
		cache_prefetch(w->rt.cache, layer, t->experts[i]);
}

static void mark_predicted(struct worker *w, int layer)
{
	const struct proto_table *t = w->table;

	memset(w->predicted, 0, (size_t)w->n_experts);
	if (!t || layer >= t->n_layers)
		return;
	for (uint32_t i = t->layer_start[layer]; i < t->layer_start[layer + 1]; i++)
		if (t->experts[i] < w->n_experts)
			w->predicted[t->experts[i]] = 1;
}

static void before_moe(void *ctx, int layer, const int *tokens, int n)
{
	struct worker *w = ctx;

	(void)tokens;
	(void)n;
	if (layer > 0)
		cache_unpin_layer(w->rt.cache, layer - 1);
	if (w->phase == PH_PREFILL) {
		worker_prefetch_table_layer(w, layer);
		worker_prefetch_table_layer(w, layer + 1);
	}
	mark_predicted(w, layer);
}

/* Decode: predict the experts of the layer after `layer` for this token (or
 * layer 0 of the next token, FLAME's circular step) and start loading them. */
static void prefetch_next(struct worker *w, struct wseq *s, int layer)
{
	int next = layer + 1, n;
	struct pred_tok t = {.token = -1, .index = -1, .cur = s->cur, .prev = s->prev};

	if (!w->pred)
		return;
	if (next == w->n_layers) {
		next = 0;
		t.cur = NULL;
		t.prev = s->cur;
	}
	n = pred_predict_layer(w->pred, &t, next, w->want_next, w->pnext);
	memset(s->pmask, 0, (size_t)w->n_experts);
	s->pmask_layer = next;
	for (int i = 0; i < n; i++) {
		cache_prefetch(w->rt.cache, next, w->pnext[i]);
		s->pmask[w->pnext[i]] = 1;
	}
	s->moe.experts_predicted += (uint64_t)n;
}

/* Trust mode (SiDA): the predicted experts replace the router's choice; their
 * weights are the router's probabilities for them, renormalised as the
 * family does.  Agreement with the router is counted as the fidelity. */
static int override_route(void *ctx, void *user, int layer, int pos, int token,
			  int *experts, float *wt, int k, const float *probs, int n_experts)
{
	struct worker *w = ctx;
	struct wseq *s = user;
	struct pred_tok t = {.token = token, .index = -1};
	struct pred *p = w->phase == PH_PREFILL ? w->freq : w->pred;
	int pick[k], n, agree = 0;

	(void)pos;
	(void)n_experts;
	if (w->phase == PH_STEP) {
		t.cur = s->cur;
		t.prev = s->prev;
	}
	if (!p || (n = pred_predict_layer(p, &t, layer, k, pick)) < k)
		return 0;  /* nothing predicted: the router decides */
	for (int i = 0; i < k; i++)
		for (int j = 0; j < k; j++)
			agree += pick[i] == experts[j];
	s->moe.experts_predicted_used += (uint64_t)agree;
	s->moe.experts_predicted += (uint64_t)k;
	s->overridden = 1;
	eng_route_set(pick, k, probs, w->norm_topk, experts, wt);
	return 1;
}

/* A miss of s's on (layer, x): its bytes count once a call, however many of
 * the call's rows of s use it. */
static void charge(struct worker *w, struct wseq *s, int layer, int x)
{
	uint64_t *c = s->charged + (size_t)layer * (size_t)w->n_experts + (size_t)x;

	if (*c != w->calls + 1) {
		*c = w->calls + 1;
		s->moe.bytes_loaded += w->expert_bytes;
	}
}

static void on_route(void *ctx, void *user, int layer, int pos, int token,
		     const int *experts, const float *wt, int k)
{
	struct worker *w = ctx;
	struct wseq *s = user;
	int row = w->phase == PH_PREFILL ? s->row0 + pos : s->row0;
	uint16_t *dst = w->tr_exp + ((size_t)row * w->n_layers + layer) * k;

	(void)wt;
	w->tr_seq[row] = s->id;
	w->tr_pos[row] = (uint32_t)pos;
	w->tr_tok[row] = (uint32_t)token;
	for (int i = 0; i < k; i++) {
		int x = experts[i];

		dst[i] = (uint16_t)x;
		s->cur[layer * k + i] = x;
		s->moe.experts_used++;
		/* In trust mode override_route counted agreement with the router. */
		if (!s->overridden && (w->phase == PH_PREFILL ? w->predicted[x] :
				       (s->pmask_layer == layer && s->pmask[x])))
			s->moe.experts_predicted_used++;
		/* The CUDA engine reports a layer's routes after its acquires. */
		if (cache_hit_now(w->rt.cache, layer, x)) {
			s->moe.hits++;
		} else {
			s->moe.misses++;
			charge(w, s, layer, x);
		}
	}
	s->overridden = 0;
	if (w->phase == PH_STEP)
		prefetch_next(w, s, layer);
}

/* Learns from the call's rows and publishes them as one TRACE. */
void worker_finish_call(struct worker *w)
{
	struct proto_trace tr = {
		.n_layers = (uint16_t)w->n_layers, .n_experts = (uint16_t)w->n_experts,
		.k = (uint16_t)w->k, .n_tokens = (uint32_t)w->tr_n,
		.seq_ids = w->tr_seq, .positions = w->tr_pos, .tokens = w->tr_tok,
		.experts = w->tr_exp,
	};
	void *buf;
	size_t len;

	if (w->pred && pred_learns(w->pred))
		pred_observe_rows(w->pred, w->tr_exp, w->tr_seq, w->tr_tok, (size_t)w->tr_n);
	if (w->freq)
		pred_observe_rows(w->freq, w->tr_exp, w->tr_seq, w->tr_tok, (size_t)w->tr_n);
	if (w->stats) {
		struct shstats_head *h = shstats_head(w->stats);

		if (w->phase == PH_STEP) {
			h->steps++;
			h->tokens_generated += (uint64_t)w->tr_n;
		} else {
			h->tokens_prefilled += (uint64_t)w->tr_n;
		}
		shstats_publish(w->stats, w->rt.cache);
	}
	if (w->tr_n && proto_encode_trace(&tr, 0, &buf, &len) == 0) {
		ipc_send(w->trace_out, buf, len, 1);
		free(buf);
	}
	w->tr_n = 0;
	w->calls++;
}

void worker_set_hooks(struct worker *w)
{
	struct eng_hooks h = {.before_moe = before_moe, .on_route = on_route,
			      .override_route = w->trust ? override_route : NULL, .ctx = w};

	eng_set_hooks(w->rt.eng, &h);
}
