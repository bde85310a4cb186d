/* tok_open: tokenizer.json (+ tokenizer_config.json) into a struct tok. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static int load_added(struct tok *t, json_t *arr, char *err, size_t n)
{
	size_t i;
	json_t *e;

	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr)) {
		TOK_ERR(err, n, "added_tokens: not an array");
		return -EINVAL;
	}
	t->added = arena_alloc(&t->mem, (json_array_size(arr) + 1) * sizeof(*t->added));
	if (!t->added)
		return -ENOMEM;
	json_array_foreach(arr, i, e) {
		struct added *a = &t->added[t->n_added];
		json_t *c = json_object_get(e, "content"), *id = json_object_get(e, "id");

		if (!json_is_string(c) || !json_is_integer(id) || json_integer_value(id) < 0 ||
		    json_integer_value(id) >= TOK_MAX_ID) {
			TOK_ERR(err, n, "added_tokens[%zu]: needs a string content and an id < %d", i,
				TOK_MAX_ID);
			return -EINVAL;
		}
		if (!json_string_length(c))
			continue; /* HF ignores empty added tokens */
		memset(a, 0, sizeof(*a));
		a->len = json_string_length(c);
		a->s = arena_strndup(&t->mem, json_string_value(c), a->len);
		if (!a->s)
			return -ENOMEM;
		a->id = (int32_t)json_integer_value(id);
		a->special = json_is_true(json_object_get(e, "special"));
		a->normalized = json_object_get(e, "normalized") ?
			json_is_true(json_object_get(e, "normalized")) : !a->special;
		a->lstrip = json_is_true(json_object_get(e, "lstrip"));
		a->rstrip = json_is_true(json_object_get(e, "rstrip"));
		a->single_word = json_is_true(json_object_get(e, "single_word"));
		t->n_added++;
	}
	return 0;
}

/* Normalized added tokens match the normalized text, so match their
 * normalized form. */
static int normalize_added(struct tok *t)
{
	for (size_t i = 0; i < t->n_added; i++) {
		struct added *a = &t->added[i];
		struct tbuf b = { 0 };
		int rc;

		a->norm_s = a->s;
		a->norm_len = a->len;
		if (!a->normalized || !t->n_norms)
			continue;
		rc = norm_apply(t, a->s, a->len, &b);
		if (!rc && !(a->norm_s = arena_strndup(&t->mem, b.p, b.len)))
			rc = -ENOMEM;
		a->norm_len = b.len;
		tbuf_free(&b);
		if (rc)
			return rc;
	}
	return 0;
}

/* id -> piece for the whole id range; added tokens take precedence. */
static int build_id_table(struct tok *t, const char **mp, const uint32_t *ml, int32_t nm)
{
	int32_t top = nm;

	for (size_t i = 0; i < t->n_added; i++)
		if (t->added[i].id + 1 > top)
			top = t->added[i].id + 1;
	t->n_ids = top;
	t->id_s = calloc((size_t)top + 1, sizeof(*t->id_s));
	t->id_len = calloc((size_t)top + 1, sizeof(*t->id_len));
	t->id_special = calloc((size_t)top + 1, 1);
	if (!t->id_s || !t->id_len || !t->id_special)
		return -ENOMEM;
	for (int32_t i = 0; i < nm; i++) {
		t->id_s[i] = mp[i];
		t->id_len[i] = ml[i];
	}
	for (size_t i = 0; i < t->n_added; i++) {
		struct added *a = &t->added[i];

		/* HF decodes a normalized added token from its normalized form */
		t->id_s[a->id] = a->norm_s;
		t->id_len[a->id] = (uint32_t)a->norm_len;
		t->id_special[a->id] = (uint8_t)a->special;
	}
	return 0;
}

static int special_id(const struct tok *t, json_t *v)
{
	if (json_is_object(v))
		v = json_object_get(v, "content");
	if (!json_is_string(v))
		return -1;
	return tok_token_id(t, json_string_value(v));
}

static void load_config(struct tok *t, const char *json_path)
{
	const char *slash = strrchr(json_path, '/');
	char path[4096];
	json_t *cfg;

	t->bos = t->eos = -1;
	snprintf(path, sizeof(path), "%.*s%stokenizer_config.json",
		 slash ? (int)(slash - json_path) : 0, json_path, slash ? "/" : "");
	cfg = json_load_file(path, 0, NULL);
	if (cfg) {
		t->bos = special_id(t, json_object_get(cfg, "bos_token"));
		t->eos = special_id(t, json_object_get(cfg, "eos_token"));
		t->add_bos = json_is_true(json_object_get(cfg, "add_bos_token"));
		json_decref(cfg);
	}
	if (t->eos < 0) {
		static const char *const names[] = { "</s>", "<|endoftext|>" };

		for (int i = 0; i < 2 && t->eos < 0; i++) {
			int id = tok_token_id(t, names[i]);

			if (id >= 0 && t->id_special[id])
				t->eos = id;
		}
	}
}

