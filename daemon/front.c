/* The front's request path: sequences are queued, grouped into BATCHes
 * (batch.max_tokens, batch.max_wait_us), sent to the predictor and the
 * worker, and answered from the worker's RESULTs, which a receive thread
 * hands to the loop through a uv_async. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/ipc.h"
#include "daemon/log.h"
#include "daemon/serve.h"

/* Sequences per batch: the worker decodes at most 256 together. */
#define FRONT_MAX_BATCH_SEQS 128

struct rx_item {
	struct rx_item *next;
	void *buf;
	size_t len;
};

static void *rx_main(void *arg)
{
	struct server *s = arg;

	while (__atomic_load_n(&s->rx_run, __ATOMIC_ACQUIRE)) {
		struct rx_item *it;
		void *buf;
		size_t len;

		if (ipc_recv(s->results, &buf, &len, 200) < 0)
			continue;
		if (!(it = calloc(1, sizeof(*it)))) {
			nng_free(buf, len);
			continue;
		}
		it->buf = buf;
		it->len = len;
		pthread_mutex_lock(&s->rx_lock);
		if (s->rx_tail)
			s->rx_tail->next = it;
		else
			s->rx_head = it;
		s->rx_tail = it;
		pthread_mutex_unlock(&s->rx_lock);
		uv_async_send(&s->rx_async);
	}
	return NULL;
}

static int list_push(struct sseq ***list, int *n, int *cap, struct sseq *q)
{
	if (*n == *cap) {
		int nc = *cap ? *cap * 2 : 64;
		struct sseq **l = realloc(*list, (size_t)nc * sizeof(*l));

		if (!l)
			return -ENOMEM;
		*list = l;
		*cap = nc;
	}
	(*list)[(*n)++] = q;
	return 0;
}

static int inflight_find(const struct server *s, uint64_t id)
{
	for (int i = 0; i < s->n_inflight; i++)
		if (s->inflight[i]->id == id)
			return i;
	return -1;
}

static void inflight_remove(struct server *s, struct sseq *q)
{
	int i = inflight_find(s, q->id);

	if (i >= 0)
		s->inflight[i] = s->inflight[--s->n_inflight];
}

void sreq_free(struct sreq *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->n_seqs; i++) {
		free(r->seqs[i].tokens);
		free(r->seqs[i].logits);
		free(r->seqs[i].routes);
		text_seq_free(&r->seqs[i]);
	}
	free(r->seqs);
	api_completion_req_free(&r->creq);
	api_forward_req_free(&r->freq);
	free(r);
}


/* A stop sequence of several tokens ends the output where it completes;
 * the tokens of the sequence are cut, as OpenAI does. */
static bool hit_stop_seq(const struct sreq *r, struct sseq *q)
{
	for (size_t i = 0; r->kind == REQ_COMPLETION && i < r->creq.n_stop; i++) {
		const struct api_seq *st = &r->creq.stop[i];

		if (st->n < 2 || (size_t)q->n_tokens < st->n)
			continue;
		if (!memcmp(q->tokens + q->n_tokens - st->n, st->ids, st->n * sizeof(int32_t))) {
			q->n_tokens -= (int)st->n;
			return true;
		}
	}
	return false;
}

static void seq_finished(struct server *s, struct sseq *q, int finish, int32_t status)
{
	q->finish = finish;
	q->status = status;
	q->done = true;
	inflight_remove(s, q);
	if (++q->r->n_done == q->r->n_seqs)
		front_complete(s, q->r);
}

static void append_tokens(struct server *s, struct sseq *q, const uint32_t *t, uint32_t n)
{
	if (q->n_tokens + (int)n > q->cap) {
		int cap = (q->n_tokens + (int)n) * 2 + 16;
		int32_t *nt = realloc(q->tokens, (size_t)cap * sizeof(int32_t));

		if (!nt)
			return;
		q->tokens = nt;
		q->cap = cap;
	}
	for (uint32_t i = 0; i < n; i++) {
		q->tokens[q->n_tokens++] = (int32_t)t[i];
		if (text_push(s, q) || hit_stop_seq(q->r, q)) {
			q->finish = PROTO_FINISH_STOP;
			return;
		}
	}
}

/* Tells the worker to drop sequences nobody waits for any more. */
static void send_cancel(struct server *s, const uint64_t *ids, uint32_t n)
{
	void *buf;
	size_t len;

	if (n && proto_encode_cancel(ids, n, &buf, &len) == 0) {
		ipc_send(s->work, buf, len, 1);
		free(buf);
	}
}

