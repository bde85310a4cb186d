/* Normalizers (NFC..., Prepend, Replace, Strip) and the added-token split
 * that runs before and after them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifdef TOK_HAVE_UTF8PROC
#include <utf8proc.h>
#endif

#include "tokenizer/tok_internal.h"

static int unicode_nf(enum norm_kind k, const char *s, size_t len, struct tbuf *out)
{
#ifdef TOK_HAVE_UTF8PROC
	static const int opts[] = {
		UTF8PROC_STABLE | UTF8PROC_COMPOSE,
		UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
		UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
		UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
	};
	utf8proc_uint8_t *dst = NULL;
	utf8proc_ssize_t r;
	int rc;

	if (!len)
		return 0;
	r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst,
			 (utf8proc_option_t)opts[k - N_NFC]);
	if (r < 0)
		return r == UTF8PROC_ERROR_NOMEM ? -ENOMEM : -EINVAL;
	rc = tbuf_put(out, dst, (size_t)r);
	free(dst);
	return rc;
#else
	(void)k, (void)s, (void)len, (void)out;
	return -ENOTSUP;
#endif
}

/* Every match of rx in s replaced by rep (HF NormalizedString::replace). */
int rx_replace(const pcre2_code *rx, const char *s, size_t len, const char *rep,
	       size_t rep_len, struct tbuf *out)
{
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(rx, NULL);
	size_t pos = 0, prev = (size_t)-1, last = 0, ms, me;
	int rc;

	if (!md)
		return -ENOMEM;
	while ((rc = rx_find(rx, s, len, &pos, &prev, md, &ms, &me)) == 1) {
		if (tbuf_put(out, s + last, ms - last) || tbuf_put(out, rep, rep_len)) {
			rc = -ENOMEM;
			break;
		}
		last = me;
	}
	pcre2_match_data_free(md);
	if (rc < 0)
		return rc;
	return tbuf_put(out, s + last, len - last);
}

int lit_replace(const char *pat, size_t pat_len, const char *s, size_t len, const char *rep,
		size_t rep_len, struct tbuf *out)
{
	const char *p = s, *end = s + len, *hit;

	while ((hit = memmem(p, (size_t)(end - p), pat, pat_len))) {
		if (tbuf_put(out, p, (size_t)(hit - p)) || tbuf_put(out, rep, rep_len))
			return -ENOMEM;
		p = hit + pat_len;
	}
	return tbuf_put(out, p, (size_t)(end - p));
}

static size_t back_char(const char *s, size_t i)
{
	do
		i--;
	while (i && ((unsigned char)s[i] & 0xC0) == 0x80);
	return i;
}

/* Bytes of Unicode whitespace at the start (left) or end of s. */
static size_t ws_run(const char *s, size_t len, int left)
{
	uint32_t cp;
	size_t i, k;

	if (left) {
		for (i = 0; i < len && (k = utf8_next(s + i, len - i, &cp)) && uni_is_whitespace(cp);)
			i += k;
		return i;
	}
	for (i = len; i;) {
		size_t j = back_char(s, i);

		utf8_next(s + j, len - j, &cp);
		if (!uni_is_whitespace(cp))
			break;
		i = j;
	}
	return len - i;
}

static int norm_one(const struct norm *m, const char *s, size_t len, struct tbuf *out)
{
	size_t l, r;

	switch (m->kind) {
	case N_PREPEND:
		if (len && tbuf_put(out, m->a, m->alen))
			return -ENOMEM;
		return tbuf_put(out, s, len);
	case N_REPLACE:
		return rx_replace(m->rx, s, len, m->b, m->blen, out);
	case N_STRIP:
		l = m->left ? ws_run(s, len, 1) : 0;
		r = m->right && l < len ? ws_run(s + l, len - l, 0) : 0;
		return tbuf_put(out, s + l, len - l - r);
	default:
		return unicode_nf(m->kind, s, len, out);
	}
}

int norm_apply(const struct tok *t, const char *s, size_t len, struct tbuf *out)
{
	struct tbuf tmp[2] = { { 0 }, { 0 } };
	int rc = 0, cur = 0;

	out->len = 0;
	if (!t->n_norms)
		return tbuf_put(out, s, len);
	for (int i = 0; i < t->n_norms && !rc; i++) {
		struct tbuf *dst = i == t->n_norms - 1 ? out : &tmp[cur];

		dst->len = 0;
		rc = norm_one(&t->norms[i], s, len, dst);
		if (!rc && !dst->p)
			rc = tbuf_put(dst, "", 0);
		s = dst->p;
		len = dst->len;
		cur ^= 1;
	}
	tbuf_free(&tmp[0]);
	tbuf_free(&tmp[1]);
	return rc;
}

/* ---- added tokens ---- */

