/* A small byte-level BPE trainer, for synthetic models: GPT-2 regex words,
 * 256 byte tokens, then the most frequent pair merged until the vocabulary
 * is full (ties: the pair of lowest ids), and <|endoftext|> last. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

#define EOT "<|endoftext|>"

struct trainer {
	struct strmap vocab;   /* piece -> id */
	char **piece;          /* id -> piece (malloc'd) */
	int n_tok;
	int32_t *sym;          /* all words' symbols, each word ended by -1 */
	size_t n_sym;
	uint32_t *word_count;  /* per word, indexed by its end position */
	int32_t (*merges)[2];
	int n_merges;
	const char *const *specials;  /* the last ids, in order */
	int n_specials;
};

static int add_piece(struct trainer *tr, const char *s, size_t n)
{
	char *p = strndup(s, n);

	if (!p)
		return -ENOMEM;
	tr->piece[tr->n_tok] = p;
	return strmap_put(&tr->vocab, p, n, tr->n_tok++);
}

/* Unique GPT-2 words of the corpus with their counts, as byte symbols. */
static int collect_words(struct trainer *tr, const char *text, size_t len, char *err, size_t n)
{
	static const char gpt2[] = TOK_GPT2_REGEX;
	pcre2_code *rx = rx_compile(gpt2, sizeof(gpt2) - 1, 0, err, n);
	pcre2_match_data *md = rx ? pcre2_match_data_create_from_pattern(rx, NULL) : NULL;
	struct strmap words = { 0 };
	size_t pos = 0, prev = (size_t)-1, ms, me;
	int rc = md ? 0 : -ENOMEM;

	tr->sym = malloc((len * 2 + 1) * sizeof(*tr->sym));
	tr->word_count = calloc(len * 2 + 1, sizeof(*tr->word_count));
	if (!tr->sym || !tr->word_count)
		rc = -ENOMEM;
	while (!rc && (rc = rx_find(rx, text, len, &pos, &prev, md, &ms, &me)) == 1) {
		int32_t w = strmap_get(&words, text + ms, me - ms);

		rc = 0;
		if (w >= 0) {
			tr->word_count[w]++;
			continue;
		}
		for (size_t i = ms; i < me; i++)
			tr->sym[tr->n_sym++] = (unsigned char)text[i];
		tr->sym[tr->n_sym] = -1;
		tr->word_count[tr->n_sym] = 1;
		rc = strmap_put(&words, text + ms, me - ms, (int32_t)tr->n_sym++);
	}
	strmap_free(&words);
	pcre2_match_data_free(md);
	pcre2_code_free(rx);
	return rc < 0 ? rc : 0;
}

/* The most frequent adjacent pair; 0 when there is none. */
static int best_pair(const struct trainer *tr, int32_t *ba, int32_t *bb)
{
	struct pairmap counts = { 0 };
	int64_t best = 0;

	*ba = *bb = INT32_MAX;
	for (size_t w = 0, end; w < tr->n_sym; w = end + 1) {
		for (end = w; tr->sym[end] >= 0; end++)
			;
		for (size_t i = w; i + 1 < end; i++) {
			int32_t a = tr->sym[i], b = tr->sym[i + 1], c = 0, unused;

			pairmap_get(&counts, a, b, &c, &unused);
			c += (int32_t)tr->word_count[end];
			if (pairmap_put(&counts, a, b, c, 0)) {
				pairmap_free(&counts);
				return -ENOMEM;
			}
			if (c > best || (c == best && (a < *ba || (a == *ba && b < *bb)))) {
				best = c;
				*ba = a;
				*bb = b;
			}
		}
	}
	pairmap_free(&counts);
	return best > 0;
}

/* Merges (a, b) -> id in every word, left to right, then closes the gaps
 * (each word's count moves with its -1 end marker). */
static void apply_merge(struct trainer *tr, int32_t a, int32_t b, int32_t id)
{
	size_t k = 0;

	for (size_t i = 0; i < tr->n_sym; i++) {
		if (tr->sym[i] == a && i + 1 < tr->n_sym && tr->sym[i + 1] == b) {
			tr->sym[k++] = id;
			i++;
			continue;
		}
		if (tr->sym[i] == -1)
			tr->word_count[k] = tr->word_count[i];
		tr->sym[k++] = tr->sym[i];
	}
	tr->n_sym = k;
}