/* Takes q, not sent yet, off the queue. */
static void queue_remove(struct server *s, struct sseq *q)
{
	for (int i = 0; i < s->n_queued; i++)
		if (s->queued[i] == q) {
			s->queued_tokens -= q->n_prompt;
			s->n_queued--;
			memmove(s->queued + i, s->queued + i + 1,
				(size_t)(s->n_queued - i) * sizeof(*s->queued));
			break;
		}
	metric_set(s->m.queue_depth, NULL, s->n_queued);
}

/* Nobody waits for r any more: its sequences at the worker are cancelled
 * there, those still queued are dropped before they are batched. */
void front_cancel(struct server *s, struct sreq *r)
{
	uint64_t ids[r->n_seqs + 1];
	uint32_t n = 0;
	bool any = false;

	for (int i = 0; i < r->n_seqs; i++) {
		struct sseq *q = &r->seqs[i];

		if (q->done)
			continue;
		if (q->sent) {
			ids[n++] = q->id;
			inflight_remove(s, q);
		} else {
			queue_remove(s, q);
		}
		q->finish = PROTO_FINISH_CANCELLED;
		q->done = true;
		r->n_done++;
		any = true;
	}
	send_cancel(s, ids, n);
	if (any && r->n_done == r->n_seqs)
		front_complete(s, r);
}

static void on_seq_result(struct server *s, const struct proto_seq_result *sr,
			  const struct proto_result *res)
{
	int i = inflight_find(s, sr->id), from;
	struct sseq *q;

	if (i < 0)
		return;  /* finished early (stop sequence) or unknown */
	q = s->inflight[i];
	from = q->n_tokens;
	q->moe = res->moe;
	q->table_status = (int)res->table_status;
	append_tokens(s, q, sr->tokens, sr->n_tokens);
	metric_add(s->m.tokens_out, NULL, (double)(q->n_tokens - from));
	if (sr->n_logits && !q->logits && (q->logits = malloc(sr->n_logits * sizeof(float))))
		memcpy(q->logits, sr->logits, sr->n_logits * sizeof(float));
	if (q->finish == PROTO_FINISH_STOP && sr->finish == PROTO_FINISH_NONE)
		send_cancel(s, &q->id, 1);  /* a stop string: the worker need not go on */
	if (q->finish != PROTO_FINISH_STOP)
		q->finish = sr->finish;
	if (q->finish != PROTO_FINISH_NONE)
		text_flush(s, q);
	if (q->r->stream && (q->n_tokens > from || q->finish != PROTO_FINISH_NONE))
		front_stream_tokens(q->r, q, from);
	if (q->finish != PROTO_FINISH_NONE)
		seq_finished(s, q, q->finish, q->finish == PROTO_FINISH_STOP ? 0 : sr->status);
}

static void on_trace(struct server *s, const struct proto_trace *t)
{
	size_t per = (size_t)t->n_layers * t->k;

	for (uint32_t r = 0; r < t->n_tokens; r++) {
		int i = inflight_find(s, t->seq_ids[r]);
		struct sseq *q = i >= 0 ? s->inflight[i] : NULL;

		if (!q || !q->routes || t->n_layers != s->mc.n_moe_layers ||
		    t->k != s->mc.top_k || t->positions[r] >= (uint32_t)q->n_prompt)
			continue;
		for (size_t l = 0; l < t->n_layers; l++)
			for (size_t j = 0; j < t->k; j++)
				q->routes[(l * q->n_prompt + t->positions[r]) * t->k + j] =
					t->experts[r * per + l * t->k + j];
	}
}

static void on_message(struct server *s, const void *buf, size_t len)
{
	struct proto_msg *m;
	char err[256];

	if (proto_decode_err(buf, len, &m, err, sizeof(err)) < 0) {
		log_msg(LOG_WARNING, "front: dropped a malformed message: %s", err);
		metric_inc(s->m.malformed, NULL);
		return;
	}
	if (m->hdr.type == PROTO_RESULT && m->hdr.batch_id == 0 && !m->result.n_seqs) {
		s->worker_ready = s->worker_started = true;
	} else if (m->hdr.type == PROTO_RESULT) {
		for (uint32_t i = 0; i < m->result.n_seqs; i++)
			on_seq_result(s, &m->result.seqs[i], &m->result);
		metric_inc(s->m.table_status, (const char *[]){
			m->result.table_status == PROTO_TABLE_USED ? "used" :
			m->result.table_status == PROTO_TABLE_LATE ? "late" : "none"});
	} else if (m->hdr.type == PROTO_TRACE) {
		on_trace(s, &m->trace);
	}
	proto_msg_free(m);
}

static void on_rx_async(uv_async_t *a)
{
	struct server *s = a->data;
	struct rx_item *it;

	pthread_mutex_lock(&s->rx_lock);
	it = s->rx_head;
	s->rx_head = s->rx_tail = NULL;
	pthread_mutex_unlock(&s->rx_lock);
	while (it) {
		struct rx_item *next = it->next;

		on_message(s, it->buf, it->len);
		nng_free(it->buf, it->len);
		free(it);
		it = next;
	}
}

