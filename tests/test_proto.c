/* proto: round trips, the byte layout of PROTOCOL.md (an independent raw
 * writer here), truncations, corrupted counts, bad headers, content rules,
 * limits, and deterministic random mutations (run it under ASan). */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "tests/suite_run.h"

/* ---- sample messages ---- */

static const uint32_t toks_a[] = { 1, 2, 3, 4, 5 }, toks_b[] = { 42 };
static const uint32_t stop_a[] = { 2, 0xffffffffu };
static const struct proto_seq seqs2[] = {
	{ .id = 7, .start_pos = 0, .max_tokens = 16, .temperature = 0.7f, .top_p = 0.9f,
	  .seed = 1234, .flags = PROTO_SEQ_STREAM, .n_tokens = 5, .tokens = toks_a,
	  .n_stop = 2, .stop = stop_a },
	{ .id = UINT64_MAX, .start_pos = 100, .max_tokens = 0, .temperature = 0, .top_p = 1,
	  .seed = UINT64_MAX, .flags = PROTO_SEQ_FLAGS_ALL, .n_tokens = 1, .tokens = toks_b },
};
static const struct proto_batch batch2 = { PROTO_KIND_GENERATE, 2, seqs2 };
static const struct proto_batch batch0 = { PROTO_KIND_FORWARD, 0, NULL };

static const uint32_t tab_start[] = { 0, 2, 2, 5 };
static const uint16_t tab_ex[] = { 3, 1, 0, 7, 4 };
static const float tab_sc[] = { 0.9f, 0.1f, 1e-30f, -2.0f, -0.0f };
static const uint16_t tab_tex[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 1, 0, 3, 2 };
static const float tab_tw[12] = { .5f, .5f, .7f, .3f, 1, 0, .25f, .75f, .6f, .4f, .9f, .1f };
static const struct proto_table table_tok = { 3, 8, tab_start, tab_ex, tab_sc, 2, 2, tab_tex, tab_tw };
static const struct proto_table table_plain = { 3, 8, tab_start, tab_ex, tab_sc, 0, 0, NULL, NULL };

static const uint64_t tr_ids[] = { 7, 7, 9 };
static const uint32_t tr_pos[] = { 0, 1, 0 }, tr_tok[] = { 11, 12, 13 };
static const uint16_t tr_ex[12] = { 0, 1, 2, 3, 3, 2, 1, 0, 0, 3, 2, 1 };
static const float tr_w[12] = { .6f, .4f, .5f, .5f, .9f, .1f, .8f, .2f, .7f, .3f, .55f, .45f };
static const struct proto_trace trace_w = { 2, 4, 2, 3, tr_ids, tr_pos, tr_tok, tr_ex, tr_w };
static const struct proto_trace trace_now = { 2, 4, 2, 3, tr_ids, tr_pos, tr_tok, tr_ex, NULL };

static const uint32_t res_tok[] = { 5, 6, 7 };
static float res_logits[4] = { 1.5f, -1.5f, 0, 0 };   /* -inf and NaN set in setup */
static const struct proto_seq_result rseqs[] = {
	{ .id = 7, .status = 0, .finish = PROTO_FINISH_LENGTH, .n_prompt = 5, .n_tokens = 3,
	  .tokens = res_tok, .n_logits = 4, .logits = res_logits },
	{ .id = 8, .status = -EIO, .finish = PROTO_FINISH_ERROR, .n_prompt = 1 },
};
static const struct proto_result result2 = {
	.table_status = PROTO_TABLE_LATE,
	.moe = { 1, 2, 3, 4, UINT64_MAX, 6, 7, 8, 9 },
	.n_seqs = 2, .seqs = rseqs, .more = 1,
};

#define N_SAMPLES 9

static const uint64_t cancel_ids[3] = {7, 1ull << 40, 42};

static void setup(void)
{
	res_logits[2] = -INFINITY;
	res_logits[3] = NAN;
}

static void sample(int i, void **buf, size_t *len)
{
	int rv = -1;

	switch (i) {
	case 0: rv = proto_encode_batch(&batch2, 1, buf, len); break;
	case 1: rv = proto_encode_batch(&batch0, 2, buf, len); break;
	case 2: rv = proto_encode_table(&table_tok, 3, buf, len); break;
	case 3: rv = proto_encode_table(&table_plain, 4, buf, len); break;
	case 4: rv = proto_encode_trace(&trace_w, 5, buf, len); break;
	case 5: rv = proto_encode_trace(&trace_now, 6, buf, len); break;
	case 6: rv = proto_encode_result(&result2, 7, buf, len); break;
	case 7: rv = proto_encode_error(-EIO, "worker: device lost", 8, buf, len); break;
	case 8: rv = proto_encode_cancel(cancel_ids, 3, buf, len); break;
	}
	ck_assert_int_eq(rv, 0);
}

