/* Wire messages: header and decode.  Decode checks the structure here and
 * the content with proto_check (encode.c), the rules the encoders apply.
 * It reads through a cursor whose getters never pass the end; every count
 * is compared with the bytes left (count <= left / size, no multiplication
 * first) before anything is read or allocated, so what a message makes us
 * allocate is bounded by its own size. */
#include "proto/proto.h"
#include "proto/proto_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(float) == 4, "f32 on the wire is IEEE-754 binary32");

#define SEQ_FIXED 42        /* BATCH bytes per sequence before its arrays */
#define RSEQ_FIXED 25       /* RESULT bytes per sequence before its arrays */
#define N_OWN (sizeof(((struct proto_msg *)0)->own_) / sizeof(void *))

int proto_fail(struct ebuf *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (e && e->s && e->n) {
		va_start(ap, fmt);
		vsnprintf(e->s, e->n, fmt, ap);
		va_end(ap);
	}
	return code;
}

const char *proto_type_name(uint16_t type)
{
	static const char *const names[] = {
		[PROTO_BATCH] = "BATCH", [PROTO_TABLE] = "TABLE",
		[PROTO_TRACE] = "TRACE", [PROTO_RESULT] = "RESULT",
		[PROTO_ERROR] = "ERROR", [PROTO_CANCEL] = "CANCEL",
	};

	if (type == 0 || type > PROTO_CANCEL)
		return "UNKNOWN";
	return names[type];
}

/* ---- cursor ---- */

struct rd {
	const uint8_t *p;
	size_t len, off;
	int bad;            /* a getter hit the end */
};

static size_t left(const struct rd *r)
{
	return r->len - r->off;
}

static uint64_t get(struct rd *r, size_t n)
{
	uint64_t v = 0;

	if (left(r) < n) {
		r->bad = 1;
		r->off = r->len;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)r->p[r->off + i] << (8 * i);
	r->off += n;
	return v;
}

static uint16_t rd16(struct rd *r) { return (uint16_t)get(r, 2); }
static uint32_t rd32(struct rd *r) { return (uint32_t)get(r, 4); }
static uint64_t rd64(struct rd *r) { return get(r, 8); }

static float rdf(struct rd *r)
{
	uint32_t u = rd32(r);
	float f;

	memcpy(&f, &u, sizeof f);
	return f;
}

/* count items of size bytes fit in what is left. */
static int fits(const struct rd *r, uint64_t count, uint64_t size)
{
	return size == 0 || count <= left(r) / size;
}

static void rd32s(struct rd *r, uint32_t *dst, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		dst[i] = rd32(r);
}

static void rdentries(struct rd *r, uint16_t *ex, float *w, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		ex[i] = rd16(r);
		w[i] = rdf(r);
	}
}

/* Zeroed memory owned by m; never NULL on success, even for n == 0.
 * Callers have bounded n by the bytes left. */
static void *own(struct proto_msg *m, uint64_t n, size_t size)
{
	void *p;

	for (size_t i = 0; i < N_OWN; i++) {
		if (m->own_[i])
			continue;
		p = calloc(n ? (size_t)n : 1, size);
		m->own_[i] = p;
		return p;
	}
	return NULL;
}

/* ---- header ---- */

static const uint32_t type_flags[] = {
	[PROTO_BATCH] = 0,
	[PROTO_TABLE] = PROTO_F_TABLE_TOKENS,
	[PROTO_TRACE] = PROTO_F_TRACE_WEIGHTS,
	[PROTO_RESULT] = PROTO_F_RESULT_MORE,
	[PROTO_ERROR] = 0,
	[PROTO_CANCEL] = 0,
};

static int newer_minor(uint16_t version)
{
	return (version & 0xff) > PROTO_VERSION_MINOR;
}

static int header(const void *buf, size_t len, struct proto_header *h,
		  struct ebuf *e)
{
	struct rd r = { buf, PROTO_HEADER_SIZE, 0, 0 };

