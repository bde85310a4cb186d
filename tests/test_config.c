/* daemon/config: defaults, the JSON file, --set, shorthand flags, strict
 * errors that name the key, and the shipped conf/moed.json and README. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "tests/suite_run.h"

/* ---- a temp dir per test (checked fixture: runs in the forked child) ---- */

static char tmpdir[64];
static char made[16][128];
static int n_made;

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	n_made = 0;
}

static void teardown(void)
{
	for (int i = 0; i < n_made; i++)
		unlink(made[i]);
	rmdir(tmpdir);
}

static const char *write_file(const char *name, const char *text)
{
	char *p = made[n_made++];
	FILE *f;

	snprintf(p, sizeof(made[0]), "%s/%s", tmpdir, name);
	f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static char *dump(const struct moed_config *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(cfg_dump_json(c, f), 0);
	fclose(f);
	return buf;
}

#define assert_err(err, needle) \
	ck_assert_msg(strstr(err, needle), "error '%s' lacks '%s'", err, needle)

static char err[1024];

/* ---- defaults ---- */

START_TEST(test_defaults)
{
	struct moed_config c;

	cfg_defaults(&c);
	ck_assert_str_eq(c.model.path, "");
	ck_assert_str_eq(c.model.pack, "");
	ck_assert_int_eq(c.model.max_ctx, 4096);
	ck_assert_str_eq(c.http.listen, "127.0.0.1:8080");
	ck_assert_int_eq(c.http.max_body_bytes, 1048576);
	ck_assert_int_eq(c.http.max_header_bytes, 16384);
	ck_assert_int_eq(c.http.max_headers, 100);
	ck_assert_double_eq(c.http.request_timeout_s, 60);
	ck_assert_double_eq(c.http.idle_timeout_s, 30);
	ck_assert_int_eq(c.device.backend, CFG_BACKEND_HOST);
	ck_assert_int_eq(c.device.index, 0);
	ck_assert_str_eq(c.device.kernel, "moe_expert");
	ck_assert_double_eq(c.cache.budget_mib, 0);
	ck_assert_int_eq(c.cache.slots, 0);
	ck_assert_int_eq(c.cache.policy, CFG_POLICY_LRU);
	ck_assert_int_eq(c.predictor.kind, CFG_PRED_FREQ);
	ck_assert_int_eq(c.predictor.mode, CFG_MODE_EXACT);
	ck_assert_int_eq(c.predictor.wait_ms, 5);
	ck_assert_int_eq(c.predictor.cepr_m, 2);
	ck_assert(c.predictor.learn);
	ck_assert_int_eq(c.batch.max_tokens, 2048);
	ck_assert_int_eq(c.batch.max_wait_us, 2000);
	ck_assert_int_eq(c.batch.max_queue, 256);
	ck_assert_double_eq(c.shutdown.drain_s, 30);
	ck_assert_int_eq(c.supervisor.max_restarts, 5);
	ck_assert_double_eq(c.supervisor.window_s, 60);
	ck_assert_str_eq(c.runtime.dir, "");
	ck_assert_int_eq(c.log.level, CFG_LOG_INFO);
	ck_assert_str_eq(cfg_enum_name("cache.policy", c.cache.policy), "lru");
	ck_assert_str_eq(cfg_enum_name("log.level", CFG_LOG_WARNING), "warning");
	ck_assert_str_eq(cfg_enum_name("cache.policy", CFG_POLICY_LFUDA), "lfuda");
	ck_assert_ptr_null(cfg_enum_name("cache.policy", CFG_POLICY_LFUDA + 1));
	ck_assert_ptr_null(cfg_enum_name("model.path", 0));
	cfg_free(&c);
}
END_TEST

/* ---- the file ---- */

START_TEST(test_file_nested)
{
	struct moed_config c;
	const char *p = write_file("a.json",
		"{\"model\": {\"path\": \"/m\", \"max_ctx\": 128},\n"
		" \"cache\": {\"policy\": \"fifo\", \"budget_mib\": 512, \"slots\": 7},\n"
		" \"http\": {\"listen\": \"[::1]:0\", \"idle_timeout_s\": 2.5},\n"
		" \"device\": {\"backend\": \"cuda\", \"index\": 3},\n"
		" \"predictor\": {\"learn\": false, \"kind\": \"cepr\", \"mode\": \"trust\"},\n"
		" \"log\": {\"level\": \"debug\"}}\n");

	cfg_defaults(&c);
	ck_assert_int_eq(cfg_load_file(&c, p, err, sizeof(err)), 0);
	ck_assert_str_eq(c.model.path, "/m");
	ck_assert_int_eq(c.model.max_ctx, 128);
	ck_assert_int_eq(c.cache.policy, CFG_POLICY_FIFO);
	ck_assert_double_eq(c.cache.budget_mib, 512);
	ck_assert_int_eq(c.cache.slots, 7);
	ck_assert_str_eq(c.http.listen, "[::1]:0");
	ck_assert_double_eq(c.http.idle_timeout_s, 2.5);
	ck_assert_int_eq(c.device.backend, CFG_BACKEND_CUDA);
	ck_assert_int_eq(c.device.index, 3);
	ck_assert(!c.predictor.learn);
	ck_assert_int_eq(c.predictor.kind, CFG_PRED_CEPR);
	ck_assert_int_eq(c.predictor.mode, CFG_MODE_TRUST);
	ck_assert_int_eq(c.log.level, CFG_LOG_DEBUG);
	/* untouched keys keep their defaults */
	ck_assert_int_eq(c.batch.max_queue, 256);
	ck_assert_str_eq(c.device.kernel, "moe_expert");
}
END_TEST

/* Loads text as a file into defaults; expects failure naming the file and needle. */
static int load_bad(const char *text, const char *needle)
{
	struct moed_config c;
	const char *p = write_file("bad.json", text);
	int rc;

	cfg_defaults(&c);
	rc = cfg_load_file(&c, p, err, sizeof(err));
	ck_assert_int_lt(rc, 0);
	assert_err(err, p);
	assert_err(err, needle);
	return rc;
}

START_TEST(test_file_unknown_key)
{
	ck_assert_int_eq(load_bad("{\"cache\": {\"polcy\": \"lru\"}}", "unknown key 'cache.polcy'"),
			 -EINVAL);
	load_bad("{\"cach\": {\"policy\": \"lru\"}}", "unknown key 'cach'");
	load_bad("{\"zzz\": 1}", "unknown key 'zzz'");
	/* dotted names at top level are not accepted: files nest objects */
	load_bad("{\"model.path\": \"/m\"}", "'model.path'");
	load_bad("{\"model\": {\"path\": {\"x\": 1}}}", "'model.path'");
}
END_TEST

START_TEST(test_file_wrong_type)
{
	load_bad("{\"model\": {\"max_ctx\": \"4096\"}}", "key 'model.max_ctx': expected int, got string");
	load_bad("{\"model\": {\"max_ctx\": 40.5}}", "key 'model.max_ctx': expected int, got number");
	load_bad("{\"model\": {\"path\": 3}}", "key 'model.path': expected string, got int");
	load_bad("{\"model\": \"/m\"}", "key 'model': expected object, got string");
	load_bad("{\"predictor\": {\"learn\": 1}}", "key 'predictor.learn': expected bool, got int");
	load_bad("{\"cache\": {\"budget_mib\": null}}", "key 'cache.budget_mib': expected number, got null");
	load_bad("{\"cache\": {\"policy\": 1}}", "key 'cache.policy': expected enum, got int");
	load_bad("[1, 2]", "top level must be an object");
}
END_TEST

START_TEST(test_file_range_enum)
{
	ck_assert_int_eq(load_bad("{\"model\": {\"max_ctx\": 0}}",
				  "key 'model.max_ctx': value 0 out of range 1..1048576"), -ERANGE);
	load_bad("{\"cache\": {\"budget_mib\": -0.5}}", "key 'cache.budget_mib': value -0.5 out of range");
	load_bad("{\"device\": {\"index\": 65}}", "key 'device.index': value 65 out of range 0..64");
	load_bad("{\"device\": {\"host_threads\": -2}}",
		 "key 'device.host_threads': value -2 out of range -1..256");
	load_bad("{\"batch\": {\"prefill_chunks\": -2}}",
		 "key 'batch.prefill_chunks': value -2 out of range -1..1024");
	load_bad("{\"cache\": {\"scan_resistant\": \"yes\"}}",
		 "key 'cache.scan_resistant': expected bool, got string");
	load_bad("{\"device\": {\"backend\": \"tpu\"}}",
		 "key 'device.backend': value 'tpu' is not one of host|cuda|xrt");
	load_bad("{\"http\": {\"listen\": \"localhost\"}}", "key 'http.listen'");
	load_bad("{\"model\": {\"path\": \"a\\u0000b\"}}", "bad.json:1:");  /* jansson refuses NUL */
}
END_TEST

START_TEST(test_file_malformed)
{
	char want[256];
	const char *p;

	/* trailing comma: the parser stops at the '}' on line 4 */
	load_bad("{\n  \"model\": {\n    \"path\": \"x\",\n  }\n}\n", "bad.json:4:");
	p = made[n_made - 1];
	snprintf(want, sizeof(want), "config %s:4:", p);
	ck_assert_msg(!strncmp(err, want, strlen(want)), "error '%s'", err);
	load_bad("", "bad.json:");
	load_bad("{\"model\": {\"path\": \"a\", \"path\": \"b\"}}", "duplicate");
}
END_TEST

START_TEST(test_file_missing)
{
	struct moed_config c;
	char p[128];

	snprintf(p, sizeof(p), "%s/none.json", tmpdir);
	cfg_defaults(&c);
	ck_assert_int_eq(cfg_load_file(&c, p, err, sizeof(err)), -ENOENT);
	assert_err(err, p);
}
END_TEST

/* ---- --set ---- */

static void set_bad(const char *kv, int want_rc, const char *needle)
{
	struct moed_config c;

	cfg_defaults(&c);
	ck_assert_int_eq(cfg_set(&c, kv, err, sizeof(err)), want_rc);
	assert_err(err, needle);
}

START_TEST(test_set)
{
	struct moed_config c;
	char big[CFG_PATH_MAX + 10];

	cfg_defaults(&c);
	ck_assert_int_eq(cfg_set(&c, "model.path=/a=b", err, sizeof(err)), 0);
	ck_assert_str_eq(c.model.path, "/a=b");
	ck_assert_int_eq(cfg_set(&c, "cache.budget_mib=1.5e3", err, sizeof(err)), 0);
	ck_assert_double_eq(c.cache.budget_mib, 1500);
	ck_assert_int_eq(cfg_set(&c, "cache.budget_mib=64", err, sizeof(err)), 0);
	ck_assert_double_eq(c.cache.budget_mib, 64);
	ck_assert_int_eq(cfg_set_kv(&c, "predictor.learn", "false", err, sizeof(err)), 0);
	ck_assert(!c.predictor.learn);
	ck_assert_int_eq(cfg_set_kv(&c, "model.max_ctx", "+17", err, sizeof(err)), 0);
	ck_assert_int_eq(c.model.max_ctx, 17);
	ck_assert_int_eq(cfg_set_kv(&c, "model.pack", "", err, sizeof(err)), 0);

	set_bad("cache.polcy=lru", -EINVAL, "unknown key 'cache.polcy'");
	set_bad("cache.policy", -EINVAL, "expected key=value");
	set_bad("model.max_ctx=12x", -EINVAL, "key 'model.max_ctx': '12x' is not an int");
	set_bad("model.max_ctx= 12", -EINVAL, "'model.max_ctx'");
	set_bad("model.max_ctx=", -EINVAL, "'model.max_ctx'");
	set_bad("model.max_ctx=1.0", -EINVAL, "is not an int");
	set_bad("cache.budget_mib=inf", -EINVAL, "'cache.budget_mib': 'inf' is not a number");
	set_bad("cache.budget_mib=0x10", -EINVAL, "is not a number");
	set_bad("cache.budget_mib=1e999", -ERANGE, "'cache.budget_mib'");
	set_bad("predictor.learn=yes", -EINVAL, "'predictor.learn': 'yes' is not a bool");
	set_bad("model.max_ctx=0", -ERANGE, "key 'model.max_ctx': value 0 out of range 1..1048576");
	set_bad("model.max_ctx=99999999999999999999", -ERANGE, "'model.max_ctx'");
	set_bad("device.index=-1", -ERANGE, "key 'device.index': value -1 out of range 0..64");
	set_bad("cache.budget_mib=-1", -ERANGE, "'cache.budget_mib': value -1 out of range");
	set_bad("cache.policy=mru", -EINVAL,
		"key 'cache.policy': value 'mru' is not one of fifo|lru|lfu|lfuda");
	set_bad("predictor.kind=hash", -EINVAL, "'predictor.kind'");
	set_bad("log.level=warn", -EINVAL, "'log.level'");
	set_bad("http.listen=127.0.0.1", -EINVAL, "'http.listen'");
	set_bad("http.listen=::1:80", -EINVAL, "'http.listen'");
	set_bad("http.listen=h:65536", -EINVAL, "'http.listen'");
	set_bad("model.path=\xff", -EINVAL, "UTF-8");

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(cfg_set_kv(&c, "model.path", big, err, sizeof(err)), -ENAMETOOLONG);
	assert_err(err, "'model.path'");
	ck_assert_str_eq(c.model.path, "/a=b");   /* a failed set leaves the value */
}
END_TEST

/* ---- the command line ---- */

struct seen {
	char args[8][32];
	int n;
	bool fail_on_bad;
};

/* Knows --foo X (2 entries), --bar and positional words (1 entry); --bad fails. */
static int other(void *ctx, int argc, char **argv)
{
	struct seen *s = ctx;

	if (!strcmp(argv[0], "--bad"))
		return -1;
	snprintf(s->args[s->n++], sizeof(s->args[0]), "%s", argv[0]);
	if (!strcmp(argv[0], "--foo"))
		return argc >= 2 ? 2 : -1;
	return 1;
}

static int parse(struct moed_config *c, struct seen *s, char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	cfg_defaults(c);
	memset(s, 0, sizeof(*s));
	return cfg_parse_args(c, argc, argv, other, s, err, sizeof(err));
}

START_TEST(test_args_set_beats_file)
{
	struct moed_config c;
	struct seen s;
	const char *p = write_file("f.json",
		"{\"cache\": {\"policy\": \"fifo\", \"slots\": 9}, \"model\": {\"path\": \"/file\"}}");
	char *before[] = {"--set", "cache.policy=lfu", "--model=/cli", "--config", (char *)p, NULL};
	char *after[] = {NULL, "--set=cache.policy=lfu", NULL};
	char cfgeq[256];

	ck_assert_int_eq(parse(&c, &s, before), 0);
	ck_assert_int_eq(c.cache.policy, CFG_POLICY_LFU);
	ck_assert_str_eq(c.model.path, "/cli");
	ck_assert_int_eq(c.cache.slots, 9);       /* from the file */
	ck_assert_int_eq(s.n, 0);

	snprintf(cfgeq, sizeof(cfgeq), "--config=%s", p);
	after[0] = cfgeq;
	ck_assert_int_eq(parse(&c, &s, after), 0);
	ck_assert_int_eq(c.cache.policy, CFG_POLICY_LFU);
	ck_assert_str_eq(c.model.path, "/file");
}
END_TEST

START_TEST(test_args_shorthands)
{
	struct moed_config c;
	struct seen s;
	char *argv[] = {"--model", "/m", "--listen=0.0.0.0:9000", "--backend", "xrt",
			"--device=2", "--budget-mib", "256.5", "--slots=12", "--policy", "fifo",
			"--predictor=oracle", "--mode", "trust", "--max-ctx=8192",
			"--set", "log.level=error", "--set", "model.max_ctx=100", NULL};

	ck_assert_int_eq(parse(&c, &s, argv), 0);
	ck_assert_str_eq(c.model.path, "/m");
	ck_assert_str_eq(c.http.listen, "0.0.0.0:9000");
	ck_assert_int_eq(c.device.backend, CFG_BACKEND_XRT);
	ck_assert_int_eq(c.device.index, 2);
	ck_assert_double_eq(c.cache.budget_mib, 256.5);
	ck_assert_int_eq(c.cache.slots, 12);
	ck_assert_int_eq(c.cache.policy, CFG_POLICY_FIFO);
	ck_assert_int_eq(c.predictor.kind, CFG_PRED_ORACLE);
	ck_assert_int_eq(c.predictor.mode, CFG_MODE_TRUST);
	ck_assert_int_eq(c.log.level, CFG_LOG_ERROR);
	ck_assert_int_eq(c.model.max_ctx, 100);   /* later in argv wins */
	ck_assert_int_eq(s.n, 0);
}
END_TEST

START_TEST(test_args_errors)
{
	struct moed_config c;
	struct seen s;
	char *unknown[] = {"--model", "/m", "--set", "cache.polcy=lru", NULL};
	char *badval[] = {"--policy=mru", NULL};
	char *missing[] = {"--listen", "[::1]:1", "--model", NULL};
	char *badflag[] = {"--bar", "--bad", "--baz", NULL};
	char *badfile[] = {"--config", "/nonexistent/moed.json", NULL};

	ck_assert_int_eq(parse(&c, &s, unknown), -EINVAL);
	assert_err(err, "--set");
	assert_err(err, "unknown key 'cache.polcy'");
	ck_assert_int_eq(parse(&c, &s, badval), -EINVAL);
	assert_err(err, "--policy: key 'cache.policy': value 'mru'");
	ck_assert_int_eq(parse(&c, &s, missing), -EINVAL);
	assert_err(err, "--model: missing value");
	ck_assert_int_eq(parse(&c, &s, badflag), -EINVAL);
	assert_err(err, "'--bad'");
	ck_assert_int_eq(s.n, 1);                 /* stopped at --bad */
	ck_assert_int_eq(parse(&c, &s, badfile), -ENOENT);
	assert_err(err, "/nonexistent/moed.json");

	/* no handler: every other argument is an error naming it */
	cfg_defaults(&c);
	ck_assert_int_eq(cfg_parse_args(&c, 2, (char *[]){"--model=/m", "--verbose"},
					NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_err(err, "'--verbose'");
	/* a name that only starts like a flag is not that flag */
	ck_assert_int_eq(parse(&c, &s, (char *[]){"--models", "--set-x", NULL}), 0);
	ck_assert_int_eq(s.n, 2);
	ck_assert_str_eq(c.model.path, "");
}
END_TEST

START_TEST(test_args_other_in_order)
{
	struct moed_config c;
	struct seen s;
	char *argv[] = {"--foo", "1", "--model", "/m", "--bar", "word", "--slots=3",
			"--foo", "--set", NULL};

	ck_assert_int_eq(parse(&c, &s, argv), 0);
	ck_assert_int_eq(s.n, 4);
	ck_assert_str_eq(s.args[0], "--foo");
	ck_assert_str_eq(s.args[1], "--bar");
	ck_assert_str_eq(s.args[2], "word");
	ck_assert_str_eq(s.args[3], "--foo");     /* it consumed "--set" as its value */
	ck_assert_str_eq(c.model.path, "/m");
	ck_assert_int_eq(c.cache.slots, 3);
}
END_TEST

/* ---- output and the shipped files ---- */

START_TEST(test_dump_roundtrip)
{
	struct moed_config a, b;
	char *da, *db;
	const char *p;

	cfg_defaults(&a);
	ck_assert_int_eq(cfg_set(&a, "model.path=/x \"q\" \\", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg_set(&a, "cache.budget_mib=0.1", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg_set(&a, "predictor.mode=trust", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg_set(&a, "predictor.learn=false", err, sizeof(err)), 0);
	da = dump(&a);
	p = write_file("dump.json", da);
	cfg_defaults(&b);
	ck_assert_int_eq(cfg_load_file(&b, p, err, sizeof(err)), 0);
	db = dump(&b);
	ck_assert_str_eq(da, db);
	ck_assert_str_eq(b.model.path, "/x \"q\" \\");
	ck_assert_double_eq(b.cache.budget_mib, 0.1);
	ck_assert_ptr_nonnull(strstr(da, "\"budget_mib\": 0.1,"));
	free(da);
	free(db);

	/* an enum field holding no valid value cannot be dumped */
	a.cache.policy = (enum cfg_policy)7;
	ck_assert_int_eq(cfg_dump_json(&a, stdout), -EINVAL);
}
END_TEST

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long len;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = calloc(1, len + 1);
	ck_assert_int_eq(fread(buf, 1, len, f), len);
	fclose(f);
	return buf;
}

/* conf/ beside tests/fixtures in the source tree. */
static void conf_path(char *buf, size_t n, const char *name)
{
	const char *fx = getenv("MOED_FIXTURES");

	ck_assert_ptr_nonnull(fx);
	snprintf(buf, n, "%s/../../conf/%s", fx, name);
}

START_TEST(test_shipped_conf)
{
	struct moed_config def, c;
	char path[1024], *dd, *dc, *file, *readme, needle[128];
	json_t *root, *sect, *v;
	const char *sname, *kname;

	cfg_defaults(&def);
	cfg_defaults(&c);
	/* moed.json lists every key at its default */
	conf_path(path, sizeof(path), "moed.json");
	ck_assert_int_eq(cfg_load_file(&c, path, err, sizeof(err)), 0);
	dd = dump(&def);
	dc = dump(&c);
	ck_assert_str_eq(dd, dc);
	file = slurp(path);
	ck_assert_str_eq(file, dd);
	/* README documents every key */
	conf_path(path, sizeof(path), "README.md");
	readme = slurp(path);
	root = json_loads(dd, 0, NULL);
	ck_assert_ptr_nonnull(root);
	json_object_foreach(root, sname, sect) {
		json_object_foreach(sect, kname, v) {
			snprintf(needle, sizeof(needle), "`%s.%s`", sname, kname);
			ck_assert_msg(strstr(readme, needle), "README lacks %s", needle);
		}
	}
	json_decref(root);
	free(dd);
	free(dc);
	free(file);
	free(readme);
}
END_TEST

START_TEST(test_helpers)
{
	struct moed_config c;
	char host[64], buf[64];
	int port;

	ck_assert_int_eq(cfg_split_listen("127.0.0.1:8080", host, sizeof(host), &port), 0);
	ck_assert_str_eq(host, "127.0.0.1");
	ck_assert_int_eq(port, 8080);
	ck_assert_int_eq(cfg_split_listen("[::1]:0", host, sizeof(host), &port), 0);
	ck_assert_str_eq(host, "::1");
	ck_assert_int_eq(port, 0);
	ck_assert_int_eq(cfg_split_listen("localhost:65535", host, sizeof(host), &port), 0);
	ck_assert_int_eq(port, 65535);
	ck_assert_int_eq(cfg_split_listen(":80", host, sizeof(host), &port), -EINVAL);
	ck_assert_int_eq(cfg_split_listen("[]:80", host, sizeof(host), &port), -EINVAL);
	ck_assert_int_eq(cfg_split_listen("h:", host, sizeof(host), &port), -EINVAL);
	ck_assert_int_eq(cfg_split_listen("h:8x", host, sizeof(host), &port), -EINVAL);
	ck_assert_int_eq(cfg_split_listen("h:-1", host, sizeof(host), &port), -EINVAL);
	ck_assert_int_eq(cfg_split_listen("[::1:80", host, sizeof(host), &port), -EINVAL);
	ck_assert_int_eq(cfg_split_listen("long.host:1", host, 4, &port), -ENAMETOOLONG);

	cfg_defaults(&c);
	ck_assert_int_eq(cfg_pack_path(&c, buf, sizeof(buf)), -EINVAL);
	cfg_set(&c, "model.path=/models/m", err, sizeof(err));
	ck_assert_int_eq(cfg_pack_path(&c, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/models/m/moed.pack");
	ck_assert_int_eq(cfg_pack_path(&c, buf, 8), -ENAMETOOLONG);
	cfg_set(&c, "model.pack=/p.pack", err, sizeof(err));
	ck_assert_int_eq(cfg_pack_path(&c, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/p.pack");

	unsetenv("RUNTIME_DIRECTORY");
	ck_assert_int_eq(cfg_runtime_dir(&c, buf, sizeof(buf)), 0);
	snprintf(host, sizeof(host), "/tmp/moed-%u", (unsigned)getuid());
	ck_assert_str_eq(buf, host);
	setenv("RUNTIME_DIRECTORY", "/run/moed:/run/other", 1);
	ck_assert_int_eq(cfg_runtime_dir(&c, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/moed");
	cfg_set(&c, "runtime.dir=/r", err, sizeof(err));
	ck_assert_int_eq(cfg_runtime_dir(&c, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/r");
}
END_TEST

START_TEST(test_print)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	cfg_print_keys(f);
	cfg_print_flags(f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "cache.policy"));
	ck_assert_ptr_nonnull(strstr(buf, "fifo|lru|lfu|lfuda"));
	ck_assert_ptr_nonnull(strstr(buf, "1..1048576"));
	ck_assert_ptr_nonnull(strstr(buf, "--budget-mib MIB"));
	ck_assert_ptr_nonnull(strstr(buf, "--set cache.budget_mib=MIB"));
	free(buf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_file_nested);
	tcase_add_test(tc, test_file_unknown_key);
	tcase_add_test(tc, test_file_wrong_type);
	tcase_add_test(tc, test_file_range_enum);
	tcase_add_test(tc, test_file_malformed);
	tcase_add_test(tc, test_file_missing);
	tcase_add_test(tc, test_set);
	tcase_add_test(tc, test_args_set_beats_file);
	tcase_add_test(tc, test_args_shorthands);
	tcase_add_test(tc, test_args_errors);
	tcase_add_test(tc, test_args_other_in_order);
	tcase_add_test(tc, test_dump_roundtrip);
	tcase_add_test(tc, test_shipped_conf);
	tcase_add_test(tc, test_helpers);
	tcase_add_test(tc, test_print);
	suite_add_tcase(s, tc);
	return suite_run(s);
}
