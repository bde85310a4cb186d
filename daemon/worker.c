/* moed worker: takes BATCHes from the front, the predictor's TABLE for each,
 * pins the predicted experts ahead of compute, runs prefill and shared decode
 * steps (continuous batching), and answers with RESULTs; publishes the true
 * routing as TRACEs for the predictor to learn from. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cmds.h"
#include "daemon/ipc.h"
#include "daemon/log.h"
#include "daemon/rt.h"
#include "daemon/shstats.h"
#include "daemon/wseq.h"
#include "loader/cache.h"
#include "predictor/pred.h"

#define MAX_PENDING 256
#define N_TABLES 32

enum phase { PH_PREFILL, PH_STEP };

struct worker {
	struct moed_config cfg;
	struct rt rt;
	nng_socket in, out, tables_in, trace_out;
	struct pred *pred;         /* decode-time next-layer prediction (cepr) */
	struct pred *freq;         /* trust mode, prompt tokens: P(expert | token) */
	bool trust;                /* predictor.mode = trust: predictions replace the router */
	bool norm_topk;
	int want, n_layers, k, vocab, n_experts;
	size_t expert_bytes;
	struct wseq *act[256];
	int n_act;
	struct proto_msg *pend[MAX_PENDING];
	int n_pend;
	struct proto_msg *tables[N_TABLES];
	int table_next;
	/* The call in flight. */
	const struct proto_table *table;
	enum phase phase;
	int *pnext;                /* predicted experts for the next layer, per call */
	/* Routing of the call's rows, for TRACE: [rows][layers][k]. */
	uint16_t *tr_exp;
	uint64_t *tr_seq;
	uint32_t *tr_pos, *tr_tok;
	int tr_n, tr_cap;
	float *logits, *scratch;
	uint8_t *predicted;        /* [n_experts]: in the prefetch set of this layer */
	struct shstats_writer *stats;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static int tr_reserve(struct worker *w, int rows)
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
static void prefetch_table_layer(struct worker *w, int layer)
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
		prefetch_table_layer(w, layer);
		prefetch_table_layer(w, layer + 1);
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
	n = pred_predict_layer(w->pred, &t, next, w->want, w->pnext);
	memset(s->pmask, 0, (size_t)w->n_experts);
	s->pmask_layer = next;
	for (int i = 0; i < n; i++) {
		cache_prefetch(w->rt.cache, next, w->pnext[i]);
		s->pmask[w->pnext[i]] = 1;
	}
	s->moe.experts_predicted += (uint64_t)n;
}

static int by_id(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
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
	float sum = 0;

	(void)pos;
	(void)n_experts;
	if (w->phase == PH_STEP) {
		t.cur = s->cur;
		t.prev = s->prev;
	}
	if (!p || (n = pred_predict_layer(p, &t, layer, k, pick)) < k)
		return 0;  /* nothing predicted: the router decides */
	qsort(pick, (size_t)k, sizeof(int), by_id);
	for (int i = 0; i < k; i++)
		for (int j = 0; j < k; j++)
			agree += pick[i] == experts[j];
	s->moe.experts_predicted_used += (uint64_t)agree;
	s->moe.experts_predicted += (uint64_t)k;
	s->overridden = 1;
	for (int i = 0; i < k; i++)
		sum += (wt[i] = probs[pick[i]]);
	for (int i = 0; i < k; i++) {
		experts[i] = pick[i];
		if (w->norm_topk && sum > 0)
			wt[i] /= sum;
	}
	return 1;
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
		if (s->overridden)
			;  /* counted by override_route against the router */
		else if (w->phase == PH_PREFILL ? w->predicted[x] :
			 (s->pmask_layer == layer && s->pmask[x]))
			s->moe.experts_predicted_used++;
		if (cache_resident(w->rt.cache, layer, x)) {
			s->moe.hits++;
		} else {
			s->moe.misses++;
			s->moe.bytes_loaded += w->expert_bytes;
		}
	}
	s->overridden = 0;
	if (w->phase == PH_STEP)
		prefetch_next(w, s, layer);
}

