/* safetensors reader.  Layout: u64 little-endian header length N, N bytes
 * of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"},
 * then the data block; offsets are relative to the data block. */
#include "loader/errfmt.h"
#include "loader/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_MAX ((uint64_t)100 << 20)
#define MAX_SHARDS 65536

struct stfile {
	char *path;
	void *map;
	size_t maplen;
};

struct ld_st {
	char *path;              /* what was opened: file or index */
	struct stfile *files;
	size_t nfiles;
	struct ld_tensor *t;     /* sorted by name once open */
	int *tfile;              /* file index of each tensor (while building) */
	size_t n, cap;
};

size_t ld_dtype_size(enum ld_dtype dt)
{
	return dt == LD_F32 ? 4 : 2;
}

const char *ld_dtype_name(enum ld_dtype dt)
{
	switch (dt) {
	case LD_F32: return "F32";
	case LD_F16: return "F16";
	case LD_BF16: return "BF16";
	}
	return "?";
}

static float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31;
	uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
	float f;

	if (exp == 0) {
		/* zero or subnormal: mant * 2^-24, exact in f32 */
		f = ldexpf((float)mant, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7f800000u | (mant << 13);
	else
		bits = sign | ((exp + 112) << 23) | (mant << 13);
	memcpy(&f, &bits, 4);
	return f;
}

void ld_to_f32(float *dst, const void *src, enum ld_dtype dt, size_t n)
{
	const uint8_t *p = src;
	uint32_t bits;
	size_t i;

	switch (dt) {
	case LD_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		memcpy(dst, src, n * 4);
#else
		for (i = 0; i < n; i++) {
			bits = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
			       (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
			memcpy(&dst[i], &bits, 4);
		}
#endif
		break;
	case LD_F16:
		for (i = 0; i < n; i++)
			dst[i] = f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
		break;
	case LD_BF16:
		for (i = 0; i < n; i++) {
			bits = ((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8) << 16;
			memcpy(&dst[i], &bits, 4);
		}
		break;
	}
}

static int parse_dtype(const char *s, enum ld_dtype *dt)
{
	if (!strcmp(s, "F32"))
		*dt = LD_F32;
	else if (!strcmp(s, "F16"))
		*dt = LD_F16;
	else if (!strcmp(s, "BF16"))
		*dt = LD_BF16;
	else
		return -1;
	return 0;
}

static int grow(struct ld_st *st)
{
	size_t cap = st->cap ? st->cap * 2 : 64;
	struct ld_tensor *t;
	int *tf;

	if (st->n < st->cap)
		return 0;
	t = realloc(st->t, cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	st->t = t;
	tf = realloc(st->tfile, cap * sizeof(*tf));
	if (!tf)
		return -ENOMEM;
	st->tfile = tf;
	st->cap = cap;
	return 0;
}

/* Reads one header entry into st->t[st->n]; data_base/data_len: the data block. */
static int parse_entry(struct ld_st *st, int fi, const char *name, json_t *v,
		       const uint8_t *data_base, uint64_t data_len,
		       char *err, size_t errlen)
{
	const char *path = st->files[fi].path;
	json_t *jdt = json_object_get(v, "dtype"), *jsh = json_object_get(v, "shape");
	json_t *joff = json_object_get(v, "data_offsets");
	struct ld_tensor *t;
	uint64_t nel = 1, nbytes, b, e;
	size_t i;
	int rc;

	if (!json_is_object(v))
		return ld_fail(err, errlen, -EINVAL, "%s: %s: header entry is not an object", path, name);
	if (!json_is_string(jdt))
		return ld_fail(err, errlen, -EINVAL, "%s: %s: dtype missing or not a string", path, name);
	if ((rc = grow(st)) < 0)
		return ld_fail(err, errlen, rc, "%s: out of memory", path);
	t = &st->t[st->n];
	memset(t, 0, sizeof(*t));
	if (parse_dtype(json_string_value(jdt), &t->dtype) < 0)
		return ld_fail(err, errlen, -ENOTSUP, "%s: %s: unsupported dtype '%s' (supported: F32, F16, BF16)",
			       path, name, json_string_value(jdt));
	if (!json_is_array(jsh) || json_array_size(jsh) > LD_MAX_DIMS)
		return ld_fail(err, errlen, -EINVAL, "%s: %s: shape must be an array of at most %d dims",
			       path, name, LD_MAX_DIMS);
	t->ndim = (int)json_array_size(jsh);
	for (i = 0; i < json_array_size(jsh); i++) {
		json_t *d = json_array_get(jsh, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return ld_fail(err, errlen, -EINVAL, "%s: %s: shape[%zu] is not a non-negative integer",
				       path, name, i);
		t->shape[i] = json_integer_value(d);
		if (__builtin_mul_overflow(nel, (uint64_t)t->shape[i], &nel))
			return ld_fail(err, errlen, -EINVAL, "%s: %s: shape overflows", path, name);
	}
	if (!json_is_array(joff) || json_array_size(joff) != 2 ||
	    !json_is_integer(json_array_get(joff, 0)) || !json_is_integer(json_array_get(joff, 1)) ||
	    json_integer_value(json_array_get(joff, 0)) < 0 ||
	    json_integer_value(json_array_get(joff, 1)) < 0)
		return ld_fail(err, errlen, -EINVAL, "%s: %s: data_offsets must be [begin, end] non-negative integers",
			       path, name);
	b = (uint64_t)json_integer_value(json_array_get(joff, 0));
	e = (uint64_t)json_integer_value(json_array_get(joff, 1));
	if (b > e)
		return ld_fail(err, errlen, -EINVAL, "%s: %s: data_offsets [%llu,%llu]: begin after end",
			       path, name, (unsigned long long)b, (unsigned long long)e);
	if (e > data_len)
		return ld_fail(err, errlen, -EINVAL, "%s: %s: data_offsets [%llu,%llu] outside data of %llu bytes",
			       path, name, (unsigned long long)b, (unsigned long long)e,
			       (unsigned long long)data_len);
	if (__builtin_mul_overflow(nel, (uint64_t)ld_dtype_size(t->dtype), &nbytes) || nbytes != e - b)
		return ld_fail(err, errlen, -EINVAL, "%s: %s: shape x dtype size is %llu bytes but data_offsets span %llu",
			       path, name, (unsigned long long)nel * ld_dtype_size(t->dtype),
			       (unsigned long long)(e - b));
	t->name = strdup(name);
	if (!t->name)
		return ld_fail(err, errlen, -ENOMEM, "%s: out of memory", path);
	t->file = path;
	t->data = data_base + b;
	t->nbytes = (size_t)(e - b);
	st->tfile[st->n++] = fi;
	return 0;
}

static int cmp_offset(const void *a, const void *b)
{
	const struct ld_tensor *x = *(const struct ld_tensor *const *)a;
	const struct ld_tensor *y = *(const struct ld_tensor *const *)b;
	const uint8_t *px = x->data, *py = y->data;

	if (px != py)
		return px < py ? -1 : 1;
	return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Tensors [first, st->n) come from one file: no two byte ranges may overlap. */
static int check_overlap(struct ld_st *st, size_t first, const char *path,
			 char *err, size_t errlen)
{
	size_t n = st->n - first, i;
	const struct ld_tensor **v;
	int rc = 0;

	if (n < 2)
		return 0;
	v = malloc(n * sizeof(*v));
	if (!v)
		return ld_fail(err, errlen, -ENOMEM, "%s: out of memory", path);
	for (i = 0; i < n; i++)
		v[i] = &st->t[first + i];
	qsort(v, n, sizeof(*v), cmp_offset);
	for (i = 1; i < n; i++) {
		const uint8_t *pend = (const uint8_t *)v[i - 1]->data + v[i - 1]->nbytes;
		if ((const uint8_t *)v[i]->data < pend) {
			rc = ld_fail(err, errlen, -EINVAL, "%s: %s: data overlaps tensor %s",
				     path, v[i]->name, v[i - 1]->name);
			break;
		}
	}
	free(v);
	return rc;
}

static int map_file(struct stfile *f, char *err, size_t errlen)
{
	struct stat sb;
	int fd, rc = 0;

	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ld_fail(err, errlen, -errno, "%s: %s", f->path, strerror(errno));
	if (fstat(fd, &sb) < 0) {
		rc = ld_fail(err, errlen, -errno, "%s: %s", f->path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = ld_fail(err, errlen, -EINVAL, "%s: not a regular file", f->path);
		goto out;
	}
	if (sb.st_size < 8) {
		rc = ld_fail(err, errlen, -EINVAL, "%s: truncated: %lld bytes, no header length",
			     f->path, (long long)sb.st_size);
		goto out;
	}
	f->map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (f->map == MAP_FAILED) {
		f->map = NULL;
		rc = ld_fail(err, errlen, -errno, "%s: mmap: %s", f->path, strerror(errno));
		goto out;
	}
	f->maplen = (size_t)sb.st_size;
out:
	close(fd);
	return rc;
}

/* Maps file fi and appends its tensors to st. */
static int load_file(struct ld_st *st, int fi, char *err, size_t errlen)
{
	struct stfile *f = &st->files[fi];
	const uint8_t *p;
	uint64_t hlen = 0;
	json_t *root = NULL, *v;
	json_error_t jerr;
	const char *key;
	size_t first = st->n;
	int i, rc;

	if ((rc = map_file(f, err, errlen)) < 0)
		return rc;
	p = f->map;
	for (i = 7; i >= 0; i--)
		hlen = hlen << 8 | p[i];
	if (hlen > f->maplen - 8)
		return ld_fail(err, errlen, -EINVAL, "%s: header length %llu beyond file size %zu (truncated?)",
			       f->path, (unsigned long long)hlen, f->maplen);
	if (hlen > HEADER_MAX)
		return ld_fail(err, errlen, -EINVAL, "%s: header length %llu over the %llu-byte limit",
			       f->path, (unsigned long long)hlen, (unsigned long long)HEADER_MAX);
	root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return ld_fail(err, errlen, -EINVAL, "%s: header JSON: %s (offset %d)",
			       f->path, jerr.text, jerr.position);
	if (!json_is_object(root)) {
		rc = ld_fail(err, errlen, -EINVAL, "%s: header JSON is not an object", f->path);
		goto out;
	}
	json_object_foreach(root, key, v) {
		if (!strcmp(key, "__metadata__"))
			continue;
		rc = parse_entry(st, fi, key, v, p + 8 + hlen, f->maplen - 8 - hlen, err, errlen);
		if (rc < 0)
			goto out;
	}
	rc = check_overlap(st, first, f->path, err, errlen);
out:
	json_decref(root);
	return rc;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct ld_tensor *)a)->name, ((const struct ld_tensor *)b)->name);
}

/* Sorts tensors by name; a name in two shards is an error. */
static int finish(struct ld_st *st, char *err, size_t errlen)
{
	size_t i;

	if (st->n > 1)
		qsort(st->t, st->n, sizeof(*st->t), cmp_name);
	for (i = 1; i < st->n; i++)
		if (!strcmp(st->t[i].name, st->t[i - 1].name))
			return ld_fail(err, errlen, -EINVAL, "%s: %s: tensor appears in both %s and %s",
				       st->path, st->t[i].name, st->t[i - 1].file, st->t[i].file);
	free(st->tfile);
	st->tfile = NULL;
	return 0;
}

static int add_file(struct ld_st *st, const char *path)
{
	struct stfile *f = realloc(st->files, (st->nfiles + 1) * sizeof(*f));

	if (!f)
		return -ENOMEM;
	st->files = f;
	memset(&f[st->nfiles], 0, sizeof(*f));
	f[st->nfiles].path = strdup(path);
	if (!f[st->nfiles].path)
		return -ENOMEM;
	st->nfiles++;
	return 0;
}

int ld_st_open_file(const char *path, struct ld_st **out, char *err, size_t errlen)
{
	struct ld_st *st = calloc(1, sizeof(*st));
	int rc;

	*out = NULL;
	if (!st || !(st->path = strdup(path)) || add_file(st, path) < 0) {
		rc = ld_fail(err, errlen, -ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	if ((rc = load_file(st, 0, err, errlen)) < 0 || (rc = finish(st, err, errlen)) < 0)
		goto fail;
	*out = st;
	return 0;
fail:
	ld_st_close(st);
	return rc;
}

static char *join(const char *dir, const char *name)
{
	char *s;

	if (asprintf(&s, "%s/%s", dir, name) < 0)
		return NULL;
	return s;
}

static int file_index(struct ld_st *st, const char *path)
{
	size_t i;

	for (i = 0; i < st->nfiles; i++)
		if (!strcmp(st->files[i].path, path))
			return (int)i;
	if (st->nfiles >= MAX_SHARDS || add_file(st, path) < 0)
		return -ENOMEM;
	return (int)st->nfiles - 1;
}

/* Shard names come from the index: plain file names only. */
static int bad_shard_name(const char *s)
{
	return !*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..");
}

/* Every tensor the index lists must be in the shard it names. */
static int check_listed(struct ld_st *st, const char *dir, json_t *wm,
			char *err, size_t errlen)
{
	const char *key;
	json_t *v;
	int rc = 0;

	json_object_foreach(wm, key, v) {
		const struct ld_tensor *t = ld_st_find(st, key);
		char *want = join(dir, json_string_value(v));

		if (!want)
			return ld_fail(err, errlen, -ENOMEM, "%s: out of memory", st->path);
		if (!t)
			rc = ld_fail(err, errlen, -ENOENT, "%s: %s: missing tensor (listed in %s)",
				     want, key, st->path);
		else if (strcmp(t->file, want))
			rc = ld_fail(err, errlen, -EINVAL, "%s: %s: index says it is in %s",
				     t->file, key, want);
		free(want);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int open_index(struct ld_st *st, const char *dir, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *wm, *v;
	const char *key;
	size_t i;
	int rc = 0, fi;

	root = json_load_file(st->path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return ld_fail(err, errlen, -EINVAL, "%s: line %d: %s", st->path, jerr.line, jerr.text);
	wm = json_object_get(root, "weight_map");
	if (!json_is_object(wm)) {
		rc = ld_fail(err, errlen, -EINVAL, "%s: weight_map: missing or not an object", st->path);
		goto out;
	}
	json_object_foreach(wm, key, v) {
		char *path;

		if (!json_is_string(v) || bad_shard_name(json_string_value(v))) {
			rc = ld_fail(err, errlen, -EINVAL, "%s: weight_map.%s: not a plain file name",
				     st->path, key);
			goto out;
		}
		if (!(path = join(dir, json_string_value(v)))) {
			rc = ld_fail(err, errlen, -ENOMEM, "%s: out of memory", st->path);
			goto out;
		}
		fi = file_index(st, path);
		free(path);
		if (fi < 0) {
			rc = ld_fail(err, errlen, fi, "%s: out of memory or too many shards", st->path);
			goto out;
		}
	}
	for (i = 0; i < st->nfiles; i++)
		if ((rc = load_file(st, (int)i, err, errlen)) < 0)
			goto out;
	if ((rc = finish(st, err, errlen)) < 0)
		goto out;
	rc = check_listed(st, dir, wm, err, errlen);
out:
	json_decref(root);
	return rc;
}

int ld_st_open_dir(const char *dir, struct ld_st **out, char *err, size_t errlen)
{
	struct ld_st *st;
	struct stat sb;
	char *single;
	int rc;

	*out = NULL;
	if (!(single = join(dir, "model.safetensors")))
		return ld_fail(err, errlen, -ENOMEM, "%s: out of memory", dir);
	if (stat(single, &sb) == 0) {
		rc = ld_st_open_file(single, out, err, errlen);
		free(single);
		return rc;
	}
	free(single);
	st = calloc(1, sizeof(*st));
	if (!st || !(st->path = join(dir, "model.safetensors.index.json"))) {
		free(st);
		return ld_fail(err, errlen, -ENOMEM, "%s: out of memory", dir);
	}
	if (stat(st->path, &sb) < 0) {
		rc = ld_fail(err, errlen, -ENOENT, "%s: no model.safetensors or model.safetensors.index.json",
			     dir);
		goto fail;
	}
	if (sb.st_size > (off_t)HEADER_MAX) {
		rc = ld_fail(err, errlen, -EINVAL, "%s: index file too large", st->path);
		goto fail;
	}
	if ((rc = open_index(st, dir, err, errlen)) < 0)
		goto fail;
	*out = st;
	return 0;
fail:
	ld_st_close(st);
	return rc;
}

const struct ld_tensor *ld_st_find(const struct ld_st *st, const char *name)
{
	struct ld_tensor key = { .name = name };

	if (!st || !st->n)
		return NULL;
	return bsearch(&key, st->t, st->n, sizeof(key), cmp_name);
}

size_t ld_st_count(const struct ld_st *st)
{
	return st->n;
}

const struct ld_tensor *ld_st_at(const struct ld_st *st, size_t i)
{
	return i < st->n ? &st->t[i] : NULL;
}

const char *ld_st_path(const struct ld_st *st)
{
	return st->path;
}

void ld_st_close(struct ld_st *st)
{
	size_t i;

	if (!st)
		return;
	for (i = 0; i < st->n; i++)
		free((char *)st->t[i].name);
	for (i = 0; i < st->nfiles; i++) {
		if (st->files[i].map)
			munmap(st->files[i].map, st->files[i].maplen);
		free(st->files[i].path);
	}
	free(st->files);
	free(st->t);
	free(st->tfile);
	free(st->path);
	free(st);
}
