/* Content rules (proto_check, shared by the decoder and the encoders) and
 * the encoders.  An encoder writes each body twice through one function:
 * first with no buffer to count the bytes, then into the malloc'd buffer, so
 * the size and the layout cannot disagree. */
#include "proto/proto.h"
#include "proto/proto_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- content checks: -EINVAL (bad value), -EMSGSIZE (limit) ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Sequence ids, at first + i * stride bytes (n >= 2), are distinct. */
static int unique_ids(const char *what, const uint64_t *first, size_t stride,
		      uint32_t n, struct ebuf *e)
{
	uint64_t *ids;
	int rv = 0;

	ids = malloc(n * sizeof *ids);
	if (!ids)
		return proto_fail(e, -ENOMEM, "%s: out of memory", what);
	for (uint32_t i = 0; i < n; i++)
		memcpy(&ids[i], (const char *)first + i * stride, sizeof *ids);
	qsort(ids, n, sizeof *ids, cmp_u64);
	for (uint32_t i = 1; i < n && !rv; i++)
		if (ids[i] == ids[i - 1])
			rv = proto_fail(e, -EINVAL, "%s: seq id %llu twice", what,
				        (unsigned long long)ids[i]);
	free(ids);
	return rv;
}

static int check_seq(const struct proto_seq *s, uint32_t i, struct ebuf *e)
{
	if (s->n_tokens == 0 || !s->tokens)
		return proto_fail(e, -EINVAL, "BATCH seq %u: no tokens", (unsigned)i);
	if (s->n_stop > PROTO_MAX_STOP)
		return proto_fail(e, -EMSGSIZE, "BATCH seq %u: n_stop %u over the limit %u",
			          (unsigned)i, s->n_stop, PROTO_MAX_STOP);
	if (s->n_stop && !s->stop)
		return proto_fail(e, -EINVAL, "BATCH seq %u: stop is NULL", (unsigned)i);
	if (s->flags & ~PROTO_SEQ_FLAGS_ALL)
		return proto_fail(e, -EINVAL, "BATCH seq %u: flags 0x%x unknown",
			          (unsigned)i, (unsigned)s->flags);
	if (!isfinite(s->temperature) || s->temperature < 0)
		return proto_fail(e, -EINVAL, "BATCH seq %u: temperature %g not finite and >= 0",
			          (unsigned)i, (double)s->temperature);
	if (!isfinite(s->top_p) || s->top_p < 0 || s->top_p > 1)
		return proto_fail(e, -EINVAL, "BATCH seq %u: top_p %g not in [0, 1]",
			          (unsigned)i, (double)s->top_p);
	if ((uint64_t)s->start_pos + s->n_tokens > UINT32_MAX)
		return proto_fail(e, -EINVAL, "BATCH seq %u: start_pos %u + n_tokens %u overflow",
			          (unsigned)i, (unsigned)s->start_pos, (unsigned)s->n_tokens);
	return 0;
}

static int check_batch(const struct proto_batch *b, struct ebuf *e)
{
	uint64_t total = 0;
	int rv;

	if (b->kind > PROTO_KIND_FORWARD)
		return proto_fail(e, -EINVAL, "BATCH: kind %u unknown", b->kind);
	if (b->n_seqs > PROTO_MAX_SEQS)
		return proto_fail(e, -EMSGSIZE, "BATCH: n_seqs %u over the limit %u",
			          (unsigned)b->n_seqs, PROTO_MAX_SEQS);
	if (b->n_seqs && !b->seqs)
		return proto_fail(e, -EINVAL, "BATCH: seqs is NULL");
	for (uint32_t i = 0; i < b->n_seqs; i++) {
		if ((rv = check_seq(&b->seqs[i], i, e)) != 0)
			return rv;
		total += b->seqs[i].n_tokens;
	}
	if (total > PROTO_MAX_TOKENS)
		return proto_fail(e, -EMSGSIZE, "BATCH: %llu tokens over the limit %u",
			          (unsigned long long)total, PROTO_MAX_TOKENS);
	if (b->n_seqs < 2)
		return 0;
	return unique_ids("BATCH", &b->seqs->id, sizeof *b->seqs, b->n_seqs, e);
}

