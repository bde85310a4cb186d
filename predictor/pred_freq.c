/* freq: P(expert | layer, token id), learned by counting.
 *
 * Bounded memory: a 4-way set-associative table of (token, layer) entries;
 * a full set gives up its least-counted entry.  Each entry keeps at most C
 * (expert, count) items, a full entry replaces its smallest item the
 * space-saving way (new count = smallest + 1), and counts halve when one
 * saturates.  The score blends the entry with the popularity prior, weighted
 * as one pseudo-token, so a token seen once does not override the prior;
 * tokens never seen and token id -1 get the prior alone. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "predictor/pred_impl.h"

#define WAYS 4
#define DEFAULT_ENTRIES 65536
#define MAX_ITEMS 64
#define COUNT_MAX 65535

struct freq {
	size_t entries;            /* power of two, >= WAYS */
	int C;                     /* items per entry */
	uint64_t *key;             /* [entries]; 0 = empty */
	uint32_t *total;           /* [entries]: sum of the item counts */
	uint16_t *n;               /* [entries]: items used */
	uint16_t *ex, *cnt;        /* [entries][C] */
};

static uint64_t fkey(int token, int layer)
{
	return 1ull << 63 | (uint64_t)(uint32_t)token << 16 | (uint32_t)layer;
}

static size_t set_of(const struct freq *f, uint64_t key)
{
	uint64_t h = key * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 32) & (f->entries / WAYS - 1);
}

static int freq_init(struct pred *p)
{
	struct freq *f = calloc(1, sizeof(*f));
	size_t want = p->o.freq_entries ? p->o.freq_entries : DEFAULT_ENTRIES;

	if (!f)
		return -ENOMEM;
	p->impl = f;
	if (want > (1u << 26))
		return -EINVAL;
	for (f->entries = WAYS; f->entries < want; f->entries *= 2)
		;
	p->o.freq_entries = f->entries;
	f->C = 4 * p->k;
	if (f->C > p->E)
		f->C = p->E;
	if (f->C > MAX_ITEMS)
		f->C = MAX_ITEMS;
	f->key = calloc(f->entries, sizeof(*f->key));
	f->total = calloc(f->entries, sizeof(*f->total));
	f->n = calloc(f->entries, sizeof(*f->n));
	f->ex = calloc(f->entries * f->C, sizeof(*f->ex));
	f->cnt = calloc(f->entries * f->C, sizeof(*f->cnt));
	return f->key && f->total && f->n && f->ex && f->cnt ? 0 : -ENOMEM;
}

static void freq_fini(struct pred *p)
{
	struct freq *f = p->impl;

	if (!f)
		return;
	free(f->key);
	free(f->total);
	free(f->n);
	free(f->ex);
	free(f->cnt);
	free(f);
}

/* The entry for key, or -1; with create, claims an empty or the
 * least-counted way of its set. */
static ssize_t lookup(struct freq *f, uint64_t key, int create)
{
	size_t base = set_of(f, key) * WAYS, victim = base;

	for (size_t w = base; w < base + WAYS; w++) {
		if (f->key[w] == key)
			return (ssize_t)w;
		if (f->key[victim] && (!f->key[w] || f->total[w] < f->total[victim]))
			victim = w;
	}
	if (!create)
		return -1;
	f->key[victim] = key;
	f->total[victim] = 0;
	f->n[victim] = 0;
	return (ssize_t)victim;
}

static void add(struct freq *f, size_t i, int e)
{
	uint16_t *ex = f->ex + i * f->C, *cnt = f->cnt + i * f->C;
	int j, min = 0;

	for (j = 0; j < f->n[i] && ex[j] != e; j++)
		if (cnt[j] < cnt[min])
			min = j;
	if (j == f->n[i]) {
		if (f->n[i] < f->C) {
			f->n[i]++;
			cnt[j] = 0;
		} else {               /* space-saving: inherit the smallest count */
			j = min;
		}
		ex[j] = e;
	}
	cnt[j]++;
	f->total[i]++;
	if (cnt[j] < COUNT_MAX)
		return;
	f->total[i] = 0;
	for (int m = 0; m < f->n[i]; m++)
		f->total[i] += cnt[m] /= 2;
}

