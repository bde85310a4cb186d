/* Streaming decode with HF DecodeStream's rule: decode the ids since the
 * last chunk; emit only when the text grew and does not end in U+FFFD (an
 * unfinished character), then keep just the ids of the last chunk so that
 * decoders that look at the first token (Strip, Metaspace) stay right. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

void tok_stream_init(struct tok_stream *st, int skip_special)
{
	memset(st, 0, sizeof(*st));
	st->skip_special = skip_special;
}

void tok_stream_reset(struct tok_stream *st)
{
	st->n_ids = 0;
	st->prefix_index = 0;
	st->prefix_len = 0;
}

void tok_stream_free(struct tok_stream *st)
{
	free(st->ids);
	free(st->prefix);
	free(st->chunk);
	dec_scratch_free(st->scratch);
	tok_stream_init(st, st->skip_special);
}

static int put(char **buf, size_t *cap, const char *s, size_t n)
{
	if (n + 1 > *cap) {
		char *p = realloc(*buf, n + 1);

		if (!p)
			return -ENOMEM;
		*buf = p;
		*cap = n + 1;
	}
	memcpy(*buf, s, n);
	(*buf)[n] = '\0';
	return 0;
}

static int grow_ids(struct tok_stream *st)
{
	size_t cap = st->cap_ids ? st->cap_ids * 2 : 16;
	int32_t *v;

	if (st->n_ids < st->cap_ids)
		return 0;
	if (!(v = realloc(st->ids, cap * sizeof(*v))))
		return -ENOMEM;
	st->ids = v;
	st->cap_ids = cap;
	return 0;
}

/* Where the new text starts.  Normally right after the prefix.  When
 * byte-fallback tokens fold the emitted prefix into U+FFFDs (HF's
 * DecodeStream raises InvalidPrefix there), skip as many characters as
 * the prefix had instead, so the stream goes on with whole characters. */
static size_t new_text_at(const struct tok_stream *st, const char *s, size_t n)
{
	size_t chars = 0, i = 0;

	if (!st->prefix_len || !memcmp(s, st->prefix, st->prefix_len))
		return st->prefix_len;
	for (size_t k = 0; k < st->prefix_len; k++)
		chars += ((unsigned char)st->prefix[k] & 0xC0) != 0x80;
	for (; i < n && chars; chars--)
		do
			i++;
		while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80);
	return i;
}

int tok_stream_push(const struct tok *t, struct tok_stream *st, int32_t id,
		    const char **piece, size_t *len)
{
	size_t n, keep, at;
	const char *s;
	int rc;

	*piece = "";
	*len = 0;
	if ((!st->scratch && !(st->scratch = dec_scratch_new())) || grow_ids(st))
		return -ENOMEM;
	st->ids[st->n_ids++] = id;
	if ((rc = decode_into(t, st->ids, st->n_ids, st->skip_special, st->scratch, &s, &n)))
		return rc;
	if (n <= st->prefix_len || (n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3)))
		return 0; /* nothing new yet, or a character still unfinished */
	at = new_text_at(st, s, n);
	if (put(&st->chunk, &st->chunk_cap, s + at, n - at))
		return -ENOMEM;
	*piece = st->chunk;
	*len = n - at;
	/* keep the ids of this chunk; they decode to the next prefix */
	keep = st->n_ids - st->prefix_index;
	memmove(st->ids, st->ids + st->prefix_index, keep * sizeof(*st->ids));
	st->n_ids = keep;
	if ((rc = decode_into(t, st->ids, st->n_ids, st->skip_special, st->scratch, &s, &n)) ||
	    (rc = put(&st->prefix, &st->prefix_cap, s, n)))
		return rc;
	st->prefix_len = n;
	st->prefix_index = keep;
	return 0;
}

int tok_stream_flush(const struct tok *t, struct tok_stream *st, const char **piece, size_t *len)
{
	const char *s;
	size_t n;
	int rc;

	*piece = "";
	*len = 0;
	if (!st->n_ids)
		return 0;
	if ((!st->scratch && !(st->scratch = dec_scratch_new())))
		return -ENOMEM;
	if ((rc = decode_into(t, st->ids, st->n_ids, st->skip_special, st->scratch, &s, &n)))
		return rc;
	if (n > st->prefix_len) {
		size_t at = new_text_at(st, s, n);

		if (put(&st->chunk, &st->chunk_cap, s + at, n - at))
			return -ENOMEM;
		*piece = st->chunk;
		*len = n - at;
	}
	tok_stream_reset(st);
	return 0;
}