/* n experts below n_experts, distinct, with finite values (v may be NULL).
 * seen: n_experts zero bytes, left zero.  tok UINT64_MAX: a layer list. */
static int check_set(const uint16_t *ex, const float *v, uint32_t n,
		     uint16_t n_experts, uint8_t *seen, const char *what,
		     uint64_t tok, uint32_t layer, struct ebuf *e)
{
	const char *why = NULL;
	char where[64];
	uint32_t i;

	for (i = 0; i < n; i++) {
		if (ex[i] >= n_experts)
			why = "not below n_experts";
		else if (seen[ex[i]])
			why = "twice";
		else if (v && !isfinite(v[i]))
			why = "with a non-finite score/weight";
		if (why)
			break;
		seen[ex[i]] = 1;
	}
	for (uint32_t j = 0; j < i; j++)
		seen[ex[j]] = 0;
	if (!why)
		return 0;
	if (tok == UINT64_MAX)
		snprintf(where, sizeof where, "layer %u", (unsigned)layer);
	else
		snprintf(where, sizeof where, "token %llu layer %u",
			 (unsigned long long)tok, (unsigned)layer);
	return proto_fail(e, -EINVAL, "%s %s: expert %u (n_experts %u) %s", what, where,
		          ex[i], n_experts, why);
}

/* Counts first (they bound the loops), then every entry. */
static int check_table_counts(const struct proto_table *t, struct ebuf *e)
{
	const uint32_t *st = t->layer_start;

	if (t->n_layers > PROTO_MAX_LAYERS)
		return proto_fail(e, -EMSGSIZE, "TABLE: n_layers %u over the limit %u",
			          t->n_layers, PROTO_MAX_LAYERS);
	if (t->n_experts == 0)
		return proto_fail(e, -EINVAL, "TABLE: n_experts 0");
	if (!st || st[0] != 0)
		return proto_fail(e, -EINVAL, "TABLE: layer_start missing or [0] not 0");
	for (uint32_t l = 0; l < t->n_layers; l++)
		if (st[l + 1] < st[l] || st[l + 1] - st[l] > t->n_experts)
			return proto_fail(e, -EINVAL, "TABLE layer %u: count %lld not in 0..n_experts %u",
				          (unsigned)l, (long long)st[l + 1] - st[l], t->n_experts);
	if (st[t->n_layers] && (!t->experts || !t->scores))
		return proto_fail(e, -EINVAL, "TABLE: experts or scores NULL");
	if (t->k == 0)
		return t->n_tokens ? proto_fail(e, -EINVAL, "TABLE: n_tokens %u with k 0",
					        (unsigned)t->n_tokens) : 0;
	if (t->k > PROTO_MAX_K)
		return proto_fail(e, -EMSGSIZE, "TABLE: k %u over the limit %u", t->k, PROTO_MAX_K);
	if (t->k > t->n_experts)
		return proto_fail(e, -EINVAL, "TABLE: k %u > n_experts %u", t->k, t->n_experts);
	if (t->n_tokens > PROTO_MAX_TOKENS ||
	    (uint64_t)t->n_tokens * t->n_layers * t->k * ENTRY > PROTO_MAX_PAYLOAD)
		return proto_fail(e, -EMSGSIZE, "TABLE: n_tokens %u x n_layers %u x k %u over the limits",
			          (unsigned)t->n_tokens, t->n_layers, t->k);
	if (t->n_tokens && t->n_layers && (!t->tok_experts || !t->tok_weights))
		return proto_fail(e, -EINVAL, "TABLE: tok_experts or tok_weights NULL");
	return 0;
}

