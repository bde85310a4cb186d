/* The BPE model: loading vocab + merges, and encoding one word the way HF
 * tokenizers' Word::merge_all does (lowest rank first, then leftmost). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static int load_vocab(struct tok *t, json_t *vocab, char *err, size_t n)
{
	const char *key;
	json_t *v;

	if (!json_is_object(vocab)) {
		TOK_ERR(err, n, "model: no vocab object");
		return -EINVAL;
	}
	json_object_foreach(vocab, key, v) {
		size_t len = strlen(key);
		char *k;

		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= TOK_MAX_ID) {
			TOK_ERR(err, n, "model vocab \"%s\": id must be an integer in 0..%d", key,
				TOK_MAX_ID - 1);
			return -EINVAL;
		}
		if (!(k = arena_strndup(&t->mem, key, len)) ||
		    strmap_put(&t->bpe.vocab, k, len, (int32_t)json_integer_value(v)))
			return -ENOMEM;
	}
	return 0;
}

/* One merge line: "a b" (older files) or ["a", "b"]. */
static int merge_parts(json_t *e, const char **a, size_t *al, const char **b, size_t *bl)
{
	if (json_is_array(e) && json_array_size(e) == 2 &&
	    json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
		*a = json_string_value(json_array_get(e, 0));
		*al = json_string_length(json_array_get(e, 0));
		*b = json_string_value(json_array_get(e, 1));
		*bl = json_string_length(json_array_get(e, 1));
		return 0;
	}
	if (json_is_string(e)) {
		const char *s = json_string_value(e), *sp = strchr(s, ' ');

		if (!sp || strchr(sp + 1, ' '))
			return -EINVAL;
		*a = s;
		*al = (size_t)(sp - s);
		*b = sp + 1;
		*bl = strlen(sp + 1);
		return 0;
	}
	return -EINVAL;
}

static int load_merges(struct tok *t, json_t *merges, char *err, size_t n)
{
	struct bpe *b = &t->bpe;
	struct tbuf cat = { 0 };
	size_t i;
	json_t *e;
	int rc = 0;

	json_array_foreach(merges, i, e) {
		const char *x, *y;
		size_t xl, yl, skip;
		int32_t xi, yi, zi;

		if (merge_parts(e, &x, &xl, &y, &yl)) {
			TOK_ERR(err, n, "model merges[%zu]: not a pair", i);
			rc = -EINVAL;
			break;
		}
		skip = b->prefix_len < yl ? b->prefix_len : yl;
		cat.len = 0;
		if (tbuf_put(&cat, x, xl) || tbuf_put(&cat, y + skip, yl - skip)) {
			rc = -ENOMEM;
			break;
		}
		xi = strmap_get(&b->vocab, x, xl);
		yi = strmap_get(&b->vocab, y, yl);
		zi = strmap_get(&b->vocab, cat.p, cat.len);
		if (xi < 0 || yi < 0 || zi < 0) {
			TOK_ERR(err, n, "model merges[%zu]: \"%.*s\" + \"%.*s\" not in vocab", i,
				(int)xl, x, (int)yl, y);
			rc = -EINVAL;
			break;
		}
		if ((rc = pairmap_put(&b->merges, xi, yi, (int32_t)i, zi)))
			break;
	}
	tbuf_free(&cat);
	return rc;
}

static int opt_string(struct tok *t, json_t *m, const char *key, char **s, size_t *len)
{
	json_t *v = json_object_get(m, key);

	*s = NULL;
	*len = 0;
	if (!json_is_string(v))
		return 0;
	*len = json_string_length(v);
	*s = arena_strndup(&t->mem, json_string_value(v), *len);
	return *s ? 0 : -ENOMEM;
}

