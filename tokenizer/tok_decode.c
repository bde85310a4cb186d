/* Decoders (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace),
 * tok_decode and the streaming decoder. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* A list of strings in one buffer (offsets, since the buffer moves). */
struct slist {
	struct tbuf data;
	size_t *off, *len;
	size_t n, cap;
};

struct dec_scratch {
	struct slist a, b;
	struct tbuf tmp, tmp2, out, emit;
};

static int sl_push(struct slist *l, const char *s, size_t n)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		size_t *o = realloc(l->off, cap * sizeof(*o)), *m;

		if (!o)
			return -ENOMEM;
		l->off = o;
		if (!(m = realloc(l->len, cap * sizeof(*m))))
			return -ENOMEM;
		l->len = m;
		l->cap = cap;
	}
	l->off[l->n] = l->data.len;
	l->len[l->n] = n;
	l->n++;
	return tbuf_put(&l->data, s, n);
}

static const char *sl_at(const struct slist *l, size_t i)
{
	return l->data.p + l->off[i];
}

static void sl_clear(struct slist *l)
{
	l->n = 0;
	l->data.len = 0;
}

static void sl_free(struct slist *l)
{
	tbuf_free(&l->data);
	free(l->off);
	free(l->len);
	memset(l, 0, sizeof(*l));
}

void *dec_scratch_new(void)
{
	return calloc(1, sizeof(struct dec_scratch));
}

void dec_scratch_free(void *p)
{
	struct dec_scratch *s = p;

	if (!s)
		return;
	sl_free(&s->a);
	sl_free(&s->b);
	tbuf_free(&s->tmp);
	tbuf_free(&s->tmp2);
	tbuf_free(&s->out);
	tbuf_free(&s->emit);
	free(s);
}

/* All tokens back to bytes (tokens with a char outside the byte alphabet
 * stay as they are), then one lossy UTF-8 string. */
static int d_bytelevel(const struct slist *in, struct slist *out, struct tbuf *tmp,
		       struct tbuf *tmp2)
{
	tmp->len = tmp2->len = 0;
	if (tbuf_put(tmp, "", 0))
		return -ENOMEM;
	for (size_t i = 0; i < in->n; i++) {
		const char *s = sl_at(in, i);
		size_t n = in->len[i], mark = tmp->len, k;
		uint32_t cp;
		int b = 0;

		for (size_t j = 0; j < n; j += k) {
			k = utf8_next(s + j, n - j, &cp);
			if ((b = bl_cp_to_byte(cp)) < 0)
				break;
			if (tbuf_put(tmp, &(char){ (char)b }, 1))
				return -ENOMEM;
		}
		if (b < 0) {
			tmp->len = mark;
			if (tbuf_put(tmp, s, n))
				return -ENOMEM;
		}
	}
	if (utf8_lossy(tmp->p, tmp->len, tmp2))
		return -ENOMEM;
	return sl_push(out, tmp2->p, tmp2->len);
}

/* "<0xAB>" -> 0xAB as Rust's u8::from_str_radix(.., 16) reads it. */
static int byte_token(const char *s, size_t n)
{
	int v = 0;

	if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
		return -1;
	for (int i = 3; i < 5; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
			c >= 'A' && c <= 'F' ? c - 'A' + 10 : (i == 3 && c == '+') ? -2 : -1;

		if (d == -1)
			return -1;
		if (d >= 0)
			v = v * 16 + d;
	}
	return v;
}

static int flush_bytes(struct tbuf *bytes, struct slist *out)
{
	int rc = 0;

	if (!bytes->len)
		return 0;
	if (tbuf_put(bytes, "", 0))
		return -ENOMEM;
	for (size_t i = 0; i < bytes->len;) {
		size_t k = utf8_valid_len((unsigned char *)bytes->p + i, bytes->len - i);

		if (!k) { /* not UTF-8: one U+FFFD per byte, as HF does */
			for (size_t j = 0; j < bytes->len && !rc; j++)
				rc = sl_push(out, "\xEF\xBF\xBD", 3);
			bytes->len = 0;
			return rc;
		}
		i += k;
	}
	rc = sl_push(out, bytes->p, bytes->len);
	bytes->len = 0;
	return rc;
}

static int d_bytefallback(const struct slist *in, struct slist *out, struct tbuf *bytes)
{
	int rc = 0;

	bytes->len = 0;
	for (size_t i = 0; i < in->n && !rc; i++) {
		int b = byte_token(sl_at(in, i), in->len[i]);

		if (b >= 0) {
			rc = tbuf_put(bytes, &(char){ (char)b }, 1);
			continue;
		}
		if (!(rc = flush_bytes(bytes, out)))
			rc = sl_push(out, sl_at(in, i), in->len[i]);
	}
	return rc ? rc : flush_bytes(bytes, out);
}