	if (!buf || len < PROTO_HEADER_SIZE)
		return proto_fail(e, -EMSGSIZE, "message of %zu bytes is shorter than the %d-byte header",
			          len, PROTO_HEADER_SIZE);
	h->magic = rd32(&r);
	h->version = rd16(&r);
	h->type = rd16(&r);
	h->batch_id = rd64(&r);
	h->length = rd32(&r);
	h->flags = rd32(&r);
	if (h->magic != PROTO_MAGIC)
		return proto_fail(e, -EPROTO, "header: bad magic 0x%08x", (unsigned)h->magic);
	if (h->version >> 8 != PROTO_VERSION_MAJOR)
		return proto_fail(e, -EPROTO, "header: version %u.%u, this side speaks %u.x",
			          h->version >> 8, h->version & 0xff, PROTO_VERSION_MAJOR);
	if (h->type == 0 || h->type > PROTO_CANCEL)
		return proto_fail(e, -EPROTO, "header: unknown type %u", h->type);
	if (h->length > PROTO_MAX_PAYLOAD)
		return proto_fail(e, -EMSGSIZE, "header: length %u over the limit %u",
			          (unsigned)h->length, PROTO_MAX_PAYLOAD);
	if (h->flags & ~type_flags[h->type]) {
		/* a newer minor version may define more flags: ignore them */
		if (!newer_minor(h->version))
			return proto_fail(e, -EPROTO, "header: %s flags 0x%x unknown",
				          proto_type_name(h->type), (unsigned)h->flags);
		h->flags &= type_flags[h->type];
	}
	return 0;
}

int proto_header_peek(const void *buf, size_t len, struct proto_header *h)
{
	if (!h)
		return -EINVAL;
	return header(buf, len, h, NULL);
}

/* ---- decode: structure ---- */

static int truncated(struct ebuf *e, const char *what, uint32_t i)
{
	return proto_fail(e, -EMSGSIZE, "%s %u: truncated", what, (unsigned)i);
}

static int dec_batch(struct rd *r, struct proto_msg *m, struct ebuf *e)
{
	struct proto_batch *b = &m->batch;
	struct proto_seq *seqs;
	uint32_t *pool;
	uint64_t used = 0;

	b->n_seqs = rd32(r);
	b->kind = rd16(r);
	if (r->bad)
		return truncated(e, "BATCH head", 0);
	if (!fits(r, b->n_seqs, SEQ_FIXED))
		return proto_fail(e, -EMSGSIZE, "BATCH: n_seqs %u needs more than the %zu bytes left",
			          (unsigned)b->n_seqs, left(r));
	seqs = own(m, b->n_seqs, sizeof *seqs);
	pool = own(m, left(r) / 4, sizeof *pool);
	if (!seqs || !pool)
		return proto_fail(e, -ENOMEM, "BATCH: out of memory");
	b->seqs = seqs;
	for (uint32_t i = 0; i < b->n_seqs; i++) {
		struct proto_seq *s = &seqs[i];

		s->id = rd64(r);
		s->start_pos = rd32(r);
		s->max_tokens = rd32(r);
		s->temperature = rdf(r);
		s->top_p = rdf(r);
		s->seed = rd64(r);
		s->flags = rd32(r);
		s->n_tokens = rd32(r);
		s->n_stop = rd16(r);
		if (r->bad)
			return truncated(e, "BATCH seq", i);
		if (!fits(r, (uint64_t)s->n_tokens + s->n_stop, 4))
			return proto_fail(e, -EMSGSIZE, "BATCH seq %u: n_tokens %u + n_stop %u need more than the %zu bytes left",
				          (unsigned)i, (unsigned)s->n_tokens, s->n_stop, left(r));
		/* each id read consumes 4 bytes that sized the pool */
		rd32s(r, pool + used, s->n_tokens);
		s->tokens = pool + used;
		used += s->n_tokens;
		rd32s(r, pool + used, s->n_stop);
		s->stop = pool + used;
		used += s->n_stop;
	}
	return 0;
}