static int train(struct trainer *tr, int vocab_size, char *err, size_t n)
{
	for (int b = 0; b < 256; b++) {
		char u[4];

		if (add_piece(tr, u, utf8_put(bl_byte_to_cp((unsigned char)b), u)))
			return -ENOMEM;
	}
	while (tr->n_tok < vocab_size - tr->n_specials) {
		int32_t a, b, id;
		char *cat;
		int rc = tr->n_merges < vocab_size ? best_pair(tr, &a, &b) : 0;

		if (rc < 0)
			return rc;
		if (!rc) {
			TOK_ERR(err, n, "corpus too small: %d merges, %d tokens wanted",
				tr->n_merges, vocab_size);
			return -EINVAL;
		}
		if (asprintf(&cat, "%s%s", tr->piece[a], tr->piece[b]) < 0)
			return -ENOMEM;
		id = strmap_get(&tr->vocab, cat, strlen(cat));
		if (id < 0 && add_piece(tr, cat, strlen(cat))) {
			free(cat);
			return -ENOMEM;
		}
		if (id < 0)
			id = tr->n_tok - 1;
		free(cat);
		tr->merges[tr->n_merges][0] = a;
		tr->merges[tr->n_merges][1] = b;
		tr->n_merges++;
		apply_merge(tr, a, b, id);
	}
	for (int i = 0; i < tr->n_specials; i++)
		if (add_piece(tr, tr->specials[i], strlen(tr->specials[i])))
			return -ENOMEM;
	return 0;
}

static json_t *bytelevel_json(int add_prefix_space, int trim_offsets)
{
	return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
			 add_prefix_space, "trim_offsets", trim_offsets, "use_regex", 1);
}

static json_t *model_json(const struct trainer *tr)
{
	json_t *vocab = json_object(), *merges = json_array();
	json_t *m = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b}", "type", "BPE", "dropout",
			      "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
			      "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0);

	for (int i = 0; i < tr->n_tok; i++)
		json_object_set_new(vocab, tr->piece[i], json_integer(i));
	for (int i = 0; i < tr->n_merges; i++) {
		char *line;

		if (asprintf(&line, "%s %s", tr->piece[tr->merges[i][0]],
			     tr->piece[tr->merges[i][1]]) < 0)
			break;
		json_array_append_new(merges, json_string(line));
		free(line);
	}
	json_object_set_new(m, "vocab", vocab);
	json_object_set_new(m, "merges", merges);
	return m;
}

static int write_json(const struct trainer *tr, const char *path, char *err, size_t n)
{
	json_t *added = json_array();
	json_t *root;
	int rc = 0;

	for (int i = 0; i < tr->n_specials; i++)
		json_array_append_new(added, json_pack(
			"{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id",
			tr->n_tok - tr->n_specials + i, "content", tr->specials[i], "single_word", 0,
			"lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
	root = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:o, s:o, s:o}", "version", "1.0",
			 "truncation", "padding", "added_tokens", added, "normalizer",
			 "pre_tokenizer", bytelevel_json(0, 1), "post_processor",
			 bytelevel_json(1, 0), "decoder", bytelevel_json(1, 1), "model",
			 model_json(tr));
	if (!root)
		return -ENOMEM;
	if (json_dump_file(root, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER)) {
		TOK_ERR(err, n, "%s: cannot write", path);
		rc = -EIO;
	}
	json_decref(root);
	return rc;
}

int tok_train_bytelevel(const char *corpus, size_t len, int vocab_size,
			const char *out_json_path, char *err, size_t n)
{
	static const char *const eot[] = {EOT};

	return tok_train_bytelevel_ex(corpus, len, vocab_size, eot, 1, out_json_path, err, n);
}

int tok_train_bytelevel_ex(const char *corpus, size_t len, int vocab_size,
			   const char *const *specials, int n_specials,
			   const char *out_json_path, char *err, size_t n)
{
	struct trainer tr = {.specials = specials, .n_specials = n_specials};
	struct tbuf clean = { 0 };
	int rc;

	if (vocab_size < 256 + n_specials || vocab_size > 1 << 20 || n_specials < 0) {
		TOK_ERR(err, n, "vocab_size %d: must be %d..%d", vocab_size, 256 + n_specials,
			1 << 20);
		return -EINVAL;
	}
	tr.piece = calloc((size_t)vocab_size, sizeof(*tr.piece));
	tr.merges = calloc((size_t)vocab_size, sizeof(*tr.merges));
	rc = tr.piece && tr.merges ? utf8_lossy(corpus, len, &clean) : -ENOMEM;
	if (!rc)
		rc = collect_words(&tr, clean.p, clean.len, err, n);
	if (!rc)
		rc = train(&tr, vocab_size, err, n);
	if (!rc)
		rc = write_json(&tr, out_json_path, err, n);
	if (rc == -ENOMEM)
		TOK_ERR(err, n, "out of memory");
	for (int i = 0; i < tr.n_tok; i++)
		free(tr.piece[i]);
	free(tr.piece);
	free(tr.merges);
	free(tr.sym);
	free(tr.word_count);
	strmap_free(&tr.vocab);
	tbuf_free(&clean);
	return rc;
}