static int check_table(const struct proto_table *t, struct ebuf *e)
{
	uint64_t rows;
	uint8_t *seen;
	int rv;

	if ((rv = check_table_counts(t, e)) != 0)
		return rv;
	seen = calloc(t->n_experts, 1);
	if (!seen)
		return proto_fail(e, -ENOMEM, "TABLE: out of memory");
	for (uint32_t l = 0; l < t->n_layers && !rv; l++)
		if (t->layer_start[l + 1] > t->layer_start[l])
			rv = check_set(t->experts + t->layer_start[l],
				       t->scores + t->layer_start[l],
				       t->layer_start[l + 1] - t->layer_start[l],
				       t->n_experts, seen, "TABLE", UINT64_MAX, l, e);
	rows = (uint64_t)t->n_tokens * t->n_layers;
	for (uint64_t i = 0; i < rows && !rv; i++)
		rv = check_set(t->tok_experts + i * t->k, t->tok_weights + i * t->k, t->k,
			       t->n_experts, seen, "TABLE", i / t->n_layers,
			       (uint32_t)(i % t->n_layers), e);
	free(seen);
	return rv;
}

static int check_trace(const struct proto_trace *t, struct ebuf *e)
{
	uint64_t per = (uint64_t)t->n_layers * t->k, rows;
	uint64_t rec = TOK_FIXED + per * (t->weights ? ENTRY : 2);
	uint8_t *seen;
	int rv = 0;

	/* n_tokens last: the product needs the others bounded */
	if (t->n_layers > PROTO_MAX_LAYERS || t->k > PROTO_MAX_K ||
	    t->n_tokens > PROTO_MAX_TOKENS || t->n_tokens * rec > PROTO_MAX_PAYLOAD)
		return proto_fail(e, -EMSGSIZE, "TRACE: n_layers %u, k %u, n_tokens %u over the limits",
			          t->n_layers, t->k, (unsigned)t->n_tokens);
	if (t->n_layers == 0 || t->n_experts == 0 || t->k == 0 || t->k > t->n_experts)
		return proto_fail(e, -EINVAL, "TRACE: n_layers %u, n_experts %u, k %u: need all >= 1, k <= n_experts",
			          t->n_layers, t->n_experts, t->k);
	if (t->n_tokens && (!t->seq_ids || !t->positions || !t->tokens || !t->experts))
		return proto_fail(e, -EINVAL, "TRACE: an array is NULL");
	seen = calloc(t->n_experts, 1);
	if (!seen)
		return proto_fail(e, -ENOMEM, "TRACE: out of memory");
	rows = (uint64_t)t->n_tokens * t->n_layers;
	for (uint64_t i = 0; i < rows && !rv; i++)
		rv = check_set(t->experts + i * t->k, t->weights ? t->weights + i * t->k : NULL,
			       t->k, t->n_experts, seen, "TRACE", i / t->n_layers,
			       (uint32_t)(i % t->n_layers), e);
	free(seen);
	return rv;
}

static int check_result(const struct proto_result *r, struct ebuf *e)
{
	uint64_t total = 0;

	if (r->table_status > PROTO_TABLE_NONE)
		return proto_fail(e, -EINVAL, "RESULT: table_status %u unknown",
			          (unsigned)r->table_status);
	if (r->n_seqs > PROTO_MAX_SEQS)
		return proto_fail(e, -EMSGSIZE, "RESULT: n_seqs %u over the limit %u",
			          (unsigned)r->n_seqs, PROTO_MAX_SEQS);
	if (r->n_seqs && !r->seqs)
		return proto_fail(e, -EINVAL, "RESULT: seqs is NULL");
	for (uint32_t i = 0; i < r->n_seqs; i++) {
		const struct proto_seq_result *s = &r->seqs[i];

		if (s->status > 0 || s->finish > PROTO_FINISH_CANCELLED)
			return proto_fail(e, -EINVAL, "RESULT seq %u: status %d / finish %u invalid",
				          (unsigned)i, (int)s->status, s->finish);
		if (s->n_logits > PROTO_MAX_LOGITS)
			return proto_fail(e, -EMSGSIZE, "RESULT seq %u: n_logits %u over the limit %u",
				          (unsigned)i, (unsigned)s->n_logits, PROTO_MAX_LOGITS);
		if ((s->n_tokens && !s->tokens) || (s->n_logits && !s->logits))
			return proto_fail(e, -EINVAL, "RESULT seq %u: tokens or logits NULL", (unsigned)i);
		total += s->n_tokens;
	}
	if (total > PROTO_MAX_TOKENS)
		return proto_fail(e, -EMSGSIZE, "RESULT: %llu tokens over the limit %u",
			          (unsigned long long)total, PROTO_MAX_TOKENS);
	if (r->n_seqs < 2)
		return 0;
	return unique_ids("RESULT", &r->seqs->id, sizeof *r->seqs, r->n_seqs, e);
}