static int dec_table_tokens(struct rd *r, struct proto_msg *m, struct ebuf *e)
{
	struct proto_table *t = &m->table;
	uint64_t per, n;
	uint16_t *ex;
	float *w;

	t->k = rd16(r);
	t->n_tokens = rd32(r);
	if (r->bad)
		return truncated(e, "TABLE token head", 0);
	if (t->k == 0)
		return proto_fail(e, -EPROTO, "TABLE: per-token flag set with k 0");
	per = (uint64_t)t->n_layers * t->k;
	if (!fits(r, t->n_tokens, per * ENTRY))
		return proto_fail(e, -EMSGSIZE, "TABLE: n_tokens %u x n_layers %u x k %u need more than the %zu bytes left",
			          (unsigned)t->n_tokens, t->n_layers, t->k, left(r));
	n = t->n_tokens * per;
	ex = own(m, n, sizeof *ex);
	w = own(m, n, sizeof *w);
	if (!ex || !w)
		return proto_fail(e, -ENOMEM, "TABLE: out of memory");
	rdentries(r, ex, w, n);
	t->tok_experts = ex;
	t->tok_weights = w;
	return 0;
}

static int dec_table(struct rd *r, struct proto_msg *m, struct ebuf *e)
{
	struct proto_table *t = &m->table;
	uint32_t *start, used = 0;
	uint16_t *ex;
	float *sc;
	size_t cap;

	t->n_layers = rd16(r);
	t->n_experts = rd16(r);
	if (r->bad)
		return truncated(e, "TABLE head", 0);
	if (t->n_layers > PROTO_MAX_LAYERS)
		return proto_fail(e, -EMSGSIZE, "TABLE: n_layers %u over the limit %u",
			          t->n_layers, PROTO_MAX_LAYERS);
	if (!fits(r, t->n_layers, 2))
		return proto_fail(e, -EMSGSIZE, "TABLE: n_layers %u needs more than the %zu bytes left",
			          t->n_layers, left(r));
	cap = left(r) / ENTRY;
	start = own(m, (uint64_t)t->n_layers + 1, sizeof *start);
	ex = own(m, cap, sizeof *ex);
	sc = own(m, cap, sizeof *sc);
	if (!start || !ex || !sc)
		return proto_fail(e, -ENOMEM, "TABLE: out of memory");
	for (uint32_t l = 0; l < t->n_layers; l++) {
		uint16_t c = rd16(r);

		if (r->bad)
			return truncated(e, "TABLE layer", l);
		if (!fits(r, c, ENTRY))
			return proto_fail(e, -EMSGSIZE, "TABLE layer %u: count %u needs more than the %zu bytes left",
				          (unsigned)l, c, left(r));
		rdentries(r, ex + used, sc + used, c);
		used += c;
		start[l + 1] = used;
	}
	t->layer_start = start;
	t->experts = ex;
	t->scores = sc;
	if (m->hdr.flags & PROTO_F_TABLE_TOKENS)
		return dec_table_tokens(r, m, e);
	return 0;
}

