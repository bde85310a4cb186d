/* Tokenizer steps that the HF-trained fixtures do not use, checked against
 * the expectations in HF tokenizers' own unit tests (split.rs, digits.rs,
 * metaspace.rs, strip.rs): every Split behaviour, Digits, Metaspace with
 * split, the Metaspace decoder, the Strip normalizer. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer/tok.h"
#include "tokenizer/tok_internal.h"
#include "tests/suite_run.h"

static char err[1024];

/* A tokenizer.json with a one-entry BPE model and the given parts. */
static struct tok *open_with(const char *key, json_t *part, const char *key2, json_t *part2)
{
	char dir[] = "/tmp/tok_steps_XXXXXX", p[64];
	json_t *j = json_pack("{s:{s:s, s:{s:i, s:i, s:i}, s:[]}}", "model", "type", "BPE",
			      "vocab", "a", 0, "\xe2\x96\x81Hey", 1, "\xe2\x96\x81" "friend!", 2,
			      "merges");
	struct tok *t = NULL;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	json_object_set_new(j, key, part);
	if (key2)
		json_object_set_new(j, key2, part2);
	snprintf(p, sizeof(p), "%s/tokenizer.json", dir);
	ck_assert_int_eq(json_dump_file(j, p, 0), 0);
	json_decref(j);
	ck_assert_msg(tok_open(p, &t, err, sizeof(err)) == 0, "%s", err);
	unlink(p);
	rmdir(dir);
	return t;
}

/* Pre-tokenizes text and compares the pieces with want (NULL-ended). */
static void expect_pieces(const struct tok *t, const char *text, const char *const *want)
{
	struct pieces p = { 0 };
	struct arena mem = { 0 };
	size_t i;

	ck_assert_int_eq(pieces_push(&p, text, strlen(text), -1, 1), 0);
	ck_assert_int_eq(pretok_apply(t, &p, &mem), 0);
	for (i = 0; want[i]; i++) {
		ck_assert_msg(i < p.n, "only %zu pieces", p.n);
		ck_assert_msg(p.v[i].len == strlen(want[i]) && !memcmp(p.v[i].s, want[i], p.v[i].len),
			      "piece %zu \"%.*s\" != \"%s\"", i, (int)p.v[i].len, p.v[i].s, want[i]);
	}
	ck_assert_uint_eq(p.n, i);
	pieces_free(&p);
	arena_free(&mem);
}

static json_t *split(const char *behavior)
{
	return json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
			 "\\w+|[^\\w\\s]+", "behavior", behavior, "invert", 1);
}

START_TEST(test_split_behaviors)
{
	static const char *const removed[] = { "How", "are", "you", "doing", "?", NULL };
	static const char *const isolated[] = { "How", " ", "are", " ", "you", " ", "doing", "?", NULL };
	static const char *const prev[] = { "How ", "are ", "you ", "doing", "?", NULL };
	static const char *const next[] = { "How", " are", " you", " doing", "?", NULL };
	static const char *const contig[] = { "How", " ", "are", " ", "you", " ", "doing?", NULL };
	static const struct {
		const char *beh;
		const char *const *want;
	} cases[] = { { "Removed", removed }, { "Isolated", isolated },
		      { "MergedWithPrevious", prev }, { "MergedWithNext", next },
		      { "Contiguous", contig } };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tok *t = open_with("pre_tokenizer", split(cases[i].beh), NULL, NULL);

		expect_pieces(t, "How are you doing?", cases[i].want);
		tok_close(t);
	}
}
END_TEST

START_TEST(test_split_string_and_digits)
{
	static const char *const words[] = { "Hey,", "man!", NULL };
	static const char *const grouped[] = { "Hey ", "123", " friend!", NULL };
	static const char *const single[] = { "Hey ", "1", "2", "3", " friend!", NULL };
	struct tok *t = open_with("pre_tokenizer",
				  json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern",
					    "String", " ", "behavior", "Removed", "invert", 0),
				  NULL, NULL);

	expect_pieces(t, "Hey, man!", words);
	tok_close(t);
	t = open_with("pre_tokenizer", json_pack("{s:s, s:b}", "type", "Digits",
						 "individual_digits", 0), NULL, NULL);
	expect_pieces(t, "Hey 123 friend!", grouped);
	tok_close(t);
	t = open_with("pre_tokenizer", json_pack("{s:s, s:b}", "type", "Digits",
						 "individual_digits", 1), NULL, NULL);
	expect_pieces(t, "Hey 123 friend!", single);
	tok_close(t);
}
END_TEST

START_TEST(test_metaspace_split_and_decoder)
{
	static const char *const want[] = { "\xe2\x96\x81Hey", "\xe2\x96\x81", "\xe2\x96\x81",
					    "\xe2\x96\x81" "friend!", NULL };
	json_t *pre = json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement",
				"\xe2\x96\x81", "prepend_scheme", "always", "split", 1);
	json_t *dec = json_pack("{s:s, s:s, s:s}", "type", "Metaspace", "replacement",
				"\xe2\x96\x81", "prepend_scheme", "always");
	struct tok *t = open_with("pre_tokenizer", pre, "decoder", dec);
	int32_t ids[] = { 1, 2 };
	char *text;
	size_t len;

	expect_pieces(t, "Hey   friend!", want);
	ck_assert_int_eq(tok_decode(t, ids, 2, 0, &text, &len), 0);
	ck_assert_str_eq(text, "Hey friend!");
	free(text);
	tok_close(t);
	dec = json_pack("{s:s, s:s, s:s}", "type", "Metaspace", "replacement", "\xe2\x96\x81",
			"prepend_scheme", "never");
	t = open_with("decoder", dec, NULL, NULL);
	ck_assert_int_eq(tok_decode(t, ids, 2, 0, &text, &len), 0);
	ck_assert_str_eq(text, " Hey friend!");
	free(text);
	tok_close(t);
}
END_TEST

START_TEST(test_strip_normalizer)
{
	struct tok *t = open_with("normalizer", json_pack("{s:s, s:b, s:b}", "type", "Strip",
							  "strip_left", 1, "strip_right", 1),
				  NULL, NULL);
	struct tbuf b = { 0 };

	ck_assert_int_eq(norm_apply(t, " \t\xe3\x80\x80hi there \n", 15, &b), 0);
	ck_assert_str_eq(b.p, "hi there");
	tok_close(t);
	t = open_with("normalizer", json_pack("{s:s, s:b, s:b}", "type", "Strip", "strip_left", 0,
					      "strip_right", 1), NULL, NULL);
	ck_assert_int_eq(norm_apply(t, "  hi  ", 6, &b), 0);
	ck_assert_str_eq(b.p, "  hi");
	tbuf_free(&b);
	tok_close(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tokenizer_steps");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_split_behaviors);
	tcase_add_test(tc, test_split_string_and_digits);
	tcase_add_test(tc, test_metaspace_split_and_decoder);
	tcase_add_test(tc, test_strip_normalizer);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
