/* The pack store: XXH64, opening and validating a pack, per-expert checks.
 * Writing a pack is in store_pack.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/safetensors.h"
#include "loader/store.h"

_Static_assert(sizeof(struct ld_pack_header) == 128, "pack header is 128 bytes");
_Static_assert(sizeof(struct ld_pack_entry) == 16, "pack entry is 16 bytes");

struct ld_store {
	char *path;
	const uint8_t *map;
	size_t map_bytes;
	const struct ld_pack_entry *table;
	struct ld_store_info info;
};

/* ---- XXH64 (the published algorithm, seed 0) ---- */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t xround(uint64_t acc, uint64_t in)
{
	acc += in * P2;
	acc = rotl64(acc, 31);
	return acc * P1;
}

static inline uint64_t xmerge(uint64_t acc, uint64_t v)
{
	acc ^= xround(0, v);
	return acc * P1 + P4;
}

static inline void stripe(uint64_t v[4], const uint8_t *p)
{
	v[0] = xround(v[0], rd64(p));
	v[1] = xround(v[1], rd64(p + 8));
	v[2] = xround(v[2], rd64(p + 16));
	v[3] = xround(v[3], rd64(p + 24));
}

void ld_xxh64_init(struct ld_xxh64 *h)
{
	memset(h, 0, sizeof(*h));
	h->v[0] = P1 + P2;
	h->v[1] = P2;
	h->v[2] = 0;
	h->v[3] = -P1;
}

void ld_xxh64_update(struct ld_xxh64 *h, const void *data, size_t n)
{
	const uint8_t *p = data;

	h->total += n;
	if (h->nbuf) {
		size_t take = 32 - h->nbuf < n ? 32 - h->nbuf : n;
		memcpy(h->buf + h->nbuf, p, take);
		h->nbuf += take;
		p += take;
		n -= take;
		if (h->nbuf < 32)
			return;
		stripe(h->v, h->buf);
		h->nbuf = 0;
	}
	uint64_t v[4] = {h->v[0], h->v[1], h->v[2], h->v[3]};
	for (; n >= 32; p += 32, n -= 32)
		stripe(v, p);
	memcpy(h->v, v, sizeof(v));
	memcpy(h->buf, p, n);
	h->nbuf = n;
}

uint64_t ld_xxh64_digest(const struct ld_xxh64 *h)
{
	uint64_t acc;
	const uint8_t *p = h->buf;
	size_t n = h->nbuf;

	if (h->total >= 32) {
		acc = rotl64(h->v[0], 1) + rotl64(h->v[1], 7) + rotl64(h->v[2], 12) +
		      rotl64(h->v[3], 18);
		for (int i = 0; i < 4; i++)
			acc = xmerge(acc, h->v[i]);
	} else {
		acc = P5;
	}
	acc += h->total;
	for (; n >= 8; p += 8, n -= 8) {
		acc ^= xround(0, rd64(p));
		acc = rotl64(acc, 27) * P1 + P4;
	}
	if (n >= 4) {
		acc ^= (uint64_t)rd32(p) * P1;
		acc = rotl64(acc, 23) * P2 + P3;
		p += 4;
		n -= 4;
	}
	for (; n > 0; p++, n--) {
		acc ^= *p * P5;
		acc = rotl64(acc, 11) * P1;
	}
	acc ^= acc >> 33;
	acc *= P2;
	acc ^= acc >> 29;
	acc *= P3;
	acc ^= acc >> 32;
	return acc;
}

uint64_t ld_xxh64(const void *p, size_t n)
{
	struct ld_xxh64 h;

	ld_xxh64_init(&h);
	ld_xxh64_update(&h, p, n);
	return ld_xxh64_digest(&h);
}

/* ---- opening ---- */

/* Header and table checksum, with header_checksum taken as zero. */
static uint64_t header_sum(const struct ld_pack_header *hd, const void *table,
			   size_t table_bytes)
{
	struct ld_pack_header tmp = *hd;
	struct ld_xxh64 h;

	tmp.header_checksum = 0;
	ld_xxh64_init(&h);
	ld_xxh64_update(&h, &tmp, sizeof(tmp));
	ld_xxh64_update(&h, table, table_bytes);
	return ld_xxh64_digest(&h);
}

