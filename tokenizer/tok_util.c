/* Containers and the regex wrapper used by the tokenizer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

int tbuf_reserve(struct tbuf *b, size_t extra)
{
	size_t cap;
	char *p;

	if (b->len + extra + 1 <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int tbuf_put(struct tbuf *b, const void *s, size_t n)
{
	if (tbuf_reserve(b, n))
		return -ENOMEM;
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

void tbuf_free(struct tbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

struct arena_blk {
	struct arena_blk *next;
	size_t used, cap;
	char data[];
};

void *arena_alloc(struct arena *a, size_t n)
{
	struct arena_blk *b = a->head;
	size_t cap;

	n = (n + 7) & ~(size_t)7;
	if (!b || b->cap - b->used < n) {
		cap = n > 65536 ? n : 65536;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->used = 0;
		b->cap = cap;
		b->next = a->head;
		a->head = b;
	}
	b->used += n;
	return b->data + b->used - n;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);

	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void arena_free(struct arena *a)
{
	struct arena_blk *b = a->head, *next;

	for (; b; b = next) {
		next = b->next;
		free(b);
	}
	a->head = NULL;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h ^ (h >> 29);
}

struct strmap_ent {
	const char *s;
	uint32_t len;
	int32_t v;
};

static int strmap_grow(struct strmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 256;
	struct strmap_ent *e = calloc(cap, sizeof(*e));

	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (!m->ents[i].s)
			continue;
		j = hash_bytes(m->ents[i].s, m->ents[i].len) & (cap - 1);
		while (e[j].s)
			j = (j + 1) & (cap - 1);
		e[j] = m->ents[i];
	}
	free(m->ents);
	m->ents = e;
	m->cap = cap;
	return 0;
}

int strmap_put(struct strmap *m, const char *s, size_t len, int32_t v)
{
	size_t j;

	if ((m->n + 1) * 2 > m->cap && strmap_grow(m))
		return -ENOMEM;
	j = hash_bytes(s, len) & (m->cap - 1);
	for (; m->ents[j].s; j = (j + 1) & (m->cap - 1)) {
		if (m->ents[j].len == len && !memcmp(m->ents[j].s, s, len)) {
			m->ents[j].v = v;
			return 0;
		}
	}
	m->ents[j].s = s;
	m->ents[j].len = (uint32_t)len;
	m->ents[j].v = v;
	m->n++;
	return 0;
}

int32_t strmap_get(const struct strmap *m, const char *s, size_t len)
{
	size_t j;

	if (!m->cap)
		return -1;
	j = hash_bytes(s, len) & (m->cap - 1);
	for (; m->ents[j].s; j = (j + 1) & (m->cap - 1))
		if (m->ents[j].len == len && !memcmp(m->ents[j].s, s, len))
			return m->ents[j].v;
	return -1;
}

int strmap_next(const struct strmap *m, size_t *i, const char **s, size_t *len, int32_t *v)
{
	for (; *i < m->cap; (*i)++) {
		if (m->ents[*i].s) {
			*s = m->ents[*i].s;
			*len = m->ents[*i].len;
			*v = m->ents[*i].v;
			(*i)++;
			return 1;
		}
	}
	return 0;
}

void strmap_free(struct strmap *m)
{
	free(m->ents);
	memset(m, 0, sizeof(*m));
}

struct pair_ent {
	uint64_t key; /* 0 = empty; ids are stored + 1 */
	int32_t rank, id;
};

static uint64_t pair_key(int32_t a, int32_t b)
{
	return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
}

static size_t pair_slot(uint64_t k, size_t cap)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return k & (cap - 1);
}

int pairmap_put(struct pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
	uint64_t k = pair_key(a, b);
	size_t j;

	if ((m->n + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 1024;
		struct pair_ent *e = calloc(cap, sizeof(*e));

		if (!e)
			return -ENOMEM;
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->ents[i].key)
				continue;
			j = pair_slot(m->ents[i].key, cap);
			while (e[j].key)
				j = (j + 1) & (cap - 1);
			e[j] = m->ents[i];
		}
		free(m->ents);
		m->ents = e;
		m->cap = cap;
	}
	j = pair_slot(k, m->cap);
	for (; m->ents[j].key; j = (j + 1) & (m->cap - 1))
		if (m->ents[j].key == k) {
			/* a repeated pair: the later line wins, as in HF's map */
			m->ents[j].rank = rank;
			m->ents[j].id = id;
			return 0;
		}
	m->ents[j].key = k;
	m->ents[j].rank = rank;
	m->ents[j].id = id;
	m->n++;
	return 0;
}

int pairmap_get(const struct pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id)
{
	uint64_t k = pair_key(a, b);
	size_t j;

	if (!m->cap)
		return 0;
	for (j = pair_slot(k, m->cap); m->ents[j].key; j = (j + 1) & (m->cap - 1)) {
		if (m->ents[j].key == k) {
			*rank = m->ents[j].rank;
			*id = m->ents[j].id;
			return 1;
		}
	}
	return 0;
}

void pairmap_free(struct pairmap *m)
{
	free(m->ents);
	memset(m, 0, sizeof(*m));
}

