/* The pack store: XXH64, the model hash, pack/open round trips on the
 * fixtures, and rejection of corrupt, truncated and mismatched packs. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/backend.h"
#include "loader/cache.h"
#include "loader/model.h"
#include "loader/store.h"
#include "tests/refs.h"
#include "tests/suite_run.h"

static char tmpdir[256];
static char err[1024];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static void setup(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(tmpdir, sizeof(tmpdir), "%s/moed-store-XXXXXX", t ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void fixture_dir(const char *name, char *buf, size_t n)
{
	const char *root = getenv("MOED_FIXTURES");
	ck_assert_msg(root != NULL, "MOED_FIXTURES not set");
	snprintf(buf, n, "%s/%s", root, name);
}

static struct ld_model *open_model(const char *dir)
{
	struct ld_model *m = NULL;
	int rc = ld_model_open(dir, &m, err, sizeof(err));
	ck_assert_msg(rc == 0, "ld_model_open(%s): %s", dir, err);
	return m;
}

static void pack_path(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", tmpdir, name);
}

/* Packs fixture name into tmpdir/name.pack. */
static struct ld_model *pack_fixture(const char *name, char *path, size_t n)
{
	char dir[512];
	fixture_dir(name, dir, sizeof(dir));
	struct ld_model *m = open_model(dir);
	snprintf(path, n, "%s/%s.pack", tmpdir, name);
	int rc = ld_store_pack(m, path, false, err, sizeof(err));
	ck_assert_msg(rc == 0, "pack: %s", err);
	return m;
}

static void patch(const char *path, off_t off, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, p, n, off), (ssize_t)n);
	close(fd);
}

static void flip_byte(const char *path, off_t off)
{
	unsigned char b;
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &b, 1, off), 1);
	b ^= 0x5a;
	ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void copy_file(const char *from, const char *to)
{
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	char buf[65536];
	size_t n;
	ck_assert(a && b);
	while ((n = fread(buf, 1, sizeof(buf), a)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, b), n);
	fclose(a);
	fclose(b);
}