int load_bpe(struct tok *t, const void *json, char *err, size_t n)
{
	json_t *m = (json_t *)json, *d = json_object_get(m, "dropout");
	const char *ty = json_string_value(json_object_get(m, "type"));
	struct bpe *b = &t->bpe;
	char *unk;
	size_t unk_len;
	int rc;

	if (!json_is_object(m) || (ty && strcmp(ty, "BPE")) ||
	    (!ty && !json_object_get(m, "merges"))) {
		TOK_ERR(err, n, "model type \"%s\" is not supported (only BPE)",
			ty ? ty : json_is_object(m) ? "(none)" : "(missing)");
		return -ENOTSUP;
	}
	if (json_is_number(d) && json_number_value(d) > 0.0) {
		TOK_ERR(err, n, "model BPE: dropout %g is not supported (not deterministic)",
			json_number_value(d));
		return -ENOTSUP;
	}
	b->byte_fallback = json_is_true(json_object_get(m, "byte_fallback"));
	b->fuse_unk = json_is_true(json_object_get(m, "fuse_unk"));
	b->ignore_merges = json_is_true(json_object_get(m, "ignore_merges"));
	if ((rc = opt_string(t, m, "continuing_subword_prefix", &b->prefix, &b->prefix_len)) ||
	    (rc = opt_string(t, m, "end_of_word_suffix", &b->suffix, &b->suffix_len)) ||
	    (rc = opt_string(t, m, "unk_token", &unk, &unk_len)) ||
	    (rc = load_vocab(t, json_object_get(m, "vocab"), err, n)) ||
	    (rc = load_merges(t, json_object_get(m, "merges"), err, n)))
		return rc;
	b->unk_id = unk ? strmap_get(&b->vocab, unk, unk_len) : -1;
	for (int i = 0; i < 256; i++) {
		char name[8];

		snprintf(name, sizeof(name), "<0x%02X>", i);
		b->byte_ids[i] = strmap_get(&b->vocab, name, 6);
	}
	return 0;
}

struct sym {
	int32_t id, prev, next;
	uint32_t len;
};
struct mrg {
	int32_t rank, pos, id;
};