static int load_root(struct tok *t, json_t *root, const char **mp, const uint32_t *ml,
		     int32_t nm, char *err, size_t n)
{
	int rc;

	if ((rc = load_added(t, json_object_get(root, "added_tokens"), err, n)) ||
	    (rc = load_normalizer(t, json_object_get(root, "normalizer"), err, n)) ||
	    (rc = load_pretokenizer(t, json_object_get(root, "pre_tokenizer"), err, n)) ||
	    (rc = load_postprocessor(t, json_object_get(root, "post_processor"), err, n)) ||
	    (rc = load_decoder(t, json_object_get(root, "decoder"), err, n)))
		return rc;
	for (size_t i = 0; i < t->n_tpl; i++) {
		if (t->tpl[i] != -2 && (t->tpl[i] < 0 || t->tpl[i] >= TOK_MAX_ID)) {
			TOK_ERR(err, n, "post_processor: template id %d out of range", t->tpl[i]);
			return -EINVAL;
		}
	}
	if ((rc = normalize_added(t)) || (rc = build_id_table(t, mp, ml, nm)) ||
	    (rc = matcher_build(t, &t->m_raw, 0)) || (rc = matcher_build(t, &t->m_norm, 1))) {
		if (rc == -ENOMEM)
			TOK_ERR(err, n, "out of memory");
		else if (!err[0])
			TOK_ERR(err, n, "added_tokens: cannot normalize");
		return rc;
	}
	return 0;
}

/* The model's id -> piece table, from the vocabulary map. */
static int model_pieces(struct tok *t, const char ***mp, uint32_t **ml, int32_t *nm)
{
	const char *s;
	size_t i = 0, len;
	int32_t v, top = 0;

	while (strmap_next(&t->bpe.vocab, &i, &s, &len, &v))
		if (v + 1 > top)
			top = v + 1;
	*mp = calloc((size_t)top + 1, sizeof(**mp));
	*ml = calloc((size_t)top + 1, sizeof(**ml));
	if (!*mp || !*ml)
		return -ENOMEM;
	i = 0;
	while (strmap_next(&t->bpe.vocab, &i, &s, &len, &v)) {
		(*mp)[v] = s;
		(*ml)[v] = (uint32_t)len;
	}
	*nm = top;
	return 0;
}

int tok_open(const char *path, struct tok **out, char *err, size_t n)
{
	struct tok *t = calloc(1, sizeof(*t));
	const char **mp = NULL;
	uint32_t *ml = NULL;
	int32_t nm = 0;
	json_error_t je;
	json_t *root = NULL;
	int rc = -ENOMEM;

	if (n)
		err[0] = '\0';
	if (!t)
		goto fail;
	root = json_load_file(path, 0, &je);
	if (!root) {
		TOK_ERR(err, n, "%s: %s (line %d)", path, je.text, je.line);
		rc = -EINVAL;
		goto fail;
	}
	if ((rc = load_bpe(t, json_object_get(root, "model"), err, n)) ||
	    (rc = model_pieces(t, &mp, &ml, &nm)) ||
	    (rc = load_root(t, root, mp, ml, nm, err, n)))
		goto fail;
	load_config(t, path);
	free(mp);
	free(ml);
	json_decref(root);
	*out = t;
	return 0;
fail:
	if (rc == -ENOMEM && n && !err[0])
		TOK_ERR(err, n, "out of memory");
	if (n && err[0] && strncmp(err, path, strlen(path))) {
		char tmp[512];

		snprintf(tmp, sizeof(tmp), "%s", err);
		TOK_ERR(err, n, "%s: %s", path, tmp);
	}
	free(mp);
	free(ml);
	json_decref(root);
	tok_close(t);
	return rc;
}

void tok_close(struct tok *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->n_norms; i++)
		pcre2_code_free(t->norms[i].rx);
	for (int i = 0; i < t->n_pres; i++)
		pcre2_code_free(t->pres[i].rx);
	for (int i = 0; i < t->n_decs; i++)
		pcre2_code_free(t->decs[i].rx);
	strmap_free(&t->bpe.vocab);
	pairmap_free(&t->bpe.merges);
	pcre2_code_free(t->rx_word);
	free(t->m_raw.idx);
	free(t->m_norm.idx);
	free(t->tpl);
	free(t->id_s);
	free(t->id_len);
	free(t->id_special);
	arena_free(&t->mem);
	free(t);
}

int tok_vocab_size(const struct tok *t)
{
	return t->n_ids;
}

int tok_token_id(const struct tok *t, const char *piece)
{
	size_t len = strlen(piece);

	for (size_t i = 0; i < t->n_added; i++)
		if (t->added[i].len == len && !memcmp(t->added[i].s, piece, len))
			return t->added[i].id;
	return strmap_get(&t->bpe.vocab, piece, len);
}

const char *tok_piece(const struct tok *t, int32_t id)
{
	return id >= 0 && id < t->n_ids ? t->id_s[id] : NULL;
}

int tok_is_special(const struct tok *t, int32_t id)
{
	return id >= 0 && id < t->n_ids && t->id_special[id];
}

int tok_bos_id(const struct tok *t)
{
	return t->bos;
}

int tok_eos_id(const struct tok *t)
{
	return t->eos;
}

int tok_add_bos(const struct tok *t)
{
	return t->add_bos;
}
