/* The sections of tokenizer.json: model, normalizer, pre_tokenizer,
 * post_processor, decoder.  Anything we do not implement is refused by
 * name: guessing would mis-tokenize silently. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static const char *type_of(json_t *o)
{
	const char *s = json_string_value(json_object_get(o, "type"));

	return s ? s : "(no type)";
}

static int flag(json_t *o, const char *key, int dflt)
{
	json_t *v = json_object_get(o, key);

	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* {"String": s} or {"Regex": r} -> text and compiled regex. */
static int load_pattern(struct tok *t, json_t *p, const char *what, char **txt,
			size_t *len, pcre2_code **rx, char *err, size_t n)
{
	json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
	json_t *v = json_is_string(s) ? s : r;

	if (!json_is_string(v)) {
		TOK_ERR(err, n, "%s: pattern must be {\"String\"} or {\"Regex\"}", what);
		return -EINVAL;
	}
	*len = json_string_length(v);
	*txt = arena_strndup(&t->mem, json_string_value(v), *len);
	if (!*txt)
		return -ENOMEM;
	*rx = rx_compile(*txt, *len, v == s, err, n);
	return *rx ? 0 : -EINVAL;
}

/* One character given as a JSON string (Metaspace replacement, Strip). */
static int one_char(json_t *v, uint32_t *cp)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);

	return s && len && utf8_next(s, len, cp) == len ? 0 : -EINVAL;
}