uint64_t ld_store_header_checksum(const struct ld_pack_header *hd, const void *table,
				  size_t table_bytes)
{
	return header_sum(hd, table, table_bytes);
}

#define BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return -EBADMSG; } while (0)

/* Dimensions and offsets in the fixed header (before the checksum, so that a
 * wild table_offset cannot make us read past the file). */
static int check_shape(const char *path, const struct ld_pack_header *hd, size_t size,
		       size_t *table_bytes, char *err, size_t errlen)
{
	uint64_t n = (uint64_t)hd->n_layers * hd->n_experts;

	if (hd->n_layers == 0 || hd->n_experts == 0 || hd->hidden == 0 || hd->inter == 0 ||
	    hd->n_layers > 65536 || hd->n_experts > 65536)
		BAD("%s: bad dimensions (%" PRIu32 " layers x %" PRIu32 " experts, hidden %"
		    PRIu32 ", inter %" PRIu32 ")", path, hd->n_layers, hd->n_experts,
		    hd->hidden, hd->inter);
	if (hd->table_offset != sizeof(*hd))
		BAD("%s: table_offset %" PRIu64 ", expected %zu", path, hd->table_offset,
		    sizeof(*hd));
	*table_bytes = n * sizeof(struct ld_pack_entry);
	if (size < sizeof(*hd) + *table_bytes)
		BAD("%s: truncated: %zu bytes, the layout table of %" PRIu64
		    " experts needs %zu", path, size, n, sizeof(*hd) + *table_bytes);
	return 0;
}

static int check_fields(const char *path, const struct ld_pack_header *hd, size_t size,
			size_t table_bytes, char *err, size_t errlen)
{
	uint64_t es = hd->dtype == LD_BF16 ? 2 : 4, want = 3ull * hd->hidden * hd->inter * es;

	if (hd->file_bytes != size)
		BAD("%s: truncated or extended: header says %" PRIu64 " bytes, file has %zu",
		    path, hd->file_bytes, size);
	if (hd->dtype != LD_F32 && hd->dtype != LD_BF16)
		BAD("%s: dtype %" PRIu32 ", this moed reads f32 (0) and bf16 (2)", path,
		    hd->dtype);
	if (hd->align != LD_STORE_ALIGN)
		BAD("%s: align %" PRIu32 ", expected %u", path, hd->align, LD_STORE_ALIGN);
	if (hd->expert_bytes != want)
		BAD("%s: expert_bytes %" PRIu64 ", 3 x %" PRIu32 " x %" PRIu32 " values of %"
		    PRIu64 " bytes is %" PRIu64, path, hd->expert_bytes, hd->hidden, hd->inter,
		    es, want);
	if (hd->data_offset % LD_STORE_ALIGN ||
	    hd->data_offset < hd->table_offset + table_bytes || hd->data_offset > size)
		BAD("%s: data_offset %" PRIu64 " not aligned or inside the table", path,
		    hd->data_offset);
	return 0;
}

static int check_table(const char *path, const struct ld_pack_header *hd,
		       const struct ld_pack_entry *t, char *err, size_t errlen)
{
	uint64_t n = (uint64_t)hd->n_layers * hd->n_experts, next = hd->data_offset;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = t[i].offset;
		if (off % LD_STORE_ALIGN || off < next || off > hd->file_bytes ||
		    hd->file_bytes - off < hd->expert_bytes)
			BAD("%s: layer %" PRIu64 " expert %" PRIu64 ": offset %" PRIu64
			    " misaligned, overlapping or past the end (%" PRIu64 " bytes)",
			    path, i / hd->n_experts, i % hd->n_experts, off, hd->file_bytes);
		next = off + hd->expert_bytes;
	}
	return 0;
}