struct sort_ctx {
	const struct tok *t;
	int normalized;
};

static const char *pat(const struct added *a, int normalized, size_t *len)
{
	*len = normalized ? a->norm_len : a->len;
	return normalized ? a->norm_s : a->s;
}

static int by_first_then_longest(const void *x, const void *y, void *arg)
{
	const struct sort_ctx *c = arg;
	size_t lx, ly;
	const char *px = pat(&c->t->added[*(const int32_t *)x], c->normalized, &lx);
	const char *py = pat(&c->t->added[*(const int32_t *)y], c->normalized, &ly);

	if ((unsigned char)px[0] != (unsigned char)py[0])
		return (unsigned char)px[0] < (unsigned char)py[0] ? -1 : 1;
	return lx != ly ? (lx > ly ? -1 : 1) : (*(const int32_t *)x - *(const int32_t *)y);
}

int matcher_build(struct tok *t, struct matcher *m, int normalized)
{
	struct sort_ctx ctx = { t, normalized };
	size_t k = 0, len;

	m->idx = calloc(t->n_added + 1, sizeof(*m->idx));
	if (!m->idx)
		return -ENOMEM;
	for (size_t i = 0; i < t->n_added; i++)
		if (t->added[i].normalized == normalized && (pat(&t->added[i], normalized, &len), len))
			m->idx[k++] = (int32_t)i;
	m->n = k;
	qsort_r(m->idx, k, sizeof(*m->idx), by_first_then_longest, &ctx);
	for (int b = 0, j = 0; b <= 256; b++) {
		while ((size_t)j < k && b < 256 &&
		       (unsigned char)pat(&t->added[m->idx[j]], normalized, &len)[0] < b)
			j++;
		m->first[b] = b == 256 ? (uint32_t)k : (uint32_t)j;
	}
	for (size_t i = 0; i < t->n_added; i++) {
		static const char word[] = "[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]";
		char e[128];

		if (!t->added[i].single_word || t->rx_word)
			continue;
		t->rx_word = rx_compile(word, sizeof(word) - 1, 0, e, sizeof(e));
		if (!t->rx_word)
			return -EINVAL;
	}
	return 0;
}

/* Leftmost-longest match at or after pos, like aho-corasick's. */
static int find_added(const struct tok *t, const struct matcher *m, int normalized,
		      const char *s, size_t len, size_t pos, size_t *ms, size_t *me, int32_t *ai)
{
	for (size_t i = pos; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		for (uint32_t j = m->first[c]; j < m->first[c + 1]; j++) {
			size_t pl;
			const char *p = pat(&t->added[m->idx[j]], normalized, &pl);

			if (pl <= len - i && !memcmp(s + i, p, pl)) {
				*ms = i;
				*me = i + pl;
				*ai = m->idx[j];
				return 1;
			}
		}
	}
	return 0;
}

/* Whether the character at s[i] is a word character (Rust regex's \w). */
static int word_at(const struct tok *t, const char *s, size_t len, size_t i)
{
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->rx_word, NULL);
	int rc;

	if (!md)
		return 0;
	rc = pcre2_match(t->rx_word, (PCRE2_SPTR)s, len, i, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
			 md, NULL);
	pcre2_match_data_free(md);
	return rc > 0;
}

/* single_word: no word character right before or after the match. */
static int single_word_ok(const struct tok *t, const char *s, size_t len, size_t ms, size_t me)
{
	return (!ms || !word_at(t, s, len, back_char(s, ms))) && (me == len || !word_at(t, s, len, me));
}

int added_split(const struct tok *t, const struct matcher *m, int normalized,
		const struct piece *in, struct pieces *out)
{
	size_t pos = 0, start_off = 0, ms, me;
	int32_t ai;

	while (m->n && find_added(t, m, normalized, in->s, in->len, pos, &ms, &me, &ai)) {
		const struct added *a = &t->added[ai];

		pos = me;
		if (ms < start_off)
			continue;
		if (a->single_word && !single_word_ok(t, in->s, in->len, ms, me))
			continue;
		if (a->lstrip) {
			size_t ns = ms - ws_run(in->s, ms, 0);

			ms = ns > start_off ? ns : start_off;
		}
		if (a->rstrip)
			me += ws_run(in->s + me, in->len - me, 1);
		if (start_off < ms &&
		    pieces_push(out, in->s + start_off, ms - start_off, -1, in->at_start && !start_off))
			return -ENOMEM;
		if (pieces_push(out, in->s + ms, me - ms, a->id, 0))
			return -ENOMEM;
		start_off = me;
		pos = me > pos ? me : pos;
	}
	if (start_off < in->len &&
	    pieces_push(out, in->s + start_off, in->len - start_off, -1, in->at_start && !start_off))
		return -ENOMEM;
	return 0;
}
