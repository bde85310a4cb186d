/* Streaming safetensors writer (layout: see loader/safetensors.c). */
#include "loader/st_write.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_BYTES 1024
#define IO_BUF_BYTES (1 << 20)

struct entry {
	char *name;
	enum ld_dtype dt;
	int ndim;
	int64_t shape[LD_MAX_DIMS];
	uint64_t nbytes;
};

struct ld_stw {
	char *path, *tmp;
	FILE *f;
	struct entry *e;
	size_t n, cap;
	uint64_t total;        /* declared data bytes */
	uint64_t written;      /* data bytes written so far */
	int begun;
	int rc;                /* sticky: first error */
	char err[512];
};

static int seterr(struct ld_stw *w, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int seterr(struct ld_stw *w, int rc, const char *fmt, ...)
{
	va_list ap;

	if (w->rc)
		return w->rc;
	va_start(ap, fmt);
	vsnprintf(w->err, sizeof(w->err), fmt, ap);
	va_end(ap);
	w->rc = rc;
	return rc;
}

int ld_stw_open(const char *path, struct ld_stw **out, char *err, size_t errlen)
{
	struct ld_stw *w;
	int fd = -1, rc;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (w && (!(w->path = strdup(path)) || asprintf(&w->tmp, "%s.tmp.XXXXXX", path) < 0))
		w->tmp = NULL;
	if (!w || !w->tmp) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	fd = mkostemp(w->tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot create temporary file: %s", path, strerror(errno));
		free(w->tmp);
		w->tmp = NULL;
		goto fail;
	}
	if (fchmod(fd, 0644) < 0 || !(w->f = fdopen(fd, "wb"))) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", w->tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	setvbuf(w->f, NULL, _IOFBF, IO_BUF_BYTES);
	*out = w;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	ld_stw_abort(w);
	return rc;
}

static int bad_name(const char *name)
{
	size_t len = strlen(name);

	if (!len || len > NAME_MAX_BYTES || !strcmp(name, "__metadata__"))
		return 1;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 1;
	return 0;
}

int ld_stw_add(struct ld_stw *w, const char *name, enum ld_dtype dt,
	       int ndim, const int64_t *shape)
{
	struct entry *e;
	uint64_t nel = 1;

	if (w->rc)
		return w->rc;
	if (w->begun)
		return seterr(w, -EINVAL, "%s: %s: declared after the header was written",
			      w->path, name);
	if (bad_name(name))
		return seterr(w, -EINVAL, "%s: bad tensor name '%.64s'", w->path, name);
	if (ndim < 0 || ndim > LD_MAX_DIMS || (dt != LD_F32 && dt != LD_F16 && dt != LD_BF16))
		return seterr(w, -EINVAL, "%s: %s: bad ndim %d or dtype %d", w->path, name, ndim, dt);
	for (int i = 0; i < ndim; i++)
		if (shape[i] < 0 || __builtin_mul_overflow(nel, (uint64_t)shape[i], &nel))
			return seterr(w, -EINVAL, "%s: %s: bad shape[%d] = %lld", w->path, name,
				      i, (long long)shape[i]);
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		e = realloc(w->e, cap * sizeof(*e));
		if (!e)
			return seterr(w, -ENOMEM, "%s: out of memory", w->path);
		w->e = e;
		w->cap = cap;
	}
	e = &w->e[w->n];
	memset(e, 0, sizeof(*e));
	if (!(e->name = strdup(name)))
		return seterr(w, -ENOMEM, "%s: out of memory", w->path);
	e->dt = dt;
	e->ndim = ndim;
	if (ndim > 0)  /* a scalar may come with shape NULL */
		memcpy(e->shape, shape, (size_t)ndim * sizeof(*shape));
	if (__builtin_mul_overflow(nel, (uint64_t)ld_dtype_size(dt), &e->nbytes) ||
	    __builtin_add_overflow(w->total, e->nbytes, &w->total)) {
		free(e->name);
		return seterr(w, -EOVERFLOW, "%s: %s: size overflows", w->path, name);
	}
	w->n++;
	return 0;
}

uint64_t ld_stw_data_bytes(const struct ld_stw *w)
{
	return w->total;
}

const char *ld_stw_error(const struct ld_stw *w)
{
	return w->rc ? w->err : "";
}

/* A growing string for the header JSON. */
struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (b->len + n + 1 > cap)
			cap *= 2;
		if (!(p = realloc(b->p, cap))) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	sb_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* JSON string; names were checked free of control characters. */
static void sb_json_str(struct sbuf *b, const char *s)
{
	sb_put(b, "\"", 1);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			sb_put(b, "\\", 1);
		sb_put(b, s, 1);
	}
	sb_put(b, "\"", 1);
}

static int cmp_entry_name(const void *a, const void *b)
{
	return strcmp((*(const struct entry *const *)a)->name,
		      (*(const struct entry *const *)b)->name);
}

/* Sorts pointers to find a name declared twice (n can be 10^5 and more). */
static const char *find_duplicate(struct ld_stw *w, int *oom)
{
	const struct entry **v;
	const char *dup = NULL;

	*oom = 0;
	if (w->n < 2)
		return NULL;
	if (!(v = malloc(w->n * sizeof(*v)))) {
		*oom = 1;
		return NULL;
	}
	for (size_t i = 0; i < w->n; i++)
		v[i] = &w->e[i];
	qsort(v, w->n, sizeof(*v), cmp_entry_name);
	for (size_t i = 1; i < w->n && !dup; i++)
		if (!strcmp(v[i]->name, v[i - 1]->name))
			dup = v[i]->name;
	free(v);
	return dup;
}

