/* proto: round trips and the byte layout of PROTOCOL.md (an independent raw
 * writer, tests/proto_fx.c).  Bad input: test_proto_bad.c. */
#include "tests/proto_fx.h"
#include "tests/suite_run.h"

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
	suite_add_tcase(s, tc);
	return suite_run(s);
}