static uint32_t *u32_copy(const int32_t *v, size_t n)
{
	uint32_t *o = malloc((n ? n : 1) * sizeof(uint32_t));

	for (size_t i = 0; o && i < n; i++)
		o[i] = (uint32_t)v[i];
	return o;
}

static bool has_stop_seq(const struct sreq *r)
{
	for (size_t i = 0; i < r->creq.n_stop; i++)
		if (r->creq.stop[i].n > 1)
			return true;
	return false;
}

/* The proto_seq of q; its arrays are malloc'd (freed by free_pseq). */
static int make_pseq(const struct sseq *q, struct proto_seq *p)
{
	const struct sreq *r = q->r;
	uint32_t *stop = NULL;
	uint16_t n_stop = 0;

	memset(p, 0, sizeof(*p));
	p->id = q->id;
	p->n_tokens = (uint32_t)q->n_prompt;
	if (r->kind == REQ_FORWARD) {
		p->flags = PROTO_SEQ_WANT_LOGITS |
			   (r->freq.return_routes ? PROTO_SEQ_WANT_ROUTES : 0);
		p->max_tokens = 0;
	} else {
		p->max_tokens = (uint32_t)r->creq.max_tokens;
		p->temperature = (float)r->creq.temperature;
		p->top_p = (float)r->creq.top_p;
		p->seed = r->creq.has_seed ? r->creq.seed :
			  q->id * 0x9e3779b97f4a7c15ULL ^ (uint64_t)time(NULL);
		/* Tokens come back as they are made when the client streams, and
		 * when the front itself must watch for a stop string. */
		p->flags = r->stream || r->creq.n_stop_text || has_stop_seq(r) ? PROTO_SEQ_STREAM : 0;
		stop = malloc((r->creq.n_stop + 1 + (size_t)r->n_extra_stop) * sizeof(uint32_t));
		if (!stop)
			return -ENOMEM;
		for (int i = 0; i < r->n_extra_stop; i++)
			stop[n_stop++] = (uint32_t)r->extra_stop[i];
		for (size_t i = 0; i < r->creq.n_stop && n_stop < PROTO_MAX_STOP; i++)
			if (r->creq.stop[i].n == 1)
				stop[n_stop++] = (uint32_t)r->creq.stop[i].ids[0];
	}
	p->stop = stop;
	p->n_stop = n_stop;
	p->tokens = u32_copy(q->prompt, (size_t)q->n_prompt);
	return p->tokens ? 0 : -ENOMEM;
}

static void free_pseq(struct proto_seq *p)
{
	free((void *)p->tokens);
	free((void *)p->stop);
}

static void fail_seq(struct server *s, struct sseq *q, int err)
{
	(void)s;
	q->finish = PROTO_FINISH_ERROR;
	q->status = err;
	q->done = true;
	if (++q->r->n_done == q->r->n_seqs)
		front_complete(q->r->s, q->r);
}

/* Sends the first `n` queued sequences (all of one kind) as one batch. */
static void send_batch(struct server *s, int n)
{
	struct proto_seq ps[n];
	struct proto_batch b = {.kind = s->queued[0]->r->kind == REQ_FORWARD ?
					 PROTO_KIND_FORWARD : PROTO_KIND_GENERATE,
				.n_seqs = (uint32_t)n, .seqs = ps};
	uint64_t id = ++s->next_batch;
	void *buf = NULL;
	size_t len;
	int rv = 0, made = 0, tokens = 0;

	for (; made < n && rv == 0; made++)
		rv = make_pseq(s->queued[made], &ps[made]);
	if (rv == 0)
		rv = proto_encode_batch(&b, id, &buf, &len);
	if (rv == 0) {
		if (s->cfg.predictor.kind != CFG_PRED_NONE)
			ipc_send(s->pred, buf, len, 1);
		rv = s->worker_ready ? ipc_send(s->work, buf, len, 1) : -EAGAIN;
	}
	free(buf);
	for (int i = 0; i < made; i++)
		free_pseq(&ps[i]);
	struct sseq *sent[n];
	memcpy(sent, s->queued, (size_t)n * sizeof(*sent));
	s->n_queued -= n;
	memmove(s->queued, s->queued + n, (size_t)s->n_queued * sizeof(*s->queued));
	for (int i = 0; i < n; i++) {
		tokens += sent[i]->n_prompt;
		s->queued_tokens -= sent[i]->n_prompt;
	}
	if (rv < 0) {
		log_msg(LOG_WARNING, "front: batch %llu not sent: %s", (unsigned long long)id,
			!s->worker_ready ? "no worker" : rv == -EAGAIN ?
			"the worker's input queue is full" : strerror(-rv));
		for (int i = 0; i < n; i++)
			fail_seq(s, sent[i], -ECONNRESET);
		return;
	}
	metric_observe(s->m.batch_seqs, NULL, n);
	metric_observe(s->m.batch_tokens, NULL, tokens);
	for (int i = 0; i < n; i++) {
		sent[i]->sent = true;
		list_push(&s->inflight, &s->n_inflight, &s->inflight_cap, sent[i]);
	}
}