static int validate(struct ld_store *s, size_t size, uint64_t expect_hash, char *err,
		    size_t errlen)
{
	const struct ld_pack_header *hd = (const void *)s->map;
	size_t table_bytes;
	int rc;

	if (size < sizeof(*hd))
		BAD("%s: truncated: %zu bytes, the header needs %zu", s->path, size,
		    sizeof(*hd));
	if (memcmp(hd->magic, LD_STORE_MAGIC, 8))
		BAD("%s: not a moed pack (bad magic)", s->path);
	if (hd->version != LD_STORE_VERSION) {
		snprintf(err, errlen, "%s: pack format version %" PRIu32
			 ", this moed reads version %u", s->path,
			 hd->version, LD_STORE_VERSION);
		return -EPROTO;
	}
	if ((rc = check_shape(s->path, hd, size, &table_bytes, err, errlen)))
		return rc;
	const struct ld_pack_entry *t = (const void *)(s->map + hd->table_offset);
	uint64_t sum = header_sum(hd, t, table_bytes);
	if (sum != hd->header_checksum)
		BAD("%s: header checksum mismatch (stored %016" PRIx64 ", computed %016"
		    PRIx64 "): corrupt pack", s->path, hd->header_checksum, sum);
	if ((rc = check_fields(s->path, hd, size, table_bytes, err, errlen)) ||
	    (rc = check_table(s->path, hd, t, err, errlen)))
		return rc;
	if (expect_hash && hd->model_hash != expect_hash) {
		snprintf(err, errlen, "%s: packed from another model (model hash %016" PRIx64
			 ", this model %016" PRIx64 ")", s->path, hd->model_hash, expect_hash);
		return -ESTALE;
	}
	s->table = t;
	s->info = (struct ld_store_info){
		.version = hd->version, .n_layers = (int)hd->n_layers,
		.n_experts = (int)hd->n_experts, .hidden = (int)hd->hidden,
		.inter = (int)hd->inter, .dtype = (int)hd->dtype,
		.expert_bytes = hd->expert_bytes, .model_hash = hd->model_hash,
		.file_bytes = hd->file_bytes,
	};
	return 0;
}

int ld_store_open(const char *path, uint64_t expect_hash, struct ld_store **out,
		  char *err, size_t errlen)
{
	struct ld_store *s = calloc(1, sizeof(*s));
	struct stat st;
	int fd = -1, rc;

	*out = NULL;
	if (!s || !(s->path = strdup(path))) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	s->map_bytes = (size_t)st.st_size;
	if (s->map_bytes >= sizeof(struct ld_pack_header)) {
		void *m = mmap(NULL, s->map_bytes, PROT_READ, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			rc = -errno;
			snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
			goto fail;
		}
		s->map = m;
	}
	if ((rc = validate(s, s->map_bytes, expect_hash, err, errlen)))
		goto fail;
	close(fd);
	*out = s;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	ld_store_close(s);
	return rc;
}

void ld_store_close(struct ld_store *s)
{
	if (!s)
		return;
	if (s->map)
		munmap((void *)s->map, s->map_bytes);
	free(s->path);
	free(s);
}

const struct ld_store_info *ld_store_info(const struct ld_store *s)
{
	return &s->info;
}

const char *ld_store_path(const struct ld_store *s)
{
	return s->path;
}

static size_t index_of(const struct ld_store *s, int layer, int expert)
{
	return (size_t)layer * (size_t)s->info.n_experts + (size_t)expert;
}

const void *ld_store_expert(const struct ld_store *s, int layer, int expert)
{
	if (layer < 0 || layer >= s->info.n_layers || expert < 0 || expert >= s->info.n_experts)
		return NULL;
	return s->map + s->table[index_of(s, layer, expert)].offset;
}

uint64_t ld_store_expert_checksum(const struct ld_store *s, int layer, int expert)
{
	return s->table[index_of(s, layer, expert)].checksum;
}

int ld_store_verify_expert(const struct ld_store *s, int layer, int expert, char *err,
			   size_t errlen)
{
	const void *p = ld_store_expert(s, layer, expert);

	if (!p) {
		snprintf(err, errlen, "%s: layer %d expert %d: out of range", s->path, layer,
			 expert);
		return -EINVAL;
	}
	uint64_t want = ld_store_expert_checksum(s, layer, expert);
	uint64_t got = ld_xxh64(p, s->info.expert_bytes);
	if (got != want)
		BAD("%s: layer %d expert %d: checksum mismatch (stored %016" PRIx64
		    ", data %016" PRIx64 "): corrupt pack", s->path, layer, expert, want, got);
	return 0;
}

int ld_store_verify_all(const struct ld_store *s, char *err, size_t errlen)
{
	for (int l = 0; l < s->info.n_layers; l++)
		for (int e = 0; e < s->info.n_experts; e++) {
			int rc = ld_store_verify_expert(s, l, e, err, errlen);
			if (rc)
				return rc;
		}
	return 0;
}