static int dec_trace(struct rd *r, struct proto_msg *m, struct ebuf *e)
{
	struct proto_trace *t = &m->trace;
	int wts = !!(m->hdr.flags & PROTO_F_TRACE_WEIGHTS);
	uint64_t per, rec;
	uint64_t *ids;
	uint32_t *pos, *tok;
	uint16_t *ex;
	float *w = NULL;

	t->n_layers = rd16(r);
	t->n_experts = rd16(r);
	t->k = rd16(r);
	t->n_tokens = rd32(r);
	if (r->bad)
		return truncated(e, "TRACE head", 0);
	per = (uint64_t)t->n_layers * t->k;
	rec = TOK_FIXED + per * (wts ? ENTRY : 2);
	if (!fits(r, t->n_tokens, rec))
		return proto_fail(e, -EMSGSIZE, "TRACE: n_tokens %u of %llu bytes each need more than the %zu bytes left",
			          (unsigned)t->n_tokens, (unsigned long long)rec, left(r));
	ids = own(m, t->n_tokens, sizeof *ids);
	pos = own(m, t->n_tokens, sizeof *pos);
	tok = own(m, t->n_tokens, sizeof *tok);
	ex = own(m, t->n_tokens * per, sizeof *ex);
	if (wts)
		w = own(m, t->n_tokens * per, sizeof *w);
	if (!ids || !pos || !tok || !ex || (wts && !w))
		return proto_fail(e, -ENOMEM, "TRACE: out of memory");
	for (uint32_t i = 0; i < t->n_tokens; i++) {
		ids[i] = rd64(r);
		pos[i] = rd32(r);
		tok[i] = rd32(r);
		for (uint64_t j = 0; j < per; j++)
			ex[i * per + j] = rd16(r);
		for (uint64_t j = 0; wts && j < per; j++)
			w[i * per + j] = rdf(r);
	}
	t->seq_ids = ids;
	t->positions = pos;
	t->tokens = tok;
	t->experts = ex;
	t->weights = w;
	return 0;
}

static int dec_result(struct rd *r, struct proto_msg *m, struct ebuf *e)
{
	struct proto_result *res = &m->result;
	struct proto_moe_counts *c = &res->moe;
	struct proto_seq_result *seqs;
	uint32_t *pool;
	uint64_t used = 0;

	res->more = !!(m->hdr.flags & PROTO_F_RESULT_MORE);
	res->table_status = rd32(r);
	c->hits = rd64(r);
	c->misses = rd64(r);
	c->prefetched_used = rd64(r);
	c->prefetched_unused = rd64(r);
	c->bytes_loaded = rd64(r);
	c->stall_ns = rd64(r);
	c->experts_used = rd64(r);
	c->experts_predicted = rd64(r);
	c->experts_predicted_used = rd64(r);
	res->n_seqs = rd32(r);
	if (r->bad)
		return truncated(e, "RESULT head", 0);
	if (!fits(r, res->n_seqs, RSEQ_FIXED))
		return proto_fail(e, -EMSGSIZE, "RESULT: n_seqs %u needs more than the %zu bytes left",
			          (unsigned)res->n_seqs, left(r));
	seqs = own(m, res->n_seqs, sizeof *seqs);
	pool = own(m, left(r) / 4, 4);
	if (!seqs || !pool)
		return proto_fail(e, -ENOMEM, "RESULT: out of memory");
	res->seqs = seqs;
	for (uint32_t i = 0; i < res->n_seqs; i++) {
		struct proto_seq_result *s = &seqs[i];
		float *lg;

		s->id = rd64(r);
		s->status = (int32_t)rd32(r);
		s->finish = (uint8_t)get(r, 1);
		s->n_prompt = rd32(r);
		s->n_tokens = rd32(r);
		s->n_logits = rd32(r);
		if (r->bad)
			return truncated(e, "RESULT seq", i);
		if (!fits(r, (uint64_t)s->n_tokens + s->n_logits, 4))
			return proto_fail(e, -EMSGSIZE, "RESULT seq %u: n_tokens %u + n_logits %u need more than the %zu bytes left",
				          (unsigned)i, (unsigned)s->n_tokens, (unsigned)s->n_logits, left(r));
		rd32s(r, pool + used, s->n_tokens);
		s->tokens = pool + used;
		used += s->n_tokens;
		lg = (float *)(void *)(pool + used);
		for (uint32_t j = 0; j < s->n_logits; j++)
			lg[j] = rdf(r);
		s->logits = lg;
		used += s->n_logits;
	}
	return 0;
}