static void flush(struct server *s)
{
	while (s->n_queued) {
		enum req_kind kind = s->queued[0]->r->kind;
		int n = 0, tokens = 0;

		while (n < s->n_queued && n < FRONT_MAX_BATCH_SEQS &&
		       s->queued[n]->r->kind == kind &&
		       (n == 0 || tokens + s->queued[n]->n_prompt <= s->cfg.batch.max_tokens))
			tokens += s->queued[n++]->n_prompt;
		send_batch(s, n);
	}
	metric_set(s->m.queue_depth, NULL, 0);
}

static void on_batch_timer(uv_timer_t *t)
{
	flush(t->data);
}

void front_submit(struct server *s, struct sreq *r)
{
	for (int i = 0; i < r->n_seqs; i++) {
		struct sseq *q = &r->seqs[i];

		q->id = ++s->next_seq;
		q->r = r;
		q->index = i;
		if (r->kind == REQ_FORWARD && r->freq.return_routes) {
			size_t n = (size_t)s->mc.n_moe_layers * q->n_prompt * s->mc.top_k;

			q->routes = calloc(n + 1, sizeof(int32_t));
		}
		list_push(&s->queued, &s->n_queued, &s->queued_cap, q);
		s->queued_tokens += q->n_prompt;
		metric_add(s->m.tokens_in, NULL, q->n_prompt);
	}
	metric_set(s->m.queue_depth, NULL, s->n_queued);
	if (s->queued_tokens >= s->cfg.batch.max_tokens || s->cfg.batch.max_wait_us == 0)
		flush(s);
	else if (!uv_is_active((uv_handle_t *)&s->batch_timer))
		uv_timer_start(&s->batch_timer, on_batch_timer,
			       (uint64_t)(s->cfg.batch.max_wait_us + 999) / 1000, 0);
}

void front_worker_lost(struct server *s)
{
	s->worker_ready = false;
	while (s->n_inflight) {
		struct sseq *q = s->inflight[--s->n_inflight];

		fail_seq(s, q, -ECONNRESET);
	}
}

int front_open(struct server *s, char *err, size_t n)
{
	/* Without a send buffer a PUSH socket takes one message only when the
	 * peer is waiting in recv, so a nonblocking send to a busy worker fails.
	 * The queue bound (batch.max_queue) bounds the batches outstanding. */
	int sendbuf = s->cfg.batch.max_queue < 8192 ? s->cfg.batch.max_queue + 1 : 8192;
	int rv;

	if ((rv = ipc_prepare_dir(s->dir, err, n)) < 0 ||
	    (rv = ipc_open(s->dir, IPC_WORK, 0, &s->work, err, n)) < 0 ||
	    (rv = ipc_open(s->dir, IPC_PRED, 0, &s->pred, err, n)) < 0 ||
	    (rv = ipc_open(s->dir, IPC_RESULT, 1, &s->results, err, n)) < 0)
		return rv;
	if ((rv = nng_socket_set_int(s->work, NNG_OPT_SENDBUF, sendbuf)) != 0 ||
	    (rv = nng_socket_set_int(s->pred, NNG_OPT_SENDBUF, sendbuf)) != 0) {
		snprintf(err, n, "ipc: cannot set the send buffer: %s", nng_strerror(rv));
		return -EIO;
	}
	pthread_mutex_init(&s->rx_lock, NULL);
	uv_async_init(s->loop, &s->rx_async, on_rx_async);
	s->rx_async.data = s;
	uv_timer_init(s->loop, &s->batch_timer);
	s->batch_timer.data = s;
	s->rx_run = true;
	if (pthread_create(&s->rx_thread, NULL, rx_main, s) != 0) {
		snprintf(err, n, "cannot start the result thread");
		return -EAGAIN;
	}
	return 0;
}

void front_close(struct server *s)
{
	__atomic_store_n(&s->rx_run, false, __ATOMIC_RELEASE);
	pthread_join(s->rx_thread, NULL);
	nng_close(s->results);
	nng_close(s->work);
	nng_close(s->pred);
	on_rx_async(&s->rx_async);
	uv_close((uv_handle_t *)&s->rx_async, NULL);
	uv_close((uv_handle_t *)&s->batch_timer, NULL);
	free(s->queued);
	free(s->inflight);
	pthread_mutex_destroy(&s->rx_lock);
}