static void build_header(struct ld_stw *w, struct sbuf *b)
{
	uint64_t off = 0;
	static const char meta[] = "{\"__metadata__\":{\"format\":\"pt\"}}";

	sb_put(b, meta, sizeof(meta) - 2);   /* without the closing brace */
	for (size_t i = 0; i < w->n; i++) {
		const struct entry *e = &w->e[i];

		sb_put(b, ",", 1);
		sb_json_str(b, e->name);
		sb_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", ld_dtype_name(e->dt));
		for (int d = 0; d < e->ndim; d++)
			sb_printf(b, "%s%lld", d ? "," : "", (long long)e->shape[d]);
		sb_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
			  (unsigned long long)(off + e->nbytes));
		off += e->nbytes;
	}
	sb_put(b, "}", 1);
	while (b->len % 8)
		sb_put(b, " ", 1);
}

int ld_stw_begin(struct ld_stw *w)
{
	struct sbuf b = {0};
	unsigned char len8[8];
	const char *dup;
	int oom;

	if (w->rc)
		return w->rc;
	if (w->begun)
		return seterr(w, -EINVAL, "%s: header written twice", w->path);
	dup = find_duplicate(w, &oom);
	if (oom)
		return seterr(w, -ENOMEM, "%s: out of memory", w->path);
	if (dup)
		return seterr(w, -EEXIST, "%s: %s: tensor declared twice", w->path, dup);
	build_header(w, &b);
	if (b.oom) {
		free(b.p);
		return seterr(w, -ENOMEM, "%s: out of memory", w->path);
	}
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)b.len >> (8 * i));
	w->begun = 1;
	if (fwrite(len8, 1, 8, w->f) != 8 || fwrite(b.p, 1, b.len, w->f) != b.len) {
		free(b.p);
		return seterr(w, errno ? -errno : -EIO, "%s: write: %s", w->tmp, strerror(errno));
	}
	free(b.p);
	return 0;
}

int ld_stw_write(struct ld_stw *w, const void *data, size_t n)
{
	if (w->rc)
		return w->rc;
	if (!w->begun)
		return seterr(w, -EINVAL, "%s: data written before the header", w->path);
	if (n > w->total - w->written)
		return seterr(w, -EOVERFLOW, "%s: %llu data bytes past the declared %llu", w->path,
			      (unsigned long long)(w->written + n - w->total),
			      (unsigned long long)w->total);
	if (n && fwrite(data, 1, n, w->f) != n)
		return seterr(w, errno ? -errno : -EIO, "%s: write: %s", w->tmp, strerror(errno));
	w->written += n;
	return 0;
}

/* After a rename the directory entry itself must reach the disk. */
static void sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd;

	if (!copy)
		return;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

static void free_stw(struct ld_stw *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->e[i].name);
	free(w->e);
	free(w->path);
	free(w->tmp);
	free(w);
}

int ld_stw_close(struct ld_stw *w, char *err, size_t errlen)
{
	int rc;

	if (!w)
		return 0;
	if (!w->rc && !w->begun)
		seterr(w, -EINVAL, "%s: closed before the header was written", w->path);
	if (!w->rc && w->written != w->total)
		seterr(w, -EINVAL, "%s: %llu of %llu data bytes written", w->path,
		       (unsigned long long)w->written, (unsigned long long)w->total);
	if (!w->rc && (fflush(w->f) != 0 || fsync(fileno(w->f)) < 0))
		seterr(w, -errno, "%s: flush: %s", w->tmp, strerror(errno));
	if (fclose(w->f) != 0 && !w->rc)
		seterr(w, -errno, "%s: close: %s", w->tmp, strerror(errno));
	w->f = NULL;
	if (!w->rc && rename(w->tmp, w->path) < 0)
		seterr(w, -errno, "%s: rename from %s: %s", w->path, w->tmp, strerror(errno));
	if (w->rc) {
		if (err && errlen)
			snprintf(err, errlen, "%s", w->err);
		unlink(w->tmp);
	} else {
		sync_dir(w->path);
	}
	rc = w->rc;
	free_stw(w);
	return rc;
}

void ld_stw_abort(struct ld_stw *w)
{
	if (!w)
		return;
	if (w->f)
		fclose(w->f);
	if (w->tmp)
		unlink(w->tmp);
	free_stw(w);
}

static uint16_t to_bf16(float f)
{
	uint32_t x;

	memcpy(&x, &f, 4);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)(x >> 16 | 0x40);
	x += 0x7fffu + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

/* Round to nearest even, subnormals included (F. Giesen's method). */
static uint16_t to_f16(float f)
{
	const uint32_t f16max = (127u + 16) << 23, magic_u = 126u << 23;
	uint32_t x, sign, o;
	float mf;

	memcpy(&x, &f, 4);
	sign = x & 0x80000000u;
	x ^= sign;
	if (x >= f16max) {
		o = x > 0x7f800000u ? 0x7e00 : 0x7c00;
	} else if (x < (113u << 23)) {
		float magic;
		memcpy(&magic, &magic_u, 4);
		memcpy(&mf, &x, 4);
		mf += magic;
		memcpy(&o, &mf, 4);
		o -= magic_u;
	} else {
		uint32_t odd = (x >> 13) & 1;
		x += ((uint32_t)(15 - 127) << 23) + 0xfff + odd;
		o = x >> 13;
	}
	return (uint16_t)(o | sign >> 16);
}

void ld_from_f32(void *dst, const float *src, enum ld_dtype dt, size_t n)
{
	uint16_t *d = dst;

	if (dt == LD_F32) {
		memcpy(dst, src, n * sizeof(float));
		return;
	}
	for (size_t i = 0; i < n; i++)
		d[i] = dt == LD_BF16 ? to_bf16(src[i]) : to_f16(src[i]);
}
