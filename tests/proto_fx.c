/* tests/proto_fx.h */
#include "tests/proto_fx.h"

/* ---- sample messages ---- */

const uint32_t toks_a[] = { 1, 2, 3, 4, 5 }, toks_b[] = { 42 };
const uint32_t stop_a[] = { 2, 0xffffffffu };
const struct proto_seq seqs2[] = {
	{ .id = 7, .start_pos = 0, .max_tokens = 16, .temperature = 0.7f, .top_p = 0.9f,
	  .seed = 1234, .flags = PROTO_SEQ_STREAM, .n_tokens = 5, .tokens = toks_a,
	  .n_stop = 2, .stop = stop_a },
	{ .id = UINT64_MAX, .start_pos = 100, .max_tokens = 0, .temperature = 0, .top_p = 1,
	  .seed = UINT64_MAX, .flags = PROTO_SEQ_FLAGS_ALL, .n_tokens = 1, .tokens = toks_b },
};
const struct proto_batch batch2 = { PROTO_KIND_GENERATE, 2, seqs2 };
const struct proto_batch batch0 = { PROTO_KIND_FORWARD, 0, NULL };

const uint32_t tab_start[] = { 0, 2, 2, 5 };
const uint16_t tab_ex[] = { 3, 1, 0, 7, 4 };
const float tab_sc[] = { 0.9f, 0.1f, 1e-30f, -2.0f, -0.0f };
const uint16_t tab_tex[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 1, 0, 3, 2 };
const float tab_tw[12] = { .5f, .5f, .7f, .3f, 1, 0, .25f, .75f, .6f, .4f, .9f, .1f };
const struct proto_table table_tok = { 3, 8, tab_start, tab_ex, tab_sc, 2, 2, tab_tex, tab_tw };
const struct proto_table table_plain = { 3, 8, tab_start, tab_ex, tab_sc, 0, 0, NULL, NULL };

const uint64_t tr_ids[] = { 7, 7, 9 };
const uint32_t tr_pos[] = { 0, 1, 0 }, tr_tok[] = { 11, 12, 13 };
const uint16_t tr_ex[12] = { 0, 1, 2, 3, 3, 2, 1, 0, 0, 3, 2, 1 };
const float tr_w[12] = { .6f, .4f, .5f, .5f, .9f, .1f, .8f, .2f, .7f, .3f, .55f, .45f };
const struct proto_trace trace_w = { 2, 4, 2, 3, tr_ids, tr_pos, tr_tok, tr_ex, tr_w };
const struct proto_trace trace_now = { 2, 4, 2, 3, tr_ids, tr_pos, tr_tok, tr_ex, NULL };

const uint32_t res_tok[] = { 5, 6, 7 };
float res_logits[4] = { 1.5f, -1.5f, 0, 0 };   /* -inf and NaN set in setup */
const struct proto_seq_result rseqs[] = {
	{ .id = 7, .status = 0, .finish = PROTO_FINISH_LENGTH, .n_prompt = 5, .n_tokens = 3,
	  .tokens = res_tok, .n_logits = 4, .logits = res_logits },
	{ .id = 8, .status = -EIO, .finish = PROTO_FINISH_ERROR, .n_prompt = 1 },
};
const struct proto_result result2 = {
	.table_status = PROTO_TABLE_LATE,
	.moe = { 1, 2, 3, 4, UINT64_MAX, 6, 7, 8, 9 },
	.n_seqs = 2, .seqs = rseqs, .more = 1,
};


const uint64_t cancel_ids[3] = {7, 1ull << 40, 42};

void setup(void)
{
	res_logits[2] = -INFINITY;
	res_logits[3] = NAN;
}

void sample(int i, void **buf, size_t *len)
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
struct proto_msg *dec(const void *buf, size_t len, int code)
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

void patch(uint8_t *p, size_t off, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

/* Decode, re-encode: the same bytes. */
struct proto_msg *round_trip(const void *buf, size_t len)
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


/* ---- the byte layout, written independently from PROTOCOL.md ---- */

void rput(struct raw *r, uint64_t v, int n)
{
	r->p = realloc(r->p, r->n + n);
	ck_assert_ptr_nonnull(r->p);
	patch(r->p, r->n, v, n);
	r->n += n;
}

void rputf(struct raw *r, float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	rput(r, u, 4);
}

void rhdr(struct raw *r, uint16_t type, uint64_t id, uint32_t flags)
{
	rput(r, 0x44454f4d, 4);   /* "MOED" */
	rput(r, 0x0100, 2);
	rput(r, type, 2);
	rput(r, id, 8);
	rput(r, 0, 4);            /* length, set by rend */
	rput(r, flags, 4);
}

void rend(struct raw *r)
{
	patch(r->p, 16, r->n - PROTO_HEADER_SIZE, 4);
}

void raw_seq(struct raw *r, uint64_t id, uint32_t tok)
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