static int mrg_less(const struct mrg *x, const struct mrg *y)
{
	return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static void heap_push(struct mrg *h, size_t *n, struct mrg m)
{
	size_t i = (*n)++;

	while (i && mrg_less(&m, &h[(i - 1) / 2])) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = m;
}

static struct mrg heap_pop(struct mrg *h, size_t *n)
{
	struct mrg top = h[0], last = h[--(*n)];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && mrg_less(&h[c + 1], &h[c]))
			c++;
		if (!mrg_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = last;
	return top;
}

static int sym_add(struct bpe_scratch *sc, int32_t id, uint32_t len)
{
	if (sc->n_sy == sc->cap_sy) {
		size_t cap = sc->cap_sy ? sc->cap_sy * 2 : 64;
		struct sym *s = realloc(sc->sy, cap * sizeof(*s));

		if (!s)
			return -ENOMEM;
		sc->sy = s;
		sc->cap_sy = cap;
	}
	sc->sy[sc->n_sy] = (struct sym){ id, (int32_t)sc->n_sy - 1, (int32_t)sc->n_sy + 1, len };
	sc->n_sy++;
	return 0;
}

/* The symbol of one character, or its <0xXX> bytes, or <unk> (fused). */
static int add_char(const struct bpe *b, struct bpe_scratch *sc, const char *s, size_t len,
		    size_t byte_len, int32_t *unk, uint32_t *unk_len)
{
	int32_t id = strmap_get(&b->vocab, s, len);
	size_t i;

	if (id >= 0) {
		if (*unk >= 0 && sym_add(sc, *unk, *unk_len))
			return -ENOMEM;
		*unk = -1;
		return sym_add(sc, id, (uint32_t)byte_len);
	}
	if (b->byte_fallback) {
		for (i = 0; i < len && b->byte_ids[(unsigned char)s[i]] >= 0; i++)
			;
		if (i == len) { /* HF leaves a pending <unk> pending here */
			for (i = 0; i < len; i++)
				if (sym_add(sc, b->byte_ids[(unsigned char)s[i]], 1))
					return -ENOMEM;
			return 0;
		}
	}
	if (b->unk_id < 0)
		return 0; /* no unk token: HF drops the character */
	if (*unk >= 0 && b->fuse_unk) {
		*unk_len += (uint32_t)byte_len;
		return 0;
	}
	if (*unk >= 0 && sym_add(sc, *unk, *unk_len))
		return -ENOMEM;
	*unk = b->unk_id;
	*unk_len = (uint32_t)byte_len;
	return 0;
}

static int initial_symbols(const struct bpe *b, const char *w, size_t len, struct bpe_scratch *sc)
{
	struct tbuf tmp = { 0 };
	int32_t unk = -1;
	uint32_t unk_len = 0, cp;
	int rc = 0;

	sc->n_sy = 0;
	for (size_t i = 0, k; i < len && !rc; i += k) {
		k = utf8_next(w + i, len - i, &cp);
		if ((i && b->prefix) || (i + k == len && b->suffix)) {
			tmp.len = 0;
			if ((i && tbuf_put(&tmp, b->prefix, b->prefix_len)) || tbuf_put(&tmp, w + i, k) ||
			    (i + k == len && tbuf_put(&tmp, b->suffix, b->suffix_len)))
				rc = -ENOMEM;
			else
				rc = add_char(b, sc, tmp.p, tmp.len, k, &unk, &unk_len);
		} else {
			rc = add_char(b, sc, w + i, k, k, &unk, &unk_len);
		}
	}
	if (!rc && unk >= 0)
		rc = sym_add(sc, unk, unk_len);
	tbuf_free(&tmp);
	if (sc->n_sy)
		sc->sy[sc->n_sy - 1].next = -1;
	return rc;
}

static void push_pair(const struct bpe *b, struct bpe_scratch *sc, int32_t pos)
{
	struct sym *s = sc->sy;
	int32_t rank, id;

	if (pos >= 0 && s[pos].next >= 0 &&
	    pairmap_get(&b->merges, s[pos].id, s[s[pos].next].id, &rank, &id))
		heap_push(sc->hp, &sc->n_hp, (struct mrg){ rank, pos, id });
}

static void merge_all(const struct bpe *b, struct bpe_scratch *sc)
{
	struct sym *s = sc->sy;

	sc->n_hp = 0;
	for (size_t i = 0; i + 1 < sc->n_sy; i++)
		push_pair(b, sc, (int32_t)i);
	while (sc->n_hp) {
		struct mrg top = heap_pop(sc->hp, &sc->n_hp);
		int32_t rank, id, nx;

		if (!s[top.pos].len || s[top.pos].next < 0)
			continue;
		nx = s[top.pos].next;
		if (!pairmap_get(&b->merges, s[top.pos].id, s[nx].id, &rank, &id) || id != top.id)
			continue; /* stale entry */
		s[top.pos].id = top.id;
		s[top.pos].len += s[nx].len;
		s[top.pos].next = s[nx].next;
		s[nx].len = 0;
		if (s[nx].next >= 0)
			s[s[nx].next].prev = top.pos;
		push_pair(b, sc, s[top.pos].prev);
		push_pair(b, sc, top.pos);
	}
}

int bpe_word(const struct bpe *b, const char *w, size_t len, struct bpe_scratch *sc,
	     struct tbuf *ids)
{
	int32_t id;
	int rc;

	if (b->ignore_merges && (id = strmap_get(&b->vocab, w, len)) >= 0)
		return tbuf_put(ids, &id, sizeof(id));
	if ((rc = initial_symbols(b, w, len, sc)))
		return rc;
	/* each merge pushes at most two pairs: 3n bounds the heap */
	if (sc->cap_hp < 3 * sc->n_sy + 1) {
		struct mrg *h = realloc(sc->hp, (3 * sc->n_sy + 1) * sizeof(*h));

		if (!h)
			return -ENOMEM;
		sc->hp = h;
		sc->cap_hp = 3 * sc->n_sy + 1;
	}
	merge_all(b, sc);
	for (size_t i = 0; i < sc->n_sy; i++)
		if (sc->sy[i].len && tbuf_put(ids, &sc->sy[i].id, sizeof(int32_t)))
			return -ENOMEM;
	return 0;
}

void bpe_scratch_free(struct bpe_scratch *sc)
{
	free(sc->sy);
	free(sc->hp);
	memset(sc, 0, sizeof(*sc));
}
