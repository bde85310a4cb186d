/* Routing traces: the binary writer and reader, format detection, and the
 * in-memory form.  The JSONL reader is in trace_jsonl.c. */
#include "loader/errfmt.h"
#include "predictor/trace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES 32
#define RECORD_FIXED 22            /* batch u64, seq u32, pos u32, token i32, layer u16 */

struct pred_trace_writer {
	FILE *f;
	int n_layers, n_experts, top_k;
	int error;                 /* first write error */
	unsigned char *rec;        /* one encoded record */
};

static void put16(unsigned char *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void put32(unsigned char *p, uint32_t v) { put16(p, v); put16(p + 2, v >> 16); }
static void put64(unsigned char *p, uint64_t v) { put32(p, v); put32(p + 4, v >> 32); }
static uint16_t get16(const unsigned char *p) { return p[0] | (uint16_t)p[1] << 8; }
static uint32_t get32(const unsigned char *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const unsigned char *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static size_t record_bytes(int top_k) { return RECORD_FIXED + 2 * (size_t)top_k; }

static int valid_shape(int n_layers, int n_experts, int top_k)
{
	return n_layers >= 1 && n_layers <= 65535 && n_experts >= 1 &&
	       n_experts <= PRED_TRACE_MAX_EXPERTS && top_k >= 1 && top_k <= n_experts;
}

int pred_trace_writer_open(const char *path, int n_layers, int n_experts, int top_k,
			   struct pred_trace_writer **out)
{
	unsigned char h[HEADER_BYTES] = {0};
	struct pred_trace_writer *w;

	if (!valid_shape(n_layers, n_experts, top_k))
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->rec = malloc(record_bytes(top_k));
	w->f = fopen(path, "wb");
	if (!w->rec || !w->f) {
		int rv = w->rec ? -errno : -ENOMEM;

		free(w->rec);
		free(w);
		return rv;
	}
	w->n_layers = n_layers;
	w->n_experts = n_experts;
	w->top_k = top_k;
	memcpy(h, PRED_TRACE_MAGIC, 8);
	put32(h + 8, PRED_TRACE_VERSION);
	put32(h + 12, n_layers);
	put32(h + 16, n_experts);
	put32(h + 20, top_k);
	put32(h + 24, record_bytes(top_k));
	/* h + 28: flags, 0 */
	if (fwrite(h, sizeof(h), 1, w->f) != 1)
		w->error = -EIO;
	*out = w;
	return 0;
}

int pred_trace_write(struct pred_trace_writer *w, uint64_t batch, uint32_t seq, int layer,
		     int pos, int token, const int *experts, int k)
{
	unsigned char *p = w->rec;

	if (layer < 0 || layer >= w->n_layers || k != w->top_k || pos < 0)
		return -EINVAL;
	for (int j = 0; j < k; j++)
		if (experts[j] < 0 || experts[j] >= w->n_experts)
			return -EINVAL;
	if (w->error)
		return w->error;
	put64(p, batch);
	put32(p + 8, seq);
	put32(p + 12, (uint32_t)pos);
	put32(p + 16, (uint32_t)(int32_t)token);
	put16(p + 20, layer);
	for (int j = 0; j < k; j++)
		put16(p + RECORD_FIXED + 2 * j, experts[j]);
	if (fwrite(p, record_bytes(k), 1, w->f) != 1)
		w->error = -EIO;
	return w->error;
}

int pred_trace_writer_close(struct pred_trace_writer *w)
{
	int rv;

	if (!w)
		return 0;
	rv = w->error;
	if (fclose(w->f) != 0 && !rv)
		rv = -EIO;
	free(w->rec);
	free(w);
	return rv;
}

/* ---- in-memory form ---- */

static int trace_alloc(struct pred_trace *t, size_t cap)
{
	size_t per = (size_t)t->n_layers * t->top_k;
	struct pred_trace_tok *toks = realloc(t->toks, (cap ? cap : 1) * sizeof(*toks));
	int *ex;

	if (!toks)
		return -ENOMEM;
	t->toks = toks;
	ex = realloc(t->experts, (cap ? cap : 1) * per * sizeof(*ex));
	if (!ex)
		return -ENOMEM;
	t->experts = ex;
	return 0;
}

static struct pred_trace *trace_shell(int n_layers, int n_experts, int top_k)
{
	struct pred_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->n_layers = n_layers;
	t->n_experts = n_experts;
	t->top_k = top_k;
	t->layer_ids = malloc(n_layers * sizeof(int));
	if (!t->layer_ids) {
		free(t);
		return NULL;
	}
	for (int l = 0; l < n_layers; l++)
		t->layer_ids[l] = l;
	return t;
}

void pred_trace_free(struct pred_trace *t)
{
	if (!t)
		return;
	free(t->toks);
	free(t->experts);
	free(t->layer_ids);
	free(t);
}

int pred_trace_new(int n_layers, int n_experts, int top_k, size_t n_tokens,
		   struct pred_trace **out)
{
	struct pred_trace *t;

	if (!valid_shape(n_layers, n_experts, top_k))
		return -EINVAL;
	t = trace_shell(n_layers, n_experts, top_k);
	if (!t || trace_alloc(t, n_tokens) < 0) {
		pred_trace_free(t);
		return -ENOMEM;
	}
	t->n_tokens = n_tokens;
	t->format = PRED_TRACE_MEMORY;
	memset(t->experts, 0, n_tokens * n_layers * top_k * sizeof(int));
	for (size_t i = 0; i < n_tokens; i++)
		t->toks[i] = (struct pred_trace_tok){ i, 0, (int32_t)i, -1, (int64_t)i - 1 };
	*out = t;
	return 0;
}

/* ---- open-addressing map (batch, seq, pos) -> token index ---- */

struct slot {
	uint64_t batch;
	uint32_t seq;
	int32_t pos;
	int64_t idx;               /* -1: empty */
};

struct map {
	struct slot *s;
	size_t cap, used;          /* cap a power of two */
};

static size_t slot_hash(uint64_t batch, uint32_t seq, int32_t pos)
{
	uint64_t h = batch * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seq << 32 | (uint32_t)pos);

	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ (h >> 29);
}

static struct slot *map_find(struct map *m, uint64_t batch, uint32_t seq, int32_t pos)
{
	size_t i = slot_hash(batch, seq, pos) & (m->cap - 1);

	for (;; i = (i + 1) & (m->cap - 1)) {
		struct slot *s = &m->s[i];

		if (s->idx < 0 || (s->batch == batch && s->seq == seq && s->pos == pos))
			return s;
	}
}

static int map_grow(struct map *m)
{
	struct map n = { .cap = m->cap ? m->cap * 2 : 1024 };

	n.s = malloc(n.cap * sizeof(*n.s));
	if (!n.s)
		return -ENOMEM;
	for (size_t i = 0; i < n.cap; i++)
		n.s[i].idx = -1;
	for (size_t i = 0; i < m->cap; i++)
		if (m->s[i].idx >= 0) {
			*map_find(&n, m->s[i].batch, m->s[i].seq, m->s[i].pos) = m->s[i];
			n.used++;
		}
	free(m->s);
	*m = n;
	return 0;
}

/* The slot for the key, inserted (idx -1 -> caller fills) when absent. */
static struct slot *map_upsert(struct map *m, uint64_t batch, uint32_t seq, int32_t pos)
{
	struct slot *s;

	if ((m->used + 1) * 2 > m->cap && map_grow(m) < 0)
		return NULL;
	s = map_find(m, batch, seq, pos);
	if (s->idx < 0) {
		*s = (struct slot){ batch, seq, pos, -1 };
		m->used++;
	}
	return s;
}

void pred_trace_link(struct pred_trace *t)
{
	struct map m = {0};

	for (size_t i = 0; i < t->n_tokens; i++) {
		struct slot *s = map_upsert(&m, 0, t->toks[i].seq, 0);

		if (!s) {                  /* out of memory: fall back to trace order */
			t->toks[i].prev = (int64_t)i - 1;
			continue;
		}
		t->toks[i].prev = s->idx;
		s->idx = (int64_t)i;
	}
	free(m.s);
}

/* ---- binary reader ---- */

static int read_header(FILE *f, const char *path, struct pred_trace **out, char *err, size_t n)
{
	unsigned char h[HEADER_BYTES];
	uint32_t ver, nl, ne, k, rb;

	if (fread(h, sizeof(h), 1, f) != 1) {
		ld_errf(err, n, "%s: truncated header (%d bytes expected)", path, HEADER_BYTES);
		return -EINVAL;
	}
	ver = get32(h + 8);
	nl = get32(h + 12);
	ne = get32(h + 16);
	k = get32(h + 20);
	rb = get32(h + 24);
	if (ver != PRED_TRACE_VERSION) {
		ld_errf(err, n, "%s: version %u, this build reads %d", path, ver, PRED_TRACE_VERSION);
		return -EINVAL;
	}
	if (nl > 65535 || ne > 65535 || k > ne || !valid_shape(nl, ne, k) ||
	    rb != record_bytes(k)) {
		ld_errf(err, n, "%s: bad header: layers %u experts %u top_k %u record_bytes %u",
		        path, nl, ne, k, rb);
		return -EINVAL;
	}
	*out = trace_shell(nl, ne, k);
	return *out ? 0 : -ENOMEM;
}

/* Stores one decoded record; grows the trace as tokens appear. */
static int add_record(struct pred_trace *t, struct map *m, size_t *cap, const unsigned char *r,
		      size_t recno, const char *path, char *err, size_t n)
{
	size_t per = (size_t)t->n_layers * t->top_k;
	int layer = get16(r + 20), *dst;
	struct slot *s;

	if (layer >= t->n_layers) {
		ld_errf(err, n, "%s: record %zu: layer %d >= %d", path, recno, layer, t->n_layers);
		return -EINVAL;
	}
	s = map_upsert(m, get64(r), get32(r + 8), (int32_t)get32(r + 12));
	if (!s)
		return -ENOMEM;
	if (s->idx < 0) {
		if (t->n_tokens == *cap) {
			*cap = *cap ? *cap * 2 : 256;
			if (trace_alloc(t, *cap) < 0)
				return -ENOMEM;
		}
		s->idx = (int64_t)t->n_tokens++;
		t->toks[s->idx] = (struct pred_trace_tok){ s->batch, s->seq, s->pos,
							   (int32_t)get32(r + 16), -1 };
		for (size_t j = 0; j < per; j++)
			t->experts[s->idx * per + j] = -1;
	}
	dst = t->experts + s->idx * per + (size_t)layer * t->top_k;
	if (dst[0] >= 0) {
		ld_errf(err, n, "%s: record %zu: layer %d of batch %llu seq %u pos %d repeated", path,
		        recno, layer, (unsigned long long)s->batch, s->seq, s->pos);
		return -EINVAL;
	}
	for (int j = 0; j < t->top_k; j++) {
		int e = get16(r + RECORD_FIXED + 2 * j);

		for (int i = 0; i < j; i++)
			if (dst[i] == e) {
				ld_errf(err, n, "%s: record %zu: expert %d listed twice", path, recno, e);
				return -EINVAL;
			}
		if (e >= t->n_experts) {
			ld_errf(err, n, "%s: record %zu: expert %d >= %d", path, recno, e, t->n_experts);
			return -EINVAL;
		}
		dst[j] = e;
	}
	return 0;
}

/* Drops tokens that miss a layer (a trace cut short mid-batch). */
static void drop_incomplete(struct pred_trace *t)
{
	size_t per = (size_t)t->n_layers * t->top_k, o = 0;

	for (size_t i = 0; i < t->n_tokens; i++) {
		int ok = 1;

		for (int l = 0; l < t->n_layers; l++)
			ok &= t->experts[i * per + (size_t)l * t->top_k] >= 0;
		if (!ok) {
			t->n_incomplete++;
			continue;
		}
		if (o != i) {
			t->toks[o] = t->toks[i];
			memmove(t->experts + o * per, t->experts + i * per, per * sizeof(int));
		}
		o++;
	}
	t->n_tokens = o;
}

static int load_binary(FILE *f, const char *path, struct pred_trace **out, char *err, size_t n)
{
	struct pred_trace *t = NULL;
	struct map m = {0};
	unsigned char *r = NULL;
	size_t cap = 0, rb, recno = 0, got;
	int rv;

	if ((rv = read_header(f, path, &t, err, n)) < 0)
		return rv;
	rb = record_bytes(t->top_k);
	rv = -ENOMEM;
	if (!(r = malloc(rb)))
		goto fail;
	while ((got = fread(r, 1, rb, f)) == rb) {
		if ((rv = add_record(t, &m, &cap, r, recno++, path, err, n)) < 0)
			goto fail;
	}
	if (ferror(f)) {
		rv = -EIO;
		ld_errf(err, n, "%s: read error after record %zu", path, recno);
		goto fail;
	}
	/* got > 0 here: a record cut short by a crash; the tokens it would
	 * have completed are dropped below like any incomplete token. */
	drop_incomplete(t);
	t->format = PRED_TRACE_BINARY;
	pred_trace_link(t);
	free(m.s);
	free(r);
	*out = t;
	return 0;
fail:
	if (rv == -ENOMEM)
		ld_errf(err, n, "%s: out of memory", path);
	free(m.s);
	free(r);
	pred_trace_free(t);
	return rv;
}

int pred_trace_load(const char *path, struct pred_trace **out, char *err, size_t errlen)
{
	char head[8];
	size_t got;
	FILE *f;
	int rv, c;

	*out = NULL;
	f = fopen(path, "rb");
	if (!f) {
		rv = -errno;
		ld_errf(err, errlen, "%s: %s", path, strerror(-rv));
		return rv;
	}
	got = fread(head, 1, sizeof(head), f);
	if (got == sizeof(head) && !memcmp(head, PRED_TRACE_MAGIC, 8)) {
		rewind(f);
		rv = load_binary(f, path, out, err, errlen);
		fclose(f);
		return rv;
	}
	rewind(f);
	while ((c = fgetc(f)) == ' ' || c == '\t' || c == '\n' || c == '\r')
		;
	if (c != '[') {
		ld_errf(err, errlen, "%s: neither a moed trace (magic %s) nor JSONL", path,
		        PRED_TRACE_MAGIC);
		fclose(f);
		return -EINVAL;
	}
	rewind(f);
	rv = pred_trace_load_jsonl(f, path, out, err, errlen);
	fclose(f);
	return rv;
}
