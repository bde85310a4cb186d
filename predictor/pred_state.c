/* Learned predictor state on disk.  Layout (little-endian):
 *   "MOEDPRED" u32 version u32 kind u32 n_layers u32 n_experts u32 top_k
 *   u32 param (freq: table entries, cepr: m, else 0) u64 payload_bytes
 *   payload: popularity counts u32 [L][E], then the kind's own tables
 *   u64 FNV-1a of every byte before it
 * load checks every field against the open predictor and the checksum, and
 * parses into a scratch predictor, so a bad file leaves p unchanged. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/errfmt.h"
#include "predictor/pred_impl.h"

#define STATE_MAGIC "MOEDPRED"
#define STATE_VERSION 1
#define HEADER_BYTES 40
#define MAX_STATE_BYTES (4ull << 30)

static void pbuf_put(struct pbuf *b, uint64_t v, int bytes)
{
	if (b->n + bytes > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		unsigned char *q = b->oom ? NULL : realloc(b->p, cap);

		if (!q) {
			b->oom = 1;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	for (int i = 0; i < bytes; i++)
		b->p[b->n++] = (unsigned char)(v >> (8 * i));
}

void pbuf_u16(struct pbuf *b, uint16_t v) { pbuf_put(b, v, 2); }
void pbuf_u32(struct pbuf *b, uint32_t v) { pbuf_put(b, v, 4); }
void pbuf_u64(struct pbuf *b, uint64_t v) { pbuf_put(b, v, 8); }

static uint64_t rbuf_get(struct rbuf *r, int bytes)
{
	uint64_t v = 0;

	if (r->bad || r->n - r->off < (size_t)bytes) {
		r->bad = 1;
		return 0;
	}
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)r->p[r->off++] << (8 * i);
	return v;
}

uint16_t rbuf_u16(struct rbuf *r) { return (uint16_t)rbuf_get(r, 2); }
uint32_t rbuf_u32(struct rbuf *r) { return (uint32_t)rbuf_get(r, 4); }
uint64_t rbuf_u64(struct rbuf *r) { return rbuf_get(r, 8); }

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static uint32_t param_of(const struct pred *p)
{
	return p->ops->param ? p->ops->param(p) : 0;
}

static int write_file(const char *path, const struct pbuf *b, char *err, size_t n)
{
	size_t len = strlen(path) + 5;
	char *tmp = malloc(len);
	FILE *f;
	int rv = 0;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, len, "%s.tmp", path);
	f = fopen(tmp, "wb");
	if (!f) {
		rv = -errno;
		ld_errf(err, n, "%s: %s", tmp, strerror(-rv));
		free(tmp);
		return rv;
	}
	if (fwrite(b->p, 1, b->n, f) != b->n)
		rv = -EIO;
	if (fclose(f) != 0 && !rv)
		rv = -EIO;
	if (!rv && rename(tmp, path) != 0)
		rv = -errno;
	if (rv) {
		ld_errf(err, n, "%s: write failed: %s", path, strerror(-rv));
		remove(tmp);
	}
	free(tmp);
	return rv;
}

int pred_save(const struct pred *p, const char *path, char *err, size_t errlen)
{
	struct pbuf b = {0};
	size_t plen_at;
	int rv;

	for (int i = 0; i < 8; i++)
		pbuf_put(&b, (unsigned char)STATE_MAGIC[i], 1);
	pbuf_u32(&b, STATE_VERSION);
	pbuf_u32(&b, p->kind);
	pbuf_u32(&b, p->L);
	pbuf_u32(&b, p->E);
	pbuf_u32(&b, p->k);
	pbuf_u32(&b, param_of(p));
	plen_at = b.n;
	pbuf_u64(&b, 0);
	for (size_t i = 0; i < (size_t)p->L * p->E; i++)
		pbuf_u32(&b, p->pop[i]);
	if (p->ops->save)
		p->ops->save(p, &b);
	if (b.oom) {
		free(b.p);
		ld_errf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	for (int i = 0; i < 8; i++)        /* payload length, patched in place */
		b.p[plen_at + i] = (unsigned char)((uint64_t)(b.n - HEADER_BYTES) >> (8 * i));
	pbuf_u64(&b, fnv1a(b.p, b.n));
	rv = b.oom ? -ENOMEM : write_file(path, &b, err, errlen);
	free(b.p);
	return rv;
}

