/* The wire protocol on bad input: every truncation, corrupted counts, bad
 * headers and contents, what the encoder refuses, the limits, and random
 * mutations of every sample (tests/proto_fx.h). */
#include "tests/proto_fx.h"
#include "tests/suite_run.h"

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
	Suite *s = suite_create("proto_bad");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 120);
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