static int count_entries(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	FILE *p = popen(cmd, "r");
	int n = -1;
	ck_assert_int_eq(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

START_TEST(xxh64_vectors)
{
	ck_assert_uint_eq(ld_xxh64("", 0), 0xEF46DB3751D8E999ull);
	ck_assert_uint_eq(ld_xxh64("abc", 3), 0x44BC2CF5AD770999ull);
	/* Streaming in odd pieces gives the one-shot value. */
	unsigned char buf[1000];
	for (int i = 0; i < 1000; i++)
		buf[i] = (unsigned char)(i * 37 + 11);
	struct ld_xxh64 h;
	ld_xxh64_init(&h);
	for (size_t off = 0, step = 1; off < sizeof(buf); off += step, step = step * 3 % 61 + 1)
		ld_xxh64_update(&h, buf + off, off + step > sizeof(buf) ? sizeof(buf) - off : step);
	ck_assert_uint_eq(ld_xxh64_digest(&h), ld_xxh64(buf, sizeof(buf)));
}
END_TEST

START_TEST(model_hash)
{
	char a[512], b[512], cp[512], from[600], to[600];
	uint64_t ha, ha2, hb, hc;

	fixture_dir("mixtral_f32", a, sizeof(a));
	fixture_dir("olmoe_bf16", b, sizeof(b));
	ck_assert_int_eq(ld_store_model_hash(a, &ha, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_store_model_hash(a, &ha2, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_store_model_hash(b, &hb, err, sizeof(err)), 0);
	ck_assert_uint_eq(ha, ha2);
	ck_assert_uint_ne(ha, hb);
	/* A copy hashes the same; an edited config.json does not. */
	snprintf(cp, sizeof(cp), "%s/m", tmpdir);
	ck_assert_int_eq(mkdir(cp, 0755), 0);
	const char *files[] = {"config.json", "model.safetensors"};
	for (int i = 0; i < 2; i++) {
		snprintf(from, sizeof(from), "%s/%s", a, files[i]);
		snprintf(to, sizeof(to), "%s/%s", cp, files[i]);
		copy_file(from, to);
	}
	ck_assert_int_eq(ld_store_model_hash(cp, &hc, err, sizeof(err)), 0);
	ck_assert_uint_eq(hc, ha);
	snprintf(to, sizeof(to), "%s/config.json", cp);
	FILE *f = fopen(to, "a");
	fputs(" ", f);
	fclose(f);
	ck_assert_int_eq(ld_store_model_hash(cp, &hc, err, sizeof(err)), 0);
	ck_assert_uint_ne(hc, ha);
	/* The last byte of the weights is covered too. */
	snprintf(from, sizeof(from), "%s/config.json", a);
	copy_file(from, to);
	snprintf(to, sizeof(to), "%s/model.safetensors", cp);
	struct stat st;
	ck_assert_int_eq(stat(to, &st), 0);
	flip_byte(to, st.st_size - 1);
	ck_assert_int_eq(ld_store_model_hash(cp, &hc, err, sizeof(err)), 0);
	ck_assert_uint_ne(hc, ha);
	/* No model there: an error naming the file. */
	ck_assert_int_lt(ld_store_model_hash(tmpdir, &hc, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "config.json"));
}
END_TEST

START_TEST(round_trip)
{
	const char *name = ref_fixture_names[_i];
	char path[512];
	struct ld_store *s = NULL;
	struct ld_model *m = pack_fixture(name, path, sizeof(path));
	uint64_t h;

	ck_assert_int_eq(ld_store_model_hash(m->dir, &h, err, sizeof(err)), 0);
	int rc = ld_store_open(path, h, &s, err, sizeof(err));
	ck_assert_msg(rc == 0, "%s", err);
	const struct ld_store_info *in = ld_store_info(s);
	size_t floats = ld_expert_floats(&m->cfg);
	ck_assert_int_eq(in->n_layers, m->cfg.n_moe_layers);
	ck_assert_int_eq(in->n_experts, m->cfg.n_experts);
	ck_assert_int_eq(in->hidden, m->cfg.hidden_size);
	ck_assert_uint_eq(in->expert_bytes, floats * sizeof(float));
	ck_assert_uint_eq((size_t)3 * in->hidden * in->inter, floats);
	ck_assert_uint_eq(in->model_hash, h);
	ck_assert_uint_eq(in->version, LD_STORE_VERSION);
	float *want = malloc(in->expert_bytes);
	for (int l = 0; l < in->n_layers; l++)
		for (int e = 0; e < in->n_experts; e++) {
			const void *p = ld_store_expert(s, l, e);
			ck_assert_ptr_nonnull(p);
			ck_assert_uint_eq((uintptr_t)p % LD_STORE_ALIGN, 0);
			ld_expert_copy(m, l, e, want);
			ck_assert_msg(!memcmp(p, want, in->expert_bytes), "%s: layer %d expert %d "
				      "differs from ld_expert_copy", name, l, e);
		}
	ck_assert_ptr_null(ld_store_expert(s, in->n_layers, 0));
	ck_assert_int_eq(ld_store_verify_all(s, err, sizeof(err)), 0);
	/* Opening without a hash accepts it too; no temp file is left. */
	ld_store_close(s);
	ck_assert_int_eq(ld_store_open(path, 0, &s, err, sizeof(err)), 0);
	ld_store_close(s);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0644);
	ck_assert_int_eq(count_entries(tmpdir), 1);
	free(want);
	ld_model_close(m);
}
END_TEST

START_TEST(no_temp_left)
{
	char path[512];
	struct ld_model *m = pack_fixture("mixtral_f32", path, sizeof(path));
	ck_assert_int_eq(count_entries(tmpdir), 1);
	/* Packing into a missing directory fails cleanly, naming the path. */
	char bad[600];
	snprintf(bad, sizeof(bad), "%s/nodir/x.pack", tmpdir);
	ck_assert_int_eq(ld_store_pack(m, bad, false, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "nodir"));
	ck_assert_int_eq(count_entries(tmpdir), 1);
	ld_model_close(m);
}
END_TEST

static int open_err(const char *path, uint64_t h)
{
	struct ld_store *s = NULL;
	int rc = ld_store_open(path, h, &s, err, sizeof(err));
	ck_assert_ptr_null(s);
	return rc;
}

START_TEST(truncated)
{
	char path[512];
	struct ld_model *m = pack_fixture("mixtral_f32", path, sizeof(path));
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	const off_t sizes[] = {st.st_size - 1, st.st_size / 2, 200, 100, 0};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ck_assert_int_eq(truncate(path, sizes[i]), 0);
		ck_assert_int_eq(open_err(path, 0), -EBADMSG);
		ck_assert_msg(strstr(err, "truncated") && strstr(err, path),
			      "size %ld: %s", (long)sizes[i], err);
	}
	ld_model_close(m);
}
END_TEST

START_TEST(corrupt_header)
{
	char path[512];
	struct ld_model *m = pack_fixture("mixtral_f32", path, sizeof(path));

	/* A byte of the layout table. */
	flip_byte(path, sizeof(struct ld_pack_header) + 3);
	ck_assert_int_eq(open_err(path, 0), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "header checksum"));
	flip_byte(path, sizeof(struct ld_pack_header) + 3);
	/* The magic. */
	flip_byte(path, 2);
	ck_assert_int_eq(open_err(path, 0), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "not a moed pack"));
	flip_byte(path, 2);
	/* Another format version, with a consistent checksum. */
	struct ld_pack_header hd;
	int fd = open(path, O_RDONLY);
	ck_assert_int_eq(pread(fd, &hd, sizeof(hd), 0), (ssize_t)sizeof(hd));
	close(fd);
	hd.version = 2;
	patch(path, 0, &hd, sizeof(hd));
	ck_assert_int_eq(open_err(path, 0), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "version 2"));
	ld_model_close(m);
}
END_TEST