static int read_all(const char *path, unsigned char **out, size_t *len, char *err, size_t n)
{
	FILE *f = fopen(path, "rb");
	long sz;
	int rv = 0;

	if (!f) {
		rv = -errno;
		ld_errf(err, n, "%s: %s", path, strerror(-rv));
		return rv;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		ld_errf(err, n, "%s: cannot size the file", path);
		fclose(f);
		return -EIO;
	}
	if ((unsigned long long)sz > MAX_STATE_BYTES || !(*out = malloc(sz ? sz : 1))) {
		ld_errf(err, n, "%s: %ld bytes: too large", path, sz);
		fclose(f);
		return -EFBIG;
	}
	if (fread(*out, 1, sz, f) != (size_t)sz) {
		ld_errf(err, n, "%s: read error", path);
		free(*out);
		rv = -EIO;
	}
	fclose(f);
	*len = (size_t)sz;
	return rv;
}

/* The header fields against p; 0 or -EINVAL with a message. */
static int check_header(const struct pred *p, struct rbuf *r, const char *path, char *err,
			size_t n)
{
	uint32_t ver, kind, L, E, k, param;
	uint64_t plen;

	if (r->n < HEADER_BYTES + 8 || memcmp(r->p, STATE_MAGIC, 8)) {
		ld_errf(err, n, "%s: not a moed predictor state (magic %s)", path, STATE_MAGIC);
		return -EINVAL;
	}
	r->off = 8;
	ver = rbuf_u32(r);
	kind = rbuf_u32(r);
	L = rbuf_u32(r);
	E = rbuf_u32(r);
	k = rbuf_u32(r);
	param = rbuf_u32(r);
	if (ver != STATE_VERSION) {
		ld_errf(err, n, "%s: version %u, this build reads %d", path, ver, STATE_VERSION);
		return -EINVAL;
	}
	r->off = r->n - 8;
	if (fnv1a(r->p, r->n - 8) != rbuf_u64(r)) {
		ld_errf(err, n, "%s: checksum mismatch: the file is corrupt", path);
		return -EINVAL;
	}
	r->off = HEADER_BYTES - 8;
	plen = rbuf_u64(r);
	if (kind != (uint32_t)p->kind || L != (uint32_t)p->L || E != (uint32_t)p->E ||
	    k != (uint32_t)p->k || param != param_of(p)) {
		ld_errf(err, n, "%s: state of %s %ux%u top-%u param %u; predictor is %s %dx%d top-%d "
		        "param %u", path, pred_kind_name(kind), L, E, k, param,
		        pred_kind_name(p->kind), p->L, p->E, p->k, param_of(p));
		return -EINVAL;
	}
	if (plen != r->n - 8 - HEADER_BYTES) {
		ld_errf(err, n, "%s: payload length does not match the file size", path);
		return -EINVAL;
	}
	return 0;
}

static void swap_state(struct pred *a, struct pred *b)
{
	struct pred t = *a;

	a->pop = b->pop;
	a->pop_total = b->pop_total;
	a->impl = b->impl;
	b->pop = t.pop;
	b->pop_total = t.pop_total;
	b->impl = t.impl;
}

int pred_load(struct pred *p, const char *path, char *err, size_t errlen)
{
	struct rbuf r = {0};
	unsigned char *buf = NULL;
	struct pred *tmp = NULL;
	int rv;

	if ((rv = read_all(path, &buf, &r.n, err, errlen)) < 0)
		return rv;
	r.p = buf;
	if ((rv = check_header(p, &r, path, err, errlen)) < 0)
		goto out;
	if ((rv = pred_open(p->kind, p->L, p->E, p->k, &p->o, &tmp)) < 0)
		goto out;
	r.n -= 8;                      /* the checksum is not payload */
	for (int l = 0; l < p->L; l++)
		for (int e = 0; e < p->E; e++)
			tmp->pop_total[l] += tmp->pop[(size_t)l * p->E + e] = rbuf_u32(&r);
	rv = tmp->ops->load ? tmp->ops->load(tmp, &r) : 0;
	if (!rv && (r.bad || r.off != r.n))
		rv = -EINVAL;
	if (rv) {
		ld_errf(err, errlen, "%s: bad %s tables near byte %zu", path, pred_kind_name(p->kind),
		        r.off);
		goto out;
	}
	swap_state(p, tmp);
out:
	pred_close(tmp);
	free(buf);
	return rv;
}