static int check_error(const struct proto_error *er, struct ebuf *e)
{
	if (er->code >= 0)
		return proto_fail(e, -EINVAL, "ERROR: code %d not a negative errno", (int)er->code);
	if (!er->msg)
		return proto_fail(e, -EINVAL, "ERROR: msg is NULL");
	if (strnlen(er->msg, PROTO_MAX_ERRMSG + 1) > PROTO_MAX_ERRMSG)
		return proto_fail(e, -EMSGSIZE, "ERROR: message over the limit %u bytes",
			          PROTO_MAX_ERRMSG);
	return 0;
}

static int check_cancel(const struct proto_cancel *c, struct ebuf *e)
{
	if (c->n_seqs > PROTO_MAX_SEQS)
		return proto_fail(e, -EMSGSIZE, "CANCEL: %u sequences over the limit %u",
			          (unsigned)c->n_seqs, PROTO_MAX_SEQS);
	if (c->n_seqs && !c->seq_ids)
		return proto_fail(e, -EINVAL, "CANCEL: seq_ids is NULL");
	return 0;
}

int proto_check(const struct proto_msg *m, char *err, size_t errlen)
{
	struct ebuf e = { err, errlen };

	if (!m)
		return -EINVAL;
	switch (m->hdr.type) {
	case PROTO_BATCH: return check_batch(&m->batch, &e);
	case PROTO_TABLE: return check_table(&m->table, &e);
	case PROTO_TRACE: return check_trace(&m->trace, &e);
	case PROTO_RESULT: return check_result(&m->result, &e);
	case PROTO_ERROR: return check_error(&m->error, &e);
	case PROTO_CANCEL: return check_cancel(&m->cancel, &e);
	}
	return proto_fail(&e, -EINVAL, "type %u unknown", m->hdr.type);
}

/* ---- writer: p NULL counts bytes ---- */

struct wr {
	uint8_t *p;
	uint64_t off;
};

static void put(struct wr *w, uint64_t v, unsigned n)
{
	if (w->p)
		for (unsigned i = 0; i < n; i++)
			w->p[w->off + i] = (uint8_t)(v >> (8 * i));
	w->off += n;
}

static void putf(struct wr *w, float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof u);
	put(w, u, 4);
}

