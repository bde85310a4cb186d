/* Helpers of the loader tests (tests/loader_fx.h). */
#include "tests/loader_fx.h"

char err[1024];

const char *fixture(const char *name)
{
	static char buf[4][1024];
	static int i;
	const char *root = getenv("MOED_FIXTURES");

	ck_assert_msg(root != NULL, "MOED_FIXTURES not set");
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", root, name);
	return buf[i];
}

void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

void spill(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
	FILE *f = fopen(path, "wb");

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_uint_eq(fwrite(a, 1, na, f), na);
	if (nb)
		ck_assert_uint_eq(fwrite(b, 1, nb, f), nb);
	ck_assert_int_eq(fclose(f), 0);
}

/* Copies fixture NAME into a new temp dir (returned, static storage). */
const char *copy_fixture(const char *name)
{
	static char dir[256];
	char src[1200], dst[1200];
	struct dirent *de;
	DIR *d;

	strcpy(dir, "/tmp/moed-test-loader-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	d = opendir(fixture(name));
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d))) {
		size_t n;
		void *buf;

		if (de->d_name[0] == '.')
			continue;
		snprintf(src, sizeof(src), "%s/%s", fixture(name), de->d_name);
		snprintf(dst, sizeof(dst), "%s/%s", dir, de->d_name);
		buf = slurp(src, &n);
		spill(dst, buf, n, NULL, 0);
		free(buf);
	}
	closedir(d);
	return dir;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

void rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *path_in(const char *dir, const char *file)
{
	static char buf[4][1200];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, file);
	return buf[i];
}


/* Rewrites the JSON header of a safetensors file through fn, keeping the
 * data block as it is (offsets are relative to it). */
void edit_header(const char *path, edit_fn fn, void *arg)
{
	size_t n, hlen = 0;
	uint8_t *buf = slurp(path, &n), len8[8];
	json_error_t je;
	json_t *root;
	char *js;
	int i;

	for (i = 7; i >= 0; i--)
		hlen = hlen << 8 | buf[i];
	root = json_loadb((char *)buf + 8, hlen, 0, &je);
	ck_assert_ptr_nonnull(root);
	fn(root, arg);
	js = json_dumps(root, JSON_COMPACT);
	ck_assert_ptr_nonnull(js);
	for (i = 0; i < 8; i++)
		len8[i] = (uint8_t)((uint64_t)strlen(js) >> (8 * i));
	{
		size_t jl = strlen(js);
		uint8_t *out = malloc(8 + jl);

		memcpy(out, len8, 8);
		memcpy(out + 8, js, jl);
		spill(path, out, 8 + jl, buf + 8 + hlen, n - 8 - hlen);
		free(out);
	}
	free(js);
	json_decref(root);
	free(buf);
}

void edit_config(const char *dir, edit_fn fn, void *arg)
{
	json_error_t je;
	json_t *root = json_load_file(path_in(dir, "config.json"), 0, &je);

	ck_assert_ptr_nonnull(root);
	fn(root, arg);
	ck_assert_int_eq(json_dump_file(root, path_in(dir, "config.json"), JSON_INDENT(2)), 0);
	json_decref(root);
}

/* Expects ld_model_open(dir) to fail with an error naming every string. */
void expect_fail(const char *dir, const char *s1, const char *s2)
{
	struct ld_model *m = NULL;
	int rc = ld_model_open(dir, &m, err, sizeof(err));

	if (getenv("MOED_TEST_VERBOSE"))
		fprintf(stderr, "rc %d: %s\n", rc, err);
	ck_assert_int_lt(rc, 0);
	ck_assert_ptr_null(m);
	ck_assert_msg(strstr(err, s1) != NULL, "error '%s' does not name '%s'", err, s1);
	ck_assert_msg(!s2 || strstr(err, s2) != NULL, "error '%s' does not name '%s'", err, s2);
	ck_assert_ptr_null(strchr(err, '\n'));
}

struct ld_model *open_ok(const char *dir)
{
	struct ld_model *m = NULL;
	int rc = ld_model_open(dir, &m, err, sizeof(err));

	ck_assert_msg(rc == 0, "ld_model_open(%s): %s", dir, err);
	ck_assert_ptr_nonnull(m);
	return m;
}