START_TEST(wrong_model)
{
	char path[512], other[512];
	struct ld_model *m = pack_fixture("mixtral_f32", path, sizeof(path));
	uint64_t h;
	fixture_dir("olmoe_bf16", other, sizeof(other));
	ck_assert_int_eq(ld_store_model_hash(other, &h, err, sizeof(err)), 0);
	ck_assert_int_eq(open_err(path, h), -ESTALE);
	ck_assert_ptr_nonnull(strstr(err, "another model"));
	ld_model_close(m);
}
END_TEST

START_TEST(corrupt_expert)
{
	char path[512];
	struct ld_store *s = NULL;
	struct ld_model *m = pack_fixture("qwen3moe_f32_sharded", path, sizeof(path));

	ck_assert_int_eq(ld_store_open(path, 0, &s, err, sizeof(err)), 0);
	const struct ld_store_info *in = ld_store_info(s);
	ck_assert_int_ge(in->n_layers, 2);
	/* Offset of (1, 5) in the file: the table entry says it. */
	struct ld_pack_entry e;
	int fd = open(path, O_RDONLY);
	ck_assert_int_eq(pread(fd, &e, sizeof(e), sizeof(struct ld_pack_header) +
			       (off_t)(1 * in->n_experts + 5) * (off_t)sizeof(e)),
			 (ssize_t)sizeof(e));
	close(fd);
	ck_assert_uint_gt(e.offset, 0);
	off_t mid = (off_t)e.offset + (off_t)in->expert_bytes / 2;
	ld_store_close(s);
	flip_byte(path, mid);
	/* The header is intact: open succeeds, the expert's check fails. */
	ck_assert_int_eq(ld_store_open(path, 0, &s, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_store_verify_expert(s, 1, 4, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_store_verify_expert(s, 1, 5, err, sizeof(err)), -EBADMSG);
	ck_assert_msg(strstr(err, "layer 1 expert 5") && strstr(err, "checksum"), "%s", err);
	ck_assert_int_eq(ld_store_verify_all(s, err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "layer 1 expert 5"));
	ld_store_close(s);
	ld_model_close(m);
}
END_TEST

static ino_t inode_of(const char *path)
{
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_ino;
}

START_TEST(ensure)
{
	char dir[512], path[512], other[512];
	struct ld_store *s = NULL;

	fixture_dir("mixtral_f32", dir, sizeof(dir));
	struct ld_model *m = open_model(dir);
	pack_path(path, sizeof(path), "e.pack");
	/* Missing: packs. */
	ck_assert_int_eq(ld_store_ensure(m, path, &s, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_store_info(s)->n_experts, m->cfg.n_experts);
	ld_store_close(s);
	ino_t first = inode_of(path);
	/* Present and matching: opened as is. */
	ck_assert_int_eq(ld_store_ensure(m, path, &s, err, sizeof(err)), 0);
	ld_store_close(s);
	ck_assert_uint_eq(inode_of(path), first);
	/* Corrupt: replaced. */
	ck_assert_int_eq(truncate(path, 1000), 0);
	ck_assert_int_eq(ld_store_ensure(m, path, &s, err, sizeof(err)), 0);
	ld_store_close(s);
	/* Another model's pack: replaced. */
	fixture_dir("olmoe_bf16", other, sizeof(other));
	struct ld_model *o = open_model(other);
	ck_assert_int_eq(ld_store_pack(o, path, false, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_store_ensure(m, path, &s, err, sizeof(err)), 0);
	uint64_t h;
	ck_assert_int_eq(ld_store_model_hash(dir, &h, err, sizeof(err)), 0);
	ck_assert_uint_eq(ld_store_info(s)->model_hash, h);
	ld_store_close(s);
	ld_model_close(o);
	ld_model_close(m);
}
END_TEST

/* bf16 experts: half the bytes, the same values; ensure repacks to the
 * dtype asked for; an f32 checkpoint cannot be packed as bf16; the host
 * backend (f32 slots only) refuses a bf16 store. */
START_TEST(bf16_pack)
{
	char dir[512], path[512];
	struct ld_store *s = NULL;
	struct cache *c = NULL;
	struct ld_backend *be;

	fixture_dir("olmoe_bf16", dir, sizeof(dir));
	struct ld_model *m = open_model(dir);
	pack_path(path, sizeof(path), "b.pack");
	ck_assert_int_eq(ld_store_pack_dtype(m, path, LD_BF16, false, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_store_open(path, 0, &s, err, sizeof(err)), 0);
	const struct ld_store_info *in = ld_store_info(s);
	size_t nf = ld_expert_floats(&m->cfg);
	ck_assert_int_eq(in->dtype, LD_BF16);
	ck_assert_uint_eq(in->expert_bytes, nf * 2);
	ck_assert_int_eq(ld_store_verify_all(s, err, sizeof(err)), 0);
	float *want = malloc(nf * sizeof(float)), *got = malloc(nf * sizeof(float));
	ld_expert_copy(m, 1, 3, want);
	ld_to_f32(got, ld_store_expert(s, 1, 3), LD_BF16, nf);
	ck_assert(!memcmp(want, got, nf * sizeof(float)));
	struct cache_opts o = {.n_layers = in->n_layers, .n_experts = in->n_experts,
			       .expert_bytes = in->expert_bytes, .n_slots = 4,
			       .policy = CACHE_LRU, .store = s};
	ck_assert_int_eq(ld_backend_host_open(&be, err, sizeof(err)), 0);
	o.backend = be;
	ck_assert_int_eq(cache_open(&o, &c), -EINVAL);
	ld_backend_close(be);
	ld_store_close(s);
	ck_assert_int_eq(ld_store_ensure_dtype(m, path, LD_F32, &s, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_store_info(s)->dtype, LD_F32);
	ld_store_close(s);
	ck_assert_int_eq(ld_store_ensure_dtype(m, path, LD_BF16, &s, err, sizeof(err)), 0);
	ck_assert_int_eq(ld_store_info(s)->dtype, LD_BF16);
	ld_store_close(s);
	free(want);
	free(got);
	ld_model_close(m);
	fixture_dir("mixtral_f32", dir, sizeof(dir));
	m = open_model(dir);
	ck_assert_int_eq(ld_store_pack_dtype(m, path, LD_BF16, false, err, sizeof(err)),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "exactly"));
	ld_model_close(m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, xxh64_vectors);
	tcase_add_test(tc, model_hash);
	tcase_add_loop_test(tc, round_trip, 0, ref_n_fixtures);
	tcase_add_test(tc, no_temp_left);
	tcase_add_test(tc, truncated);
	tcase_add_test(tc, corrupt_header);
	tcase_add_test(tc, wrong_model);
	tcase_add_test(tc, corrupt_expert);
	tcase_add_test(tc, ensure);
	tcase_add_test(tc, bf16_pack);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