/* Decodes, expecting code; returns the message on success. */
static struct proto_msg *dec(const void *buf, size_t len, int code)
{
	struct proto_msg *m = (struct proto_msg *)1;
	char err[256];
	int rv = proto_decode_err(buf, len, &m, err, sizeof err);

	ck_assert_msg(rv == code, "decode: %d, wanted %d (%s)", rv, code, err);
	if (rv) {
		ck_assert_ptr_null(m);
		ck_assert_msg(err[0] != '\0', "no error text");
	}
	return m;
}

static void patch(uint8_t *p, size_t off, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

/* Decode, re-encode: the same bytes. */
static struct proto_msg *round_trip(const void *buf, size_t len)
{
	struct proto_msg *m = dec(buf, len, 0);
	void *b2;
	size_t l2;

	ck_assert_int_eq(proto_encode(m, &b2, &l2), 0);
	ck_assert_uint_eq(l2, len);
	ck_assert_mem_eq(b2, buf, len);
	free(b2);
	return m;
}

#define MEM_EQ(a, b, n) ck_assert((n) == 0 || memcmp((a), (b), (n) * sizeof *(a)) == 0)

/* ---- round trips ---- */

START_TEST(batch_round_trip)
{
	void *buf;
	size_t len;
	struct proto_msg *m;

	sample(0, &buf, &len);
	m = round_trip(buf, len);
	ck_assert_uint_eq(m->hdr.type, PROTO_BATCH);
	ck_assert_uint_eq(m->hdr.batch_id, 1);
	ck_assert_uint_eq(m->batch.kind, PROTO_KIND_GENERATE);
	ck_assert_uint_eq(m->batch.n_seqs, 2);
	for (int i = 0; i < 2; i++) {
		const struct proto_seq *a = &m->batch.seqs[i], *b = &seqs2[i];

		ck_assert_uint_eq(a->id, b->id);
		ck_assert_uint_eq(a->start_pos, b->start_pos);
		ck_assert_uint_eq(a->max_tokens, b->max_tokens);
		ck_assert(a->temperature == b->temperature && a->top_p == b->top_p);
		ck_assert_uint_eq(a->seed, b->seed);
		ck_assert_uint_eq(a->flags, b->flags);
		ck_assert_uint_eq(a->n_tokens, b->n_tokens);
		ck_assert_uint_eq(a->n_stop, b->n_stop);
		MEM_EQ(a->tokens, b->tokens, a->n_tokens);
		MEM_EQ(a->stop, b->stop, a->n_stop);
	}
	proto_msg_free(m);
	free(buf);

	sample(1, &buf, &len);
	ck_assert_uint_eq(len, PROTO_HEADER_SIZE + 6);
	m = round_trip(buf, len);
	ck_assert_uint_eq(m->batch.n_seqs, 0);
	ck_assert_uint_eq(m->batch.kind, PROTO_KIND_FORWARD);
	proto_msg_free(m);
	free(buf);
}
END_TEST

START_TEST(table_round_trip)
{
	for (int s = 2; s <= 3; s++) {
		const struct proto_table *want = s == 2 ? &table_tok : &table_plain;
		struct proto_msg *m;
		void *buf;
		size_t len;

		sample(s, &buf, &len);
		m = round_trip(buf, len);
		const struct proto_table *t = &m->table;
		ck_assert_uint_eq(m->hdr.flags, want->k ? PROTO_F_TABLE_TOKENS : 0);
		ck_assert_uint_eq(t->n_layers, 3);
		ck_assert_uint_eq(t->n_experts, 8);
		MEM_EQ(t->layer_start, tab_start, 4);
		MEM_EQ(t->experts, tab_ex, 5);
		MEM_EQ(t->scores, tab_sc, 5);      /* -0.0 kept bit for bit */
		ck_assert_uint_eq(t->k, want->k);
		ck_assert_uint_eq(t->n_tokens, want->n_tokens);
		MEM_EQ(t->tok_experts, tab_tex, (size_t)t->n_tokens * 3 * t->k);
		MEM_EQ(t->tok_weights, tab_tw, (size_t)t->n_tokens * 3 * t->k);
		proto_msg_free(m);
		free(buf);
	}
}
END_TEST

START_TEST(table_edges)
{
	/* 0 layers; the largest expert id; k = PROTO_MAX_K */
	static uint16_t ex[PROTO_MAX_K];
	static float w[PROTO_MAX_K];
	uint32_t st0[1] = { 0 }, st1[2] = { 0, 1 };
	uint16_t big = PROTO_MAX_EXPERTS - 1;
	float one = 1;
	struct proto_table t0 = { 0, 1, st0, NULL, NULL, 0, 0, NULL, NULL };
	struct proto_table t1 = { 1, PROTO_MAX_EXPERTS, st1, &big, &one, PROTO_MAX_K, 1, ex, w };
	struct proto_msg *m;
	void *buf;
	size_t len;

	for (unsigned i = 0; i < PROTO_MAX_K; i++)
		ex[i] = (uint16_t)(PROTO_MAX_EXPERTS - 1 - i);
	ck_assert_int_eq(proto_encode_table(&t0, 0, &buf, &len), 0);
	m = round_trip(buf, len);
	ck_assert_uint_eq(m->table.n_layers, 0);
	proto_msg_free(m);
	free(buf);
	ck_assert_int_eq(proto_encode_table(&t1, 0, &buf, &len), 0);
	m = round_trip(buf, len);
	ck_assert_uint_eq(m->table.experts[0], PROTO_MAX_EXPERTS - 1);
	ck_assert_uint_eq(m->table.k, PROTO_MAX_K);
	MEM_EQ(m->table.tok_experts, ex, PROTO_MAX_K);
	proto_msg_free(m);
	free(buf);
}
END_TEST

START_TEST(trace_round_trip)
{
	for (int s = 4; s <= 5; s++) {
		struct proto_msg *m;
		void *buf;
		size_t len;

		sample(s, &buf, &len);
		m = round_trip(buf, len);
		const struct proto_trace *t = &m->trace;
		ck_assert_uint_eq(t->n_layers, 2);
		ck_assert_uint_eq(t->n_experts, 4);
		ck_assert_uint_eq(t->k, 2);
		ck_assert_uint_eq(t->n_tokens, 3);
		MEM_EQ(t->seq_ids, tr_ids, 3);
		MEM_EQ(t->positions, tr_pos, 3);
		MEM_EQ(t->tokens, tr_tok, 3);
		MEM_EQ(t->experts, tr_ex, 12);
		if (s == 4)
			MEM_EQ(t->weights, tr_w, 12);
		else
			ck_assert_ptr_null(t->weights);
		proto_msg_free(m);
		free(buf);
	}
}
END_TEST

START_TEST(cancel_round_trip)
{
	struct proto_msg *m;
	void *buf;
	size_t len;

	sample(8, &buf, &len);
	ck_assert_uint_eq(len, PROTO_HEADER_SIZE + 4 + 3 * 8);
	m = round_trip(buf, len);
	ck_assert_uint_eq(m->hdr.type, PROTO_CANCEL);
	ck_assert_uint_eq(m->cancel.n_seqs, 3);
	MEM_EQ(m->cancel.seq_ids, cancel_ids, 3);
	ck_assert_str_eq(proto_type_name(PROTO_CANCEL), "CANCEL");
	proto_msg_free(m);
	free(buf);
	/* a count the bytes cannot hold */
	ck_assert_int_eq(proto_encode_cancel(cancel_ids, 1, &buf, &len), 0);
	patch(buf, PROTO_HEADER_SIZE, 1000, 4);
	dec(buf, len, -EMSGSIZE);
	free(buf);
	ck_assert_int_eq(proto_encode_cancel(NULL, 1, &buf, &len), -EINVAL);
}
END_TEST

START_TEST(result_error_round_trip)
{
	struct proto_msg *m;
	void *buf;
	size_t len;

	sample(6, &buf, &len);
	m = round_trip(buf, len);
	const struct proto_result *r = &m->result;
	ck_assert_int_eq(r->more, 1);
	ck_assert_uint_eq(r->table_status, PROTO_TABLE_LATE);
	ck_assert_mem_eq(&r->moe, &result2.moe, sizeof r->moe);
	ck_assert_uint_eq(r->n_seqs, 2);
	ck_assert_int_eq(r->seqs[1].status, -EIO);
	ck_assert_uint_eq(r->seqs[1].finish, PROTO_FINISH_ERROR);
	ck_assert_uint_eq(r->seqs[0].n_prompt, 5);
	MEM_EQ(r->seqs[0].tokens, res_tok, 3);
	ck_assert_uint_eq(r->seqs[0].n_logits, 4);
	ck_assert(isinf(r->seqs[0].logits[2]) && isnan(r->seqs[0].logits[3]));
	ck_assert_uint_eq(r->seqs[1].n_tokens, 0);
	proto_msg_free(m);
	free(buf);

	sample(7, &buf, &len);
	m = round_trip(buf, len);
	ck_assert_int_eq(m->error.code, -EIO);
	ck_assert_str_eq(m->error.msg, "worker: device lost");
	proto_msg_free(m);
	free(buf);
	ck_assert_int_eq(proto_encode_error(-1, "", 9, &buf, &len), 0);
	m = round_trip(buf, len);
	ck_assert_str_eq(m->error.msg, "");
	proto_msg_free(m);
	free(buf);
}
END_TEST

/* ---- the byte layout, written independently from PROTOCOL.md ---- */

struct raw {
	uint8_t *p;
	size_t n;
};

static void rput(struct raw *r, uint64_t v, int n)
{
	r->p = realloc(r->p, r->n + n);
	ck_assert_ptr_nonnull(r->p);
	patch(r->p, r->n, v, n);
	r->n += n;
}

static void rputf(struct raw *r, float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	rput(r, u, 4);
}

static void rhdr(struct raw *r, uint16_t type, uint64_t id, uint32_t flags)
{
	rput(r, 0x44454f4d, 4);   /* "MOED" */
	rput(r, 0x0100, 2);
	rput(r, type, 2);
	rput(r, id, 8);
	rput(r, 0, 4);            /* length, set by rend */
	rput(r, flags, 4);
}

static void rend(struct raw *r)
{
	patch(r->p, 16, r->n - PROTO_HEADER_SIZE, 4);
}

static void raw_seq(struct raw *r, uint64_t id, uint32_t tok)
{
	rput(r, id, 8);
	rput(r, 0, 4);            /* start_pos */
	rput(r, 2, 4);            /* max_tokens */
	rputf(r, 0.5f);
	rputf(r, 1.0f);
	rput(r, 3, 8);            /* seed */
	rput(r, PROTO_SEQ_STREAM, 4);
	rput(r, 1, 4);            /* n_tokens */
	rput(r, 0, 2);            /* n_stop */
	rput(r, tok, 4);
}

START_TEST(layout)
{
	static const uint8_t err_bytes[] = {
		'M', 'O', 'E', 'D', 0x00, 0x01, 0x05, 0x00,
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
		0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0xfb, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 'h', 'i',
	};
	struct proto_seq s = { .id = 1, .max_tokens = 2, .temperature = 0.5f, .top_p = 1,
			       .seed = 3, .flags = PROTO_SEQ_STREAM, .n_tokens = 1, .tokens = toks_b };
	struct proto_batch b = { 0, 1, &s };
	struct raw r = { 0 };
	void *buf;
	size_t len;

	ck_assert_int_eq(proto_encode_error(-5, "hi", 0x0102030405060708ull, &buf, &len), 0);
	ck_assert_uint_eq(len, sizeof err_bytes);
	ck_assert_mem_eq(buf, err_bytes, len);
	free(buf);

	rhdr(&r, PROTO_BATCH, 99, 0);
	rput(&r, 1, 4);
	rput(&r, 0, 2);
	raw_seq(&r, 1, 42);
	rend(&r);
	ck_assert_int_eq(proto_encode_batch(&b, 99, &buf, &len), 0);
	ck_assert_uint_eq(len, r.n);
	ck_assert_mem_eq(buf, r.p, len);
	free(buf);

	/* TABLE: 1 layer of 4 experts {2: 0.5}; per token k 1: token 0 -> 3 */
	r.n = 0;
	rhdr(&r, PROTO_TABLE, 5, PROTO_F_TABLE_TOKENS);
	rput(&r, 1, 2); rput(&r, 4, 2);
	rput(&r, 1, 2); rput(&r, 2, 2); rputf(&r, 0.5f);
	rput(&r, 1, 2); rput(&r, 1, 4); rput(&r, 3, 2); rputf(&r, 1.0f);
	rend(&r);
	uint32_t st[] = { 0, 1 };
	uint16_t e2 = 2, e3 = 3;
	float h = 0.5f, one = 1;
	struct proto_table t = { 1, 4, st, &e2, &h, 1, 1, &e3, &one };
	ck_assert_int_eq(proto_encode_table(&t, 5, &buf, &len), 0);
	ck_assert_uint_eq(len, r.n);
	ck_assert_mem_eq(buf, r.p, len);
	free(buf);

	/* TRACE with weights: 1 token of seq 4 at position 6, token 8; 1 layer, k 1 */
	r.n = 0;
	rhdr(&r, PROTO_TRACE, 5, PROTO_F_TRACE_WEIGHTS);
	rput(&r, 1, 2); rput(&r, 4, 2); rput(&r, 1, 2); rput(&r, 1, 4);
	rput(&r, 4, 8); rput(&r, 6, 4); rput(&r, 8, 4); rput(&r, 3, 2); rputf(&r, 1.0f);
	rend(&r);
	uint64_t sid = 4;
	uint32_t pos = 6, tok = 8;
	struct proto_trace tr = { 1, 4, 1, 1, &sid, &pos, &tok, &e3, &one };
	ck_assert_int_eq(proto_encode_trace(&tr, 5, &buf, &len), 0);
	ck_assert_uint_eq(len, r.n);
	ck_assert_mem_eq(buf, r.p, len);
	free(buf);
	free(r.p);
}
END_TEST

START_TEST(result_layout)
{
	struct proto_seq_result s = { .id = 3, .status = -2, .finish = PROTO_FINISH_STOP,
				      .n_prompt = 4, .n_tokens = 1, .tokens = toks_b,
				      .n_logits = 1, .logits = tab_sc };
	struct proto_result res = { PROTO_TABLE_NONE, { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, 1, &s, 0 };
	struct raw r = { 0 };
	void *buf;
	size_t len;

	rhdr(&r, PROTO_RESULT, 1, 0);
	rput(&r, PROTO_TABLE_NONE, 4);
	for (int i = 1; i <= 9; i++)
		rput(&r, i, 8);
	rput(&r, 1, 4);
	rput(&r, 3, 8); rput(&r, (uint32_t)-2, 4); rput(&r, PROTO_FINISH_STOP, 1);
	rput(&r, 4, 4); rput(&r, 1, 4); rput(&r, 1, 4); rput(&r, 42, 4); rputf(&r, 0.9f);
	rend(&r);
	ck_assert_int_eq(proto_encode_result(&res, 1, &buf, &len), 0);
	ck_assert_uint_eq(len, r.n);
	ck_assert_mem_eq(buf, r.p, len);
	free(buf);
	free(r.p);
}
END_TEST

/* ---- malformed input ---- */

START_TEST(every_truncation)
{
	for (int s = 0; s < N_SAMPLES; s++) {
		uint8_t *buf;
		size_t len;

		sample(s, (void **)&buf, &len);
		for (size_t l = 0; l < len; l++) {
			/* exact-size copies so ASan sees any read past the end */
			uint8_t *t = malloc(l ? l : 1);
			memcpy(t, buf, l);
			dec(t, l, -EMSGSIZE);
			if (l >= PROTO_HEADER_SIZE) {
				/* the header agrees: the payload parser sees the cut */
				patch(t, 16, l - PROTO_HEADER_SIZE, 4);
				dec(t, l, -EMSGSIZE);
			}
			free(t);
		}
		free(buf);
	}
}
END_TEST

static void corrupt(int s, size_t off, uint64_t v, int n, int code)
{
	uint8_t *buf;
	size_t len;

	sample(s, (void **)&buf, &len);
	ck_assert_uint_le(off + n, len);
	patch(buf, off, v, n);
	dec(buf, len, code);
	free(buf);
}

#define P PROTO_HEADER_SIZE

START_TEST(corrupted_counts)
{
	corrupt(0, 16, 0xffffffff, 4, -EMSGSIZE);            /* header length */
	corrupt(0, 16, 7, 4, -EMSGSIZE);
	corrupt(0, P, 0xffffffff, 4, -EMSGSIZE);             /* n_seqs */
	corrupt(0, P, 3, 4, -EMSGSIZE);
	corrupt(0, P + 6 + 36, 0xffffffff, 4, -EMSGSIZE);    /* seq 0 n_tokens */
	corrupt(0, P + 6 + 40, 0xffff, 2, -EMSGSIZE);        /* seq 0 n_stop */
	corrupt(2, P, 0xffff, 2, -EMSGSIZE);                 /* n_layers */
	corrupt(2, P + 4, 0xffff, 2, -EMSGSIZE);             /* layer 0 count */
	corrupt(2, P + 4 + 2 + 12 + 2 + 2 + 18 + 2, 0xffffffff, 4, -EMSGSIZE); /* n_tokens */
	corrupt(4, P + 4, 0xffff, 2, -EMSGSIZE);             /* TRACE k */
	corrupt(4, P + 6, 0xffffffff, 4, -EMSGSIZE);         /* TRACE n_tokens */
	corrupt(6, P + 76, 0xffffffff, 4, -EMSGSIZE);        /* RESULT n_seqs */
	corrupt(6, P + 80 + 21, 0xffffffff, 4, -EMSGSIZE);   /* seq 0 n_logits */
	corrupt(7, P + 4, 0xffffffff, 4, -EMSGSIZE);         /* ERROR length */
	corrupt(7, P + 4, 100, 4, -EMSGSIZE);
}
END_TEST

START_TEST(bad_header)
{
	uint8_t *buf;
	size_t len;
	struct proto_header h;
	struct proto_msg *m;

	corrupt(0, 0, 'N', 1, -EPROTO);                       /* magic */
	corrupt(0, 4, 0x0200, 2, -EPROTO);                    /* version 2.0 */
	corrupt(0, 4, 0x0001, 2, -EPROTO);                    /* version 0.1 */
	corrupt(0, 6, 0, 2, -EPROTO);                         /* types */
	corrupt(0, 6, 7, 2, -EPROTO);  /* 6 is CANCEL */
	corrupt(0, 6, 0xffff, 2, -EPROTO);
	corrupt(0, 20, 1, 4, -EPROTO);                        /* BATCH has no flags */
	corrupt(2, 20, 2, 4, -EPROTO);
	dec(NULL, 0, -EMSGSIZE);
	ck_assert_int_eq(proto_decode(toks_a, 4, NULL), -EINVAL);

	/* a newer minor version: unknown flags and appended fields ignored */
	sample(0, (void **)&buf, &len);
	ck_assert_int_eq(proto_header_peek(buf, PROTO_HEADER_SIZE, &h), 0);
	ck_assert_uint_eq(h.length, len - PROTO_HEADER_SIZE);
	ck_assert_uint_eq(h.version, PROTO_VERSION);
	buf = realloc(buf, len + 3);
	memset(buf + len, 0xee, 3);
	patch(buf, 16, len + 3 - PROTO_HEADER_SIZE, 4);
	dec(buf, len + 3, -EMSGSIZE);                         /* trailing bytes */
	patch(buf, 20, 0x80000000u, 4);
	patch(buf, 4, PROTO_VERSION + 1, 2);
	m = dec(buf, len + 3, 0);
	ck_assert_uint_eq(m->hdr.flags, 0);
	ck_assert_uint_eq(m->batch.n_seqs, 2);
	proto_msg_free(m);
	free(buf);
}
END_TEST

START_TEST(bad_content)
{
	const size_t s0 = P + 6, s1 = s0 + 42 + 5 * 4 + 2 * 4;
	uint32_t nan = 0x7fc00000;

	corrupt(0, P + 4, 2, 2, -EPROTO);                     /* kind */
	corrupt(0, s0 + 16, nan, 4, -EPROTO);                 /* temperature NaN */
	corrupt(0, s0 + 16, 0xbf800000, 4, -EPROTO);          /* temperature -1 */
	corrupt(0, s0 + 20, 0x3fc00000, 4, -EPROTO);          /* top_p 1.5 */
	corrupt(0, s0 + 32, 0x80, 4, -EPROTO);                /* seq flags */
	corrupt(0, s1, 7, 8, -EPROTO);                        /* duplicate seq id */
	corrupt(0, s0 + 8, 0xfffffffe, 4, -EPROTO);           /* start_pos overflow */
	corrupt(2, P + 6, 8, 2, -EPROTO);                     /* expert >= n_experts */
	corrupt(2, P + 6, 1, 2, -EPROTO);                     /* expert twice */
	corrupt(2, P + 8, nan, 4, -EPROTO);                   /* score NaN */
	corrupt(2, P + 4 + 2 + 12 + 2 + 2 + 18, 0, 2, -EPROTO);      /* k 0 with flag */
	corrupt(2, P + 4 + 2 + 12 + 2 + 2 + 18, 9, 2, -EMSGSIZE);    /* k 9: bytes */
	corrupt(4, P + 2, 1, 2, -EPROTO);                     /* TRACE n_experts < k */
	corrupt(4, P + 10 + 16 + 2, 0, 2, -EPROTO);           /* token 0 layer 0: {0, 0} */
	corrupt(6, P, 3, 4, -EPROTO);                         /* table_status */
	corrupt(6, P + 80 + 12, 9, 1, -EPROTO);               /* finish */
	corrupt(6, P + 80 + 8, 1, 4, -EPROTO);                /* status > 0 */
	corrupt(7, P, 0, 4, -EPROTO);                         /* ERROR code 0 */
	corrupt(7, P + 8 + 3, 0, 1, -EPROTO);                 /* NUL in message */

	uint8_t *buf;
	size_t len;
	char err[200];
	struct proto_msg *m;
	sample(0, (void **)&buf, &len);
	patch(buf, s0 + 16, nan, 4);
	ck_assert_int_eq(proto_decode_err(buf, len, &m, err, sizeof err), -EPROTO);
	ck_assert_msg(strstr(err, "BATCH seq 0") && strstr(err, "temperature"), "%s", err);
	free(buf);
}
END_TEST

START_TEST(encode_rejects)
{
	struct proto_seq s = seqs2[0];
	struct proto_batch b = { 0, 1, &s };
	struct proto_table t = table_tok;
	struct proto_trace tr = trace_w;
	uint32_t st[] = { 1, 2, 2, 5 };
	void *buf = NULL;
	size_t len;
	char big[PROTO_MAX_ERRMSG + 2];
	struct proto_msg m = { .hdr = { .type = PROTO_BATCH } };
	char err[200];

	s.temperature = -1;
	ck_assert_int_eq(proto_encode_batch(&b, 0, &buf, &len), -EINVAL);
	m.batch = b;
	ck_assert_int_eq(proto_check(&m, err, sizeof err), -EINVAL);
	ck_assert_msg(strstr(err, "temperature") != NULL, "%s", err);
	s = seqs2[0];
	s.top_p = NAN;
	ck_assert_int_eq(proto_encode_batch(&b, 0, &buf, &len), -EINVAL);
	s = seqs2[0];
	s.n_tokens = 0;
	ck_assert_int_eq(proto_encode_batch(&b, 0, &buf, &len), -EINVAL);
	s = seqs2[0];
	s.n_stop = PROTO_MAX_STOP + 1;
	ck_assert_int_eq(proto_encode_batch(&b, 0, &buf, &len), -EMSGSIZE);
	ck_assert_int_eq(proto_encode_batch(NULL, 0, &buf, &len), -EINVAL);
	t.layer_start = st;
	ck_assert_int_eq(proto_encode_table(&t, 0, &buf, &len), -EINVAL);
	t = table_tok;
	t.k = PROTO_MAX_K + 1;
	ck_assert_int_eq(proto_encode_table(&t, 0, &buf, &len), -EMSGSIZE);
	t = table_plain;
	t.n_tokens = 3;
	ck_assert_int_eq(proto_encode_table(&t, 0, &buf, &len), -EINVAL);
	t = table_tok;
	t.k = 9;
	ck_assert_int_eq(proto_encode_table(&t, 0, &buf, &len), -EINVAL);
	tr.n_layers = 0;
	ck_assert_int_eq(proto_encode_trace(&tr, 0, &buf, &len), -EINVAL);
	tr = trace_w;
	tr.n_tokens = PROTO_MAX_TOKENS + 1;
	ck_assert_int_eq(proto_encode_trace(&tr, 0, &buf, &len), -EMSGSIZE);
	ck_assert_int_eq(proto_encode_error(0, "x", 0, &buf, &len), -EINVAL);
	ck_assert_int_eq(proto_encode_error(-1, NULL, 0, &buf, &len), -EINVAL);
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	ck_assert_int_eq(proto_encode_error(-1, big, 0, &buf, &len), -EMSGSIZE);
	ck_assert_ptr_null(buf);
}
END_TEST

START_TEST(limits)
{
	const uint32_t n = PROTO_MAX_SEQS + 1;
	struct proto_seq *s = calloc(n, sizeof *s);
	struct proto_batch b = { 0, n, s };
	struct proto_msg *m;
	struct raw r = { 0 };
	void *buf;
	size_t len;

	for (uint32_t i = 0; i < n; i++)
		s[i] = (struct proto_seq){ .id = i, .top_p = 1, .n_tokens = 1, .tokens = toks_b };
	ck_assert_int_eq(proto_encode_batch(&b, 0, &buf, &len), -EMSGSIZE);
	b.n_seqs = PROTO_MAX_SEQS;
	ck_assert_int_eq(proto_encode_batch(&b, 0, &buf, &len), 0);
	m = round_trip(buf, len);
	ck_assert_uint_eq(m->batch.seqs[PROTO_MAX_SEQS - 1].id, PROTO_MAX_SEQS - 1);
	proto_msg_free(m);
	free(buf);
	free(s);

	/* one sequence over the limit, built by hand */
	rhdr(&r, PROTO_BATCH, 0, 0);
	rput(&r, n, 4);
	rput(&r, 0, 2);
	for (uint32_t i = 0; i < n; i++)
		raw_seq(&r, i, 1);
	rend(&r);
	dec(r.p, r.n, -EMSGSIZE);
	free(r.p);
}
END_TEST

/* ---- random mutations ---- */

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void mutate(uint8_t **buf, size_t *len, uint64_t *seed)
{
	static const uint32_t vals[] = { 0, 1, 2, 0xff, 0xffff, 0x7fffffff, 0xffffffff, 4096 };
	size_t n = *len;

	switch (rng(seed) % 4) {
	case 0:     /* a few random bytes */
		for (int i = 0, k = 1 + rng(seed) % 4; i < k; i++)
			(*buf)[rng(seed) % n] = (uint8_t)rng(seed);
		break;
	case 1:     /* an interesting 16/32-bit value, maybe misaligned */
		if (n >= 4)
			patch(*buf, rng(seed) % (n - 3), vals[rng(seed) % 8], rng(seed) % 2 ? 4 : 2);
		break;
	case 2:     /* a bit */
		(*buf)[rng(seed) % n] ^= (uint8_t)(1u << (rng(seed) % 8));
		break;
	case 3:     /* shorter or longer, header length kept in step */
		n = rng(seed) % 2 ? PROTO_HEADER_SIZE + rng(seed) % (n - PROTO_HEADER_SIZE + 1)
				  : n + 1 + rng(seed) % 16;
		*buf = realloc(*buf, n);
		for (size_t i = *len; i < n; i++)
			(*buf)[i] = (uint8_t)rng(seed);
		patch(*buf, 16, n - PROTO_HEADER_SIZE, 4);
		*len = n;
		break;
	}
}

START_TEST(random_mutations)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	int ok = 0;

	for (int s = 0; s < N_SAMPLES; s++) {
		for (int it = 0; it < 4000; it++) {
			uint8_t *buf;
			size_t len;
			struct proto_msg *m = NULL;
			int rv;

			sample(s, (void **)&buf, &len);
			for (int k = 0, nm = 1 + rng(&seed) % 3; k < nm; k++)
				mutate(&buf, &len, &seed);
			rv = proto_decode(buf, len, &m);
			ck_assert_msg(rv == 0 || rv == -EMSGSIZE || rv == -EPROTO, "rv %d", rv);
			if (rv == 0) {
				void *b2;
				size_t l2;

				ok++;
				ck_assert_int_eq(proto_check(m, NULL, 0), 0);
				ck_assert_int_eq(proto_encode(m, &b2, &l2), 0);
				/* same version: the encoding is canonical */
				if (m->hdr.version == PROTO_VERSION) {
					ck_assert_uint_eq(l2, len);
					ck_assert_mem_eq(b2, buf, len);
				}
				free(b2);
				proto_msg_free(m);
			} else {
				ck_assert_ptr_null(m);
			}
			free(buf);
		}
	}
	/* the mutations must not all be rejected, or this tests little */
	ck_assert_int_gt(ok, 100);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, batch_round_trip);
	tcase_add_test(tc, table_round_trip);
	tcase_add_test(tc, table_edges);
	tcase_add_test(tc, trace_round_trip);
	tcase_add_test(tc, result_error_round_trip);
	tcase_add_test(tc, cancel_round_trip);
	tcase_add_test(tc, layout);
	tcase_add_test(tc, result_layout);
	tcase_add_test(tc, every_truncation);
	tcase_add_test(tc, corrupted_counts);
	tcase_add_test(tc, bad_header);
	tcase_add_test(tc, bad_content);
	tcase_add_test(tc, encode_rejects);
	tcase_add_test(tc, limits);
	tcase_add_test(tc, random_mutations);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