/* Learns from the call's rows and publishes them as one TRACE. */
static void finish_call(struct worker *w)
{
	size_t per = (size_t)w->n_layers * w->k;
	int *cur = malloc(per * sizeof(int)), *prev = malloc(per * sizeof(int));
	struct proto_trace tr = {
		.n_layers = (uint16_t)w->n_layers, .n_experts = (uint16_t)w->n_experts,
		.k = (uint16_t)w->k, .n_tokens = (uint32_t)w->tr_n,
		.seq_ids = w->tr_seq, .positions = w->tr_pos, .tokens = w->tr_tok,
		.experts = w->tr_exp,
	};
	void *buf;
	size_t len;

	if (w->pred && pred_learns(w->pred) && cur && prev) {
		for (int r = 0; r < w->tr_n; r++) {
			struct pred_tok t = {.token = (int)w->tr_tok[r], .index = -1,
					     .cur = cur, .prev = NULL};

			for (size_t i = 0; i < per; i++)
				cur[i] = w->tr_exp[r * per + i];
			if (r > 0 && w->tr_seq[r - 1] == w->tr_seq[r]) {
				for (size_t i = 0; i < per; i++)
					prev[i] = w->tr_exp[(r - 1) * per + i];
				t.prev = prev;
			}
			pred_observe(w->pred, &t);
			if (w->freq)
				pred_observe(w->freq, &t);
		}
	}
	free(cur);
	free(prev);
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
}

static void send_result(struct worker *w, struct wseq *s, int table_status)
{
	int final = s->finish != PROTO_FINISH_NONE;
	int from = (s->flags & PROTO_SEQ_STREAM) ? s->n_sent : 0;
	struct proto_seq_result r = {
		.id = s->id, .status = s->status, .finish = (uint8_t)s->finish,
		.n_prompt = (uint32_t)s->n_prompt,
		.n_tokens = (uint32_t)(s->n_gen - from),
	};
	struct proto_result res = {.table_status = (uint32_t)table_status,
				   .moe = s->moe, .n_seqs = 1, .seqs = &r,
				   .more = !final};
	uint32_t toks[s->n_gen + 1];
	void *buf;
	size_t len;

	for (int i = from; i < s->n_gen; i++)
		toks[i - from] = (uint32_t)s->gen[i];
	r.tokens = toks;
	if (final && s->logits && (s->flags & PROTO_SEQ_WANT_LOGITS)) {
		r.n_logits = (uint32_t)w->vocab;
		r.logits = s->logits;
	}
	if (proto_encode_result(&res, s->batch, &buf, &len) == 0) {
		if (ipc_send(w->out, buf, len, 0) < 0)
			log_msg(LOG_WARNING, "worker: result for seq %llu not sent",
				(unsigned long long)s->id);
		free(buf);
	}
	s->n_sent = s->n_gen;
}

static struct proto_msg *take_table(struct worker *w, uint64_t batch)
{
	for (int i = 0; i < N_TABLES; i++)
		if (w->tables[i] && w->tables[i]->hdr.batch_id == batch) {
			struct proto_msg *m = w->tables[i];

			w->tables[i] = NULL;
			return m;
		}
	return NULL;
}

static void stash_table(struct worker *w, struct proto_msg *m)
{
	proto_msg_free(w->tables[w->table_next]);
	w->tables[w->table_next] = m;
	w->table_next = (w->table_next + 1) % N_TABLES;
}

/* Receives and decodes one message; malformed ones are dropped and counted. */
static uint64_t n_malformed;

static struct proto_msg *recv_msg(nng_socket s, int timeout_ms)
{
	void *buf;
	size_t len;
	struct proto_msg *m = NULL;
	char err[256];

	if (ipc_recv(s, &buf, &len, timeout_ms) < 0)
		return NULL;
	if (proto_decode_err(buf, len, &m, err, sizeof(err)) < 0) {
		log_msg(LOG_WARNING, "worker: dropped a malformed message: %s", err);
		n_malformed++;
		m = NULL;
	}
	nng_free(buf, len);
	return m;
}