int pieces_push(struct pieces *p, const char *s, size_t len, int32_t id, int at_start)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct piece *v = realloc(p->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = (struct piece){ s, len, id, at_start };
	return 0;
}

void pieces_free(struct pieces *p)
{
	free(p->v);
	memset(p, 0, sizeof(*p));
}

/* What Oniguruma's Unicode classes hold, for PCRE2. */
#define ONIG_SPACE "\\t-\\r\\x{20}\\x{85}\\p{Zs}\\x{2028}\\x{2029}"
#define ONIG_WORD "\\p{L}\\p{M}\\p{N}\\p{Pc}"

static const char *rewrite_escape(char c, int in_class)
{
	switch (c) {
	case 's': return in_class ? ONIG_SPACE : "[" ONIG_SPACE "]";
	case 'S': return in_class ? NULL : "[^" ONIG_SPACE "]";
	case 'w': return in_class ? ONIG_WORD : "[" ONIG_WORD "]";
	case 'W': return in_class ? NULL : "[^" ONIG_WORD "]";
	case 'd': return "\\p{Nd}";
	case 'D': return "\\P{Nd}";
	default: return NULL;
	}
}

/* PCRE2's \s also takes U+180E and its \w misses marks: rewrite the
 * escapes so the pattern means what Oniguruma makes of it. */
static int rewrite_pattern(const char *pat, size_t len, struct tbuf *out)
{
	int in_class = 0;

	for (size_t i = 0; i < len; i++) {
		const char *rep;

		if (pat[i] == '\\' && i + 1 < len) {
			rep = rewrite_escape(pat[i + 1], in_class);
			if (rep ? tbuf_put(out, rep, strlen(rep)) : tbuf_put(out, pat + i, 2))
				return -ENOMEM;
			i++;
			continue;
		}
		if (!in_class && pat[i] == '[') {
			in_class = 1;
			if (tbuf_put(out, pat + i, 1))
				return -ENOMEM;
			/* a ']' right after '[' or '[^' is a literal */
			if (i + 1 < len && pat[i + 1] == '^' && tbuf_put(out, pat + ++i, 1))
				return -ENOMEM;
			if (i + 1 < len && pat[i + 1] == ']' && tbuf_put(out, pat + ++i, 1))
				return -ENOMEM;
			continue;
		}
		if (in_class && pat[i] == '[' && i + 1 < len && pat[i + 1] == ':') {
			const char *end = strstr(pat + i, ":]");

			if (end && (size_t)(end - pat) < len) {
				if (tbuf_put(out, pat + i, (size_t)(end - (pat + i)) + 2))
					return -ENOMEM;
				i = (size_t)(end - pat) + 1;
				continue;
			}
		}
		if (in_class && pat[i] == ']')
			in_class = 0;
		if (tbuf_put(out, pat + i, 1))
			return -ENOMEM;
	}
	return tbuf_put(out, "", 0);
}

pcre2_code *rx_compile(const char *pat, size_t len, int literal, char *err, size_t n)
{
	struct tbuf b = { 0 };
	pcre2_code *rx;
	PCRE2_SIZE off;
	int rc;
	uint32_t opt = PCRE2_UTF | PCRE2_UCP;

	if (literal) {
		opt = PCRE2_UTF | PCRE2_LITERAL;
		if (tbuf_put(&b, pat, len))
			return NULL;
	} else if (rewrite_pattern(pat, len, &b)) {
		tbuf_free(&b);
		TOK_ERR(err, n, "out of memory");
		return NULL;
	}
	rx = pcre2_compile((PCRE2_SPTR)b.p, b.len, opt, &rc, &off, NULL);
	if (!rx) {
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(rc, msg, sizeof(msg));
		TOK_ERR(err, n, "regex \"%.*s\": %s at offset %zu", (int)len, pat,
			(const char *)msg, (size_t)off);
	} else {
		pcre2_jit_compile(rx, PCRE2_JIT_COMPLETE); /* interpreter if no JIT */
	}
	tbuf_free(&b);
	return rx;
}

int rx_find(const pcre2_code *rx, const char *s, size_t len, size_t *pos,
	    size_t *prev_end, pcre2_match_data *md, size_t *ms, size_t *me)
{
	for (;;) {
		PCRE2_SIZE *ov;
		int rc;

		if (*pos > len)
			return 0;
		rc = pcre2_match(rx, (PCRE2_SPTR)s, len, *pos, PCRE2_NO_UTF_CHECK, md, NULL);
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* very long runs: interpreter */
			rc = pcre2_match(rx, (PCRE2_SPTR)s, len, *pos,
					 PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			return 0;
		if (rc < 0)
			return -EOVERFLOW;
		ov = pcre2_get_ovector_pointer(md);
		*ms = ov[0];
		*me = ov[1];
		if (*ms == *me && *prev_end == *me) {
			uint32_t cp;

			*pos = *me + (*me < len ? utf8_next(s + *me, len - *me, &cp) : 1);
			continue;
		}
		*pos = *me;
		*prev_end = *me;
		return 1;
	}
}