/* Strip up to start leading and stop trailing ch characters. */
static int d_strip(const struct dec *d, const char *s, size_t n, struct slist *out)
{
	size_t a = 0, e = n, k;
	uint32_t cp;
	int i;

	for (i = 0; i < d->start && a < n; i++) {
		k = utf8_next(s + a, n - a, &cp);
		if (cp != d->ch)
			break;
		a += k;
	}
	for (i = 0; i < d->stop && e > 0; i++) {
		size_t j = e - 1;

		while (j && ((unsigned char)s[j] & 0xC0) == 0x80)
			j--;
		utf8_next(s + j, e - j, &cp);
		if (cp != d->ch)
			break;
		e = j;
	}
	return sl_push(out, s + a, e > a ? e - a : 0);
}

/* Replacement -> ' ', except that the first token loses it (unless the
 * scheme is never). */
static int d_metaspace(const struct dec *d, size_t idx, const char *s, size_t n,
		       struct tbuf *tmp, struct slist *out)
{
	size_t k;
	uint32_t cp;

	tmp->len = 0;
	for (size_t j = 0; j < n; j += k) {
		k = utf8_next(s + j, n - j, &cp);
		if (cp != d->ch) {
			if (tbuf_put(tmp, s + j, k))
				return -ENOMEM;
		} else if ((idx || d->scheme == PS_NEVER) && tbuf_put(tmp, " ", 1)) {
			return -ENOMEM;
		}
	}
	return sl_push(out, tmp->p, tmp->len);
}

static int dec_stage(const struct dec *d, const struct slist *in, struct slist *out,
		     struct dec_scratch *sc)
{
	struct tbuf *tmp = &sc->tmp;
	int rc = 0;

	sl_clear(out);
	if (tbuf_put(tmp, "", 0))
		return -ENOMEM;
	switch (d->kind) {
	case D_BYTELEVEL:
		return d_bytelevel(in, out, tmp, &sc->tmp2);
	case D_BYTEFALLBACK:
		return d_bytefallback(in, out, tmp);
	case D_FUSE:
		tmp->len = 0;
		for (size_t i = 0; i < in->n && !rc; i++)
			rc = tbuf_put(tmp, sl_at(in, i), in->len[i]);
		return rc ? rc : sl_push(out, tmp->p, tmp->len);
	default:
		break;
	}
	for (size_t i = 0; i < in->n && !rc; i++) {
		const char *s = sl_at(in, i);

		if (d->kind == D_REPLACE) {
			tmp->len = 0;
			rc = d->literal ? lit_replace(d->a, d->alen, s, in->len[i], d->b, d->blen, tmp)
					: rx_replace(d->rx, s, in->len[i], d->b, d->blen, tmp);
			if (!rc)
				rc = sl_push(out, tmp->p, tmp->len);
		} else if (d->kind == D_STRIP) {
			rc = d_strip(d, s, in->len[i], out);
		} else {
			rc = d_metaspace(d, i, s, in->len[i], tmp, out);
		}
	}
	return rc;
}

int decode_into(const struct tok *t, const int32_t *ids, size_t n, int skip_special,
		void *scratch, const char **text, size_t *len)
{
	struct dec_scratch *s = scratch;
	struct slist *cur = &s->a, *nxt = &s->b, *sw;
	int rc = 0;

	sl_clear(cur);
	for (size_t i = 0; i < n && !rc; i++) {
		int32_t id = ids[i];

		if (id < 0 || id >= t->n_ids || !t->id_s[id] || (skip_special && t->id_special[id]))
			continue; /* unknown ids are dropped, as HF does */
		rc = sl_push(cur, t->id_s[id], t->id_len[id]);
	}
	for (int i = 0; i < t->n_decs && !rc; i++) {
		rc = dec_stage(&t->decs[i], cur, nxt, s);
		sw = cur;
		cur = nxt;
		nxt = sw;
	}
	s->out.len = 0;
	for (size_t i = 0; i < cur->n && !rc; i++) {
		if (!t->has_decoder && i)
			rc = tbuf_put(&s->out, " ", 1);
		if (!rc)
			rc = tbuf_put(&s->out, sl_at(cur, i), cur->len[i]);
	}
	if (!rc)
		rc = tbuf_put(&s->out, "", 0);
	*text = s->out.p;
	*len = s->out.len;
	return rc;
}

int tok_decode(const struct tok *t, const int32_t *ids, size_t n, int skip_special,
	       char **text, size_t *len)
{
	struct dec_scratch *s = dec_scratch_new();
	const char *p;
	int rc;

	*text = NULL;
	*len = 0;
	if (!s)
		return -ENOMEM;
	rc = decode_into(t, ids, n, skip_special, s, &p, len);
	if (!rc) {
		*text = s->out.p; /* hand the buffer over */
		s->out.p = NULL;
	}
	dec_scratch_free(s);
	return rc;
}
