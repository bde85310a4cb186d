/* tok_encode: the HF pipeline.  Added tokens are cut out of the raw text,
 * the rest is normalized (and searched for normalized added tokens),
 * pre-tokenized into words, and each word goes through BPE. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* Raw added tokens out; normalize the text in between; normalized added
 * tokens out of that. */
static int extract_and_normalize(const struct tok *t, const char *s, size_t len,
				 struct pieces *out, struct arena *mem)
{
	struct piece whole = { s, len, -1, 1 };
	struct pieces raw = { 0 };
	struct tbuf nb = { 0 };
	int rc = 0;

	if (len && (rc = added_split(t, &t->m_raw, 0, &whole, &raw)))
		goto out;
	for (size_t i = 0; i < raw.n && !rc; i++) {
		struct piece p = raw.v[i];

		if (p.id >= 0 || !t->n_norms) {
			rc = p.id >= 0 || !t->m_norm.n ? pieces_push(out, p.s, p.len, p.id, p.at_start)
						       : added_split(t, &t->m_norm, 1, &p, out);
			continue;
		}
		if ((rc = norm_apply(t, p.s, p.len, &nb)))
			break;
		if (!nb.len)
			continue;
		if (!(p.s = arena_strndup(mem, nb.p, nb.len))) {
			rc = -ENOMEM;
			break;
		}
		p.len = nb.len;
		rc = added_split(t, &t->m_norm, 1, &p, out);
	}
out:
	pieces_free(&raw);
	tbuf_free(&nb);
	return rc;
}

static int post_process(const struct tok *t, struct tbuf *ids, int add_special)
{
	struct tbuf out = { 0 };

	if (!add_special || !t->tpl)
		return 0;
	for (size_t i = 0; i < t->n_tpl; i++) {
		int rc = t->tpl[i] == -2 ? tbuf_put(&out, ids->p, ids->len)
					 : tbuf_put(&out, &t->tpl[i], sizeof(int32_t));

		if (rc) {
			tbuf_free(&out);
			return rc;
		}
	}
	tbuf_free(ids);
	*ids = out;
	return 0;
}

int tok_encode(const struct tok *t, const char *text, size_t len, int add_special,
	       int32_t **ids, size_t *n)
{
	struct tbuf clean = { 0 }, out = { 0 };
	struct pieces p = { 0 };
	struct bpe_scratch sc = { 0 };
	struct arena mem = { 0 };
	int rc;

	*ids = NULL;
	*n = 0;
	if ((rc = utf8_lossy(text ? text : "", text ? len : 0, &clean)) ||
	    (rc = extract_and_normalize(t, clean.p, clean.len, &p, &mem)) ||
	    (rc = pretok_apply(t, &p, &mem)))
		goto fail;
	for (size_t i = 0; i < p.n && !rc; i++)
		rc = p.v[i].id >= 0 ? tbuf_put(&out, &p.v[i].id, sizeof(int32_t))
				    : bpe_word(&t->bpe, p.v[i].s, p.v[i].len, &sc, &out);
	if (rc || (rc = post_process(t, &out, add_special)))
		goto fail;
	*ids = (int32_t *)out.p;
	*n = out.len / sizeof(int32_t);
	out.p = NULL;
fail:
	tbuf_free(&out);
	tbuf_free(&clean);
	pieces_free(&p);
	bpe_scratch_free(&sc);
	arena_free(&mem);
	return rc;
}
