/* Writing the pack store: the source model's hash, packing (atomic), and
 * ensure (open a matching pack or make one). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/model.h"
#include "loader/st_write.h"
#include "loader/store.h"

/* ---- model hash ---- */

static int read_all(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		int rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (f)
			fclose(f);
		return rc ? rc : -EIO;
	}
	*buf = malloc((size_t)n + 1);
	if (!*buf || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
		snprintf(err, errlen, "%s: read failed", path);
		free(*buf);
		*buf = NULL;
		fclose(f);
		return -EIO;
	}
	(*buf)[n] = 0;
	*len = (size_t)n;
	fclose(f);
	return 0;
}

static int pread_all(int fd, void *buf, size_t n, off_t off)
{
	for (size_t done = 0; done < n;) {
		ssize_t r = pread(fd, (char *)buf + done, n - done, off + (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	return 0;
}

/* Name, size, header and both ends of the data of one safetensors file. */
static int hash_st_file(struct ld_xxh64 *h, const char *dir, const char *name, char *err,
			size_t errlen)
{
	char path[4096];
	struct stat st;
	uint64_t hlen = 0, size;
	char *buf = NULL;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	size = (uint64_t)st.st_size;
	if (size < 8 || (rc = pread_all(fd, &hlen, 8, 0)) || hlen > size - 8) {
		snprintf(err, errlen, "%s: bad safetensors header length", path);
		rc = rc ? rc : -EBADMSG;
		goto fail;
	}
	uint64_t dlen = size - 8 - hlen, end = dlen < 4096 ? dlen : 4096;
	if (!(buf = malloc(hlen + 2 * end + 1))) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	if ((rc = pread_all(fd, buf, hlen, 8)) ||
	    (rc = pread_all(fd, buf + hlen, end, (off_t)(8 + hlen))) ||
	    (rc = pread_all(fd, buf + hlen + end, end, (off_t)(size - end)))) {
		snprintf(err, errlen, "%s: read: %s", path, strerror(-rc));
		goto fail;
	}
	ld_xxh64_update(h, name, strlen(name) + 1);
	ld_xxh64_update(h, &size, 8);
	ld_xxh64_update(h, buf, hlen + 2 * end);
	rc = 0;
fail:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The shard names of an index's weight_map, sorted, each once. */
static int index_files(const char *path, const char *text, const char ***names,
		       size_t *count, json_t **root, char *err, size_t errlen)
{
	json_error_t je;
	json_t *map, *v;
	const char *k;
	size_t n = 0;

	*root = json_loads(text, 0, &je);
	map = *root ? json_object_get(*root, "weight_map") : NULL;
	if (!json_is_object(map)) {
		snprintf(err, errlen, "%s: no weight_map object", path);
		return -EBADMSG;
	}
	*names = calloc(json_object_size(map) + 1, sizeof(**names));
	if (!*names) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	json_object_foreach(map, k, v) {
		if (!json_is_string(v)) {
			snprintf(err, errlen, "%s: weight_map.%s: not a string", path, k);
			return -EBADMSG;
		}
		(*names)[n++] = json_string_value(v);
	}
	qsort(*names, n, sizeof(**names), cmp_str);
	size_t u = 0;
	for (size_t i = 0; i < n; i++)
		if (!u || strcmp((*names)[u - 1], (*names)[i]))
			(*names)[u++] = (*names)[i];
	*count = u;
	return 0;
}

int ld_store_model_hash(const char *dir, uint64_t *out, char *err, size_t errlen)
{
	static const char *single[] = {"model.safetensors"};
	char path[4096], *text = NULL;
	const char **names = NULL;
	json_t *root = NULL;
	struct ld_xxh64 h;
	size_t len, n = 1;
	int rc;

	ld_xxh64_init(&h);
	ld_xxh64_update(&h, "moed-model-hash-1", 18);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	if ((rc = read_all(path, &text, &len, err, errlen)))
		goto fail;
	ld_xxh64_update(&h, text, len);
	free(text);
	text = NULL;
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	if (access(path, F_OK) == 0) {
		if ((rc = read_all(path, &text, &len, err, errlen)) ||
		    (rc = index_files(path, text, &names, &n, &root, err, errlen)))
			goto fail;
		ld_xxh64_update(&h, text, len);
	}
	for (size_t i = 0; i < n; i++)
		if ((rc = hash_st_file(&h, dir, names ? names[i] : single[i], err, errlen)))
			goto fail;
	*out = ld_xxh64_digest(&h);
	if (!*out)
		*out = 1;      /* 0 means "any model" to ld_store_open */
fail:
	free(names);
	json_decref(root);
	free(text);
	return rc;
}

/* ---- packing ---- */

static int pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
	for (size_t done = 0; done < n;) {
		ssize_t r = pwrite(fd, (const char *)buf + done, n - done, off + (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	return 0;
}

static size_t round_up(size_t x, size_t a)
{
	return (x + a - 1) / a * a;
}

/* fsync of the directory holding path, so that the rename is durable. */
static int sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, rc = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

/* One line, rewritten when the percentage moves. */
static void show_progress(bool on, size_t done, size_t total, size_t stride)
{
	if (!on || (done * 100 / total == (done - 1) * 100 / total && done != total))
		return;
	fprintf(stderr, "\rmoed pack: %3zu%% (%zu/%zu experts, %zu/%zu MiB)",
		done * 100 / total, done, total, done * stride >> 20, total * stride >> 20);
	if (done == total)
		fputc('\n', stderr);
}

/* Fills the header for m, experts stored as dtype; the table's offsets
 * follow it. */
static int plan(const struct ld_model *m, int dtype, struct ld_pack_header *hd,
		size_t *stride, char *err, size_t errlen)
{
	const struct ld_config *cfg = &m->cfg;
	size_t floats = ld_expert_floats(cfg), h = (size_t)cfg->hidden_size;
	size_t n = (size_t)cfg->n_moe_layers * (size_t)cfg->n_experts;

	if (!n || !h || floats % (3 * h)) {
		snprintf(err, errlen, "%s: %zu floats per expert is not 3 x hidden %zu x inter",
			 m->dir, floats, h);
		return -EINVAL;
	}
	memset(hd, 0, sizeof(*hd));
	memcpy(hd->magic, LD_STORE_MAGIC, 8);
	hd->version = LD_STORE_VERSION;
	hd->dtype = (uint32_t)dtype;
	hd->n_layers = (uint32_t)cfg->n_moe_layers;
	hd->n_experts = (uint32_t)cfg->n_experts;
	hd->hidden = (uint32_t)h;
	hd->inter = (uint32_t)(floats / (3 * h));
	hd->align = LD_STORE_ALIGN;
	hd->expert_bytes = floats * (dtype == LD_BF16 ? 2 : sizeof(float));
	hd->table_offset = sizeof(*hd);
	hd->data_offset = round_up(sizeof(*hd) + n * sizeof(struct ld_pack_entry),
				   LD_STORE_ALIGN);
	*stride = round_up(hd->expert_bytes, LD_STORE_ALIGN);
	hd->file_bytes = hd->data_offset + n * *stride;
	return ld_store_model_hash(m->dir, &hd->model_hash, err, errlen);
}

static int write_experts(const struct ld_model *m, int fd, struct ld_pack_header *hd,
			 struct ld_pack_entry *t, size_t stride, bool tty, const char *tmp,
			 char *err, size_t errlen)
{
	size_t n = (size_t)hd->n_layers * hd->n_experts;
	/* f32 first, whatever is stored. */
	size_t fbytes = round_up(3ull * hd->hidden * hd->inter * sizeof(float), LD_STORE_ALIGN);
	float *buf = aligned_alloc(LD_STORE_ALIGN, fbytes);
	int rc = 0;

	if (!buf) {
		snprintf(err, errlen, "%s: out of memory (%zu bytes)", tmp, fbytes);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		ld_expert_copy(m, (int)(i / hd->n_experts), (int)(i % hd->n_experts), buf);
		/* In place: value j is read before bytes [2j, 2j + 2) are written.
		 * Exact: the checkpoint's experts are bf16 (ld_store_pack_dtype). */
		if (hd->dtype == LD_BF16)
			ld_from_f32(buf, buf, LD_BF16, hd->expert_bytes / 2);
		t[i].offset = hd->data_offset + i * stride;
		t[i].checksum = ld_xxh64(buf, hd->expert_bytes);
		if ((rc = pwrite_all(fd, buf, hd->expert_bytes, (off_t)t[i].offset))) {
			snprintf(err, errlen, "%s: write: %s", tmp, strerror(-rc));
			break;
		}
		show_progress(tty, i + 1, n, stride);
	}
	free(buf);
	return rc;
}

/* Everything that goes into the open temp file fd, up to its fsync. */
static int write_file(const struct ld_model *m, int fd, struct ld_pack_header *hd,
		      size_t stride, bool tty, const char *tmp, char *err, size_t errlen)
{
	size_t n = (size_t)hd->n_layers * hd->n_experts;
	struct ld_pack_entry *t = calloc(n, sizeof(*t));
	int rc;

	if (!t) {
		snprintf(err, errlen, "%s: out of memory", tmp);
		return -ENOMEM;
	}
	/* Reserve the space up front so that a full disk fails now, not midway. */
	rc = posix_fallocate(fd, 0, (off_t)hd->file_bytes);
	if (rc && rc != EOPNOTSUPP && rc != EINVAL) {
		snprintf(err, errlen, "%s: reserving %" PRIu64 " bytes: %s", tmp,
			 hd->file_bytes, strerror(rc));
		rc = -rc;
		goto out;
	}
	if (ftruncate(fd, (off_t)hd->file_bytes) < 0 || fchmod(fd, 0644) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if ((rc = write_experts(m, fd, hd, t, stride, tty, tmp, err, errlen)))
		goto out;
	hd->header_checksum = ld_store_header_checksum(hd, t, n * sizeof(*t));
	if ((rc = pwrite_all(fd, hd, sizeof(*hd), 0)) ||
	    (rc = pwrite_all(fd, t, n * sizeof(*t), (off_t)hd->table_offset))) {
		snprintf(err, errlen, "%s: write: %s", tmp, strerror(-rc));
		goto out;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
	}
out:
	free(t);
	return rc;
}

int ld_store_pack(const struct ld_model *m, const char *out_path, bool progress,
		  char *err, size_t errlen)
{
	return ld_store_pack_dtype(m, out_path, LD_F32, progress, err, errlen);
}

int ld_store_pack_dtype(const struct ld_model *m, const char *out_path, int dtype,
			bool progress, char *err, size_t errlen)
{
	struct ld_pack_header hd;
	size_t stride, tlen = strlen(out_path) + 16;
	char *tmp = malloc(tlen);
	bool created = false;
	int fd = -1, rc;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, tlen, "%s.tmp.XXXXXX", out_path);
	if (dtype != LD_F32 && (dtype != LD_BF16 || m->dtype != LD_BF16)) {
		snprintf(err, errlen, "%s: experts are %s: cannot pack them as %s exactly",
			 m->dir, ld_dtype_name(m->dtype), ld_dtype_name((enum ld_dtype)dtype));
		rc = -EINVAL;
		goto fail;
	}
	if ((rc = plan(m, dtype, &hd, &stride, err, errlen)))
		goto fail;
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	created = true;
	if ((rc = write_file(m, fd, &hd, stride, progress && isatty(2), tmp, err, errlen)))
		goto fail;
	rc = close(fd);
	fd = -1;
	if (rc < 0 || rename(tmp, out_path) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: close or rename to %s: %s", tmp, out_path,
			 strerror(errno));
		goto fail;
	}
	free(tmp);
	if ((rc = sync_dir(out_path)))
		snprintf(err, errlen, "%s: fsync of its directory: %s", out_path, strerror(-rc));
	return rc;
fail:
	if (fd >= 0)
		close(fd);
	if (created)
		unlink(tmp);
	free(tmp);
	return rc;
}

int ld_store_ensure(const struct ld_model *m, const char *pack_path,
		    struct ld_store **out, char *err, size_t errlen)
{
	return ld_store_ensure_dtype(m, pack_path, LD_F32, out, err, errlen);
}

int ld_store_ensure_dtype(const struct ld_model *m, const char *pack_path, int dtype,
			  struct ld_store **out, char *err, size_t errlen)
{
	uint64_t hash;
	int rc;

	if ((rc = ld_store_model_hash(m->dir, &hash, err, errlen)))
		return rc;
	rc = ld_store_open(pack_path, hash, out, err, errlen);
	if (rc == 0 && ld_store_info(*out)->dtype == dtype)
		return 0;
	if (rc == 0) {
		snprintf(err, errlen, "%s: experts stored as %s, %s wanted", pack_path,
			 ld_dtype_name((enum ld_dtype)ld_store_info(*out)->dtype),
			 ld_dtype_name((enum ld_dtype)dtype));
		ld_store_close(*out);
		*out = NULL;
		rc = -ESTALE;
	}
	if (rc != -ENOENT && rc != -EBADMSG && rc != -ESTALE && rc != -EPROTO)
		return rc;
	if (rc == -ENOENT)
		fprintf(stderr, "moed: packing the experts of %s into %s\n", m->dir, pack_path);
	else
		fprintf(stderr, "moed: %s; repacking\n", err);
	if ((rc = ld_store_pack_dtype(m, pack_path, dtype, true, err, errlen)))
		return rc;
	return ld_store_open(pack_path, hash, out, err, errlen);
}