static int prepend_scheme(json_t *o, enum prepend_scheme *ps)
{
	const char *s = json_string_value(json_object_get(o, "prepend_scheme"));

	*ps = flag(o, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
	if (!s)
		return 0;
	if (!strcmp(s, "always"))
		*ps = PS_ALWAYS;
	else if (!strcmp(s, "first"))
		*ps = PS_FIRST;
	else if (!strcmp(s, "never"))
		*ps = PS_NEVER;
	else
		return -EINVAL;
	return 0;
}

static int load_norm_one(struct tok *t, json_t *o, char *err, size_t n)
{
	static const char *const nf[] = { "NFC", "NFD", "NFKC", "NFKD" };
	const char *ty = type_of(o);
	struct norm *m = &t->norms[t->n_norms];
	size_t i;
	json_t *e;
	int rc;

	if (!strcmp(ty, "Sequence")) {
		json_array_foreach(json_object_get(o, "normalizers"), i, e)
			if ((rc = load_norm_one(t, e, err, n)))
				return rc;
		return 0;
	}
	if (t->n_norms >= TOK_MAX_STAGES) {
		TOK_ERR(err, n, "normalizer: more than %d steps", TOK_MAX_STAGES);
		return -ENOTSUP;
	}
	memset(m, 0, sizeof(*m));
	for (i = 0; i < 4; i++) {
		if (strcmp(ty, nf[i]))
			continue;
#ifndef TOK_HAVE_UTF8PROC
		TOK_ERR(err, n, "normalizer \"%s\" needs utf8proc, not built in", ty);
		return -ENOTSUP;
#endif
		m->kind = (enum norm_kind)(N_NFC + i);
		t->n_norms++;
		return 0;
	}
	if (!strcmp(ty, "Prepend")) {
		json_t *p = json_object_get(o, "prepend");

		if (!json_is_string(p)) {
			TOK_ERR(err, n, "normalizer Prepend: no prepend string");
			return -EINVAL;
		}
		m->kind = N_PREPEND;
		m->alen = json_string_length(p);
		if (!(m->a = arena_strndup(&t->mem, json_string_value(p), m->alen)))
			return -ENOMEM;
	} else if (!strcmp(ty, "Replace")) {
		json_t *c = json_object_get(o, "content");

		m->kind = N_REPLACE;
		if ((rc = load_pattern(t, json_object_get(o, "pattern"), "normalizer Replace",
				       &m->a, &m->alen, &m->rx, err, n)))
			return rc;
		m->blen = json_string_length(c);
		if (!json_is_string(c) || !(m->b = arena_strndup(&t->mem, json_string_value(c), m->blen)))
			return json_is_string(c) ? -ENOMEM : -EINVAL;
	} else if (!strcmp(ty, "Strip")) {
		m->kind = N_STRIP;
		m->left = flag(o, "strip_left", 1);
		m->right = flag(o, "strip_right", 1);
	} else {
		TOK_ERR(err, n, "normalizer \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	t->n_norms++;
	return 0;
}

int load_normalizer(struct tok *t, const void *json, char *err, size_t n)
{
	json_t *o = (json_t *)json;

	return !o || json_is_null(o) ? 0 : load_norm_one(t, o, err, n);
}

static int behavior(json_t *o, enum split_beh *b)
{
	static const char *const names[] = { "Removed", "Isolated", "MergedWithPrevious",
					     "MergedWithNext", "Contiguous" };
	const char *s = json_string_value(json_object_get(o, "behavior"));

	for (int i = 0; s && i < 5; i++) {
		if (!strcmp(s, names[i])) {
			*b = (enum split_beh)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int load_pre_one(struct tok *t, json_t *o, char *err, size_t n)
{
	const char *ty = type_of(o);
	struct pretok *p = &t->pres[t->n_pres];
	size_t i, len;
	json_t *e;
	char *txt;
	uint32_t cp;
	int rc;

	if (!strcmp(ty, "Sequence")) {
		json_array_foreach(json_object_get(o, "pretokenizers"), i, e)
			if ((rc = load_pre_one(t, e, err, n)))
				return rc;
		return 0;
	}
	if (t->n_pres >= TOK_MAX_STAGES) {
		TOK_ERR(err, n, "pre_tokenizer: more than %d steps", TOK_MAX_STAGES);
		return -ENOTSUP;
	}
	memset(p, 0, sizeof(*p));
	if (!strcmp(ty, "ByteLevel")) {
		static const char gpt2[] = TOK_GPT2_REGEX;

		p->kind = P_BYTELEVEL;
		p->add_prefix_space = flag(o, "add_prefix_space", 1);
		p->use_regex = flag(o, "use_regex", 1);
		if (p->use_regex && !(p->rx = rx_compile(gpt2, sizeof(gpt2) - 1, 0, err, n)))
			return -EINVAL;
	} else if (!strcmp(ty, "Split")) {
		p->kind = P_SPLIT;
		p->invert = flag(o, "invert", 0);
		if (behavior(o, &p->beh)) {
			TOK_ERR(err, n, "pre_tokenizer Split: unknown behavior");
			return -ENOTSUP;
		}
		if ((rc = load_pattern(t, json_object_get(o, "pattern"), "pre_tokenizer Split",
				       &txt, &len, &p->rx, err, n)))
			return rc;
	} else if (!strcmp(ty, "Metaspace")) {
		p->kind = P_METASPACE;
		p->split = flag(o, "split", 1);
		if (one_char(json_object_get(o, "replacement"), &cp) || prepend_scheme(o, &p->scheme)) {
			TOK_ERR(err, n, "pre_tokenizer Metaspace: bad replacement or prepend_scheme");
			return -EINVAL;
		}
		p->repl_len = utf8_put(cp, p->repl);
		if (!(p->rx = rx_compile(p->repl, p->repl_len, 1, err, n)))
			return -EINVAL;
	} else if (!strcmp(ty, "Digits")) {
		p->kind = P_DIGITS;
		p->beh = flag(o, "individual_digits", 0) ? B_ISOLATED : B_CONTIGUOUS;
		if (!(p->rx = rx_compile("\\p{N}", 5, 0, err, n)))
			return -EINVAL;
	} else {
		TOK_ERR(err, n, "pre_tokenizer \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	t->n_pres++;
	return 0;
}

int load_pretokenizer(struct tok *t, const void *json, char *err, size_t n)
{
	json_t *o = (json_t *)json;

	return !o || json_is_null(o) ? 0 : load_pre_one(t, o, err, n);
}

static int load_dec_one(struct tok *t, json_t *o, char *err, size_t n)
{
	const char *ty = type_of(o);
	struct dec *d = &t->decs[t->n_decs];
	size_t i;
	json_t *e;
	int rc;

	if (!strcmp(ty, "Sequence")) {
		json_array_foreach(json_object_get(o, "decoders"), i, e)
			if ((rc = load_dec_one(t, e, err, n)))
				return rc;
		return 0;
	}
	if (t->n_decs >= TOK_MAX_STAGES) {
		TOK_ERR(err, n, "decoder: more than %d steps", TOK_MAX_STAGES);
		return -ENOTSUP;
	}
	memset(d, 0, sizeof(*d));
	if (!strcmp(ty, "ByteLevel")) {
		d->kind = D_BYTELEVEL;
	} else if (!strcmp(ty, "ByteFallback")) {
		d->kind = D_BYTEFALLBACK;
	} else if (!strcmp(ty, "Fuse")) {
		d->kind = D_FUSE;
	} else if (!strcmp(ty, "Replace")) {
		json_t *c = json_object_get(o, "content");

		d->kind = D_REPLACE;
		if ((rc = load_pattern(t, json_object_get(o, "pattern"), "decoder Replace",
				       &d->a, &d->alen, &d->rx, err, n)))
			return rc;
		d->literal = json_is_string(json_object_get(json_object_get(o, "pattern"), "String")) &&
			     d->alen;
		d->blen = json_string_length(c);
		if (!json_is_string(c) || !(d->b = arena_strndup(&t->mem, json_string_value(c), d->blen)))
			return json_is_string(c) ? -ENOMEM : -EINVAL;
	} else if (!strcmp(ty, "Strip")) {
		d->kind = D_STRIP;
		d->start = (int)json_integer_value(json_object_get(o, "start"));
		d->stop = (int)json_integer_value(json_object_get(o, "stop"));
		if (one_char(json_object_get(o, "content"), &d->ch) || d->start < 0 || d->stop < 0) {
			TOK_ERR(err, n, "decoder Strip: bad content/start/stop");
			return -EINVAL;
		}
	} else if (!strcmp(ty, "Metaspace")) {
		d->kind = D_METASPACE;
		if (one_char(json_object_get(o, "replacement"), &d->ch) || prepend_scheme(o, &d->scheme)) {
			TOK_ERR(err, n, "decoder Metaspace: bad replacement or prepend_scheme");
			return -EINVAL;
		}
	} else {
		TOK_ERR(err, n, "decoder \"%s\" is not supported", ty);
		return -ENOTSUP;
	}
	t->n_decs++;
	return 0;
}

int load_decoder(struct tok *t, const void *json, char *err, size_t n)
{
	json_t *o = (json_t *)json;

	if (!o || json_is_null(o))
		return 0;
	t->has_decoder = 1;
	return load_dec_one(t, o, err, n);
}

static int load_template(struct tok *t, json_t *o, char *err, size_t n)
{
	json_t *single = json_object_get(o, "single"), *sp = json_object_get(o, "special_tokens");
	json_t *e, *id;
	size_t i, k;

	if (t->tpl) {
		TOK_ERR(err, n, "post_processor: two TemplateProcessing steps");
		return -ENOTSUP;
	}
	t->tpl = calloc(256, sizeof(*t->tpl));
	if (!t->tpl)
		return -ENOMEM;
	json_array_foreach(single, i, e) {
		json_t *st = json_object_get(e, "SpecialToken"), *seq = json_object_get(e, "Sequence");
		json_t *ids;

		if (seq) {
			if (strcmp(json_string_value(json_object_get(seq, "id")) ?: "", "A"))
				goto bad;
			t->tpl[t->n_tpl++] = -2;
			continue;
		}
		ids = json_object_get(st, "id");
		ids = json_object_get(json_object_get(sp, json_string_value(ids) ?: ""), "ids");
		if (!json_is_array(ids) || !json_array_size(ids))
			goto bad;
		json_array_foreach(ids, k, id) {
			if (!json_is_integer(id) || t->n_tpl >= 255)
				goto bad;
			t->tpl[t->n_tpl++] = (int32_t)json_integer_value(id);
		}
	}
	return 0;
bad:
	TOK_ERR(err, n, "post_processor TemplateProcessing: bad single template item %zu", i);
	return -EINVAL;
}

static int load_post_one(struct tok *t, json_t *o, char *err, size_t n)
{
	const char *ty = type_of(o);
	size_t i;
	json_t *e;
	int rc;

	if (!strcmp(ty, "Sequence")) {
		json_array_foreach(json_object_get(o, "processors"), i, e)
			if ((rc = load_post_one(t, e, err, n)))
				return rc;
		return 0;
	}
	if (!strcmp(ty, "ByteLevel"))
		return 0; /* only trims offsets */
	if (!strcmp(ty, "TemplateProcessing"))
		return load_template(t, o, err, n);
	TOK_ERR(err, n, "post_processor \"%s\" is not supported", ty);
	return -ENOTSUP;
}

int load_postprocessor(struct tok *t, const void *json, char *err, size_t n)
{
	json_t *o = (json_t *)json;

	return !o || json_is_null(o) ? 0 : load_post_one(t, o, err, n);
}
