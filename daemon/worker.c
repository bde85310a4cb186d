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
#include <sys/prctl.h>
#include <unistd.h>

#include "daemon/cmds.h"
#include "daemon/log.h"
#include "daemon/worker.h"
#include "loader/cache.h"
#include "loader/clock.h"
#include "loader/store.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
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
	void *buf;
	size_t len;

	r.tokens = s->gen + from;
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
	return ipc_recv_msg(s, timeout_ms, "worker", &n_malformed);
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

/* The batch's table, waiting at most predictor.wait_ms for it. */
static struct proto_msg *wait_table(struct worker *w, uint64_t batch, int *status)
{
	double end = ld_now() + w->cfg.predictor.wait_ms / 1000.0;
	struct proto_msg *m;

	*status = PROTO_TABLE_NONE;
	if (w->cfg.predictor.kind == CFG_PRED_NONE)
		return NULL;
	drain_tables(w);
	while (!(m = take_table(w, batch))) {
		int left = (int)((end - ld_now()) * 1000);
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

/* After the prompt ran: the first token, or the logits for /v1/forward. */
static void prefilled(struct worker *w, struct wseq *s, const float *logits)
{
	memcpy(s->prev, s->cur, (size_t)w->n_layers * w->k * sizeof(int));
	if (s->kind == PROTO_KIND_FORWARD) {
		s->logits = malloc((size_t)w->vocab * sizeof(float));
		if (s->logits)
			memcpy(s->logits, logits, (size_t)w->vocab * sizeof(float));
		s->finish = PROTO_FINISH_LENGTH;
	} else if (s->max_tokens == 0) {
		s->finish = PROTO_FINISH_LENGTH;
	} else {
		wseq_take(s, logits, eng_row_argmax(w->rt.eng, logits), w->vocab, w->scratch);
	}
	if (s->flags & PROTO_SEQ_WANT_ROUTES)
		send_routes(w, s->row0, s->n_prompt);
}

static void step(struct worker *w);

/* A sequence whose prefill is over (or failed): its first token or result
 * out, then into the running set while it has more to decode (so the decode
 * steps between the rest of its group's prefill calls include it), else
 * freed. */
static void settle(struct worker *w, struct wseq *sq)
{
	if (sq->finish == PROTO_FINISH_NONE && w->n_act >= MAX_ACTIVE) {
		/* Only for a batch larger than MAX_ACTIVE (the front never
		 * sends one): answered, not dropped. */
		sq->status = -EBUSY;
		sq->finish = PROTO_FINISH_ERROR;
	}
	if (sq->finish != PROTO_FINISH_NONE || (sq->flags & PROTO_SEQ_STREAM))
		send_result(w, sq, sq->table_status);
	if (sq->finish == PROTO_FINISH_NONE)
		w->act[w->n_act++] = sq;
	else
		wseq_free(sq);
}

/* Rows [a, b) of the group's prompts, laid end to end, as one engine call;
 * the sequences whose prompt ends there are prefilled and settled (NULL in
 * seqs from then on).  Their route rows start the call's record (on_route:
 * row0 + position). */
static int prefill_slice(struct worker *w, struct wseq **seqs, const int *const *tp,
			 const int *nt, int n, int a, int b)
{
	struct eng_seq *es[n];
	const int *sp[n];
	int sn[n], idx[n], m = 0, rows = 0, rv;
	bool ends[n];   /* call k holds the end of its sequence's prompt */

	if ((rv = worker_tr_reserve(w, b - a)) < 0)
		return rv;
	for (int i = 0, at = 0; i < n; at += nt[i++]) {
		int lo = a > at ? a - at : 0, hi = b < at + nt[i] ? b - at : nt[i];

		if (lo >= hi || !seqs[i])
			continue;
		es[m] = seqs[i]->s, sp[m] = tp[i] + lo, sn[m] = hi - lo, ends[m] = hi == nt[i];
		idx[m++] = i;
		seqs[i]->row0 = w->tr_n + rows - lo;
		rows += hi - lo;
	}
	w->tr_n += rows;
	w->phase = PH_PREFILL;
	worker_prefetch_table_layer(w, 0);
	rv = eng_batch(w->rt.eng, es, sp, sn, m, w->logits);
	for (int k = 0; k < m && rv == 0; k++)
		if (ends[k])
			prefilled(w, seqs[idx[k]], w->logits + (size_t)k * w->vocab);
	worker_finish_call(w);   /* the routes out before the results */
	for (int k = 0; k < m && rv == 0; k++)
		if (ends[k]) {
			settle(w, seqs[idx[k]]);
			seqs[idx[k]] = NULL;
		}
	return rv;
}

/* Where the call from row a of the group's prompts (nt, total rows) ends:
 * with sequences running, prefill_chunks engine chunks on; with none
 * to yield to, on to the end of the next prompt to finish (so a lone
 * prompt runs in calls as long as the engine takes: on CUDA a call's
 * chunks share each layer's expert loads); always at a chunk's end, so the
 * chunks are those of one call and the results the same. */
static int slice_end(const struct worker *w, const int *nt, int n, int a, int total)
{
	int c = eng_max_batch(), b = a + w->prefill_chunks * c, end = 0;

	for (int i = 0; i < n && end <= a && !w->n_act; i++)
		end += nt[i];
	end = (end + c - 1) / c * c;
	b = end > b ? end : b;
	return b < total ? b : total;
}

/* Prefills up to eng_max_batch() prompts together, so an expert needed by
 * several prompts is loaded and multiplied once: in calls of slice_end's,
 * with a decode step of the running sequences between calls, or all in one
 * call (batch.prefill_chunks 0, or when a prompt's routes are wanted: they
 * are sent whole). */
static void prefill(struct worker *w, struct wseq **seqs, const struct proto_seq *ps,
		    int n, int table_status)
{
	const int *tp[n];
	int nt[n], total = 0, rv = 0;
	int *toks;
	bool whole = w->prefill_chunks == 0;

	for (int i = 0; i < n; i++) {
		total += (int)ps[i].n_tokens;
		seqs[i]->table_status = table_status;
		whole |= (seqs[i]->flags & PROTO_SEQ_WANT_ROUTES) != 0;
	}
	toks = total ? malloc((size_t)total * sizeof(int)) : NULL;
	if (!toks)
		rv = total ? -ENOMEM : -EINVAL;   /* the protocol has no empty prompt */
	for (int i = 0, at = 0; rv == 0 && i < n; at += nt[i++]) {
		nt[i] = (int)ps[i].n_tokens;
		tp[i] = toks + at;
		for (int j = 0; j < nt[i]; j++)
			toks[at + j] = (int)ps[i].tokens[j];
		if (w->table)
			seqs[i]->moe.experts_predicted += w->table->layer_start[w->table->n_layers];
	}
	for (int a = 0, b; rv == 0 && a < total; a = b) {
		b = whole ? total : slice_end(w, nt, n, a, total);
		if (w->stats)
			shstats_head(w->stats)->prefill_calls++;
		if ((rv = prefill_slice(w, seqs, tp, nt, n, a, b)) == 0 && b < total && w->n_act) {
			step(w);
			if (w->stats)
				shstats_head(w->stats)->prefill_yields++;
		}
	}
	for (int i = 0; i < n; i++)   /* those a failure left */
		if (seqs[i]) {
			seqs[i]->status = rv;
			seqs[i]->finish = PROTO_FINISH_ERROR;
			settle(w, seqs[i]);
		}
	free(toks);
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
	worker_prefetch_table_layer(w, 0);
	for (uint32_t i = 0; i < b->n_seqs;) {
		struct wseq *seqs[256];
		const struct proto_seq *first = &b->seqs[i];
		int n = 0;

		/* Consecutive sequences that build; a failed one is answered now. */
		for (; i < b->n_seqs && n < eng_max_batch() && n < 256; i++) {
			int rv = wseq_new(w->rt.eng, &b->seqs[i], m->hdr.batch_id, b->kind,
					  w->n_layers, w->n_experts, w->k, &seqs[n]);

			if (rv < 0) {
				fail_seq(w, &b->seqs[i], m->hdr.batch_id, rv);
				i++;
				break;
			}
			n++;
		}
		if (n)
			prefill(w, seqs, first, n, status);
	}
	cache_unpin_all(w->rt.cache);
	w->table = NULL;
	proto_msg_free(tm);
	proto_msg_free(m);
}

/* A decode step's sequence i: its routes move to prev, its next token is
 * drawn (on pool thread t, with that thread's scratch). */
static void take_one(void *ctx, int i, int t)
{
	struct worker *w = ctx;
	struct wseq *s = w->act[i];
	const float *row = w->logits + (size_t)i * w->vocab;

	memcpy(s->prev, s->cur, (size_t)w->n_layers * w->k * sizeof(int));
	wseq_take(s, row, eng_row_argmax(w->rt.eng, row), w->vocab,
		  w->scratch + (size_t)t * ENG_SAMPLE_SCRATCH(w->vocab));
}

/* One decode step shared by every active sequence. */
static void step(struct worker *w)
{
	struct eng_seq *seqs[256];
	int toks[256], n = w->n_act, rv, kept = 0;

	if (worker_tr_reserve(w, n) < 0)
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
	for (int i = 0; i < n && rv < 0; i++) {
		w->act[i]->status = rv;
		w->act[i]->finish = PROTO_FINISH_ERROR;
	}
	if (rv >= 0)
		spool_run(w->pool, n, take_one, w);
	worker_finish_call(w);
	cache_unpin_all(w->rt.cache);
	for (int i = 0; i < n; i++) {
		struct wseq *s = w->act[i];

		if (s->finish != PROTO_FINISH_NONE || (s->flags & PROTO_SEQ_STREAM))
			send_result(w, s, s->table_status);
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

/* The front no longer wants these: drop them, answer nothing. */
static void cancel(struct worker *w, const struct proto_cancel *c)
{
	int kept = 0;

	for (int i = 0; i < w->n_act; i++) {
		bool drop = false;

		for (uint32_t j = 0; j < c->n_seqs && !drop; j++)
			drop = w->act[i]->id == c->seq_ids[j];
		if (drop)
			wseq_free(w->act[i]);
		else
			w->act[kept++] = w->act[i];
	}
	w->n_act = kept;
}

static void poll_input(struct worker *w)
{
	int timeout = (w->n_act || w->n_pend) ? 0 : 100;
	struct proto_msg *m;

	while ((m = recv_msg(w->in, timeout))) {
		timeout = 0;
		if (m->hdr.type == PROTO_BATCH && w->n_pend < MAX_PENDING) {
			w->pend[w->n_pend++] = m;
			continue;
		}
		if (m->hdr.type == PROTO_CANCEL)
			cancel(w, &m->cancel);
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
	w->expert_bytes = ld_store_info(w->rt.store)->expert_bytes;   /* as packed: bf16 or f32 */
	w->want_next = w->cfg.predictor.prefetch_k ? w->cfg.predictor.prefetch_k : w->k;
	if (w->want_next > w->n_experts)
		w->want_next = w->n_experts;
	w->norm_topk = mc->norm_topk_prob;
	w->trust = w->cfg.predictor.mode == CFG_MODE_TRUST;
	/* batch.prefill_chunks -1: where a call's chunks share each layer's
	 * expert loads (CUDA) and the experts do not all fit, a call of all it
	 * takes pauses the running sequences about as long as a call of one
	 * (both wait for a layer's loads; bench/results/cuda_bench_s25.md),
	 * else one. */
	w->prefill_chunks = w->cfg.batch.prefill_chunks;
	if (w->prefill_chunks < 0)
		w->prefill_chunks = w->rt.n_slots < (size_t)w->n_layers * (size_t)w->n_experts ?
			eng_call_chunks(w->rt.eng) : 1;
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
	w->logits = eng_logits_buffer(w->rt.eng);   /* the engine's: no copy on the GPU path */
	/* Sampling threads: up to 8 (a step has at most a few dozen sequences
	 * to draw for), one scratch each. */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = cpus < 1 ? 1 : cpus > 8 ? 8 : (int)cpus;
	if ((rv = spool_open(threads, &w->pool)) < 0) {
		snprintf(err, n, "sampling threads: %s", strerror(-rv));
		return rv;
	}
	w->scratch = calloc((size_t)spool_threads(w->pool) * ENG_SAMPLE_SCRATCH(w->vocab),
			    sizeof(float));
	if (!w->pnext || !w->predicted || !w->logits || !w->scratch)
		return -ENOMEM;
	worker_set_hooks(w);
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
	spool_close(w->pool);   /* before the scratch its threads drew with */
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

static const char usage_text[] =
	"usage: moed worker [--config FILE] [--set key=value]...\n\nThe inference worker; moed serve starts it.\n";

int cmd_worker(int argc, char **argv)
{
	struct worker *w = calloc(1, sizeof(*w));
	char err[1024];
	int rv = 1;

	if (!w)
		return 1;
	cfg_defaults(&w->cfg);
	if (cfg_parse_args(&w->cfg, argc - 1, argv + 1, cmd_help_flag, (void *)usage_text, err,
			   sizeof(err)) < 0) {
		fprintf(stderr, "moed worker: %s\n", err);
		free(w);
		return 2;
	}
	log_set_level((int)w->cfg.log.level);
	/* Started by serve: go when it goes, even if it was SIGKILLed. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (setup(w, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "worker: %s", err);
		goto out;
	}
	send_ready(w);
	log_msg(LOG_INFO, "worker: ready (%zu expert slots, policy %s, mode %s, host threads %d)",
		w->rt.n_slots, cache_policy_name(w->rt.policy), w->trust ? "trust" : "exact",
		w->rt.host_threads);
	while (!stop_flag) {
		poll_input(w);
		if (w->n_pend && (w->n_act == 0 ||
				  w->n_act + (int)w->pend[0]->batch.n_seqs <= MAX_ACTIVE)) {
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