static void freq_observe(struct pred *p, const struct pred_tok *t)
{
	struct freq *f = p->impl;

	if (t->token < 0)
		return;
	for (int l = 0; l < p->L; l++) {
		const int *ex = pred_layer(t->cur, p->k, l);
		ssize_t i;

		if (!ex)
			continue;
		i = lookup(f, fkey(t->token, l), 1);
		for (int j = 0; j < p->k; j++)
			add(f, (size_t)i, ex[j]);
	}
}

static void freq_score(struct pred *p, const struct pred_tok *t, int layer, double *s)
{
	struct freq *f = p->impl;
	const uint32_t *pop = p->pop + (size_t)layer * p->E;
	double ptot = (double)p->pop_total[layer], w;
	ssize_t i;

	if (t->token < 0 || (i = lookup(f, fkey(t->token, layer), 0)) < 0 || !f->total[i])
		return;                /* the common code adds the prior */
	/* (counts + k * prior) / (total + k): the prior as one pseudo-token */
	w = 1.0 / (f->total[i] + p->k);
	for (int e = 0; ptot > 0 && e < p->E; e++)
		s[e] = p->k * pop[e] / ptot * w;
	for (int j = 0; j < f->n[i]; j++)
		s[f->ex[i * f->C + j]] += f->cnt[i * f->C + j] * w;
}

static void freq_save(const struct pred *p, struct pbuf *b)
{
	const struct freq *f = p->impl;
	uint64_t used = 0;

	for (size_t i = 0; i < f->entries; i++)
		used += f->key[i] != 0;
	pbuf_u64(b, used);
	for (size_t i = 0; i < f->entries; i++) {
		if (!f->key[i])
			continue;
		pbuf_u32(b, (uint32_t)i);
		pbuf_u64(b, f->key[i]);
		pbuf_u32(b, f->total[i]);
		pbuf_u16(b, f->n[i]);
		for (int j = 0; j < f->n[i]; j++) {
			pbuf_u16(b, f->ex[i * f->C + j]);
			pbuf_u16(b, f->cnt[i * f->C + j]);
		}
	}
}

static int freq_load(struct pred *p, struct rbuf *r)
{
	struct freq *f = p->impl;
	uint64_t used = rbuf_u64(r);

	if (used > f->entries)
		return -EINVAL;
	for (uint64_t u = 0; u < used && !r->bad; u++) {
		uint32_t i = rbuf_u32(r);
		uint64_t key = rbuf_u64(r);

		if (i >= f->entries || f->key[i] || !(key >> 63) ||
		    (key & 0xffff) >= (uint64_t)p->L || i / WAYS != set_of(f, key))
			return -EINVAL;
		f->key[i] = key;
		f->total[i] = rbuf_u32(r);
		f->n[i] = rbuf_u16(r);
		if (f->n[i] > f->C)
			return -EINVAL;
		for (int j = 0; j < f->n[i]; j++) {
			f->ex[i * f->C + j] = rbuf_u16(r);
			f->cnt[i * f->C + j] = rbuf_u16(r);
			if (f->ex[i * f->C + j] >= p->E)
				return -EINVAL;
		}
	}
	return r->bad ? -EINVAL : 0;
}

static uint32_t freq_param(const struct pred *p)
{
	return (uint32_t)((const struct freq *)p->impl)->entries;
}

const struct pred_ops pred_freq_ops = {
	.name = "freq", .backoff = 1, .learns = 1, .init = freq_init, .fini = freq_fini,
	.observe = freq_observe, .score = freq_score, .save = freq_save, .load = freq_load,
	.param = freq_param,
};
