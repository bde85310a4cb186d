/* Pre-tokenizers: ByteLevel, Split, Metaspace, Digits.  Each one cuts the
 * text pieces further, as HF's NormalizedString::split does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

struct span {
	size_t s, e;
	int match;
};

struct spans {
	struct span *v;
	size_t n, cap;
};

static int span_push(struct spans *sp, size_t s, size_t e, int match)
{
	if (sp->n == sp->cap) {
		size_t cap = sp->cap ? sp->cap * 2 : 32;
		struct span *v = realloc(sp->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		sp->v = v;
		sp->cap = cap;
	}
	sp->v[sp->n++] = (struct span){ s, e, match };
	return 0;
}

/* Matches and the gaps between them, covering the whole string. */
static int find_spans(const pcre2_code *rx, const char *s, size_t len, int invert,
		      struct spans *sp)
{
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(rx, NULL);
	size_t pos = 0, prev = (size_t)-1, last = 0, ms, me;
	int rc;

	if (!md)
		return -ENOMEM;
	sp->n = 0;
	while ((rc = rx_find(rx, s, len, &pos, &prev, md, &ms, &me)) == 1) {
		if ((last != ms && span_push(sp, last, ms, invert)) || span_push(sp, ms, me, !invert)) {
			rc = -ENOMEM;
			break;
		}
		last = me;
	}
	pcre2_match_data_free(md);
	if (rc < 0)
		return rc;
	return last != len ? span_push(sp, last, len, invert) : 0;
}

/* The SplitDelimiterBehavior fold, in place; spans end up all non-match. */
static void apply_behavior(struct spans *sp, enum split_beh beh)
{
	size_t k = 0;
	int prev = 0;

	switch (beh) {
	case B_REMOVED:
		for (size_t i = 0; i < sp->n; i++)
			if (!sp->v[i].match)
				sp->v[k++] = sp->v[i];
		sp->n = k;
		return;
	case B_ISOLATED:
		return;
	case B_MERGED_PREV:
		for (size_t i = 0; i < sp->n; i++) {
			if (sp->v[i].match && !prev && k)
				sp->v[k - 1].e = sp->v[i].e;
			else
				sp->v[k++] = sp->v[i];
			prev = sp->v[i].match;
		}
		sp->n = k;
		return;
	case B_MERGED_NEXT: /* the same fold, walking backwards */
		k = sp->n;
		for (size_t i = sp->n; i-- > 0;) {
			int m = sp->v[i].match;

			if (m && !prev && k < sp->n)
				sp->v[k].s = sp->v[i].s;
			else
				sp->v[--k] = sp->v[i];
			prev = m;
		}
		memmove(sp->v, sp->v + k, (sp->n - k) * sizeof(*sp->v));
		sp->n -= k;
		return;
	case B_CONTIGUOUS:
		for (size_t i = 0; i < sp->n; i++) {
			if (i && sp->v[i].match == prev && k)
				sp->v[k - 1].e = sp->v[i].e;
			else
				sp->v[k++] = sp->v[i];
			prev = sp->v[i].match;
		}
		sp->n = k;
		return;
	}
}

static int split_piece(const struct piece *p, const pcre2_code *rx, enum split_beh beh,
		       int invert, struct spans *sp, struct pieces *out)
{
	int rc = find_spans(rx, p->s, p->len, invert, sp);

	if (rc)
		return rc;
	apply_behavior(sp, beh);
	for (size_t i = 0; i < sp->n; i++) {
		const struct span *x = &sp->v[i];

		if (x->e > x->s &&
		    pieces_push(out, p->s + x->s, x->e - x->s, -1, p->at_start && !x->s))
			return -ENOMEM;
	}
	return 0;
}

static int byte_map(struct piece *p, struct arena *mem)
{
	char *o = arena_alloc(mem, 2 * p->len + 1), *w = o;

	if (!o)
		return -ENOMEM;
	for (size_t i = 0; i < p->len; i++)
		w += utf8_put(bl_byte_to_cp((unsigned char)p->s[i]), w);
	p->s = o;
	p->len = (size_t)(w - o);
	return 0;
}

static int prepend(struct piece *p, const char *pre, size_t n, struct arena *mem)
{
	char *o = arena_alloc(mem, p->len + n + 1);

	if (!o)
		return -ENOMEM;
	memcpy(o, pre, n);
	memcpy(o + n, p->s, p->len);
	p->s = o;
	p->len += n;
	return 0;
}

/* Metaspace: ' ' -> replacement, maybe prepend it, maybe split before it. */
static int metaspace(const struct pretok *m, struct piece *p, struct arena *mem)
{
	size_t spaces = 0, k = 0;
	int starts;
	char *o;

	for (size_t i = 0; i < p->len; i++)
		spaces += p->s[i] == ' ';
	o = arena_alloc(mem, p->len + spaces * (m->repl_len - 1) + m->repl_len + 1);
	if (!o)
		return -ENOMEM;
	for (size_t i = 0; i < p->len; i++) {
		if (p->s[i] == ' ') {
			memcpy(o + k, m->repl, m->repl_len);
			k += m->repl_len;
		} else {
			o[k++] = p->s[i];
		}
	}
	p->s = o;
	p->len = k;
	starts = k >= m->repl_len && !memcmp(o, m->repl, m->repl_len);
	if (!starts && (m->scheme == PS_ALWAYS || (m->scheme == PS_FIRST && p->at_start)))
		return prepend(p, m->repl, m->repl_len, mem);
	return 0;
}

static int stage(const struct pretok *m, struct pieces *in, struct pieces *out,
		 struct spans *sp, struct arena *mem)
{
	for (size_t i = 0; i < in->n; i++) {
		struct piece p = in->v[i];
		size_t first = out->n;
		int rc = 0;

		if (p.id >= 0) {
			if (pieces_push(out, p.s, p.len, p.id, 0))
				return -ENOMEM;
			continue;
		}
		switch (m->kind) {
		case P_BYTELEVEL:
			if (m->add_prefix_space && p.s[0] != ' ')
				rc = prepend(&p, " ", 1, mem);
			if (!rc)
				rc = m->use_regex ? split_piece(&p, m->rx, B_ISOLATED, 0, sp, out)
						  : pieces_push(out, p.s, p.len, -1, p.at_start);
			for (size_t j = first; !rc && j < out->n; j++)
				rc = byte_map(&out->v[j], mem);
			break;
		case P_SPLIT:
		case P_DIGITS:
			rc = split_piece(&p, m->rx, m->beh, m->invert, sp, out);
			break;
		case P_METASPACE:
			rc = metaspace(m, &p, mem);
			if (!rc)
				rc = m->split ? split_piece(&p, m->rx, B_MERGED_NEXT, 0, sp, out)
					      : pieces_push(out, p.s, p.len, -1, p.at_start);
			break;
		}
		if (rc)
			return rc;
	}
	return 0;
}

int pretok_apply(const struct tok *t, struct pieces *p, struct arena *mem)
{
	struct spans sp = { 0 };
	int rc = 0;

	for (int i = 0; i < t->n_pres && !rc; i++) {
		struct pieces out = { 0 };

		rc = stage(&t->pres[i], p, &out, &sp, mem);
		pieces_free(p);
		*p = out;
	}
	free(sp.v);
	return rc;
}