static int dec_error(struct rd *r, struct proto_msg *m, struct ebuf *e)
{
	uint32_t n;
	char *s;

	m->error.code = (int32_t)rd32(r);
	n = rd32(r);
	if (r->bad)
		return truncated(e, "ERROR head", 0);
	if (n > PROTO_MAX_ERRMSG)
		return proto_fail(e, -EMSGSIZE, "ERROR: message length %u over the limit %u",
			          (unsigned)n, PROTO_MAX_ERRMSG);
	if (!fits(r, n, 1))
		return proto_fail(e, -EMSGSIZE, "ERROR: message length %u but %zu bytes left",
			          (unsigned)n, left(r));
	s = own(m, (uint64_t)n + 1, 1);
	if (!s)
		return proto_fail(e, -ENOMEM, "ERROR: out of memory");
	memcpy(s, r->p + r->off, n);
	r->off += n;
	if (memchr(s, 0, n))
		return proto_fail(e, -EPROTO, "ERROR: message has a NUL byte");
	m->error.msg = s;
	return 0;
}

static int dec_cancel(struct rd *r, struct proto_msg *m, struct ebuf *e)
{
	uint32_t n = rd32(r);
	uint64_t *ids;

	if (r->bad)
		return truncated(e, "CANCEL head", 0);
	if (n > PROTO_MAX_SEQS)
		return proto_fail(e, -EMSGSIZE, "CANCEL: %u sequences over the limit %u",
			          (unsigned)n, PROTO_MAX_SEQS);
	if (!fits(r, n, 8))
		return proto_fail(e, -EMSGSIZE, "CANCEL: %u sequences but %zu bytes left",
			          (unsigned)n, left(r));
	if (!(ids = own(m, (uint64_t)n + 1, sizeof(*ids))))
		return proto_fail(e, -ENOMEM, "CANCEL: out of memory");
	for (uint32_t i = 0; i < n; i++)
		ids[i] = rd64(r);
	m->cancel.n_seqs = n;
	m->cancel.seq_ids = ids;
	return 0;
}

int proto_decode_err(const void *buf, size_t len, struct proto_msg **out,
		     char *err, size_t errlen)
{
	static int (*const dec[])(struct rd *, struct proto_msg *, struct ebuf *) = {
		[PROTO_BATCH] = dec_batch, [PROTO_TABLE] = dec_table,
		[PROTO_TRACE] = dec_trace, [PROTO_RESULT] = dec_result,
		[PROTO_ERROR] = dec_error, [PROTO_CANCEL] = dec_cancel,
	};
	struct ebuf e = { err, errlen };
	struct proto_header h;
	struct proto_msg *m;
	struct rd r;
	int rv;

	if (err && errlen)
		err[0] = '\0';
	if (!out || (!buf && len))
		return proto_fail(&e, -EINVAL, "proto_decode: NULL argument");
	*out = NULL;
	if ((rv = header(buf, len, &h, &e)) != 0)
		return rv;
	if (h.length != len - PROTO_HEADER_SIZE)
		return proto_fail(&e, -EMSGSIZE, "%s: header length %u but %zu payload bytes",
			          proto_type_name(h.type), (unsigned)h.length,
			          len - PROTO_HEADER_SIZE);
	m = calloc(1, sizeof *m);
	if (!m)
		return proto_fail(&e, -ENOMEM, "proto_decode: out of memory");
	m->hdr = h;
	r = (struct rd){ (const uint8_t *)buf + PROTO_HEADER_SIZE, h.length, 0, 0 };
	rv = dec[h.type](&r, m, &e);
	/* a newer minor version may append fields: ignore them */
	if (rv == 0 && left(&r) && !newer_minor(h.version))
		rv = proto_fail(&e, -EMSGSIZE, "%s: %zu trailing bytes",
			        proto_type_name(h.type), left(&r));
	/* content rules are shared with the encoders */
	if (rv == 0 && (rv = proto_check(m, err, errlen)) == -EINVAL)
		rv = -EPROTO;
	if (rv) {
		proto_msg_free(m);
		return rv;
	}
	*out = m;
	return 0;
}

int proto_decode(const void *buf, size_t len, struct proto_msg **out)
{
	return proto_decode_err(buf, len, out, NULL, 0);
}

void proto_msg_free(struct proto_msg *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < N_OWN; i++)
		free(m->own_[i]);
	free(m);
}