static void put32s(struct wr *w, const uint32_t *a, uint64_t n)
{
	if (!w->p) {
		w->off += 4 * n;
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		put(w, a[i], 4);
}

static void putfs(struct wr *w, const float *a, uint64_t n)
{
	if (!w->p) {
		w->off += 4 * n;
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		putf(w, a[i]);
}

static void put16s(struct wr *w, const uint16_t *a, uint64_t n)
{
	if (!w->p) {
		w->off += 2 * n;
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		put(w, a[i], 2);
}

static void putentries(struct wr *w, const uint16_t *ex, const float *v, uint64_t n)
{
	if (!w->p) {
		w->off += ENTRY * n;
		return;
	}
	for (uint64_t i = 0; i < n; i++) {
		put(w, ex[i], 2);
		putf(w, v[i]);
	}
}

/* ---- bodies ---- */

static void enc_batch(struct wr *w, const struct proto_batch *b)
{
	put(w, b->n_seqs, 4);
	put(w, b->kind, 2);
	for (uint32_t i = 0; i < b->n_seqs; i++) {
		const struct proto_seq *s = &b->seqs[i];

		put(w, s->id, 8);
		put(w, s->start_pos, 4);
		put(w, s->max_tokens, 4);
		putf(w, s->temperature);
		putf(w, s->top_p);
		put(w, s->seed, 8);
		put(w, s->flags, 4);
		put(w, s->n_tokens, 4);
		put(w, s->n_stop, 2);
		put32s(w, s->tokens, s->n_tokens);
		put32s(w, s->stop, s->n_stop);
	}
}

static void enc_table(struct wr *w, const struct proto_table *t)
{
	const uint32_t *st = t->layer_start;

	put(w, t->n_layers, 2);
	put(w, t->n_experts, 2);
	for (uint32_t l = 0; l < t->n_layers; l++) {
		put(w, st[l + 1] - st[l], 2);
		if (st[l + 1] > st[l])
			putentries(w, t->experts + st[l], t->scores + st[l],
				   st[l + 1] - st[l]);
	}
	if (t->k == 0)
		return;
	put(w, t->k, 2);
	put(w, t->n_tokens, 4);
	putentries(w, t->tok_experts, t->tok_weights,
		   (uint64_t)t->n_tokens * t->n_layers * t->k);
}

static void enc_trace(struct wr *w, const struct proto_trace *t)
{
	uint64_t per = (uint64_t)t->n_layers * t->k;

	put(w, t->n_layers, 2);
	put(w, t->n_experts, 2);
	put(w, t->k, 2);
	put(w, t->n_tokens, 4);
	for (uint32_t i = 0; i < t->n_tokens; i++) {
		put(w, t->seq_ids[i], 8);
		put(w, t->positions[i], 4);
		put(w, t->tokens[i], 4);
		put16s(w, t->experts + i * per, per);
		if (t->weights)
			putfs(w, t->weights + i * per, per);
	}
}

static void enc_result(struct wr *w, const struct proto_result *r)
{
	const struct proto_moe_counts *c = &r->moe;

	put(w, r->table_status, 4);
	put(w, c->hits, 8);
	put(w, c->misses, 8);
	put(w, c->prefetched_used, 8);
	put(w, c->prefetched_unused, 8);
	put(w, c->bytes_loaded, 8);
	put(w, c->stall_ns, 8);
	put(w, c->experts_used, 8);
	put(w, c->experts_predicted, 8);
	put(w, c->experts_predicted_used, 8);
	put(w, r->n_seqs, 4);
	for (uint32_t i = 0; i < r->n_seqs; i++) {
		const struct proto_seq_result *s = &r->seqs[i];

		put(w, s->id, 8);
		put(w, (uint32_t)s->status, 4);
		put(w, s->finish, 1);
		put(w, s->n_prompt, 4);
		put(w, s->n_tokens, 4);
		put(w, s->n_logits, 4);
		put32s(w, s->tokens, s->n_tokens);
		putfs(w, s->logits, s->n_logits);
	}
}

static void enc_error(struct wr *w, const struct proto_error *er)
{
	size_t n = strlen(er->msg);

	put(w, (uint32_t)er->code, 4);
	put(w, n, 4);
	if (w->p)
		memcpy(w->p + w->off, er->msg, n);
	w->off += n;
}

static void enc_cancel(struct wr *w, const struct proto_cancel *c)
{
	put(w, c->n_seqs, 4);
	for (uint32_t i = 0; i < c->n_seqs; i++)
		put(w, c->seq_ids[i], 8);
}

static void enc_body(struct wr *w, const struct proto_msg *m)
{
	switch (m->hdr.type) {
	case PROTO_BATCH: enc_batch(w, &m->batch); break;
	case PROTO_TABLE: enc_table(w, &m->table); break;
	case PROTO_TRACE: enc_trace(w, &m->trace); break;
	case PROTO_RESULT: enc_result(w, &m->result); break;
	case PROTO_ERROR: enc_error(w, &m->error); break;
	case PROTO_CANCEL: enc_cancel(w, &m->cancel); break;
	}
}

static uint32_t flags_of(const struct proto_msg *m)
{
	switch (m->hdr.type) {
	case PROTO_TABLE: return m->table.k ? PROTO_F_TABLE_TOKENS : 0;
	case PROTO_TRACE: return m->trace.weights ? PROTO_F_TRACE_WEIGHTS : 0;
	case PROTO_RESULT: return m->result.more ? PROTO_F_RESULT_MORE : 0;
	}
	return 0;
}

int proto_encode(const struct proto_msg *m, void **buf, size_t *len)
{
	struct wr w = { NULL, 0 };
	int rv;

	if (!m || !buf || !len)
		return -EINVAL;
	if ((rv = proto_check(m, NULL, 0)) != 0)
		return rv;
	enc_body(&w, m);
	if (w.off > PROTO_MAX_PAYLOAD)
		return -EMSGSIZE;
	w.p = malloc(PROTO_HEADER_SIZE + (size_t)w.off);
	if (!w.p)
		return -ENOMEM;
	*len = PROTO_HEADER_SIZE + (size_t)w.off;
	w.off = 0;
	put(&w, PROTO_MAGIC, 4);
	put(&w, PROTO_VERSION, 2);
	put(&w, m->hdr.type, 2);
	put(&w, m->hdr.batch_id, 8);
	put(&w, *len - PROTO_HEADER_SIZE, 4);
	put(&w, flags_of(m), 4);
	enc_body(&w, m);
	*buf = w.p;
	return 0;
}

int proto_encode_batch(const struct proto_batch *b, uint64_t batch_id,
		       void **buf, size_t *len)
{
	struct proto_msg m = { .hdr = { .type = PROTO_BATCH, .batch_id = batch_id } };

	if (!b)
		return -EINVAL;
	m.batch = *b;
	return proto_encode(&m, buf, len);
}

int proto_encode_table(const struct proto_table *t, uint64_t batch_id,
		       void **buf, size_t *len)
{
	struct proto_msg m = { .hdr = { .type = PROTO_TABLE, .batch_id = batch_id } };

	if (!t)
		return -EINVAL;
	m.table = *t;
	return proto_encode(&m, buf, len);
}

int proto_encode_trace(const struct proto_trace *t, uint64_t batch_id,
		       void **buf, size_t *len)
{
	struct proto_msg m = { .hdr = { .type = PROTO_TRACE, .batch_id = batch_id } };

	if (!t)
		return -EINVAL;
	m.trace = *t;
	return proto_encode(&m, buf, len);
}

int proto_encode_result(const struct proto_result *r, uint64_t batch_id,
			void **buf, size_t *len)
{
	struct proto_msg m = { .hdr = { .type = PROTO_RESULT, .batch_id = batch_id } };

	if (!r)
		return -EINVAL;
	m.result = *r;
	return proto_encode(&m, buf, len);
}

int proto_encode_error(int32_t code, const char *msg, uint64_t batch_id,
		       void **buf, size_t *len)
{
	struct proto_msg m = { .hdr = { .type = PROTO_ERROR, .batch_id = batch_id } };

	m.error.code = code;
	m.error.msg = msg;
	return proto_encode(&m, buf, len);
}

int proto_encode_cancel(const uint64_t *seq_ids, uint32_t n, void **buf, size_t *len)
{
	struct proto_msg m = { .hdr = { .type = PROTO_CANCEL } };

	m.cancel.n_seqs = n;
	m.cancel.seq_ids = seq_ids;
	return proto_encode(&m, buf, len);
}