static void drain_tables(struct worker *w)
{
	struct proto_msg *m;

	while ((m = recv_msg(w->tables_in, 0))) {
		if (m->hdr.type == PROTO_TABLE)
			stash_table(w, m);
		else
			proto_msg_free(m);
	}
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The batch's table, waiting at most predictor.wait_ms for it. */
static struct proto_msg *wait_table(struct worker *w, uint64_t batch, int *status)
{
	double end = now_s() + w->cfg.predictor.wait_ms / 1000.0;
	struct proto_msg *m;

	*status = PROTO_TABLE_NONE;
	if (w->cfg.predictor.kind == CFG_PRED_NONE)
		return NULL;
	drain_tables(w);
	while (!(m = take_table(w, batch))) {
		int left = (int)((end - now_s()) * 1000);
		struct proto_msg *t;

		if (left <= 0) {
			*status = PROTO_TABLE_LATE;
			return NULL;
		}
		if ((t = recv_msg(w->tables_in, left)) && t->hdr.type == PROTO_TABLE)
			stash_table(w, t);
		else
			proto_msg_free(t);
	}
	*status = PROTO_TABLE_USED;
	return m;
}

/* The routing of rows [row0, row0 + n) back to the front (/v1/forward). */
static void send_routes(struct worker *w, int row0, int n)
{
	size_t per = (size_t)w->n_layers * w->k;
	struct proto_trace tr = {
		.n_layers = (uint16_t)w->n_layers, .n_experts = (uint16_t)w->n_experts,
		.k = (uint16_t)w->k, .n_tokens = (uint32_t)n,
		.seq_ids = w->tr_seq + row0, .positions = w->tr_pos + row0,
		.tokens = w->tr_tok + row0, .experts = w->tr_exp + (size_t)row0 * per,
	};
	void *buf;
	size_t len;

	if (proto_encode_trace(&tr, 0, &buf, &len) == 0) {
		ipc_send(w->out, buf, len, 0);
		free(buf);
	}
}

static void prefill_seq(struct worker *w, struct wseq *s, const struct proto_seq *ps,
			int table_status)
{
	int *toks = malloc(ps->n_tokens * sizeof(int)), rv;

	if (!toks || tr_reserve(w, (int)ps->n_tokens) < 0) {
		rv = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < ps->n_tokens; i++)
		toks[i] = (int)ps->tokens[i];
	w->phase = PH_PREFILL;
	s->row0 = w->tr_n;
	w->tr_n += (int)ps->n_tokens;
	if (w->table)
		s->moe.experts_predicted += w->table->layer_start[w->table->n_layers];
	rv = eng_forward(w->rt.eng, s->s, toks, (int)ps->n_tokens, w->logits);
	if (rv == 0) {
		memcpy(s->prev, s->cur, (size_t)w->n_layers * w->k * sizeof(int));
		if (s->kind == PROTO_KIND_FORWARD) {
			s->logits = malloc((size_t)w->vocab * sizeof(float));
			if (s->logits)
				memcpy(s->logits, w->logits, (size_t)w->vocab * sizeof(float));
			s->finish = PROTO_FINISH_LENGTH;
		} else if (s->max_tokens == 0) {
			s->finish = PROTO_FINISH_LENGTH;
		} else {
			wseq_take(s, w->logits, w->vocab, w->scratch);
		}
	}
	if (rv == 0 && (s->flags & PROTO_SEQ_WANT_ROUTES))
		send_routes(w, s->row0, (int)ps->n_tokens);
	finish_call(w);
out:
	free(toks);
	if (rv < 0) {
		s->status = rv;
		s->finish = PROTO_FINISH_ERROR;
	}
	if (s->finish != PROTO_FINISH_NONE || (s->flags & PROTO_SEQ_STREAM))
		send_result(w, s, table_status);
}

static void fail_seq(struct worker *w, const struct proto_seq *ps, uint64_t batch, int rv)
{
	struct wseq dummy = {.id = ps->id, .batch = batch, .status = rv,
			     .finish = PROTO_FINISH_ERROR, .n_prompt = (int)ps->n_tokens};

	send_result(w, &dummy, PROTO_TABLE_NONE);
}

static void admit(struct worker *w, struct proto_msg *m)
{
	const struct proto_batch *b = &m->batch;
	int status;
	struct proto_msg *tm = wait_table(w, m->hdr.batch_id, &status);

	if (w->stats) {
		struct shstats_head *h = shstats_head(w->stats);

		h->batches++;
		h->tables_used += status == PROTO_TABLE_USED;
		h->tables_late += status == PROTO_TABLE_LATE;
		h->tables_none += status == PROTO_TABLE_NONE;
	}

	w->table = tm ? &tm->table : NULL;
	if (w->table && (w->table->n_layers != w->n_layers ||
			 w->table->n_experts != w->n_experts))
		w->table = NULL;  /* a table for another model: ignore it */
	prefetch_table_layer(w, 0);
	for (uint32_t i = 0; i < b->n_seqs; i++) {
		struct wseq *s;
		int rv = wseq_new(w->rt.eng, &b->seqs[i], m->hdr.batch_id, b->kind,
				  w->n_layers, w->n_experts, w->k, &s);

		if (rv < 0) {
			fail_seq(w, &b->seqs[i], m->hdr.batch_id, rv);
			continue;
		}
		prefill_seq(w, s, &b->seqs[i], status);
		if (s->finish == PROTO_FINISH_NONE &&
		    w->n_act < (int)(sizeof(w->act) / sizeof(w->act[0])))
			w->act[w->n_act++] = s;
		else
			wseq_free(s);
	}
	cache_unpin_all(w->rt.cache);
	w->table = NULL;
	proto_msg_free(tm);
	proto_msg_free(m);
}

/* One decode step shared by every active sequence. */
static void step(struct worker *w)
{
	struct eng_seq *seqs[256];
	int toks[256], n = w->n_act, rv, kept = 0;

	if (tr_reserve(w, n) < 0)
		return;
	memset(w->predicted, 0, (size_t)w->n_experts);
	for (int i = 0; i < n; i++) {
		seqs[i] = w->act[i]->s;
		toks[i] = w->act[i]->next;
		w->act[i]->row0 = i;
		/* This token's layers are not known yet. */
		for (int j = 0; j < w->n_layers * w->k; j++)
			w->act[i]->cur[j] = -1;
	}
	w->phase = PH_STEP;
	w->tr_n = n;
	rv = eng_step(w->rt.eng, seqs, toks, n, w->logits);
	for (int i = 0; i < n; i++) {
		struct wseq *s = w->act[i];

		if (rv < 0) {
			s->status = rv;
			s->finish = PROTO_FINISH_ERROR;
		} else {
			memcpy(s->prev, s->cur, (size_t)w->n_layers * w->k * sizeof(int));
			wseq_take(s, w->logits + (size_t)i * w->vocab, w->vocab, w->scratch);
		}
	}
	finish_call(w);
	cache_unpin_all(w->rt.cache);
	for (int i = 0; i < n; i++) {
		struct wseq *s = w->act[i];

		if (s->finish != PROTO_FINISH_NONE || (s->flags & PROTO_SEQ_STREAM))
			send_result(w, s, PROTO_TABLE_USED);
		if (w->stats && s->finish != PROTO_FINISH_NONE) {
			shstats_head(w->stats)->experts_used += s->moe.experts_used;
			shstats_head(w->stats)->experts_predicted_used += s->moe.experts_predicted_used;
		}
		if (s->finish == PROTO_FINISH_NONE)
			w->act[kept++] = s;
		else
			wseq_free(s);
	}
	w->n_act = kept;
}

static void poll_input(struct worker *w)
{
	int timeout = (w->n_act || w->n_pend) ? 0 : 100;
	struct proto_msg *m;

	while ((m = recv_msg(w->in, timeout))) {
		timeout = 0;
		if (m->hdr.type == PROTO_BATCH && w->n_pend < MAX_PENDING)
			w->pend[w->n_pend++] = m;
		else
			proto_msg_free(m);
	}
	drain_tables(w);
	if (w->stats)
		shstats_head(w->stats)->malformed = n_malformed;
}

static int open_sockets(struct worker *w, char *err, size_t n)
{
	char dir[CFG_PATH_MAX];
	int rv;

	if ((rv = cfg_runtime_dir(&w->cfg, dir, sizeof(dir))) < 0 ||
	    (rv = ipc_prepare_dir(dir, err, n)) < 0)
		return rv;
	if ((rv = ipc_open(dir, IPC_WORK, 1, &w->in, err, n)) < 0 ||
	    (rv = ipc_open(dir, IPC_RESULT, 0, &w->out, err, n)) < 0 ||
	    (rv = ipc_open(dir, IPC_TABLE, 1, &w->tables_in, err, n)) < 0 ||
	    (rv = ipc_open(dir, IPC_TRACE, 0, &w->trace_out, err, n)) < 0)
		return rv;
	if ((rv = shstats_writer_open(dir, w->n_layers, w->n_experts, &w->stats)) < 0) {
		snprintf(err, n, "%.900s/stats.shm: %s", dir, strerror(-rv));
		return rv;
	}
	struct shstats_head *h = shstats_head(w->stats);
	h->n_slots = w->rt.n_slots;
	h->expert_bytes = w->expert_bytes;
	snprintf(h->policy, sizeof(h->policy), "%s", cache_policy_name(w->rt.policy));
	shstats_publish(w->stats, w->rt.cache);
	return 0;
}

static int setup(struct worker *w, char *err, size_t n)
{
	const struct ld_config *mc;
	struct pred_opts po = {.cepr_m = w->cfg.predictor.cepr_m};
	int rv;

	if ((rv = rt_open(&w->cfg, w->cfg.model.max_ctx, &w->rt, err, n)) < 0)
		return rv;
	mc = &w->rt.model->cfg;
	w->n_layers = mc->n_moe_layers;
	w->n_experts = mc->n_experts;
	w->k = mc->top_k;
	w->vocab = mc->vocab_size;
	w->expert_bytes = ld_expert_floats(mc) * sizeof(float);
	w->want = rt_want_per_layer(&w->cfg, mc);
	w->norm_topk = mc->norm_topk_prob;
	w->trust = w->cfg.predictor.mode == CFG_MODE_TRUST;
	if (w->trust && w->cfg.predictor.kind == CFG_PRED_NONE) {
		snprintf(err, n, "predictor.mode trust needs a predictor (predictor.kind is none)");
		return -EINVAL;
	}
	if (w->cfg.predictor.kind != CFG_PRED_NONE && w->n_layers > 0 &&
	    (rv = pred_open(PRED_CEPR, w->n_layers, w->n_experts, w->k, &po, &w->pred)) < 0) {
		snprintf(err, n, "predictor: %s", strerror(-rv));
		return rv;
	}
	if (w->trust && (rv = pred_open(PRED_FREQ, w->n_layers, w->n_experts, w->k, &po,
					&w->freq)) < 0) {
		snprintf(err, n, "predictor: %s", strerror(-rv));
		return rv;
	}
	w->pnext = calloc((size_t)w->n_experts + 1, sizeof(int));
	w->predicted = calloc((size_t)w->n_experts + 1, 1);
	w->logits = calloc((size_t)eng_max_batch() * w->vocab, sizeof(float));
	w->scratch = calloc(2 * (size_t)w->vocab, sizeof(float));
	if (!w->pnext || !w->predicted || !w->logits || !w->scratch)
		return -ENOMEM;
	struct eng_hooks h = {.before_moe = before_moe, .on_route = on_route,
			      .override_route = w->trust ? override_route : NULL, .ctx = w};
	eng_set_hooks(w->rt.eng, &h);
	return open_sockets(w, err, n);
}

static void teardown(struct worker *w)
{
	for (int i = 0; i < w->n_act; i++)
		wseq_free(w->act[i]);
	for (int i = 0; i < w->n_pend; i++)
		proto_msg_free(w->pend[i]);
	for (int i = 0; i < N_TABLES; i++)
		proto_msg_free(w->tables[i]);
	nng_close(w->in);
	nng_close(w->out);
	nng_close(w->tables_in);
	nng_close(w->trace_out);
	pred_close(w->pred);
	pred_close(w->freq);
	shstats_writer_close(w->stats);
	rt_close(&w->rt);
	free(w->pnext);
	free(w->predicted);
	free(w->logits);
	free(w->scratch);
	free(w->tr_exp);
	free(w->tr_seq);
	free(w->tr_pos);
	free(w->tr_tok);
}

/* Tells the front the model is loaded: a RESULT for batch 0 with no seqs. */
static void send_ready(struct worker *w)
{
	struct proto_result r = {.table_status = PROTO_TABLE_NONE};
	void *buf;
	size_t len;

	if (proto_encode_result(&r, 0, &buf, &len) == 0) {
		ipc_send(w->out, buf, len, 0);
		free(buf);
	}
}

int cmd_worker(int argc, char **argv)
{
	struct worker *w = calloc(1, sizeof(*w));
	char err[1024];
	int rv = 1;

	if (!w)
		return 1;
	cfg_defaults(&w->cfg);
	if (cfg_parse_args(&w->cfg, argc - 1, argv + 1, NULL, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "moed worker: %s\n", err);
		free(w);
		return 2;
	}
	log_set_level((int)w->cfg.log.level);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (setup(w, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "worker: %s", err);
		goto out;
	}
	send_ready(w);
	log_msg(LOG_INFO, "worker: ready (%zu expert slots, policy %s, mode %s)", w->rt.n_slots,
		cache_policy_name(w->rt.policy), w->trust ? "trust" : "exact");
	while (!stop_flag) {
		poll_input(w);
		if (w->n_pend) {
			struct proto_msg *m = w->pend[0];

			memmove(w->pend, w->pend + 1, (size_t)--w->n_pend * sizeof(*w->pend));
			admit(w, m);
		}
		if (w->n_act)
			step(w);
	}
	rv = 0;
out:
	teardown(w);
	free(w);
	return rv;
}
